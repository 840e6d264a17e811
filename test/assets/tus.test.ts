/**
 * tus 1.0 resumable uploads at /v1/uploads, driven by the real tus-js-client (and raw HTTP where a
 * client would never misbehave on purpose) against a listening server on 127.0.0.1.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import * as tus from 'tus-js-client';
import { DB_KINDS, openTestDb, superQuery, tempDir, type TestDb } from '../support/db.js';
import { startServer, createTenant, mintKey, api, type TestServer, type Tenant } from '../support/server.js';
import { createFsStore } from '../../src/assets/stores/fs.js';
import type { BlobStore } from '../../src/assets/stores/types.js';
import { parseUploadChecksum, sweepExpiredUploads } from '../../src/assets/tus.js';
import { AppError } from '../../src/errors.js';
import { markedPng, pngOfSize } from '../support/media.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const digest = (alg: 'sha1' | 'sha256', b: Buffer) => `${alg} ${createHash(alg).update(b).digest('base64')}`;

interface TusResult {
  url: string;
  assetId: string | undefined;
}

/** Uploads `data` with tus-js-client; resolves with the upload URL and the Obscura-Asset-Id it was told. */
function tusUpload(s: TestServer, key: string, data: Buffer, opts: Partial<tus.UploadOptions> & { onUpload?: (u: tus.Upload) => void } = {}): Promise<TusResult> {
  return new Promise((resolve, reject) => {
    let assetId: string | undefined;
    const { onUpload, ...rest } = opts;
    const upload = new tus.Upload(data, {
      endpoint: `${s.url}/v1/uploads`,
      headers: { authorization: `Bearer ${key}` },
      metadata: { filename: 'photo.png', filetype: 'text/html' },
      retryDelays: [],
      onAfterResponse: (_req, res) => {
        const id = res.getHeader('Obscura-Asset-Id');
        if (id) assetId = id;
      },
      onSuccess: () => resolve({ url: upload.url!, assetId }),
      onError: reject,
      ...rest,
    });
    onUpload?.(upload);
    upload.start();
  });
}

async function tusFetch(s: TestServer, method: string, path: string, key: string | undefined, headers: Record<string, string> = {}, body?: Buffer) {
  const h: Record<string, string> = { 'tus-resumable': '1.0.0', ...headers };
  if (key) h.authorization = `Bearer ${key}`;
  const res = await fetch(path.startsWith('http') ? path : `${s.url}${path}`, { method, headers: h, body: body ? new Uint8Array(body) : undefined });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as any) : undefined };
}

async function create(s: TestServer, key: string, length: number, headers: Record<string, string> = {}): Promise<string> {
  const r = await tusFetch(s, 'POST', '/v1/uploads', key, { 'upload-length': String(length), ...headers });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return new URL(r.headers.get('location')!, s.url).toString();
}

const patch = (s: TestServer, url: string, key: string, offset: number, body: Buffer, headers: Record<string, string> = {}) =>
  tusFetch(s, 'PATCH', url, key, { 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream', ...headers }, body);

async function keysUnder(store: BlobStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const k of store.list(prefix)) out.push(k);
  return out;
}

/** A store that can be told to fail reads of stored parts (a completion dying mid-way, seen from outside). */
function flaky(inner: BlobStore): BlobStore & { failPartDeletes: boolean; failPartReads: boolean } {
  const s = {
    failPartDeletes: false,
    failPartReads: false,
    kind: inner.kind,
    supports: inner.supports.bind(inner),
    put: inner.put.bind(inner),
    async get(key: string, range?: { start: number; end: number }) {
      if (s.failPartReads && key.includes('/parts/')) throw new Error('simulated crash');
      return inner.get(key, range);
    },
    async read(key: string, maxBytes: number) {
      if (s.failPartReads && key.includes('/parts/')) throw new Error('simulated crash');
      return inner.read(key, maxBytes);
    },
    head: inner.head.bind(inner),
    list: inner.list.bind(inner),
    async delete(key: string) {
      if (s.failPartDeletes && key.startsWith('uploads/')) throw new Error('simulated crash');
      return inner.delete(key);
    },
  };
  return s;
}

describe('Upload-Checksum parsing', () => {
  test('accepts sha1 and sha256 digests of the right length and refuses others with 400', () => {
    assert.equal(parseUploadChecksum(digest('sha1', Buffer.from('x')))?.algorithm, 'sha1');
    assert.equal(parseUploadChecksum(digest('sha256', Buffer.from('x')))?.digest.length, 32);
    assert.equal(parseUploadChecksum(undefined), undefined);
    for (const bad of [`md5 ${createHash('md5').update('x').digest('base64')}`, 'sha256', 'sha256 !!!!', `sha256 ${Buffer.alloc(20).toString('base64')}`]) {
      assert.throws(() => parseUploadChecksum(bad), (e: unknown) => e instanceof AppError && e.status === 400, bad);
    }
  });
});

for (const kind of DB_KINDS) {
  describe(`tus uploads (${kind})`, () => {
    let t: TestDb;
    let s: TestServer;
    let store: ReturnType<typeof flaky>;
    let a: Tenant;
    let b: Tenant;
    let clockOffset = 0;
    let png: Buffer;

    before(async () => {
      t = await openTestDb(kind);
      store = flaky(await createFsStore({ root: join(tempDir('obscura-tus-'), 'blobs') }));
      s = await startServer(t.db, { deps: { store, now: () => Date.now() + clockOffset } });
      a = await createTenant(t.db, 'A');
      b = await createTenant(t.db, 'B');
      png = await markedPng(`marker-${randomBytes(8).toString('hex')}`, 1024, 1024);
      assert.ok(png.length > 3 * MiB);
    });
    after(async () => {
      await s?.close();
      await t?.close();
    });

    const assetCount = async (orgId: string) => Number((await superQuery(t, 'SELECT count(*)::int AS n FROM assets WHERE org_id = $1', [orgId]))[0]!.n);
    const uploadRow = async (id: string) => (await superQuery(t, 'SELECT * FROM uploads WHERE id = $1', [id]))[0];
    const idOf = (url: string) => url.split('/').pop()!;
    /** Stored parts whose asset id belongs to neither an asset nor an upload. */
    const unownedParts = async () => {
      const out: string[] = [];
      for (const key of await keysUnder(store, `orgs/${a.orgId}/parts/`)) {
        const id = key.split('/')[3]!;
        const owners = await superQuery(t, 'SELECT 1 FROM assets WHERE id = $1 UNION ALL SELECT 1 FROM uploads WHERE target_asset_id = $1', [id]);
        if (owners.length === 0) out.push(key);
      }
      return out;
    };
    /** Where an upload's parts live: under the asset it becomes (fixed when the upload is created). */
    const partsOf = async (url: string) => `orgs/${a.orgId}/parts/${(await uploadRow(idOf(url)))!.target_asset_id}/`;

    test('OPTIONS advertises tus 1.0 with checksum (sha1, sha256), expiration and termination, without a credential', async () => {
      const r = await tusFetch(s, 'OPTIONS', '/v1/uploads', undefined);
      assert.equal(r.status, 204);
      assert.equal(r.headers.get('tus-version'), '1.0.0');
      const ext = r.headers.get('tus-extension')!.split(',');
      for (const e of ['creation', 'creation-with-upload', 'expiration', 'checksum', 'termination']) assert.ok(ext.includes(e), e);
      assert.equal(r.headers.get('tus-checksum-algorithm'), 'sha1,sha256');
      assert.equal(Number(r.headers.get('tus-max-size')), s.config.uploads.maxBytes);
    });

    test('refuses every other tus request without a credential (401) before reading the body', async () => {
      const r = await tusFetch(s, 'POST', '/v1/uploads', undefined, { 'upload-length': '10' });
      assert.equal(r.status, 401);
      assert.equal(r.body.code, 'ERR_AUTH_MISSING');
      const rk = await mintKey(t.db, a, { kind: 'restricted', name: 'read only', scopes: ['assets:read'] });
      assert.equal((await tusFetch(s, 'POST', '/v1/uploads', rk.secret, { 'upload-length': '10' })).body.code, 'ERR_SCOPE_MISSING');
      assert.equal(Number((await superQuery(t, 'SELECT count(*)::int AS n FROM uploads'))[0]!.n), 0);
    });

    test('a multi-MiB PNG sent in several PATCHes (larger than the JSON body limit) becomes an asset with the right SHA-256 and dimensions', async () => {
      const { url, assetId } = await tusUpload(s, a.key, png, { chunkSize: 1.5 * MiB });
      assert.match(url, new RegExp(`^${s.url}/v1/uploads/tus_[0-9A-Za-z]{22}$`));
      assert.ok(assetId, 'the completing PATCH names the asset');
      const meta = await api(s.url, 'GET', `/v1/assets/${assetId}`, { key: a.key });
      assert.equal(meta.status, 200);
      assert.equal(meta.body.sha256, sha256(png));
      assert.equal(meta.body.size, png.length);
      assert.equal(meta.body.content_type, 'image/png', 'sniffed, not the client-declared filetype');
      assert.equal(meta.body.width, 1024);
      assert.equal(meta.body.height, 1024);
      assert.equal(meta.body.filename, 'photo.png');
      // The parts became the asset as they were (no legacy upload blobs); HEAD keeps answering with the asset id.
      assert.deepEqual(await keysUnder(store, `uploads/${a.orgId}/`), []);
      assert.ok((await keysUnder(store, `orgs/${a.orgId}/parts/${assetId}/`)).length >= 2);
      const head = await tusFetch(s, 'HEAD', url, a.key);
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('upload-offset'), String(png.length));
      assert.equal(head.headers.get('obscura-asset-id'), assetId);
      assert.equal(head.headers.get('cache-control'), 'no-store');
      const row = await uploadRow(idOf(url));
      assert.equal(row!.completed_asset_id, assetId);
      assert.equal(Number(row!.upload_offset), png.length);
    });

    test('parts are stored encrypted as they arrive: no stored part contains the plaintext', async () => {
      const url = await create(s, a.key, png.length);
      const half = Math.floor(png.length / 2);
      assert.equal((await patch(s, url, a.key, 0, png.subarray(0, half))).status, 204);
      const keys = await keysUnder(store, await partsOf(url));
      assert.equal(keys.length, 1);
      const stored: Buffer[] = [];
      for await (const c of await store.get(keys[0]!)) stored.push(c as Buffer);
      const blob = Buffer.concat(stored);
      assert.equal(blob.subarray(0, 4).toString('latin1'), 'OBSC');
      assert.equal(blob.indexOf(png.subarray(1000, 1064)), -1);
      assert.equal(blob.indexOf(png.subarray(0, 8)), -1, 'not even the PNG signature');
      assert.equal((await tusFetch(s, 'DELETE', url, a.key)).status, 204);
    });

    test('resumes after tus-js-client aborts mid-way and finishes with exactly the original bytes', async () => {
      let first: tus.Upload | undefined;
      let chunks = 0;
      const aborted = new Promise<string>((resolve, reject) => {
        first = new tus.Upload(png, {
          endpoint: `${s.url}/v1/uploads`,
          headers: { authorization: `Bearer ${a.key}` },
          chunkSize: 512 * 1024,
          retryDelays: [],
          onChunkComplete: () => {
            if (++chunks === 3) {
              void first!.abort().then(() => resolve(first!.url!));
            }
          },
          onSuccess: () => reject(new Error('should have been aborted')),
          onError: reject,
        });
        first.start();
      });
      const url = await aborted;
      const head = await tusFetch(s, 'HEAD', url, a.key);
      const offset = Number(head.headers.get('upload-offset'));
      assert.ok(offset >= 3 * 512 * 1024 && offset < png.length, `offset ${offset}`);
      assert.equal(await assetCount(a.orgId), 1, 'no asset yet for the unfinished upload');

      let resumedFrom = -1;
      const { assetId } = await tusUpload(s, a.key, png, {
        uploadUrl: url,
        chunkSize: 1024 * 1024,
        onProgress: (sent) => {
          if (resumedFrom < 0) resumedFrom = sent;
        },
      });
      assert.ok(resumedFrom >= offset, 'the client continued from the server offset instead of starting over');
      const meta = await api(s.url, 'GET', `/v1/assets/${assetId}`, { key: a.key });
      assert.equal(meta.body.sha256, sha256(png));
      assert.equal(meta.body.size, png.length);
    });

    test('a client that disconnects in the middle of a PATCH keeps what arrived and resumes from there', async () => {
      const url = await create(s, a.key, png.length);
      const sent = 1 * MiB;
      await new Promise<void>((resolve) => {
        const u = new URL(url);
        const req = httpRequest({
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'PATCH',
          headers: { authorization: `Bearer ${a.key}`, 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'content-length': String(png.length) },
        });
        req.on('error', () => resolve());
        req.write(png.subarray(0, sent));
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 400);
      });
      const head = await tusFetch(s, 'HEAD', url, a.key);
      assert.equal(head.status, 200);
      const offset = Number(head.headers.get('upload-offset'));
      assert.ok(offset > 0 && offset <= sent, `offset ${offset}`);
      const done = await patch(s, url, a.key, offset, png.subarray(offset));
      assert.equal(done.status, 204, JSON.stringify(done.body));
      const meta = await api(s.url, 'GET', `/v1/assets/${done.headers.get('obscura-asset-id')}`, { key: a.key });
      assert.equal(meta.body.sha256, sha256(png));
    });

    test('a chunk with a wrong Upload-Checksum is refused with 460, discarded, and the offset does not move; correct sha1 and sha256 checksums are accepted', async () => {
      const data = await pngOfSize(300_000);
      const url = await create(s, a.key, data.length);
      const first = data.subarray(0, 100_000);
      const wrong = await patch(s, url, a.key, 0, first, { 'upload-checksum': digest('sha256', Buffer.from('something else')) });
      assert.equal(wrong.status, 460);
      assert.equal(wrong.body.code, 'ERR_CHECKSUM_MISMATCH');
      assert.match(wrong.headers.get('content-type')!, /application\/problem\+json/);
      assert.equal((await tusFetch(s, 'HEAD', url, a.key)).headers.get('upload-offset'), '0');
      assert.deepEqual(await keysUnder(store, await partsOf(url)), [], 'the refused chunk left no part');

      const unsupported = await patch(s, url, a.key, 0, first, { 'upload-checksum': `md5 ${createHash('md5').update(first).digest('base64')}` });
      assert.equal(unsupported.status, 400);
      assert.equal((await tusFetch(s, 'HEAD', url, a.key)).headers.get('upload-offset'), '0');

      const ok1 = await patch(s, url, a.key, 0, first, { 'upload-checksum': digest('sha1', first) });
      assert.equal(ok1.status, 204);
      assert.equal(ok1.headers.get('upload-offset'), String(first.length));
      const rest = data.subarray(first.length);
      const ok2 = await patch(s, url, a.key, first.length, rest, { 'upload-checksum': digest('sha256', rest) });
      assert.equal(ok2.status, 204);
      assert.equal(ok2.headers.get('upload-offset'), String(data.length));
      // A truncated PNG is still a PNG to the sniffer; what matters is that it is the exact bytes.
      const meta = await api(s.url, 'GET', `/v1/assets/${ok2.headers.get('obscura-asset-id')}`, { key: a.key });
      assert.equal(meta.body.sha256, sha256(data));
    });

    test('a PATCH at the wrong offset is refused with 409 and changes nothing', async () => {
      const data = await pngOfSize(200_000);
      const url = await create(s, a.key, data.length);
      assert.equal((await patch(s, url, a.key, 0, data.subarray(0, 50_000))).status, 204);
      for (const off of [0, 10, 60_000]) {
        const r = await patch(s, url, a.key, off, data.subarray(off, off + 1000));
        assert.equal(r.status, 409, `offset ${off}`);
        assert.equal(r.body.code, 'ERR_UPLOAD_OFFSET_MISMATCH');
      }
      assert.equal((await tusFetch(s, 'HEAD', url, a.key)).headers.get('upload-offset'), '50000');
      assert.equal((await keysUnder(store, await partsOf(url))).length, 1);
      assert.equal((await patch(s, url, a.key, 50_000, data.subarray(50_000))).status, 204);
    });

    test("another org's key gets 404 on HEAD, PATCH and DELETE of an upload, like an unknown id, and the upload is untouched", async () => {
      const data = await pngOfSize(100_000);
      const url = await create(s, a.key, data.length);
      assert.equal((await patch(s, url, a.key, 0, data.subarray(0, 40_000))).status, 204);
      const unknown = `${s.url}/v1/uploads/tus_${'A'.repeat(22)}`;
      for (const target of [url, unknown, `${s.url}/v1/uploads/not-an-id`]) {
        const head = await tusFetch(s, 'HEAD', target, b.key);
        assert.equal(head.status, 404, target);
        const p = await patch(s, target, b.key, 40_000, data.subarray(40_000));
        assert.equal(p.status, 404);
        assert.equal(p.body.code, 'ERR_NOT_FOUND');
        const d = await tusFetch(s, 'DELETE', target, b.key);
        assert.equal(d.status, 404);
        assert.equal(d.body.code, 'ERR_NOT_FOUND');
      }
      // Another app of the same org is a stranger too.
      const otherApp = await t.db.withTenant(a.orgId, async (trx) => {
        const { createApp } = await import('../../src/tenants/index.js');
        const { createKey } = await import('../../src/auth/keys.js');
        const app = await createApp(trx, a.orgId, { name: 'other' }, { actor: { type: 'cli' } });
        return createKey(trx, a.orgId, app.id, { kind: 'secret', name: 'k' }, { actor: { type: 'cli' }, granter: null });
      });
      assert.equal((await tusFetch(s, 'HEAD', url, otherApp.secret)).status, 404);
      // The owner continues undisturbed.
      const head = await tusFetch(s, 'HEAD', url, a.key);
      assert.equal(head.headers.get('upload-offset'), '40000');
      const done = await patch(s, url, a.key, 40_000, data.subarray(40_000));
      assert.equal(done.status, 204);
      assert.equal(await assetCount(b.orgId), 0);
    });

    test('a text file is refused with 415 when the upload completes, and leaves no parts, no upload and no asset', async () => {
      const before = await assetCount(a.orgId);
      const text = Buffer.from('just some text, definitely not an image\n'.repeat(5000));
      let client: tus.Upload | undefined;
      await assert.rejects(
        tusUpload(s, a.key, text, { chunkSize: 64 * 1024, onUpload: (u) => (client = u) }),
        (err: any) => err.originalResponse?.getStatus() === 415 && JSON.parse(err.originalResponse.getBody()).code === 'ERR_UNSUPPORTED_MEDIA_TYPE',
      );
      const url = client!.url!;
      assert.ok(url);
      assert.equal(await assetCount(a.orgId), before);
      assert.deepEqual(await keysUnder(store, `uploads/${a.orgId}/`), []);
      assert.deepEqual(await unownedParts(), [], 'the refused parts are gone');
      assert.equal(await uploadRow(idOf(url)), undefined);
      assert.equal((await tusFetch(s, 'HEAD', url, a.key)).status, 404);
    });

    test('a declared length above the app limit is refused with 413 at creation; within it the upload works', async () => {
      await superQuery(t, `UPDATE apps SET settings = settings || '{"max_upload_bytes": 150000}'::jsonb WHERE id = $1`, [b.appId]);
      try {
        const r = await tusFetch(s, 'POST', '/v1/uploads', b.key, { 'upload-length': '150001' });
        assert.equal(r.status, 413);
        assert.equal(r.body.code, 'ERR_PAYLOAD_TOO_LARGE');
        assert.equal((await tusFetch(s, 'OPTIONS', '/v1/uploads', undefined)).headers.get('tus-max-size'), String(s.config.uploads.maxBytes));
        const tooBig = await tusFetch(s, 'POST', '/v1/uploads', b.key, { 'upload-length': String(s.config.uploads.maxBytes + 1) });
        assert.equal(tooBig.status, 413);
        assert.equal(Number((await superQuery(t, 'SELECT count(*)::int AS n FROM uploads WHERE org_id = $1', [b.orgId]))[0]!.n), 0);
        const { assetId } = await tusUpload(s, b.key, await pngOfSize(150_000));
        assert.ok(assetId);
      } finally {
        await superQuery(t, `UPDATE apps SET settings = settings - 'max_upload_bytes' WHERE id = $1`, [b.appId]);
      }
    });

    test('creation-with-upload completes a small file in one POST and returns the asset id', async () => {
      const data = await pngOfSize(80_000);
      const r = await tusFetch(s, 'POST', '/v1/uploads', a.key, { 'upload-length': String(data.length), 'content-type': 'application/offset+octet-stream', 'upload-checksum': digest('sha256', data) }, data);
      assert.equal(r.status, 201);
      assert.equal(r.headers.get('upload-offset'), String(data.length));
      const meta = await api(s.url, 'GET', `/v1/assets/${r.headers.get('obscura-asset-id')}`, { key: a.key });
      assert.equal(meta.body.sha256, sha256(data));
    });

    test('DELETE terminates an upload: its parts and record are gone and it answers 404 afterwards', async () => {
      const url = await create(s, a.key, 100_000);
      assert.equal((await patch(s, url, a.key, 0, png.subarray(0, 30_000))).status, 204);
      const prefix = await partsOf(url);
      assert.equal((await keysUnder(store, prefix)).length, 1);
      assert.equal((await tusFetch(s, 'DELETE', url, a.key)).status, 204);
      assert.deepEqual(await keysUnder(store, prefix), []);
      assert.equal(await uploadRow(idOf(url)), undefined);
      assert.equal((await tusFetch(s, 'HEAD', url, a.key)).status, 404);
      assert.equal((await patch(s, url, a.key, 30_000, png.subarray(30_000, 40_000))).status, 404);
    });

    test('an unfinished upload expires after 24 h (410) and the sweeper deletes its parts and record', async () => {
      const created = await tusFetch(s, 'POST', '/v1/uploads', a.key, { 'upload-length': '100000' });
      const expires = Date.parse(created.headers.get('upload-expires')!);
      assert.ok(Math.abs(expires - (Date.now() + 24 * 3600_000)) < 60_000, 'Upload-Expires is 24 h away');
      const url = new URL(created.headers.get('location')!, s.url).toString();
      assert.equal((await patch(s, url, a.key, 0, png.subarray(0, 30_000))).status, 204);
      const prefix = await partsOf(url);
      assert.equal((await keysUnder(store, prefix)).length, 1);
      const sweepDeps = { db: t.db, store, keyring: s.keyring, config: s.config, now: () => Date.now() + clockOffset };
      assert.equal(await sweepExpiredUploads(sweepDeps), 0, 'nothing is due yet');
      clockOffset = 24 * 3600_000 + 1000;
      try {
        const head = await tusFetch(s, 'HEAD', url, a.key);
        assert.equal(head.status, 410);
        assert.equal((await patch(s, url, a.key, 30_000, png.subarray(30_000, 40_000))).body.code, 'ERR_UPLOAD_EXPIRED');
        assert.ok((await sweepExpiredUploads(sweepDeps)) >= 1);
      } finally {
        clockOffset = 0;
      }
      assert.deepEqual(await keysUnder(store, prefix), []);
      assert.equal(await uploadRow(idOf(url)), undefined);
      assert.equal((await tusFetch(s, 'HEAD', url, a.key)).status, 404);
    });

    test('a completion that dies before recording its asset is finished by the next HEAD (hashing the stored parts), and a stray part beside the upload is removed', async () => {
      const data = await pngOfSize(120_000);
      const url = await create(s, a.key, data.length);
      assert.equal((await patch(s, url, a.key, 0, data.subarray(0, 60_000))).status, 204);
      const prefix = await partsOf(url);
      // What a PATCH killed between its put and its commit leaves: a part no row lists.
      const stray = `${prefix}0000000000060000-strayStray00`;
      await store.put(stray, (await import('node:stream')).Readable.from([Buffer.from('junk')]));
      const count = await assetCount(a.orgId);
      store.failPartReads = true;
      let crashed;
      try {
        crashed = await patch(s, url, a.key, 60_000, data.subarray(60_000));
      } finally {
        store.failPartReads = false;
      }
      assert.equal(crashed.status, 500);
      assert.equal(crashed.body.code, 'ERR_INTERNAL');
      const id = idOf(url);
      assert.equal((await uploadRow(id))!.completed_asset_id, null, 'nothing half-recorded');
      assert.equal(await assetCount(a.orgId), count, 'no asset yet');

      // Now pretend the process died holding the completion lease.
      await superQuery(t, `UPDATE uploads SET completing_at = now() - interval '1 hour' WHERE id = $1`, [id]);
      const head = await tusFetch(s, 'HEAD', url, a.key);
      assert.equal(head.status, 200);
      const assetId = head.headers.get('obscura-asset-id');
      assert.equal(assetId, (await uploadRow(id))!.target_asset_id, 'the asset the upload was created for');
      assert.equal(await assetCount(a.orgId), count + 1, 'exactly one asset');
      const meta = await api(s.url, 'GET', `/v1/assets/${assetId}`, { key: a.key });
      assert.equal(meta.body.sha256, sha256(data), 'the digest computed from the stored parts (the in-process chain was spent)');
      const keys = await keysUnder(store, prefix);
      assert.equal(keys.length, 2, 'the two committed parts are the asset');
      assert.ok(!keys.includes(stray), 'the stray part is gone');
    });

    test('a crashed completion never adopts another upload of identical bytes: each upload keeps its own asset, and deleting one leaves the other (regression: bob.mp4 became alice.mp4)', async () => {
      const data = await pngOfSize(90_000, 'identical');
      // Alice's upload completes normally.
      const alice = await tusUpload(s, a.key, data);
      assert.ok(alice.assetId);
      // Bob uploads the same bytes with the same key; his completion "crashes" before his asset is
      // recorded (as a kill -9 would leave it).
      const url = await create(s, a.key, data.length);
      store.failPartReads = true;
      try {
        assert.equal((await patch(s, url, a.key, 0, data)).status, 500);
      } finally {
        store.failPartReads = false;
      }
      const id = idOf(url);
      const bobAsset = (await uploadRow(id))!.target_asset_id as string;
      assert.ok(bobAsset && bobAsset !== alice.assetId);
      await superQuery(t, `UPDATE uploads SET completed_asset_id = NULL, completing_at = now() - interval '1 hour' WHERE id = $1`, [id]);
      const started = Date.now();
      const head = await tusFetch(s, 'HEAD', url, a.key);
      assert.ok(Date.now() - started < 5000, 'the resume HEAD answers promptly');
      assert.equal(head.headers.get('obscura-asset-id'), bobAsset, "bob's upload is bob's asset, not alice's identical one");
      assert.equal((await api(s.url, 'DELETE', `/v1/assets/${alice.assetId}`, { key: a.key })).status, 204);
      assert.equal((await api(s.url, 'GET', `/v1/assets/${bobAsset}`, { key: a.key })).status, 200, "deleting alice's asset leaves bob's");
    });

    test('a HEAD on an upload whose completion is held by another live request answers within seconds without an asset id', async () => {
      const data = await pngOfSize(40_000, 'busy');
      const url = await create(s, a.key, data.length);
      assert.equal((await patch(s, url, a.key, 0, data.subarray(0, 10_000))).status, 204);
      // A fully received upload whose lease is fresh: as if another node were completing it right now.
      await superQuery(t, `UPDATE uploads SET upload_offset = upload_length, completing_at = now() WHERE id = $1`, [idOf(url)]);
      const started = Date.now();
      const head = await tusFetch(s, 'HEAD', url, a.key);
      assert.equal(head.status, 200);
      assert.ok(Date.now() - started < 5000, `HEAD took ${Date.now() - started} ms`);
      assert.equal(head.headers.get('obscura-asset-id'), null);
    });

    test('publishable keys upload only when the app allows browser uploads, and only from their origin', async () => {
      const origin = 'https://shop.example';
      const pk = await mintKey(t.db, a, { kind: 'publishable', name: 'web', allowedOrigins: [origin] });
      const data = await pngOfSize(50_000);
      const refused = await tusFetch(s, 'POST', '/v1/uploads', pk.secret, { 'upload-length': String(data.length), origin });
      assert.equal(refused.status, 403);
      assert.equal(refused.body.code, 'ERR_ROLE_FORBIDDEN');
      await superQuery(t, `UPDATE apps SET settings = settings || '{"allow_browser_uploads": true}'::jsonb WHERE id = $1`, [a.appId]);
      try {
        const wrongOrigin = await tusFetch(s, 'POST', '/v1/uploads', pk.secret, { 'upload-length': String(data.length), origin: 'https://evil.example' });
        assert.equal(wrongOrigin.status, 403);
        assert.equal(wrongOrigin.body.code, 'ERR_ORIGIN_NOT_ALLOWED');
        const ok = await tusFetch(s, 'POST', '/v1/uploads', pk.secret, { 'upload-length': String(data.length), origin, 'content-type': 'application/offset+octet-stream' }, data);
        assert.equal(ok.status, 201, JSON.stringify(ok.body));
        assert.ok(ok.headers.get('obscura-asset-id'));
        assert.notEqual(ok.headers.get('access-control-allow-origin'), '*', "tus's permissive default CORS is off");
      } finally {
        await superQuery(t, `UPDATE apps SET settings = settings - 'allow_browser_uploads' WHERE id = $1`, [a.appId]);
      }
    });
  });
}
