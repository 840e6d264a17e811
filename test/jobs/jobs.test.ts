import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { sql } from 'kysely';
import { DB_KINDS, superQuery } from '../support/db.js';
import { quadrants } from '../fixtures/make.js';
import { blobKeyFor } from '../../src/assets/assets.js';
import { attemptAssetId } from '../../src/processing/processing.js';
import { QUEUES } from '../../src/jobs/boss.js';
import { api, startHarness, startTestWorkers, testRuntime, upload, waitFor, waitForJob, type Harness } from './support.js';

async function jobRow(h: Harness, id: string): Promise<Record<string, unknown>> {
  return (await superQuery(h.t, 'select * from jobs where id = $1', [id]))[0]!;
}

async function outputsOf(h: Harness, jobId: string): Promise<string[]> {
  const job = await jobRow(h, jobId);
  const ids = Array.from({ length: Number(job.attempts) + 1 }, (_, i) => attemptAssetId(String(job.output_seed), i + 1));
  const rows = await superQuery(h.t, 'select id from assets where id = any($1::text[]) and deleted_at is null', [ids]);
  return rows.map((r) => String(r.id));
}

async function blobExists(h: Harness, orgId: string, assetId: string): Promise<boolean> {
  try {
    const s = await h.srv.store.get(blobKeyFor(orgId, assetId));
    s.destroy();
    return true;
  } catch {
    return false;
  }
}

for (const kind of DB_KINDS) {
  describe(`jobs on ${kind}`, () => {
    let h: Harness;
    let w: Awaited<ReturnType<typeof startTestWorkers>>;
    let png: Buffer;
    let asset: string;
    before(async () => {
      h = await startHarness(kind, { targets: 1 });
      png = await quadrants(200, 100, 'png');
      asset = await upload(h.srv, h.a.key, png);
      w = await startTestWorkers(h);
    });
    after(async () => {
      await w?.stop();
      await h?.close();
    });

    test('a job runs on pg-boss and stores one encrypted output expiring after 24 h', async () => {
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'resize:width=100/format:webp' } });
      assert.equal(r.status, 202);
      assert.equal(r.body.status, 'queued');
      const job = await waitForJob(h.srv, h.a.key, r.body.id);
      assert.equal(job.status, 'succeeded', JSON.stringify(job));
      assert.equal(job.attempts, 1);
      const out = await api(h.srv.url, 'GET', `/v1/assets/${job.output.asset_id}`, { key: h.a.key });
      assert.equal(out.status, 200);
      assert.equal(out.body.kind, 'output');
      assert.equal(out.body.content_type, 'image/webp');
      assert.equal(out.body.width, 100);
      const ttl = new Date(out.body.expires_at).getTime() - new Date(job.finished_at).getTime();
      assert.ok(Math.abs(ttl - 86_400_000) < 60_000, `ttl ${ttl}`);
      assert.deepEqual(await outputsOf(h, job.id), [job.output.asset_id]);
    });

    test('Idempotency-Key: same key and body give the same job; another body is 409; keys are per org', async () => {
      const body = { input: { asset_id: asset }, operations: 'resize:width=30/format:png' };
      const first = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body, headers: { 'idempotency-key': 'order-42' } });
      assert.equal(first.status, 202);
      const again = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body, headers: { 'idempotency-key': 'order-42' } });
      assert.equal(again.status, 202);
      assert.equal(again.body.id, first.body.id);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      const other = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { ...body, operations: 'resize:width=31/format:png' }, headers: { 'idempotency-key': 'order-42' } });
      assert.equal(other.status, 409);
      assert.equal(other.body.code, 'ERR_IDEMPOTENCY_MISMATCH');
      const count = await superQuery(h.t, 'select count(*)::int as n from jobs where org_id = $1 and operations like $2', [h.a.orgId, 'resize:width=3%']);
      assert.equal(Number(count[0]!.n), 1, 'the mismatch created nothing');
      // Org B may use the same key for its own request.
      const assetB = await upload(h.srv, h.b.key, png);
      const b = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.b.key, body: { input: { asset_id: assetB }, operations: 'format:png' }, headers: { 'idempotency-key': 'order-42' } });
      assert.equal(b.status, 202);
      assert.notEqual(b.body.id, first.body.id);
      assert.equal((await waitForJob(h.srv, h.a.key, first.body.id)).status, 'succeeded');
    });

    test('concurrent requests with one Idempotency-Key create exactly one job', async () => {
      const body = { input: { asset_id: asset }, operations: 'resize:width=33/format:png' };
      const all = await Promise.all(Array.from({ length: 5 }, () => api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body, headers: { 'idempotency-key': 'race-1' } })));
      assert.deepEqual(all.map((r) => r.status), [202, 202, 202, 202, 202]);
      assert.equal(new Set(all.map((r) => r.body.id)).size, 1);
      const rows = await superQuery(h.t, `select count(*)::int as n from jobs where org_id = $1 and operations = 'resize:width=33/format:type=png'`, [h.a.orgId]);
      assert.equal(Number(rows[0]!.n), 1);
    });

    test('preview mode gives a downscaled output with a visible mark', async () => {
      const big = await upload(h.srv, h.a.key, await quadrants(1600, 1200, 'png'));
      const plain = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: big }, operations: 'format:png' } });
      const preview = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: big }, operations: 'format:png', preview: true } });
      const pj = await waitForJob(h.srv, h.a.key, preview.body.id);
      const nj = await waitForJob(h.srv, h.a.key, plain.body.id);
      assert.equal(pj.status, 'succeeded');
      assert.equal(pj.preview, true);
      const pa = await api(h.srv.url, 'GET', `/v1/assets/${pj.output.asset_id}`, { key: h.a.key });
      const na = await api(h.srv.url, 'GET', `/v1/assets/${nj.output.asset_id}`, { key: h.a.key });
      assert.ok(Math.max(pa.body.width, pa.body.height) <= 512, `${pa.body.width}x${pa.body.height}`);
      assert.equal(na.body.width, 1600);
      // The mark is visible: the centre pixel of the red/green/blue/yellow quadrants is no longer one of them.
      const url = await api(h.srv.url, 'POST', `/v1/assets/${pj.output.asset_id}/url`, { key: h.a.key, body: {} });
      const bytes = Buffer.from(await (await fetch(url.body.url)).arrayBuffer());
      const stats = await sharp(bytes).stats();
      const reference = await sharp(png).resize(512).png().toBuffer();
      const refStats = await sharp(reference).stats();
      assert.ok(stats.channels.some((c, i) => Math.abs(c.mean - refStats.channels[i]!.mean) > 3), 'preview differs from a plain downscale');
    });

    test('outputs are also PUT to the customer presigned URL, which is never shown again', async () => {
      const target = h.targets[0]!;
      target.handler = (_req, res) => {
        res.statusCode = 200;
        res.end();
      };
      const putUrl = `${target.origin}/bucket/out.webp?X-Amz-Signature=secret-sig`;
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'format:webp', output: { put_url: putUrl } } });
      assert.equal(r.status, 202);
      assert.equal(r.body.output.put_url, '[redacted]');
      const job = await waitForJob(h.srv, h.a.key, r.body.id);
      assert.equal(job.status, 'succeeded');
      assert.equal(job.output.put_status, 200);
      const put = target.requests.find((q) => q.method === 'PUT');
      assert.ok(put);
      assert.equal(put.url, '/bucket/out.webp?X-Amz-Signature=secret-sig');
      assert.equal(put.headers['content-type'], 'image/webp');
      assert.equal((await sharp(put.body).metadata()).format, 'webp');
      // Stored only wrapped: the signature does not appear in the jobs table in clear.
      const row = await jobRow(h, job.id);
      assert.ok(!String(row.put_url_wrapped).includes('secret-sig'));
      assert.ok(!JSON.stringify(job).includes('secret-sig'));
    });

    test('a PUT target on a private address is refused when the job is created', async () => {
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'format:png', output: { put_url: 'https://192.168.0.10/upload' } } });
      assert.equal(r.status, 400);
      assert.equal(r.body.code, 'ERR_REMOTE_FORBIDDEN');
    });

    test('a remote input of a job is fetched at creation; its headers are forwarded and stored nowhere', async () => {
      const target = h.targets[0]!;
      target.handler = (req, res) => {
        res.statusCode = req.headers['x-storage-token'] === 'tmp-cred-123' ? 200 : 403;
        res.end(res.statusCode === 200 ? png : undefined);
      };
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { url: `${target.origin}/in.png?sig=zzz`, headers: { 'X-Storage-Token': 'tmp-cred-123' } }, operations: 'format:png' } });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      assert.equal(r.body.input.source, 'url');
      assert.equal(r.body.input.url, `${target.origin}/in.png?[REDACTED]`);
      const job = await waitForJob(h.srv, h.a.key, r.body.id);
      assert.equal(job.status, 'succeeded');
      const dump = JSON.stringify(await superQuery(h.t, 'select * from jobs where id = $1', [job.id]));
      assert.ok(!dump.includes('tmp-cred-123') && !dump.includes('sig=zzz'));
    });

    test('a failing operation ends the job as failed with its error code, without retries', async () => {
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: [{ op: 'watermark', assetId: 'ast_0000000000000000000000' }] } });
      const job = await waitForJob(h.srv, h.a.key, r.body.id);
      assert.equal(job.status, 'failed');
      assert.equal(job.error.code, 'ERR_NOT_FOUND');
      assert.equal(job.attempts, 1);
      assert.equal(job.output.asset_id, null);
    });

    test('invalid operations are refused at creation (400 naming the operation) and create no job', async () => {
      const before = await superQuery(h.t, 'select count(*)::int as n from jobs');
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'blur:sigma=9999' } });
      assert.equal(r.status, 400);
      assert.equal(r.body.operation, 'blur');
      assert.deepEqual(await superQuery(h.t, 'select count(*)::int as n from jobs'), before);
    });

    test('running a job again (at-least-once delivery) never makes a second output', async () => {
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'format:png' } });
      const job = await waitForJob(h.srv, h.a.key, r.body.id);
      // pg-boss redelivers the same job (e.g. after a lost completion): twice, concurrently.
      await Promise.all([w.runtime.jobs.run({ orgId: h.a.orgId, id: job.id }, { lastAttempt: false }), w.runtime.jobs.run({ orgId: h.a.orgId, id: job.id }, { lastAttempt: false })]);
      const after = await api(h.srv.url, 'GET', `/v1/jobs/${job.id}`, { key: h.a.key });
      assert.equal(after.body.output.asset_id, job.output.asset_id);
      assert.deepEqual(await outputsOf(h, job.id), [job.output.asset_id]);
    });

    test('a zombie attempt that finishes after another succeeded leaves no visible output and no blob', async () => {
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'format:jpeg' } });
      const job = await waitForJob(h.srv, h.a.key, r.body.id);
      // An older attempt still running (its worker was presumed dead): reopen the job and run it slowly.
      await superQuery(h.t, `update jobs set status = 'running', output_asset_id = null where id = $1`, [job.id]);
      const slow = testRuntime(h, { testDelayMs: 1500 });
      try {
        const zombie = slow.jobs.run({ orgId: h.a.orgId, id: job.id }, { lastAttempt: false });
        await waitFor(async () => Number((await jobRow(h, job.id)).attempts) === 2, 10_000, 'zombie start');
        // Meanwhile the job completes elsewhere with its first output.
        await superQuery(h.t, `update jobs set status = 'succeeded', output_asset_id = $2 where id = $1`, [job.id, job.output.asset_id]);
        await zombie;
      } finally {
        await slow.close();
      }
      const row = await jobRow(h, job.id);
      assert.equal(row.output_asset_id, job.output.asset_id);
      assert.deepEqual(await outputsOf(h, job.id), [job.output.asset_id]);
      const zombieId = attemptAssetId(String(row.output_seed), 2);
      assert.equal(await blobExists(h, h.a.orgId, zombieId), false, 'the losing attempt removed its blob');
      assert.equal(await blobExists(h, h.a.orgId, job.output.asset_id), true);
    });

    test('a later attempt removes the orphan blob of an attempt that died between put and commit', async () => {
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'format:gif' } });
      const done = await waitForJob(h.srv, h.a.key, r.body.id);
      // Fabricate the crash: attempt 1's blob exists without a row, and the job is back to running.
      const row = await jobRow(h, done.id);
      const orphan = attemptAssetId(String(row.output_seed), 1);
      await superQuery(h.t, `delete from assets where id = $1`, [orphan]);
      assert.equal(await blobExists(h, h.a.orgId, orphan), true);
      await superQuery(h.t, `update jobs set status = 'running', output_asset_id = null where id = $1`, [done.id]);
      await w.runtime.jobs.run({ orgId: h.a.orgId, id: done.id }, { lastAttempt: false });
      const after = await jobRow(h, done.id);
      assert.equal(after.status, 'succeeded');
      assert.equal(Number(after.attempts), 2);
      assert.equal(await blobExists(h, h.a.orgId, orphan), false);
      assert.deepEqual(await outputsOf(h, done.id), [String(after.output_asset_id)]);
    });

    test('the reconciler enqueues a job whose queue entry was lost between commit and send', async () => {
      await w.stop();
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'resize:width=12/format:png' } });
      const svc = testRuntime(h);
      try {
        // Lose the queue entry, as if the API had crashed right after committing the job row.
        const boss = await svc.boss();
        await boss.deleteJob(QUEUES.process, String((await jobRow(h, r.body.id)).queue_id));
        w = await startTestWorkers(h);
        await new Promise((res) => setTimeout(res, 1500));
        assert.equal((await jobRow(h, r.body.id)).status, 'queued', 'nothing runs it without the reconciler');
        const n = await svc.jobs.reconcile(0);
        assert.ok(n.jobs >= 1);
        assert.equal((await waitForJob(h.srv, h.a.key, r.body.id)).status, 'succeeded');
        // Reconciling again is harmless: the fixed queue id makes the re-send a no-op.
        await svc.jobs.reconcile(0);
        assert.deepEqual((await outputsOf(h, r.body.id)).length, 1);
      } finally {
        await svc.close();
      }
    });

    test("cross-tenant: org B gets 404 for org A's job and cannot use A's asset as input; A reads it", async () => {
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'format:png' } });
      assert.equal((await api(h.srv.url, 'GET', `/v1/jobs/${r.body.id}`, { key: h.b.key })).status, 404);
      assert.equal((await api(h.srv.url, 'GET', `/v1/jobs/${r.body.id}`, { key: h.a.key })).status, 200);
      const steal = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.b.key, body: { input: { asset_id: asset }, operations: 'format:png' } });
      assert.equal(steal.status, 404);
      assert.equal(steal.body.code, 'ERR_NOT_FOUND');
      // RLS is the second wall: a tenant transaction of B sees no row of A even without a filter.
      const seen = await h.t.db.withTenant(h.b.orgId, (trx) => trx.selectFrom('jobs').select('id').execute());
      assert.ok(!seen.some((j) => j.id === r.body.id));
    });

    test('a job that outlives its timeout on every attempt fails with ERR_JOB_TIMEOUT via the dead-letter queue', async () => {
      // A separate server and worker with a 1 s timeout, no retries and a 3 s test delay.
      const h2 = await startHarness(kind, { env: { OBSCURA_JOB_TIMEOUT_SECONDS: '1', OBSCURA_JOB_RETRY_LIMIT: '0' } });
      const w2 = await startTestWorkers(h2, { testDelayMs: 3000 });
      try {
        const a2 = await upload(h2.srv, h2.a.key, png);
        const r = await api(h2.srv.url, 'POST', '/v1/jobs', { key: h2.a.key, body: { input: { asset_id: a2 }, operations: 'format:png' } });
        const job = await waitForJob(h2.srv, h2.a.key, r.body.id, 30_000);
        assert.equal(job.status, 'failed');
        assert.equal(job.error.code, 'ERR_JOB_TIMEOUT');
        assert.equal(job.output.asset_id, null);
      } finally {
        await w2.stop();
        await h2.close();
      }
    });

    if (kind === 'pglite') {
      test('pg-boss never runs a statement inside a tenant transaction on the single PGlite connection', async () => {
        // Regression for the measured failure mode: pg-boss polling on the raw PGlite instance landed in
        // open `SET LOCAL ROLE obscura_app` transactions, which then failed.
        const results = await Promise.allSettled(
          Array.from({ length: 40 }, async () =>
            h.t.db.withTenant(h.a.orgId, async (trx) => {
              await sql`select pg_sleep(0.01)`.execute(trx);
              return trx.selectFrom('jobs').select('id').limit(1).execute();
            }),
          ),
        );
        assert.deepEqual(results.filter((r) => r.status === 'rejected'), []);
        const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations: 'format:png' } });
        assert.equal((await waitForJob(h.srv, h.a.key, r.body.id)).status, 'succeeded');
      });
    }
  });
}

