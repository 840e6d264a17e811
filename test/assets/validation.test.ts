/**
 * Issue 9, item 5: an upload is stored only if its bytes really are a valid file of the type they
 * were sniffed as. A text file starting with `GIF89a`, a truncated JPEG, an `ftyp` box followed by
 * zeros, a truncated MP4 and a truncated WebM are refused with 422 ERR_MEDIA_INVALID on every ingest
 * path (one request, tus, presigned PUT), leaving no row and no blob; real files of each kind pass.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { clip } from '../support/video.js';
import * as tus from 'tus-js-client';
import { DB_KINDS, openTestDb, superQuery, type TestDb } from '../support/db.js';
import { api, createTenant, startServer, type Tenant, type TestServer } from '../support/server.js';

/** An ISO BMFF box: 32-bit size, 4-char type, body. */
function box(type: string, body: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(8 + body.length);
  h.write(type, 4, 'latin1');
  return Buffer.concat([h, body]);
}
const ftyp = box('ftyp', Buffer.concat([Buffer.from('isom'), Buffer.from([0, 0, 2, 0]), Buffer.from('isommp41')]));
/** A minimal well-formed MP4 layout (ftyp, moov, mdat) — the structure the check walks. */
const mp4 = Buffer.concat([ftyp, box('moov', box('free', Buffer.alloc(0))), box('mdat', Buffer.alloc(2000, 1))]);
/** A minimal well-formed WebM head: EBML header (DocType webm), Segment of unknown size, Info. */
const webm = Buffer.concat([
  Buffer.from([0x1a, 0x45, 0xdf, 0xa3, 0x8f, 0x42, 0x86, 0x81, 0x01, 0x42, 0x82, 0x84]),
  Buffer.from('webm'),
  Buffer.from([0x42, 0x87, 0x81, 0x02]),
  Buffer.from([0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
  Buffer.from([0x15, 0x49, 0xa9, 0x66, 0x80]),
  Buffer.alloc(500, 0xec), // Void elements as filler
]);

async function noisyJpeg(): Promise<Buffer> {
  const raw = Buffer.alloc(640 * 480 * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
  return sharp(raw, { raw: { width: 640, height: 480, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

for (const kind of DB_KINDS) {
  describe(`uploads are decodable instances of their sniffed type (${kind})`, () => {
    let t: TestDb;
    let s: TestServer;
    let a: Tenant;
    const hostile: Record<string, Buffer> = {};
    let jpeg: Buffer;
    let realMp4: Buffer;
    let realWebm: Buffer;

    before(async () => {
      realMp4 = await clip({ seconds: 1 });
      realWebm = await clip({ seconds: 1, container: 'webm' });
      t = await openTestDb(kind);
      s = await startServer(t.db);
      a = await createTenant(t.db, 'Validate');
      jpeg = await noisyJpeg();
      hostile['text disguised as GIF'] = Buffer.from('GIF89a this is just a text file\nwith a few lines\n');
      hostile['truncated JPEG (curl -d stripped it)'] = jpeg.subarray(0, Math.floor(jpeg.length * 0.38));
      hostile['ftyp header followed by zeros'] = Buffer.concat([ftyp, Buffer.alloc(20_000)]);
      hostile['MP4 cut off inside mdat'] = mp4.subarray(0, mp4.length - 700);
      hostile['MP4 without a movie header'] = Buffer.concat([ftyp, box('mdat', Buffer.alloc(3000, 2))]);
      // Sound box and element layouts with no track in them: only the probe (issue 11) tells.
      hostile['MP4 boxes with no video track'] = mp4;
      hostile['WebM head with no video track'] = webm;
      hostile['real MP4 cut off inside mdat'] = realMp4.subarray(0, realMp4.length - 2000);
      // The Segment declares 1 MiB (8-byte size) but the file ends after a few hundred bytes.
      hostile['WebM cut off inside its Segment'] = Buffer.from(
        webm.toString('latin1').replace('\x01\xff\xff\xff\xff\xff\xff\xff', '\x01\x00\x00\x00\x00\x10\x00\x00'),
        'latin1',
      );
    });
    after(async () => {
      await s.close();
      await t.close();
    });

    async function nothingStored(): Promise<void> {
      const rows = await superQuery(t, 'select count(*)::int as n from assets where org_id = $1', [a.orgId]);
      assert.equal(rows[0]!.n, 0, 'no asset row');
      const blobs: string[] = [];
      for await (const k of s.store.list(`orgs/${a.orgId}/`)) blobs.push(k);
      assert.deepEqual(blobs.filter((k) => !k.includes('/uploads/')), [], 'no asset blob');
    }

    test('POST /v1/assets refuses each hostile file with 422 ERR_MEDIA_INVALID and stores nothing', async () => {
      for (const [name, bytes] of Object.entries(hostile)) {
        const r = await fetch(`${s.url}/v1/assets?filename=x`, { method: 'POST', headers: { authorization: `Bearer ${a.key}` }, body: new Uint8Array(bytes) });
        const body = (await r.json()) as { code: string; reason?: string; detected?: string };
        assert.equal(r.status, 422, `${name}: ${JSON.stringify(body)}`);
        assert.equal(body.code, 'ERR_MEDIA_INVALID', name);
        assert.ok(body.reason && body.detected, `${name} says why`);
      }
      await nothingStored();
    });

    test('real JPEG, PNG, MP4 and WebM files are accepted on the same route', async () => {
      const png = await sharp(jpeg).png().toBuffer();
      for (const [bytes, type] of [[jpeg, 'image/jpeg'], [png, 'image/png'], [realMp4, 'video/mp4'], [realWebm, 'video/webm']] as const) {
        const r = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${a.key}` }, body: new Uint8Array(bytes) });
        const body = (await r.json()) as { content_type: string; width: number | null; id: string };
        assert.equal(r.status, 201, `${type}: ${JSON.stringify(body)}`);
        assert.equal(body.content_type, type);
        if (type.startsWith('image/')) assert.equal(body.width, 640);
        assert.equal((await api(s.url, 'DELETE', `/v1/assets/${body.id}`, { key: a.key })).status, 204);
      }
    });

    test('a tus upload of a truncated JPEG is refused at completion with 422 and leaves nothing behind', async () => {
      const err = await new Promise<tus.DetailedError>((resolve, reject) => {
        const upload = new tus.Upload(hostile['truncated JPEG (curl -d stripped it)']!, {
          endpoint: `${s.url}/v1/uploads`,
          headers: { authorization: `Bearer ${a.key}` },
          metadata: { filename: 'cut.jpg' },
          retryDelays: [],
          onSuccess: () => reject(new Error('a truncated JPEG was accepted')),
          onError: (e) => resolve(e as tus.DetailedError),
        });
        upload.start();
      });
      assert.equal(err.originalResponse?.getStatus(), 422);
      assert.equal(JSON.parse(err.originalResponse!.getBody()).code, 'ERR_MEDIA_INVALID');
      await nothingStored();
      // The twin: the whole JPEG goes through tus.
      const ok = await new Promise<string | undefined>((resolve, reject) => {
        let id: string | undefined;
        const upload = new tus.Upload(jpeg, {
          endpoint: `${s.url}/v1/uploads`,
          headers: { authorization: `Bearer ${a.key}` },
          retryDelays: [],
          onAfterResponse: (_req, res) => void (id = res.getHeader('Obscura-Asset-Id') ?? id),
          onSuccess: () => resolve(id),
          onError: reject,
        });
        upload.start();
      });
      assert.match(String(ok), /^ast_/);
      assert.equal((await api(s.url, 'DELETE', `/v1/assets/${ok}`, { key: a.key })).status, 204);
    });

    test('a presigned PUT of an ftyp box followed by zeros is refused with 422 and stores nothing', async () => {
      const bytes = hostile['ftyp header followed by zeros']!;
      const intent = await api(s.url, 'POST', '/v1/assets/upload-url', { key: a.key, body: { content_type: 'video/mp4', content_length: bytes.length } });
      assert.equal(intent.status, 201, JSON.stringify(intent.body));
      const put = await fetch(intent.body.url, { method: 'PUT', headers: intent.body.headers, body: new Uint8Array(bytes) });
      assert.equal(put.status, 422);
      assert.equal(((await put.json()) as { code: string }).code, 'ERR_MEDIA_INVALID');
      await nothingStored();
      const good = await api(s.url, 'POST', '/v1/assets/upload-url', { key: a.key, body: { content_type: 'video/mp4', content_length: realMp4.length } });
      const ok = await fetch(good.body.url, { method: 'PUT', headers: good.body.headers, body: new Uint8Array(realMp4) });
      assert.equal(ok.status, 201);
    });

    test('an image over the pixel limit is refused at upload with 422 ERR_IMAGE_TOO_LARGE', async () => {
      // 8000 × 6000 = 48 MP > the 40 MP default; a flat PNG is only a few kilobytes (a small bomb).
      const bomb = await sharp({ create: { width: 8000, height: 6000, channels: 3, background: '#fff' } }).png({ compressionLevel: 9 }).toBuffer();
      const r = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${a.key}` }, body: new Uint8Array(bomb) });
      assert.equal(r.status, 422);
      assert.equal(((await r.json()) as { code: string }).code, 'ERR_IMAGE_TOO_LARGE');
    });
  });
}
