/**
 * The media limits are operator settings (issue 10, item 8): a server started with a lower
 * OBSCURA_MAX_INPUT_PIXELS refuses a bigger image on POST /v1/process and on upload with 422
 * ERR_IMAGE_TOO_LARGE, and OBSCURA_MAX_OUTPUT_DIMENSION bounds the output; a default server accepts
 * the same image and keeps its size.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { openTestDb, type TestDb } from '../support/db.js';
import { createTenant, startServer, type Tenant, type TestServer } from '../support/server.js';
import { markedPng } from '../support/media.js';

describe('operator media limits', () => {
  let t: TestDb;
  let strict: TestServer;
  let plain: TestServer;
  let a: Tenant;
  before(async () => {
    t = await openTestDb('pglite');
    strict = await startServer(t.db, { env: { OBSCURA_MAX_INPUT_PIXELS: String(100 * 100), OBSCURA_MAX_OUTPUT_DIMENSION: '64' } });
    plain = await startServer(t.db);
    a = await createTenant(t.db, 'Limits');
  });
  after(async () => {
    await strict?.close();
    await plain?.close();
    await t?.close();
  });

  const post = (srv: TestServer, path: string, body: Buffer) =>
    fetch(`${srv.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${a.key}`, 'content-type': 'image/png' }, body: new Uint8Array(body) });

  test('an image over OBSCURA_MAX_INPUT_PIXELS is refused with 422 ERR_IMAGE_TOO_LARGE on /v1/process and on upload; the default server accepts it', async () => {
    const big = await markedPng('big', 200, 150);
    for (const path of ['/v1/process?operations=format:png', '/v1/assets']) {
      const r = await post(strict, path, big);
      assert.equal(r.status, 422, path);
      assert.equal(((await r.json()) as { code: string }).code, 'ERR_IMAGE_TOO_LARGE', path);
    }
    const ok = await post(plain, '/v1/process?operations=format:png', big);
    assert.equal(ok.status, 200);
    const meta = await sharp(Buffer.from(await ok.arrayBuffer())).metadata();
    assert.deepEqual([meta.width, meta.height], [200, 150]);
  });

  test('OBSCURA_MAX_OUTPUT_DIMENSION scales an output down to fit', async () => {
    const small = await markedPng('small', 96, 48);
    const r = await post(strict, '/v1/process?operations=format:png', small);
    assert.equal(r.status, 200);
    const meta = await sharp(Buffer.from(await r.arrayBuffer())).metadata();
    assert.deepEqual([meta.width, meta.height], [64, 32]);
  });
});
