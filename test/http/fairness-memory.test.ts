/**
 * Issue 9, item 4 (memory budget): a request is reserved under OBSCURA_PROCESS_MEMORY_BUDGET_BYTES
 * for what it will produce, not only for what it reads. An enlargement of a tiny input to a large
 * AVIF holds tens of MiB of output frames; two of them must not run side by side when the budget
 * holds one, while small work still passes. Through the real server on 127.0.0.1.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openTestDb, type TestDb } from '../support/db.js';
import { api, createTenant, startServer, type Tenant, type TestServer } from '../support/server.js';
import { quadrants } from '../fixtures/make.js';

describe('the processing memory budget counts outputs (issue 9, item 4)', () => {
  let t: TestDb;
  let s: TestServer;
  let a: Tenant;
  let b: Tenant;
  let assetA: string;
  let assetB: string;

  before(async () => {
    t = await openTestDb('pglite');
    // Two slots, one per org; 64 MiB of estimated memory: one 2000² AVIF with a blur (~46 MiB of
    // output frames) fits, two do not.
    s = await startServer(t.db, {
      env: {
        OBSCURA_PROCESS_CONCURRENCY: '2',
        OBSCURA_PROCESS_CONCURRENCY_PER_ORG: '1',
        OBSCURA_PROCESS_MAX_WAIT_MS: '300',
        OBSCURA_PROCESS_MEMORY_BUDGET_BYTES: String(64 * 1024 * 1024),
      },
    });
    a = await createTenant(t.db, 'A');
    b = await createTenant(t.db, 'B');
    const up = async (tenant: Tenant) => {
      const r = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${tenant.key}` }, body: new Uint8Array(await quadrants(64, 64, 'png')) });
      assert.equal(r.status, 201);
      return ((await r.json()) as { id: string }).id;
    };
    assetA = await up(a);
    assetB = await up(b);
  });

  after(async () => {
    await s.close();
    await t.close();
  });

  const enlarge = 'resize:width=2000,height=2000,fit=fill,enlarge=true/blur:8/format:avif';

  test('a second large-output request waits for memory (503 wait_timeout) while small work of the other org passes; the twin succeeds afterwards', async () => {
    const first = api(s.url, 'POST', '/v1/process', { key: a.key, body: { input: { asset_id: assetA }, operations: enlarge } });
    await new Promise((r) => setTimeout(r, 100));
    // A free slot exists (B has none running), but not the memory: B's large output waits and times out.
    const second = await api(s.url, 'POST', '/v1/process', { key: b.key, body: { input: { asset_id: assetB }, operations: enlarge } });
    const small = api(s.url, 'POST', '/v1/process', { key: b.key, body: { input: { asset_id: assetB }, operations: 'resize:width=32/format:png' } });
    const firstResult = await first;
    assert.equal(firstResult.status, 200, JSON.stringify(firstResult.body).slice(0, 300));
    assert.equal(second.status, 503, JSON.stringify(second.body).slice(0, 300));
    assert.equal(second.body.code, 'ERR_UNAVAILABLE');
    assert.equal(second.body.details?.reason ?? second.body.reason, 'wait_timeout');
    assert.ok(second.headers.get('retry-after'));
    assert.equal((await small).status, 200, 'small work of the other org fits beside the large one');
    const twin = await api(s.url, 'POST', '/v1/process', { key: b.key, body: { input: { asset_id: assetB }, operations: enlarge } });
    assert.equal(twin.status, 200, JSON.stringify(twin.body).slice(0, 300));
  });
});
