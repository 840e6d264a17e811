/**
 * Issue 9, item 7: every production path that produces an output is metered — sync `/v1/process`,
 * `Prefer: respond-async`, jobs (preview included), transform URLs — with the export's media type,
 * its pixels and the processing time, and signed downloads count their bytes. The monthly export
 * quota then refuses the next export with 429 ERR_QUOTA_EXCEEDED on each path, while another app
 * keeps working. Driven through a real `obscura serve` (API and workers in one process, as shipped).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../support/db.js';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { api } from '../support/server.js';
import { markedPng } from '../support/media.js';
import { buildTransformUrl } from '../../sdk/src/transform.js';

describe('usage metering on every production path, and the export quota', () => {
  const dataDir = tempDir();
  let server: ServerProcess;
  let key: string;
  let appId: string;
  let asset: string;
  let tkey: { id: string; secret: string };

  before(async () => {
    const env = { OBSCURA_DATA_DIR: dataDir, OBSCURA_JOB_POLL_INTERVAL_MS: '500' };
    const init = await runCli(['init', '--json'], env);
    assert.equal(init.code, 0, init.stderr);
    const out = JSON.parse(init.stdout);
    key = out.secret_key.key;
    appId = out.app.id;
    server = await startServe(env);
    const up = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: new Uint8Array(await markedPng('meter', 120, 90)) });
    assert.equal(up.status, 201);
    asset = ((await up.json()) as { id: string }).id;
    const tk = await api(server.url, 'POST', `/v1/apps/${appId}/transform-keys`, { key });
    assert.equal(tk.status, 201, JSON.stringify(tk.body));
    tkey = { id: tk.body.id, secret: tk.body.secret };
  });
  after(async () => {
    await server?.stop('SIGKILL');
  });

  const usage = async () => (await api(server.url, 'GET', '/v1/usage', { key })).body.apps.find((a: { app_id: string }) => a.app_id === appId);
  async function waitJob(id: string): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const j = await api(server.url, 'GET', `/v1/jobs/${id}`, { key });
      if (j.body.status === 'succeeded') return;
      assert.notEqual(j.body.status, 'failed', JSON.stringify(j.body));
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.fail('job did not finish');
  }
  const transformUrl = (ops: string) => buildTransformUrl({ baseUrl: server.url, key: tkey, operations: ops, assetId: asset });

  test('sync, async, preview job and transform URL each count one export with its pixels and processing time; downloads count bytes', async () => {
    const sync = await fetch(`${server.url}/v1/process`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { asset_id: asset }, operations: 'resize:width=60/format:webp' }) });
    assert.equal(sync.status, 200);
    const asyncJob = await api(server.url, 'POST', '/v1/process', { key, body: { input: { asset_id: asset }, operations: 'resize:width=40/format:png' }, headers: { prefer: 'respond-async' } });
    assert.equal(asyncJob.status, 202, JSON.stringify(asyncJob.body));
    const preview = await api(server.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: asset }, operations: 'resize:width=30/format:jpeg', preview: true } });
    assert.equal(preview.status, 202, JSON.stringify(preview.body));
    await waitJob(asyncJob.body.id);
    await waitJob(preview.body.id);
    const t = await fetch(transformUrl('resize:width=50/format:webp'));
    assert.equal(t.status, 200);
    const signed = await api(server.url, 'POST', `/v1/assets/${asset}/url`, { key });
    const dl = await fetch(signed.body.url);
    const dlBytes = (await dl.arrayBuffer()).byteLength;

    let u: any;
    for (let i = 0; i < 40; i++) {
      u = await usage();
      if (u.exports.total >= 4) break;
      await new Promise((r) => setTimeout(r, 250)); // the workers' meter flushes every 2 s
    }
    assert.equal(u.exports.total, 4, JSON.stringify(u));
    assert.equal(u.exports.by_type['image/webp'], 2);
    assert.equal(u.exports.by_type['image/png'], 1);
    assert.equal(u.exports.by_type['image/jpeg'], 1);
    assert.equal(u.pixels.by_type['image/png'], 40 * 30);
    assert.ok(u.pixels.total > 40 * 30);
    assert.ok(u.processing_seconds > 0, 'processing time is recorded');
    assert.ok(u.bytes_out >= dlBytes, 'the signed download counted its bytes');
  });

  test('with the export quota used up, the next export is refused with 429 ERR_QUOTA_EXCEEDED on every path; another app still works', async () => {
    const used = (await usage()).exports.total as number;
    const patch = await api(server.url, 'PATCH', `/v1/apps/${appId}`, { key, body: { settings: { quota_exports_per_month: used + 1 } } });
    assert.equal(patch.status, 200, JSON.stringify(patch.body));
    const body = JSON.stringify({ input: { asset_id: asset }, operations: 'resize:width=20/format:webp' });
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const last = await fetch(`${server.url}/v1/process`, { method: 'POST', headers, body });
    assert.equal(last.status, 200, 'the last export within the quota works');
    let refused: Response | undefined;
    for (let i = 0; i < 20; i++) {
      refused = await fetch(`${server.url}/v1/process`, { method: 'POST', headers, body });
      if (refused.status === 429) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(refused!.status, 429);
    const problem = (await refused!.json()) as { code: string };
    assert.equal(problem.code, 'ERR_QUOTA_EXCEEDED');
    const job = await api(server.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: asset }, operations: 'resize:width=21' } });
    assert.equal(job.status, 429);
    assert.equal(job.body.code, 'ERR_QUOTA_EXCEEDED');
    const t = await fetch(transformUrl('resize:width=22'));
    assert.equal(t.status, 429);
    assert.equal(((await t.json()) as { code: string }).code, 'ERR_QUOTA_EXCEEDED');
    // Account management stays reachable, and another app of the org is not affected.
    const other = await api(server.url, 'POST', '/v1/apps', { key, body: { name: 'other' } });
    assert.equal(other.status, 201);
    const otherKey = await api(server.url, 'POST', `/v1/apps/${other.body.id}/keys`, { key, body: { kind: 'secret', name: 'other' } });
    const up = await fetch(`${server.url}/v1/process`, { method: 'POST', headers: { authorization: `Bearer ${otherKey.body.secret}`, 'content-type': 'image/png' }, body: new Uint8Array(await markedPng('other', 40, 30)) });
    assert.equal(up.status, 200, await up.clone().text());
  });
});
