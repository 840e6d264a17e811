import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync as read, statSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { createEmptyDatabase, tempDir } from '../support/db.js';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { api } from '../support/server.js';
import { markedPng } from '../support/media.js';
import pg from 'pg';

describe('obscura CLI on the embedded default', () => {
  const dataDir = tempDir();
  const env = { OBSCURA_DATA_DIR: dataDir };
  let server: ServerProcess | undefined;
  after(async () => {
    await server?.stop('SIGKILL');
  });

  let init: any;

  test('init creates the first org, owner and app and prints the keys once as JSON', async () => {
    const r = await runCli(['init', '--json', '--org', 'Acme', '--email', 'owner@acme.test', '--origin', 'https://shop.acme.test'], env);
    assert.equal(r.code, 0, r.stderr);
    init = JSON.parse(r.stdout);
    assert.match(init.secret_key.key, /^obs_sk_/);
    assert.match(init.publishable_key.key, /^obs_pk_/);
    assert.equal(init.owner.email, 'owner@acme.test');
    // The generated master key file is private to the user.
    assert.equal(statSync(join(dataDir, 'master.key')).mode & 0o777, 0o600);
    const again = await runCli(['init', '--json'], env);
    assert.equal(again.code, 2, 'a second init is refused');
  });

  test('serve starts, the printed key works over HTTP, and /healthz and /readyz answer', async () => {
    server = await startServe(env);
    const apps = await api(server.url, 'GET', '/v1/apps', { key: init.secret_key.key });
    assert.equal(apps.status, 200);
    assert.equal(apps.body.data[0].id, init.app.id);
    assert.equal((await api(server.url, 'GET', '/healthz')).status, 200);
    assert.equal((await api(server.url, 'GET', '/readyz')).status, 200);
  });

  test('a second serve on the same data dir exits non-zero at once with a clear message', async () => {
    // "At once": it exits by itself with code 1 instead of waiting for the lock (a process still
    // waiting when runCli's timeout kills it has no exit code). No wall-clock bound: a cold CLI start
    // took 15 s on a loaded 2-core machine, so a time limit would measure the machine, not the lock.
    const r = await runCli(['serve'], { ...env, OBSCURA_PORT: '0' }, { timeoutMs: 90_000 });
    assert.equal(r.code, 1, `exit ${r.code} after ${r.ms} ms: ${r.stderr}`);
    assert.match(r.stderr, /already in use by process \d+/);
    // The running server is unaffected.
    assert.equal((await api(server!.url, 'GET', '/v1/apps', { key: init.secret_key.key })).status, 200);
  });

  test('a SIGKILLed server leaves a stale lock that the next start takes over', async () => {
    await server!.stop('SIGKILL');
    server = await startServe(env);
    assert.equal((await api(server.url, 'GET', '/v1/apps', { key: init.secret_key.key })).status, 200);
    assert.equal(await server.stop('SIGTERM'), 0, 'clean shutdown exits 0');
    server = undefined;
  });

  test('keys create, list, roll and revoke work from the CLI and the results hold over HTTP', async () => {
    const created = await runCli(['keys', 'create', '--app', init.app.id, '--kind', 'restricted', '--scope', 'apps:read', '--json'], env);
    assert.equal(created.code, 0, created.stderr);
    const k = JSON.parse(created.stdout);
    assert.deepEqual(k.key.scopes, ['apps:read']);
    const list = await runCli(['keys', 'list', '--app', init.app.id, '--json'], env);
    assert.equal(list.code, 0);
    assert.ok(!list.stdout.includes(k.secret), 'list never prints secrets');
    assert.equal(JSON.parse(list.stdout).length, 3);
    const rolled = await runCli(['keys', 'roll', k.key.id, '--grace', '0', '--json'], env);
    assert.equal(rolled.code, 0, rolled.stderr);
    const roll = JSON.parse(rolled.stdout);
    const revoked = await runCli(['keys', 'revoke', roll.key.id, '--json'], env);
    assert.equal(revoked.code, 0);
    server = await startServe(env);
    assert.equal((await api(server.url, 'GET', '/v1/apps', { key: k.secret })).body.code, 'ERR_KEY_ROLLED');
    assert.equal((await api(server.url, 'GET', '/v1/apps', { key: roll.secret })).body.code, 'ERR_KEY_REVOKED');
    await server.stop();
    server = undefined;
  });

  test('usage errors exit 2; a missing app exits 1 with its code', async () => {
    assert.equal((await runCli(['keys', 'create'], env)).code, 2);
    assert.equal((await runCli(['frobnicate'], env)).code, 2);
    const missing = await runCli(['keys', 'list', '--app', '00000000-0000-4000-8000-000000000000'], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /ERR_NOT_FOUND/);
  });

  test('users set-role changes a role and is audited; the last owner cannot be demoted', async () => {
    const add = await runCli(['users', 'add', '--org', init.org.id, '--email', 'dev@acme.test', '--role', 'developer', '--json'], env);
    assert.equal(add.code, 0, add.stderr);
    const promote = await runCli(['users', 'set-role', '--org', init.org.id, '--email', 'dev@acme.test', '--role', 'admin'], env);
    assert.equal(promote.code, 0, promote.stderr);
    const demoteOwner = await runCli(['users', 'set-role', '--org', init.org.id, '--email', 'owner@acme.test', '--role', 'viewer'], env);
    assert.equal(demoteOwner.code, 1);
    assert.match(demoteOwner.stderr, /ERR_CONFLICT/);
  });

  test('audit verify passes, then names the first broken entry after a row is edited in SQL', async () => {
    const ok = await runCli(['audit', 'verify', '--json'], env);
    assert.equal(ok.code, 0, ok.stderr);
    const report = JSON.parse(ok.stdout);
    const roleChange = report.chains[0];
    assert.ok(roleChange.entries > 5);
    // Tamper as someone with direct database access would: bypass the trigger and edit one row.
    const db = await PGlite.create(join(dataDir, 'db'));
    const row = (await db.query<{ id: number }>("select id from audit_log where action = 'user.role_change' order by id limit 1")).rows[0]!;
    await db.exec(`set session_replication_role = replica; update audit_log set data = '{"from":"developer","to":"owner"}' where id = ${row.id}; set session_replication_role = origin;`);
    await db.close();
    const bad = await runCli(['audit', 'verify'], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, new RegExp(`BROKEN org:${init.org.id}: entry id=${row.id} `));
  });

  test('doctor flags the master key kept in the data dir, and is clean with OBSCURA_MASTER_KEY set', async () => {
    const flagged = await runCli(['doctor', '--json'], env);
    assert.equal(flagged.code, 1);
    assert.ok(JSON.parse(flagged.stdout).findings.some((f: { setting: string; level: string }) => f.setting === 'OBSCURA_MASTER_KEY' && f.level === 'unsafe'));
    const clean = await runCli(['doctor'], { OBSCURA_DATA_DIR: tempDir(), OBSCURA_MASTER_KEY: randomBytes(32).toString('hex') });
    assert.equal(clean.code, 0, clean.stdout);
  });

  test('a configuration error names the setting and exits 1 without starting', async () => {
    const r = await runCli(['serve'], { ...env, OBSCURA_PORT: 'http' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /OBSCURA_PORT/);
    assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
  });
});

describe('obscura CLI on PostgreSQL', () => {
  const servers: ServerProcess[] = [];
  after(async () => {
    for (const s of servers) await s.stop('SIGKILL');
  });

  test('init, two serve processes sharing the database, and audit verify after tampering', async () => {
    const { url, adminUrl } = await createEmptyDatabase('postgres');
    const env = { DATABASE_URL: url!, OBSCURA_MASTER_KEY: randomBytes(32).toString('hex'), OBSCURA_DATA_DIR: tempDir() };
    const noKey = await runCli(['init', '--json'], { DATABASE_URL: url!, OBSCURA_DATA_DIR: tempDir() });
    assert.equal(noKey.code, 1);
    assert.match(noKey.stderr, /OBSCURA_MASTER_KEY/);
    const r = await runCli(['init', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const init = JSON.parse(r.stdout);
    servers.push(await startServe(env), await startServe(env));
    for (const s of servers) assert.equal((await api(s.url, 'GET', '/v1/apps', { key: init.secret_key.key })).status, 200);
    // Revoke through node 1; node 2 refuses within 5 s.
    const k = await api(servers[0]!.url, 'POST', `/v1/apps/${init.app.id}/keys`, { key: init.secret_key.key, body: { kind: 'secret' } });
    assert.equal((await api(servers[1]!.url, 'GET', '/v1/apps', { key: k.body.secret })).status, 200);
    assert.equal((await api(servers[0]!.url, 'DELETE', `/v1/keys/${k.body.key.id}`, { key: init.secret_key.key })).status, 200);
    await new Promise((res) => setTimeout(res, 5000));
    assert.equal((await api(servers[1]!.url, 'GET', '/v1/apps', { key: k.body.secret })).body.code, 'ERR_KEY_REVOKED');

    assert.equal((await runCli(['audit', 'verify'], env)).code, 0);
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    const row = (await c.query("select id from audit_log where action = 'key.create' order by id desc limit 1")).rows[0];
    await c.query(`set session_replication_role = replica`);
    await c.query(`update audit_log set actor = '{"type":"cli","id":"someone-else"}' where id = $1`, [row.id]);
    await c.end();
    const bad = await runCli(['audit', 'verify', '--json'], env);
    assert.equal(bad.code, 1);
    const report = JSON.parse(bad.stdout);
    assert.equal(report.chains[0].broken.id, Number(row.id));
  });
});

describe('obscura keys rotate-master', () => {
  test('embedded: re-wraps every tenant key under a new master.key, blobs untouched, data still readable', async () => {
    const dataDir = tempDir();
    const env = { OBSCURA_DATA_DIR: dataDir };
    const init = JSON.parse((await runCli(['init', '--json'], env)).stdout);
    let server = await startServe(env);
    const png = await markedPng('rotate-marker');
    const up = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${init.secret_key.key}` }, body: new Uint8Array(png) });
    const asset = (await up.json()) as { id: string; sha256: string };
    assert.equal(up.status, 201);
    await server.stop();
    const keyBefore = read(join(dataDir, 'master.key'), 'utf8');
    const blobsBefore = walk(join(dataDir, 'blobs')).map((f) => read(f).toString('base64'));
    const r = await runCli(['keys', 'rotate-master', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(JSON.parse(r.stdout).tenantKeys >= 1);
    assert.notEqual(read(join(dataDir, 'master.key'), 'utf8'), keyBefore);
    assert.equal(statSync(join(dataDir, 'master.key')).mode & 0o777, 0o600);
    assert.deepEqual(walk(join(dataDir, 'blobs')).map((f) => read(f).toString('base64')), blobsBefore, 'blobs untouched');
    server = await startServe(env);
    try {
      const link = await api(server.url, 'POST', `/v1/assets/${asset.id}/url`, { key: init.secret_key.key, body: {} });
      const body = Buffer.from(await (await fetch(link.body.url)).arrayBuffer());
      assert.equal(body.length, png.length);
      assert.ok(body.equals(png));
    } finally {
      await server.stop();
    }
  });
});

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)])).sort();
}
