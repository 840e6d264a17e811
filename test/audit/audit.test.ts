import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DB_KINDS, openTestDb, superExec, superQuery, type TestDb } from '../support/db.js';
import { createTenant, masterKeysFor, type Tenant } from '../support/server.js';
import { appendAudit, canonicalJson, verifyAudit as verifyWith } from '../../src/audit/log.js';
import { loadAuditKeys, openAuditKey } from '../../src/audit/keys.js';
import type { DatabaseHandle } from '../../src/db/database.js';

/** Verifies with the keys the runtime would load (as `obscura audit verify` does). */
async function verify(db: DatabaseHandle, opts: { orgId?: string } = {}) {
  return verifyWith(db.system, { ...opts, keys: await loadAuditKeys(db.system, masterKeysFor(db)) });
}

test('canonical JSON sorts keys at every depth and drops undefined', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: undefined } }), '{"a":{"d":[1,{"y":2,"z":1}]},"b":1}');
});

for (const kind of DB_KINDS) {
  describe(`audit log hash chain (${kind})`, () => {
    let t: TestDb;
    let a: Tenant;
    let b: Tenant;
    before(async () => {
      t = await openTestDb(kind);
      await openAuditKey(t.db, masterKeysFor(t.db));
      a = await createTenant(t.db, 'A');
      b = await createTenant(t.db, 'B');
      for (let i = 0; i < 5; i++) {
        await t.db.withTenant(a.orgId, (trx) => appendAudit(trx, { orgId: a.orgId, actor: { type: 'cli', id: 't' }, action: 'test.event', data: { i, nested: { z: 1, a: [1, 2] } } }));
      }
    });
    after(() => t.close());

    test('an untouched log verifies, one chain per org', async () => {
      const r = await verify(t.db);
      assert.equal(r.ok, true);
      assert.deepEqual(r.chains.map((c) => c.chain).sort(), [`org:${a.orgId}`, `org:${b.orgId}`].sort());
      assert.ok(r.chains.find((c) => c.chain === `org:${a.orgId}`)!.entries >= 8);
    });

    test('concurrent appends to one chain never fork it', async () => {
      await Promise.all(
        Array.from({ length: 12 }, (_, i) => t.db.withTenant(b.orgId, (trx) => appendAudit(trx, { orgId: b.orgId, actor: { type: 'cli' }, action: 'test.concurrent', data: { i } }))),
      );
      const r = await verify(t.db, { orgId: b.orgId });
      assert.equal(r.ok, true);
      assert.equal(r.chains[0]!.entries, 3 + 12);
    });

    test('editing a row directly in SQL breaks the chain at exactly that entry', async () => {
      const rows = await superQuery(t, 'select id, chain_seq from audit_log where org_id = $1 order by chain_seq', [a.orgId]);
      const victim = rows[4]!;
      // Bypass the append-only trigger as a superuser would (the attack this detects).
      await superExec(t, `set session_replication_role = replica; update audit_log set data = '{"i": 99}' where id = ${Number(victim.id)}; set session_replication_role = origin;`);
      const r = await verify(t.db);
      assert.equal(r.ok, false);
      const chain = r.chains.find((c) => c.chain === `org:${a.orgId}`)!;
      assert.equal(chain.broken?.id, Number(victim.id));
      assert.equal(chain.broken?.reason, 'hash_mismatch');
      // The other org's chain is unaffected.
      assert.equal(r.chains.find((c) => c.chain === `org:${b.orgId}`)!.broken, undefined);
    });
  });
}
