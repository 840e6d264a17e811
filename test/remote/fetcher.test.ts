import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import selfsigned from 'selfsigned';
import { isAppError } from '../../src/errors.js';
import type { AppError } from '../../src/errors.js';
import { createFetcher, redactHeaders, redactUrl } from '../../src/remote/fetcher.js';
import type { FetcherOptions, LookupFn, ResolvedAddress } from '../../src/remote/fetcher.js';

const IMAGE = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(1000, 7)]);
const MAX_BYTES = 4096;

async function rejectionOf(p: Promise<unknown>, code: string): Promise<AppError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(isAppError(caught), `expected an AppError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code);
  return caught;
}

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<Record<string, unknown>> {
  return (await rejectionOf(p, code)).details ?? {};
}

/** The Node error code behind an AppError (server-side cause, never sent to clients). */
function causeCode(err: AppError): unknown {
  return (err.cause as { code?: unknown } | undefined)?.code;
}

interface Recorded {
  method: string;
  url: string;
  host: string | undefined;
  authorization: string | undefined;
  apiKey: string | undefined;
  contentType: string | undefined;
  contentLength: string | undefined;
  body: Buffer;
}

interface TestServer {
  port: number;
  connections: number;
  requests: Recorded[];
  close(): Promise<void>;
}

async function startServer(handler: (req: http.IncomingMessage, res: http.ServerResponse, self: TestServer) => void): Promise<TestServer> {
  const sockets = new Set<import('node:net').Socket>();
  const self: TestServer = { port: 0, connections: 0, requests: [], close: async () => {} };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      self.requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        host: req.headers.host,
        authorization: req.headers.authorization,
        apiKey: req.headers['x-api-key'] as string | undefined,
        contentType: req.headers['content-type'],
        contentLength: req.headers['content-length'],
        body: Buffer.concat(chunks),
      });
      handler(req, res, self);
    });
  });
  server.on('connection', (s) => {
    self.connections += 1;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  self.port = (server.address() as AddressInfo).port;
  self.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return self;
}

/** A lookup that answers from a table and records every question. */
function tableLookup(table: Record<string, string[]>): LookupFn & { calls: string[] } {
  const calls: string[] = [];
  const fn = async (host: string): Promise<ResolvedAddress[]> => {
    calls.push(host);
    const answers = table[host];
    if (!answers) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(fn, { calls });
}

describe('SSRF table: every forbidden address form is refused before any lookup or connection', () => {
  const forms = [
    '127.0.0.1', '127.1', '2130706433', '0177.0.0.1', '0x7f000001', '0x7f.1', '0.0.0.0', '[::1]', '[::]',
    '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '[64:ff9b::7f00:1]', '[2002:7f00:1::]', '[::127.0.0.1]',
    '10.0.0.1', '172.16.0.1', '192.168.1.1', '169.254.169.254', '[fd00:ec2::254]', '100.100.100.200',
    '[fe80::1]', '[fd00::1]', '100.64.0.1', '198.18.0.1', '224.0.0.1', '255.255.255.255', '[2001::1]',
  ];
  for (const scheme of ['https', 'http'] as const) {
    for (const form of forms) {
      it(`refuses ${scheme}://${form}/ with ERR_REMOTE_FORBIDDEN`, async () => {
        const lookup = tableLookup({});
        const dialled: string[] = [];
        const f = createFetcher({ allowHttp: true, lookup, maxBytes: MAX_BYTES, timeoutMs: 2000, onConnect: (ip) => dialled.push(ip) });
        const details = await rejectsWithCode(f.get(`${scheme}://${form}/latest/meta-data/`), 'ERR_REMOTE_FORBIDDEN');
        assert.equal(details['reason'], 'address');
        assert.deepEqual(lookup.calls, []);
        assert.deepEqual(dialled, []);
      });
    }
  }
});

describe('fetcher URL and DNS policy', () => {
  function fetcherWith(table: Record<string, string[]>, extra: Partial<FetcherOptions> = {}) {
    const lookup = tableLookup(table);
    const dialled: string[] = [];
    const fetcher = createFetcher({ lookup, maxBytes: MAX_BYTES, timeoutMs: 2000, onConnect: (ip) => dialled.push(ip), ...extra });
    return { fetcher, lookup, dialled };
  }

  it('refuses a hostname that resolves to 127.0.0.1 without connecting', async () => {
    const { fetcher, lookup, dialled } = fetcherWith({ 'evil.test': ['127.0.0.1'] });
    await rejectsWithCode(fetcher.get('https://evil.test/x.png'), 'ERR_REMOTE_FORBIDDEN');
    assert.deepEqual(lookup.calls, ['evil.test']);
    assert.deepEqual(dialled, []);
  });

  it('refuses localhost, which resolves to loopback', async () => {
    const { fetcher, dialled } = fetcherWith({ localhost: ['::1', '127.0.0.1'] });
    await rejectsWithCode(fetcher.get('https://localhost/'), 'ERR_REMOTE_FORBIDDEN');
    assert.deepEqual(dialled, []);
  });

  it('refuses a hostname with two A records when one of them is private, whatever the order', async () => {
    for (const answers of [['93.184.216.34', '10.0.0.1'], ['10.0.0.1', '93.184.216.34'], ['93.184.216.34', '::ffff:169.254.169.254']]) {
      const { fetcher, dialled } = fetcherWith({ 'mixed.test': answers });
      await rejectsWithCode(fetcher.get('https://mixed.test/'), 'ERR_REMOTE_FORBIDDEN');
      assert.deepEqual(dialled, []);
    }
  });

  it('refuses a lookup answer that is not an IP address', async () => {
    const { fetcher, dialled } = fetcherWith({ 'weird.test': ['0177.0.0.1'] });
    await rejectsWithCode(fetcher.get('https://weird.test/'), 'ERR_REMOTE_FORBIDDEN');
    assert.deepEqual(dialled, []);
  });

  it('refuses http: by default', async () => {
    const { fetcher, lookup } = fetcherWith({ 'public.test': ['93.184.216.34'] });
    const details = await rejectsWithCode(fetcher.get('http://public.test/image.png'), 'ERR_REMOTE_FORBIDDEN');
    assert.equal(details['reason'], 'scheme');
    assert.deepEqual(lookup.calls, []);
  });

  for (const url of ['file:///etc/passwd', 'ftp://public.test/x', 'gopher://public.test:70/_', 'data:image/png;base64,AAAA', 'javascript:alert(1)']) {
    it(`refuses the scheme of ${url.slice(0, 24)}`, async () => {
      const { fetcher } = fetcherWith({}, { allowHttp: true });
      await rejectsWithCode(fetcher.get(url), 'ERR_REMOTE_FORBIDDEN');
    });
  }

  it('refuses credentials in the URL', async () => {
    const { fetcher, lookup } = fetcherWith({ 'public.test': ['93.184.216.34'] });
    for (const url of ['https://user:pass@public.test/', 'https://user@public.test/', 'https://trusted.example@public.test/']) {
      const details = await rejectsWithCode(fetcher.get(url), 'ERR_REMOTE_FORBIDDEN');
      assert.equal(details['reason'], 'credentials');
    }
    assert.deepEqual(lookup.calls, []);
  });

  it('refuses a port outside allowedPorts', async () => {
    const { fetcher, lookup } = fetcherWith({ 'public.test': ['93.184.216.34'] });
    const details = await rejectsWithCode(fetcher.get('https://public.test:6379/'), 'ERR_REMOTE_FORBIDDEN');
    assert.equal(details['reason'], 'port');
    assert.deepEqual(lookup.calls, []);
  });

  it('refuses a string that is not a URL', async () => {
    const { fetcher } = fetcherWith({});
    const details = await rejectsWithCode(fetcher.get('not a url'), 'ERR_REMOTE_FORBIDDEN');
    assert.equal(details['reason'], 'url');
  });

  it('keeps cloud metadata refused even with unsafeAllowPrivateAddresses', async () => {
    const { fetcher, dialled } = fetcherWith({ 'meta.test': ['169.254.169.254'] }, { unsafeAllowPrivateAddresses: true });
    await rejectsWithCode(fetcher.get('https://meta.test/latest/meta-data/'), 'ERR_REMOTE_FORBIDDEN');
    assert.deepEqual(dialled, []);
  });

  it('maps a failed lookup to ERR_REMOTE_FAILED', async () => {
    const { fetcher, dialled } = fetcherWith({});
    const details = await rejectsWithCode(fetcher.get('https://nowhere.test/'), 'ERR_REMOTE_FAILED');
    assert.equal(details['reason'], 'dns');
    assert.deepEqual(dialled, []);
  });

  it('refuses header values that would inject a header line', async () => {
    const { fetcher, lookup } = fetcherWith({ 'public.test': ['93.184.216.34'] });
    await rejectsWithCode(fetcher.get('https://public.test/', { headers: { 'x-a': 'b\r\nhost: evil' } }), 'ERR_VALIDATION');
    assert.deepEqual(lookup.calls, []);
  });

  it('rejects unsafe options at creation', () => {
    assert.throws(() => createFetcher({ maxBytes: 0, timeoutMs: 1000 }), RangeError);
    assert.throws(() => createFetcher({ maxBytes: 10, timeoutMs: -1 }), RangeError);
    assert.throws(() => createFetcher({ maxBytes: 10, timeoutMs: 1000, maxRedirects: 11 }), RangeError);
    assert.throws(() => createFetcher({ maxBytes: 10, timeoutMs: 1000, allowedPorts: [70000] }), RangeError);
  });
});

describe('fetcher against a local server (only 127.0.0.1 is ever dialled)', () => {
  let server: TestServer;
  let other: TestServer;
  let lookup: LookupFn & { calls: string[] };
  let dialled: Array<[string, number]>;
  const pending = new Set<http.ServerResponse>();

  before(async () => {
    other = await startServer((_req, res) => res.end('secret'));
    server = await startServer((req, res, self) => {
      const base = `http://public.test:${self.port}`;
      const url = new URL(req.url ?? '/', base);
      const redirect = (status: number, location: string): void => {
        res.writeHead(status, { location });
        res.end('redirect body');
      };
      const chain = /^\/chain\/(\d+)$/.exec(url.pathname);
      if (chain) {
        const n = Number(chain[1]);
        redirect(302, n === 0 ? '/image.png' : `/chain/${n - 1}`);
        return;
      }
      switch (url.pathname) {
        case '/image.png':
          res.writeHead(200, { 'content-type': 'image/png', 'content-length': IMAGE.length });
          res.end(IMAGE);
          return;
        case '/to-image':
          redirect(302, '/image.png');
          return;
        case '/to-private':
          redirect(302, 'http://10.0.0.1/');
          return;
        case '/to-metadata':
          redirect(301, 'http://169.254.169.254/latest/meta-data/iam/security-credentials/');
          return;
        case '/to-loopback-other-port':
          redirect(302, `http://127.0.0.1:${other.port}/secret`);
          return;
        case '/to-evil-name':
          redirect(307, `http://evil.test:${self.port}/image.png`);
          return;
        case '/to-rebind':
          redirect(302, `http://rebind-twice.test:${self.port}/image.png`);
          return;
        case '/to-userinfo':
          redirect(302, `http://user:pw@public.test:${self.port}/image.png`);
          return;
        case '/to-file':
          redirect(302, 'file:///etc/passwd');
          return;
        case '/echo':
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('ok');
          return;
        case '/same-origin':
          redirect(302, '/echo');
          return;
        case '/cross-origin':
          redirect(307, `http://other.test:${self.port}/echo`);
          return;
        case '/big':
          res.writeHead(200, { 'content-length': MAX_BYTES + 1 });
          res.end(Buffer.alloc(MAX_BYTES + 1));
          return;
        case '/big-chunked':
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          for (let i = 0; i < 10; i += 1) res.write(Buffer.alloc(1024));
          res.end();
          return;
        case '/not-found':
          res.writeHead(404, { 'content-type': 'text/plain' });
          res.end('internal stack trace with db password');
          return;
        case '/slow-headers':
          pending.add(res);
          return;
        case '/slow-body':
          res.writeHead(200, { 'content-length': 100 });
          res.write(Buffer.alloc(10));
          pending.add(res);
          return;
        case '/put-target':
          res.writeHead(201);
          res.end();
          return;
        case '/put-307':
          redirect(307, '/put-target');
          return;
        case '/put-302':
          redirect(302, '/put-target');
          return;
        case '/post-303':
          redirect(303, '/echo');
          return;
        default:
          res.writeHead(404);
          res.end();
      }
    });
    lookup = tableLookup({
      'public.test': ['127.0.0.1'],
      'other.test': ['127.0.0.1'],
      'evil.test': ['192.168.0.10'],
    });
  });

  after(async () => {
    for (const res of pending) res.destroy();
    await server.close();
    await other.close();
  });

  function fetcher(extra: Partial<FetcherOptions> = {}) {
    lookup.calls.length = 0;
    dialled = [];
    return createFetcher({
      allowHttp: true,
      allowedPorts: [server.port, other.port, 80, 443],
      lookup,
      maxBytes: MAX_BYTES,
      timeoutMs: 3000,
      // Exactly the test server's (address, port) pair is let through; the rest of the policy stands.
      unsafeTestAllow: (ip, port) => ip === '127.0.0.1' && port === server.port,
      onConnect: (ip, port) => dialled.push([ip, port]),
      ...extra,
    });
  }
  const at = (path: string, host = 'public.test'): string => `http://${host}:${server.port}${path}`;

  it('fetches a permitted public-style target and returns its bytes', async () => {
    const f = fetcher();
    const r = await f.getBuffer(at('/image.png'));
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, IMAGE);
    assert.equal(r.headers['content-type'], 'image/png');
    assert.deepEqual(dialled, [['127.0.0.1', server.port]]);
  });

  it('streams a permitted target through get()', async () => {
    const f = fetcher();
    const r = await f.get(at('/image.png'));
    const chunks: Buffer[] = [];
    for await (const c of r.body as AsyncIterable<Buffer>) chunks.push(c);
    assert.deepEqual(Buffer.concat(chunks), IMAGE);
  });

  it('speaks TLS to https URLs (a plain-http server fails the handshake with ERR_REMOTE_FAILED)', async () => {
    const f = fetcher();
    const details = await rejectsWithCode(f.get(`https://public.test:${server.port}/image.png`), 'ERR_REMOTE_FAILED');
    assert.equal(details['reason'], 'network');
    assert.deepEqual(dialled, [['127.0.0.1', server.port]]);
  });

  it('follows a redirect to a permitted target and reports the final URL', async () => {
    const f = fetcher();
    const r = await f.getBuffer(at('/to-image'));
    assert.deepEqual(r.body, IMAGE);
    assert.equal(r.finalUrl, at('/image.png'));
  });

  it('refuses an open redirect to 10.0.0.1 without dialling it', async () => {
    const f = fetcher();
    const details = await rejectsWithCode(f.get(at('/to-private')), 'ERR_REMOTE_FORBIDDEN');
    assert.equal(details['reason'], 'address');
    assert.deepEqual(dialled, [['127.0.0.1', server.port]]);
  });

  it('refuses an open redirect to the cloud metadata address without dialling it', async () => {
    const f = fetcher();
    await rejectsWithCode(f.get(at('/to-metadata')), 'ERR_REMOTE_FORBIDDEN');
    assert.deepEqual(dialled, [['127.0.0.1', server.port]]);
  });

  it('refuses an open redirect to 127.0.0.1 on another port, which never sees a connection', async () => {
    const f = fetcher();
    const before = other.connections;
    await rejectsWithCode(f.get(at('/to-loopback-other-port')), 'ERR_REMOTE_FORBIDDEN');
    assert.equal(other.connections, before);
    assert.deepEqual(dialled, [['127.0.0.1', server.port]]);
  });

  it('refuses a redirect to a hostname that resolves to a private address', async () => {
    const f = fetcher();
    await rejectsWithCode(f.get(at('/to-evil-name')), 'ERR_REMOTE_FORBIDDEN');
    assert.deepEqual(lookup.calls, ['public.test', 'evil.test']);
    assert.deepEqual(dialled, [['127.0.0.1', server.port]]);
  });

  it('refuses redirects to userinfo URLs and to non-http schemes', async () => {
    const f = fetcher();
    assert.equal((await rejectsWithCode(f.get(at('/to-userinfo')), 'ERR_REMOTE_FORBIDDEN'))['reason'], 'credentials');
    assert.equal((await rejectsWithCode(f.get(at('/to-file')), 'ERR_REMOTE_FORBIDDEN'))['reason'], 'scheme');
  });

  it('follows at most 3 redirects and refuses the 4th', async () => {
    const f = fetcher();
    assert.deepEqual((await f.getBuffer(at('/chain/2'))).body, IMAGE); // 3 redirects
    const details = await rejectsWithCode(f.get(at('/chain/3')), 'ERR_REMOTE_FAILED'); // 4 redirects
    assert.equal(details['reason'], 'too-many-redirects');
    assert.equal(dialled.length, 4 + 4);
  });

  it('connects to the vetted address: one lookup per hop, a DNS-rebinding second answer is never used', async () => {
    let calls = 0;
    const rebinding: LookupFn = async () => {
      calls += 1;
      return [{ address: calls === 1 ? '127.0.0.1' : '10.0.0.1', family: 4 }];
    };
    const f = fetcher({ lookup: rebinding });
    const before = server.requests.length;
    const r = await f.getBuffer(at('/image.png', 'rebind.test'));
    assert.deepEqual(r.body, IMAGE);
    assert.equal(calls, 1);
    assert.deepEqual(dialled, [['127.0.0.1', server.port]]);
    assert.equal(server.requests.length, before + 1);
    assert.equal(server.requests.at(-1)?.host, `rebind.test:${server.port}`);
  });

  it('re-vets each redirect hop, so a name that rebinds between hops is refused', async () => {
    let calls = 0;
    const rebinding: LookupFn = async (host) => {
      calls += 1;
      return [{ address: host === 'public.test' || calls === 1 ? '127.0.0.1' : '10.0.0.1', family: 4 }];
    };
    const f = fetcher({ lookup: rebinding });
    await rejectsWithCode(f.get(at('/to-rebind')), 'ERR_REMOTE_FORBIDDEN');
    assert.deepEqual(dialled, [['127.0.0.1', server.port]]);
  });

  it('refuses a declared body over maxBytes with ERR_PAYLOAD_TOO_LARGE', async () => {
    const f = fetcher();
    await rejectsWithCode(f.get(at('/big')), 'ERR_PAYLOAD_TOO_LARGE');
  });

  it('refuses an undeclared (chunked) body once it crosses maxBytes', async () => {
    const f = fetcher();
    await rejectsWithCode(f.getBuffer(at('/big-chunked')), 'ERR_PAYLOAD_TOO_LARGE');
    const r = await f.get(at('/big-chunked'));
    let read = 0;
    await rejectsWithCode(
      (async () => {
        for await (const c of r.body as AsyncIterable<Buffer>) read += c.length;
      })(),
      'ERR_PAYLOAD_TOO_LARGE',
    );
    assert.ok(read <= MAX_BYTES);
  });

  it('maps an error status to ERR_REMOTE_FAILED with the status and without the upstream body', async () => {
    const f = fetcher();
    let caught: unknown;
    try {
      await f.get(at('/not-found'));
    } catch (err) {
      caught = err;
    }
    assert.ok(isAppError(caught));
    assert.equal(caught.code, 'ERR_REMOTE_FAILED');
    assert.equal(caught.status, 502);
    assert.equal(caught.details?.['upstreamStatus'], 404);
    assert.ok(!JSON.stringify({ m: caught.publicMessage, d: caught.details }).includes('password'));
  });

  it('times out a server that never sends headers', async () => {
    const f = fetcher({ timeoutMs: 300 });
    const t0 = Date.now();
    const details = await rejectsWithCode(f.get(at('/slow-headers')), 'ERR_REMOTE_FAILED');
    assert.equal(details['reason'], 'timeout');
    assert.ok(Date.now() - t0 < 2000);
  });

  it('applies headersTimeoutMs separately from the total timeout', async () => {
    const f = fetcher({ timeoutMs: 5000, headersTimeoutMs: 150 });
    const t0 = Date.now();
    const details = await rejectsWithCode(f.get(at('/slow-headers')), 'ERR_REMOTE_FAILED');
    assert.equal(details['reason'], 'headers-timeout');
    assert.ok(Date.now() - t0 < 2000);
  });

  it('times out a body that stalls after the headers', async () => {
    const f = fetcher({ timeoutMs: 300 });
    const r = await f.get(at('/slow-body'));
    const details = await rejectsWithCode(
      (async () => {
        for await (const _ of r.body as AsyncIterable<Buffer>) void _;
      })(),
      'ERR_REMOTE_FAILED',
    );
    assert.equal(details['reason'], 'timeout');
  });

  it('stops when the caller aborts', async () => {
    const f = fetcher();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const details = await rejectsWithCode(f.get(at('/slow-headers'), { signal: ac.signal }), 'ERR_REMOTE_FAILED');
    assert.equal(details['reason'], 'aborted');
  });

  it('forwards the customer headers on a same-origin redirect', async () => {
    const f = fetcher();
    const before = server.requests.length;
    await f.getBuffer(at('/same-origin'), { headers: { Authorization: 'Bearer temp-token', 'X-Api-Key': 'k1' } });
    const hops = server.requests.slice(before);
    assert.deepEqual(hops.map((h) => [h.url, h.authorization, h.apiKey]), [
      ['/same-origin', 'Bearer temp-token', 'k1'],
      ['/echo', 'Bearer temp-token', 'k1'],
    ]);
  });

  it('does not forward the customer headers across a redirect to another origin', async () => {
    const f = fetcher();
    const before = server.requests.length;
    await f.getBuffer(at('/cross-origin'), { headers: { Authorization: 'Bearer temp-token', 'X-Api-Key': 'k1' } });
    const hops = server.requests.slice(before);
    assert.deepEqual(hops.map((h) => [h.host, h.authorization, h.apiKey]), [
      [`public.test:${server.port}`, 'Bearer temp-token', 'k1'],
      [`other.test:${server.port}`, undefined, undefined],
    ]);
  });

  it('PUTs a Buffer with its Content-Length and returns the status', async () => {
    const f = fetcher();
    const before = server.requests.length;
    const r = await f.put(at('/put-target?X-Amz-Signature=abc'), IMAGE, { headers: { 'content-type': 'image/png' } });
    assert.equal(r.status, 201);
    const got = server.requests.at(before);
    assert.equal(got?.method, 'PUT');
    assert.equal(got?.contentLength, String(IMAGE.length));
    assert.equal(got?.contentType, 'image/png');
    assert.deepEqual(got?.body, IMAGE);
  });

  it('PUTs a stream with the declared Content-Length', async () => {
    const f = fetcher();
    const before = server.requests.length;
    const r = await f.put(at('/put-target'), Readable.from([IMAGE.subarray(0, 500), IMAGE.subarray(500)]), { contentLength: IMAGE.length });
    assert.equal(r.status, 201);
    assert.deepEqual(server.requests.at(before)?.body, IMAGE);
    assert.equal(server.requests.at(before)?.contentLength, String(IMAGE.length));
  });

  it('fails a streamed PUT whose length differs from the declared Content-Length', async () => {
    const f = fetcher();
    for (const declared of [IMAGE.length + 10, IMAGE.length - 10]) {
      const details = await rejectsWithCode(f.put(at('/put-target'), Readable.from([IMAGE]), { contentLength: declared }), 'ERR_REMOTE_FAILED');
      assert.equal(details['reason'], 'request-body-length');
    }
  });

  it('fails a streamed PUT whose source stream errors, reporting the body as the cause', async () => {
    const f = fetcher();
    const source = new Readable({
      read() {
        this.destroy(new Error('disk read failed'));
      },
    });
    const details = await rejectsWithCode(f.put(at('/put-target'), source, { contentLength: 10 }), 'ERR_REMOTE_FAILED');
    assert.equal(details['reason'], 'request-body');
  });

  it('replays a Buffer PUT on a 307 and keeps the method on a 302', async () => {
    const f = fetcher();
    for (const path of ['/put-307', '/put-302']) {
      const before = server.requests.length;
      const r = await f.put(at(path), IMAGE);
      assert.equal(r.status, 201);
      const second = server.requests.at(before + 1);
      assert.equal(second?.url, '/put-target');
      assert.equal(second?.method, 'PUT');
      assert.deepEqual(second?.body, IMAGE);
    }
  });

  it('refuses to follow a 307 for a streamed PUT, which cannot be replayed', async () => {
    const f = fetcher();
    const details = await rejectsWithCode(f.put(at('/put-307'), Readable.from([IMAGE]), { contentLength: IMAGE.length }), 'ERR_REMOTE_FAILED');
    assert.equal(details['reason'], 'redirect-with-streamed-body');
  });

  it('turns a POST into a bodiless GET on 303, and returns the 3xx with redirect: manual', async () => {
    const f = fetcher();
    const before = server.requests.length;
    const body = Buffer.from('{"type":"job.completed"}');
    const r = await f.post(at('/post-303'), body, { headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 200);
    const second = server.requests.at(before + 1);
    assert.equal(second?.method, 'GET');
    assert.equal(second?.body.length, 0);
    assert.equal(second?.contentType, undefined);

    const manual = await f.post(at('/post-303'), body, { redirect: 'manual' });
    assert.equal(manual.status, 303);
  });

  it('refuses a PUT to a forbidden address before reading the body', async () => {
    const f = fetcher();
    let pulled = false;
    const body = new Readable({ read() { pulled = true; this.push(null); } });
    await rejectsWithCode(f.put('http://10.0.0.1/upload', body), 'ERR_REMOTE_FORBIDDEN');
    assert.equal(pulled, false);
    assert.deepEqual(dialled, []);
  });
});

describe('fetcher over TLS: dials the vetted IP, validates the certificate against the hostname', () => {
  let server: https.Server;
  let port = 0;
  let ca = '';
  const sniSeen: Array<string | false | null> = [];

  before(async () => {
    const pems = await selfsigned.generate([{ name: 'commonName', value: 'public.test' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      extensions: [
        { name: 'basicConstraints', cA: true },
        { name: 'subjectAltName', altNames: [{ type: 2, value: 'public.test' }] },
      ],
    });
    ca = pems.cert;
    server = https.createServer({ key: pems.private, cert: pems.cert }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(IMAGE);
    });
    server.on('secureConnection', (s: TLSSocket) => sniSeen.push(s.servername));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  function tlsFetcher(withCa: boolean, dialled: string[]) {
    return createFetcher({
      allowedPorts: [port],
      lookup: tableLookup({ 'public.test': ['127.0.0.1'], 'wrong.test': ['127.0.0.1'] }),
      maxBytes: MAX_BYTES,
      timeoutMs: 3000,
      unsafeTestAllow: (ip, p) => ip === '127.0.0.1' && p === port,
      onConnect: (ip) => dialled.push(ip),
      ...(withCa ? { tls: { ca } } : {}),
    });
  }

  it('fetches over https with SNI set to the hostname while connecting to the vetted address', async () => {
    const dialled: string[] = [];
    sniSeen.length = 0;
    const r = await tlsFetcher(true, dialled).getBuffer(`https://public.test:${port}/image.png`);
    assert.deepEqual(r.body, IMAGE);
    assert.deepEqual(dialled, ['127.0.0.1']);
    assert.deepEqual(sniSeen, ['public.test']);
  });

  it('rejects a certificate that does not name the requested host', async () => {
    const dialled: string[] = [];
    const err = await rejectionOf(tlsFetcher(true, dialled).get(`https://wrong.test:${port}/image.png`), 'ERR_REMOTE_FAILED');
    assert.equal(causeCode(err), 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.deepEqual(dialled, ['127.0.0.1']);
  });

  it('rejects a certificate from an untrusted issuer', async () => {
    const err = await rejectionOf(tlsFetcher(false, []).get(`https://public.test:${port}/image.png`), 'ERR_REMOTE_FAILED');
    assert.equal(causeCode(err), 'DEPTH_ZERO_SELF_SIGNED_CERT');
  });
});

describe('log redaction', () => {
  it('redacts credential-bearing headers and keeps the rest', () => {
    const out = redactHeaders({
      Authorization: 'Bearer s3cr3t',
      'proxy-authorization': 'Basic x',
      cookie: 'a=b',
      'x-api-key': 'k',
      'x-amz-security-token': 't',
      'x-goog-signature': 's',
      'content-type': 'image/png',
      'content-length': 12,
    });
    assert.deepEqual(out, {
      Authorization: '[REDACTED]',
      'proxy-authorization': '[REDACTED]',
      cookie: '[REDACTED]',
      'x-api-key': '[REDACTED]',
      'x-amz-security-token': '[REDACTED]',
      'x-goog-signature': '[REDACTED]',
      'content-type': 'image/png',
      'content-length': 12,
    });
  });

  it('strips the query, userinfo and fragment from URLs', () => {
    assert.equal(redactUrl('https://u:p@bucket.s3.example/key.png?X-Amz-Signature=abc&X-Amz-Credential=def#frag'), 'https://bucket.s3.example/key.png?[REDACTED]');
    assert.equal(redactUrl('https://example.com/a'), 'https://example.com/a');
    assert.equal(redactUrl('::nope'), '[invalid URL]');
  });
});
