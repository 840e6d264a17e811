/**
 * The Node backend example (`examples/node-backend/server.mjs`) runs as its own process against a real
 * server: it uploads, processes and hands out signed URLs, redirects to signed transform URLs, and
 * accepts only correctly signed webhook deliveries. (The browser example has its own test in
 * test/e2e/browser.test.ts.) Needs `npm run build`: the example imports the built SDK.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import sharp from 'sharp';
import { openTestDb, type TestDb } from '../support/db.js';
import { startServer, createTenant, type TestServer, type Tenant } from '../support/server.js';
import { Obscura } from '../../sdk/src/index.js';
import { signWebhook } from '../../sdk/src/webhook-signature.js';
import { quadrants } from '../fixtures/make.js';
import { repoRoot, startExampleProcess, type ExampleProcess } from './support.js';

describe('Node backend example', () => {
  let t: TestDb;
  let s: TestServer;
  let a: Tenant;
  let backend: ExampleProcess;
  const webhookSecret = 'whsec_' + 'e'.repeat(43);

  before(async () => {
    t = await openTestDb('pglite');
    s = await startServer(t.db);
    a = await createTenant(t.db, 'BackendCo');
    const key = await new Obscura({ baseUrl: s.url, apiKey: a.key }).transforms.createKey(a.appId);
    backend = await startExampleProcess(join(repoRoot(import.meta.url), 'examples', 'node-backend', 'server.mjs'), {
      OBSCURA_URL: s.url,
      OBSCURA_API_KEY: a.key,
      PORT: '0',
      WEBHOOK_SECRET: webhookSecret,
      TRANSFORM_KEY_ID: key.id,
      TRANSFORM_KEY_SECRET: key.secret,
    });
  });
  after(async () => {
    await backend?.stop();
    await s.close();
    await t.close();
  });

  test('POST /images uploads, processes to a 400 px WebP and answers a working signed URL', async () => {
    const res = await fetch(`${backend.url}/images`, { method: 'POST', body: new Uint8Array(await quadrants(800, 400, 'jpeg')) });
    const body = (await res.json()) as { output: string; url: string; width: number; expires_at: string };
    assert.equal(res.status, 201, JSON.stringify(body) + backend.output());
    assert.equal(body.width, 400);
    const img = await fetch(body.url);
    assert.equal(img.status, 200);
    const meta = await sharp(Buffer.from(await img.arrayBuffer())).metadata();
    assert.equal(meta.format, 'webp');
    assert.equal(meta.width, 400);

    const again = await fetch(`${backend.url}/images/${body.output}/url`);
    assert.equal(again.status, 200);
    assert.match(((await again.json()) as { url: string }).url, /\/v1\/files\/ast_/);
    // Only images this backend produced get URLs.
    assert.equal((await fetch(`${backend.url}/images/ast_0000000000000000000000/url`)).status, 404);

    const thumb = await fetch(`${backend.url}/images/${body.output}/thumb`, { redirect: 'manual' });
    assert.equal(thumb.status, 302);
    const viaCdn = await fetch(thumb.headers.get('location')!);
    assert.equal(viaCdn.status, 200);
    assert.equal((await sharp(Buffer.from(await viaCdn.arrayBuffer())).metadata()).width, 128);
  });

  test('a non-image upload gets the stable error code, not a stack trace', async () => {
    const res = await fetch(`${backend.url}/images`, { method: 'POST', body: 'hello, not an image' });
    const body = (await res.json()) as { error: string };
    assert.equal(res.status, 422);
    assert.match(body.error, /^ERR_/);
  });

  test('the webhook endpoint accepts a signed delivery and refuses a forged one', async () => {
    const payload = JSON.stringify({ id: 'evt_1', type: 'job.completed', data: { job_id: 'job_1' } });
    const ts = Math.floor(Date.now() / 1000);
    const ok = await fetch(`${backend.url}/webhooks/obscura`, { method: 'POST', headers: { 'obscura-signature': signWebhook(payload, [webhookSecret], ts) }, body: payload });
    assert.equal(ok.status, 204);
    const forged = await fetch(`${backend.url}/webhooks/obscura`, { method: 'POST', headers: { 'obscura-signature': signWebhook(payload, ['whsec_' + 'f'.repeat(43)], ts) }, body: payload });
    assert.equal(forged.status, 400);
    const replayed = await fetch(`${backend.url}/webhooks/obscura`, { method: 'POST', headers: { 'obscura-signature': signWebhook(payload, [webhookSecret], ts - 3600) }, body: payload });
    assert.equal(replayed.status, 400);
    assert.match(backend.output(), /webhook job\.completed/);
  });
});
