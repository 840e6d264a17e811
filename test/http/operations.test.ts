/**
 * Issue 9, item 11, through the production routes: `GET /v1/operations` is the public, cacheable
 * reference generated from the registry; the OpenAPI document has one schema per operation referenced
 * from the process/jobs bodies; and `/v1/process` and `/v1/jobs` refuse a bad value with a 400 whose
 * `errors[].allowed` names the allowed values or range, while the legitimate twin succeeds.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { OPERATION_LIST } from '../../src/media/image/operations/registry.js';
import { VIDEO_OPERATION_LIST } from '../../src/media/video/operations.js';
import { markedPng } from '../support/media.js';
import { api, startHarness, upload, type Harness } from '../jobs/support.js';

describe('GET /v1/operations and validation errors that name what is allowed', () => {
  let h: Harness;
  let png: Buffer;
  let asset: string;
  before(async () => {
    h = await startHarness('pglite');
    png = await markedPng('operations', 80, 60);
    asset = await upload(h.srv, h.a.key, png);
  });
  after(async () => {
    await h?.close();
  });

  test('GET /v1/operations answers without a credential, cacheable, with every registry operation and its parameters', async () => {
    const res = await fetch(`${h.srv.url}/v1/operations`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('cache-control') ?? '', /^public, max-age=\d+/);
    const body = (await res.json()) as { operations: Array<{ name: string; aliases: string[]; parameters: Array<{ name: string; type: string; minimum?: number; maximum?: number; values?: string[]; value_aliases?: Record<string, string> }> }>; pipeline_order: string[]; max_operations: number };
    assert.deepEqual(body.operations.map((o) => o.name), OPERATION_LIST.map((o) => o.name));
    const resize = body.operations.find((o) => o.name === 'resize')!;
    const width = resize.parameters.find((p) => p.name === 'width')!;
    assert.deepEqual([width.type, width.minimum, width.maximum], ['integer', 1, 16383]);
    const type = body.operations.find((o) => o.name === 'format')!.parameters.find((p) => p.name === 'type')!;
    assert.ok(type.values?.includes('avif'));
    assert.equal(type.value_aliases?.jpg, 'jpeg');
    assert.ok(body.pipeline_order.indexOf('extract') < body.pipeline_order.indexOf('resize'));
    assert.equal(body.max_operations, 20);
    // Video operations are listed too, with what the installed ffmpeg can encode (issue 11).
    const video = (body as unknown as { video: { operations: Array<{ name: string }>; available: boolean; codecs: { video: string[]; audio: string[] }; containers: Record<string, { codecs: string[] }>; ffmpeg: string } }).video;
    assert.deepEqual(video.operations.map((o) => o.name), VIDEO_OPERATION_LIST.map((o) => o.name));
    assert.equal(video.available, true);
    assert.ok(video.codecs.video.includes('h264') && video.codecs.audio.includes('aac'), JSON.stringify(video.codecs));
    assert.deepEqual(video.containers.webm!.codecs, ['vp9', 'av1']);
    assert.match(video.ffmpeg, /^ffmpeg \d/);
  });

  test('GET /v1/operations says which operations also run on the device (issue 15): overlays that need the server are device: false', async () => {
    const body = (await (await fetch(`${h.srv.url}/v1/operations`)).json()) as { operations: Array<{ name: string; device: boolean }>; video: { operations: Array<{ device: boolean }> } };
    const flags = Object.fromEntries(body.operations.map((o) => [o.name, o.device]));
    // A watermark reads another asset on the server, text needs the server's font renderer.
    assert.equal(flags.watermark, false);
    assert.equal(flags.text, false);
    for (const name of ['resize', 'extract', 'rotate', 'blur', 'tint', 'format']) assert.equal(flags[name], true, name);
    assert.deepEqual(body.operations.filter((o) => o.device).map((o) => o.name), OPERATION_LIST.filter((o) => o.device === true).map((o) => o.name));
    assert.ok(body.video.operations.every((o) => o.device === false), 'video is server-only');
  });

  test('the OpenAPI document has a schema per operation, referenced from the POST /v1/process and /v1/jobs bodies', async () => {
    const doc = (await (await fetch(`${h.srv.url}/docs/json`)).json()) as { components: { schemas: Record<string, { properties?: Record<string, unknown> }> }; paths: Record<string, Record<string, unknown>> };
    for (const def of OPERATION_LIST) assert.ok(doc.components.schemas[`Operation_${def.name}`], `Operation_${def.name}`);
    for (const def of VIDEO_OPERATION_LIST) assert.ok(doc.components.schemas[`VideoOperation_${def.name}`], `VideoOperation_${def.name}`);
    assert.deepEqual(Object.keys(doc.components.schemas.Operation_resize!.properties!), ['op', 'width', 'height', 'fit', 'position', 'enlarge', 'background']);
    for (const path of ['/v1/process', '/v1/jobs']) {
      const body = JSON.stringify((doc.paths[path]!.post as { requestBody: unknown }).requestBody);
      assert.ok(body.includes('#/components/schemas/Operation_resize'), `${path} body references the operation schemas`);
    }
  });

  test('POST /v1/process refuses format:bmp with the allowed formats; format:jpg (an alias) succeeds as JPEG', async () => {
    const send = (ops: string) => fetch(`${h.srv.url}/v1/process?operations=${encodeURIComponent(ops)}`, { method: 'POST', headers: { authorization: `Bearer ${h.a.key}`, 'content-type': 'image/png' }, body: new Uint8Array(png) });
    const bad = await send('format:bmp');
    assert.equal(bad.status, 400);
    const problem = (await bad.json()) as { code: string; operation: string; errors: Array<{ parameter: string; allowed: { type: string; values: string[] }; got: unknown }> };
    assert.equal(problem.code, 'ERR_VALIDATION');
    assert.equal(problem.operation, 'format');
    assert.equal(problem.errors[0]!.parameter, 'type');
    assert.equal(problem.errors[0]!.allowed.type, 'enum');
    assert.ok(problem.errors[0]!.allowed.values.includes('jpeg'));
    assert.equal(problem.errors[0]!.got, 'bmp');
    const good = await send('format:jpg');
    assert.equal(good.status, 200, await good.clone().text());
    assert.equal(good.headers.get('content-type'), 'image/jpeg');
    assert.equal((await sharp(Buffer.from(await good.arrayBuffer())).metadata()).format, 'jpeg');
  });

  test('POST /v1/jobs refuses an out-of-range width with the range; an in-range width is accepted', async () => {
    const bad = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: [{ op: 'resize', width: 0 }] } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'ERR_VALIDATION');
    assert.deepEqual(bad.body.errors[0].allowed, { type: 'integer', minimum: 1, maximum: 16383 });
    const boolean = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: [{ op: 'resize', width: 10, enlarge: 'yes' }] } });
    assert.equal(boolean.status, 400);
    assert.equal(boolean.body.errors[0].allowed.type, 'boolean');
    const good = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: [{ op: 'resize', width: 40 }] } });
    assert.equal(good.status, 202, JSON.stringify(good.body));
  });
});
