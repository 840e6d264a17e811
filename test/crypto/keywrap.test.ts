import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { generateTenantKey, masterKeyId, parseMasterKey, unwrapKey, wrapKey } from '../../src/crypto/keywrap.js';
import { AppError } from '../../src/errors.js';

const ORG_A = '0b5e7c1e-0000-4000-8000-00000000000a';
const ORG_B = '0b5e7c1e-0000-4000-8000-00000000000b';

function masters(...keys: Buffer[]): Map<string, Buffer> {
  return new Map(keys.map((k) => [masterKeyId(k), k]));
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const isIntegrity = (e: unknown) => e instanceof AppError && e.code === 'ERR_INTEGRITY' && e.status === 500;

test('tenant keys are 32 random bytes, different every time', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const k = generateTenantKey();
    assert.equal(k.length, 32);
    seen.add(k.toString('hex'));
  }
  assert.equal(seen.size, 100);
});

test('a wrapped key unwraps with the same master key and org, and has the documented shape', () => {
  const master = randomBytes(32);
  const id = masterKeyId(master);
  const tk = generateTenantKey();
  const wrapped = wrapKey(master, id, tk, ORG_A);
  assert.match(wrapped, /^v1\.[0-9a-f]{16}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{64}$/);
  assert.equal(wrapped.split('.')[1], id);
  assert.ok(!wrapped.includes(tk.toString('base64url')));
  assert.ok(unwrapKey(masters(master), wrapped, ORG_A).equals(tk));
  // A lookup function works as well as a map.
  assert.ok(unwrapKey((k) => (k === id ? master : undefined), wrapped, ORG_A).equals(tk));
});

test('wrapping the same key twice gives different strings (fresh nonce)', () => {
  const master = randomBytes(32);
  const tk = generateTenantKey();
  const a = wrapKey(master, masterKeyId(master), tk, ORG_A);
  const b = wrapKey(master, masterKeyId(master), tk, ORG_A);
  assert.notEqual(a, b);
  assert.ok(unwrapKey(masters(master), a, ORG_A).equals(unwrapKey(masters(master), b, ORG_A)));
});

test('a wrapped key moved to another org does not unwrap', () => {
  const master = randomBytes(32);
  const wrapped = wrapKey(master, masterKeyId(master), generateTenantKey(), ORG_A);
  assert.throws(() => unwrapKey(masters(master), wrapped, ORG_B), isIntegrity);
  assert.throws(() => unwrapKey(masters(master), wrapped, ''), isIntegrity);
  assert.ok(unwrapKey(masters(master), wrapped, ORG_A));
});

test('a wrong master key, or an unknown master key id, does not unwrap', () => {
  const master = randomBytes(32);
  const other = randomBytes(32);
  const wrapped = wrapKey(master, masterKeyId(master), generateTenantKey(), ORG_A);
  assert.throws(() => unwrapKey(masters(other), wrapped, ORG_A), isIntegrity);
  // The id names the right key but another key is registered under it.
  assert.throws(() => unwrapKey(new Map([[masterKeyId(master), other]]), wrapped, ORG_A), isIntegrity);
  assert.ok(unwrapKey(masters(other, master), wrapped, ORG_A));
});

test('relabelling a wrapped key with another master key id does not unwrap, even if that id maps to the same key', () => {
  const master = randomBytes(32);
  const id = masterKeyId(master);
  const wrapped = wrapKey(master, id, generateTenantKey(), ORG_A);
  const relabelled = wrapped.replace(`.${id}.`, '.ffffffffffffffff.');
  const both = new Map([
    [id, master],
    ['ffffffffffffffff', master],
  ]);
  assert.throws(() => unwrapKey(both, relabelled, ORG_A), isIntegrity);
  assert.ok(unwrapKey(both, wrapped, ORG_A));
});

test('any edit to a wrapped key is refused with ERR_INTEGRITY', () => {
  const master = randomBytes(32);
  const wrapped = wrapKey(master, masterKeyId(master), generateTenantKey(), ORG_A);
  const m = masters(master);
  const [v, id, nonce, ct] = wrapped.split('.') as [string, string, string, string];
  const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
  const bad = [
    '',
    'garbage',
    `v2.${id}.${nonce}.${ct}`,
    `${v}.${id}.${nonce}`,
    `${v}.${id}.${nonce}.${ct}.x`,
    `${v}.${id}.${flip(nonce, 3)}.${ct}`,
    `${v}.${id}.${nonce}.${flip(ct, 0)}`,
    `${v}.${id}.${nonce}.${flip(ct, ct.length - 2)}`,
    `${v}.${id}.${nonce}.${ct.slice(0, -4)}`,
    `${v}.${id}.${nonce}.${ct}AAAA`,
    `${v}.${id}.${nonce}.${ct.slice(0, 10)}!${ct.slice(11)}`,
    `${v}.${id}.${nonce}==.${ct}`,
  ];
  for (const w of bad) assert.throws(() => unwrapKey(m, w, ORG_A), isIntegrity, w);
  assert.ok(unwrapKey(m, wrapped, ORG_A));
});

test('a second spelling of the same wrapped bytes (non-zero base64url padding bits) is refused', () => {
  const master = randomBytes(32);
  // 33 + 16 bytes of ciphertext and tag encode to 66 characters: the last one carries 4 unused bits.
  const wrapped = wrapKey(master, masterKeyId(master), randomBytes(33), ORG_A);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = wrapped[wrapped.length - 1]!;
  const respelled = wrapped.slice(0, -1) + alphabet[alphabet.indexOf(last) | 1]!;
  assert.ok(Buffer.from(respelled.split('.')[3]!, 'base64url').equals(Buffer.from(wrapped.split('.')[3]!, 'base64url')));
  assert.throws(() => unwrapKey(masters(master), respelled, ORG_A), isIntegrity);
  assert.equal(unwrapKey(masters(master), wrapped, ORG_A).length, 33);
});

test('wraps secrets longer than a key (a private JWK) and refuses an empty one', () => {
  const master = randomBytes(32);
  const jwk = Buffer.from(JSON.stringify({ kty: 'EC', crv: 'P-256', d: randomBytes(32).toString('base64url') }));
  const wrapped = wrapKey(master, masterKeyId(master), jwk, 'jwt:k1');
  assert.ok(unwrapKey(masters(master), wrapped, 'jwt:k1').equals(jwk));
  assert.throws(() => wrapKey(master, masterKeyId(master), Buffer.alloc(0), 'x'), RangeError);
  assert.throws(() => wrapKey(randomBytes(16), 'abc', jwk, 'x'), RangeError);
  assert.throws(() => wrapKey(master, 'has.dot', jwk, 'x'), RangeError);
});

test('the master key id is a stable 16-hex fingerprint that differs between keys', () => {
  const a = randomBytes(32);
  assert.match(masterKeyId(a), /^[0-9a-f]{16}$/);
  assert.equal(masterKeyId(a), masterKeyId(Buffer.from(a)));
  assert.notEqual(masterKeyId(a), masterKeyId(randomBytes(32)));
  // It is not simply a prefix of the key or of its plain SHA-256.
  assert.ok(!a.toString('hex').startsWith(masterKeyId(a)));
  // Pinned (computed with Python hashlib), so a change of derivation, which would orphan every wrapped row, fails here.
  assert.equal(masterKeyId(Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex')), '3a099d3e240a9f25');
});

test('parseMasterKey accepts 32 bytes as hex, base64 and base64url, with surrounding whitespace', () => {
  const key = randomBytes(32);
  for (const text of [
    key.toString('hex'),
    key.toString('hex').toUpperCase(),
    key.toString('base64'),
    key.toString('base64').replace(/=$/, ''),
    key.toString('base64url'),
    `  ${key.toString('hex')}\n`,
  ]) {
    assert.ok(parseMasterKey(text).equals(key), text);
  }
});

test('parseMasterKey rejects anything else with an error naming OBSCURA_MASTER_KEY and not echoing the value', () => {
  const key = randomBytes(32);
  const hex = key.toString('hex');
  const b64 = key.toString('base64');
  const bad = [
    '',
    'changeme',
    hex.slice(0, 62),
    `${hex}00`,
    `${hex.slice(0, 63)}g`,
    randomBytes(31).toString('base64'),
    randomBytes(33).toString('base64'),
    `${b64.slice(0, 20)}*${b64.slice(21)}`,
    // Same bytes, but non-zero padding bits: a second spelling of one key.
    `${b64.slice(0, 42)}${B64[B64.indexOf(b64[42]!) | 1]}=`,
    '0'.repeat(64),
    'f'.repeat(64),
    Buffer.alloc(32, 0x61).toString('base64'),
  ];
  for (const text of bad) {
    assert.throws(
      () => parseMasterKey(text),
      (e: unknown) => e instanceof Error && !(e instanceof AppError) && /^OBSCURA_MASTER_KEY\b/.test(e.message) && (text.length < 8 || !e.message.includes(text)),
      JSON.stringify(text),
    );
  }
});
