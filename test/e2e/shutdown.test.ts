/**
 * Issue 9, item 19: graceful shutdown of a real `obscura serve`. On SIGTERM new requests — `/readyz`
 * included — get 503 at once while a download already running completes; a job in flight is not lost;
 * the process exits 0 and leaves no data-dir lock behind.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/db.js';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { api } from '../support/server.js';
import { markedPng, pngOfSize } from '../support/media.js';

describe('graceful shutdown', () => {
  const dataDir = tempDir();
  let server: ServerProcess | undefined;
  after(async () => {
    await server?.stop('SIGKILL');
  });

  test('SIGTERM: /readyz and new requests get 503 at once, a running download completes, a running job is not lost, exit 0 and no lock left', async () => {
    const env = { OBSCURA_DATA_DIR: dataDir, OBSCURA_JOB_POLL_INTERVAL_MS: '500' };
    const init = await runCli(['init', '--json'], env);
    assert.equal(init.code, 0, init.stderr);
    const key = JSON.parse(init.stdout).secret_key.key as string;
    // A slow job: the test-only delay keeps it running when the signal arrives.
    server = await startServe({ ...env, OBSCURA_TEST_JOB_DELAY_MS: '3000' });
    const big = await pngOfSize(8 * 1024 * 1024, 'drain');
    const up = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: new Uint8Array(big) });
    assert.equal(up.status, 201);
    const assetId = ((await up.json()) as { id: string }).id;
    const signed = await api(server.url, 'POST', `/v1/assets/${assetId}/url`, { key });
    const small = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: new Uint8Array(await markedPng('job', 40, 30)) });
    const job = await api(server.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: ((await small.json()) as { id: string }).id }, operations: 'resize:width=20' } });
    assert.equal(job.status, 202);
    for (let i = 0; i < 50 && (await api(server.url, 'GET', `/v1/jobs/${job.body.id}`, { key })).body.status !== 'running'; i++) await new Promise((r) => setTimeout(r, 100));

    // Start a download and stop reading it: it is in flight when the signal comes.
    let received = 0;
    const download = new Promise<{ status: number; bytes: number }>((resolve, reject) => {
      http.get(signed.body.url, (res) => {
        res.on('data', (c: Buffer) => (received += c.length));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes: received }));
        res.on('error', reject);
        res.pause();
        setTimeout(() => res.resume(), 2500);
      }).on('error', reject);
    });
    await new Promise((r) => setTimeout(r, 300));
    const exited = new Promise<number | null>((resolve) => server!.child.once('exit', (code) => resolve(code)));
    server.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));

    const ready = await fetch(`${server.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as { code: string }).code, 'ERR_UNAVAILABLE');
    assert.ok(Number(ready.headers.get('retry-after')) > 0);
    const fresh = await fetch(`${server.url}/v1/apps`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(fresh.status, 503, 'new work is refused while draining');

    const d = await download;
    assert.equal(d.status, 200);
    assert.equal(d.bytes, big.length, 'the running download completed in full');
    assert.equal(await exited, 0);
    assert.ok(!existsSync(join(dataDir, 'obscura.lock')), 'the data-dir lock is released');

    // The job was handed back (or finished before the exit): the next server completes it.
    server = await startServe(env);
    let status = '';
    for (let i = 0; i < 100 && status !== 'succeeded'; i++) {
      status = (await api(server.url, 'GET', `/v1/jobs/${job.body.id}`, { key })).body.status;
      if (status !== 'succeeded') await new Promise((r) => setTimeout(r, 300));
    }
    assert.equal(status, 'succeeded');
  });
});
