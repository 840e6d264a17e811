/**
 * Issue 9, item 4 for jobs: one org's backlog cannot hold every worker (pg-boss group concurrency,
 * the org being the group), and a job over the cost ceiling fails with ERR_TOO_EXPENSIVE.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { quadrants } from '../fixtures/make.js';
import { api, startHarness, startTestWorkers, upload, waitForJob, type Harness } from './support.js';

describe('jobs fairness between orgs', () => {
  let h: Harness;
  let w: Awaited<ReturnType<typeof startTestWorkers>>;
  let assetA: string;
  let assetB: string;
  before(async () => {
    // Two workers, at most one job of an org at a time (OBSCURA_WORKER_ORG_CONCURRENCY, the default
    // for two workers, set explicitly here); each attempt takes at least 700 ms.
    h = await startHarness('pglite', { env: { OBSCURA_WORKER_CONCURRENCY: '2', OBSCURA_WORKER_ORG_CONCURRENCY: '1', OBSCURA_PROCESS_MAX_COST: '400' } });
    const png = await quadrants(200, 100, 'png');
    assetA = await upload(h.srv, h.a.key, png);
    assetB = await upload(h.srv, h.b.key, png);
    w = await startTestWorkers(h, { testDelayMs: 700 });
  });
  after(async () => {
    await w?.stop();
    await h?.close();
  });

  test("one org's backlog runs one job at a time while another org's job runs at once on the free worker", async () => {
    const heavy: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: assetA }, operations: `resize:width=${50 + i}/format:png` } });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      heavy.push(r.body.id);
    }
    const light = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.b.key, body: { input: { asset_id: assetB }, operations: 'resize:width=40/format:png' } });
    assert.equal(light.status, 202, JSON.stringify(light.body));
    const lightJob = await waitForJob(h.srv, h.b.key, light.body.id);
    const heavyJobs = [];
    for (const id of heavy) heavyJobs.push(await waitForJob(h.srv, h.a.key, id));
    assert.equal(lightJob.status, 'succeeded', JSON.stringify(lightJob));
    for (const j of heavyJobs) assert.equal(j.status, 'succeeded', JSON.stringify(j));
    const spans = heavyJobs.map((j) => [Date.parse(j.started_at), Date.parse(j.finished_at)] as const).sort((x, y) => x[0] - y[0]);
    // Org A never had two jobs running at once …
    for (let i = 1; i < spans.length; i++) assert.ok(spans[i]![0] >= spans[i - 1]![1] - 50, `org A jobs overlapped: ${JSON.stringify(spans)}`);
    // … and org B did not wait for A's backlog.
    const lastHeavy = Math.max(...spans.map((s) => s[1]));
    assert.ok(Date.parse(lightJob.finished_at) < lastHeavy, `light finished ${lightJob.finished_at}, heavy backlog ${new Date(lastHeavy).toISOString()}`);
  });

  test('a job over the cost ceiling fails with ERR_TOO_EXPENSIVE without taking the worker for long; the affordable twin succeeds', async () => {
    const heavy = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: assetA }, operations: 'resize:width=8192,enlarge=true/blur:100/format:avif' } });
    assert.equal(heavy.status, 202, JSON.stringify(heavy.body));
    const failed = await waitForJob(h.srv, h.a.key, heavy.body.id);
    assert.equal(failed.status, 'failed', JSON.stringify(failed));
    assert.equal(failed.error?.code, 'ERR_TOO_EXPENSIVE');
    assert.equal(failed.attempts, 1, 'a permanent refusal is not retried');
    const twin = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: assetA }, operations: 'resize:width=100/format:avif' } });
    assert.equal(twin.status, 202, JSON.stringify(twin.body));
    assert.equal((await waitForJob(h.srv, h.a.key, twin.body.id)).status, 'succeeded');
  });
});
