/**
 * Issue 9, item 14: errors that say how to fix the request. Optional bodies are optional, 415 names
 * the accepted types, 413 states the limit and points to resumable uploads; the busy port names
 * OBSCURA_PORT and a CLI whose server is down names the URL it tried.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openTestDb, tempDir, type TestDb } from '../support/db.js';
import { api, createTenant, startServer, type Tenant, type TestServer } from '../support/server.js';
import { markedPng } from '../support/media.js';
import { runCli } from '../support/cli.js';

describe('errors that say how to fix', () => {
  let t: TestDb;
  let s: TestServer;
  let tenant: Tenant;
  let assetId: string;

  before(async () => {
    t = await openTestDb('pglite');
    s = await startServer(t.db);
    tenant = await createTenant(t.db, 'Errors');
    const res = await fetch(`${s.url}/v1/assets?filename=a.png`, { method: 'POST', headers: { authorization: `Bearer ${tenant.key}` }, body: new Uint8Array(await markedPng('e', 32, 32)) });
    assert.equal(res.status, 201);
    assetId = ((await res.json()) as { id: string }).id;
  });
  after(async () => {
    await s.close();
    await t.close();
  });

  test('a POST whose fields are all optional works with no body, an empty JSON body, and {}', async () => {
    const auth = { authorization: `Bearer ${tenant.key}` };
    const noBody = await fetch(`${s.url}/v1/assets/${assetId}/url`, { method: 'POST', headers: auth });
    assert.equal(noBody.status, 201, await noBody.clone().text());
    assert.match(((await noBody.json()) as { url: string }).url, /sig=/);
    const emptyJson = await fetch(`${s.url}/v1/assets/${assetId}/url`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '' });
    assert.equal(emptyJson.status, 201);
    const braces = await api(s.url, 'POST', `/v1/assets/${assetId}/url`, { key: tenant.key, body: {} });
    assert.equal(braces.status, 201);
    // Bad JSON is still refused: only *empty* means "no body".
    const bad = await fetch(`${s.url}/v1/assets/${assetId}/url`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{"ttl_seconds":' });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { code: string }).code, 'ERR_BAD_REQUEST');
  });

  test('a POST with a required field and no body names the missing field', async () => {
    const res = await fetch(`${s.url}/v1/apps`, { method: 'POST', headers: { authorization: `Bearer ${tenant.key}` } });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { code: string; errors: Array<{ path: string; rule: string }> };
    assert.equal(body.code, 'ERR_VALIDATION');
    assert.equal(body.errors[0]!.rule, 'required');
    assert.match(body.errors[0]!.path, /^body\/\w+/);
  });

  test('415 names the Content-Type sent and lists the accepted ones', async () => {
    const res = await fetch(`${s.url}/v1/apps`, { method: 'POST', headers: { authorization: `Bearer ${tenant.key}`, 'content-type': 'text/plain' }, body: 'name=x' });
    assert.equal(res.status, 415);
    const body = (await res.json()) as { code: string; accepted: string[]; detail: string };
    assert.equal(body.code, 'ERR_UNSUPPORTED_MEDIA_TYPE');
    assert.deepEqual(body.accepted, ['application/json']);
    assert.match(body.detail, /text\/plain/);
    // A hostile Content-Type is not echoed back.
    const odd = await fetch(`${s.url}/v1/apps`, { method: 'POST', headers: { authorization: `Bearer ${tenant.key}`, 'content-type': 'x<script>' }, body: 'x' });
    assert.equal(odd.status, 415);
    assert.doesNotMatch(((await odd.json()) as { detail: string }).detail, /script/);
  });

  test('413 on a JSON route states the limit and points to resumable and presigned uploads', async () => {
    const big = JSON.stringify({ name: 'x'.repeat(s.config.http.bodyLimit + 10) });
    const res = await fetch(`${s.url}/v1/apps`, { method: 'POST', headers: { authorization: `Bearer ${tenant.key}`, 'content-type': 'application/json' }, body: big });
    assert.equal(res.status, 413);
    const body = (await res.json()) as { code: string; limit: number; detail: string };
    assert.equal(body.code, 'ERR_PAYLOAD_TOO_LARGE');
    assert.equal(body.limit, s.config.http.bodyLimit);
    assert.match(body.detail, /\/v1\/uploads/);
  });
});

describe('errors that say how to fix: the command line', () => {
  let blocker: Server;
  let port: number;
  before(async () => {
    blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    port = (blocker.address() as { port: number }).port;
  });
  after(() => blocker.close());

  test('serve on a busy port exits 1 naming OBSCURA_PORT and the address', async () => {
    const dataDir = tempDir();
    const r = await runCli(['serve'], { OBSCURA_DATA_DIR: dataDir, OBSCURA_PORT: String(port) }, { timeoutMs: 60_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /OBSCURA_PORT/);
    assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.doesNotMatch(r.stderr, /unexpected error|at .*\.js:\d+/);
  });

  test('a client command with the server down names the URL it tried', async () => {
    const dir = tempDir();
    const file = join(dir, 'a.png');
    writeFileSync(file, await markedPng('cli', 16, 16));
    const url = `http://127.0.0.1:${port}`; // something listens but never answers HTTP: closed below
    blocker.close();
    await new Promise((r) => setTimeout(r, 50));
    for (const args of [['upload', file], ['jobs', 'get', 'job_' + 'a'.repeat(22)]]) {
      const r = await runCli(args, { OBSCURA_URL: url, OBSCURA_API_KEY: 'obs_sk_' + 'a'.repeat(38) }, { timeoutMs: 60_000 });
      assert.equal(r.code, 1, `${args[0]}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`127.0.0.1:${port}`), `${args[0]} names the URL: ${r.stderr}`);
      assert.match(r.stderr, /ERR_NETWORK/);
    }
  });
});
