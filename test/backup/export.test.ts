/**
 * Tenant export (issue 14, item 4) through the real HTTP server and the production worker wiring
 * (`startProcessWorkers`, what `obscura serve` starts): the archive is checked against the API
 * (records equal the list answers, every media file equal to its signed download), no secret is
 * anywhere in it, it is ciphertext at rest, and every refusal has its legitimate twin. The archive is
 * read with GNU tar (an independent reader). The streaming bound is a unit test of the archive writer.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { openTestDb, superQuery, tempDir, type TestDb } from '../support/db.js';
import { api, createTenant, masterKeysFor, mintKey, startServer, type Tenant, type TestServer } from '../support/server.js';
import { markedPng } from '../support/media.js';
import { FAST_JOBS_ENV, startTarget, testRemote, type TargetServer } from '../jobs/support.js';
import { startProcessWorkers } from '../../src/main.js';
import { runCli } from '../support/cli.js';
import { createUser } from '../../src/tenants/index.js';
import type { UserRole } from '../../src/db/schema.js';
import { SESSION_COOKIE } from '../../src/auth/console.js';
import { exportArchive, type ExportMedia } from '../../src/backup/export-archive.js';
import type { JobWorkers } from '../../src/jobs/worker.js';

const PASSWORD = 'correct horse battery staple';
const TTL_SECONDS = 600;

/** Every item of a list route, following `next_cursor`. */
async function listAll(base: string, path: string, auth: { key?: string; headers?: Record<string, string> }): Promise<any[]> {
  const out: any[] = [];
  let cursor: string | null = null;
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const r = await api(base, 'GET', `${path}${sep}limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, auth);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    out.push(...r.body.data);
    cursor = r.body.next_cursor;
    if (!cursor) return out;
  }
}

/** Polls an export until it is final (bounded). */
async function finished(base: string, orgId: string, id: string, key: string): Promise<any> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const r = await api(base, 'GET', `/v1/orgs/${orgId}/exports/${id}`, { key });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    if (r.body.status !== 'queued' && r.body.status !== 'running') return r.body;
    assert.ok(Date.now() < deadline, `export still ${r.body.status}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

async function fetchBytes(url: string): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
  const res = await fetch(url);
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

const jsonl = (dir: string, kind: string): any[] => {
  const d = join(dir, 'obscura-export', 'records', kind);
  let files: string[];
  try {
    files = readdirSync(d).sort();
  } catch {
    return [];
  }
  return files.flatMap((f) => readFileSync(join(d, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
};
const byId = (a: { id: string | number }, b: { id: string | number }) => (String(a.id) < String(b.id) ? -1 : 1);

describe('tenant export (POST /v1/orgs/{id}/export)', () => {
  let t: TestDb;
  let s: TestServer;
  let workers: JobWorkers;
  let target: TargetServer;
  let acme: Tenant;
  let other: Tenant;
  let ipSeq = 0;
  let skewMs = 0;
  const now = () => Date.now() + skewMs;
  const secrets: string[] = [];
  let first: any;
  let tarBytes: Buffer;
  let dir: string;

  /** Creates a member of `tenant` and logs in from its own address. */
  const member = async (tenant: Tenant, role: UserRole) => {
    const email = `${role}-${++ipSeq}@export.test`;
    await t.db.withTenant(tenant.orgId, (trx) => createUser(trx, tenant.orgId, { email, password: PASSWORD, role }, { actor: { type: 'cli' } }));
    const ip = `198.51.100.${ipSeq}`;
    const r = await api(s.url, 'POST', '/v1/console/login', { body: { email, password: PASSWORD }, headers: { 'x-forwarded-for': ip } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const cookie = r.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`))!.split(';')[0]!;
    return { cookie, ip, headers: { cookie, 'x-forwarded-for': ip }, csrf: { cookie, 'x-forwarded-for': ip, 'x-csrf-token': r.body.csrf_token as string, origin: s.url, 'sec-fetch-site': 'same-origin' } };
  };

  before(async () => {
    target = await startTarget();
    t = await openTestDb('pglite');
    s = await startServer(t.db, { env: { ...FAST_JOBS_ENV, OBSCURA_TRUST_PROXY: '127.0.0.1', OBSCURA_EXPORT_TTL_SECONDS: String(TTL_SECONDS) }, deps: { remote: testRemote([target.port]), now } });
    workers = await startProcessWorkers({ config: s.config, db: t.db, masterKeys: masterKeysFor(t.db), store: s.store, now });
    acme = await createTenant(t.db, 'Acme');
    other = await createTenant(t.db, 'Other');
    secrets.push(acme.key, other.key);

    // Data of every kind the archive holds: uploads (one through tus, stored as parts), labels and a
    // legal hold, a processing job with its output, a webhook endpoint, a restricted key, usage, audit.
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${s.url}/v1/assets?filename=photo-${i}.png`, { method: 'POST', headers: { authorization: `Bearer ${acme.key}`, 'content-type': 'application/octet-stream' }, body: new Uint8Array(await markedPng(`export-${i}`, 40 + i, 30)) });
      assert.equal(r.status, 201);
      ids.push(((await r.json()) as { id: string }).id);
    }
    const tusData = await markedPng('export-tus', 64, 48);
    const created = await fetch(`${s.url}/v1/uploads`, { method: 'POST', headers: { 'tus-resumable': '1.0.0', authorization: `Bearer ${acme.key}`, 'upload-length': String(tusData.length) } });
    assert.equal(created.status, 201);
    const patched = await fetch(new URL(created.headers.get('location')!, s.url), { method: 'PATCH', headers: { 'tus-resumable': '1.0.0', authorization: `Bearer ${acme.key}`, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: new Uint8Array(tusData) });
    assert.equal(patched.status, 204);
    const label = await api(s.url, 'PATCH', `/v1/assets/${ids[0]}`, { key: acme.key, body: { tags: ['invoice', 'q4'], metadata: { customer: 'ACME-42', pages: 3 }, legal_hold: true } });
    assert.equal(label.status, 200, JSON.stringify(label.body));
    const job = await api(s.url, 'POST', '/v1/jobs', { key: acme.key, body: { input: { asset_id: ids[1] }, operations: 'resize:width=20/format:webp' } });
    assert.equal(job.status, 202, JSON.stringify(job.body));
    const deadline = Date.now() + 60_000;
    while ((await api(s.url, 'GET', `/v1/jobs/${job.body.id}`, { key: acme.key })).body.status !== 'succeeded') {
      assert.ok(Date.now() < deadline, 'the job finishes');
      await new Promise((res) => setTimeout(res, 100));
    }
    const hook = await api(s.url, 'POST', '/v1/webhooks', { key: acme.key, body: { url: `${target.origin}/hook` } });
    assert.equal(hook.status, 201, JSON.stringify(hook.body));
    secrets.push(hook.body.secret);
    const restricted = await mintKey(t.db, acme, { kind: 'restricted', name: 'uploader', scopes: ['assets:write'] });
    secrets.push(restricted.secret);
    // What is stored about those secrets must not leak either: key hashes, wrapped keys, password hashes.
    for (const r of await superQuery(t, 'select hash from api_keys where org_id = $1', [acme.orgId])) secrets.push(String(r.hash));
    for (const r of await superQuery(t, 'select wrapped from tenant_keys where org_id = $1', [acme.orgId])) secrets.push(String(r.wrapped));
    await member(acme, 'owner');
    for (const r of await superQuery(t, 'select password_hash from users where org_id = $1', [acme.orgId])) secrets.push(String(r.password_hash));
    secrets.push(masterKeysFor(t.db).current.toString('hex'), masterKeysFor(t.db).current.toString('base64'));
  });

  after(async () => {
    await workers?.stop();
    await s?.close();
    await target?.close();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('an export requested with a key holding every export scope succeeds, and its archive holds every asset byte-identical to its download and the records the list routes answer', async () => {
    // Usage is buffered per node and flushed every few seconds; reading it flushes this node's.
    assert.equal((await api(s.url, 'GET', '/v1/usage', { key: acme.key })).status, 200);
    const r = await api(s.url, 'POST', `/v1/orgs/${acme.orgId}/export`, { key: acme.key });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.match(r.body.id, /^exp_/);
    assert.equal(r.headers.get('location'), `/v1/orgs/${acme.orgId}/exports/${r.body.id}`);
    assert.equal(r.body.download_url, null);
    first = await finished(s.url, acme.orgId, r.body.id, acme.key);
    assert.equal(first.status, 'succeeded', JSON.stringify(first));
    assert.ok(first.download_url.startsWith(`${s.url}/v1/exports/${first.id}/archive?`));
    assert.ok(new Date(first.download_url_expires_at).getTime() <= new Date(first.expires_at).getTime(), 'the link never outlives the export');

    const dl = await fetchBytes(first.download_url);
    assert.equal(dl.status, 200);
    assert.equal(dl.headers.get('content-type'), 'application/x-tar');
    assert.match(dl.headers.get('content-disposition')!, /^attachment;/);
    tarBytes = dl.bytes;
    assert.equal(tarBytes.length, first.size);
    assert.equal(createHash('sha256').update(tarBytes).digest('hex'), first.sha256);
    dir = tempDir('obscura-export-');
    mkdirSync(dir, { recursive: true });
    execFileSync('tar', ['-xf', '-', '-C', dir], { input: tarBytes });

    // Every live asset, its record as GET /v1/assets lists it, and its bytes as its signed URL serves them.
    const assets = (await listAll(s.url, '/v1/assets', { key: acme.key })).sort(byId);
    assert.equal(assets.length, 5, 'three uploads, one tus upload, one job output');
    assert.deepEqual(jsonl(dir, 'assets').sort(byId), assets);
    const held = assets.find((a) => a.legal_hold);
    assert.deepEqual([held.tags, held.metadata], [['invoice', 'q4'], { customer: 'ACME-42', pages: 3 }]);
    for (const a of assets) {
      const signed = await api(s.url, 'POST', `/v1/assets/${a.id}/url`, { key: acme.key, body: {} });
      const served = await fetchBytes(signed.body.url);
      assert.equal(served.status, 200);
      const inArchive = readFileSync(join(dir, 'obscura-export', 'media', `${a.id}.${a.content_type === 'image/webp' ? 'webp' : 'png'}`));
      assert.ok(inArchive.equals(served.bytes), `media of ${a.id} is byte-identical to its download`);
    }

    assert.deepEqual(jsonl(dir, 'apps'), await listAll(s.url, '/v1/apps', { key: acme.key }));
    assert.deepEqual(jsonl(dir, 'keys').sort(byId), (await listAll(s.url, `/v1/apps/${acme.appId}/keys`, { key: acme.key })).sort(byId));
    assert.deepEqual(jsonl(dir, 'jobs'), await listAll(s.url, '/v1/jobs', { key: acme.key }));
    assert.deepEqual(jsonl(dir, 'webhooks'), await listAll(s.url, '/v1/webhooks', { key: acme.key }));
    // The audit trail as it was: every entry up to the export's own request, as GET /v1/audit shows it.
    const archivedAudit = jsonl(dir, 'audit');
    const lastId = Math.max(...archivedAudit.map((e) => e.id));
    assert.deepEqual(archivedAudit.sort(byId), (await listAll(s.url, '/v1/audit', { key: acme.key })).filter((e) => e.id <= lastId).sort(byId));
    assert.ok(archivedAudit.some((e) => e.action === 'export.request' && e.target.export === first.id));
    // Usage keeps counting (this test's own requests): the months and apps are those of GET /v1/usage.
    const usage = jsonl(dir, 'usage');
    assert.ok(usage.length >= 1);
    const live = await api(s.url, 'GET', `/v1/usage?month=${usage[0].month}`, { key: acme.key });
    assert.deepEqual(usage[0].apps.map((a: any) => a.app_id), live.body.apps.map((a: any) => a.app_id));
    assert.deepEqual(jsonl(dir, 'members').map((m) => m.role), ['owner']);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'obscura-export', 'org.json'), 'utf8')).id, acme.orgId);

    // The manifest: counts, and each records file's size and digest.
    const manifest = JSON.parse(readFileSync(join(dir, 'obscura-export', 'manifest.json'), 'utf8'));
    assert.equal(manifest.export_id, first.id);
    assert.deepEqual(manifest.counts, first.counts);
    assert.equal(manifest.counts.media, 5);
    for (const f of manifest.files) {
      const bytes = readFileSync(join(dir, 'obscura-export', f.path));
      assert.equal(createHash('sha256').update(bytes).digest('hex'), f.sha256, f.path);
    }
  });

  test('the archive holds no secret material: no key, key hash, webhook secret, password hash, wrapped or master key', () => {
    assert.ok(tarBytes, 'the previous test downloaded the archive');
    for (const secret of secrets) assert.equal(tarBytes.includes(Buffer.from(secret)), false, `a secret of ${secret.slice(0, 7)}… is in the archive`);
    // Nor any field that holds one, under any name.
    // (An audit entry's `hash` is its chain link, not a secret.)
    const found = /obs_[spr]k_[0-9A-Za-z]{20}|whsec_|\$argon2|"(secret|secret_hash|key_hash|password_hash|wrapped|put_url_wrapped)":/.exec(tarBytes.toString('latin1'));
    assert.equal(found?.[0], undefined, found ? tarBytes.toString('latin1').slice(Math.max(0, found.index - 200), found.index + 100) : '');
  });

  test('the archive is stored encrypted: the blob in the store is ciphertext, not tar', async () => {
    const chunks: Buffer[] = [];
    for await (const c of await s.store.get(`orgs/${acme.orgId}/exports/${first.id}`)) chunks.push(c as Buffer);
    const stored = Buffer.concat(chunks);
    assert.equal(stored.subarray(0, 4).toString('ascii'), 'OBSC', 'the STREAM AEAD format');
    assert.equal(stored.includes(Buffer.from('ustar')), false);
    assert.equal(stored.includes(Buffer.from('obscura-export/')), false);
  });

  test('the request, the completion and each download are in the audit log', async () => {
    const actions = (await listAll(s.url, '/v1/audit', { key: acme.key })).filter((e) => e.target?.export === first.id).map((e) => e.action);
    assert.deepEqual(actions.sort(), ['export.complete', 'export.download', 'export.request']);
  });

  test('refuses another org (404), a developer or viewer session (403 ERR_ROLE_FORBIDDEN), a key without the export scopes (403 ERR_SCOPE_MISSING) and an admin session without CSRF (403 ERR_CSRF); the owner of the other org and an admin with CSRF may', async () => {
    const foreign = await api(s.url, 'POST', `/v1/orgs/${acme.orgId}/export`, { key: other.key });
    assert.deepEqual([foreign.status, foreign.body.code], [404, 'ERR_NOT_FOUND']);
    const peek = await api(s.url, 'GET', `/v1/orgs/${other.orgId}/exports/${first.id}`, { key: other.key });
    assert.deepEqual([peek.status, peek.body.code], [404, 'ERR_NOT_FOUND']);
    const twin = await api(s.url, 'POST', `/v1/orgs/${other.orgId}/export`, { key: other.key });
    assert.equal(twin.status, 202, JSON.stringify(twin.body));
    assert.equal((await finished(s.url, other.orgId, twin.body.id, other.key)).status, 'succeeded');

    for (const role of ['developer', 'viewer'] as const) {
      const m = await member(acme, role);
      const r = await api(s.url, 'POST', `/v1/orgs/${acme.orgId}/export`, { headers: m.csrf });
      // A session's missing scopes are its role's: the answer names the role.
      assert.deepEqual([r.status, r.body.code], [403, 'ERR_ROLE_FORBIDDEN'], role);
    }
    const uploader = await mintKey(t.db, acme, { kind: 'restricted', name: 'reader', scopes: ['assets:read', 'apps:read'] });
    const narrow = await api(s.url, 'POST', `/v1/orgs/${acme.orgId}/export`, { key: uploader.secret });
    assert.deepEqual([narrow.status, narrow.body.code], [403, 'ERR_SCOPE_MISSING']);
    const admin = await member(acme, 'admin');
    const forged = await api(s.url, 'POST', `/v1/orgs/${acme.orgId}/export`, { headers: admin.headers });
    assert.deepEqual([forged.status, forged.body.code], [403, 'ERR_CSRF']);
    const before = await superQuery(t, 'select count(*)::int as n from org_exports where org_id = $1', [acme.orgId]);
    assert.equal(before[0]!.n, 1, 'no refused request created an export');

    const ok = await api(s.url, 'POST', `/v1/orgs/${acme.orgId}/export`, { headers: admin.csrf });
    assert.equal(ok.status, 202, JSON.stringify(ok.body));
    assert.equal(ok.body.requested_by.type, 'user');
    // One at a time per org: a second request while the first is queued or running names it.
    const again = await api(s.url, 'POST', `/v1/orgs/${acme.orgId}/export`, { key: acme.key });
    assert.deepEqual([again.status, again.body.code, again.body.export_id], [409, 'ERR_EXPORT_IN_PROGRESS', ok.body.id]);
    assert.equal((await finished(s.url, acme.orgId, ok.body.id, acme.key)).status, 'succeeded');
  });

  test('a forged or altered download link is refused (403) and a genuine one is served', async () => {
    const current = await api(s.url, 'GET', `/v1/orgs/${acme.orgId}/exports/${first.id}`, { key: acme.key });
    const url = new URL(current.body.download_url);
    const forged = new URL(url);
    forged.searchParams.set('sig', randomBytes(32).toString('base64url'));
    const bad = await api(s.url, 'GET', forged.pathname + forged.search);
    assert.deepEqual([bad.status, bad.body.code], [403, 'ERR_SIGNATURE_INVALID']);
    const later = new URL(url);
    later.searchParams.set('exp', String(Number(url.searchParams.get('exp')) + 3600));
    assert.equal((await api(s.url, 'GET', later.pathname + later.search)).status, 403);
    assert.equal((await fetchBytes(url.toString())).status, 200);
  });

  test('an export past its expiry is no longer served, and the next request of the org deletes its archive', async () => {
    const key = `orgs/${acme.orgId}/exports/${first.id}`;
    const link = (await api(s.url, 'GET', `/v1/orgs/${acme.orgId}/exports/${first.id}`, { key: acme.key })).body.download_url;
    assert.notEqual(await s.store.head(key), null);
    skewMs = (TTL_SECONDS + 5) * 1000;
    try {
      const polled = await api(s.url, 'GET', `/v1/orgs/${acme.orgId}/exports/${first.id}`, { key: acme.key });
      assert.deepEqual([polled.body.status, polled.body.download_url], ['expired', null]);
      const gone = await api(s.url, 'GET', new URL(link).pathname + new URL(link).search);
      assert.ok(gone.status === 410 || gone.status === 404, String(gone.status));
      const next = await api(s.url, 'POST', `/v1/orgs/${acme.orgId}/export`, { key: acme.key });
      assert.equal(next.status, 202, JSON.stringify(next.body));
      assert.equal(await s.store.head(key), null, 'the expired archive was deleted');
      const row = await superQuery(t, 'select status, blob_key from org_exports where id = $1', [first.id]);
      assert.deepEqual(row[0], { status: 'expired', blob_key: null });
      assert.equal((await finished(s.url, acme.orgId, next.body.id, acme.key)).status, 'succeeded');
    } finally {
      skewMs = 0;
    }
  });

  test('obscura orgs export (the SDK underneath) downloads the archive of the credential\'s org and checks its SHA-256', async () => {
    const out = join(tempDir('obscura-export-cli-'), 'acme.tar');
    const r = await runCli(['orgs', 'export', '-o', out, '--json'], { OBSCURA_URL: s.url, OBSCURA_API_KEY: acme.key }, { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    const printed = JSON.parse(r.stdout);
    const bytes = readFileSync(out);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), printed.sha256);
    const polled = await api(s.url, 'GET', `/v1/orgs/${acme.orgId}/exports/${printed.id}`, { key: acme.key });
    assert.deepEqual([polled.body.status, polled.body.sha256], ['succeeded', printed.sha256]);
    assert.match(execFileSync('tar', ['-tf', out]).toString(), /obscura-export\/manifest\.json/);
  });

  test("erasing the org removes its exports' archives and rows", async () => {
    const owner = await member(other, 'owner');
    const exports = await superQuery(t, "select id from org_exports where org_id = $1 and status = 'succeeded'", [other.orgId]);
    assert.ok(exports.length >= 1);
    const link = (await api(s.url, 'GET', `/v1/orgs/${other.orgId}/exports/${exports[0]!.id}`, { key: other.key })).body.download_url;
    const erased = await api(s.url, 'DELETE', `/v1/orgs/${other.orgId}`, { headers: owner.csrf, body: { confirm: other.orgId, password: PASSWORD } });
    assert.equal(erased.status, 200, JSON.stringify(erased.body));
    const left: string[] = [];
    for await (const k of s.store.list(`orgs/${other.orgId}/exports/`)) left.push(k);
    assert.deepEqual(left, []);
    assert.equal((await superQuery(t, 'select count(*)::int as n from org_exports where org_id = $1', [other.orgId]))[0]!.n, 0);
    assert.equal((await fetchBytes(link)).status, 404);
  });
});

describe('the export archive writer streams', () => {
  test('holds neither records nor media whole: a 96 MiB media file and 20 000 records go through with bounded memory, and nothing is produced ahead of the reader', async () => {
    const MEDIA = 96 * 1024 * 1024;
    let produced = 0;
    const chunk = Buffer.alloc(64 * 1024, 7);
    const digest = createHash('sha256');
    for (let i = 0; i < MEDIA / chunk.length; i++) digest.update(chunk);
    const media: ExportMedia = {
      id: 'ast_big',
      ext: 'bin',
      size: MEDIA,
      sha256: digest.digest('hex'),
      open: async () =>
        Readable.from(
          (function* () {
            for (let i = 0; i < MEDIA / chunk.length; i++) {
              produced += chunk.length;
              yield chunk;
            }
          })(),
        ),
    };
    let recordsRead = 0;
    const { stream, summary } = await exportArchive({
      exportId: 'exp_test',
      orgId: 'org',
      generatedAt: new Date().toISOString(),
      org: { id: 'org' },
      sections: [{ name: 'audit', records: async function* () {
        for (let i = 0; i < 20_000; i++) {
          recordsRead += 1;
          yield { id: i, action: 'asset.create', data: 'x'.repeat(100) };
        }
      } }],
      assets: async function* () {
        yield { record: { id: 'ast_big' }, media };
      },
    });
    // Nobody reads yet: the writer stops after a few buffers, not after the whole input.
    await new Promise((res) => setTimeout(res, 200));
    assert.ok(recordsRead <= 2 * 1000 + 1, `records pulled ahead of the reader: ${recordsRead}`);
    assert.equal(produced, 0);
    // Backpressure, measured without the garbage collector's timing: at every chunk the reader
    // takes, the media source may be only a few buffers ahead of what the reader has consumed.
    // (A writer that held the media whole would be ~96 MiB ahead at the first media chunk.)
    let bytes = 0;
    let ahead = 0;
    let recordsAtFirstChunk = -1;
    for await (const c of stream) {
      if (recordsAtFirstChunk < 0) recordsAtFirstChunk = recordsRead;
      bytes += (c as Buffer).length;
      ahead = Math.max(ahead, produced - bytes);
    }
    const s = await summary;
    assert.deepEqual(s.counts, { audit: 20_000, assets: 1, media: 1 });
    assert.equal(produced, MEDIA);
    assert.ok(bytes > MEDIA);
    assert.ok(recordsAtFirstChunk < 20_000, `all ${recordsAtFirstChunk} records were read before the first byte went out`);
    assert.ok(ahead < 8 * 1024 * 1024, `the media source ran ${Math.round(ahead / 1048576)} MiB ahead of the reader`);
  });
});
