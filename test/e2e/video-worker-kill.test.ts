/**
 * Issue 11: a worker process (`obscura serve`, OBSCURA_ROLE=worker) is SIGKILLed while ffmpeg is
 * transcoding a video job, on PostgreSQL. Its ffmpeg is killed by the kernel with it (the death
 * signal runTool asks for); after the heartbeat bound pg-boss hands the job to a second worker, which
 * completes it exactly once with exactly one visible output, and sweeps the dead worker's run
 * directory from the temporary area when it starts.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { createEmptyDatabase } from '../support/db.js';
import { exited, runCli, startServe, startWorker, type ServerProcess } from '../support/cli.js';
import { api } from '../support/server.js';
import { clip, probe, videoStream } from '../support/video.js';
import { attemptAssetId } from '../../src/processing/processing.js';

/** ffmpeg processes whose parent is `pid` or that were re-parented after it died (argv names the temp dir). */
function ffmpegsWriting(tempDir: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      const state = readFileSync(`/proc/${d}/stat`, 'utf8').split(' ')[2];
      if (argv.some((a) => a.endsWith('ffmpeg')) && argv.some((a) => a.startsWith(tempDir)) && state !== 'Z') out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

describe('video job retry after SIGKILL of the worker mid-transcode (PostgreSQL, separate processes)', () => {
  const children: ChildProcess[] = [];
  let api1: ServerProcess | undefined;
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await api1?.stop('SIGTERM');
  });

  test('the killed transcode stops, is retried by another worker and completes exactly once with one output', async () => {
    const { url, adminUrl, dataDir } = await createEmptyDatabase('postgres');
    const tempDir = join(dataDir, 'video-temp');
    const env: Record<string, string> = {
      DATABASE_URL: url!,
      OBSCURA_MASTER_KEY: randomBytes(32).toString('hex'),
      OBSCURA_DATA_DIR: dataDir,
      OBSCURA_VIDEO_TEMP_DIR: tempDir,
      OBSCURA_JOB_TIMEOUT_SECONDS: '5',
      OBSCURA_JOB_MONITOR_INTERVAL_SECONDS: '1',
      OBSCURA_JOB_POLL_INTERVAL_MS: '500',
    };
    const init = await runCli(['init', '--json', '--org', 'VideoKill', '--email', 'owner@videokill.test'], env);
    assert.equal(init.code, 0, init.stderr);
    const key = JSON.parse(init.stdout).secret_key.key as string;
    api1 = await startServe({ ...env, OBSCURA_ROLE: 'api' });

    const up = await fetch(`${api1.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: new Uint8Array(await clip({ width: 320, height: 240, seconds: 6, fps: 25 })) });
    assert.equal(up.status, 201, await up.clone().text());
    const asset = ((await up.json()) as { id: string }).id;

    const first = await startWorker(env);
    children.push(first.child);
    // Slow enough to be killed mid-transcode (nlmeans on every frame), short enough to finish on retry.
    const created = await api(api1.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: asset }, operations: 'denoise:nlmeans,strength=3/scale:height=120/format:mp4,preset=ultrafast' } });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const jobId = created.body.id as string;

    const deadline = Date.now() + 30_000;
    for (;;) {
      const j = await api(api1.url, 'GET', `/v1/jobs/${jobId}`, { key });
      if (j.body.status === 'running' && j.body.progress !== null && ffmpegsWriting(tempDir).length > 0) break;
      assert.ok(j.body.status === 'queued' || j.body.status === 'running', JSON.stringify(j.body));
      assert.ok(Date.now() < deadline, `the transcode never started: ${JSON.stringify(j.body)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    first.child.kill('SIGKILL');
    await exited(first.child);
    // The worker's ffmpeg dies with it (setpriv --pdeathsig: the kernel kills it when its parent dies).
    const orphanDeadline = Date.now() + 10_000;
    while (ffmpegsWriting(tempDir).length > 0) {
      assert.ok(Date.now() < orphanDeadline, 'the orphaned ffmpeg kept running');
      await new Promise((r) => setTimeout(r, 100));
    }
    const mid = await api(api1.url, 'GET', `/v1/jobs/${jobId}`, { key });
    assert.equal(mid.body.status, 'running', 'nothing finished it');
    assert.equal(mid.body.output.asset_id, null);
    const leftover = existsSync(tempDir) ? readdirSync(tempDir) : [];

    const second = await startWorker(env);
    children.push(second.child);
    // The second worker sweeps the dead worker's run directory when it starts.
    for (const name of leftover) assert.ok(!existsSync(join(tempDir, name)), `${name} was not swept`);
    let job: any;
    const until = Date.now() + 90_000;
    for (;;) {
      job = (await api(api1.url, 'GET', `/v1/jobs/${jobId}`, { key })).body;
      if (job.status === 'succeeded' || job.status === 'failed') break;
      assert.ok(Date.now() < until, `job did not finish: ${JSON.stringify(job)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(job.status, 'succeeded', JSON.stringify(job));
    assert.equal(job.attempts, 2, 'the killed attempt and the retry');
    assert.equal(job.progress.percent, 100);

    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      const row = (await c.query('select output_seed, output_asset_id from jobs where id = $1', [jobId])).rows[0];
      const candidates = [1, 2, 3].map((n) => attemptAssetId(row.output_seed, n));
      const outputs = (await c.query('select id from assets where id = any($1::text[])', [candidates])).rows.map((r) => r.id);
      assert.deepEqual(outputs, [row.output_asset_id]);
      assert.equal(row.output_asset_id, candidates[1]);
    } finally {
      await c.end();
    }
    const link = await api(api1.url, 'POST', `/v1/assets/${job.output.asset_id}/url`, { key });
    const bytes = Buffer.from(await (await fetch(link.body.url)).arrayBuffer());
    const v = videoStream(await probe(bytes));
    assert.equal(Number(v.height), 120);
    assert.equal(v.codec_name, 'h264');
    assert.deepEqual(readdirSync(tempDir), [], 'no run directory is left');

    second.child.kill('SIGTERM');
    await exited(second.child);
  });
});
