import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';

test('the suite has a real PostgreSQL server reachable as a non-superuser role', async () => {
  const admin = new URL(process.env.OBSCURA_TEST_PG_ADMIN_URL!);
  const c = new pg.Client({ host: '127.0.0.1', port: Number(admin.port), user: 'obscura', password: 'obscura', database: 'postgres' });
  await c.connect();
  const r = await c.query('select rolsuper from pg_roles where rolname = current_user');
  await c.end();
  assert.equal(r.rows[0].rolsuper, false);
});
