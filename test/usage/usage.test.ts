import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { DB_KINDS, openTestDb, superQuery, type TestDb } from '../support/db.js';
import { api, createTenant, mintKey, type Tenant } from '../support/server.js';
import { startPerimeterServer, type PerimeterServer } from './support.js';
import { recordUsage } from '../../src/usage/meter.js';
import { monthOf } from '../../src/usage/month.js';

/** Every text value of every row of every table in the public schema, as one string (for leak scans). */
async function dumpDatabase(t: TestDb): Promise<string> {
  const tables = await superQuery(t, `select tablename from pg_tables where schemaname = 'public'`);
  let out = '';
  for (const { tablename } of tables) out += JSON.stringify(await superQuery(t, `select t::text as row from "${String(tablename)}" t`));
  return out;
}

for (const kind of DB_KINDS) {
  describe(`usage metering (${kind})`, () => {
    let t: TestDb;
    let s: PerimeterServer;
    let a: Tenant;
    const logLines: string[] = [];

    before(async () => {
      t = await openTestDb(kind);
      const stream = new Writable({
        write(chunk, _enc, cb) {
          logLines.push(String(chunk));
          cb();
        },
      });
      s = await startPerimeterServer(t.db, { deps: { logger: { stream, level: 'debug' } } });
      a = await createTenant(t.db, 'Metered');
    });
    after(async () => {
      await s.close();
      await t.close();
    });

    test('counts requests and bytes per app and per key, and GET /v1/usage reports them', async () => {
      const other = await mintKey(t.db, a, { kind: 'restricted', scopes: ['apps:read', 'apps:write'] });
      for (let i = 0; i < 3; i++) assert.equal((await api(s.url, 'GET', '/v1/apps', { key: other.secret })).status, 200);
      const body = { name: 'n'.repeat(200) };
      assert.equal((await api(s.url, 'POST', '/v1/apps', { key: other.secret, body })).status, 201);

      const r = await api(s.url, 'GET', '/v1/usage', { key: a.key });
      assert.equal(r.status, 200);
      assert.equal(r.body.month, monthOf(Date.now()));
      const app = r.body.apps.find((x: { app_id: string }) => x.app_id === a.appId);
      const byKey = Object.fromEntries(app.keys.map((k: { key_id: string }) => [k.key_id, k]));
      assert.equal(byKey[other.id].requests, 4);
      assert.ok(byKey[other.id].bytes_in >= JSON.stringify(body).length, `bytes_in ${byKey[other.id].bytes_in}`);
      assert.ok(byKey[other.id].bytes_out > 0);
      assert.equal(byKey[a.keyId], undefined, 'the reading request itself is counted after it is answered');
      assert.equal(app.requests, 4);
      // The app created by the POST shows up too, with nothing used.
      assert.equal(r.body.apps.length, 2);
      // Another read now includes the first GET /v1/usage.
      const again = await api(s.url, 'GET', `/v1/usage?app_id=${a.appId}`, { key: a.key });
      assert.equal(again.body.apps.length, 1);
      assert.equal(again.body.apps[0].requests, 5);
    });

    test('recordUsage() adds exports by media type and processing seconds for the app and key', async () => {
      recordUsage(s.perimeter.meter, { orgId: a.orgId, appId: a.appId, keyId: a.keyId, exports: { 'image/webp': 2, 'image/avif': 1 }, processingMs: 1500 });
      recordUsage(s.perimeter.meter, { orgId: a.orgId, appId: a.appId, exports: { 'IMAGE/WEBP; q=1': 1 }, processingMs: 250 });
      const r = await api(s.url, 'GET', `/v1/usage?app_id=${a.appId}`, { key: a.key });
      const app = r.body.apps[0];
      assert.deepEqual(app.exports, { total: 4, by_type: { 'image/webp': 3, 'image/avif': 1 }, by_resolution: {} });
      assert.equal(app.processing_seconds, 1.75);
      const none = app.keys.find((k: { key_id: string | null }) => k.key_id === null);
      assert.deepEqual(none.exports, { total: 1, by_type: { 'image/webp': 1 }, by_resolution: {} }, 'usage no credential caused is its own row');
      assert.throws(() => recordUsage(s.perimeter.meter, { orgId: a.orgId, appId: a.appId, requests: -1 }), RangeError);
    });

    test('GET /v1/usage/daily files each count under its UTC day (zero-filled up to today), by media type and resolution; the month report carries the same resolution counts', async () => {
      const b = await createTenant(t.db, 'Daily');
      const today = new Date();
      const month = today.toISOString().slice(0, 7);
      const day = today.toISOString().slice(0, 10);
      const earlier = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), 1, 12));
      recordUsage(s.perimeter.meter, { orgId: b.orgId, appId: b.appId, exports: { 'image/webp': 2 }, resolutions: { '720p': 2 }, processingMs: 500, at: earlier });
      recordUsage(s.perimeter.meter, { orgId: b.orgId, appId: b.appId, exports: { 'video/mp4': 1 }, resolutions: { '1080p': 1, bogus: 5 }, bytesOut: 1000 });
      const r = await api(s.url, 'GET', `/v1/usage/daily?month=${month}`, { key: b.key });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.month, month);
      assert.equal(r.body.days.length, today.getUTCDate(), 'every day of the month so far');
      assert.equal(r.body.days.at(-1).day, day);
      const first = r.body.days[0];
      const last = r.body.days.at(-1);
      if (earlier.toISOString().slice(0, 10) !== day) {
        assert.deepEqual(first.exports, { total: 2, by_type: { 'image/webp': 2 }, by_resolution: { '720p': 2 } });
        assert.equal(first.processing_seconds, 0.5);
        assert.deepEqual(last.exports, { total: 1, by_type: { 'video/mp4': 1 }, by_resolution: { '1080p': 1 } }, 'an unknown bucket is not counted');
      }
      assert.ok(last.bytes_out >= 1000);
      const monthly = await api(s.url, 'GET', `/v1/usage?month=${month}&app_id=${b.appId}`, { key: b.key });
      assert.deepEqual(monthly.body.apps[0].exports.by_resolution, { '720p': 2, '1080p': 1 });
      // Another org's usage is not in this org's days.
      const other = await api(s.url, 'GET', `/v1/usage/daily?month=${month}`, { key: a.key });
      assert.ok(other.body.days.every((d: any) => !d.exports.by_type['video/mp4']));
      const bad = await api(s.url, 'GET', '/v1/usage/daily?month=2026-13', { key: b.key });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.code, 'ERR_VALIDATION');
    });

    test('counts monthly active end users from Obscura-End-User as keyed hashes; the raw id is never stored or logged', async () => {
      const alice = 'alice.liddell+private@example.com';
      for (let i = 0; i < 3; i++) await api(s.url, 'GET', '/v1/apps', { key: a.key, headers: { 'obscura-end-user': alice } });
      await api(s.url, 'GET', '/v1/apps', { key: a.key, headers: { 'obscura-end-user': 'bob-42' } });
      const r = await api(s.url, 'GET', `/v1/usage?app_id=${a.appId}`, { key: a.key });
      assert.equal(r.body.apps[0].monthly_active_end_users, 2);

      const rows = await superQuery(t, 'select user_hash from usage_end_users where org_id = $1', [a.orgId]);
      const month = monthOf(Date.now());
      const expected = s.perimeter.meter.endUserHash(a.orgId, a.appId, month, alice);
      assert.ok(rows.some((x) => x.user_hash === expected), 'stored as the keyed hash');
      const dump = await dumpDatabase(t);
      assert.ok(!dump.includes(alice) && !dump.includes('bob-42'), 'raw end-user id found in the database');
      assert.ok(!dump.includes('alice.liddell'), 'part of the raw id found in the database');
      assert.ok(logLines.length > 0, 'the logger captured lines');
      assert.ok(!logLines.join('').includes('alice.liddell'), 'raw end-user id found in the logs');
    });

    test('hashes the same end user differently in another org (per-org key derived from the master key)', async () => {
      const b = await createTenant(t.db, 'Other org');
      await api(s.url, 'GET', '/v1/apps', { key: b.key, headers: { 'obscura-end-user': 'shared-user' } });
      await api(s.url, 'GET', '/v1/apps', { key: a.key, headers: { 'obscura-end-user': 'shared-user' } });
      await s.perimeter.meter.flush();
      const rows = await superQuery(t, 'select org_id, user_hash from usage_end_users where org_id = any($1::uuid[])', [[a.orgId, b.orgId]]);
      const month = monthOf(Date.now());
      const ha = s.perimeter.meter.endUserHash(a.orgId, a.appId, month, 'shared-user');
      const hb = s.perimeter.meter.endUserHash(b.orgId, b.appId, month, 'shared-user');
      assert.notEqual(ha, hb);
      assert.ok(rows.some((x) => x.org_id === a.orgId && x.user_hash === ha));
      assert.ok(rows.some((x) => x.org_id === b.orgId && x.user_hash === hb));
    });

    test('refuses an end-user id over 200 characters with 400 ERR_VALIDATION and counts no end user', async () => {
      const before = (await api(s.url, 'GET', `/v1/usage?app_id=${a.appId}`, { key: a.key })).body.apps[0].monthly_active_end_users;
      const r = await api(s.url, 'GET', '/v1/apps', { key: a.key, headers: { 'obscura-end-user': 'x'.repeat(201) } });
      assert.equal(r.status, 400);
      assert.equal(r.body.code, 'ERR_VALIDATION');
      const ok = await api(s.url, 'GET', '/v1/apps', { key: a.key, headers: { 'obscura-end-user': 'y'.repeat(200) } });
      assert.equal(ok.status, 200);
      const after = (await api(s.url, 'GET', `/v1/usage?app_id=${a.appId}`, { key: a.key })).body.apps[0].monthly_active_end_users;
      assert.equal(after, before + 1, 'only the valid id was counted');
    });

    test('requires usage:read, shows only the caller org, and validates the month', async () => {
      const noScope = await mintKey(t.db, a, { kind: 'restricted', scopes: ['apps:read'] });
      const denied = await api(s.url, 'GET', '/v1/usage', { key: noScope.secret });
      assert.equal(denied.status, 403);
      assert.equal(denied.body.code, 'ERR_SCOPE_MISSING');
      const c = await createTenant(t.db, 'Stranger');
      const mine = await api(s.url, 'GET', '/v1/usage', { key: c.key });
      assert.deepEqual(mine.body.apps.map((x: { app_id: string }) => x.app_id), [c.appId]);
      const foreign = await api(s.url, 'GET', `/v1/usage?app_id=${a.appId}`, { key: c.key });
      assert.deepEqual(foreign.body.apps, [], 'another org app id yields nothing');
      const bad = await api(s.url, 'GET', '/v1/usage?month=2026-13', { key: a.key });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.code, 'ERR_VALIDATION');
      const old = await api(s.url, 'GET', '/v1/usage?month=2001-01', { key: a.key });
      assert.equal(old.status, 200);
      assert.equal(old.body.apps[0].requests, 0);
      assert.equal(old.body.resets_at, '2001-02-01T00:00:00.000Z');
    });

    test('tenant transactions cannot read another org usage rows (row-level security)', async () => {
      const c = await createTenant(t.db, 'Nosy');
      const rows = await t.db.withTenant(c.orgId, (trx) => trx.selectFrom('usage_counters').select('org_id').where('org_id', '=', a.orgId).execute());
      assert.deepEqual(rows, []);
      const users = await t.db.withTenant(c.orgId, (trx) => trx.selectFrom('usage_end_users').select('org_id').execute());
      assert.ok(users.every((u) => u.org_id === c.orgId));
      const sys = await t.db.system.selectFrom('usage_counters').select('org_id').where('org_id', '=', a.orgId).execute();
      assert.ok(sys.length > 0, 'the rows exist');
    });
  });
}
