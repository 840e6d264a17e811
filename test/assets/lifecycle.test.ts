/**
 * Data lifecycle through the production routes (issue 14, items 5 and 7):
 * - the metadata policy at ingest (raw upload, tus with the real tus-js-client), the default included;
 * - deletion is final: a tus upload URL of a deleted asset is 404 on HEAD and PATCH, and tus-js-client
 *   resuming it the way Uppy does (fingerprint in URL storage) uploads the file anew; signed URLs of
 *   it fail; jobs whose input was deleted, queued or running, fail with ERR_INPUT_DELETED.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import * as tus from 'tus-js-client';
import { api } from '../support/server.js';
import { superQuery } from '../support/db.js';
import { loadConfig } from '../../src/config/index.js';
import { startHarness, startTestWorkers, upload, waitFor, type Harness } from '../jobs/support.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const XMP = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" photoshop:City="XMPPLACE"/></rdf:RDF></x:xmpmeta>';

/** A photo as a phone writes it: camera, GPS, an XMP city, a colour profile, orientation 6. */
function photo(format: 'jpeg' | 'webp', shade = 90): Promise<Buffer> {
  return sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 30, b: shade } } })
    .withExif({ IFD0: { Model: 'MARKERCAM' }, IFD3: { GPSMapDatum: 'SECRETPLACE', GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 2924/100' } })
    .withXmp(XMP)
    .withIccProfile('p3')
    .withMetadata({ orientation: 6 })
    .toFormat(format, { quality: 70 })
    .toBuffer();
}

async function facts(bytes: Buffer) {
  const m = await sharp(bytes).metadata();
  const exif = m.exif?.toString('latin1') ?? '';
  return { gps: exif.includes('SECRETPLACE'), camera: exif.includes('MARKERCAM'), xmp: (m.xmp?.toString('utf8') ?? '').includes('XMPPLACE'), icc: !!m.icc, orientation: m.orientation ?? 1 };
}

/** In-memory URL storage, as Uppy keeps upload URLs in localStorage. */
function memoryUrlStorage(): tus.UrlStorage & { entries: Map<string, tus.PreviousUpload & { fingerprint: string }> } {
  const entries = new Map<string, tus.PreviousUpload & { fingerprint: string }>();
  let n = 0;
  return {
    entries,
    findAllUploads: async () => [...entries.values()],
    findUploadsByFingerprint: async (fp) => [...entries.entries()].filter(([, v]) => v.fingerprint === fp).map(([k, v]) => ({ ...v, urlStorageKey: k })),
    removeUpload: async (key) => void entries.delete(key),
    addUpload: async (fp, u) => {
      const key = `tus::${fp}::${++n}`;
      entries.set(key, { ...u, fingerprint: fp });
      return key;
    },
  };
}

describe('data lifecycle through the production routes (embedded database)', () => {
  let h: Harness;
  let download: (id: string, key?: string) => Promise<Buffer>;

  before(async () => {
    // The product default (the test support otherwise keeps metadata for its byte-for-byte fixtures).
    h = await startHarness('pglite', { env: { OBSCURA_METADATA_POLICY: 'strip_all', OBSCURA_JOB_POLL_INTERVAL_MS: '500', OBSCURA_JOB_MONITOR_INTERVAL_SECONDS: '1' } });
    download = async (id, key = h.a.key) => {
      const link = await api(h.srv.url, 'POST', `/v1/assets/${id}/url`, { key, body: {} });
      assert.equal(link.status, 201, JSON.stringify(link.body));
      const r = await fetch(link.body.url);
      assert.equal(r.status, 200);
      return Buffer.from(await r.arrayBuffer());
    };
  });
  after(async () => {
    await h?.close();
  });

  /** Uploads through tus-js-client; resolves with the asset id the server named. */
  const tusUpload = (key: string, data: Buffer, extra: Partial<tus.UploadOptions> = {}): Promise<{ assetId: string; url: string }> =>
    new Promise((resolve, reject) => {
      let assetId = '';
      const u = new tus.Upload(data, {
        endpoint: `${h.srv.url}/v1/uploads`,
        headers: { authorization: `Bearer ${key}` },
        retryDelays: [],
        metadata: { filename: 'photo' },
        onAfterResponse: (_req, res) => {
          assetId = res.getHeader('Obscura-Asset-Id') ?? assetId;
        },
        onSuccess: () => resolve({ assetId, url: u.url! }),
        onError: reject,
        ...extra,
      });
      if (extra.urlStorage) {
        void u.findPreviousUploads().then((previous) => {
          if (previous[0]) u.resumeFromPreviousUpload(previous[0]);
          u.start();
        }, reject);
      } else u.start();
    });

  test('by default (strip_all) an uploaded JPEG is stored without EXIF, GPS or XMP, keeps its orientation, colour profile and pixels, and its sha256 is that of the stored bytes', async () => {
    assert.equal(loadConfig({}).uploads.metadataPolicy, 'strip_all', 'the default policy');
    const original = await photo('jpeg');
    const r = await fetch(`${h.srv.url}/v1/assets?filename=phone.jpg`, { method: 'POST', headers: { authorization: `Bearer ${h.a.key}` }, body: new Uint8Array(original) });
    assert.equal(r.status, 201);
    const asset = (await r.json()) as { id: string; sha256: string; size: number };
    const stored = await download(asset.id);
    const f = await facts(stored);
    assert.deepEqual(f, { gps: false, camera: false, xmp: false, icc: true, orientation: 6 });
    assert.ok(!stored.includes('SECRETPLACE') && !stored.includes('MARKERCAM'));
    assert.deepEqual(await sharp(stored).raw().toBuffer(), await sharp(original).raw().toBuffer(), 'the same pixels: not re-encoded');
    assert.equal(asset.sha256, sha256(stored), 'the digest is of the stored bytes');
    assert.notEqual(asset.sha256, sha256(original));
    assert.equal(asset.size, stored.length);
    const audit = await api(h.srv.url, 'GET', '/v1/audit?limit=20', { key: h.a.key });
    const created = audit.body.data.find((e: { action: string; target: { asset?: string } }) => e.action === 'asset.create' && e.target.asset === asset.id);
    assert.deepEqual(created.data.metadata_removed, ['exif', 'xmp']);
  });

  test('an app set to strip_location keeps the camera but not the place, through tus-js-client; an app set to keep stores the bytes as sent', async () => {
    const located = await api(h.srv.url, 'POST', '/v1/apps', { key: h.a.key, body: { name: 'places-off', settings: { metadata_policy: 'strip_location' } } });
    assert.equal(located.body.effective.metadata_policy, 'strip_location');
    const kept = await api(h.srv.url, 'POST', '/v1/apps', { key: h.a.key, body: { name: 'archive', settings: { metadata_policy: 'keep' } } });
    const lk = await api(h.srv.url, 'POST', `/v1/apps/${located.body.id}/keys`, { key: h.a.key, body: { kind: 'secret' } });
    const kk = await api(h.srv.url, 'POST', `/v1/apps/${kept.body.id}/keys`, { key: h.a.key, body: { kind: 'secret' } });
    const original = await photo('webp');
    const viaTus = await tusUpload(lk.body.secret, original, { chunkSize: 700 });
    assert.ok(viaTus.assetId);
    const stored = await download(viaTus.assetId);
    assert.deepEqual(await facts(stored), { gps: false, camera: true, xmp: false, icc: true, orientation: 6 });
    assert.ok(!stored.includes('SECRETPLACE'));
    assert.deepEqual(await sharp(stored).raw().toBuffer(), await sharp(original).raw().toBuffer());
    const row = (await api(h.srv.url, 'GET', `/v1/assets/${viaTus.assetId}`, { key: h.a.key })).body;
    assert.equal(row.sha256, sha256(stored));
    // The parts that held the GPS position are gone from the store.
    const parts = await superQuery(h.t, 'select parts, blob_key from assets where id = $1', [viaTus.assetId]);
    assert.equal(parts[0]!.parts, null);
    for await (const k of h.srv.store.list(`orgs/${h.a.orgId}/parts/${viaTus.assetId}/`)) assert.fail(`part left: ${k}`);

    const asSent = await tusUpload(kk.body.secret, original, { chunkSize: 700 });
    assert.deepEqual(await download(asSent.assetId), original, 'keep: byte for byte');
  });

  test('deletion is final for a tus upload: HEAD and PATCH of its URL are 404, its signed URL is 404, and tus-js-client resuming it like Uppy uploads the file anew', async () => {
    const data = await photo('jpeg', 10);
    const storage = memoryUrlStorage();
    const uppy = { urlStorage: storage, fingerprint: async () => 'uppy-tus-same-file', storeFingerprintForResuming: true, removeFingerprintOnSuccess: false, chunkSize: 1000 };
    const first = await tusUpload(h.a.key, data, uppy);
    assert.ok(first.assetId);
    assert.equal(storage.entries.size, 1, 'the upload URL is remembered');
    // The legitimate twin: while the asset lives, adding the same file again resumes to the same asset.
    const again = await tusUpload(h.a.key, data, uppy);
    assert.equal(again.assetId, first.assetId);
    assert.equal(again.url, first.url);
    const link = await api(h.srv.url, 'POST', `/v1/assets/${first.assetId}/url`, { key: h.a.key, body: {} });

    assert.equal((await api(h.srv.url, 'DELETE', `/v1/assets/${first.assetId}`, { key: h.a.key })).status, 204);
    const tusHeaders = { authorization: `Bearer ${h.a.key}`, 'tus-resumable': '1.0.0' };
    const head = await fetch(first.url, { method: 'HEAD', headers: tusHeaders });
    assert.equal(head.status, 404);
    assert.equal(head.headers.get('obscura-asset-id'), null, 'the dead id is not named');
    const patch = await fetch(first.url, { method: 'PATCH', headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: new Uint8Array(data.subarray(0, 10)) });
    assert.equal(patch.status, 404);
    assert.equal(((await patch.json()) as { code: string }).code, 'ERR_NOT_FOUND');
    assert.equal((await fetch(link.body.url)).status, 404, 'the signed URL fails');

    const anew = await tusUpload(h.a.key, data, uppy);
    assert.ok(anew.assetId && anew.assetId !== first.assetId, 'a new asset, not the deleted one');
    assert.notEqual(anew.url, first.url);
    assert.equal((await download(anew.assetId)).length > 0, true);
  });

  test('a job whose input asset is deleted fails with ERR_INPUT_DELETED, queued or running, and produces nothing; a job whose input stays succeeds', async () => {
    const png = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#123456' } }).png().toBuffer();
    const job = async (input: string) => {
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: input }, operations: 'resize:width=8/format:png' } });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      return r.body.id as string;
    };
    const status = async (id: string) => (await api(h.srv.url, 'GET', `/v1/jobs/${id}`, { key: h.a.key })).body;
    // Queued: no worker runs yet.
    const queuedInput = await upload(h.srv, h.a.key, png);
    const queued = await job(queuedInput);
    assert.equal((await api(h.srv.url, 'DELETE', `/v1/assets/${queuedInput}`, { key: h.a.key })).status, 204);
    // Every attempt waits 1.5 s after reading its input: time to delete a running job's input.
    const workers = await startTestWorkers(h, { testDelayMs: 1500 });
    try {
      const q = await waitFor(async () => ((await status(queued)).status === 'failed' ? status(queued) : null), 30_000, 'the queued job to fail');
      assert.equal(q.error.code, 'ERR_INPUT_DELETED');
      assert.equal(q.output.asset_id, null);

      const runningInput = await upload(h.srv, h.a.key, png);
      const running = await job(runningInput);
      const keptInput = await upload(h.srv, h.a.key, png);
      const twin = await job(keptInput);
      await waitFor(async () => (await status(running)).status === 'running', 30_000, 'the job to run');
      assert.equal((await api(h.srv.url, 'DELETE', `/v1/assets/${runningInput}`, { key: h.a.key })).status, 204);
      const r = await waitFor(async () => ((await status(running)).status === 'failed' ? status(running) : null), 30_000, 'the running job to fail');
      assert.equal(r.error.code, 'ERR_INPUT_DELETED');
      assert.equal(r.output.asset_id, null);
      const outputs = await superQuery(h.t, "select count(*)::int as n from assets where kind = 'output' and org_id = $1", [h.a.orgId]);
      const ok = await waitFor(async () => ((await status(twin)).status === 'succeeded' ? status(twin) : null), 30_000, 'the twin to succeed');
      assert.ok(ok.output.asset_id, 'the twin produced its output');
      assert.equal(Number(outputs[0]!.n) <= 1, true, 'no output for the failed jobs');
    } finally {
      await workers.stop();
    }
  });
});
