/**
 * The scope model (issue 9, item 3; docs/security-model.md, "Scopes").
 *
 * 1. A matrix over every route the app registers × every scope it requires, through `app.inject()`.
 *    The routes come from the app's own OpenAPI document, where `declareRouteScopes` publishes each
 *    route's `config.scope(s)`: a route added later is covered without editing this file, and a route
 *    without a credential must be on UNAUTHENTICATED (test/support/inject.ts) with its reason. For each route and each
 *    scope it requires, a credential holding every other scope is refused with 403 ERR_SCOPE_MISSING;
 *    a credential holding exactly the required scopes passes the check (the handler then answers: 2xx,
 *    or 400/404 for the placeholder ids and empty bodies, never a refusal of the credential).
 * 2. The concrete leaks the issue names, against a listening server with fetch: each attack refused
 *    and its legitimate twin succeeding end to end.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { openTestDb, type TestDb } from '../support/db.js';
import { createTenant, mintKey, startServer, api, type Tenant, type TestServer } from '../support/server.js';
import { injectedApp, injectRoute, takesBody, UNAUTHENTICATED, CONSOLE_PREFIX, type InjectedApp, type Route } from '../support/inject.js';
import { markedPng } from '../support/media.js';
import { SCOPES, type Scope } from '../../src/auth/scopes.js';
import { declareRouteScopes, installAuth, type AuthDeps } from '../../src/http/auth.js';
import { signTransformPath } from '../../src/processing/transform.js';

/** Authenticated routes any valid credential may call. */
const ANY_CREDENTIAL: Record<string, string> = {
  'GET /v1/whoami': 'describes the calling credential itself',
};

describe('scope matrix: every route × every required scope (inject)', () => {
  let injected: InjectedApp;
  let t: TestDb;
  let app: FastifyInstance;
  let tenant: Tenant;
  let routes: Route[];
  const keyBySet = new Map<string, string>();

  /** A restricted key holding exactly `scopes` (one per distinct set). */
  const keyFor = async (scopes: readonly Scope[]): Promise<string> => {
    const k = [...scopes].sort().join(' ');
    let secret = keyBySet.get(k);
    if (!secret) {
      secret = (await mintKey(t.db, tenant, { kind: 'restricted', name: k, scopes: [...scopes] })).secret;
      keyBySet.set(k, secret);
    }
    return secret;
  };

  const call = (r: Route, key: string) => {
    const withBody = takesBody(r);
    return injectRoute(app, r, tenant.appId, {
      headers: { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0', ...(withBody ? { 'content-type': 'application/json' } : {}) },
      ...(withBody ? { payload: '{}' } : {}),
    });
  };

  before(async () => {
    // The production app without a port; the matrix refuses on purpose many times from one address,
    // so injectedApp keeps the failed-auth throttle and rate limits out of the way.
    injected = await injectedApp();
    ({ t, app, routes } = injected);
    tenant = await createTenant(t.db, 'Scopes');
  });
  after(async () => {
    await injected?.close();
  });

  test('every route declares its scopes in OpenAPI, or is on the explained list of routes without an API credential', () => {
    assert.ok(routes.length > 40, `only ${routes.length} routes found`);
    const undeclared = routes.filter((r) => r.scopes === null && !(r.id in UNAUTHENTICATED) && !r.path.startsWith(CONSOLE_PREFIX)).map((r) => r.id);
    assert.deepEqual(undeclared, [], 'routes without a credential that are not on the allowlist');
    const unscoped = routes.filter((r) => r.scopes !== null && r.scopes.length === 0 && !(r.id in ANY_CREDENTIAL)).map((r) => r.id);
    assert.deepEqual(unscoped, [], 'authenticated routes that require no scope');
    const stale = Object.keys(UNAUTHENTICATED).filter((id) => !routes.some((r) => r.id === id));
    assert.deepEqual(stale, [], 'allowlist entries for routes that no longer exist');
    for (const r of routes) for (const s of r.scopes ?? []) assert.ok((SCOPES as readonly string[]).includes(s), `${r.id}: unknown scope ${s}`);
  });

  test('a credential lacking any one required scope is refused with 403 ERR_SCOPE_MISSING naming it, on every route', async () => {
    const failures: string[] = [];
    for (const r of routes) {
      for (const missing of r.scopes ?? []) {
        const res = await call(r, await keyFor(SCOPES.filter((s) => s !== missing)));
        const body = res.payload && res.headers['content-type']?.toString().includes('json') ? res.json() : {};
        // A HEAD answer has no body to carry the code.
        const named = r.method === 'HEAD' || (body.code === 'ERR_SCOPE_MISSING' && body.missing?.includes(missing));
        if (res.statusCode !== 403 || !named) {
          failures.push(`${r.id} without ${missing}: ${res.statusCode} ${body.code}`);
        }
      }
    }
    assert.deepEqual(failures, []);
  });

  test('a credential with exactly the required scopes passes the scope check on every route', async () => {
    const failures: string[] = [];
    let succeeded = 0;
    for (const r of routes) {
      if (r.scopes === null) continue;
      // Routes open to any credential: the narrowest key that is not the one being described.
      const res = await call(r, await keyFor(r.scopes.length ? r.scopes : ['usage:read']));
      const code = res.payload && res.headers['content-type']?.toString().includes('json') ? res.json().code : undefined;
      // Refusals of the credential itself fail the test; a route's own policy beyond scopes (a role,
      // a confirmation) may still answer 403 with its own code.
      const credentialRefused = res.statusCode === 401 || code === 'ERR_SCOPE_MISSING' || code === 'ERR_IP_NOT_ALLOWED' || code === 'ERR_ORIGIN_NOT_ALLOWED';
      if (credentialRefused || res.statusCode === 429 || res.statusCode >= 500) failures.push(`${r.id}: ${res.statusCode} ${code}`);
      if (res.statusCode < 300) succeeded++;
    }
    assert.deepEqual(failures, []);
    // The list and read routes of the tenant's own app answer 2xx (the rest see placeholder ids or empty bodies).
    assert.ok(succeeded >= 10, `only ${succeeded} routes answered 2xx`);
  });

  test('an authenticated route that declares no scope fails at boot, naming the route', async () => {
    const bare = Fastify();
    declareRouteScopes(bare);
    assert.throws(() => bare.get('/v1/forgotten', { config: { auth: true } }, async () => 'x'), /GET \/v1\/forgotten has config.auth but declares no scope/);
    await bare.close();
  });

  test('an authenticated route registered before installAuth (so without its route-level hook) fails at boot, naming the route', async () => {
    const bare = Fastify();
    declareRouteScopes(bare);
    bare.get('/v1/early', { config: { auth: true, scopes: [] } }, async () => 'x');
    installAuth(bare, {} as AuthDeps);
    bare.get('/v1/late', { config: { auth: true, scopes: [] } }, async () => 'x');
    await assert.rejects(async () => {
      await bare.ready();
    }, /GET \/v1\/early has config.auth but was registered before installAuth/);
    await bare.close().catch(() => undefined);
  });
});

describe('scope leaks of issue 9 item 3, end to end (listening server)', () => {
  let t: TestDb;
  let s: TestServer;
  let a: Tenant;
  let b: Tenant;
  let assetId: string;
  const ops = 'resize:width=40/format:png';

  const mint = (scopes: Scope[]) => mintKey(t.db, a, { kind: 'restricted', name: scopes.join(' '), scopes });

  before(async () => {
    t = await openTestDb('postgres');
    s = await startServer(t.db, { env: { OBSCURA_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE: '100000' } });
    a = await createTenant(t.db, 'Victim');
    b = await createTenant(t.db, 'Other');
    const up = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${a.key}`, 'content-type': 'image/png' }, body: new Uint8Array(await markedPng('scopes')) });
    assert.equal(up.status, 201);
    assetId = ((await up.json()) as { id: string }).id;
  });
  after(async () => {
    await s?.close();
    await t?.close();
  });

  test('a keys:manage-only key cannot mint a transform key (403 ERR_SCOPE_MISSING); keys:manage + assets:read mints one whose URLs serve the image', async () => {
    const manager = await mint(['keys:manage']);
    const refused = await api(s.url, 'POST', `/v1/apps/${a.appId}/transform-keys`, { key: manager.secret });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, 'ERR_SCOPE_MISSING');
    assert.deepEqual(refused.body.missing, ['assets:read']);
    const listed = await api(s.url, 'GET', `/v1/apps/${a.appId}/transform-keys`, { key: a.key });
    assert.equal(listed.body.data.length, 0, 'nothing was minted');

    const reader = await mint(['keys:manage', 'assets:read']);
    const created = await api(s.url, 'POST', `/v1/apps/${a.appId}/transform-keys`, { key: reader.secret });
    assert.equal(created.status, 201);
    const path = signTransformPath(created.body.id, Buffer.from(created.body.secret, 'base64url'), ops, assetId, Math.floor(Date.now() / 1000) + 600);
    const img = await fetch(s.url + path);
    assert.equal(img.status, 200);
    assert.equal(img.headers.get('content-type'), 'image/png');
    assert.match(img.headers.get('cache-control') ?? '', /^public/);
  });

  test("a jobs:write-only key cannot read an asset's content through /v1/process or a job (asset_id, output.put_url, watermark); with assets:read it can", async () => {
    const worker = await mint(['jobs:write']);
    const sync = await api(s.url, 'POST', '/v1/process', { key: worker.secret, body: { input: { asset_id: assetId }, operations: ops } });
    assert.equal(sync.status, 403);
    assert.equal(sync.body.code, 'ERR_SCOPE_MISSING');
    assert.deepEqual(sync.body.missing, ['assets:read']);
    const put = await api(s.url, 'POST', '/v1/jobs', { key: worker.secret, body: { input: { asset_id: assetId }, operations: ops, output: { put_url: 'https://attacker.example/drop' } } });
    assert.equal(put.status, 403);
    assert.equal(put.body.code, 'ERR_SCOPE_MISSING');
    const asyncProcess = await api(s.url, 'POST', '/v1/process', { key: worker.secret, body: { input: { asset_id: assetId }, operations: ops }, headers: { prefer: 'respond-async' } });
    assert.equal(asyncProcess.status, 403);
    assert.equal(asyncProcess.body.code, 'ERR_SCOPE_MISSING');

    // The same key still processes what it brings itself.
    const own = await fetch(`${s.url}/v1/process?operations=${encodeURIComponent(ops)}`, { method: 'POST', headers: { authorization: `Bearer ${worker.secret}`, 'content-type': 'image/png' }, body: new Uint8Array(await markedPng('own')) });
    assert.equal(own.status, 200);
    // A watermark names another asset: its content is composited into the output, so it is a read too.
    const mark = `watermark:${assetId},scale=0.5/format:png`;
    for (const operations of [mark, [{ op: 'watermark', assetId, scale: 0.5 }, { op: 'format', type: 'png' }]]) {
      const viaWatermark = await api(s.url, 'POST', '/v1/jobs', { key: worker.secret, body: { input: { url: 'https://images.example/cat.png' }, operations } });
      assert.equal(viaWatermark.status, 403, JSON.stringify(operations));
      assert.equal(viaWatermark.body.code, 'ERR_SCOPE_MISSING');
    }
    const rawWatermark = await fetch(`${s.url}/v1/process?operations=${encodeURIComponent(mark)}`, { method: 'POST', headers: { authorization: `Bearer ${worker.secret}`, 'content-type': 'image/png' }, body: new Uint8Array(await markedPng('own')) });
    assert.equal(rawWatermark.status, 403);
    assert.equal(((await rawWatermark.json()) as { code: string }).code, 'ERR_SCOPE_MISSING');

    const reader = await mint(['jobs:write', 'assets:read']);
    const ok = await fetch(`${s.url}/v1/process`, { method: 'POST', headers: { authorization: `Bearer ${reader.secret}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { asset_id: assetId }, operations: ops }) });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-type'), 'image/png');
    const job = await api(s.url, 'POST', '/v1/jobs', { key: reader.secret, body: { input: { asset_id: assetId }, operations: ops } });
    assert.equal(job.status, 202);
    const marked = await fetch(`${s.url}/v1/process?operations=${encodeURIComponent(`watermark:${assetId},scale=0.5/format:png`)}`, { method: 'POST', headers: { authorization: `Bearer ${reader.secret}`, 'content-type': 'image/png' }, body: new Uint8Array(await markedPng('own')) });
    assert.equal(marked.status, 200);
  });

  test('a preset naming a watermark asset can only be saved with assets:read (no laundering a read through presets)', async () => {
    const admin = await mint(['apps:write']);
    const path = `/v1/apps/${a.appId}/transform-presets/marked`;
    const refused = await api(s.url, 'PUT', path, { key: admin.secret, body: { operations: `watermark:${assetId}/format:png` } });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, 'ERR_SCOPE_MISSING');
    assert.deepEqual(refused.body.missing, ['assets:read']);
    assert.equal((await api(s.url, 'PUT', path, { key: admin.secret, body: { operations: 'resize:width=64/format:png' } })).status, 200, 'a preset without one');
    const reader = await mint(['apps:write', 'assets:read']);
    assert.equal((await api(s.url, 'PUT', path, { key: reader.secret, body: { operations: [{ op: 'watermark', assetId }, { op: 'format', type: 'png' }] } })).status, 200);
  });

  test('an assets:write uploader key cannot delete an asset (403 ERR_SCOPE_MISSING, the asset stays); an assets:delete key can', async () => {
    const uploader = await mint(['assets:write', 'assets:read']);
    const refused = await api(s.url, 'DELETE', `/v1/assets/${assetId}`, { key: uploader.secret });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, 'ERR_SCOPE_MISSING');
    assert.equal((await api(s.url, 'GET', `/v1/assets/${assetId}`, { key: uploader.secret })).status, 200);

    const up = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${uploader.secret}`, 'content-type': 'image/png' }, body: new Uint8Array(await markedPng('doomed')) });
    const doomed = ((await up.json()) as { id: string }).id;
    const deleter = await mint(['assets:delete']);
    assert.equal((await api(s.url, 'DELETE', `/v1/assets/${doomed}`, { key: deleter.secret })).status, 204);
    assert.equal((await api(s.url, 'GET', `/v1/assets/${doomed}`, { key: a.key })).status, 404);
    // The full secret key of a tenant holds the new scope.
    const me = await api(s.url, 'GET', '/v1/whoami', { key: a.key });
    assert.ok(me.body.scopes.includes('assets:delete'));
  });

  test('a keys:manage key cannot revoke or roll the all-scope key (403, the key keeps working); it can revoke a key with no more scopes than its own', async () => {
    const manager = await mint(['keys:manage']);
    const revoke = await api(s.url, 'DELETE', `/v1/keys/${a.keyId}`, { key: manager.secret });
    assert.equal(revoke.status, 403);
    assert.equal(revoke.body.code, 'ERR_SCOPE_MISSING');
    assert.ok(revoke.body.missing.includes('assets:read'));
    const roll = await api(s.url, 'POST', `/v1/keys/${a.keyId}/roll`, { key: manager.secret, body: { grace_period_seconds: 0 } });
    assert.equal(roll.status, 403);
    assert.equal(roll.body.code, 'ERR_SCOPE_MISSING');
    assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: a.key })).status, 200);
    const info = await api(s.url, 'GET', `/v1/keys/${a.keyId}`, { key: a.key });
    assert.equal(info.body.revoked_at, null);
    assert.equal(info.body.rolled_to, null);

    const peer = await mint(['keys:manage']);
    assert.equal((await api(s.url, 'DELETE', `/v1/keys/${peer.id}`, { key: manager.secret })).status, 200);
    assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: peer.secret })).status, 401);
  });

  test('a keys:manage key cannot revoke an OAuth client that holds more scopes than it does; the full key can', async () => {
    const manager = await mint(['keys:manage']);
    const client = await api(s.url, 'POST', `/v1/apps/${a.appId}/oauth-clients`, { key: a.key, body: { scopes: ['assets:read'] } });
    assert.equal(client.status, 201);
    const refused = await api(s.url, 'DELETE', `/v1/oauth-clients/${client.body.client.id}`, { key: manager.secret });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, 'ERR_SCOPE_MISSING');
    const ok = await api(s.url, 'DELETE', `/v1/oauth-clients/${client.body.client.id}`, { key: a.key });
    assert.equal(ok.status, 200);
    assert.ok(ok.body.revoked_at);
  });

  test('require_authorized_urls covers transform URLs: without a credential 401, without assets:read 403, another org 404, with one 200 and Cache-Control private', async () => {
    const tk = await api(s.url, 'POST', `/v1/apps/${a.appId}/transform-keys`, { key: a.key });
    const path = signTransformPath(tk.body.id, Buffer.from(tk.body.secret, 'base64url'), 'resize:width=30/format:png', assetId, Math.floor(Date.now() / 1000) + 600);
    assert.equal((await fetch(s.url + path)).status, 200, 'public before the setting');
    const patched = await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { require_authorized_urls: true } } });
    assert.equal(patched.status, 200);
    // Settings are cached for at most the key cache TTL (2 s).
    await new Promise((r) => setTimeout(r, 2100));
    const anonymous = await fetch(s.url + path);
    assert.equal(anonymous.status, 401);
    assert.equal(((await anonymous.json()) as { code: string }).code, 'ERR_AUTH_MISSING');
    const noRead = await mint(['jobs:write']);
    const refused = await fetch(s.url + path, { headers: { authorization: `Bearer ${noRead.secret}` } });
    assert.equal(refused.status, 403);
    assert.equal(((await refused.json()) as { code: string }).code, 'ERR_SCOPE_MISSING');
    const foreign = await fetch(s.url + path, { headers: { authorization: `Bearer ${b.key}` } });
    assert.equal(foreign.status, 404);
    const reader = await mint(['assets:read']);
    const ok = await fetch(s.url + path, { headers: { authorization: `Bearer ${reader.secret}` } });
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get('cache-control') ?? '', /^private/);
    assert.match(ok.headers.get('vary') ?? '', /Authorization/);
    // A conditional request is authorized too: a 304 must not confirm the asset to a stranger.
    const etag = ok.headers.get('etag')!;
    assert.equal((await fetch(s.url + path, { headers: { 'if-none-match': etag } })).status, 401);
    await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { require_authorized_urls: false } } });
  });
});
