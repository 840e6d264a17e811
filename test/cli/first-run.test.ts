/**
 * Issue 9, item 13: the first run explains itself, and the first org can be created while the server
 * holds the embedded data dir (one-time setup token, keys printed exactly once).
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/db.js';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { api } from '../support/server.js';

describe('first run on the embedded default', () => {
  const dataDir = tempDir();
  const env = { OBSCURA_DATA_DIR: dataDir };
  let server: ServerProcess | undefined;
  after(async () => {
    await server?.stop('SIGKILL');
  });

  test('serve on an empty data dir says there is no org and how to create one, and writes an owner-only setup token', async () => {
    server = await startServe(env, 120_000); // an empty data dir: PGlite's first initdb is slow on a busy 2-core machine
    // The guidance is printed once the listening line is out; give it a moment.
    for (let i = 0; i < 50 && !server.output().includes('obscura init'); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(server.output(), /no org yet/);
    assert.match(server.output(), /obscura init --org/);
    const file = join(dataDir, 'setup.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const setup = JSON.parse(readFileSync(file, 'utf8'));
    assert.match(setup.token, /^obs_setup_/);
    assert.equal(new URL(setup.url).port, new URL(server.url).port);
  });

  test('POST /v1/setup refuses a missing or forged token and creates nothing', async () => {
    const none = await api(server!.url, 'POST', '/v1/setup', { body: { org: 'Evil', email: 'evil@evil.test' } });
    assert.equal(none.status, 401);
    assert.equal(none.body.code, 'ERR_AUTH_MISSING');
    const forged = await api(server!.url, 'POST', '/v1/setup', { body: { org: 'Evil', email: 'evil@evil.test' }, headers: { authorization: `Bearer obs_setup_${'A'.repeat(43)}` } });
    assert.equal(forged.status, 401);
    assert.equal(forged.body.code, 'ERR_TOKEN_INVALID');
    assert.ok(existsSync(join(dataDir, 'setup.json')), 'the real token is still waiting');
  });

  test('init while the server runs creates the first org through it, prints the keys once, and the key works at once', async () => {
    const r = await runCli(['init', '--json', '--org', 'Acme', '--email', 'owner@acme.test'], env);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.org.name, 'Acme');
    assert.match(out.secret_key.key, /^obs_sk_/);
    assert.ok(out.owner.password.length >= 20, 'a generated password is printed once');
    const apps = await api(server!.url, 'GET', '/v1/apps', { key: out.secret_key.key });
    assert.equal(apps.status, 200);
    assert.equal(apps.body.data[0].id, out.app.id);
    assert.ok(!existsSync(join(dataDir, 'setup.json')), 'the token file is removed once used');
  });

  test('after the first org exists, a second init and any setup call are refused', async () => {
    const again = await runCli(['init', '--json', '--org', 'Other', '--email', 'x@other.test'], env);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /setup/);
    const late = await api(server!.url, 'POST', '/v1/setup', { body: {}, headers: { authorization: `Bearer obs_setup_${'A'.repeat(43)}` } });
    assert.equal(late.status, 404);
    assert.equal(late.body.code, 'ERR_NOT_FOUND');
  });

  test('a restart with an org does not offer setup again', async () => {
    await server!.stop();
    server = await startServe(env, 120_000); // an empty data dir: PGlite's first initdb is slow on a busy 2-core machine
    await new Promise((r) => setTimeout(r, 300));
    assert.doesNotMatch(server.output(), /no org yet/);
    assert.ok(!existsSync(join(dataDir, 'setup.json')));
  });
});
