/**
 * Upgrading to 0011 (issue 9, item 3): `assets:delete` is new, so keys and OAuth clients that held
 * every earlier scope get it and keep deleting; narrower credentials do not gain it. The database is
 * migrated to 0007 as a release before this one would have left it, rows are written, then the
 * production `openDatabase` applies the rest and a real server answers with the upgraded keys.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { Kysely, Migrator, PostgresDialect } from 'kysely';
import { MIGRATIONS, migrate } from '../../src/db/migrations.js';
import { sql } from 'kysely';
import { openDatabase } from '../../src/db/database.js';
import { generateApiKey, hashApiKey, displayApiKey } from '../../src/crypto/apikey.js';
import { createEmptyDatabase, openTestDb } from '../support/db.js';
import { startServer, api } from '../support/server.js';
import { markedPng } from '../support/media.js';

const BEFORE_0011 = ['apps:read', 'apps:write', 'keys:manage', 'assets:read', 'assets:write', 'jobs:read', 'jobs:write', 'webhooks:manage', 'audit:read', 'usage:read'];

describe('migration 0011 (scopes)', () => {
  test('a full key minted before the upgrade gains assets:delete and keeps deleting; an uploader key does not gain it', async () => {
    const { url, adminUrl } = await createEmptyDatabase('postgres');
    const old = new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }) });
    const to0007 = await new Migrator({ db: old, provider: { getMigrations: async () => MIGRATIONS } }).migrateTo('0007_jobs');
    assert.equal(to0007.error, undefined);
    await old.destroy();

    const orgId = randomUUID();
    const appId = randomUUID();
    const full = generateApiKey('secret');
    const uploader = generateApiKey('restricted');
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      await admin.query('insert into orgs (id, name) values ($1, $2)', [orgId, 'Before']);
      await admin.query('insert into apps (id, org_id, name) values ($1, $2, $3)', [appId, orgId, 'Before app']);
      for (const [key, kind, scopes] of [[full, 'secret', BEFORE_0011], [uploader, 'restricted', ['assets:read', 'assets:write']]] as const) {
        await admin.query('insert into api_keys (id, org_id, app_id, kind, hash, display, scopes) values ($1, $2, $3, $4, $5, $6, $7)', [randomUUID(), orgId, appId, kind, hashApiKey(key), displayApiKey(key), scopes]);
      }
      await admin.query('insert into oauth_clients (id, org_id, app_id, client_id, name, secret_hash, scopes) values ($1, $2, $3, $4, $5, $6, $7)', [randomUUID(), orgId, appId, 'obs_client_before0011', 'before', 'x', BEFORE_0011]);
    } finally {
      await admin.end();
    }

    // The production path: opening the database applies the pending migrations.
    const db = await openDatabase({ kind: 'postgres', url, poolSize: 2 });
    const s = await startServer(db);
    try {
      const me = await api(s.url, 'GET', '/v1/whoami', { key: full });
      assert.equal(me.status, 200);
      assert.ok(me.body.scopes.includes('assets:delete'));
      const narrow = await api(s.url, 'GET', '/v1/whoami', { key: uploader });
      assert.deepEqual(narrow.body.scopes, ['assets:read', 'assets:write']);
      // The attack and its legitimate twin, on a real asset.
      const up = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${uploader}`, 'content-type': 'image/png' }, body: new Uint8Array(await markedPng('upgrade')) });
      assert.equal(up.status, 201);
      const assetId = ((await up.json()) as { id: string }).id;
      const refused = await api(s.url, 'DELETE', `/v1/assets/${assetId}`, { key: uploader });
      assert.equal(refused.status, 403);
      assert.equal(refused.body.code, 'ERR_SCOPE_MISSING');
      assert.equal((await api(s.url, 'DELETE', `/v1/assets/${assetId}`, { key: full })).status, 204);
      const client = await db.system.selectFrom('oauth_clients').select('scopes').where('client_id', '=', 'obs_client_before0011').executeTakeFirstOrThrow();
      assert.ok(client.scopes.includes('assets:delete'));
    } finally {
      await s.close();
      await db.close();
    }
  });

  test('a migration numbered below one already applied (numbers are handed out before work lands) is still applied at the next start', async () => {
    const t = await openTestDb('pglite');
    try {
      MIGRATIONS['0008_late_probe'] = { up: async (db) => void (await sql`CREATE TABLE late_probe (id integer)`.execute(db)) };
      assert.deepEqual(await migrate(t.db.system), ['0008_late_probe']);
      const r = await sql<{ n: number }>`select count(*)::int as n from late_probe`.execute(t.db.system);
      assert.equal(r.rows[0]!.n, 0);
    } finally {
      delete MIGRATIONS['0008_late_probe'];
      await t.close();
    }
  });
});
