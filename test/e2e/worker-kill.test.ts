/**
 * A worker process (`obscura serve` with OBSCURA_ROLE=worker) is SIGKILLed in the middle of a job on
 * PostgreSQL. The job is not lost: after its timeout pg-boss hands it to a second worker process, and
 * it completes exactly once, with exactly one visible output (and no half-written one).
 *
 * The job is made slow with OBSCURA_TEST_JOB_DELAY_MS, a test-only setting (see src/jobs/worker.ts).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import sharp from 'sharp';
import { createEmptyDatabase } from '../support/db.js';
import { exited, runCli, startServe, startWorker, type ServerProcess } from '../support/cli.js';
import { api } from '../support/server.js';
import { attemptAssetId } from '../../src/processing/processing.js';

describe('job retry after SIGKILL of the worker (PostgreSQL, separate processes)', () => {
  const children: ChildProcess[] = [];
  let api1: ServerProcess | undefined;
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await api1?.stop('SIGTERM');
  });

  test('the killed job is retried by another worker and completes exactly once with one output', async () => {
    const { url, adminUrl, dataDir } = await createEmptyDatabase('postgres');
    const env: Record<string, string> = {
      DATABASE_URL: url!,
      OBSCURA_MASTER_KEY: randomBytes(32).toString('hex'),
      OBSCURA_DATA_DIR: dataDir,
      OBSCURA_JOB_TIMEOUT_SECONDS: '5',
      OBSCURA_JOB_MONITOR_INTERVAL_SECONDS: '1',
      OBSCURA_JOB_POLL_INTERVAL_MS: '500',
    };
    const init = await runCli(['init', '--json', '--org', 'Kill', '--email', 'owner@kill.test'], env);
    assert.equal(init.code, 0, init.stderr);
    const key = JSON.parse(init.stdout).secret_key.key as string;
    api1 = await startServe({ ...env, OBSCURA_ROLE: 'api' });

    const png = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#3366cc' } }).png().toBuffer();
    const up = await fetch(`${api1.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'image/png' }, body: new Uint8Array(png) });
    assert.equal(up.status, 201);
    const asset = ((await up.json()) as { id: string }).id;

    const first = await startWorker({ ...env, OBSCURA_TEST_JOB_DELAY_MS: '4000' });
    children.push(first.child);
    const created = await api(api1.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: asset }, operations: 'resize:width=150/format:webp' } });
    assert.equal(created.status, 202);
    const jobId = created.body.id as string;

    // Wait until the first worker holds the job, then kill it mid-job.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const j = await api(api1.url, 'GET', `/v1/jobs/${jobId}`, { key });
      if (j.body.status === 'running') break;
      assert.ok(Date.now() < deadline, `job never started: ${JSON.stringify(j.body)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    first.child.kill('SIGKILL');
    await exited(first.child);
    const mid = await api(api1.url, 'GET', `/v1/jobs/${jobId}`, { key });
    assert.equal(mid.body.status, 'running', 'nothing finished it');
    assert.equal(mid.body.output.asset_id, null);

    const second = await startWorker(env);
    children.push(second.child);
    let job: any;
    const until = Date.now() + 40_000;
    for (;;) {
      job = (await api(api1.url, 'GET', `/v1/jobs/${jobId}`, { key })).body;
      if (job.status === 'succeeded' || job.status === 'failed') break;
      assert.ok(Date.now() < until, `job did not finish: ${JSON.stringify(job)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(job.status, 'succeeded', JSON.stringify(job));
    assert.equal(job.attempts, 2, 'the killed attempt and the retry');

    // Exactly one visible output: the second attempt's; the first attempt never made one.
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      const row = (await c.query('select output_seed, output_asset_id from jobs where id = $1', [jobId])).rows[0];
      const candidates = [1, 2, 3].map((n) => attemptAssetId(row.output_seed, n));
      const outputs = (await c.query('select id from assets where id = any($1::text[])', [candidates])).rows.map((r) => r.id);
      assert.deepEqual(outputs, [row.output_asset_id]);
      assert.equal(row.output_asset_id, candidates[1]);
      const events = (await c.query(`select count(*)::int as n from audit_log where action = 'asset.create' and target->>'asset' = any($1::text[])`, [candidates])).rows[0].n;
      assert.equal(events, 1);
    } finally {
      await c.end();
    }
    const out = await api(api1.url, 'GET', `/v1/assets/${job.output.asset_id}`, { key });
    assert.equal(out.status, 200);
    assert.equal(out.body.width, 150);
    assert.equal(out.body.content_type, 'image/webp');

    second.child.kill('SIGTERM');
    await exited(second.child);
    assert.equal(second.child.exitCode, 0, second.output());
  });
});
