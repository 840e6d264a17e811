/**
 * Issue 9, item 21: `obscura keys roll --grace 0` killed after its commit and before it printed the
 * new secret must not lock anyone out. Real processes: a PostgreSQL database, `obscura serve`, and the
 * CLI killed with SIGKILL as soon as the roll is committed (watched from outside through SQL).
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createEmptyDatabase, tempDir } from '../support/db.js';
import { BIN, cliEnv, runCli, startServe, type ServerProcess } from '../support/cli.js';
import { api } from '../support/server.js';

/** Runs `obscura keys roll KEY --grace 0` and SIGKILLs it the moment the roll is visible in the database. */
async function rollAndKill(env: Record<string, string>, admin: pg.Client, keyId: string): Promise<{ printed: boolean }> {
  const child = spawn(process.execPath, [BIN, 'keys', 'roll', keyId, '--grace', '0', '--json'], { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const row = (await admin.query('select rolled_to from api_keys where id = $1', [keyId])).rows[0];
    if (row?.rolled_to) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the roll never committed: ${out}`);
  }
  child.kill('SIGKILL');
  await exited;
  return { printed: out.includes('obs_sk_') };
}

describe('obscura keys roll --grace 0 killed after its commit', () => {
  let server: ServerProcess | undefined;
  let admin: pg.Client | undefined;
  after(async () => {
    await server?.stop('SIGKILL');
    await admin?.end();
  });

  test('the old key keeps working, the same command run again issues a usable key and revokes the lost one, and the old key stops at the new key\'s first use', async () => {
    const { url, adminUrl } = await createEmptyDatabase('postgres');
    const env = { DATABASE_URL: url!, OBSCURA_MASTER_KEY: randomBytes(32).toString('hex'), OBSCURA_DATA_DIR: tempDir() };
    const init = await runCli(['init', '--json'], env);
    assert.equal(init.code, 0, init.stderr);
    const { secret_key: full, app } = JSON.parse(init.stdout);
    server = await startServe(env);
    const created = await api(server.url, 'POST', `/v1/apps/${app.id}/keys`, { key: full.key, body: { kind: 'secret', name: 'backend' } });
    const old = created.body as { key: { id: string }; secret: string };
    assert.equal((await api(server.url, 'GET', '/v1/whoami', { key: old.secret })).status, 200);

    admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    const killed = await rollAndKill(env, admin, old.key.id);
    const lostId = (await admin.query('select rolled_to from api_keys where id = $1', [old.key.id])).rows[0].rolled_to as string;
    // Whatever the kill interrupted, the integration is not locked out.
    assert.equal((await api(server.url, 'GET', '/v1/whoami', { key: old.secret })).status, 200, `old key after the kill (printed before the kill: ${killed.printed})`);

    const again = await runCli(['keys', 'roll', old.key.id, '--grace', '0', '--json'], env);
    assert.equal(again.code, 0, again.stderr);
    const rolled = JSON.parse(again.stdout) as { key: { id: string }; secret: string };
    assert.notEqual(rolled.key.id, lostId);
    const lost = (await admin.query('select revoked_at from api_keys where id = $1', [lostId])).rows[0];
    assert.ok(lost.revoked_at, 'the replacement nobody saw is revoked');
    assert.equal((await api(server.url, 'GET', '/v1/whoami', { key: old.secret })).status, 200, 'still the old key until the new one is used');

    assert.equal((await api(server.url, 'GET', '/v1/whoami', { key: rolled.secret })).status, 200);
    const stopped = await api(server.url, 'GET', '/v1/whoami', { key: old.secret });
    assert.equal(stopped.status, 401);
    assert.equal(stopped.body.code, 'ERR_KEY_ROLLED');
    const late = await runCli(['keys', 'roll', old.key.id, '--grace', '0'], env);
    assert.equal(late.code, 1);
    assert.match(late.stderr, /ERR_CONFLICT/);
  });
});
