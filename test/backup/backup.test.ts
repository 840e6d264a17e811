/**
 * Issue 14, items 1–3: encrypted backups, verify and restore, and erasure surviving backups.
 *
 * Everything goes through the real `obscura` command and real servers (`obscura serve` processes):
 * the data is made over HTTP (a direct upload, a tus upload, a processed job output, keys, audit),
 * a backup is taken while requests are being served, restored into an empty target, and a server
 * started on the restored target must serve every asset byte-identical to the same keys, with
 * `obscura audit verify` passing. PGlite (the backup goes through the running server's dump socket)
 * with a local archive; PostgreSQL with the archive on S3 (s3rver, a fake that does not check SigV4).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exited, runCli, startServe, type CliResult, type ServerProcess } from '../support/cli.js';
import { createEmptyDatabase, tempDir } from '../support/db.js';
import { api } from '../support/server.js';
import { markedPng } from '../support/media.js';
import { startS3rver, type S3rverHandle } from '../support/s3rver.js';
import { spawn } from 'node:child_process';
import { BIN, cliEnv } from '../support/cli.js';
import { openDatabase } from '../../src/db/database.js';

const BACKUP_KEY = randomBytes(32).toString('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The real `obscura` command, with a bound generous enough for a loaded 2-core machine (each run opens the database). */
const cli = (args: string[], env: Record<string, string>): Promise<CliResult> => runCli(args, env, { timeoutMs: 300_000 });

/** What the drill creates and later expects back. */
interface World {
  orgId: string;
  key: string;
  /** asset id → original bytes (the output's bytes as first downloaded). */
  assets: Map<string, Buffer>;
}

async function download(base: string, key: string, id: string): Promise<{ status: number; bytes: Buffer }> {
  const signed = await api(base, 'POST', `/v1/assets/${id}/url`, { key, body: {} });
  if (signed.status !== 201) return { status: signed.status, bytes: Buffer.alloc(0) };
  const res = await fetch(signed.body.url);
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
}

/** A direct upload, a tus upload (create + one PATCH) and a job's processed output, made over HTTP. */
async function makeData(base: string, key: string): Promise<Map<string, Buffer>> {
  const assets = new Map<string, Buffer>();
  const direct = await markedPng(`backup-direct-${randomBytes(4).toString('hex')}`, 64, 48);
  const up = await fetch(`${base}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' }, body: new Uint8Array(direct) });
  assert.equal(up.status, 201);
  const directId = ((await up.json()) as { id: string }).id;
  assets.set(directId, direct);

  const viaTus = await markedPng(`backup-tus-${randomBytes(4).toString('hex')}`, 80, 60);
  const tusHeaders = { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0' };
  const created = await fetch(`${base}/v1/uploads`, { method: 'POST', headers: { ...tusHeaders, 'upload-length': String(viaTus.length) } });
  assert.equal(created.status, 201);
  const patched = await fetch(new URL(created.headers.get('location')!, base), {
    method: 'PATCH',
    headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
    body: new Uint8Array(viaTus),
  });
  assert.equal(patched.status, 204);
  const tusId = patched.headers.get('obscura-asset-id')!;
  assert.ok(tusId, 'the completing PATCH names the asset');
  assets.set(tusId, viaTus);

  const job = await api(base, 'POST', '/v1/jobs', { key, body: { input: { asset_id: directId }, operations: 'resize:width=32/format:webp' } });
  assert.equal(job.status, 202);
  const deadline = Date.now() + 60_000;
  let done: any;
  while (Date.now() < deadline) {
    done = (await api(base, 'GET', `/v1/jobs/${job.body.id}`, { key })).body;
    if (['succeeded', 'failed', 'cancelled'].includes(done?.status)) break;
    await sleep(250);
  }
  assert.equal(done?.status, 'succeeded', JSON.stringify(done));
  const output = await download(base, key, done.output.asset_id);
  assert.equal(output.status, 200);
  assets.set(done.output.asset_id, output.bytes);
  return assets;
}

/** Requests served while a backup runs: reads and new uploads, until `stop` resolves. */
function keepServing(base: string, key: string, ids: string[]): { stop: () => Promise<number> } {
  let running = true;
  let served = 0;
  const loop = (async () => {
    while (running) {
      const r = await api(base, 'GET', `/v1/assets/${ids[served % ids.length]}`, { key });
      assert.equal(r.status, 200);
      const body = await markedPng(`during-backup-${served}`, 16, 12);
      const up = await fetch(`${base}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' }, body: new Uint8Array(body) });
      assert.equal(up.status, 201);
      served += 1;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return served;
    },
  };
}

/** Checks a server on restored data: every asset byte-identical to the same key. */
async function assertServes(base: string, w: World): Promise<void> {
  assert.equal((await api(base, 'GET', '/v1/apps', { key: w.key })).status, 200, 'the key authenticates on the restored server');
  for (const [id, bytes] of w.assets) {
    const d = await download(base, w.key, id);
    assert.equal(d.status, 200, `asset ${id} downloads`);
    assert.ok(d.bytes.equals(bytes), `asset ${id} is byte-identical`);
  }
}

function flipByte(file: string): void {
  const b = readFileSync(file);
  b[Math.floor(b.length / 2)]! ^= 0x01;
  writeFileSync(file, b);
}

const firstBlob = (archive: string): string => {
  const dir = join(archive, 'blobs');
  const sub = readdirSync(dir).sort()[0]!;
  return join(dir, sub, readdirSync(join(dir, sub))[0]!);
};

describe('backup and restore on the embedded database (PGlite, local archive)', () => {
  const root = tempDir('obscura-backup-');
  const dataDir = join(root, 'data');
  const archive = join(root, 'archive');
  const env = { OBSCURA_DATA_DIR: dataDir, OBSCURA_BACKUP_KEY: BACKUP_KEY };
  let server: ServerProcess | undefined;
  let restored: ServerProcess | undefined;
  let w: World;
  let firstSnapshot: string;

  before(async () => {
    const init = await cli(['init', '--json', '--org', 'Backup Co', '--email', 'owner@backup.test'], env);
    assert.equal(init.code, 0, init.stderr);
    const out = JSON.parse(init.stdout);
    server = await startServe(env, 120_000);
    w = { orgId: out.org.id, key: out.secret_key.key, assets: await makeData(server.url, out.secret_key.key) };
  });

  after(async () => {
    await server?.stop();
    await restored?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('a backup taken while the server serves requests restores into an empty data dir where every asset downloads byte-identical, keys authenticate and audit verify passes', async () => {
    const load = keepServing(server!.url, w.key, [...w.assets.keys()]);
    const made = await cli(['backup', 'create', '--to', archive, '--json'], env);
    const served = await load.stop();
    assert.equal(made.code, 0, made.stderr);
    const report = JSON.parse(made.stdout);
    firstSnapshot = report.snapshot;
    assert.ok(report.blobs.total >= 3, 'the direct upload, the tus upload and the output');
    assert.ok(served >= 1, 'requests were served during the backup');

    // Nothing in the archive is plaintext: the dump is sealed, blobs are the stored ciphertext.
    const dump = readFileSync(join(archive, 'snapshots', firstSnapshot, 'db'));
    assert.ok(!dump.includes(Buffer.from('owner@backup.test')), 'the sealed dump does not show an e-mail address');
    assert.ok(!dump.includes(Buffer.from('"tenant_keys"')), 'nor table names');

    const verified = await cli(['backup', 'verify', archive, '--json'], env);
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal(JSON.parse(verified.stdout).ok, true);

    const target = join(root, 'restored');
    const r = await cli(['backup', 'restore', archive, '--to-data-dir', target, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const rr = JSON.parse(r.stdout);
    assert.equal(rr.audit.ok, true);
    assert.deepEqual(rr.decrypt_check.failed, []);
    assert.ok(rr.decrypt_check.checked >= 3);
    assert.equal((statSync(target).mode & 0o777).toString(8), '700');

    const audit = await cli(['audit', 'verify', '--json'], { OBSCURA_DATA_DIR: target });
    assert.equal(audit.code, 0, audit.stdout + audit.stderr);
    restored = await startServe({ OBSCURA_DATA_DIR: target }, 120_000);
    await assertServes(restored.url, w);
    await restored.stop();
    restored = undefined;
  });

  test('a changed blob, dump or manifest, a removed blob and a wrong backup key are refused by verify and restore naming the file (exit 4), and restore changes nothing', async () => {
    const cases: { name: string; spoil: (copy: string) => string; env?: Record<string, string> }[] = [
      { name: 'one byte flipped in a blob', spoil: (c) => (flipByte(firstBlob(c)), firstBlob(c).slice(c.length + 1)) },
      { name: 'a blob removed', spoil: (c) => { const f = firstBlob(c); rmSync(f); return f.slice(c.length + 1); } },
      { name: 'the manifest edited', spoil: (c) => (flipByte(join(c, 'snapshots', firstSnapshot, 'manifest')), `snapshots/${firstSnapshot}/manifest`) },
      { name: 'one byte flipped in the dump', spoil: (c) => (flipByte(join(c, 'snapshots', firstSnapshot, 'db')), `snapshots/${firstSnapshot}/db`) },
      { name: 'another backup key', spoil: () => `snapshots/${firstSnapshot}/manifest`, env: { OBSCURA_BACKUP_KEY: randomBytes(32).toString('hex') } },
    ];
    // One copy per case, checked in parallel (each check is its own `obscura` process).
    await Promise.all(
      cases.map(async (c, i) => {
        const copy = join(root, `tampered-${i}`);
        cpSync(archive, copy, { recursive: true });
        const file = c.spoil(copy);
        const v = await cli(['backup', 'verify', copy, '--snapshot', firstSnapshot], { ...env, ...c.env });
        assert.equal(v.code, 4, `${c.name}: verify exits 4\n${v.stdout}${v.stderr}`);
        assert.match(v.stderr, new RegExp(`ERR_BACKUP_INVALID: ${file.replace(/[.]/g, '\\.')}`), `${c.name}: names ${file}`);
        // Restore reads the same checks; a changed blob is only found while copying, after other blobs were written.
        if (i !== 0 && i !== 2) return;
        const target = join(root, `never-${i}`);
        const r = await cli(['backup', 'restore', copy, '--snapshot', firstSnapshot, '--to-data-dir', target, '--json'], { ...env, ...c.env });
        assert.equal(r.code, 4, `${c.name}: restore exits 4\n${r.stderr}`);
        assert.equal(JSON.parse(r.stderr).error.code, 'ERR_BACKUP_INVALID');
        assert.ok(JSON.parse(r.stderr).error.detail.startsWith(file), `${c.name}: restore names ${file}: ${r.stderr}`);
        assert.equal(existsSync(target), false, `${c.name}: the target was not left behind`);
      }),
    );
    // The legitimate twin: the untouched archive still verifies.
    assert.equal((await cli(['backup', 'verify', archive], env)).code, 0);

    const busy = join(root, 'busy');
    cpSync(join(root, 'restored'), busy, { recursive: true });
    const before = readdirSync(busy).sort();
    const r = await cli(['backup', 'restore', archive, '--to-data-dir', busy, '--json'], env);
    assert.equal(r.code, 5, r.stderr);
    assert.equal(JSON.parse(r.stderr).error.code, 'ERR_BACKUP_TARGET_NOT_EMPTY');
    assert.deepEqual(readdirSync(busy).sort(), before, 'the non-empty target is unchanged');
  });

  test('a backup killed with SIGKILL before it finished leaves nothing that verify or restore accepts', async () => {
    const fresh = join(root, 'killed');
    const child = spawn(process.execPath, [BIN, 'backup', 'create', '--to', fresh], { env: cliEnv({ ...env, OBSCURA_TEST_BACKUP_PAUSE_MS: '60000' }), stdio: 'ignore' });
    const deadline = Date.now() + 60_000;
    // Killed once the dump and the blobs are written, just before the manifest would be.
    while (Date.now() < deadline && !(existsSync(join(fresh, 'snapshots')) && readdirSync(join(fresh, 'snapshots')).some((id) => existsSync(join(fresh, 'snapshots', id, 'db'))) && existsSync(join(fresh, 'blobs')))) await sleep(50);
    await sleep(500);
    child.kill('SIGKILL');
    await exited(child);
    assert.equal(child.signalCode, 'SIGKILL');
    const v = await cli(['backup', 'verify', fresh], env);
    assert.equal(v.code, 4, v.stderr);
    assert.match(v.stderr, /no complete backup/);
    const r = await cli(['backup', 'restore', fresh, '--to-data-dir', join(root, 'from-killed')], env);
    assert.equal(r.code, 4, r.stderr);
    assert.equal(existsSync(join(root, 'from-killed')), false);
  });

  test('a restore killed with SIGKILL before its commit leaves the target absent, never a half-restored data dir', async () => {
    const target = join(root, 'restore-killed');
    const child = spawn(process.execPath, [BIN, 'backup', 'restore', archive, '--to-data-dir', target], { env: cliEnv({ ...env, OBSCURA_TEST_BACKUP_PAUSE_MS: '60000' }), stdio: 'ignore' });
    // Killed once the blobs, the database and the key file are in the staging directory, just before the rename.
    const staged = () => readdirSync(root).filter((n) => n.startsWith('.restore-killed.restoring-')).map((n) => join(root, n)).find((d) => existsSync(join(d, 'master.key')));
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline && !staged()) await sleep(50);
    const staging = staged();
    child.kill('SIGKILL');
    await exited(child);
    assert.ok(staging && existsSync(join(staging, 'db')) && existsSync(join(staging, 'blobs')), 'the restore had written everything but its commit');
    assert.equal(existsSync(target), false, 'the target is untouched: nothing can start on it as if it were whole');
  });

  test('an org erased after a backup stays erased when that older backup is restored: no rows, no keys, no blobs, and audit verify passes', async () => {
    await server!.stop();
    server = undefined;
    const erase = await cli(['orgs', 'erase', w.orgId, '--confirm', w.orgId, '--json'], env);
    assert.equal(erase.code, 0, erase.stderr);
    // The next backup (taken directly: no server holds the data dir) records the erasure in the archive's ledger.
    const second = await cli(['backup', 'create', '--to', archive, '--json'], env);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(JSON.parse(second.stdout).erasures_in_ledger, 1);

    const target = join(root, 'restored-old');
    const r = await cli(['backup', 'restore', archive, '--snapshot', firstSnapshot, '--to-data-dir', target, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const rr = JSON.parse(r.stdout);
    assert.deepEqual(rr.erasures_reapplied, [w.orgId]);
    assert.equal(rr.blobs.restored, 0, 'none of the erased org\'s blobs was copied back');
    assert.equal(rr.audit.ok, true);
    assert.equal(existsSync(join(target, 'blobs', 'orgs', w.orgId)), false);

    const audit = await cli(['audit', 'verify', '--json'], { OBSCURA_DATA_DIR: target });
    assert.equal(audit.code, 0, audit.stdout + audit.stderr);
    assert.ok(JSON.parse(audit.stdout).erased.includes(`org:${w.orgId}`) || audit.stdout.includes(w.orgId), 'the system chain records the erasure');

    const db = await openDatabase({ kind: 'pglite', dataDir: target });
    try {
      for (const table of ['orgs', 'tenant_keys', 'assets', 'api_keys'] as const) {
        const col = table === 'orgs' ? 'id' : 'org_id';
        const n = await db.system.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).where(col as never, '=', w.orgId as never).executeTakeFirstOrThrow();
        assert.equal(Number(n.n), 0, `no ${table} row of the erased org`);
      }
    } finally {
      await db.close();
    }
    // Removing the ledger file alone does not bring the org back: the later snapshot's manifest remembers it.
    const noLedger = join(root, 'archive-without-ledger');
    cpSync(archive, noLedger, { recursive: true });
    rmSync(join(noLedger, 'erasures'));
    const r1 = await cli(['backup', 'restore', noLedger, '--snapshot', firstSnapshot, '--to-data-dir', join(root, 'restored-no-ledger'), '--json'], env);
    assert.equal(r1.code, 0, r1.stderr);
    assert.deepEqual(JSON.parse(r1.stdout).erasures_reapplied, [w.orgId]);
    // The legitimate twin: the same snapshot restores the org from an archive that never saw the
    // erasure (no ledger, no later snapshot), so it is the archive's record that keeps it erased.
    const blind = join(root, 'archive-before-erasure');
    cpSync(archive, blind, { recursive: true });
    rmSync(join(blind, 'erasures'));
    for (const id of readdirSync(join(blind, 'snapshots'))) if (id !== firstSnapshot) rmSync(join(blind, 'snapshots', id), { recursive: true });
    const r2 = await cli(['backup', 'restore', blind, '--snapshot', firstSnapshot, '--to-data-dir', join(root, 'restored-blind'), '--json'], env);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(JSON.parse(r2.stdout).erasures_reapplied, []);
    assert.ok(JSON.parse(r2.stdout).blobs.restored >= 3);
  });
});

describe('backup and restore on PostgreSQL with the archive on S3 (s3rver)', () => {
  const root = tempDir('obscura-backup-pg-');
  let s3: S3rverHandle;
  let env: Record<string, string>;
  let server: ServerProcess | undefined;
  let restored: ServerProcess | undefined;
  let w: World;
  const masterKey = randomBytes(32).toString('hex');

  before(async () => {
    s3 = await startS3rver('backups');
    const source = await createEmptyDatabase('postgres');
    env = {
      DATABASE_URL: source.url!,
      OBSCURA_MASTER_KEY: masterKey,
      OBSCURA_DATA_DIR: join(root, 'data'),
      OBSCURA_BACKUP_KEY: BACKUP_KEY,
      OBSCURA_S3_ENDPOINT: s3.endpoint,
      OBSCURA_S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    };
    const init = await cli(['init', '--json', '--org', 'Backup PG', '--email', 'owner@backup-pg.test'], env);
    assert.equal(init.code, 0, init.stderr);
    const out = JSON.parse(init.stdout);
    server = await startServe(env, 120_000);
    w = { orgId: out.org.id, key: out.secret_key.key, assets: await makeData(server.url, out.secret_key.key) };
  });

  after(async () => {
    await server?.stop();
    await restored?.stop();
    await s3?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('a backup to s3:// taken while the server serves requests restores into an empty PostgreSQL and store where every asset downloads byte-identical, keys authenticate and audit verify passes', async () => {
    const to = `s3://${s3.bucket}/nightly`;
    const load = keepServing(server!.url, w.key, [...w.assets.keys()]);
    const made = await cli(['backup', 'create', '--to', to, '--json'], env);
    await load.stop();
    assert.equal(made.code, 0, made.stderr);
    // Incremental: a second backup copies no blob the first already holds.
    const again = await cli(['backup', 'create', '--to', to, '--json'], env);
    assert.equal(again.code, 0, again.stderr);
    const second = JSON.parse(again.stdout);
    assert.ok(second.blobs.reused >= JSON.parse(made.stdout).blobs.total, 'the first backup\'s blobs are reused');

    const verified = await cli(['backup', 'verify', to], env);
    assert.equal(verified.code, 0, verified.stderr);

    const target = await createEmptyDatabase('postgres');
    const targetEnv = { ...env, DATABASE_URL: target.url!, OBSCURA_DATA_DIR: join(root, 'restored') };
    const r = await cli(['backup', 'restore', to, '--to-configured', '--json'], targetEnv);
    assert.equal(r.code, 0, r.stderr);
    const rr = JSON.parse(r.stdout);
    assert.equal(rr.audit.ok, true);
    assert.deepEqual(rr.decrypt_check.failed, []);

    // Restoring again into the now non-empty database is refused and changes nothing.
    const twice = await cli(['backup', 'restore', to, '--to-configured', '--json'], { ...targetEnv, OBSCURA_DATA_DIR: join(root, 'other') });
    assert.equal(twice.code, 5, twice.stderr);
    assert.equal(existsSync(join(root, 'other', 'blobs', 'orgs')), false);

    const audit = await cli(['audit', 'verify', '--json'], targetEnv);
    assert.equal(audit.code, 0, audit.stdout + audit.stderr);
    restored = await startServe(targetEnv, 120_000);
    await assertServes(restored.url, w);
  });
});
