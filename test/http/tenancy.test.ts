import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DB_KINDS, openTestDb, superQuery, type TestDb } from '../support/db.js';
import { startServer, createTenant, mintKey, api, type TestServer, type Tenant } from '../support/server.js';

for (const kind of DB_KINDS) {
  describe(`cross-tenant isolation over HTTP (${kind})`, () => {
    let t: TestDb;
    let s: TestServer;
    let a: Tenant;
    let b: Tenant;
    let aKeyId: string;

    before(async () => {
      t = await openTestDb(kind);
      s = await startServer(t.db);
      a = await createTenant(t.db, 'Org A');
      b = await createTenant(t.db, 'Org B');
      aKeyId = (await mintKey(t.db, a, { kind: 'restricted', scopes: ['apps:read'] })).id;
    });
    after(async () => {
      await s.close();
      await t.close();
    });

    // Every endpoint that names an org A resource. Each row: method, path, body.
    const matrix = () => [
      ['GET', `/v1/apps/${a.appId}`, undefined],
      ['PATCH', `/v1/apps/${a.appId}`, { name: 'pwned' }],
      ['GET', `/v1/apps/${a.appId}/keys`, undefined],
      ['POST', `/v1/apps/${a.appId}/keys`, { kind: 'secret' }],
      ['GET', `/v1/keys/${aKeyId}`, undefined],
      ['POST', `/v1/keys/${aKeyId}/roll`, { grace_period_seconds: 0 }],
      ['DELETE', `/v1/keys/${aKeyId}`, undefined],
    ] as const;

    test("org B's key gets 404 ERR_NOT_FOUND on every org A resource and changes nothing", async () => {
      const snapshot = async () => JSON.stringify(await superQuery(t, 'select id, name, settings from apps order by id')) + JSON.stringify(await superQuery(t, 'select id, revoked_at, rolled_to from api_keys order by id'));
      const before = await snapshot();
      for (const [method, path, body] of matrix()) {
        const r = await api(s.url, method, path, { key: b.key, body });
        assert.equal(r.status, 404, `${method} ${path}`);
        assert.equal(r.body.code, 'ERR_NOT_FOUND', `${method} ${path}`);
      }
      assert.equal(await snapshot(), before);
    });

    test('the 404 for "not yours" is identical to the 404 for "does not exist"', async () => {
      const missing = await api(s.url, 'GET', '/v1/apps/00000000-0000-4000-8000-000000000000', { key: b.key });
      const notYours = await api(s.url, 'GET', `/v1/apps/${a.appId}`, { key: b.key });
      assert.equal(missing.status, notYours.status);
      assert.equal(missing.body.code, notYours.body.code);
      assert.equal(missing.body.detail, notYours.body.detail);
    });

    test("org A's own key succeeds on every endpoint of the matrix", async () => {
      for (const [method, path, body] of matrix()) {
        const r = await api(s.url, method, path, { key: a.key, body: method === 'PATCH' ? { name: 'renamed' } : body });
        assert.ok(r.status >= 200 && r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
      }
    });

    test("listings never include another org's rows", async () => {
      const apps = await api(s.url, 'GET', '/v1/apps', { key: b.key });
      assert.deepEqual(apps.body.data.map((x: { id: string }) => x.id), [b.appId]);
      const audit = await api(s.url, 'GET', '/v1/audit?limit=500', { key: b.key });
      assert.ok(audit.body.data.length > 0);
      assert.ok(audit.body.data.every((e: { target: Record<string, string> }) => e.target.app !== a.appId && e.target.org !== a.orgId));
    });
  });
}
