#!/usr/bin/env node
// A tiny backend that uses the Obscura SDK with a secret key (which never leaves this process):
//
//   POST /images                 body = an image (≤ 25 MB): uploads it (tus, resumable), makes a 400 px
//                                WebP (stored, expires in 24 h) and answers with a signed, expiring URL
//   GET  /images/{asset id}/url  a fresh signed URL for an image this backend produced
//   GET  /images/{asset id}/thumb  302 to a signed transform URL (CDN-cacheable), when TRANSFORM_KEY_* are set
//   POST /webhooks/obscura       verifies the Obscura-Signature of a delivery, then logs the event
//
// Run (after `npm run build`):
//   OBSCURA_URL=http://127.0.0.1:8080 OBSCURA_API_KEY=obs_sk_… node examples/node-backend/server.mjs
// Optional: PORT (default 3001), WEBHOOK_SECRET (whsec_…), TRANSFORM_KEY_ID + TRANSFORM_KEY_SECRET.
//
// In your own project: `import { Obscura, constructWebhookEvent, buildTransformUrl } from '@obscura/sdk/node'`.
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Obscura, ObscuraError, constructWebhookEvent, WebhookVerificationError, buildTransformUrl } from '../../dist/sdk/src/node.js';

const MAX_BODY = 25 * 1024 * 1024;
const ASSET_ID = /^ast_[0-9A-Za-z]{22}$/;

async function readBody(req, limit) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Starts the backend. Returns `{ url, close }`.
 * @param {{ apiUrl: string, secretKey: string, port?: number, webhookSecret?: string, transformKey?: { id: string, secret: string }, publicApiUrl?: string }} opts
 */
export async function startBackend(opts) {
  const obscura = new Obscura({ baseUrl: opts.apiUrl, apiKey: opts.secretKey });
  // Outputs this backend made: only those get URLs (in a real app: a table keyed by your user).
  const produced = new Set();

  const send = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.end(JSON.stringify(body));
  };
  const failure = (res, err) => {
    if (err?.status === 413) return send(res, 413, { error: 'too large' });
    // The stable code tells the caller what went wrong; the request id lets you find it in Obscura's logs.
    if (err instanceof ObscuraError) return send(res, err.status >= 400 && err.status < 500 ? 422 : 502, { error: err.code, request_id: err.requestId ?? null });
    console.error(err);
    return send(res, 500, { error: 'internal error' });
  };

  async function createImage(req, res) {
    const body = await readBody(req, MAX_BODY);
    if (body.length === 0) return send(res, 400, { error: 'send the image as the request body' });
    // Resumable upload: a network blip mid-upload continues from the server's offset.
    const { assetId } = await obscura.uploads.upload(body, { filename: 'upload' });
    const output = await obscura.processing.store({ input: { assetId }, operations: [{ op: 'resize', width: 400 }, { op: 'format', type: 'webp', quality: 80 }] });
    produced.add(output.id);
    const signed = await obscura.assets.signedUrl(output.id, { ttl_seconds: 3600 });
    return send(res, 201, { original: assetId, output: output.id, width: output.width, height: output.height, url: signed.url, expires_at: signed.expires_at });
  }

  async function webhook(req, res) {
    const raw = await readBody(req, 1024 * 1024);
    try {
      // Verify the raw bytes before parsing anything (timestamp within 300 s, constant-time MAC check).
      const event = constructWebhookEvent(raw, req.headers['obscura-signature'], opts.webhookSecret);
      console.log(`webhook ${event.type} ${JSON.stringify(event.data)}`);
      res.writeHead(204);
      return res.end();
    } catch (err) {
      if (err instanceof WebhookVerificationError) return send(res, 400, { error: 'invalid signature' });
      throw err;
    }
  }

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const m = /^\/images\/([^/]+)\/(url|thumb)$/.exec(url.pathname);
    try {
      if (req.method === 'POST' && url.pathname === '/images') return await createImage(req, res);
      if (req.method === 'POST' && url.pathname === '/webhooks/obscura' && opts.webhookSecret) return await webhook(req, res);
      if (req.method === 'GET' && m && ASSET_ID.test(m[1]) && produced.has(m[1])) {
        if (m[2] === 'url') {
          const signed = await obscura.assets.signedUrl(m[1], { ttl_seconds: 3600 });
          return send(res, 200, signed);
        }
        if (opts.transformKey) {
          const location = buildTransformUrl({ baseUrl: opts.publicApiUrl ?? opts.apiUrl, key: opts.transformKey, assetId: m[1], operations: 'resize:width=128/format:webp', expires: { ttlSeconds: 3600 } });
          res.writeHead(302, { location, 'cache-control': 'no-store' });
          return res.end();
        }
      }
      return send(res, 404, { error: 'not found' });
    } catch (err) {
      return failure(res, err);
    }
  });
  await new Promise((resolve) => server.listen(opts.port ?? 3001, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { OBSCURA_URL, OBSCURA_API_KEY, PORT, WEBHOOK_SECRET, TRANSFORM_KEY_ID, TRANSFORM_KEY_SECRET } = process.env;
  if (!OBSCURA_URL || !OBSCURA_API_KEY) {
    console.error('set OBSCURA_URL and OBSCURA_API_KEY (a secret key)');
    process.exit(2);
  }
  const backend = await startBackend({
    apiUrl: OBSCURA_URL,
    secretKey: OBSCURA_API_KEY,
    port: PORT ? Number(PORT) : 3001,
    webhookSecret: WEBHOOK_SECRET || undefined,
    transformKey: TRANSFORM_KEY_ID && TRANSFORM_KEY_SECRET ? { id: TRANSFORM_KEY_ID, secret: TRANSFORM_KEY_SECRET } : undefined,
  });
  console.log(`EXAMPLE_LISTENING ${backend.url}`);
}
