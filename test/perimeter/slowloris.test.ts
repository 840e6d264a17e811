import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { openTestDb, type TestDb } from '../support/db.js';
import { api, createTenant, type Tenant } from '../support/server.js';
import { startPerimeterServer, type PerimeterServer } from '../usage/support.js';

/** Opens a raw TCP connection and records when, and how, the server ends it. */
function rawClient(port: number): Promise<{ sock: Socket; closed: Promise<{ afterMs: number; received: string }> }> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port }, () => {
      const started = Date.now();
      let received = '';
      sock.on('data', (d) => (received += d.toString('latin1')));
      const closed = new Promise<{ afterMs: number; received: string }>((res) => sock.once('close', () => res({ afterMs: Date.now() - started, received })));
      resolve({ sock, closed });
    });
    sock.once('error', reject);
    sock.on('error', () => {
      /* a reset by the server is one way of being cut off */
    });
  });
}

/** Writes `text` one byte every `everyMs` until the socket closes or the text runs out. */
function trickle(sock: Socket, text: string, everyMs: number): { sent: () => number; stop: () => void } {
  let i = 0;
  const timer = setInterval(() => {
    if (sock.destroyed || i >= text.length) return clearInterval(timer);
    sock.write(text[i++]!);
  }, everyMs);
  return { sent: () => i, stop: () => clearInterval(timer) };
}

// Connection handling does not depend on the database: one kind is enough.
describe('slow clients are cut off', () => {
  let t: TestDb;
  let s: PerimeterServer;
  let a: Tenant;

  before(async () => {
    t = await openTestDb('pglite');
    s = await startPerimeterServer(t.db, { env: { OBSCURA_HEADERS_TIMEOUT_MS: '1000', OBSCURA_REQUEST_TIMEOUT_MS: '2000', OBSCURA_KEEP_ALIVE_TIMEOUT_MS: '1000' } });
    a = await createTenant(t.db, 'Slow');
  });
  after(async () => {
    await s.close();
    await t.close();
  });

  test('closes a slowloris connection that trickles its headers, while a normal request still succeeds', async () => {
    const { sock, closed } = await rawClient(s.port);
    const headers = `GET /v1/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${a.key}\r\nX-Padding: ${'a'.repeat(200)}\r\n\r\n`;
    // One byte every 100 ms: never idle, so only the headers timeout can stop it.
    const drip = trickle(sock, headers, 100);
    const normal = await api(s.url, 'GET', '/v1/apps', { key: a.key });
    assert.equal(normal.status, 200, 'the server keeps serving others meanwhile');
    const result = await Promise.race([closed, new Promise<null>((res) => setTimeout(() => res(null), 6000))]);
    drip.stop();
    assert.ok(result, 'the server never closed the slowloris connection');
    assert.ok(result.afterMs < 4000, `closed after ${result.afterMs} ms`);
    assert.ok(drip.sent() < headers.length, 'cut off before the headers were complete');
    assert.ok(!result.received.includes('200 OK'), 'the trickled request was never served');
    if (result.received) assert.match(result.received, /^HTTP\/1\.1 408/);
  });

  test('closes a connection that trickles its body past the request timeout, and nothing is created', async () => {
    const { sock, closed } = await rawClient(s.port);
    const body = JSON.stringify({ name: 'never created' });
    sock.write(`POST /v1/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${a.key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length + 100}\r\n\r\n`);
    const drip = trickle(sock, body + ' '.repeat(100), 100);
    const result = await Promise.race([closed, new Promise<null>((res) => setTimeout(() => res(null), 7000))]);
    drip.stop();
    assert.ok(result, 'the server never closed the slow-body connection');
    assert.ok(result.afterMs < 5000, `closed after ${result.afterMs} ms`);
    assert.ok(!/HTTP\/1\.1 201/.test(result.received));
    const list = await api(s.url, 'GET', '/v1/apps', { key: a.key });
    assert.equal(list.body.data.length, 1);
  });

  test('closes an idle keep-alive connection after the keep-alive timeout', async () => {
    const { sock, closed } = await rawClient(s.port);
    sock.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n');
    const result = await Promise.race([closed, new Promise<null>((res) => setTimeout(() => res(null), 5000))]);
    assert.ok(result, 'the idle connection was kept open');
    assert.match(result.received, /^HTTP\/1\.1 200/);
    assert.ok(result.afterMs >= 900 && result.afterMs < 4000, `closed after ${result.afterMs} ms`);
  });
});
