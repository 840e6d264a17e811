/**
 * Issue 9, item 8: the ports remote URLs may use are a setting, and every ERR_REMOTE_FORBIDDEN names
 * the reason and the setting that governs it. Driven through a real `obscura serve` configured only
 * by environment (no test-only allowances): a loopback webhook receiver on a random port is refused
 * with the port reason naming OBSCURA_REMOTE_ALLOWED_PORTS, then, with that port allowed (and the
 * development switches for plain http and private addresses), registered and really delivered to.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../support/db.js';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { api } from '../support/server.js';
import { markedPng } from '../support/media.js';
import { FAST_JOBS_ENV, startTarget, type TargetServer } from '../jobs/support.js';

describe('allowed remote ports are a setting, and refusals say why', () => {
  const dataDir = tempDir();
  let target: TargetServer;
  let server: ServerProcess | undefined;
  let key: string;
  const base = { OBSCURA_DATA_DIR: dataDir, ...FAST_JOBS_ENV };

  before(async () => {
    target = await startTarget();
    const init = await runCli(['init', '--json'], base);
    assert.equal(init.code, 0, init.stderr);
    key = JSON.parse(init.stdout).secret_key.key;
  });
  after(async () => {
    await server?.stop('SIGKILL');
    await target?.close();
  });

  test('by default a webhook on another port is refused, naming the port reason, the allowed ports and the setting', async () => {
    server = await startServe(base);
    const r = await api(server.url, 'POST', '/v1/webhooks', { key, body: { url: 'https://hooks.example.com:8443/obscura' } });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.code, 'ERR_REMOTE_FORBIDDEN');
    assert.equal(r.body.reason, 'port');
    assert.equal(r.body.setting, 'OBSCURA_REMOTE_ALLOWED_PORTS');
    assert.deepEqual(r.body.allowed_ports, [443, 80]);
    assert.match(r.body.detail, /8443/);
    // Every other refusal names its reason too, and the setting where one governs it.
    const http = await api(server.url, 'POST', '/v1/webhooks', { key, body: { url: 'http://hooks.example.com/obscura' } });
    assert.deepEqual([http.body.reason, http.body.setting], ['scheme', 'OBSCURA_UNSAFE_REMOTE_ALLOW_HTTP']);
    const loop = await api(server.url, 'POST', '/v1/webhooks', { key, body: { url: 'https://127.0.0.1/obscura' } });
    assert.deepEqual([loop.body.reason, loop.body.setting], ['address', 'OBSCURA_UNSAFE_REMOTE_ALLOW_PRIVATE']);
    const creds = await api(server.url, 'POST', '/v1/webhooks', { key, body: { url: 'https://u:p@hooks.example.com/obscura' } });
    assert.equal(creds.body.reason, 'credentials');
    await server.stop();
    server = undefined;
  });

  test('with the port in OBSCURA_REMOTE_ALLOWED_PORTS (and the development switches) a loopback receiver is registered and receives the delivery', async () => {
    server = await startServe({
      ...base,
      OBSCURA_REMOTE_ALLOWED_PORTS: `443,${target.port}`,
      OBSCURA_UNSAFE_REMOTE_ALLOW_HTTP: 'true',
      OBSCURA_UNSAFE_REMOTE_ALLOW_PRIVATE: 'true',
    });
    const hook = await api(server.url, 'POST', '/v1/webhooks', { key, body: { url: `${target.origin}/hook` } });
    assert.equal(hook.status, 201, JSON.stringify(hook.body));
    // Another port on the same loopback host is still refused: only the listed ports open.
    const other = await api(server.url, 'POST', '/v1/webhooks', { key, body: { url: `http://127.0.0.1:${target.port === 65535 ? 65534 : target.port + 1}/hook` } });
    assert.equal(other.body.reason, 'port');
    const up = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: new Uint8Array(await markedPng('ports', 32, 24)) });
    const asset = ((await up.json()) as { id: string }).id;
    const job = await api(server.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: asset }, operations: 'resize:width=16' } });
    assert.equal(job.status, 202, JSON.stringify(job.body));
    const deadline = Date.now() + 30_000;
    while (!target.requests.some((r) => r.url === '/hook') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const delivered = target.requests.find((r) => r.url === '/hook');
    assert.ok(delivered, 'the webhook was delivered to the loopback receiver');
    assert.match(String(delivered.headers['obscura-signature']), /^t=\d+,v1=/);
  });
});
