/**
 * Per-route credential-kind policy (issue 10, item 6): server-side work (POST /v1/process, POST
 * /v1/jobs, DELETE /v1/assets/{id}) declares `config.keyKinds`, which the auth hook enforces for every
 * route in one place and OpenAPI publishes. Publishable keys are granted only assets:write, so the
 * scope check already refuses them; this policy is the second wall. To show it holding on its own,
 * the test gives a publishable key the needed scopes directly in the database (as a bug or a tampered
 * row would) and shows it still refused, while a secret key with the same scopes succeeds.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openTestDb, superQuery, type TestDb } from '../support/db.js';
import { api, createTenant, mintKey, startServer, type Tenant, type TestServer } from '../support/server.js';
import { markedPng } from '../support/media.js';

describe('credential kinds per route', () => {
  let t: TestDb;
  let srv: TestServer;
  let a: Tenant;
  let publishable: { id: string; secret: string };
  const origin = 'https://shop.example';

  before(async () => {
    t = await openTestDb('pglite');
    srv = await startServer(t.db);
    a = await createTenant(t.db, 'Kinds');
    publishable = await mintKey(t.db, a, { kind: 'publishable', name: 'browser', allowedOrigins: [origin] });
    // What no API allows: a publishable key holding server-side scopes.
    await superQuery(t, `update api_keys set scopes = $2 where id = $1`, [publishable.id, ['assets:write', 'assets:read', 'assets:delete', 'jobs:write', 'jobs:read']]);
  });
  after(async () => {
    await srv?.close();
    await t?.close();
  });

  test('OpenAPI publishes the credential kinds of the routes that restrict them', async () => {
    const doc = (await api(srv.url, 'GET', '/docs/json')).body;
    for (const [path, method] of [['/v1/process', 'post'], ['/v1/jobs', 'post'], ['/v1/assets/{id}', 'delete']] as const) {
      const op = doc.paths[path][method];
      assert.deepEqual(op['x-obscura-key-kinds'], ['secret', 'restricted', 'token', 'session'], `${method} ${path}`);
      assert.match(op.description, /not publishable keys/);
    }
    assert.equal(doc.paths['/v1/assets'].post['x-obscura-key-kinds'], undefined, 'uploads stay open to publishable keys');
  });

  test('a publishable key holding the scopes is still refused with 403 ERR_SCOPE_MISSING naming its kind; a secret key succeeds', async () => {
    assert.equal((await api(srv.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { allow_browser_uploads: true } } })).status, 200);
    const headers = { origin, 'content-type': 'image/png' };
    const png = await markedPng('kinds', 32, 32);
    const up = await fetch(`${srv.url}/v1/assets`, { method: 'POST', headers: { ...headers, authorization: `Bearer ${publishable.secret}` }, body: new Uint8Array(png) });
    assert.equal(up.status, 201, 'the publishable key still uploads');
    const asset = ((await up.json()) as { id: string }).id;

    for (const [method, path, body] of [
      ['POST', '/v1/process', { input: { asset_id: asset }, operations: 'format:png' }],
      ['POST', '/v1/jobs', { input: { asset_id: asset }, operations: 'format:png' }],
      ['DELETE', `/v1/assets/${asset}`, undefined],
    ] as const) {
      const r = await api(srv.url, method, path, { key: publishable.secret, body, headers: { origin } });
      assert.equal(r.status, 403, `${method} ${path}`);
      assert.equal(r.body.code, 'ERR_SCOPE_MISSING', JSON.stringify(r.body));
      assert.equal(r.body.key_kind, 'publishable', JSON.stringify(r.body));
    }
    assert.equal((await api(srv.url, 'GET', `/v1/assets/${asset}`, { key: a.key })).status, 200, 'the asset was not deleted');

    const processed = await fetch(`${srv.url}/v1/process`, { method: 'POST', headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { asset_id: asset }, operations: 'format:png' }) });
    assert.equal(processed.status, 200);
    assert.equal((await api(srv.url, 'DELETE', `/v1/assets/${asset}`, { key: a.key })).status, 204);
  });
});
