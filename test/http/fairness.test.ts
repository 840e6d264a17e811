/**
 * Issue 9, item 4: one tenant cannot starve the others. A real server (2 processing slots, as on a
 * 2-core machine) on the embedded database; a heavy org fires many legal but heavy requests at once
 * while a light org keeps sending small ones. The light org's requests all succeed, in bounded time;
 * the heavy org gets its share and clear 503s beyond it. A request that would be too much work is
 * refused before any pixel is decoded, and a request that waited too long is told to retry.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { openTestDb, type TestDb } from '../support/db.js';
import { api, createTenant, startServer, type Tenant, type TestServer } from '../support/server.js';

async function noisyPng(width: number, height: number): Promise<Buffer> {
  // Noise, so encoders and filters do real work (a flat colour compresses to nothing).
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
  return sharp(raw, { raw: { width, height, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
}

const process = (s: TestServer, t: Tenant, body: unknown) => api(s.url, 'POST', '/v1/process', { key: t.key, body });

describe('processing is fair between orgs (issue 9, item 4)', () => {
  let t: TestDb;
  let s: TestServer;
  let heavy: Tenant;
  let light: Tenant;
  let bigAsset: string;
  let smallAsset: string;

  before(async () => {
    t = await openTestDb('pglite');
    s = await startServer(t.db, {
      env: {
        OBSCURA_PROCESS_CONCURRENCY: '2',
        OBSCURA_PROCESS_MAX_QUEUED: '8',
        OBSCURA_PROCESS_CONCURRENCY_PER_ORG: '1',
        OBSCURA_PROCESS_MAX_QUEUED_PER_ORG: '3',
        OBSCURA_PROCESS_MAX_WAIT_MS: '60000',
      },
    });
    heavy = await createTenant(t.db, 'Heavy');
    light = await createTenant(t.db, 'Light');
    const upBig = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${heavy.key}` }, body: new Uint8Array(await noisyPng(1600, 1600)) });
    assert.equal(upBig.status, 201);
    bigAsset = ((await upBig.json()) as { id: string }).id;
    const upSmall = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${light.key}` }, body: new Uint8Array(await noisyPng(64, 64)) });
    assert.equal(upSmall.status, 201);
    smallAsset = ((await upSmall.json()) as { id: string }).id;
  });

  after(async () => {
    await s.close();
    await t.close();
  });

  test("a heavy org's burst of legal heavy requests leaves the light org's requests succeeding, quickly", async () => {
    // Legal, heavy: a 1600² photo-like image as an 800² AVIF (well under the cost limit; ~2 s each here).
    const heavyBody = { input: { asset_id: bigAsset }, operations: 'resize:width=800/format:avif' };
    let heavyDone = 0;
    const burst = Array.from({ length: 10 }, () => process(s, heavy, heavyBody).finally(() => (heavyDone = Date.now())));
    await new Promise((r) => setTimeout(r, 100));
    const lightTimes: number[] = [];
    for (let i = 0; i < 8; i++) {
      const started = Date.now();
      const r = await process(s, light, { input: { asset_id: smallAsset }, operations: 'resize:width=32/format:png' });
      lightTimes.push(Date.now() - started);
      assert.equal(r.status, 200, `light request ${i}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    const lightDone = Date.now();
    const heavyResults = await Promise.all(burst);
    assert.ok(lightDone < heavyDone, 'the light requests ran while the heavy burst was still being processed');
    const ok = heavyResults.filter((r) => r.status === 200).length;
    const refused = heavyResults.filter((r) => r.status === 503);
    assert.ok(ok >= 1, 'the heavy org gets its share');
    assert.equal(ok + refused.length, 10, JSON.stringify(heavyResults.map((r) => r.status)));
    for (const r of refused) {
      assert.equal(r.body.code, 'ERR_UNAVAILABLE');
      assert.equal(r.body.details?.reason ?? r.body.reason, 'org_queue_full');
      assert.ok(r.headers.get('retry-after'));
    }
    // Each small request waits for at most one heavy task per slot it shares, never for the backlog.
    const worst = Math.max(...lightTimes);
    assert.ok(worst < 5000, `light request latencies: ${lightTimes.join(', ')} ms`);
    assert.ok(refused.length >= 1, 'beyond its share and waiting places the heavy org is told to retry');
  });

  test('a request that would be too much work is refused at once with 422 ERR_TOO_EXPENSIVE naming the limit; a reasonable one succeeds', async () => {
    const started = Date.now();
    const r = await process(s, light, { input: { asset_id: smallAsset }, operations: 'resize:width=8192,height=8192,fit=fill/blur:sigma=40/format:avif' });
    const ms = Date.now() - started;
    assert.equal(r.status, 422, JSON.stringify(r.body));
    assert.equal(r.body.code, 'ERR_TOO_EXPENSIVE');
    assert.match(r.body.detail, /OBSCURA_PROCESS_MAX_COST/);
    assert.ok(ms < 3000, `refused in ${ms} ms, before any pixel work`);
    const fine = await process(s, light, { input: { asset_id: smallAsset }, operations: 'resize:width=512/blur:sigma=2/format:avif' });
    assert.equal(fine.status, 200);
    assert.match(fine.headers.get('content-type') ?? '', /image\/avif/);
  });

  test('a request that waits longer than OBSCURA_PROCESS_MAX_WAIT_MS gets 503 wait_timeout with Retry-After', async () => {
    const s2 = await startServer(t.db, { env: { OBSCURA_PROCESS_CONCURRENCY: '1', OBSCURA_PROCESS_MAX_WAIT_MS: '200' }, deps: { store: s.store } });
    try {
      const slow = process(s2, heavy, { input: { asset_id: bigAsset }, operations: 'resize:width=1200/format:avif' });
      await new Promise((r) => setTimeout(r, 100));
      const waited = await process(s2, light, { input: { asset_id: smallAsset }, operations: 'resize:width=32/format:png' });
      assert.equal(waited.status, 503);
      assert.equal(waited.body.code, 'ERR_UNAVAILABLE');
      assert.equal(waited.body.details?.reason ?? waited.body.reason, 'wait_timeout');
      assert.ok(waited.headers.get('retry-after'));
      assert.equal((await slow).status, 200);
      // The legitimate twin: once the slot is free the same request succeeds.
      assert.equal((await process(s2, light, { input: { asset_id: smallAsset }, operations: 'resize:width=32/format:png' })).status, 200);
    } finally {
      await s2.close();
    }
  });
});
