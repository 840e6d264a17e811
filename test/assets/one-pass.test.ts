/**
 * One-pass uploads (issue 12, item 2): a tus upload's parts are written in the asset's own encrypted
 * layout (format version 2, docs/encryption-format.md), so completion records them without reading
 * or writing the file again. Driven through the production routes (tus with the real tus-js-client,
 * signed downloads, presigned PUT) against a listening server, with the real fs store wrapped only to
 * count what is written.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import * as tus from 'tus-js-client';
import { openTestDb, superQuery, tempDir, type TestDb } from '../support/db.js';
import { startServer, createTenant, api, type TestServer, type Tenant } from '../support/server.js';
import { createFsStore } from '../../src/assets/stores/fs.js';
import type { BlobStore } from '../../src/assets/stores/types.js';
import { OrphanSweeper } from '../../src/assets/orphans.js';
import { pngOfSize } from '../support/media.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The real fs store, counting every byte written through `put`, per key. */
function counting(inner: BlobStore): BlobStore & { puts: Array<{ key: string; bytes: number }> } {
  const puts: Array<{ key: string; bytes: number }> = [];
  return {
    puts,
    kind: inner.kind,
    supports: inner.supports.bind(inner),
    async put(key, body, opts) {
      const r = await inner.put(key, body, opts);
      puts.push({ key, bytes: r.size });
      return r;
    },
    get: inner.get.bind(inner),
    read: inner.read.bind(inner),
    head: inner.head.bind(inner),
    list: inner.list.bind(inner),
    delete: inner.delete.bind(inner),
  };
}

async function readAll(store: BlobStore, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await store.get(key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function tusFetch(s: TestServer, method: string, url: string, key: string, headers: Record<string, string> = {}, body?: Buffer) {
  const res = await fetch(url.startsWith('http') ? url : `${s.url}${url}`, { method, headers: { 'tus-resumable': '1.0.0', authorization: `Bearer ${key}`, ...headers }, body: body ? new Uint8Array(body) : undefined });
  await res.arrayBuffer();
  return res;
}

/** Creates an upload and sends `data` in PATCHes of the given sizes (the last takes the rest); returns the asset id. */
async function rawUpload(s: TestServer, key: string, data: Buffer, sizes: number[]): Promise<string> {
  const created = await tusFetch(s, 'POST', '/v1/uploads', key, { 'upload-length': String(data.length) });
  assert.equal(created.status, 201);
  const url = new URL(created.headers.get('location')!, s.url).toString();
  let at = 0;
  let assetId: string | null = null;
  for (const n of [...sizes, data.length]) {
    const end = Math.min(data.length, at + n);
    const r = await tusFetch(s, 'PATCH', url, key, { 'upload-offset': String(at), 'content-type': 'application/offset+octet-stream' }, data.subarray(at, end));
    assert.equal(r.status, 204);
    assetId = r.headers.get('obscura-asset-id');
    at = end;
    if (at === data.length) break;
  }
  assert.ok(assetId);
  return assetId;
}

async function download(s: TestServer, key: string, assetId: string, range?: string): Promise<{ status: number; body: Buffer; code?: string }> {
  const signed = await api(s.url, 'POST', `/v1/assets/${assetId}/url`, { key, body: {} });
  assert.equal(signed.status, 201);
  const res = await fetch(signed.body.url, { headers: range ? { range } : {} });
  try {
    const body = Buffer.from(await res.arrayBuffer());
    const code = res.headers.get('content-type')?.includes('problem+json') ? (JSON.parse(body.toString()) as { code: string }).code : undefined;
    return { status: res.status, body, ...(code ? { code } : {}) };
  } catch {
    // The connection was cut after the headers: an integrity failure past the first chunk.
    return { status: -1, body: Buffer.alloc(0) };
  }
}

// One database kind: what is under test is the blob layout, not the SQL dialect (tus.test.ts runs both).
describe('one-pass uploads: parts are the asset', () => {
  let t: TestDb;
  let s: TestServer;
  let s2: TestServer;
  let store: ReturnType<typeof counting>;
  let a: Tenant;
  let b: Tenant;
  let data: Buffer;

  before(async () => {
    t = await openTestDb('postgres');
    store = counting(await createFsStore({ root: join(tempDir('obscura-one-pass-'), 'blobs') }));
    s = await startServer(t.db, { deps: { store } });
    // A second node on the same database and store: it has no hash chain for uploads begun on the first.
    s2 = await startServer(t.db, { deps: { store } });
    a = await createTenant(t.db, 'A');
    b = await createTenant(t.db, 'B');
    data = await pngOfSize(600_000, `one-pass-${randomBytes(4).toString('hex')}`);
  });
  after(async () => {
    await s2?.close();
    await s?.close();
    await t?.close();
  });

  const manifestOf = async (assetId: string) => {
    const row = (await superQuery(t, 'SELECT parts, size, blob_key FROM assets WHERE id = $1', [assetId]))[0]!;
    const parts = (typeof row.parts === 'string' ? JSON.parse(row.parts) : row.parts) as Array<{ offset: number; size: number; id: string; key: string }>;
    return { parts, blobKey: row.blob_key as string };
  };

  test('tus-js-client chunks not aligned to 64 KiB, an abort and a resume, give a byte-identical download and ranges across part boundaries', async () => {
    let chunks = 0;
    let first: tus.Upload | undefined;
    const url = await new Promise<string>((resolve, reject) => {
      first = new tus.Upload(data, {
        endpoint: `${s.url}/v1/uploads`,
        headers: { authorization: `Bearer ${a.key}` },
        chunkSize: 100_003,
        retryDelays: [],
        onChunkComplete: () => {
          if (++chunks === 2) void first!.abort().then(() => resolve(first!.url!));
        },
        onSuccess: () => reject(new Error('should have been aborted')),
        onError: reject,
      });
      first.start();
    });
    let assetId: string | undefined;
    await new Promise<void>((resolve, reject) => {
      const resumed = new tus.Upload(data, {
        endpoint: `${s.url}/v1/uploads`,
        uploadUrl: url,
        headers: { authorization: `Bearer ${a.key}` },
        chunkSize: 77_777,
        retryDelays: [],
        onAfterResponse: (_req, res) => {
          assetId = res.getHeader('Obscura-Asset-Id') ?? assetId;
        },
        onSuccess: () => resolve(),
        onError: reject,
      });
      resumed.start();
    });
    assert.ok(assetId);
    const { parts, blobKey } = await manifestOf(assetId);
    assert.ok(parts.length >= 6, `one part per PATCH (${parts.length})`);
    assert.ok(parts.some((p) => p.size % 65536 !== 0), 'parts that end mid-segment');
    assert.equal(blobKey, `orgs/${a.orgId}/parts/${assetId}/`);
    const meta = await api(s.url, 'GET', `/v1/assets/${assetId}`, { key: a.key });
    assert.equal(meta.body.sha256, sha256(data));
    const whole = await download(s, a.key, assetId);
    assert.equal(whole.status, 200);
    assert.ok(whole.body.equals(data), 'byte-identical');
    // A range from inside one part to inside a later one, and one inside a single part.
    const boundary = parts[2]!.offset;
    for (const [from, to] of [[boundary - 1000, boundary + 150_000], [parts[1]!.offset + 10, parts[1]!.offset + 20]] as const) {
      const r = await download(s, a.key, assetId, `bytes=${from}-${to}`);
      assert.equal(r.status, 206);
      assert.ok(r.body.equals(data.subarray(from, to + 1)), `range ${from}-${to}`);
    }
  });

  test('completion writes no blob: everything the store received is the parts, about one copy of the file', async () => {
    const before = store.puts.length;
    const assetId = await rawUpload(s, a.key, data, [150_001, 99_999, 200_000]);
    const puts = store.puts.slice(before);
    const { parts } = await manifestOf(assetId);
    assert.deepEqual(
      puts.map((p) => p.key).sort(),
      parts.map((p) => p.key).sort(),
      'one put per PATCH, each a part of the manifest; no asset blob',
    );
    const written = puts.reduce((n, p) => n + p.bytes, 0);
    assert.ok(written < data.length * 1.01 + 4096, `${written} bytes written for a ${data.length}-byte file`);
    assert.equal((await download(s, a.key, assetId)).body.equals(data), true);
  });

  test('a PATCH that lands on another node (no hash chain there) still records the exact SHA-256', async () => {
    const created = await tusFetch(s, 'POST', '/v1/uploads', a.key, { 'upload-length': String(data.length) });
    const path = new URL(created.headers.get('location')!, s.url).pathname;
    const h = { 'content-type': 'application/offset+octet-stream' };
    assert.equal((await tusFetch(s, 'PATCH', path, a.key, { ...h, 'upload-offset': '0' }, data.subarray(0, 250_000))).status, 204);
    const last = await tusFetch(s2, 'PATCH', path, a.key, { ...h, 'upload-offset': '250000' }, data.subarray(250_000));
    assert.equal(last.status, 204);
    const assetId = last.headers.get('obscura-asset-id')!;
    assert.equal((await api(s2.url, 'GET', `/v1/assets/${assetId}`, { key: a.key })).body.sha256, sha256(data));
  });

  test('tampered parts fail the download with ERR_INTEGRITY: dropped, reordered, duplicated, cut, from another org, or a manifest that drops the final part', async () => {
    const assetId = await rawUpload(s, a.key, data, [150_001, 99_999, 200_000]);
    const foreignId = await rawUpload(s, b.key, data, [150_001, 99_999, 200_000]);
    const { parts } = await manifestOf(assetId);
    const foreign = (await manifestOf(foreignId)).parts;
    assert.equal(parts.length, 4);
    const genuine = await Promise.all(parts.map((p) => readAll(store, p.key)));
    const put = async (key: string, bytes: Buffer): Promise<void> => void (await store.put(key, Readable.from([bytes])));
    const restore = async () => {
      for (let i = 0; i < parts.length; i++) await put(parts[i]!.key, genuine[i]!);
    };
    const ok = await download(s, a.key, assetId);
    assert.equal(ok.status, 200);
    assert.ok(ok.body.equals(data), 'the genuine asset downloads');

    // A range that starts in the damaged segment (segments are authenticated one by one, so a range
    // that avoids the damage is served, and must be).
    const inPart = (i: number) => (i === parts.length - 1 ? `bytes=${data.length - 100}-${data.length - 1}` : `bytes=${parts[i]!.offset}-${parts[i]!.offset + 100}`);
    const cases: Array<[string, () => Promise<void>, number]> = [
      ['dropped part', () => store.delete(parts[1]!.key), 1],
      ['reordered parts', async () => {
        await put(parts[1]!.key, genuine[2]!);
        await put(parts[2]!.key, genuine[1]!);
      }, 1],
      ['duplicated part', () => put(parts[2]!.key, genuine[1]!), 2],
      ['cut final part', () => put(parts[3]!.key, genuine[3]!.subarray(0, genuine[3]!.length - 10)), 3],
      ["another org's part at the same offset", async () => put(parts[1]!.key, await readAll(store, foreign[1]!.key)), 1],
    ];
    for (const [name, tamper, at] of cases) {
      await tamper();
      try {
        const r = await download(s, a.key, assetId, inPart(at));
        assert.equal(r.status, 500, name);
        assert.equal(r.code, 'ERR_INTEGRITY', name);
        const whole = await download(s, a.key, assetId);
        assert.ok(!(whole.status === 200 && whole.body.equals(data)), `${name}: a whole download does not complete`);
      } finally {
        await restore();
      }
    }
    // A database edit that forgets the last part (and shrinks the size to match): the new last part
    // was sealed as a middle part, so the chained final flag refuses it.
    const short = parts.slice(0, 3);
    const shortSize = short.reduce((n, p) => n + p.size, 0);
    await superQuery(t, 'UPDATE assets SET parts = $2::jsonb, size = $3 WHERE id = $1', [assetId, JSON.stringify(short), shortSize]);
    // Through the second node: the first has this asset's row in its download cache (a row edited
    // behind the server's back reaches a node within the key-cache bound, like every cached row).
    const r = await download(s2, a.key, assetId, `bytes=${shortSize - 10}-${shortSize - 1}`);
    assert.equal(r.status, 500);
    assert.equal(r.code, 'ERR_INTEGRITY');
    await superQuery(t, 'UPDATE assets SET parts = $2::jsonb, size = $3 WHERE id = $1', [assetId, JSON.stringify(parts), data.length]);
    assert.ok((await download(s, a.key, assetId)).body.equals(data), 'restored, it downloads again');
  });

  test('deleting a parted asset removes every part, and the orphan sweep removes a stray part but never a listed one', async () => {
    const assetId = await rawUpload(s, a.key, data, [300_000]);
    const { parts, blobKey } = await manifestOf(assetId);
    const stray = `${blobKey}0000000000000000-strayPart000`;
    await store.put(stray, Readable.from([Buffer.from('left by a crash')]));
    let now = Date.now();
    const sweeper = new OrphanSweeper({ db: t.db, store }, { graceMs: 1000, everyMs: 0, now: () => now });
    await sweeper.run();
    now += 2000;
    await sweeper.run();
    const left: string[] = [];
    for await (const k of store.list(blobKey)) left.push(k);
    assert.deepEqual(left.sort(), parts.map((p) => p.key).sort(), 'the stray is gone, the listed parts stay');
    assert.equal((await api(s.url, 'DELETE', `/v1/assets/${assetId}`, { key: a.key })).status, 204);
    const after: string[] = [];
    for await (const k of store.list(blobKey)) after.push(k);
    assert.deepEqual(after, []);
  });

  test('an asset deleted through one node 404s at once on the other node that had its row cached (parted small or large, or one blob), with no integrity alarm', async () => {
    const small = await pngOfSize(100_000, `one-pass-small-${randomBytes(4).toString('hex')}`);
    const simpleUpload = async (bytes: Buffer) => {
      const res = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/octet-stream' }, body: new Uint8Array(bytes) });
      assert.equal(res.status, 201);
      return ((await res.json()) as { id: string }).id;
    };
    const cases = [
      ['parted, small (read whole)', small, () => rawUpload(s, a.key, small, [70_001])],
      ['parted, large (streamed)', data, () => rawUpload(s, a.key, data, [70_001])],
      ['one blob, small (read whole)', small, () => simpleUpload(small)],
    ] as const;
    for (const [name, bytes, make] of cases) {
      const assetId = await make();
      const minted = await api(s2.url, 'POST', `/v1/assets/${assetId}/url`, { key: a.key, body: {} });
      assert.equal(minted.status, 201);
      const first = await fetch(minted.body.url);
      assert.equal(first.status, 200, name);
      assert.ok(Buffer.from(await first.arrayBuffer()).equals(bytes), `${name}: served and its row cached on the second node`);
      assert.equal((await api(s.url, 'DELETE', `/v1/assets/${assetId}`, { key: a.key })).status, 204);
      const gone = await fetch(minted.body.url);
      assert.equal(gone.status, 404, name);
      assert.equal(((await gone.json()) as { code: string }).code, 'ERR_NOT_FOUND', name);
      const alarms = await superQuery(t, "SELECT count(*)::int AS n FROM audit_log WHERE action = 'asset.integrity_failure' AND target->>'asset' = $1", [assetId]);
      assert.equal(alarms[0]!.n, 0, name);
    }
  });

  test('a presigned local PUT is stored in one pass: one put of exactly one ciphertext', async () => {
    const intent = await api(s.url, 'POST', '/v1/assets/upload-url', { key: a.key, body: { content_type: 'image/png', content_length: data.length } });
    assert.equal(intent.status, 201);
    const before = store.puts.length;
    const res = await fetch(intent.body.url, { method: 'PUT', headers: intent.body.headers, body: new Uint8Array(data) });
    assert.equal(res.status, 201);
    const asset = (await res.json()) as { id: string; sha256: string };
    assert.equal(asset.sha256, sha256(data));
    const puts = store.puts.slice(before);
    assert.equal(puts.length, 1);
    assert.ok(puts[0]!.bytes < data.length * 1.01 + 4096);
    assert.ok((await download(s, a.key, asset.id)).body.equals(data));
  });
});
