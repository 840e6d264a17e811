import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { DB_KINDS, superQuery } from '../support/db.js';
import { mintKey } from '../support/server.js';
import { quadrants, jpegWithExif } from '../fixtures/make.js';
import { api, raw, startHarness, startTestWorkers, upload, waitForJob, type Harness } from '../jobs/support.js';

const json = { 'content-type': 'application/json' };

for (const kind of DB_KINDS) {
  describe(`POST /v1/process on ${kind}`, () => {
    let h: Harness;
    let png: Buffer;
    let assetA: string;
    let assetB: string;
    before(async () => {
      h = await startHarness(kind, { targets: 2 });
      png = await quadrants(200, 100, 'png');
      assetA = await upload(h.srv, h.a.key, png);
      assetB = await upload(h.srv, h.b.key, png);
    });
    after(async () => h?.close());

    test('processes an asset of the org and returns the bytes as inert media', async () => {
      const r = await raw(h.srv.url, 'POST', '/v1/process', { key: h.a.key, headers: json, body: JSON.stringify({ input: { asset_id: assetA }, operations: 'resize:width=50/format:webp' }) });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-type'), 'image/webp');
      assert.match(r.headers.get('content-security-policy') ?? '', /default-src 'none'/);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(r.headers.get('cache-control'), 'no-store');
      const m = await sharp(r.body).metadata();
      assert.equal(m.format, 'webp');
      assert.equal(m.width, 50);
      assert.equal(m.height, 25);
    });

    test('processes a raw image body with operations in the query string', async () => {
      const r = await raw(h.srv.url, 'POST', '/v1/process?operations=' + encodeURIComponent('rotate:90/format:png'), { key: h.a.key, headers: { 'content-type': 'image/jpeg' }, body: png });
      assert.equal(r.status, 200);
      const m = await sharp(r.body).metadata();
      // The PNG was labelled image/jpeg: the sniffed bytes decide, and the rotation swapped the sides.
      assert.deepEqual([m.format, m.width, m.height], ['png', 100, 200]);
    });

    test('strips EXIF and GPS from outputs by default', async () => {
      const r = await raw(h.srv.url, 'POST', '/v1/process?operations=' + encodeURIComponent('resize:width=100/format:jpeg'), { key: h.a.key, headers: { 'content-type': 'image/jpeg' }, body: await jpegWithExif() });
      assert.equal(r.status, 200);
      const m = await sharp(r.body).metadata();
      assert.equal(m.exif, undefined);
    });

    test('refuses a text file sent as image/jpeg with 415 and a JSON error', async () => {
      const res = await raw(h.srv.url, 'POST', '/v1/process?operations=format:png', { key: h.a.key, headers: { 'content-type': 'image/jpeg' }, body: 'hello, I am text' });
      assert.equal(res.status, 415);
      assert.equal(JSON.parse(res.body.toString()).code, 'ERR_UNSUPPORTED_MEDIA_TYPE');
    });

    test('stores the output as an encrypted asset expiring in 24 h with output.store', async () => {
      const before = Date.now();
      const r = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { asset_id: assetA }, operations: 'format:webp', output: { store: true } } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.equal(r.body.kind, 'output');
      assert.equal(r.body.content_type, 'image/webp');
      assert.equal(r.headers.get('location'), `/v1/assets/${r.body.id}`);
      const ttl = new Date(r.body.expires_at).getTime() - before;
      assert.ok(ttl > 23.9 * 3600_000 && ttl < 24.1 * 3600_000, `ttl ${ttl}`);
      assert.equal((await api(h.srv.url, 'GET', `/v1/assets/${r.body.id}`, { key: h.a.key })).status, 200);
      // Only ciphertext reached the store: the stored blob does not start with the RIFF/WEBP header.
      const row = (await superQuery(h.t, 'select blob_key from assets where id = $1', [r.body.id]))[0]!;
      const stream = await h.srv.store.get(String(row.blob_key));
      const first: Buffer[] = [];
      for await (const c of stream) first.push(c as Buffer);
      assert.notEqual(Buffer.concat(first).subarray(0, 4).toString('latin1'), 'RIFF');
    });

    test("an app's upload allowlist does not block outputs in another format (regression)", async () => {
      const appId = (await api(h.srv.url, 'GET', '/v1/whoami', { key: h.a.key })).body.app_id;
      const settings = (await api(h.srv.url, 'GET', `/v1/apps/${appId}`, { key: h.a.key })).body.settings;
      await api(h.srv.url, 'PATCH', `/v1/apps/${appId}`, { key: h.a.key, body: { settings: { allowed_types: ['image/jpeg', 'image/png'] } } });
      try {
        const r = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { asset_id: assetA }, operations: 'format:webp', output: { store: true } } });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        assert.equal(r.body.content_type, 'image/webp');
      } finally {
        await api(h.srv.url, 'PATCH', `/v1/apps/${appId}`, { key: h.a.key, body: { settings: { allowed_types: settings.allowed_types ?? [] } } });
      }
    });

    test('rejects an invalid operation with 400 naming it, before fetching the remote input', async () => {
      const target = h.targets[0]!;
      const seen = target.requests.length;
      const r = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { url: `${target.origin}/a.png` }, operations: 'resize:width=-5' } });
      assert.equal(r.status, 400);
      assert.equal(r.body.code, 'ERR_VALIDATION');
      assert.equal(r.body.operation, 'resize');
      assert.equal(target.requests.length, seen, 'nothing was fetched');
    });

    test('fetches a remote input through the fetcher, forwarding the customer headers to that request only', async () => {
      const target = h.targets[0]!;
      target.handler = (req, res) => {
        if (req.headers.authorization !== 'Bearer temp-storage-token') {
          res.statusCode = 403;
          res.end();
          return;
        }
        res.setHeader('content-type', 'image/png');
        res.end(png);
      };
      const r = await raw(h.srv.url, 'POST', '/v1/process', {
        key: h.a.key,
        headers: json,
        body: JSON.stringify({ input: { url: `${target.origin}/photo.png?X-Amz-Signature=abc`, headers: { Authorization: 'Bearer temp-storage-token' } }, operations: 'resize:width=40/format:png' }),
      });
      assert.equal(r.status, 200, r.body.toString());
      assert.equal((await sharp(r.body).metadata()).width, 40);
      assert.equal(target.requests.at(-1)!.url, '/photo.png?X-Amz-Signature=abc');
      // Without the header the customer's storage refuses, and we say so without echoing its answer.
      const denied = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { url: `${target.origin}/photo.png` }, operations: 'format:png' } });
      assert.equal(denied.status, 502);
      assert.equal(denied.body.code, 'ERR_REMOTE_FAILED');
      assert.equal(denied.body.upstreamStatus, 403);
    });

    test('refuses SSRF targets (private, metadata, loopback on another port) with 400 ERR_REMOTE_FORBIDDEN and connects to none', async () => {
      const target = h.targets[0]!;
      const seen = target.requests.length;
      for (const url of ['https://10.0.0.1/x.png', 'http://169.254.169.254/latest/meta-data/', `http://127.0.0.1:${h.targets[1]!.port + 1}/x.png`, 'http://[::1]/x.png', 'http://2130706433/x.png', 'ftp://example.com/x.png']) {
        const r = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { url }, operations: 'format:png' } });
        assert.equal(r.status, 400, url);
        assert.equal(r.body.code, 'ERR_REMOTE_FORBIDDEN', url);
      }
      assert.equal(target.requests.length, seen);
      // The permitted test target still works (the refusals are about the address, not the feature).
      target.handler = (_req, res) => res.end(png);
      assert.equal((await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { url: `${target.origin}/ok.png` }, operations: 'format:png' } })).status, 200);
    });

    test('an open redirect to a private address is refused', async () => {
      const target = h.targets[0]!;
      target.handler = (_req, res) => {
        res.statusCode = 302;
        res.setHeader('location', 'http://192.168.1.1/x.png');
        res.end();
      };
      const r = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { url: `${target.origin}/redirect` }, operations: 'format:png' } });
      assert.equal(r.status, 400);
      assert.equal(r.body.code, 'ERR_REMOTE_FORBIDDEN');
    });

    test('accepts exactly one input: both or neither is a 400', async () => {
      const both = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { asset_id: assetA, url: 'https://example.com/a.png' }, operations: 'format:png' } });
      assert.equal(both.status, 400);
      const none = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: {}, operations: 'format:png' } });
      assert.equal(none.status, 400);
    });

    test("cross-tenant: org B gets 404 for org A's asset, as input and as watermark; A succeeds", async () => {
      const asInput = await api(h.srv.url, 'POST', '/v1/process', { key: h.b.key, body: { input: { asset_id: assetA }, operations: 'format:png' } });
      assert.equal(asInput.status, 404);
      assert.equal(asInput.body.code, 'ERR_NOT_FOUND');
      const asWatermark = await api(h.srv.url, 'POST', '/v1/process', { key: h.b.key, body: { input: { asset_id: assetB }, operations: [{ op: 'watermark', assetId: assetA }] } });
      assert.equal(asWatermark.status, 404, JSON.stringify(asWatermark.body));
      const own = await raw(h.srv.url, 'POST', '/v1/process', { key: h.a.key, headers: json, body: JSON.stringify({ input: { asset_id: assetA }, operations: [{ op: 'watermark', assetId: assetA, scale: 0.5 }] }) });
      assert.equal(own.status, 200);
    });

    test('needs the jobs:write scope', async () => {
      const readOnly = await mintKey(h.t.db, h.a, { kind: 'restricted', name: 'ro', scopes: ['assets:read'] });
      const r = await api(h.srv.url, 'POST', '/v1/process', { key: readOnly.secret, body: { input: { asset_id: assetA }, operations: 'format:png' } });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'ERR_SCOPE_MISSING');
    });

    test('Prefer: respond-async answers 202 with a job that a worker completes', async () => {
      const w = await startTestWorkers(h);
      try {
        const r = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, headers: { prefer: 'respond-async' }, body: { input: { asset_id: assetA }, operations: 'resize:width=20/format:png' } });
        assert.equal(r.status, 202);
        assert.equal(r.headers.get('preference-applied'), 'respond-async');
        assert.equal(r.headers.get('location'), `/v1/jobs/${r.body.id}`);
        const job = await waitForJob(h.srv, h.a.key, r.body.id);
        assert.equal(job.status, 'succeeded');
        const out = await api(h.srv.url, 'GET', `/v1/assets/${job.output.asset_id}`, { key: h.a.key });
        assert.equal(out.body.width, 20);
        // A raw body with respond-async becomes an encrypted input copy and a job too.
        const rawJob = await raw(h.srv.url, 'POST', '/v1/process?operations=format:webp', { key: h.a.key, headers: { 'content-type': 'image/png', prefer: 'respond-async' }, body: png });
        assert.equal(rawJob.status, 202);
        const rj = await waitForJob(h.srv, h.a.key, JSON.parse(rawJob.body.toString()).id);
        assert.equal(rj.status, 'succeeded');
        assert.equal(rj.input.source, 'upload');
      } finally {
        await w.stop();
      }
    });
  });
}

describe('POST /v1/process under load', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness('pglite', { targets: 1, env: { OBSCURA_PROCESS_CONCURRENCY: '1', OBSCURA_PROCESS_MAX_QUEUED: '0' } });
  });
  after(async () => h?.close());

  test('sheds load with 503 and Retry-After when the bounded queue is full, then serves again', async () => {
    const target = h.targets[0]!;
    const png = await quadrants(200, 100, 'png');
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    target.handler = (_req, res) => void held.then(() => res.end(png));
    const slow = api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { url: `${target.origin}/slow.png` }, operations: 'format:png' } });
    // Wait until the slow request holds the only slot.
    while (target.requests.length === 0) await new Promise((r) => setTimeout(r, 20));
    const shed = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { url: `${target.origin}/other.png` }, operations: 'format:png' } });
    assert.equal(shed.status, 503);
    assert.equal(shed.body.code, 'ERR_UNAVAILABLE');
    assert.equal(shed.headers.get('retry-after'), '1');
    release();
    assert.equal((await slow).status, 200);
    target.handler = (_req, res) => res.end(png);
    assert.equal((await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { url: `${target.origin}/again.png` }, operations: 'format:png' } })).status, 200);
  });
});
