/**
 * Issue 9, item 12: presets work wherever operations are accepted (`/v1/process` raw and JSON, jobs,
 * the CLI), not only in transform URLs; and an operation order the pipeline would change is refused
 * with a clear error instead of being reordered silently.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import sharp from 'sharp';
import { tempDir } from '../support/db.js';
import { runCli } from '../support/cli.js';
import { markedPng } from '../support/media.js';
import { api, startHarness, startTestWorkers, upload, waitForJob, type Harness } from '../jobs/support.js';

describe('presets everywhere, and no silent reordering', () => {
  let h: Harness;
  let w: Awaited<ReturnType<typeof startTestWorkers>>;
  let asset: string;
  let png: Buffer;
  before(async () => {
    h = await startHarness('pglite');
    w = await startTestWorkers(h);
    png = await markedPng('presets', 120, 90);
    asset = await upload(h.srv, h.a.key, png);
    const put = await api(h.srv.url, 'PUT', `/v1/apps/${h.a.appId}/transform-presets/thumb`, { key: h.a.key, body: { operations: 'resize:width=32/format:webp' } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  });
  after(async () => {
    await w?.stop();
    await h?.close();
  });

  const widthOf = async (data: Buffer) => (await sharp(data).metadata()).width;

  test('POST /v1/process accepts preset:NAME in the raw-body query and in a JSON operations array', async () => {
    const raw = await fetch(`${h.srv.url}/v1/process?operations=preset:thumb`, { method: 'POST', headers: { authorization: `Bearer ${h.a.key}`, 'content-type': 'image/png' }, body: new Uint8Array(png) });
    assert.equal(raw.status, 200, await raw.clone().text());
    assert.equal(raw.headers.get('content-type'), 'image/webp');
    assert.equal(await widthOf(Buffer.from(await raw.arrayBuffer())), 32);
    const json = await fetch(`${h.srv.url}/v1/process`, { method: 'POST', headers: { authorization: `Bearer ${h.a.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { asset_id: asset }, operations: ['preset:thumb', 'quality:60'] }) });
    assert.equal(json.status, 200, await json.clone().text());
    assert.equal(await widthOf(Buffer.from(await json.arrayBuffer())), 32);
  });

  test('a job with preset:NAME runs the preset; an unknown preset is a 400 naming it', async () => {
    const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'preset:thumb' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const done = await waitForJob(h.srv, h.a.key, r.body.id);
    assert.equal(done.status, 'succeeded', JSON.stringify(done));
    const out = await api(h.srv.url, 'GET', `/v1/assets/${done.output.asset_id}`, { key: h.a.key });
    assert.equal(out.body.width, 32);
    assert.equal(out.body.content_type, 'image/webp');
    const unknown = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'preset:nope' } });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.reason, 'unknown_preset');
    // Another org cannot use org A's preset name.
    const b = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.b.key, body: { input: { asset_id: asset }, operations: 'preset:thumb' } });
    assert.ok(b.status === 400 || b.status === 404, `org B got ${b.status}`);
  });

  test('the CLI runs a preset through /v1/process', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'in.png'), png);
    const r = await runCli(['process', join(dir, 'in.png'), '--op', 'preset:thumb', '-o', join(dir, 'out.webp')], { OBSCURA_URL: h.srv.url, OBSCURA_API_KEY: h.a.key });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await widthOf(readFileSync(join(dir, 'out.webp'))), 32);
  });

  test('resize then crop is refused with reason order_changed naming both operations; crop then resize works', async () => {
    const bad = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'resize:width=100/crop:left=0,top=0,width=40,height=20' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'ERR_VALIDATION');
    assert.equal(bad.body.reason, 'order_changed');
    assert.equal(bad.body.must_come_before, 'resize');
    const good = await fetch(`${h.srv.url}/v1/process`, { method: 'POST', headers: { authorization: `Bearer ${h.a.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { asset_id: asset }, operations: 'crop:left=0,top=0,width=80,height=40/resize:width=30' }) });
    assert.equal(good.status, 200);
    assert.equal(await widthOf(Buffer.from(await good.arrayBuffer())), 30);
  });
});
