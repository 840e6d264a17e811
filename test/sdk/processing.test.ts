/**
 * The SDK's processing surface against a real server with in-process workers (PGlite): synchronous
 * processing, jobs with Idempotency-Key and `wait`, webhooks delivered to a 127.0.0.1 receiver and
 * verified with the SDK helper, and signed transform URLs built by the SDK and served by `/t/`.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { Obscura, ObscuraError } from '../../sdk/src/index.js';
import { buildTransformUrl, constructWebhookEvent, WEBHOOK_SIGNATURE_HEADER } from '../../sdk/src/node.js';
import { startHarness, startTestWorkers, waitFor, type Harness } from '../jobs/support.js';
import { quadrants } from '../fixtures/make.js';

async function rejects(p: Promise<unknown>, code: string, status?: number): Promise<ObscuraError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ObscuraError, `expected ObscuraError, got ${String(err)}`);
    assert.equal(err.code, code, err.detail);
    if (status !== undefined) assert.equal(err.status, status);
    return err;
  }
  assert.fail(`expected ${code}`);
}

describe('SDK processing, jobs, webhooks and transform URLs', () => {
  let h: Harness;
  let workers: Awaited<ReturnType<typeof startTestWorkers>>;
  let obscura: Obscura;
  let png: Buffer;
  let assetId: string;

  before(async () => {
    h = await startHarness('pglite', { targets: 1 });
    workers = await startTestWorkers(h);
    obscura = new Obscura({ baseUrl: h.srv.url, apiKey: h.a.key });
    png = await quadrants(200, 100);
    assetId = (await obscura.assets.upload(png)).id;
  });
  after(async () => {
    await workers.stop();
    await h.close();
  });

  test('process.run returns the output bytes for raw bytes and for an asset', async () => {
    const fromBytes = await obscura.processing.run({ input: { bytes: png }, operations: [{ op: 'resize', width: 50 }, 'format:webp'] });
    assert.equal(fromBytes.contentType, 'image/webp');
    const m1 = await sharp(fromBytes.data).metadata();
    assert.equal(m1.format, 'webp');
    assert.equal(m1.width, 50);
    const fromAsset = await obscura.processing.run({ input: { assetId }, operations: 'resize:width=40/format:png' });
    assert.equal((await sharp(fromAsset.data).metadata()).width, 40);
  });

  test('an invalid operation is a typed 400 naming the operation, before anything runs', async () => {
    const err = await rejects(obscura.processing.run({ input: { assetId }, operations: 'resize:width=-3' }), 'ERR_VALIDATION', 400);
    assert.equal(err.problem?.operation, 'resize');
    await rejects(obscura.processing.run({ input: {} as never, operations: 'resize:width=3' }), 'ERR_SDK_USAGE');
  });

  test('process.store keeps the output as an expiring asset', async () => {
    const out = await obscura.processing.store({ input: { assetId }, operations: 'resize:width=20/format:jpeg', output: { ttl_seconds: 3600 } });
    assert.equal(out.kind, 'output');
    assert.equal(out.width, 20);
    assert.equal(out.content_type, 'image/jpeg');
    assert.ok(out.expires_at);
  });

  test('a job created twice with the same Idempotency-Key is one job, and wait() follows it to its output', async () => {
    const key = `sdk-test-${Date.now()}`;
    const req = { input: { assetId }, operations: 'resize:width=30/format:webp' } as const;
    const j1 = await obscura.jobs.create(req, { idempotencyKey: key });
    const j2 = await obscura.jobs.create(req, { idempotencyKey: key });
    assert.equal(j2.id, j1.id);
    const polls: string[] = [];
    const done = await obscura.jobs.wait(j1.id, { intervalMs: 50, onPoll: (j) => polls.push(j.status) });
    assert.equal(done.status, 'succeeded');
    assert.ok(polls.length >= 1);
    const dl = await obscura.assets.download(done.output.asset_id!);
    assert.equal((await sharp(await dl.bytes()).metadata()).width, 30);
    const conflict = await rejects(obscura.jobs.create({ ...req, operations: 'resize:width=31' }, { idempotencyKey: key }), 'ERR_IDEMPOTENCY_MISMATCH', 409);
    assert.ok(conflict.requestId);
  });

  test('Prefer: respond-async turns a process request into a job; a failing job throws ERR_JOB_FAILED from wait()', async () => {
    const job = await obscura.processing.startAndWait({ input: { bytes: png }, operations: 'resize:width=25/format:png' }, { intervalMs: 50 });
    assert.equal(job.status, 'succeeded');
    assert.equal(job.input.source, 'upload');
    // A text file is accepted as bytes but cannot be decoded: the job fails with a code.
    const started = await obscura.processing.start({ input: { bytes: new TextEncoder().encode('not an image at all') }, operations: 'resize:width=10' }).catch((e: ObscuraError) => e);
    if (started instanceof ObscuraError) {
      // Refused up front (sniffed at creation) is equally a typed failure.
      assert.ok(['ERR_UNSUPPORTED_MEDIA_TYPE', 'ERR_UNPROCESSABLE'].includes(started.code));
      return;
    }
    const err = await rejects(obscura.jobs.wait(started.id, { intervalMs: 50 }), 'ERR_JOB_FAILED');
    assert.ok(err.problem?.job_error_code);
    const failed = await obscura.jobs.wait(started.id, { allowFailure: true });
    assert.equal(failed.status, 'failed');
  });

  test('jobs.wait polls with growing intervals, gives up with ERR_JOB_TIMEOUT and honours an abort signal', async () => {
    // A server whose job never finishes (a stand-in answering GET /v1/jobs/{id} with "running").
    const polls: number[] = [];
    const stuck = new Obscura({
      baseUrl: 'http://127.0.0.1:9',
      apiKey: h.a.key,
      fetch: async () => {
        polls.push(Date.now());
        return new Response(JSON.stringify({ id: 'job_0000000000000000000000', status: 'running', attempts: 1 }), { headers: { 'content-type': 'application/json' } });
      },
    });
    // 1 s of polling at 20 → 100 ms intervals is ~11 polls; at least 4 even when a loaded machine delays timers.
    await rejects(stuck.jobs.wait('job_0000000000000000000000', { timeoutMs: 1000, intervalMs: 20, maxIntervalMs: 100 }), 'ERR_JOB_TIMEOUT');
    assert.ok(polls.length >= 4 && polls.length < 40, `${polls.length} polls`);
    const gaps = polls.slice(1).map((t, i) => t - polls[i]!);
    // Compared with the configured first interval (20 ms), not with the first measured gap: on a busy
    // machine that one can itself be late (a CI run saw 97 ms), which says nothing about growth.
    assert.ok(Math.max(...gaps) >= 3 * 20, `intervals grow: ${gaps.join(', ')}`);
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 50);
    await rejects(stuck.jobs.wait('job_0000000000000000000000', { signal: ctl.signal, intervalMs: 1000 }), 'ERR_ABORTED');
  });

  test('webhooks: CRUD, a real delivery verified with the SDK helper, and secret rotation', async () => {
    const receiver = h.targets[0]!;
    receiver.requests.length = 0;
    receiver.handler = (_r, res) => res.end('ok');
    const created = await obscura.webhooks.create({ url: `${receiver.origin}/hooks`, events: ['job.completed'], description: 'sdk test' });
    assert.match(created.secret, /^whsec_/);
    assert.equal((await obscura.webhooks.get(created.id)).description, 'sdk test');
    assert.ok((await obscura.webhooks.list()).some((w) => w.id === created.id));
    assert.equal((await obscura.webhooks.update(created.id, { description: 'renamed' })).description, 'renamed');

    const job = await obscura.jobs.create({ input: { assetId }, operations: 'resize:width=16' });
    const delivery = await waitFor(async () => receiver.requests.find((r) => r.url === '/hooks'), 20_000, 'webhook delivery');
    const header = delivery.headers[WEBHOOK_SIGNATURE_HEADER.toLowerCase()];
    const event = constructWebhookEvent(delivery.body, header, created.secret);
    assert.equal(event.type, 'job.completed');
    assert.ok(JSON.stringify(event.data).includes(job.id));
    assert.throws(() => constructWebhookEvent(delivery.body, header, 'whsec_' + 'x'.repeat(43)));
    const deliveries = await waitFor(async () => {
      const d = await obscura.webhooks.deliveries(created.id);
      return d.some((x) => x.status === 'delivered') ? d : null;
    }, 10_000, 'delivery log');
    assert.equal(deliveries[0]!.attempts[0]!.status_code, 200);

    const rotated = await obscura.webhooks.rotateSecret(created.id, { grace_seconds: 60 });
    assert.notEqual(rotated.secret, created.secret);
    assert.ok(rotated.previous_secret_expires_at);
    await obscura.webhooks.delete(created.id);
    await rejects(obscura.webhooks.get(created.id), 'ERR_NOT_FOUND', 404);
  });

  test('a signed transform URL built by the SDK is served by /t/, and any edit to it is refused', async () => {
    const key = await obscura.transforms.createKey(h.a.appId);
    assert.ok((await obscura.transforms.listKeys(h.a.appId)).some((k) => k.id === key.id));
    const url = buildTransformUrl({ baseUrl: h.srv.url, key, assetId, operations: [{ op: 'resize', width: 64 }, { op: 'format', type: 'webp' }], expires: { ttlSeconds: 300 } });
    const res = await fetch(url);
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await sharp(Buffer.from(await res.arrayBuffer())).metadata()).width, 64);

    const tampered = await fetch(url.replace('width=64', 'width=65'));
    assert.equal(tampered.status, 403);
    assert.equal(((await tampered.json()) as { code: string }).code, 'ERR_SIGNATURE_INVALID');
    const expired = buildTransformUrl({ baseUrl: h.srv.url, key, assetId, operations: 'resize:width=64', expires: Math.floor(Date.now() / 1000) - 10 });
    assert.equal((await fetch(expired)).status, 410);

    const preset = await obscura.transforms.putPreset(h.a.appId, 'thumb', 'resize:width=32/format:png');
    assert.equal(preset.name, 'thumb');
    const viaPreset = await fetch(buildTransformUrl({ baseUrl: h.srv.url, key, assetId, operations: 'preset:thumb' }));
    assert.equal(viaPreset.status, 200);
    assert.equal((await sharp(Buffer.from(await viaPreset.arrayBuffer())).metadata()).width, 32);
    assert.ok((await obscura.transforms.listPresets(h.a.appId)).some((p) => p.name === 'thumb'));
    await obscura.transforms.deletePreset(h.a.appId, 'thumb');
    await obscura.transforms.deleteKey(h.a.appId, key.id);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((await fetch(url)).status, 403);
  });

  test('usage and audit are readable through the SDK', async () => {
    const usage = await obscura.usage.get();
    assert.match(usage.month, /^\d{4}-\d{2}$/);
    assert.ok(usage.apps.some((x) => x.app_id === h.a.appId && x.requests > 0));
    const page = await obscura.audit.list({ limit: 5 });
    assert.ok(page.data.length > 0);
    let n = 0;
    for await (const e of obscura.audit.all({ limit: 2 })) {
      assert.ok(e.hash);
      if (++n >= 5) break;
    }
    assert.equal(n, 5);
  });
});
