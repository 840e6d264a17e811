/**
 * helmet's headers are computed once at boot (src/perimeter/headers.ts, issue 12 item 4): every
 * response of the real server, answered or refused, must carry exactly what @fastify/helmet sets per
 * request with the same options, and the /docs page keeps its own CSP.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import helmet from '@fastify/helmet';
import { HELMET_OPTIONS } from '../../src/perimeter/headers.js';
import { openTestDb, type TestDb } from '../support/db.js';
import { api, createTenant, startServer, type Tenant, type TestServer } from '../support/server.js';

/** Headers Fastify itself or the transport adds, not helmet. */
const NOT_HELMET = new Set(['content-type', 'content-length', 'date', 'connection', 'keep-alive']);

/** What @fastify/helmet, run per request as the plugin does, puts on a response. */
async function referenceHeaders(): Promise<Record<string, string>> {
  const ref = Fastify({ logger: false });
  await ref.register(helmet, HELMET_OPTIONS);
  ref.get('/', async () => ({ ok: true }));
  const res = await ref.inject({ method: 'GET', url: '/' });
  await ref.close();
  return Object.fromEntries(Object.entries(res.headers).filter(([k]) => !NOT_HELMET.has(k)).map(([k, v]) => [k, String(v)]));
}

describe('security headers (computed once at boot)', () => {
  let t: TestDb;
  let srv: TestServer;
  let tenant: Tenant;
  let expected: Record<string, string>;
  before(async () => {
    t = await openTestDb('pglite');
    srv = await startServer(t.db);
    tenant = await createTenant(t.db, 'Headers');
    expected = await referenceHeaders();
  });
  after(async () => {
    await srv?.close();
    await t?.close();
  });

  test('answered, refused and unmatched requests all carry exactly the headers @fastify/helmet sets per request', async () => {
    assert.ok(Object.keys(expected).length >= 10, `helmet set only ${Object.keys(expected).join(', ')}`);
    assert.match(expected['content-security-policy'] ?? '', /^default-src 'none';.*frame-ancestors 'none'/);
    const cases = [
      { what: 'an unauthenticated route', res: await api(srv.url, 'GET', '/healthz'), status: 200 },
      { what: 'an authenticated route', res: await api(srv.url, 'GET', '/v1/whoami', { key: tenant.key }), status: 200 },
      { what: 'a refused credential', res: await api(srv.url, 'GET', '/v1/whoami', { key: 'obs_sk_notarealkey' }), status: 401 },
      { what: 'a missing credential', res: await api(srv.url, 'GET', '/v1/whoami'), status: 401 },
      { what: 'an unknown route', res: await api(srv.url, 'GET', '/v1/no-such-route'), status: 404 },
    ];
    for (const c of cases) {
      assert.equal(c.res.status, c.status, c.what);
      for (const [name, value] of Object.entries(expected)) assert.equal(c.res.headers.get(name), value, `${name} on ${c.what}`);
    }
  });

  test('the /docs page keeps its own CSP while the API keeps default-src none', async () => {
    const res = await fetch(`${srv.url}/docs/static/index.html`);
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.notEqual(csp, expected['content-security-policy'], 'swagger-ui sets the page its own CSP');
    assert.match(csp, /script-src 'self'/);
    assert.equal(res.headers.get('strict-transport-security'), expected['strict-transport-security']);
  });
});
