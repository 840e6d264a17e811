import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateApiKey, parseApiKey, hashApiKey, API_KEY_PATTERN } from '../../src/crypto/apikey.js';
import { KeyVerifier } from '../../src/auth/keys.js';
import { AppError } from '../../src/errors.js';
import type { DatabaseHandle } from '../../src/db/database.js';

test('generated keys carry their kind, at least 128 random bits and a valid checksum', () => {
  const seen = new Set<string>();
  for (const kind of ['secret', 'publishable', 'restricted'] as const) {
    for (let i = 0; i < 200; i++) {
      const k = generateApiKey(kind);
      assert.match(k, API_KEY_PATTERN);
      assert.equal(parseApiKey(k).kind, kind);
      seen.add(k);
    }
  }
  assert.equal(seen.size, 600);
  // 32 base62 characters: 32 * log2(62) ≈ 190 bits.
  assert.ok(32 * Math.log2(62) >= 128);
});

test('every single-character typo is caught by the checksum', () => {
  const k = generateApiKey('secret');
  let caught = 0;
  let total = 0;
  for (let i = 7; i < k.length; i++) {
    const c = k[i] === 'x' ? 'y' : 'x';
    const typo = k.slice(0, i) + c + k.slice(i + 1);
    total++;
    try {
      parseApiKey(typo);
    } catch (err) {
      assert.ok(err instanceof AppError);
      if (err.code === 'ERR_KEY_CHECKSUM') caught++;
    }
  }
  assert.equal(caught, total);
});

test('malformed keys are refused with ERR_KEY_MALFORMED', () => {
  for (const bad of ['', 'obs_sk_', 'obs_xx_' + 'a'.repeat(38), 'sk_live_abc', generateApiKey('secret') + 'a', generateApiKey('secret').slice(0, -1), ' ' + generateApiKey('secret')]) {
    assert.throws(() => parseApiKey(bad), (e: unknown) => e instanceof AppError && e.code === 'ERR_KEY_MALFORMED', bad);
  }
});

test('the verifier rejects malformed and mistyped keys without any database access', async () => {
  let touched = 0;
  // A database handle that records any access: the point is to prove there is none.
  const db = new Proxy({} as DatabaseHandle, {
    get() {
      touched++;
      throw new Error('database touched');
    },
  });
  const v = new KeyVerifier(db, { ttlMs: 1000 });
  const k = generateApiKey('secret');
  const typo = k.slice(0, 12) + (k[12] === 'Q' ? 'R' : 'Q') + k.slice(13);
  await assert.rejects(v.verify(typo, { ip: '127.0.0.1', origin: undefined }), (e: unknown) => e instanceof AppError && e.code === 'ERR_KEY_CHECKSUM');
  await assert.rejects(v.verify('obs_sk_nope', { ip: '127.0.0.1', origin: undefined }), (e: unknown) => e instanceof AppError && e.code === 'ERR_KEY_MALFORMED');
  assert.equal(touched, 0);
  // A well-formed key does reach the database: the spy works.
  await assert.rejects(v.verify(k, { ip: '127.0.0.1', origin: undefined }), /database touched/);
  assert.ok(touched > 0);
});

test('only the SHA-256 of a key is derived for storage', () => {
  const k = generateApiKey('secret');
  assert.match(hashApiKey(k), /^[0-9a-f]{64}$/);
  assert.notEqual(hashApiKey(k), hashApiKey(generateApiKey('secret')));
});
