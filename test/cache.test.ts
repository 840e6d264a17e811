/**
 * Issue 12, item 6: caches are bounded in bytes, not entries. `ByteLru` (src/cache.ts) directly, and
 * the keyring's cache of unwrapped org keys (the one long-lived cache built on it) filled past its
 * bound through `Keyring.current` on a real embedded database, as uploads and processing call it.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ByteLru, ENTRY_OVERHEAD_BYTES } from '../src/cache.js';
import { Keyring } from '../src/crypto/keyring.js';
import { createOrg } from '../src/tenants/index.js';
import { openTestDb } from './support/db.js';
import { masterKeysFor } from './support/server.js';

const sized = (maxBytes: number, now?: () => number) => new ByteLru<string, Buffer>({ maxBytes, sizeOf: (v) => v.length, now, ttlMs: now ? 1000 : undefined });

describe('ByteLru', () => {
  test('evicts the least recently used entries once the bytes exceed the bound, never more than the bound', () => {
    const c = sized(3 * (100 + ENTRY_OVERHEAD_BYTES));
    c.set('a', Buffer.alloc(100));
    c.set('b', Buffer.alloc(100));
    c.set('c', Buffer.alloc(100));
    assert.ok(c.get('a')); // a is now the most recent: b goes first
    c.set('d', Buffer.alloc(100));
    assert.equal(c.has('b'), false);
    assert.deepEqual([c.has('a'), c.has('c'), c.has('d')], [true, true, true]);
    assert.equal(c.evictions, 1);
    assert.ok(c.bytes <= c.maxBytes);
    c.set('big', Buffer.alloc(250)); // needs two small entries' room
    assert.ok(c.bytes <= c.maxBytes);
    assert.equal(c.size, 2);
  });

  test('refuses a value larger than the whole bound and drops the stale value under its key', () => {
    const c = sized(1000);
    assert.equal(c.set('k', Buffer.alloc(10)), true);
    assert.equal(c.set('k', Buffer.alloc(5000)), false);
    assert.equal(c.get('k'), undefined);
    assert.equal(c.bytes, 0);
  });

  test('an entry older than ttlMs is a miss and frees its bytes', () => {
    let t = 0;
    const c = sized(10_000, () => t);
    c.set('k', Buffer.alloc(10));
    t = 999;
    assert.ok(c.get('k'));
    t = 1000;
    assert.equal(c.get('k'), undefined);
    assert.equal(c.bytes, 0);
  });
});

describe("the keyring's cache of unwrapped org keys", () => {
  let close: (() => Promise<void>) | undefined;
  after(async () => close?.());

  test('holds at most its bound in bytes when more orgs are active than fit, and still serves every org', async () => {
    const t = await openTestDb('pglite');
    close = () => t.close();
    const ctx = { actor: { type: 'cli' as const, id: 'test' } };
    // Room for about three keys (each ~32 B of key, its wrapped form and id, plus the entry overhead).
    const maxBytes = 3 * 600;
    const keyring = new Keyring(t.db, masterKeysFor(t.db), { maxBytes });
    const orgs = [];
    for (let i = 0; i < 8; i++) orgs.push((await t.db.withSystem((trx) => createOrg(trx, `org ${i}`, ctx))).id);
    const first = new Map<string, { id: string; key: Buffer }>();
    for (const org of orgs) {
      const k = await t.db.withTenant(org, (trx) => keyring.current(trx, org));
      first.set(org, { id: k.id, key: Buffer.from(k.key) });
      assert.ok(keyring.cached.bytes <= maxBytes, `held ${keyring.cached.bytes} B`);
    }
    assert.ok(keyring.cached.keys < orgs.length, `kept ${keyring.cached.keys} keys of ${orgs.length}`);
    assert.ok(keyring.cached.keys >= 1);
    // An evicted org's key is read and unwrapped again: the same key, not a new one.
    const again = await keyring.get(orgs[0]!, first.get(orgs[0]!)!.id);
    assert.deepEqual(again, first.get(orgs[0]!)!.key);
  });
});
