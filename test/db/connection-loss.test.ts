import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { openTestDb, superQuery, type TestDb } from '../support/db.js';
import { createTenant, type Tenant } from '../support/server.js';

// Found by the full suite under load: PostgreSQL stopped while a request held a connection between
// two statements of its transaction, and the server died of an unhandled 'error' event.
describe('a PostgreSQL connection terminated while a transaction holds it', () => {
  let t: TestDb;
  let a: Tenant;
  before(async () => {
    t = await openTestDb('postgres');
    a = await createTenant(t.db, 'Held');
  });
  after(() => t.close());

  test('fails that transaction only: the process survives, and the next transaction gets a fresh connection', async () => {
    const crashes: unknown[] = [];
    const onUncaught = (err: unknown) => crashes.push(err);
    process.on('uncaughtException', onUncaught);
    try {
      let terminated!: () => void;
      const done = new Promise<void>((res) => (terminated = res));
      const held = t.db.withTenant(a.orgId, async (trx) => {
        const pid = (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)).rows[0]!.pid;
        // Between two statements: the connection is checked out and idle in the transaction.
        const killed = await superQuery(t, 'select pg_terminate_backend($1) as ok', [pid]);
        assert.equal(killed[0]!.ok, true);
        // The termination reaches the client asynchronously; wait until the socket has seen it.
        for (let i = 0; i < 200 && crashes.length === 0; i++) {
          const alive = await superQuery(t, 'select count(*)::int as n from pg_stat_activity where pid = $1', [pid]);
          if (alive[0]!.n === 0) break;
          await new Promise((r) => setTimeout(r, 10));
        }
        await new Promise((r) => setTimeout(r, 50));
        terminated();
        await sql`select 1`.execute(trx);
      });
      await assert.rejects(held);
      await done;
      assert.deepEqual(crashes, [], 'no uncaught error');
      const r = await t.db.withTenant(a.orgId, (trx) => sql<{ n: number }>`select count(*)::int as n from apps`.execute(trx));
      assert.equal(r.rows[0]!.n >= 1, true);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });
});
