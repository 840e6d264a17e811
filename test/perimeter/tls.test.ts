import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, createServer as createTlsServer, type ConnectionOptions, type Server as TlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import selfsigned from 'selfsigned';
import { openTestDb, tempDir, type TestDb } from '../support/db.js';
import { api } from '../support/server.js';
import { startPerimeterServer, type PerimeterServer } from '../usage/support.js';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { httpsRedirectTarget, startRedirectServer, type RedirectServer } from '../../src/perimeter/tls.js';

type Handshake = { ok: true; protocol: string | null; cipher: string } | { ok: false; code: string | undefined };

/** A bare TLS handshake against 127.0.0.1:port with the given client constraints. */
function handshake(port: number, opts: ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve) => {
    const sock = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ...opts }, () => {
      const out: Handshake = { ok: true, protocol: sock.getProtocol(), cipher: sock.getCipher().name };
      sock.end();
      resolve(out);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, code: err.code }));
  });
}

/** GET over HTTPS trusting exactly our generated certificate. */
function httpsGet(url: string, ca: string, tls: Pick<ConnectionOptions, 'minVersion' | 'maxVersion'>): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; protocol: string | null }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, servername: 'localhost', ...tls, agent: false }, (res) => {
      const protocol = (res.socket as import('node:tls').TLSSocket).getProtocol();
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, protocol }));
    });
    req.once('error', reject);
    req.end();
  });
}

// A TLS 1.1 client as old software would be: legacy protocols need OpenSSL security level 0 to be offered at all.
const TLS11_CLIENT: ConnectionOptions = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' };

// Transport does not depend on the database: one embedded database, shared by the suites below.
let shared: Promise<TestDb> | undefined;
const sharedDb = () => (shared ??= openTestDb('pglite'));
after(async () => {
  if (shared) await (await shared).close();
});

describe('native HTTPS listener', () => {
  let t: TestDb;
  let s: PerimeterServer;
  let control: TlsServer;
  let cert: string;

  before(async () => {
    // A certificate generated now, for this run only (EC P-256, SHA-256, names localhost and 127.0.0.1).
    const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }],
    } as Parameters<typeof selfsigned.generate>[1]);
    cert = pems.cert;
    const dir = tempDir('obscura-tls-');
    writeFileSync(join(dir, 'cert.pem'), pems.cert);
    writeFileSync(join(dir, 'key.pem'), pems.private, { mode: 0o600 });
    t = await sharedDb();
    s = await startPerimeterServer(t.db, {
      env: { OBSCURA_TLS_CERT_FILE: join(dir, 'cert.pem'), OBSCURA_TLS_KEY_FILE: join(dir, 'key.pem') },
      deps: { https: { cert: Buffer.from(pems.cert), key: Buffer.from(pems.private) } },
      scheme: 'https',
    });
    // Control: a deliberately permissive server with the same certificate, to prove the TLS 1.1
    // client below really can negotiate TLS 1.1 on this OpenSSL (so its failure against Obscura is
    // the server's refusal, not the client's inability).
    control = createTlsServer({ cert: pems.cert, key: pems.private, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, (sock) => sock.end());
    await new Promise<void>((res) => control.listen(0, '127.0.0.1', res));
  });
  after(async () => {
    control.close();
    await s.close();
  });

  test('refuses a TLS 1.1 client with a protocol_version alert, while the same client connects to a permissive server', async () => {
    const controlPort = (control.address() as AddressInfo).port;
    const capable = await handshake(controlPort, TLS11_CLIENT);
    assert.deepEqual(capable.ok && capable.protocol, 'TLSv1.1', 'this OpenSSL can speak TLS 1.1 (control)');
    const refused = await handshake(s.port, TLS11_CLIENT);
    assert.equal(refused.ok, false);
    // Alert 70 (protocol_version) is sent BY THE SERVER: the client offered 1.1 and was turned away.
    assert.equal(!refused.ok && refused.code, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
  });

  test('accepts TLS 1.2 and TLS 1.3 clients, verifying the certificate, and sends HSTS over HTTPS', async () => {
    const v12 = await httpsGet(`${s.url}/healthz`, cert, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    assert.equal(v12.status, 200);
    assert.equal(v12.protocol, 'TLSv1.2');
    assert.equal(v12.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
    const v13 = await httpsGet(`${s.url}/healthz`, cert, { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
    assert.equal(v13.status, 200);
    assert.equal(v13.protocol, 'TLSv1.3');
    assert.equal(v13.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
  });

  test('negotiates only forward-secret AEAD suites on TLS 1.2: a CBC-only client is refused', async () => {
    const controlPort = (control.address() as AddressInfo).port;
    const cbc: ConnectionOptions = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA@SECLEVEL=0' };
    const ok = await handshake(controlPort, cbc);
    assert.ok(ok.ok, 'the CBC suite works against the permissive control server');
    const refused = await handshake(s.port, cbc);
    assert.equal(refused.ok, false);
    // OpenSSL 3.0 (Node 20) says SSLV3_ALERT_…, OpenSSL 3.5 (Node 24) SSL/TLS_ALERT_…: the same alert.
    assert.match(String(!refused.ok && refused.code), /^ERR_SSL_(SSLV3|SSL\/TLS)_ALERT_HANDSHAKE_FAILURE$/);
    const modern = await handshake(s.port, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    assert.ok(modern.ok && /GCM|CHACHA20/.test(modern.cipher) && modern.cipher.startsWith('ECDHE'), JSON.stringify(modern));
  });
});

describe('plain HTTP redirect listener', () => {
  let r: RedirectServer;
  const publicUrl = 'https://media.example.test:8443';

  before(async () => {
    r = await startRedirectServer({ host: '127.0.0.1', port: 0, publicUrl, requestId: () => 'req-1' });
  });
  after(async () => {
    await r.close();
  });

  const raw = (path: string, init: RequestInit = {}) => fetch(`http://127.0.0.1:${r.port}${path}`, { redirect: 'manual', ...init });

  test('redirects GET with 308 to the same path on the configured HTTPS URL, never to the Host it was sent', async () => {
    const res = await raw('/v1/assets/abc?x=1', { headers: { host: 'evil.example' } });
    assert.equal(res.status, 308);
    assert.equal(res.headers.get('location'), 'https://media.example.test:8443/v1/assets/abc?x=1');
    assert.equal(httpsRedirectTarget(publicUrl, '//evil.example/x'), 'https://media.example.test:8443/evil.example/x');
    assert.equal(httpsRedirectTarget(publicUrl, 'http://evil.example/x'), 'https://media.example.test:8443/');
  });

  test('refuses API calls over plain HTTP with 403 ERR_HTTPS_REQUIRED instead of redirecting them', async () => {
    const post = await raw('/v1/apps', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(post.status, 403);
    assert.equal((await post.json()).code, 'ERR_HTTPS_REQUIRED');
    const withKey = await raw('/v1/apps', { headers: { authorization: 'Bearer obs_sk_x' } });
    assert.equal(withKey.status, 403);
    assert.equal(withKey.headers.get('location'), null);
    assert.match(withKey.headers.get('content-type') ?? '', /^application\/problem\+json/);
  });

  test('is refused at boot without an https public URL, naming the setting', () => {
    assert.throws(() => loadConfig({ OBSCURA_HTTP_REDIRECT_PORT: '8081' }), (e: unknown) => e instanceof ConfigError && e.setting === 'OBSCURA_HTTP_REDIRECT_PORT');
    const c = loadConfig({ OBSCURA_HTTP_REDIRECT_PORT: '8081', OBSCURA_PUBLIC_URL: 'https://media.example.test' });
    assert.equal(c.perimeter.httpRedirectPort, 8081);
  });
});

describe('behind a TLS-terminating proxy', () => {
  let t: TestDb;
  let s: PerimeterServer;
  before(async () => {
    t = await sharedDb();
    s = await startPerimeterServer(t.db, {
      env: { OBSCURA_TRUST_PROXY: '127.0.0.1', OBSCURA_RATE_LIMIT_IP_PER_MINUTE: '1' },
      routes: (app) => app.get('/test/whoami', { config: { rateLimit: false } }, async (req) => ({ ip: req.ip, protocol: req.protocol })),
    });
  });
  after(async () => {
    await s.close();
  });

  test('takes the client address and scheme from a trusted proxy only', async () => {
    const viaProxy = await api(s.url, 'GET', '/test/whoami', { headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https' } });
    assert.deepEqual(viaProxy.body, { ip: '203.0.113.7', protocol: 'https' });
    // Per-IP limits follow the real client address, not the proxy's.
    assert.equal((await api(s.url, 'GET', '/healthz', { headers: { 'x-forwarded-for': '203.0.113.8' } })).status, 200);
    assert.equal((await api(s.url, 'GET', '/healthz', { headers: { 'x-forwarded-for': '203.0.113.9' } })).status, 200);
    assert.equal((await api(s.url, 'GET', '/healthz', { headers: { 'x-forwarded-for': '203.0.113.9' } })).status, 429);
  });

  test('ignores forwarding headers when the proxy is not trusted', async () => {
    const direct = await startPerimeterServer(t.db, { routes: (app) => app.get('/test/whoami', async (req) => ({ ip: req.ip, protocol: req.protocol })) });
    try {
      const r = await api(direct.url, 'GET', '/test/whoami', { headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https' } });
      assert.deepEqual(r.body, { ip: '127.0.0.1', protocol: 'http' });
    } finally {
      await direct.close();
    }
  });
});
