import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openTestDb, type TestDb } from '../support/db.js';
import { api, createTenant, freePort, type Tenant } from '../support/server.js';
import { startPerimeterServer, type PerimeterServer } from './support.js';
import { startSideListeners } from '../../src/perimeter/listeners.js';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';

// Exposure does not depend on the database: one kind is enough.
describe('Prometheus metrics', () => {
  let t: TestDb;
  let s: PerimeterServer;
  let a: Tenant;
  const token = randomBytes(32).toString('hex');

  before(async () => {
    t = await openTestDb('pglite');
    s = await startPerimeterServer(t.db, { env: { OBSCURA_METRICS_TOKEN: token } });
    a = await createTenant(t.db, 'Scraped');
  });
  after(async () => {
    await s.close();
    await t.close();
  });

  test('serves /metrics on the main listener only with the metrics bearer token', async () => {
    const none = await api(s.url, 'GET', '/metrics');
    assert.equal(none.status, 401);
    assert.equal(none.body.code, 'ERR_AUTH_MISSING');
    const wrong = await api(s.url, 'GET', '/metrics', { headers: { authorization: `Bearer ${token.slice(0, -1)}${token.endsWith('0') ? '1' : '0'}` } });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.code, 'ERR_TOKEN_INVALID');
    const apiKey = await api(s.url, 'GET', '/metrics', { key: a.key });
    assert.equal(apiKey.status, 401, 'an API key is not the metrics token');
    const ok = await api(s.url, 'GET', '/metrics', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(ok.body, /obscura_http_requests_total\{method="GET",route="\/metrics",status="401"\} 3/);
    assert.match(ok.body, /^obscura_process_cpu_user_seconds_total \d/m, 'process metrics included');
  });

  test('labels are process-level and bounded: no org, app, key or end-user ever appears', async () => {
    for (let i = 0; i < 3; i++) await api(s.url, 'GET', '/v1/apps', { key: a.key, headers: { 'obscura-end-user': 'end-user-77' } });
    await api(s.url, 'GET', `/v1/apps/${a.appId}`, { key: a.key });
    const text = (await api(s.url, 'GET', '/metrics', { headers: { authorization: `Bearer ${token}` } })).body as string;
    assert.match(text, /obscura_http_requests_total\{method="GET",route="\/v1\/apps",status="200"\} 3/);
    assert.match(text, /route="\/v1\/apps\/:id"/, 'route templates, not concrete paths');
    for (const secret of [a.orgId, a.appId, a.keyId, a.key, 'end-user-77']) assert.ok(!text.includes(secret), `metrics contain ${secret}`);
  });

  test('is not served on the main listener at all without a token', async () => {
    const plain = await startPerimeterServer(t.db);
    try {
      assert.equal((await api(plain.url, 'GET', '/metrics')).status, 404);
    } finally {
      await plain.close();
    }
  });

  test('serves /metrics on a separate loopback listener', async () => {
    const port = await freePort();
    const config = loadConfig({ OBSCURA_DATA_DIR: '/nonexistent-test-data-dir', OBSCURA_PORT: String(s.port === port ? port + 1 : s.port), OBSCURA_METRICS_PORT: String(port) });
    assert.equal(config.perimeter.metricsHost, '127.0.0.1');
    const side = await startSideListeners(config, s.perimeter);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/metrics`);
      assert.equal(r.status, 200);
      assert.match(await r.text(), /obscura_http_requests_total/);
      assert.equal((await fetch(`http://127.0.0.1:${port}/v1/apps`)).status, 404, 'nothing but metrics there');
    } finally {
      await side.close();
    }
  });

  test('refuses at boot to expose metrics beyond loopback without a token, or with a weak token', () => {
    const refused = (env: Record<string, string>, setting: string) =>
      assert.throws(() => loadConfig(env), (e: unknown) => e instanceof ConfigError && e.setting === setting, JSON.stringify(env));
    refused({ OBSCURA_METRICS_PORT: '9464', OBSCURA_METRICS_HOST: '0.0.0.0' }, 'OBSCURA_METRICS_HOST');
    refused({ OBSCURA_METRICS_TOKEN: 'short' }, 'OBSCURA_METRICS_TOKEN');
    refused({ OBSCURA_METRICS_PORT: '8080' }, 'OBSCURA_METRICS_PORT');
    const ok = loadConfig({ OBSCURA_METRICS_PORT: '9464', OBSCURA_METRICS_HOST: '0.0.0.0', OBSCURA_METRICS_TOKEN: token });
    assert.equal(ok.perimeter.metricsPort, 9464);
  });
});
