#!/usr/bin/env node
// Serves the on-device example: the page, its script and the SDK (dist/browser/), cross-origin
// isolated (COOP same-origin + COEP require-corp: libvips' threads need SharedArrayBuffer), under a
// CSP that lets the page talk only to itself and to the Obscura API. There is no backend here: the
// publishable key and the licence keys are public by design (the key is pinned to this origin).
//
// Run (after `npm run build`):
//   OBSCURA_URL=http://127.0.0.1:8080 PUBLISHABLE_KEY=obs_pk_… LICENCE_KEYS="$(npx obscura licenses public-key)" \
//     node examples/device/server.mjs          # then open http://127.0.0.1:3001
// or with an offline licence instead of a key: LICENCE_FILE=obscura.license.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const sdk = fileURLToPath(new URL('../../dist/browser/', import.meta.url));
const JS = 'text/javascript; charset=utf-8';
const STATIC = new Map([
  ['/', [here, 'index.html', 'text/html; charset=utf-8']],
  ['/index.html', [here, 'index.html', 'text/html; charset=utf-8']],
  ['/app.js', [here, 'app.js', JS]],
  ['/style.css', [here, 'style.css', 'text/css; charset=utf-8']],
  ['/sdk/obscura-device.js', [sdk, 'obscura-device.js', JS]],
  ['/sdk/obscura-device-worker.js', [sdk, 'obscura-device-worker.js', JS, 'worker']],
  ['/sdk/obscura-device-engine.js', [sdk, 'obscura-device-engine.js', JS, 'worker']],
  ['/sdk/vips-es6.js', [sdk, 'vips-es6.js', JS, 'worker']],
  ['/sdk/vips.wasm', [sdk, 'vips.wasm', 'application/wasm']],
]);

/**
 * Starts the example's static server. Returns `{ url, close }`.
 * @param {{ apiUrl: string, keys: object[], publishableKey?: string, licence?: string, port?: number, host?: string }} opts
 */
export async function startDeviceExample(opts) {
  if (!existsSync(join(sdk, 'obscura-device.js'))) throw new Error('dist/browser/ is missing: run `npm run build` first');
  const apiOrigin = new URL(opts.apiUrl).origin;
  const security = {
    // 'wasm-unsafe-eval' lets the page compile WebAssembly, and nothing else (no eval of JavaScript).
    'content-security-policy': `default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self' ${apiOrigin}; img-src 'self' blob:; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-embedder-policy': 'require-corp',
    'cross-origin-resource-policy': 'same-origin',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  };
  // The engine's worker has its own policy: embind (wasm-vips' bindings) builds its call wrappers
  // with `new Function`, so the worker needs 'unsafe-eval'; it has no DOM, holds no key and may
  // fetch only this origin (its own files). The page itself keeps the strict policy above.
  const workerSecurity = { ...security, 'content-security-policy': "default-src 'none'; script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'" };
  const config = JSON.stringify({ apiUrl: opts.apiUrl, keys: opts.keys, ...(opts.licence ? { licence: opts.licence } : { publishableKey: opts.publishableKey }) });
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/config.json') {
      res.writeHead(200, { ...security, 'content-type': 'application/json; charset=utf-8' });
      return res.end(config);
    }
    const file = req.method === 'GET' ? STATIC.get(url.pathname) : undefined;
    if (!file) {
      res.writeHead(url.pathname === '/favicon.ico' ? 204 : 404, security);
      return res.end();
    }
    const body = await readFile(join(file[0], file[1]));
    // The SDK's files may be cached (Chromium then also keeps the compiled WebAssembly); the page and its config may not.
    const caching = url.pathname.startsWith('/sdk/') ? { 'cache-control': 'public, max-age=3600' } : {};
    res.writeHead(200, { ...(file[3] ? workerSecurity : security), 'content-type': file[2], ...caching });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(opts.port ?? 3001, opts.host ?? '127.0.0.1', resolve));
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
  const { OBSCURA_URL, PUBLISHABLE_KEY, LICENCE_KEYS, LICENCE_FILE, PORT } = process.env;
  if (!OBSCURA_URL || !LICENCE_KEYS || (!PUBLISHABLE_KEY && !LICENCE_FILE)) {
    console.error('set OBSCURA_URL, LICENCE_KEYS (the licence public keys, JSON) and PUBLISHABLE_KEY (pinned to this page\'s origin) or LICENCE_FILE');
    process.exit(2);
  }
  const parsed = JSON.parse(LICENCE_KEYS);
  const keys = Array.isArray(parsed) ? parsed : Array.isArray(parsed.keys) ? parsed.keys : [parsed];
  const ex = await startDeviceExample({ apiUrl: OBSCURA_URL, keys, port: PORT ? Number(PORT) : 3001,
    ...(LICENCE_FILE ? { licence: await readFile(LICENCE_FILE, 'utf8') } : { publishableKey: PUBLISHABLE_KEY }) });
  console.log(`EXAMPLE_LISTENING ${ex.url}`);
}
