import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { DB_KINDS, openTestDb, superQuery, type TestDb } from '../support/db.js';
import { createTenant, type Tenant } from '../support/server.js';

for (const kind of DB_KINDS) {
  describe(`row-level security, the second wall (${kind})`, () => {
    let t: TestDb;
    let a: Tenant;
    let b: Tenant;
    before(async () => {
      t = await openTestDb(kind);
      a = await createTenant(t.db, 'A');
      b = await createTenant(t.db, 'B');
    });
    after(() => t.close());

    test('the role in a tenant transaction is neither superuser nor owner, so RLS applies', async () => {
      const r = await t.db.withTenant(a.orgId, (trx) =>
        sql<{ rolsuper: boolean; rolbypassrls: boolean; user: string }>`select r.rolsuper, r.rolbypassrls, current_user as user from pg_roles r where r.rolname = current_user`.execute(trx),
      );
      assert.equal(r.rows[0]!.user, 'obscura_app');
      assert.equal(r.rows[0]!.rolsuper, false);
      assert.equal(r.rows[0]!.rolbypassrls, false);
    });

    test('a query that forgets the org_id filter still sees only its own org', async () => {
      for (const table of ['apps', 'api_keys', 'audit_log', 'orgs'] as const) {
        const rows = await t.db.withTenant(a.orgId, (trx) => sql<{ org: string }>`select ${sql.ref(table === 'orgs' ? 'id' : 'org_id')}::text as org from ${sql.table(table)}`.execute(trx));
        assert.ok(rows.rows.length > 0, table);
        assert.ok(rows.rows.every((r) => r.org === a.orgId), `${table} leaked another org`);
      }
      // The same unfiltered query at owner level sees both orgs: the test would fail without RLS.
      const all = await sql<{ org: string }>`select distinct org_id::text as org from apps`.execute(t.db.system);
      assert.deepEqual(new Set(all.rows.map((r) => r.org)), new Set([a.orgId, b.orgId]));
    });

    test("a tenant transaction cannot write rows into another org, nor update or delete them", async () => {
      await assert.rejects(
        t.db.withTenant(a.orgId, (trx) => trx.insertInto('apps').values({ id: crypto.randomUUID(), org_id: b.orgId, name: 'smuggled', settings: '{}' }).execute()),
        /row-level security|policy/i,
      );
      const upd = await t.db.withTenant(a.orgId, (trx) => trx.updateTable('apps').set({ name: 'hijacked' }).where('id', '=', b.appId).executeTakeFirst());
      assert.equal(Number(upd.numUpdatedRows), 0);
      const del = await t.db.withTenant(a.orgId, (trx) => trx.deleteFrom('api_keys').where('org_id', '=', b.orgId).executeTakeFirst());
      assert.equal(Number(del.numDeletedRows), 0);
      const name = await t.db.system.selectFrom('apps').select('name').where('id', '=', b.appId).executeTakeFirstOrThrow();
      assert.equal(name.name, 'B app');
      // Its own rows it can update.
      const own = await t.db.withTenant(a.orgId, (trx) => trx.updateTable('apps').set({ name: 'A app' }).where('id', '=', a.appId).executeTakeFirst());
      assert.equal(Number(own.numUpdatedRows), 1);
    });

    test('the tenant role cannot alter the audit log, and neither can the owner', async () => {
      await assert.rejects(t.db.withTenant(a.orgId, (trx) => sql`update audit_log set action = 'x'`.execute(trx)), /permission denied|append-only/i);
      await assert.rejects(t.db.withSystem((trx) => sql`delete from audit_log`.execute(trx)), /append-only/);
      // On PostgreSQL the runtime role has no TRUNCATE right at all; on PGlite the trigger refuses.
      await assert.rejects(t.db.withSystem((trx) => sql`truncate audit_log`.execute(trx)), /permission denied|append-only/);
      // The owner (or a superuser) is refused by the trigger.
      await assert.rejects(superQuery(t, 'truncate audit_log'), /append-only/);
    });
  });
}
