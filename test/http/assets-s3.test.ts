// S3 is played by s3rver on 127.0.0.1: it stands in for AWS S3 / MinIO (same REST API), but it does
// not verify SigV4 signatures, so these tests prove our wire behaviour and bucket contents, not AWS's
// enforcement of the presigned URL's signed headers (the store's own tests assert those are signed).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { openTestDb, type TestDb } from '../support/db.js';
import { startServer, createTenant, api, type TestServer, type Tenant } from '../support/server.js';
import { startS3rver, type S3rverHandle } from '../support/s3rver.js';
import { createS3Store } from '../../src/assets/stores/s3.js';
import { markedPng } from '../support/media.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('assets on an S3 store (s3rver)', () => {
  let t: TestDb;
  let s3: S3rverHandle;
  let s: TestServer;
  let a: Tenant;
  const marker = `OBSCURA-S3-MARKER-${randomBytes(8).toString('hex')}`;
  let png: Buffer;

  before(async () => {
    t = await openTestDb('pglite');
    s3 = await startS3rver();
    const store = createS3Store({ client: s3.client, bucket: s3.bucket, prefix: 'obscura', serverSideEncryption: 'AES256' });
    s = await startServer(t.db, { deps: { store } });
    a = await createTenant(t.db, 'S3');
    png = await markedPng(marker, 500);
  });
  after(async () => {
    await s.close();
    await s3.stop();
    await t.close();
  });

  async function bucketObjects(): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    const list = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket }));
    for (const o of list.Contents ?? []) {
      const got = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: o.Key! }));
      out.set(o.Key!, Buffer.from(await got.Body!.transformToByteArray()));
    }
    return out;
  }

  test('a presigned S3 upload is finalised into an encrypted asset and the staged object removed', async () => {
    const jpeg = Buffer.concat([await sharp(png).jpeg().toBuffer()]);
    const intent = await api(s.url, 'POST', '/v1/assets/upload-url', { key: a.key, body: { content_type: 'image/jpeg', content_length: jpeg.length, filename: 'x.jpg' } });
    assert.equal(intent.status, 201, JSON.stringify(intent.body));
    assert.ok(intent.body.url.startsWith(s3.endpoint), 'an S3 presigned URL');
    assert.match(intent.body.url, /X-Amz-Signature=/);
    assert.ok(intent.body.complete_url);
    const early = await fetch(intent.body.complete_url, { method: 'POST', headers: { authorization: `Bearer ${a.key}` } });
    assert.equal(early.status, 409, 'nothing uploaded yet');
    const put = await fetch(intent.body.url, { method: 'PUT', headers: intent.body.headers, body: new Uint8Array(jpeg) });
    assert.equal(put.status, 200);
    const staged = [...(await bucketObjects()).keys()].filter((k) => k.includes('staging/'));
    assert.equal(staged.length, 1);
    const done = await fetch(intent.body.complete_url, { method: 'POST', headers: { authorization: `Bearer ${a.key}` } });
    const asset = (await done.json()) as { id: string; sha256: string; content_type: string };
    assert.equal(done.status, 201, JSON.stringify(asset));
    assert.equal(asset.sha256, sha(jpeg));
    assert.equal(asset.content_type, 'image/jpeg');
    assert.equal([...(await bucketObjects()).keys()].filter((k) => k.includes('staging/')).length, 0, 'staged object removed');
    const again = await fetch(intent.body.complete_url, { method: 'POST', headers: { authorization: `Bearer ${a.key}` } });
    assert.equal(again.status, 409, 'single use');
  });

  test('a presigned upload whose bytes are not the declared type is refused and its staged object deleted', async () => {
    const intent = await api(s.url, 'POST', '/v1/assets/upload-url', { key: a.key, body: { content_type: 'image/jpeg', content_length: png.length } });
    await fetch(intent.body.url, { method: 'PUT', headers: intent.body.headers, body: new Uint8Array(png) });
    const done = await fetch(intent.body.complete_url, { method: 'POST', headers: { authorization: `Bearer ${a.key}` } });
    assert.equal(done.status, 415);
    assert.equal([...(await bucketObjects()).keys()].filter((k) => k.includes('staging/')).length, 0);
  });

  test('uploads, ranged and whole downloads work through S3, and the bucket holds no plaintext', async () => {
    const res = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${a.key}` }, body: new Uint8Array(png) });
    const asset = (await res.json()) as { id: string };
    assert.equal(res.status, 201);
    const link = await api(s.url, 'POST', `/v1/assets/${asset.id}/url`, { key: a.key, body: {} });
    const whole = Buffer.from(await (await fetch(link.body.url)).arrayBuffer());
    assert.equal(sha(whole), sha(png));
    const part = await fetch(link.body.url, { headers: { range: 'bytes=65530-131080' } });
    assert.equal(part.status, 206);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(png.subarray(65530, 131081)));
    const objects = await bucketObjects();
    assert.ok(objects.size >= 2);
    for (const [key, body] of objects) assert.ok(!body.includes(marker), `plaintext marker in s3://${s3.bucket}/${key}`);
    assert.ok(png.includes(marker));
  });
});
