import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { DB_KINDS, openTestDb, type TestDb } from '../support/db.js';
import { api, createTenant, type Tenant } from '../support/server.js';
import { startPerimeterServer, type PerimeterServer } from './support.js';
import { recordRequestUsage } from '../../src/perimeter/metering.js';
import { updateAppSettings } from '../../src/tenants/index.js';
import type { AppSettings } from '../../src/db/schema.js';
import { monthEnd, monthOf, secondsUntilMonthEnd } from '../../src/usage/month.js';

const BIG = 'x'.repeat(600 * 1024);

/** Stand-ins for the media routes (their real owners opt in the same way). */
function mediaRoutes(app: FastifyInstance): void {
  app.get('/test/media', { config: { auth: true, scope: 'assets:read' } }, async () => ({ ok: true }));
  app.get('/test/big', { config: { auth: true, scope: 'assets:read' } }, async (_req, reply) => reply.type('text/plain').send(BIG));
  app.post('/test/export', { config: { auth: true, scope: 'jobs:write', quota: { exports: true } } }, async (req) => {
    recordRequestUsage(req, { exports: { 'image/webp': 1 } });
    return { ok: true };
  });
}

async function setQuotas(t: TestDb, a: Tenant, settings: AppSettings): Promise<void> {
  await t.db.withTenant(a.orgId, (trx) => updateAppSettings(trx, a.orgId, a.appId, { settings }, { actor: { type: 'cli', id: 'test' } }));
}

for (const kind of DB_KINDS) {
  describe(`monthly quotas (${kind})`, () => {
    let t: TestDb;
    let s: PerimeterServer;

    before(async () => {
      t = await openTestDb(kind);
      // Key cache TTL 0: every check re-reads settings and totals (plus what this node has not flushed).
      s = await startPerimeterServer(t.db, { env: { OBSCURA_KEY_CACHE_TTL_MS: '0' }, routes: mediaRoutes });
    });
    after(async () => {
      await s.close();
      await t.close();
    });

    test('refuses requests beyond the monthly request quota with 429 ERR_QUOTA_EXCEEDED, Retry-After and quota headers', async () => {
      const a = await createTenant(t.db, 'Capped');
      await setQuotas(t, a, { quota_requests_per_month: 3 });
      const ok = [];
      for (let i = 0; i < 3; i++) ok.push(await api(s.url, 'GET', '/test/media', { key: a.key }));
      assert.deepEqual(ok.map((r) => r.status), [200, 200, 200]);
      assert.deepEqual(ok.map((r) => r.headers.get('obscura-quota-limit')), ['requests=3', 'requests=3', 'requests=3']);
      assert.deepEqual(ok.map((r) => r.headers.get('obscura-quota-remaining')), ['requests=3', 'requests=2', 'requests=1']);

      const over = await api(s.url, 'GET', '/test/media', { key: a.key });
      assert.equal(over.status, 429);
      assert.match(over.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(over.body.code, 'ERR_QUOTA_EXCEEDED');
      assert.equal(over.body.quota, 'requests');
      assert.equal(over.body.limit, 3);
      assert.equal(over.body.resets_at, monthEnd(monthOf(Date.now())).toISOString());
      const retry = Number(over.headers.get('retry-after'));
      assert.ok(Math.abs(retry - secondsUntilMonthEnd(Date.now())) < 60, `retry-after ${retry}`);
      assert.equal(over.headers.get('obscura-quota-remaining'), 'requests=0');
      assert.equal(over.headers.get('obscura-quota-reset'), over.headers.get('retry-after'));
    });

    test('keeps account management reachable when the quota is used up, so the app can raise it and continue', async () => {
      const a = await createTenant(t.db, 'Raised');
      await setQuotas(t, a, { quota_requests_per_month: 1 });
      assert.equal((await api(s.url, 'GET', '/test/media', { key: a.key })).status, 200);
      assert.equal((await api(s.url, 'GET', '/test/media', { key: a.key })).status, 429);
      const usage = await api(s.url, 'GET', `/v1/usage?app_id=${a.appId}`, { key: a.key });
      assert.equal(usage.status, 200);
      assert.deepEqual(usage.body.apps[0].quotas, { requests: 1, exports: null, bytes: null });
      const raise = await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { quota_requests_per_month: 100 } } });
      assert.equal(raise.status, 200);
      assert.equal((await api(s.url, 'GET', '/test/media', { key: a.key })).status, 200);
      const lift = await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { quota_requests_per_month: null } } });
      assert.equal(lift.status, 200);
      const free = await api(s.url, 'GET', '/test/media', { key: a.key });
      assert.equal(free.status, 200);
      assert.equal(free.headers.get('obscura-quota-limit'), null, 'no quota, no quota headers');
    });

    test('enforces the export quota only where exports are produced', async () => {
      const a = await createTenant(t.db, 'Exporter');
      await setQuotas(t, a, { quota_exports_per_month: 2 });
      assert.equal((await api(s.url, 'POST', '/test/export', { key: a.key })).status, 200);
      assert.equal((await api(s.url, 'POST', '/test/export', { key: a.key })).status, 200);
      const over = await api(s.url, 'POST', '/test/export', { key: a.key });
      assert.equal(over.status, 429);
      assert.equal(over.body.code, 'ERR_QUOTA_EXCEEDED');
      assert.equal(over.body.quota, 'exports');
      const read = await api(s.url, 'GET', '/test/media', { key: a.key });
      assert.equal(read.status, 200);
      assert.equal(read.headers.get('obscura-quota-remaining'), 'exports=0');
      const usage = await api(s.url, 'GET', `/v1/usage?app_id=${a.appId}`, { key: a.key });
      assert.deepEqual(usage.body.apps[0].exports, { total: 2, by_type: { 'image/webp': 2 }, by_resolution: {} }, 'the refused export produced nothing');
    });

    test('counts bytes in and out against the byte quota', async () => {
      const a = await createTenant(t.db, 'Heavy');
      await setQuotas(t, a, { quota_bytes_per_month: 1024 * 1024 });
      assert.equal((await api(s.url, 'GET', '/test/big', { key: a.key })).status, 200);
      assert.equal((await api(s.url, 'GET', '/test/big', { key: a.key })).status, 200);
      const over = await api(s.url, 'GET', '/test/big', { key: a.key });
      assert.equal(over.status, 429);
      assert.equal(over.body.quota, 'bytes');
      assert.ok(over.body.used >= 2 * BIG.length, `used ${over.body.used}`);
    });

    test('another node sees usage this node has flushed', async () => {
      const a = await createTenant(t.db, 'Fleet');
      await setQuotas(t, a, { quota_requests_per_month: 4 });
      const other = await startPerimeterServer(t.db, { env: { OBSCURA_KEY_CACHE_TTL_MS: '0' }, routes: mediaRoutes });
      try {
        assert.equal((await api(other.url, 'GET', '/test/media', { key: a.key })).status, 200);
        assert.equal((await api(other.url, 'GET', '/test/media', { key: a.key })).status, 200);
        await other.perimeter.meter.flush();
        assert.equal((await api(s.url, 'GET', '/test/media', { key: a.key })).status, 200);
        assert.equal((await api(s.url, 'GET', '/test/media', { key: a.key })).status, 200);
        const over = await api(s.url, 'GET', '/test/media', { key: a.key });
        assert.equal(over.status, 429);
        assert.equal(over.body.used, 4);
      } finally {
        await other.close();
      }
    });

    test('a quota of 0 stops media requests at once (0 never means unlimited)', async () => {
      const a = await createTenant(t.db, 'Zero');
      const set = await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { quota_requests_per_month: 0 } } });
      assert.equal(set.status, 200);
      assert.equal(set.body.settings.quota_requests_per_month, 0);
      const r = await api(s.url, 'GET', '/test/media', { key: a.key });
      assert.equal(r.status, 429);
      assert.equal(r.body.code, 'ERR_QUOTA_EXCEEDED');
    });

    test('refuses an invalid quota setting with 400 and changes nothing', async () => {
      const a = await createTenant(t.db, 'Invalid');
      const bad = await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { quota_requests_per_month: -5 } } });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.code, 'ERR_VALIDATION');
      const app = await api(s.url, 'GET', `/v1/apps/${a.appId}`, { key: a.key });
      assert.equal(app.body.settings.quota_requests_per_month, undefined);
    });
  });
}
