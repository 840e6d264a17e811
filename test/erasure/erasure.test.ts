/**
 * Issue 9, item 1: org erasure is a product feature and it is real.
 *
 * Two `obscura serve` processes ("nodes") share one PostgreSQL database and one S3 store (s3rver in
 * its own process, so the last test can freeze it). Node B has served the org's media first, so its
 * caches hold the org's unwrapped key, its API key, its transform key and its OAuth client. The owner
 * erases the org through node A (`DELETE /v1/orgs/{id}`, console session + CSRF + password + typed
 * confirmation); within the key-cache bound every way of reading the media fails on node B too. Then
 * the database and the bucket are searched for anything of the org. The operator's way
 * (`obscura orgs erase`) is tested with a store that hangs mid-erasure: maintenance finishes it.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { createEmptyDatabase, tempDir } from '../support/db.js';
import { api, freePort } from '../support/server.js';
import { markedPng } from '../support/media.js';
import { signTransformPath } from '../../src/processing/transform.js';

const S3_CHILD = fileURLToPath(new URL('../support/s3rver-child.js', import.meta.url));
const BUCKET = 'erasure';
const PASSWORD = 'correct horse battery staple 42';
const SESSION_COOKIE = '__Host-obscura_session';
/** The key-cache bound (OBSCURA_KEY_CACHE_TTL_MS default 2 s) plus scheduling slack for a 2-core CI machine. */
const BOUND_MS = 2000 + 1500;

async function startS3Child(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [S3_CHILD, String(port), dir, BUCKET], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('S3RVER_READY')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`s3rver exited ${code}`)));
  });
  return child;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually(what: string, fn: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn().catch(() => false)) return;
    await sleep(250);
  }
  assert.fail(`${what}: not within ${ms} ms`);
}

interface World {
  env: Record<string, string>;
  adminUrl: string;
  orgId: string;
  appId: string;
  secret: string;
}

describe('org erasure across two nodes (PostgreSQL + S3)', () => {
  let s3: ChildProcess;
  let s3Port: number;
  let s3Client: S3Client;
  const nodes: ServerProcess[] = [];
  let w: World;
  let assetId: string;
  let sha256: string;
  let signedUrl: string;
  let transformPath: string;
  let accessToken: string;
  let owner: { cookie: string; csrf: string };

  /** Keys in the bucket under a prefix. */
  const objects = async (prefix: string): Promise<string[]> => {
    const r = await s3Client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
    return (r.Contents ?? []).map((o) => o.Key!);
  };

  const sql = async (url: string, text: string, params: unknown[] = []) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query(text, params)).rows;
    } finally {
      await c.end();
    }
  };

  /** A fresh database with `init` (owner with a known password) and the shared S3 store. */
  const newWorld = async (extra: Record<string, string> = {}): Promise<World> => {
    const { url, adminUrl } = await createEmptyDatabase('postgres');
    const env = {
      DATABASE_URL: url!,
      OBSCURA_MASTER_KEY: randomBytes(32).toString('hex'),
      OBSCURA_STORE: 's3',
      OBSCURA_S3_ENDPOINT: `http://127.0.0.1:${s3Port}`,
      OBSCURA_S3_BUCKET: BUCKET,
      OBSCURA_S3_FORCE_PATH_STYLE: 'true',
      OBSCURA_S3_REQUEST_TIMEOUT_MS: '1500',
      OBSCURA_S3_CONNECT_TIMEOUT_MS: '1000',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
      OBSCURA_DATA_DIR: tempDir(),
      ...extra,
    };
    const init = await runCli(['init', '--json', '--email', 'owner@acme.test', '--password-stdin'], env, { input: PASSWORD + '\n' });
    assert.equal(init.code, 0, init.stderr);
    const out = JSON.parse(init.stdout);
    return { env, adminUrl: adminUrl!, orgId: out.org.id, appId: out.app.id, secret: out.secret_key.key };
  };

  const consoleCall = (base: string, method: string, path: string, c: { cookie?: string; csrf?: string; body?: unknown; headers?: Record<string, string> }) =>
    api(base, method, path, { body: c.body, headers: { ...(c.cookie ? { cookie: c.cookie } : {}), ...(c.csrf ? { 'x-csrf-token': c.csrf } : {}), ...(c.headers ?? {}) } });

  const login = async (base: string, email: string) => {
    const r = await consoleCall(base, 'POST', '/v1/console/login', { body: { email, password: PASSWORD } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const set = r.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`))!;
    return { cookie: set.split(';')[0]!, csrf: r.body.csrf_token as string };
  };

  before(async () => {
    s3Port = await freePort();
    s3 = await startS3Child(s3Port, tempDir('obscura-s3-'));
    s3Client = new S3Client({ endpoint: `http://127.0.0.1:${s3Port}`, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    // Every job sleeps 4 s first, so one can be caught running while its org is erased.
    w = await newWorld({ OBSCURA_TEST_JOB_DELAY_MS: '4000' });
    nodes.push(await startServe(w.env), await startServe(w.env));
    const png = await markedPng('erase-me', 64, 48);
    sha256 = createHash('sha256').update(png).digest('hex');
    const up = await fetch(`${nodes[0]!.url}/v1/assets?filename=secret.png`, { method: 'POST', headers: { authorization: `Bearer ${w.secret}` }, body: new Uint8Array(png) });
    assert.equal(up.status, 201, await up.clone().text());
    assetId = ((await up.json()) as { id: string }).id;
  });

  after(async () => {
    for (const n of nodes) await n.stop('SIGKILL');
    s3?.kill('SIGCONT');
    s3?.kill('SIGKILL');
    s3Client?.destroy();
  });

  test('before erasure node B serves the media every way (warming its caches): signed URL, transform URL, /v1/process by id, an OAuth token', async () => {
    const [a, b] = [nodes[0]!, nodes[1]!];
    const link = await api(a.url, 'POST', `/v1/assets/${assetId}/url`, { key: w.secret, body: {} });
    assert.equal(link.status, 201);
    signedUrl = link.body.url.replace(a.url, b.url);
    assert.equal((await fetch(signedUrl)).status, 200);
    const tk = await api(a.url, 'POST', `/v1/apps/${w.appId}/transform-keys`, { key: w.secret });
    assert.equal(tk.status, 201);
    transformPath = signTransformPath(tk.body.id, Buffer.from(tk.body.secret, 'base64url'), 'resize:width=32/format:png', assetId, Math.floor(Date.now() / 1000) + 3600);
    assert.equal((await fetch(b.url + transformPath)).status, 200);
    const proc = await api(b.url, 'POST', '/v1/process', { key: w.secret, body: { input: { asset_id: assetId }, operations: 'resize:width=16/format:png' } });
    assert.equal(proc.status, 200);
    const client = await api(a.url, 'POST', `/v1/apps/${w.appId}/oauth-clients`, { key: w.secret, body: { scopes: ['assets:read'] } });
    assert.equal(client.status, 201);
    const tok = await fetch(`${b.url}/v1/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${encodeURIComponent(client.body.client_id)}:${encodeURIComponent(client.body.client_secret)}`).toString('base64')}` },
      body: 'grant_type=client_credentials',
    });
    assert.equal(tok.status, 200, await tok.clone().text());
    accessToken = ((await tok.json()) as { access_token: string }).access_token;
    assert.equal((await api(b.url, 'GET', `/v1/assets/${assetId}`, { key: accessToken })).status, 200);
    assert.ok((await objects(`orgs/${w.orgId}/`)).length >= 1, 'the blob is in the bucket');
  });

  test('erasure is refused without the CSRF token, to a developer, with a wrong password, a wrong confirmation or another org id; nothing changes', async () => {
    const a = nodes[0]!;
    const dev = await runCli(['users', 'add', '--org', w.orgId, '--email', 'dev@acme.test', '--role', 'developer', '--password-stdin'], w.env, { input: PASSWORD + '\n' });
    assert.equal(dev.code, 0, dev.stderr);
    owner = await login(a.url, 'owner@acme.test');
    const developer = await login(a.url, 'dev@acme.test');
    const body = { confirm: w.orgId, password: PASSWORD };
    const path = `/v1/orgs/${w.orgId}`;
    const noCsrf = await consoleCall(a.url, 'DELETE', path, { cookie: owner.cookie, body });
    assert.equal(noCsrf.status, 403);
    assert.equal(noCsrf.body.code, 'ERR_CSRF');
    const crossSite = await consoleCall(a.url, 'DELETE', path, { ...owner, body, headers: { 'sec-fetch-site': 'cross-site' } });
    assert.equal(crossSite.body.code, 'ERR_CSRF');
    const byDev = await consoleCall(a.url, 'DELETE', path, { ...developer, body });
    assert.equal(byDev.status, 403);
    assert.equal(byDev.body.code, 'ERR_ROLE_FORBIDDEN');
    const wrongPassword = await consoleCall(a.url, 'DELETE', path, { ...owner, body: { ...body, password: 'not the password' } });
    assert.equal(wrongPassword.status, 401);
    assert.equal(wrongPassword.body.code, 'ERR_LOGIN_FAILED');
    const wrongConfirm = await consoleCall(a.url, 'DELETE', path, { ...owner, body: { ...body, confirm: 'yes' } });
    assert.equal(wrongConfirm.status, 400);
    assert.equal(wrongConfirm.body.code, 'ERR_VALIDATION');
    const otherOrg = await consoleCall(a.url, 'DELETE', '/v1/orgs/00000000-0000-4000-8000-000000000000', { ...owner, body: { ...body, confirm: '00000000-0000-4000-8000-000000000000' } });
    assert.equal(otherOrg.status, 404);
    const byKey = await api(a.url, 'DELETE', path, { key: w.secret, body });
    assert.equal(byKey.status, 401, 'an API key is not a console session');
    // Nothing was erased.
    assert.equal((await fetch(signedUrl)).status, 200);
    assert.equal((await sql(w.adminUrl, 'select count(*)::int as n from org_erasures'))[0].n, 0);
  });

  test('the owner erases the org through node A; within the key-cache bound node B refuses the signed URL, transform URL, /v1/process, API key and OAuth token, and a running job leaves nothing', async () => {
    const [a, b] = [nodes[0]!, nodes[1]!];
    // A job that is running (sleeping in its worker) while the org is erased.
    const job = await api(a.url, 'POST', '/v1/jobs', { key: w.secret, body: { input: { asset_id: assetId }, operations: 'resize:width=20/format:png' } });
    assert.equal(job.status, 202, JSON.stringify(job.body));
    await sleep(1000);
    const erased = await consoleCall(a.url, 'DELETE', `/v1/orgs/${w.orgId}`, { ...owner, body: { confirm: w.orgId, password: PASSWORD } });
    assert.equal(erased.status, 200, JSON.stringify(erased.body));
    const doneAt = Date.now();
    assert.equal(erased.body.org_id, w.orgId);
    assert.ok(erased.body.keys_shredded >= 1);
    assert.ok(erased.body.blobs_deleted >= 1);
    assert.ok(erased.body.completed_at);
    assert.match(erased.headers.getSetCookie().join(';'), new RegExp(`${SESSION_COOKIE}=;`), 'the session cookie is cleared');
    // The signed download needs no wait, on the other node either: the blobs were gone before the
    // erasure answered, and every download reads them (a cached row whose blob is gone is re-checked).
    const atOnce = await fetch(signedUrl);
    assert.equal(atOnce.status, 404, `signed URL on ${b.url} right after the erasure: ${atOnce.status}`);

    await sleep(Math.max(0, doneAt + BOUND_MS - Date.now()));
    for (const node of [b, a]) {
      const file = await fetch(signedUrl.replace(b.url, node.url));
      assert.ok(file.status === 404 || file.status === 410, `signed URL on ${node.url}: ${file.status}`);
      const t = await fetch(node.url + transformPath);
      assert.ok([401, 403, 404].includes(t.status), `transform URL: ${t.status}`);
      assert.equal(t.headers.get('content-type')?.startsWith('image/'), false);
      const proc = await api(node.url, 'POST', '/v1/process', { key: w.secret, body: { input: { asset_id: assetId }, operations: 'resize:width=16/format:png' } });
      assert.equal(proc.status, 401);
      assert.equal((await api(node.url, 'GET', `/v1/assets/${assetId}`, { key: accessToken })).status, 401, 'the OAuth access token is refused');
      assert.equal((await api(node.url, 'POST', '/v1/jobs', { key: w.secret, body: { input: { asset_id: assetId }, operations: 'format:png' } })).status, 401);
      assert.equal((await consoleCall(node.url, 'GET', '/v1/console/session', { cookie: owner.cookie })).status, 401, 'the console session is gone');
    }
    // The job that was running when the org was erased finishes (fails) without leaving an output.
    await sleep(5000);
    assert.deepEqual(await objects(`orgs/${w.orgId}/`), []);
    assert.equal((await sql(w.adminUrl, 'select count(*)::int as n from assets where org_id = $1', [w.orgId]))[0].n, 0);
    assert.equal((await sql(w.adminUrl, 'select count(*)::int as n from tenant_keys where org_id = $1', [w.orgId]))[0].n, 0);
  });

  test('nothing of the org remains but the tombstone and the system audit entry: no rows, no blobs, no plaintext digest; audit verify passes', async () => {
    const tables = await sql(w.adminUrl, "select table_name as t from information_schema.columns where table_schema = 'public' and column_name = 'org_id'");
    for (const { t } of tables) {
      const n = (await sql(w.adminUrl, `select count(*)::int as n from ${t} where org_id = $1`, [w.orgId]))[0].n;
      assert.equal(n, t === 'org_erasures' ? 1 : 0, `${t} still holds ${n} row(s) of the org`);
    }
    assert.equal((await sql(w.adminUrl, 'select count(*)::int as n from orgs where id = $1', [w.orgId]))[0].n, 0);
    // The content digest appears nowhere in the database (every table, as text).
    const all = await sql(w.adminUrl, "select table_name as t from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'");
    for (const { t } of all) {
      const hits = (await sql(w.adminUrl, `select count(*)::int as n from ${t} x where x::text like $1`, [`%${sha256}%`]))[0].n;
      assert.equal(hits, 0, `the plaintext SHA-256 survives in ${t}`);
    }
    for (const prefix of [`orgs/${w.orgId}/`, `uploads/${w.orgId}/`, `staging/${w.orgId}/`]) assert.deepEqual(await objects(prefix), []);
    const tomb = (await sql(w.adminUrl, 'select * from org_erasures where org_id = $1', [w.orgId]))[0];
    assert.ok(tomb.completed_at, 'the tombstone is complete');
    const system = await sql(w.adminUrl, "select action, target, actor from audit_log where chain = 'system' and action = 'org.erase'");
    assert.equal(system.length, 1);
    assert.equal(system[0].target.org_id, w.orgId);
    assert.equal(system[0].actor.type, 'user');
    const verify = await runCli(['audit', 'verify', '--json'], w.env);
    assert.equal(verify.code, 0, verify.stdout);
    assert.deepEqual(JSON.parse(verify.stdout).erased, [`org:${w.orgId}`]);
  });

  test('obscura orgs erase: refused without --confirm; interrupted by a hung store it exits 1, and maintenance finishes it once the store is back', async () => {
    const v = await newWorld({ OBSCURA_MAINTENANCE_INTERVAL_MS: '500' });
    const node = await startServe(v.env);
    nodes.push(node);
    const up = await fetch(`${node.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${v.secret}` }, body: new Uint8Array(await markedPng('cli-erase', 40, 30)) });
    assert.equal(up.status, 201);
    assert.equal((await objects(`orgs/${v.orgId}/`)).length, 1);
    const unconfirmed = await runCli(['orgs', 'erase', v.orgId], v.env);
    assert.equal(unconfirmed.code, 2);
    assert.match(unconfirmed.stderr, /--confirm/);
    const mistyped = await runCli(['orgs', 'erase', v.orgId, '--confirm', w.orgId], v.env);
    assert.equal(mistyped.code, 2);
    assert.equal((await api(node.url, 'GET', '/v1/apps', { key: v.secret })).status, 200, 'nothing was erased');

    s3.kill('SIGSTOP');
    let r;
    let tomb;
    try {
      r = await runCli(['orgs', 'erase', v.orgId, '--confirm', v.orgId, '--json'], v.env, { timeoutMs: 30_000 });
      // Read while the store is still frozen: once it is back, the server's maintenance (every 500 ms)
      // may finish the erasure before this query (CI saw that race).
      tomb = (await sql(v.adminUrl, 'select * from org_erasures where org_id = $1', [v.orgId]))[0];
    } finally {
      s3.kill('SIGCONT');
    }
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /ERR_DEPENDENCY_UNAVAILABLE|ERR_UNAVAILABLE/);
    // Keys and rows are gone already; the blobs waited for the store.
    assert.ok(tomb.rows_deleted_at);
    assert.equal(tomb.completed_at, null);
    await sleep(BOUND_MS);
    assert.equal((await api(node.url, 'GET', '/v1/apps', { key: v.secret })).status, 401);
    // The server's maintenance (every 500 ms here) finishes it.
    await eventually('maintenance completes the erasure', async () => (await sql(v.adminUrl, 'select completed_at from org_erasures where org_id = $1', [v.orgId]))[0].completed_at !== null, 30_000);
    assert.deepEqual(await objects(`orgs/${v.orgId}/`), []);
    // Running the command again reports the finished erasure.
    const again = await runCli(['orgs', 'erase', v.orgId, '--confirm', v.orgId, '--json'], v.env);
    assert.equal(again.code, 0, again.stderr);
    assert.ok(JSON.parse(again.stdout).completed_at);
  });
});
