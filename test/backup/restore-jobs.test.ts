/**
 * A job running when a backup is taken comes back runnable after a restore (issue 14): pg-boss's own
 * schema (the queue) is not in the dump, so the restore puts the job back to `queued`, which the
 * reconciler re-enqueues. Through the real `obscura` command: `serve` (a test-only delay keeps the
 * job running), `backup create`, `backup restore`, and `serve` on the restored data dir.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { tempDir } from '../support/db.js';
import { api } from '../support/server.js';
import { markedPng } from '../support/media.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('restoring a backup taken while a job ran', () => {
  const root = tempDir('obscura-restore-jobs-');
  const env = { OBSCURA_DATA_DIR: join(root, 'data'), OBSCURA_BACKUP_KEY: randomBytes(32).toString('hex') };
  let server: ServerProcess | undefined;

  after(async () => {
    await server?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('a job that was running at the snapshot is queued again by the restore (reported), not left running forever', async () => {
    const init = await runCli(['init', '--json'], env, { timeoutMs: 300_000 });
    assert.equal(init.code, 0, init.stderr);
    const key = JSON.parse(init.stdout).secret_key.key as string;
    // TEST ONLY: every job attempt sleeps, so the job is running while the backup is taken.
    server = await startServe({ ...env, OBSCURA_TEST_JOB_DELAY_MS: '600000', OBSCURA_JOB_POLL_INTERVAL_MS: '500' }, 120_000);
    const up = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' }, body: new Uint8Array(await markedPng('restore-jobs', 32, 24)) });
    assert.equal(up.status, 201);
    const asset = ((await up.json()) as { id: string }).id;
    const job = await api(server.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: asset }, operations: 'format:webp' } });
    assert.equal(job.status, 202);
    const deadline = Date.now() + 60_000;
    while ((await api(server.url, 'GET', `/v1/jobs/${job.body.id}`, { key })).body.status !== 'running') {
      assert.ok(Date.now() < deadline, 'the job starts');
      await sleep(100);
    }
    const made = await runCli(['backup', 'create', '--to', join(root, 'archive'), '--json'], env, { timeoutMs: 300_000 });
    assert.equal(made.code, 0, made.stderr);
    // The source is done with (its job sleeps for minutes): stop it at once rather than wait out the drain.
    await server.stop('SIGKILL');
    server = undefined;

    const target = join(root, 'restored');
    const r = await runCli(['backup', 'restore', join(root, 'archive'), '--to-data-dir', target, '--json'], env, { timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).jobs_requeued, 1);
    server = await startServe({ OBSCURA_DATA_DIR: target }, 120_000);
    const restored = await api(server.url, 'GET', `/v1/jobs/${job.body.id}`, { key });
    // Queued, i.e. runnable (the source's state was `running`, which nothing would ever finish): the
    // reconciler's first pass (one monitor interval after start) re-enqueues queued jobs.
    assert.equal(restored.body.status, 'queued', JSON.stringify(restored.body));
  });
});
