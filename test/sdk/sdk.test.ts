/**
 * The SDK against a real server on 127.0.0.1 (PGlite: these tests are about the client; the server's
 * database behaviour is covered on both databases by test/http). Retries are exercised through a
 * small proxy that answers 503/429 or drops the connection for chosen requests.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import { openTestDb, type TestDb } from '../support/db.js';
import { startServer, createTenant, mintKey, type TestServer, type Tenant } from '../support/server.js';
import { Obscura, ObscuraError, isObscuraError, parseRetryAfter, backoffDelay, DEFAULT_RETRY } from '../../sdk/src/index.js';
import { constructWebhookEvent, verifyWebhook, WebhookVerificationError } from '../../sdk/src/node.js';
import { signWebhook } from '../../sdk/src/webhook-signature.js';
import { startProxy, noisyPng, problem, type TestProxy } from './support.js';
import { quadrants } from '../fixtures/make.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function rejects(p: Promise<unknown>, code: string, status?: number): Promise<ObscuraError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ObscuraError, `expected ObscuraError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (status !== undefined) assert.equal(err.status, status);
    return err;
  }
  assert.fail(`expected ${code}`);
}

describe('SDK against a real server', () => {
  let t: TestDb;
  let s: TestServer;
  let a: Tenant;
  let obscura: Obscura;
  let proxy: TestProxy;

  before(async () => {
    t = await openTestDb('pglite');
    s = await startServer(t.db);
    a = await createTenant(t.db, 'Acme');
    obscura = new Obscura({ baseUrl: s.url, apiKey: a.key });
    proxy = await startProxy(s.url);
  });
  after(async () => {
    await proxy.close();
    await s.close();
    await t.close();
  });

  test('whoami describes the calling key', async () => {
    const me = await obscura.whoami();
    assert.equal(me.org_id, a.orgId);
    assert.equal(me.app_id, a.appId);
    assert.equal(me.credential_id, a.keyId);
    assert.equal(me.kind, 'secret');
    assert.ok(me.scopes.includes('assets:write'));
  });

  test('API refusals are ObscuraErrors carrying status, the problem code, detail and the request id', async () => {
    const missing = await rejects(obscura.assets.get('ast_0000000000000000000000'), 'ERR_NOT_FOUND', 404);
    assert.match(missing.requestId ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(typeof missing.detail, 'string');
    assert.equal(missing.problem?.code, 'ERR_NOT_FOUND');

    const invalid = await rejects(obscura.apps.create({ name: '' }), 'ERR_VALIDATION', 400);
    assert.ok(Array.isArray(invalid.problem?.errors));

    const revoked = await mintKey(t.db, a, { kind: 'secret', name: 'to revoke' });
    const other = new Obscura({ baseUrl: s.url, apiKey: revoked.secret });
    assert.equal((await other.whoami()).credential_id, revoked.id);
    await obscura.keys.revoke(revoked.id);
    const err = await rejects(other.whoami(), 'ERR_KEY_REVOKED', 401);
    assert.equal(err.isAuthError, true);
    assert.ok(isObscuraError(err, 'ERR_KEY_REVOKED'));
  });

  test('the credential never appears when the client or its errors are logged or serialised', async () => {
    const err = await rejects(obscura.assets.get('ast_0000000000000000000000'), 'ERR_NOT_FOUND');
    for (const text of [JSON.stringify(obscura), inspect(obscura, { depth: 10, showHidden: true }), JSON.stringify(err), inspect(err, { depth: 10 }), String(err.stack)]) {
      assert.ok(!text.includes(a.key), 'key leaked');
      assert.ok(!text.includes(a.key.slice(7, 30)), 'key fragment leaked');
    }
  });

  test('refuses a malformed key, no credential, or two credentials before sending anything', () => {
    assert.throws(() => new Obscura({ baseUrl: s.url, apiKey: 'sk_live_123' }), (e: unknown) => isObscuraError(e, 'ERR_SDK_USAGE'));
    assert.throws(() => new Obscura({ baseUrl: s.url, apiKey: a.key, accessToken: 'x' }), (e: unknown) => isObscuraError(e, 'ERR_SDK_USAGE'));
    assert.throws(() => new Obscura({ baseUrl: 'ftp://example.com', apiKey: a.key }), (e: unknown) => isObscuraError(e, 'ERR_SDK_USAGE'));
    // No credential at all is allowed (public endpoints) and then the API says what is missing.
    assert.ok(new Obscura({ baseUrl: s.url }));
  });

  test('refuses a secret key in a browser page but accepts a publishable one', () => {
    const g = globalThis as Record<string, unknown>;
    g.window = {};
    g.document = {};
    try {
      assert.throws(() => new Obscura({ baseUrl: s.url, apiKey: a.key }), (e: unknown) => isObscuraError(e, 'ERR_SDK_USAGE'));
      assert.throws(() => new Obscura({ baseUrl: s.url, clientCredentials: { clientId: 'obs_client_x', clientSecret: 'obs_cs_y' } }), (e: unknown) => isObscuraError(e, 'ERR_SDK_USAGE'));
      assert.ok(new Obscura({ baseUrl: s.url, apiKey: 'obs_pk_' + 'A'.repeat(40) }));
      assert.ok(new Obscura({ baseUrl: s.url, apiKey: a.key, dangerouslyAllowSecretInBrowser: true }));
    } finally {
      delete g.window;
      delete g.document;
    }
  });

  test('retries a 503 with the same Idempotency-Key and creates exactly one app', async () => {
    let failed = 0;
    proxy.seen.length = 0;
    proxy.intercept = (req) => (req.method === 'POST' && failed++ === 0 ? { status: 503, headers: { 'retry-after': '0' }, body: problem(503, 'ERR_UNAVAILABLE') } : 'pass');
    const viaProxy = new Obscura({ baseUrl: proxy.url, apiKey: a.key, retry: { baseDelayMs: 10 } });
    const name = `retry-${Date.now()}`;
    const app = await viaProxy.apps.create({ name });
    const posts = proxy.seen.filter((r) => r.method === 'POST');
    assert.equal(posts.length, 2);
    const k1 = posts[0]!.headers['idempotency-key'];
    assert.match(String(k1), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(posts[1]!.headers['idempotency-key'], k1);
    const apps = await obscura.apps.list();
    assert.equal(apps.filter((x) => x.name === name).length, 1);
    assert.equal(apps.find((x) => x.name === name)!.id, app.id);
  });

  test('a fresh Idempotency-Key per logical request, and none on GET', async () => {
    proxy.seen.length = 0;
    proxy.intercept = () => 'pass';
    const viaProxy = new Obscura({ baseUrl: proxy.url, apiKey: a.key });
    await viaProxy.apps.create({ name: 'k1' });
    await viaProxy.apps.create({ name: 'k2' });
    await viaProxy.apps.list();
    const keys = proxy.seen.map((r) => r.headers['idempotency-key']);
    assert.equal(keys.length, 3);
    assert.notEqual(keys[0], keys[1]);
    assert.equal(keys[2], undefined);
  });

  test('does not retry an unsafe request whose Idempotency-Key was switched off', async () => {
    proxy.seen.length = 0;
    proxy.intercept = () => ({ status: 503, headers: { 'retry-after': '0' }, body: problem(503, 'ERR_UNAVAILABLE') });
    const viaProxy = new Obscura({ baseUrl: proxy.url, apiKey: a.key, retry: { baseDelayMs: 10 } });
    await rejects(viaProxy.apps.create({ name: 'x' }), 'ERR_UNAVAILABLE', 503);
    assert.equal(proxy.seen.length, 3, 'keyed POST: first try + 2 retries');
    proxy.seen.length = 0;
    const { Transport } = await import('../../sdk/src/http.js');
    const tr = new Transport({ baseUrl: proxy.url, fetch: fetch, auth: undefined, retry: { ...DEFAULT_RETRY, baseDelayMs: 10 }, timeoutMs: 5000 });
    await rejects(tr.json({ method: 'POST', path: '/v1/apps', json: { name: 'x' }, idempotencyKey: false }), 'ERR_UNAVAILABLE', 503);
    assert.equal(proxy.seen.length, 1, 'unkeyed POST is never replayed');
    proxy.intercept = () => 'pass';
  });

  test('retries a dropped connection on GET and honours Retry-After on 429', async () => {
    proxy.seen.length = 0;
    proxy.intercept = (_r, n) => (n === 1 ? 'drop' : n === 2 ? { status: 429, headers: { 'retry-after': '1' }, body: problem(429, 'ERR_RATE_LIMITED') } : 'pass');
    const viaProxy = new Obscura({ baseUrl: proxy.url, apiKey: a.key, retry: { baseDelayMs: 10 } });
    const started = Date.now();
    const me = await viaProxy.whoami();
    assert.equal(me.app_id, a.appId);
    assert.equal(proxy.seen.length, 3);
    assert.ok(Date.now() - started >= 950, 'waited for Retry-After');
    proxy.intercept = () => 'pass';
  });

  test('gives up with the server code and retryAfter when Retry-After exceeds the limit', async () => {
    proxy.seen.length = 0;
    proxy.intercept = () => ({ status: 429, headers: { 'retry-after': '3600' }, body: problem(429, 'ERR_QUOTA_EXCEEDED') });
    const viaProxy = new Obscura({ baseUrl: proxy.url, apiKey: a.key });
    const err = await rejects(viaProxy.whoami(), 'ERR_QUOTA_EXCEEDED', 429);
    assert.equal(err.retryAfter, 3600);
    assert.equal(proxy.seen.length, 1);
    proxy.intercept = () => 'pass';
  });

  test('reports a network failure as ERR_NETWORK after its retries', async () => {
    proxy.seen.length = 0;
    proxy.intercept = () => 'drop';
    const viaProxy = new Obscura({ baseUrl: proxy.url, apiKey: a.key, retries: 1, retry: { baseDelayMs: 5 } });
    await rejects(viaProxy.whoami(), 'ERR_NETWORK', 0);
    assert.equal(proxy.seen.length, 2);
    proxy.intercept = () => 'pass';
  });

  test('Retry-After parsing and jittered backoff stay within their bounds', () => {
    assert.equal(parseRetryAfter('7'), 7);
    assert.equal(parseRetryAfter(new Date(Date.now() + 5000).toUTCString()), 5);
    assert.equal(parseRetryAfter('soon'), undefined);
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(3, DEFAULT_RETRY);
      assert.ok(d >= 0 && d <= DEFAULT_RETRY.baseDelayMs * 8);
    }
    assert.ok(backoffDelay(30, DEFAULT_RETRY) <= DEFAULT_RETRY.maxDelayMs);
  });

  test('one-request upload, metadata, signed URL and download round-trip the bytes', async () => {
    const png = await quadrants(64, 32);
    const asset = await obscura.assets.upload(png, { filename: 'q.png' });
    assert.equal(asset.content_type, 'image/png');
    assert.equal(asset.sha256, sha256(png));
    assert.equal((await obscura.assets.get(asset.id)).width, 64);
    const signed = await obscura.assets.signedUrl(asset.id, { ttl_seconds: 60 });
    assert.match(signed.url, /\/v1\/files\/ast_/);
    const progress: number[] = [];
    const dl = await obscura.assets.download(asset.id, { onProgress: (p) => progress.push(p.bytes) });
    const bytes = await dl.bytes();
    assert.equal(sha256(bytes), asset.sha256);
    assert.equal(dl.contentType, 'image/png');
    assert.equal(progress.at(-1), png.length);
    await obscura.assets.delete(asset.id);
    await rejects(obscura.assets.get(asset.id), 'ERR_NOT_FOUND', 404);
  });

  test('the credential goes only to the API origin: a signed URL on another origin is fetched without it', async () => {
    const png = await quadrants(24, 24);
    const asset = await obscura.assets.upload(png);
    const signed = await obscura.assets.signedUrl(asset.id);
    // The proxy is another origin (another port) standing in for a CDN in front of the API.
    proxy.seen.length = 0;
    proxy.intercept = () => 'pass';
    const viaCdn = signed.url.replace(s.url, proxy.url);
    const dl = await obscura.assets.fetchSignedUrl(viaCdn);
    assert.equal(sha256(await dl.bytes()), asset.sha256);
    assert.equal(proxy.seen.length, 1);
    assert.equal(proxy.seen[0]!.headers.authorization, undefined);
    // Asked to call another origin with the credential, the client refuses before sending anything.
    await rejects(obscura.request('GET', `${proxy.url}/v1/whoami`), 'ERR_SDK_USAGE');
    assert.equal(proxy.seen.length, 1);
  });

  test('assets.all and jobs.all follow next_cursor through every page: each item exactly once, filters sent, another org sees none', async () => {
    const own = await createTenant(t.db, 'Lister');
    const client = new Obscura({ baseUrl: s.url, apiKey: own.key });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await client.assets.upload(await quadrants(16 + i, 8))).id);
    const first = await client.assets.list({ limit: 2 });
    assert.equal(first.data.length, 2);
    assert.equal(typeof first.next_cursor, 'string');
    const seen: string[] = [];
    for await (const asset of client.assets.all({ limit: 2, kind: 'original', type: 'image' })) seen.push(asset.id);
    assert.deepEqual([...seen].sort(), [...ids].sort());
    assert.equal(new Set(seen).size, seen.length);
    assert.equal((await client.assets.list({ kind: 'output' })).data.length, 0);
    const jobIds: string[] = [];
    for (let i = 0; i < 3; i++) jobIds.push((await client.jobs.create({ input: { assetId: ids[0]! }, operations: `resize:width=${4 + i}/format:png` })).id);
    const jobs: string[] = [];
    for await (const job of client.jobs.all({ limit: 1 })) jobs.push(job.id);
    assert.deepEqual([...jobs].sort(), [...jobIds].sort());
    // Another org: none of these, and this org's cursor is refused rather than honoured.
    const theirs: string[] = [];
    for await (const asset of obscura.assets.all({ limit: 100 })) theirs.push(asset.id);
    assert.ok(!theirs.some((id) => ids.includes(id)));
    await rejects(obscura.assets.list({ limit: 2, cursor: first.next_cursor! }), 'ERR_CURSOR_INVALID', 400);
    await rejects(client.assets.list({ limit: 0 }), 'ERR_VALIDATION', 400);
  });

  test('presigned direct upload: PUT without the credential, then the asset exists', async () => {
    const png = await quadrants(40, 40);
    proxy.seen.length = 0;
    const viaProxy = new Obscura({ baseUrl: proxy.url, apiKey: a.key });
    const intent = await viaProxy.assets.createUploadUrl({ content_type: 'image/png', content_length: png.length });
    assert.equal(intent.method, 'PUT');
    const asset = await obscura.assets.putToUploadUrl(intent, png);
    assert.equal(asset.sha256, sha256(png));
    const again = await obscura.assets.uploadDirect(png, { content_type: 'image/png', filename: 'd.png' });
    assert.equal(again.filename, 'd.png');
  });

  test('tus upload reports progress chunk by chunk and becomes an asset', async () => {
    const png = await noisyPng(300, 300);
    const events: Array<{ bytes: number; total: number | undefined }> = [];
    let uploadUrl = '';
    const r = await obscura.uploads.upload(png, { filename: 'noise.png', chunkSize: 64 * 1024, onProgress: (p) => events.push(p), onUploadUrl: (u) => (uploadUrl = u) });
    assert.match(r.assetId, /^ast_[0-9A-Za-z]{22}$/);
    assert.equal(r.uploadUrl, uploadUrl);
    assert.ok(events.length >= Math.ceil(png.length / (64 * 1024)), `${events.length} progress events`);
    for (let i = 1; i < events.length; i++) assert.ok(events[i]!.bytes >= events[i - 1]!.bytes);
    assert.equal(events.at(-1)!.bytes, png.length);
    assert.equal(events.at(-1)!.total, png.length);
    const asset = await obscura.assets.get(r.assetId);
    assert.equal(asset.sha256, sha256(png));
    assert.equal(asset.filename, 'noise.png');
  });

  test('an aborted tus upload resumes from its URL without resending what the server has', async () => {
    const png = await noisyPng(300, 300);
    const ctl = new AbortController();
    let uploadUrl = '';
    let sentBeforeAbort = 0;
    const first = obscura.uploads.upload(png, {
      chunkSize: 64 * 1024,
      signal: ctl.signal,
      onUploadUrl: (u) => (uploadUrl = u),
      onProgress: (p) => {
        sentBeforeAbort = p.bytes;
        if (p.bytes >= 128 * 1024) ctl.abort();
      },
    });
    await rejects(first, 'ERR_ABORTED');
    assert.ok(uploadUrl, 'upload URL known');
    proxy.seen.length = 0;
    const viaProxy = new Obscura({ baseUrl: proxy.url, apiKey: a.key });
    const resumeUrl = uploadUrl.replace(s.url, proxy.url);
    const firstProgress: number[] = [];
    const r = await viaProxy.uploads.upload(png, { uploadUrl: resumeUrl, chunkSize: 64 * 1024, onProgress: (p) => firstProgress.push(p.bytes) });
    assert.ok(!proxy.seen.some((x) => x.method === 'POST'), 'no new upload was created');
    assert.equal(proxy.seen[0]!.method, 'HEAD');
    assert.ok(firstProgress[0]! >= 64 * 1024, 'resumed past the committed offset');
    assert.ok(sentBeforeAbort > 0);
    assert.equal((await obscura.assets.get(r.assetId)).sha256, sha256(png));
  });

  test('tus refusals carry the problem code (publishable key on an app without browser uploads)', async () => {
    const pk = await mintKey(t.db, a, { kind: 'publishable', allowedOrigins: ['https://shop.example'] });
    const browser = new Obscura({ baseUrl: s.url, apiKey: pk.secret });
    // No Origin header from Node: the origin pin refuses it before the upload policy is consulted.
    await rejects(browser.uploads.upload(await quadrants(16, 16), { retryDelays: [] }), 'ERR_ORIGIN_NOT_ALLOWED', 403);
  });

  test('OAuth client credentials: one token fetched and reused until expiry', async () => {
    const created = await obscura.oauth.createClient(a.appId, { name: 'sdk test', scopes: ['assets:read', 'apps:read'] });
    let tokenCalls = 0;
    const counting = (input: string, init: RequestInit) => {
      if (input.endsWith('/v1/oauth/token')) tokenCalls++;
      return fetch(input, init);
    };
    const viaToken = new Obscura({ baseUrl: s.url, fetch: counting, clientCredentials: { clientId: created.client_id, clientSecret: created.client_secret, scope: ['apps:read'] } });
    const [me1, me2] = await Promise.all([viaToken.whoami(), viaToken.whoami()]);
    await viaToken.apps.list();
    assert.equal(me1.kind, 'token');
    assert.deepEqual(me2.scopes, ['apps:read']);
    assert.equal(tokenCalls, 1);
    const bad = new Obscura({ baseUrl: s.url, clientCredentials: { clientId: created.client_id, clientSecret: 'obs_cs_' + 'x'.repeat(49) } });
    await rejects(bad.whoami(), 'ERR_OAUTH_INVALID_CLIENT', 401);
  });

  test('an access token refused with 401 is fetched again once through getAccessToken', async () => {
    const created = await obscura.oauth.createClient(a.appId, { name: 'refresh test', scopes: ['apps:read'] });
    const fresh = await obscura.oauth.token({ clientId: created.client_id, clientSecret: created.client_secret });
    assert.equal(fresh.token_type, 'Bearer');
    const handedOut: string[] = [];
    const viaCallback = new Obscura({
      baseUrl: s.url,
      getAccessToken: () => {
        const tok = handedOut.length === 0 ? 'eyJhbGciOiJFZERTQSJ9.e30.c3RhbGU' : fresh.access_token;
        handedOut.push(tok);
        return tok;
      },
    });
    assert.equal((await viaCallback.whoami()).kind, 'token');
    assert.equal(handedOut.length, 2);
    // A key, by contrast, is not retried after a 401.
    proxy.seen.length = 0;
    const viaProxy = new Obscura({ baseUrl: proxy.url, apiKey: 'obs_sk_' + 'A'.repeat(43) });
    await assert.rejects(viaProxy.whoami(), (e: unknown) => e instanceof ObscuraError && e.status === 401);
    assert.equal(proxy.seen.length, 1);
  });

  test('downloadToFile writes the file atomically and leaves no temporary file (regression: the write never finished)', async () => {
    const { downloadToFile } = await import('../../sdk/src/node.js');
    const { mkdtempSync, readdirSync, readFileSync, statSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'obscura-sdk-dl-'));
    const png = await noisyPng(100, 100);
    const asset = await obscura.assets.upload(png);
    const progress: number[] = [];
    const r = await downloadToFile(obscura, asset.id, join(dir, 'out.png'), { onProgress: (p) => progress.push(p.bytes) });
    assert.equal(r.bytes, png.length);
    assert.equal(sha256(readFileSync(join(dir, 'out.png'))), sha256(png));
    assert.deepEqual(readdirSync(dir), ['out.png']);
    assert.equal(statSync(join(dir, 'out.png')).mode & 0o077, 0, 'private file (0600)');
    assert.equal(progress.at(-1), png.length);
    // A failed download leaves nothing under the final name.
    await assert.rejects(downloadToFile(obscura, 'ast_0000000000000000000000', join(dir, 'missing.png')), (e: unknown) => e instanceof ObscuraError && e.code === 'ERR_NOT_FOUND');
    assert.deepEqual(readdirSync(dir), ['out.png']);
  });

  test('uploads.cancel terminates an unfinished tus upload', async () => {
    const png = await noisyPng(200, 200);
    const ctl = new AbortController();
    let uploadUrl = '';
    await assert.rejects(
      obscura.uploads.upload(png, { chunkSize: 64 * 1024, signal: ctl.signal, onUploadUrl: (u) => (uploadUrl = u), onProgress: (p) => p.bytes >= 64 * 1024 && ctl.abort() }),
      (e: unknown) => e instanceof ObscuraError && e.code === 'ERR_ABORTED',
    );
    await obscura.uploads.cancel(uploadUrl);
    const head = await fetch(uploadUrl, { method: 'HEAD', headers: { authorization: `Bearer ${a.key}`, 'tus-resumable': '1.0.0' } });
    assert.ok(head.status === 404 || head.status === 410, `HEAD after termination: ${head.status}`);
    // Resuming a terminated upload starts a new one (tus-js-client's rule for 404/410) and still completes.
    const again = await obscura.uploads.upload(png, { uploadUrl });
    assert.notEqual(again.uploadUrl, uploadUrl);
    assert.equal((await obscura.assets.get(again.assetId)).sha256, sha256(png));
  });

  test('every operation in the OpenAPI document is covered by an SDK method that exists', async () => {
    const { API_OPERATIONS, NOT_IN_SDK } = await import('../../sdk/src/index.js');
    const doc = (await obscura.openapi()) as { paths: Record<string, Record<string, unknown>> };
    const ops = Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).filter((m) => /^(get|post|put|patch|delete|head|options)$/.test(m)).map((m) => `${m.toUpperCase()} ${path}`));
    assert.ok(ops.length > 20);
    const excluded = (op: string) => Object.keys(NOT_IN_SDK).some((x) => op === x || op.split(' ')[1]!.startsWith(x));
    const uncovered = ops.filter((op) => !(op in API_OPERATIONS) && !excluded(op));
    assert.deepEqual(uncovered, [], 'API operations without an SDK method: add them to sdk/src/routes.ts and the client');
    const node = await import('../../sdk/src/node.js');
    for (const [op, method] of Object.entries(API_OPERATIONS)) {
      const fn = method.startsWith('node:')
        ? (node as Record<string, unknown>)[method.slice(5)]
        : method.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obscura);
      assert.equal(typeof fn, 'function', `${op} -> ${method}`);
    }
    const stale = Object.keys(API_OPERATIONS).filter((op) => !ops.includes(op));
    assert.deepEqual(stale, [], 'SDK table names operations the API does not have');
  });

  test('the main entry bundles for browsers with no Node-only module', async () => {
    const { existsSync, mkdtempSync } = await import('node:fs');
    const { dirname, join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const { fileURLToPath, pathToFileURL } = await import('node:url');
    let root = dirname(fileURLToPath(import.meta.url));
    while (!existsSync(join(root, 'sdk', 'scripts', 'bundle.mjs'))) root = dirname(root);
    const { bundleBrowser } = (await import(pathToFileURL(join(root, 'sdk', 'scripts', 'bundle.mjs')).href)) as { bundleBrowser: (out?: string) => Promise<{ inputs: Record<string, unknown> }> };
    const meta = await bundleBrowser(join(mkdtempSync(join(tmpdir(), 'obscura-bundle-')), 'sdk.js'));
    const inputs = Object.keys(meta.inputs);
    assert.ok(inputs.some((f) => f.endsWith('sdk/src/index.ts')));
    assert.ok(inputs.some((f) => f.includes('tus-js-client/lib.esm/browser/')), 'tus-js-client browser build');
    assert.deepEqual(inputs.filter((f) => f.startsWith('node:') || f.includes('/node/') || f.endsWith('sdk/src/node.ts') || f.endsWith('sdk/src/transform.ts')), []);
  });

  test('webhook helper accepts a server-signed delivery and rejects a changed body, timestamp or secret', () => {
    const secret = 'whsec_' + 'k'.repeat(43);
    const body = JSON.stringify({ id: 'evt_1', type: 'job.completed', data: { job_id: 'job_1' } });
    const now = Date.now();
    const ts = Math.floor(now / 1000);
    const header = signWebhook(body, [secret], ts);
    assert.equal(verifyWebhook(body, header, secret, { now }), true);
    assert.equal(constructWebhookEvent(Buffer.from(body), header, [secret], { now }).type, 'job.completed');
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        assert.ok(e instanceof WebhookVerificationError);
        return e.code;
      }
      return 'accepted';
    };
    assert.equal(code(() => constructWebhookEvent(body.replace('job_1', 'job_2'), header, secret, { now })), 'ERR_WEBHOOK_SIGNATURE');
    assert.equal(code(() => constructWebhookEvent(body, header, 'whsec_' + 'z'.repeat(43), { now })), 'ERR_WEBHOOK_SIGNATURE');
    assert.equal(code(() => constructWebhookEvent(body, header.replace(`t=${ts}`, `t=${ts + 1}`), secret, { now })), 'ERR_WEBHOOK_SIGNATURE');
    assert.equal(code(() => constructWebhookEvent(body, header, secret, { now: now + 301_000 })), 'ERR_WEBHOOK_TIMESTAMP');
    assert.equal(code(() => constructWebhookEvent(body, undefined, secret, { now })), 'ERR_WEBHOOK_HEADER');
  });
});
