import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DB_KINDS, superQuery } from '../support/db.js';
import { mintKey } from '../support/server.js';
import { quadrants } from '../fixtures/make.js';
import { verifyWebhook, WebhookVerificationError } from '../../sdk/src/webhook-signature.js';
import { deliveryRetryPolicy } from '../../src/jobs/webhooks.js';
import { createApp } from '../../src/tenants/index.js';
import { createKey } from '../../src/auth/keys.js';
import { api, startHarness, startTestWorkers, upload, waitFor, waitForJob, type Harness, type Recorded } from './support.js';

function verifyCode(body: Buffer | string, header: string, secret: string | string[], now?: number): string {
  try {
    verifyWebhook(body, header, secret, now === undefined ? {} : { now });
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof WebhookVerificationError);
    return err.code;
  }
}

for (const kind of DB_KINDS) {
  describe(`webhooks on ${kind}`, () => {
    let h: Harness;
    let w: Awaited<ReturnType<typeof startTestWorkers>>;
    let asset: string;
    before(async () => {
      h = await startHarness(kind, { targets: 2 });
      asset = await upload(h.srv, h.a.key, await quadrants(64, 32, 'png'));
      w = await startTestWorkers(h);
    });
    after(async () => {
      await w?.stop();
      await h?.close();
    });

    /** Registers the endpoint of target `i` (path `/hook`) for org A; returns id and secret. */
    async function register(i: number, events?: string[]): Promise<{ id: string; secret: string }> {
      const r = await api(h.srv.url, 'POST', '/v1/webhooks', { key: h.a.key, body: { url: `${h.targets[i]!.origin}/hook`, ...(events ? { events } : {}) } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return { id: r.body.id, secret: r.body.secret };
    }

    async function runJob(operations: unknown): Promise<any> {
      const r = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: asset }, operations } });
      assert.equal(r.status, 202);
      return waitForJob(h.srv, h.a.key, r.body.id);
    }

    const hooks = (i: number): Recorded[] => h.targets[i]!.requests.filter((r) => r.url === '/hook');

    test('creating an endpoint shows a whsec_ secret once; reads never show it', async () => {
      const { id, secret } = await register(0);
      assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/);
      const read = await api(h.srv.url, 'GET', `/v1/webhooks/${id}`, { key: h.a.key });
      assert.equal(read.status, 200);
      assert.equal(read.body.secret, undefined);
      const list = await api(h.srv.url, 'GET', '/v1/webhooks', { key: h.a.key });
      assert.ok(!JSON.stringify(list.body).includes(secret));
      const dump = JSON.stringify(await superQuery(h.t, 'select * from webhook_endpoints where id = $1', [id]));
      assert.ok(!dump.includes(secret), 'stored only wrapped');
      assert.equal((await api(h.srv.url, 'DELETE', `/v1/webhooks/${id}`, { key: h.a.key })).status, 204);
    });

    test('endpoint URLs are checked like remote inputs: private, metadata and unlisted addresses are refused', async () => {
      for (const url of ['https://10.1.2.3/hook', 'https://169.254.169.254/hook', 'http://127.0.0.1:9/hook', 'https://[fd00::1]/hook', 'https://user:pw@example.com/hook', 'ftp://example.com/hook']) {
        const r = await api(h.srv.url, 'POST', '/v1/webhooks', { key: h.a.key, body: { url } });
        assert.equal(r.status, 400, url);
        assert.equal(r.body.code, 'ERR_REMOTE_FORBIDDEN', url);
      }
      const count = await superQuery(h.t, 'select count(*)::int as n from webhook_endpoints where org_id = $1', [h.a.orgId]);
      assert.equal(Number(count[0]!.n), 0);
    });

    test('job.completed is delivered signed; the helper verifies it and rejects a changed body, timestamp or secret', async () => {
      h.targets[0]!.handler = (_req, res) => res.end('ok');
      const { id, secret } = await register(0);
      try {
        const job = await runJob('format:png');
        const hook = await waitFor(async () => hooks(0).find((r) => JSON.parse(r.body.toString()).data.job.id === job.id), 15_000, 'delivery');
        const header = String(hook.headers['obscura-signature']);
        assert.match(header, /^t=\d+,v1=[0-9a-f]{64}$/);
        assert.equal(hook.headers['content-type'], 'application/json');
        assert.equal(hook.headers['obscura-event'], 'job.completed');
        const event = JSON.parse(hook.body.toString());
        assert.equal(event.type, 'job.completed');
        assert.equal(event.data.job.status, 'succeeded');
        assert.equal(event.data.job.output.asset_id, job.output.asset_id);
        assert.equal(verifyCode(hook.body, header, secret), 'ok');
        const tampered = Buffer.from(hook.body.toString().replace('succeeded', 'failed'));
        assert.equal(verifyCode(tampered, header, secret), 'ERR_WEBHOOK_SIGNATURE');
        const t = Number(/t=(\d+)/.exec(header)![1]);
        assert.equal(verifyCode(hook.body, header.replace(`t=${t}`, `t=${t + 1}`), secret), 'ERR_WEBHOOK_SIGNATURE');
        assert.equal(verifyCode(hook.body, header, 'whsec_' + 'A'.repeat(43)), 'ERR_WEBHOOK_SIGNATURE');
        assert.equal(verifyCode(hook.body, header, secret, (t + 301) * 1000), 'ERR_WEBHOOK_TIMESTAMP');
      } finally {
        await api(h.srv.url, 'DELETE', `/v1/webhooks/${id}`, { key: h.a.key });
      }
    });

    test('job.failed is delivered for a failed job, only to endpoints subscribed to it', async () => {
      h.targets[0]!.handler = (_req, res) => res.end();
      h.targets[1]!.handler = (_req, res) => res.end();
      const failedOnly = await register(0, ['job.failed']);
      const completedOnly = await register(1, ['job.completed']);
      try {
        const job = await runJob([{ op: 'watermark', assetId: 'ast_1111111111111111111111' }]);
        assert.equal(job.status, 'failed');
        const hook = await waitFor(async () => hooks(0).find((r) => JSON.parse(r.body.toString()).data.job.id === job.id), 15_000, 'failed delivery');
        const event = JSON.parse(hook.body.toString());
        assert.equal(event.type, 'job.failed');
        assert.equal(event.data.job.error.code, 'ERR_NOT_FOUND');
        assert.equal(verifyCode(hook.body, String(hook.headers['obscura-signature']), failedOnly.secret), 'ok');
        await new Promise((r) => setTimeout(r, 500));
        assert.ok(!hooks(1).some((r) => JSON.parse(r.body.toString()).data.job.id === job.id), 'not sent to a job.completed-only endpoint');
      } finally {
        await api(h.srv.url, 'DELETE', `/v1/webhooks/${failedOnly.id}`, { key: h.a.key });
        await api(h.srv.url, 'DELETE', `/v1/webhooks/${completedOnly.id}`, { key: h.a.key });
      }
    });

    test('a receiver that is down gets retries: 500, 500, then 200 is delivered and the log shows 3 attempts', async () => {
      let calls = 0;
      h.targets[1]!.handler = (_req, res) => {
        calls += 1;
        res.statusCode = calls <= 2 ? 500 : 200;
        // A body the log must never repeat.
        res.end('internal detail: db password hunter2');
      };
      const { id } = await register(1, ['job.completed']);
      try {
        await runJob('format:webp');
        const log = await waitFor(
          async () => {
            const r = await api(h.srv.url, 'GET', `/v1/webhooks/${id}/deliveries`, { key: h.a.key });
            return r.body.data?.[0]?.status === 'delivered' ? r.body : null;
          },
          30_000,
          'delivered after retries',
        );
        const d = log.data[0];
        assert.deepEqual(d.attempts.map((a: any) => a.attempt), [1, 2, 3]);
        assert.deepEqual(d.attempts.map((a: any) => a.status_code), [500, 500, 200]);
        assert.deepEqual(d.attempts.map((a: any) => a.error), ['status', 'status', null]);
        for (const a of d.attempts) assert.ok(Number.isInteger(a.duration_ms) && a.duration_ms >= 0);
        assert.ok(new Date(d.attempts[2].at) > new Date(d.attempts[0].at));
        const text = JSON.stringify(log);
        assert.ok(!text.includes('hunter2') && !text.includes('whsec_'), 'no response body, no secret');
        // Every attempt carried the same event.
        const bodies = new Set(hooks(1).map((r) => r.body.toString()));
        assert.equal(bodies.size, 1);
      } finally {
        await api(h.srv.url, 'DELETE', `/v1/webhooks/${id}`, { key: h.a.key });
      }
    });

    test('during a secret rotation deliveries carry both signatures; each secret verifies', async () => {
      h.targets[0]!.handler = (_req, res) => res.end();
      const { id, secret: oldSecret } = await register(0, ['job.completed']);
      try {
        const rotated = await api(h.srv.url, 'POST', `/v1/webhooks/${id}/rotate-secret`, { key: h.a.key, body: { grace_seconds: 3600 } });
        assert.equal(rotated.status, 200);
        const newSecret = rotated.body.secret as string;
        assert.notEqual(newSecret, oldSecret);
        assert.ok(rotated.body.previous_secret_expires_at);
        const job = await runJob('format:jpeg');
        const hook = await waitFor(async () => hooks(0).find((r) => JSON.parse(r.body.toString()).data.job.id === job.id), 15_000, 'delivery');
        const header = String(hook.headers['obscura-signature']);
        assert.equal(header.match(/v1=/g)?.length, 2);
        assert.equal(verifyCode(hook.body, header, newSecret), 'ok');
        assert.equal(verifyCode(hook.body, header, oldSecret), 'ok');
        // Ending the grace period (rotate with 0) drops the old secrets at once.
        const again = await api(h.srv.url, 'POST', `/v1/webhooks/${id}/rotate-secret`, { key: h.a.key, body: { grace_seconds: 0 } });
        const job2 = await runJob('format:gif');
        const hook2 = await waitFor(async () => hooks(0).find((r) => JSON.parse(r.body.toString()).data.job.id === job2.id), 15_000, 'delivery 2');
        const header2 = String(hook2.headers['obscura-signature']);
        assert.equal(header2.match(/v1=/g)?.length, 1);
        assert.equal(verifyCode(hook2.body, header2, again.body.secret), 'ok');
        assert.equal(verifyCode(hook2.body, header2, newSecret), 'ERR_WEBHOOK_SIGNATURE');
      } finally {
        await api(h.srv.url, 'DELETE', `/v1/webhooks/${id}`, { key: h.a.key });
      }
    });

    test('a disabled endpoint receives nothing', async () => {
      const { id } = await register(0, ['job.completed']);
      try {
        const p = await api(h.srv.url, 'PATCH', `/v1/webhooks/${id}`, { key: h.a.key, body: { enabled: false } });
        assert.equal(p.body.enabled, false);
        const job = await runJob('format:tiff');
        await new Promise((r) => setTimeout(r, 800));
        assert.ok(!hooks(0).some((r) => JSON.parse(r.body.toString()).data.job.id === job.id));
      } finally {
        await api(h.srv.url, 'DELETE', `/v1/webhooks/${id}`, { key: h.a.key });
      }
    });

    test('"send test event" and "redeliver" go through the queue and the worker: signed, logged and audited; a redelivery repeats the event id and bytes; a pending delivery or a disabled endpoint is refused with 409', async () => {
      h.targets[0]!.handler = (_req, res) => res.end('ok');
      const { id, secret } = await register(0, ['job.failed']);
      try {
        const sent = await api(h.srv.url, 'POST', `/v1/webhooks/${id}/test`, { key: h.a.key });
        assert.equal(sent.status, 202, JSON.stringify(sent.body));
        assert.equal(sent.body.event_type, 'webhook.test');
        assert.equal(sent.body.status, 'pending');
        const hook = await waitFor(async () => hooks(0).find((r) => r.headers['obscura-delivery'] === sent.body.id), 15_000, 'test delivery');
        const event = JSON.parse(hook.body.toString());
        assert.equal(event.type, 'webhook.test');
        assert.equal(event.id, sent.body.event_id);
        assert.equal(event.data.webhook.id, id);
        assert.equal(verifyCode(hook.body, String(hook.headers['obscura-signature']), secret), 'ok');
        // The log shows it delivered (the worker records the attempt after the answer).
        const first = await waitFor(async () => {
          const r = await api(h.srv.url, 'GET', `/v1/webhooks/${id}/deliveries`, { key: h.a.key });
          return r.body.data.find((d: any) => d.id === sent.body.id && d.status === 'delivered');
        }, 15_000, 'delivered in the log');
        assert.equal(first.attempts[0].status_code, 200);

        const again = await api(h.srv.url, 'POST', `/v1/webhooks/${id}/deliveries/${first.id}/redeliver`, { key: h.a.key });
        assert.equal(again.status, 202, JSON.stringify(again.body));
        assert.notEqual(again.body.id, first.id);
        assert.equal(again.body.event_id, first.event_id);
        const repeat = await waitFor(async () => hooks(0).find((r) => r.headers['obscura-delivery'] === again.body.id), 15_000, 'redelivery');
        assert.equal(repeat.body.toString(), hook.body.toString(), 'the same event bytes');
        assert.equal(verifyCode(repeat.body, String(repeat.headers['obscura-signature']), secret), 'ok');

        const audit = await superQuery(h.t, `select action, target from audit_log where org_id = $1 and action in ('webhook.test', 'webhook.redeliver') order by id`, [h.a.orgId]);
        assert.deepEqual(audit.map((r) => [r.action, (r.target as any).delivery]), [['webhook.test', sent.body.id], ['webhook.redeliver', again.body.id]]);

        // Twins refused: a delivery that is still pending, an unknown delivery, a disabled endpoint.
        await superQuery(h.t, `update webhook_deliveries set status = 'pending' where id = $1`, [first.id]);
        const pending = await api(h.srv.url, 'POST', `/v1/webhooks/${id}/deliveries/${first.id}/redeliver`, { key: h.a.key });
        assert.equal(pending.status, 409);
        assert.equal(pending.body.code, 'ERR_CONFLICT');
        const unknown = await api(h.srv.url, 'POST', `/v1/webhooks/${id}/deliveries/whd_1111111111111111111111/redeliver`, { key: h.a.key });
        assert.equal(unknown.status, 404);
        assert.equal(unknown.body.code, 'ERR_NOT_FOUND');
        await api(h.srv.url, 'PATCH', `/v1/webhooks/${id}`, { key: h.a.key, body: { enabled: false } });
        const disabled = await api(h.srv.url, 'POST', `/v1/webhooks/${id}/test`, { key: h.a.key });
        assert.equal(disabled.status, 409);
        assert.equal(disabled.body.code, 'ERR_CONFLICT');
      } finally {
        await api(h.srv.url, 'DELETE', `/v1/webhooks/${id}`, { key: h.a.key });
      }
    });

    test("cross-tenant: org B (and another app of org A) get 404 on A's endpoint everywhere; A succeeds", async () => {
      const { id } = await register(0);
      try {
        const otherApp = await h.t.db.withTenant(h.a.orgId, async (trx) => {
          const app = await createApp(trx, h.a.orgId, { name: 'other' }, { actor: { type: 'cli', id: 'test' } });
          return (await createKey(trx, h.a.orgId, app.id, { kind: 'secret', name: 'x' }, { actor: { type: 'cli', id: 'test' }, granter: null })).secret;
        });
        const calls: Array<[string, string, unknown]> = [
          ['GET', `/v1/webhooks/${id}`, undefined],
          ['PATCH', `/v1/webhooks/${id}`, { enabled: false }],
          ['POST', `/v1/webhooks/${id}/rotate-secret`, {}],
          ['GET', `/v1/webhooks/${id}/deliveries`, undefined],
          ['POST', `/v1/webhooks/${id}/test`, undefined],
          ['POST', `/v1/webhooks/${id}/deliveries/whd_1111111111111111111111/redeliver`, undefined],
          ['DELETE', `/v1/webhooks/${id}`, undefined],
        ];
        for (const key of [h.b.key, otherApp]) {
          for (const [method, path, body] of calls) {
            const r = await api(h.srv.url, method, path, { key, body });
            assert.equal(r.status, 404, `${method} ${path}`);
            assert.equal(r.body.code, 'ERR_NOT_FOUND');
          }
          const list = await api(h.srv.url, 'GET', '/v1/webhooks', { key });
          assert.ok(!list.body.data.some((e: any) => e.id === id));
        }
        // Nothing changed for A.
        const mine = await api(h.srv.url, 'GET', `/v1/webhooks/${id}`, { key: h.a.key });
        assert.equal(mine.status, 200);
        assert.equal(mine.body.enabled, true);
        assert.equal(mine.body.previous_secret_expires_at, null);
      } finally {
        assert.equal((await api(h.srv.url, 'DELETE', `/v1/webhooks/${id}`, { key: h.a.key })).status, 204);
      }
    });

    test('needs the webhooks:manage scope', async () => {
      const k = await mintKey(h.t.db, h.a, { kind: 'restricted', name: 'jobs', scopes: ['jobs:write', 'jobs:read'] });
      const r = await api(h.srv.url, 'GET', '/v1/webhooks', { key: k.secret });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'ERR_SCOPE_MISSING');
    });
  });
}

describe('webhook retry schedule', () => {
  test('backs off exponentially up to an hour and keeps retrying for about 24 hours', () => {
    const p = deliveryRetryPolicy(10);
    assert.equal(p.retryBackoff, true);
    assert.equal(p.retryDelay, 10);
    assert.equal(p.retryDelayMax, 3600);
    let expected = 0;
    for (let n = 0; n < p.retryLimit; n++) expected += 0.75 * Math.min(3600, 10 * 2 ** n);
    assert.ok(expected >= 24 * 3600 && expected < 26 * 3600, `${expected / 3600} h`);
  });
});
