#!/usr/bin/env node
// The browser example's tiny backend: serves the static page, tells it where the API is and which
// publishable key to use, and (holding the secret key, server-side only) turns an uploaded asset into
// a processed output and a signed, expiring URL the page can display.
//
// Run (after `npm run build`, which also builds the SDK bundle the page loads):
//   OBSCURA_URL=http://127.0.0.1:8080 OBSCURA_API_KEY=obs_sk_… PUBLISHABLE_KEY=obs_pk_… \
//     node examples/browser/server.mjs        # then open http://127.0.0.1:3000
//
// In your own project: `import { Obscura } from '@obscura/sdk'`.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Obscura, ObscuraError } from '../../dist/sdk/src/index.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const STATIC = new Map([
  ['/', ['index.html', 'text/html; charset=utf-8']],
  ['/index.html', ['index.html', 'text/html; charset=utf-8']],
  ['/app.js', ['app.js', 'text/javascript; charset=utf-8']],
  ['/obscura-sdk.js', ['obscura-sdk.js', 'text/javascript; charset=utf-8']],
  ['/style.css', ['style.css', 'text/css; charset=utf-8']],
]);
const ASSET_ID = /^ast_[0-9A-Za-z]{22}$/;
/** The backend only processes fresh uploads (a page asks right after uploading). */
const MAX_ASSET_AGE_MS = 10 * 60 * 1000;

/**
 * Starts the example backend. Returns `{ url, close }`.
 * @param {{ apiUrl: string, secretKey: string, publishableKey: string, port?: number, host?: string, chunkSize?: number, retryDelays?: number[], operations?: string }} opts
 */
export async function startExample(opts) {
  const obscura = new Obscura({ baseUrl: opts.apiUrl, apiKey: opts.secretKey });
  const apiOrigin = new URL(opts.apiUrl).origin;
  const operations = opts.operations ?? 'resize:width=400/format:webp';
  if (!existsSync(join(here, 'obscura-sdk.js'))) {
    throw new Error('examples/browser/obscura-sdk.js is missing: run `node sdk/scripts/bundle.mjs` first');
  }

  const security = {
    // The page may talk to itself and to the API, load images from the API's signed URLs, nothing else.
    'content-security-policy': `default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ${apiOrigin}; img-src 'self' ${apiOrigin} blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  };
  const json = (res, status, body) => {
    res.writeHead(status, { ...security, 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(body));
  };

  async function processed(req, res) {
    let raw = '';
    for await (const chunk of req) {
      raw += chunk;
      if (raw.length > 1024) return json(res, 413, { error: 'body too large' });
    }
    let assetId;
    try {
      assetId = JSON.parse(raw).asset_id;
    } catch {
      return json(res, 400, { error: 'send JSON' });
    }
    if (typeof assetId !== 'string' || !ASSET_ID.test(assetId)) return json(res, 400, { error: 'asset_id must be an asset id' });
    try {
      // A real app would check that this asset was uploaded by the signed-in user. Here: only recent uploads.
      const asset = await obscura.assets.get(assetId);
      if (asset.kind !== 'upload' || Date.now() - Date.parse(asset.created_at) > MAX_ASSET_AGE_MS) return json(res, 404, { error: 'no such upload' });
      const output = await obscura.processing.store({ input: { assetId }, operations });
      const signed = await obscura.assets.signedUrl(output.id, { ttl_seconds: 600 });
      return json(res, 200, { asset_id: output.id, url: signed.url, expires_at: signed.expires_at, width: output.width, height: output.height, content_type: output.content_type });
    } catch (err) {
      // Show the stable code, never the secret or a stack.
      if (err instanceof ObscuraError) return json(res, err.status >= 400 && err.status < 500 ? 422 : 502, { error: err.code });
      return json(res, 500, { error: 'internal error' });
    }
  }

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/config.json') {
      return json(res, 200, { apiUrl: opts.apiUrl, publishableKey: opts.publishableKey, chunkSize: opts.chunkSize ?? 5 * 1024 * 1024, retryDelays: opts.retryDelays });
    }
    if (req.method === 'POST' && url.pathname === '/api/processed') return processed(req, res);
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204, security);
      return res.end();
    }
    const file = req.method === 'GET' ? STATIC.get(url.pathname) : undefined;
    if (!file) {
      res.writeHead(404, security);
      return res.end();
    }
    const body = await readFile(join(here, file[0]));
    res.writeHead(200, { ...security, 'content-type': file[1] ?? 'application/octet-stream' });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(opts.port ?? 3000, opts.host ?? '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { OBSCURA_URL, OBSCURA_API_KEY, PUBLISHABLE_KEY, PORT, CHUNK_SIZE, RETRY_DELAYS } = process.env;
  if (!OBSCURA_URL || !OBSCURA_API_KEY || !PUBLISHABLE_KEY) {
    console.error('set OBSCURA_URL, OBSCURA_API_KEY (secret key) and PUBLISHABLE_KEY (publishable key pinned to this page\'s origin)');
    process.exit(2);
  }
  const ex = await startExample({ apiUrl: OBSCURA_URL, secretKey: OBSCURA_API_KEY, publishableKey: PUBLISHABLE_KEY, port: PORT ? Number(PORT) : 3000, chunkSize: CHUNK_SIZE ? Number(CHUNK_SIZE) : undefined,
    retryDelays: RETRY_DELAYS ? RETRY_DELAYS.split(',').map(Number) : undefined,
  });
  console.log(`EXAMPLE_LISTENING ${ex.url}`);
}
