/**
 * Issue 9, item 4 (cost up front): a request over OBSCURA_PROCESS_MAX_COST is refused from the asset's
 * stored size before it takes a slot or reads a byte — even while every slot is busy it answers 422 at
 * once instead of waiting — on /v1/process and on transform URLs. Through the real server.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { quadrants } from '../fixtures/make.js';
import { api, startHarness, upload, type Harness } from '../jobs/support.js';
import { buildTransformUrl } from '../../sdk/src/transform.js';

const ABSURD = 'resize:width=8192,height=8192,fit=fill,enlarge=true/blur:40/format:avif';

describe('too much work is refused before the queue (issue 9, item 4)', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness('pglite', { targets: 1, env: { OBSCURA_PROCESS_CONCURRENCY: '1', OBSCURA_PROCESS_MAX_WAIT_MS: '20000' } });
  });
  after(async () => h?.close());

  test('while the only slot is busy, an over-cost request by asset id and by transform URL gets 422 ERR_TOO_EXPENSIVE at once; the affordable twin runs once the slot is free', async () => {
    const target = h.targets[0]!;
    const png = await quadrants(200, 100, 'png');
    const asset = await upload(h.srv, h.a.key, png);
    const appId = (await api(h.srv.url, 'GET', '/v1/whoami', { key: h.a.key })).body.app_id;
    const tk = await api(h.srv.url, 'POST', `/v1/apps/${appId}/transform-keys`, { key: h.a.key });
    assert.equal(tk.status, 201, JSON.stringify(tk.body));
    const key = { id: tk.body.id, secret: tk.body.secret };
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    target.handler = (_req, res) => void held.then(() => res.end(png));
    const slow = api(h.srv.url, 'POST', '/v1/process', { key: h.b.key, body: { input: { url: `${target.origin}/slow.png` }, operations: 'format:png' } });
    while (target.requests.length === 0) await new Promise((r) => setTimeout(r, 20));

    const t0 = Date.now();
    const r = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { asset_id: asset }, operations: ABSURD } });
    assert.equal(r.status, 422, JSON.stringify(r.body));
    assert.equal(r.body.code, 'ERR_TOO_EXPENSIVE');
    assert.equal(r.body.setting ?? r.body.details?.setting, 'OBSCURA_PROCESS_MAX_COST');
    const t = await fetch(buildTransformUrl({ baseUrl: h.srv.url, key, operations: ABSURD, assetId: asset }));
    assert.equal(t.status, 422);
    assert.equal(((await t.json()) as { code: string }).code, 'ERR_TOO_EXPENSIVE');
    assert.ok(Date.now() - t0 < 3000, `refused after ${Date.now() - t0} ms, without waiting for the busy slot`);

    release();
    assert.equal((await slow).status, 200);
    const twin = await api(h.srv.url, 'POST', '/v1/process', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'resize:width=100/format:avif' } });
    assert.equal(twin.status, 200, JSON.stringify(twin.body).slice(0, 300));
  });
});
