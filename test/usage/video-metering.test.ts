/**
 * Issue 11, item 7: video exports are metered where they are produced — a video job, a sync preview and
 * a poster frame — with their media type, frame pixels × frames, output duration and processing time,
 * through a real `obscura serve` (API and workers in one process, as shipped). The export quota counts
 * them like image exports: the next video job is refused with 429 ERR_QUOTA_EXCEEDED.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../support/db.js';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { api } from '../support/server.js';
import { clip } from '../support/video.js';

describe('video metering and the export quota (obscura serve)', () => {
  const dataDir = tempDir();
  let server: ServerProcess;
  let key: string;
  let appId: string;
  let asset: string;

  before(async () => {
    const env = { OBSCURA_DATA_DIR: dataDir, OBSCURA_JOB_POLL_INTERVAL_MS: '500' };
    const init = await runCli(['init', '--json'], env);
    assert.equal(init.code, 0, init.stderr);
    const out = JSON.parse(init.stdout);
    key = out.secret_key.key;
    appId = out.app.id;
    server = await startServe(env);
    const up = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: new Uint8Array(await clip({ seconds: 2, fps: 25 })) });
    assert.equal(up.status, 201, await up.clone().text());
    asset = ((await up.json()) as { id: string }).id;
  });
  after(async () => {
    await server?.stop('SIGKILL');
  });

  const usage = async () => (await api(server.url, 'GET', '/v1/usage', { key })).body.apps.find((a: { app_id: string }) => a.app_id === appId);

  test('a video job, a preview and a poster frame each count one export with pixels, duration and processing time', async () => {
    const job = await api(server.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: asset }, operations: 'scale:height=60/format:mp4,preset=ultrafast' } });
    assert.equal(job.status, 202, JSON.stringify(job.body));
    const preview = await fetch(`${server.url}/v1/process`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { asset_id: asset }, operations: 'format:webm,preset=ultrafast', preview: true }) });
    assert.equal(preview.status, 200, await preview.clone().text());
    assert.equal(preview.headers.get('content-type'), 'video/webm');
    const poster = await fetch(`${server.url}/v1/process`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { asset_id: asset }, operations: 'poster:at=1' }) });
    assert.equal(poster.status, 200);
    for (let i = 0; i < 100; i++) {
      const j = await api(server.url, 'GET', `/v1/jobs/${job.body.id}`, { key });
      if (j.body.status === 'succeeded') break;
      assert.notEqual(j.body.status, 'failed', JSON.stringify(j.body));
      await new Promise((r) => setTimeout(r, 200));
    }
    let u: any;
    for (let i = 0; i < 40; i++) {
      u = await usage();
      if (u.exports.total >= 3) break;
      await new Promise((r) => setTimeout(r, 250)); // the meter flushes every 2 s
    }
    assert.equal(u.exports.total, 3, JSON.stringify(u));
    assert.equal(u.exports.by_type['video/mp4'], 1);
    assert.equal(u.exports.by_type['video/webm'], 1);
    assert.equal(u.exports.by_type['image/jpeg'], 1);
    // The job: 80×60 for 2 s at 25 fps; the preview: 160×120 for its 2 s (the clip is shorter than 5 s).
    assert.equal(u.pixels.by_type['video/mp4'], 80 * 60 * 50);
    assert.equal(u.pixels.by_type['video/webm'], 160 * 120 * 50);
    assert.equal(u.pixels.by_type['image/jpeg'], 160 * 120);
    assert.ok(Math.abs(u.video_seconds.by_type['video/mp4'] - 2) < 0.05, JSON.stringify(u.video_seconds));
    assert.ok(Math.abs(u.video_seconds.by_type['video/webm'] - 2) < 0.05, JSON.stringify(u.video_seconds));
    assert.equal(u.video_seconds.by_type['image/jpeg'], undefined);
    assert.ok(u.processing_seconds > 0);
  });

  test('with the export quota used up, the next video job is refused with 429 ERR_QUOTA_EXCEEDED; another app still works', async () => {
    const used = (await usage()).exports.total as number;
    const patch = await api(server.url, 'PATCH', `/v1/apps/${appId}`, { key, body: { settings: { quota_exports_per_month: used } } });
    assert.equal(patch.status, 200, JSON.stringify(patch.body));
    // The quota reads the app's settings and counters through short caches: the refusal comes within seconds.
    let refused = await api(server.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: asset }, operations: 'scale:height=60' } });
    for (let i = 0; i < 20 && refused.status !== 429; i++) {
      await new Promise((r) => setTimeout(r, 250));
      refused = await api(server.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: asset }, operations: 'scale:height=60' } });
    }
    assert.equal(refused.status, 429, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'ERR_QUOTA_EXCEEDED');
    // The legitimate twin: another app of the org has its own quota, and its video job is accepted.
    const other = await api(server.url, 'POST', '/v1/apps', { key, body: { name: 'other' } });
    assert.equal(other.status, 201, JSON.stringify(other.body));
    const otherKey = await api(server.url, 'POST', `/v1/apps/${other.body.id}/keys`, { key, body: { kind: 'secret', name: 'other' } });
    const up = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${otherKey.body.secret}` }, body: new Uint8Array(await clip({ seconds: 1 })) });
    assert.equal(up.status, 201);
    const accepted = await api(server.url, 'POST', '/v1/jobs', { key: otherKey.body.secret, body: { input: { asset_id: ((await up.json()) as { id: string }).id }, operations: 'scale:height=60/format:mp4,preset=ultrafast' } });
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
  });
});
