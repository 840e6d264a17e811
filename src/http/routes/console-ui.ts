/**
 * The web console's static files (issue 13): `GET /console` and every client-side route under it
 * answer `index.html`; `GET /console/assets/{file}` answers the built, content-hashed files of
 * `npm run build` (dist/console/, from console/ via scripts/build-console.js).
 *
 * The console is only a client of the public API (session cookie + CSRF on /v1/*); nothing here reads
 * the database. Its pages carry their own strict CSP: scripts, styles, images and connections from
 * this origin only (no inline script or style, no CDN), no framing, no plugins, no <base>; form
 * actions to this origin. Assets are immutable (their names change with their content); index.html
 * is never cached, so a deploy takes effect at the next load.
 *
 * On-device processing (issue 15, the playground's "On this device" switch): the browser SDK
 * (dist/browser/, built by `npm run build`) is served at `/console/device/{file}`. Its engine
 * (wasm-vips) runs libvips' threads on a SharedArrayBuffer, which a browser gives only to a
 * cross-origin-isolated page, so every console response (and only those: the API keeps helmet's
 * headers) adds `Cross-Origin-Embedder-Policy: require-corp` to helmet's `Cross-Origin-Opener-Policy:
 * same-origin`. The engine's two worker scripts get their own CSP with `'unsafe-eval'` and
 * `'wasm-unsafe-eval'` (embind, wasm-vips' bindings, builds its call wrappers with `new Function`);
 * the console page's own CSP is unchanged (docs/security-model.md).
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { AppError } from '../../errors.js';

/** The CSP of every console response. `blob:` images: previews of processed results and local files. */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The CSP of the on-device engine's worker scripts (`obscura-device-worker.js`, `obscura-device-engine.js`, `vips-es6.js`, which
 * also starts libvips' threads from its own URL). `'wasm-unsafe-eval'` compiles WebAssembly;
 * `'unsafe-eval'` is needed because embind generates its invokers with `new Function` (there is no
 * build of wasm-vips without it). A worker has no DOM, holds no key, and may fetch only this origin.
 */
export const DEVICE_WORKER_CSP = "default-src 'none'; script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'";

/** The files of the on-device SDK the console serves, with their type and whether they run as a worker. */
const DEVICE_FILES: Record<string, { type: string; worker: boolean }> = {
  'obscura-device.js': { type: 'text/javascript; charset=utf-8', worker: false },
  'obscura-device-worker.js': { type: 'text/javascript; charset=utf-8', worker: true },
  // Imported by the worker (its policy is the worker's); served with the worker CSP for consistency.
  'obscura-device-engine.js': { type: 'text/javascript; charset=utf-8', worker: true },
  'vips-es6.js': { type: 'text/javascript; charset=utf-8', worker: true },
  'vips.wasm': { type: 'application/wasm', worker: false },
};

/** Where `npm run build` puts the on-device SDK (dist/browser). */
export const DEFAULT_DEVICE_DIR = fileURLToPath(new URL('../../../browser', import.meta.url));

const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  txt: 'text/plain; charset=utf-8',
};

/** Where `npm run build` puts the console (dist/console, next to dist/src). */
export const DEFAULT_CONSOLE_DIR = fileURLToPath(new URL('../../../console', import.meta.url));

/**
 * Serves the console from `dir` (default: the build output). When it was not built, `/console`
 * answers a plain page saying how to build it rather than failing the server.
 */
export function consoleUiRoutes(app: FastifyInstance, opts: { dir?: string; deviceDir?: string } = {}): void {
  const dir = opts.dir ?? DEFAULT_CONSOLE_DIR;
  const deviceDir = opts.deviceDir ?? DEFAULT_DEVICE_DIR;
  const indexPath = join(dir, 'index.html');
  const built = existsSync(indexPath);
  const index = built ? readFileSync(indexPath) : Buffer.from('The console is not built: run "npm run build".\n');
  // The asset list is read once: only files the build wrote are ever served (no path from the URL reaches the disk).
  const assets = new Map<string, { body: Buffer; type: string }>();
  if (built) {
    for (const name of readdirSync(join(dir, 'assets'))) {
      const type = TYPES[name.slice(name.lastIndexOf('.') + 1)];
      if (type) assets.set(name, { body: readFileSync(join(dir, 'assets', name)), type });
    }
  }
  // Cross-origin isolation for the console only (the on-device engine needs SharedArrayBuffer): COEP
  // here, COOP same-origin as helmet already sends it everywhere (repeated so this does not depend on it).
  const isolated = (reply: FastifyReply) => reply.header('Cross-Origin-Opener-Policy', 'same-origin').header('Cross-Origin-Embedder-Policy', 'require-corp');
  const secure = (reply: FastifyReply) => isolated(reply).header('Content-Security-Policy', CONSOLE_CSP).header('X-Content-Type-Options', 'nosniff');
  // The SDK's files, read on first use (5 MiB that a server whose console is never used does not hold).
  const deviceFiles = new Map<string, { body: Buffer; etag: string }>();
  const deviceFile = (name: string) => {
    let file = deviceFiles.get(name);
    if (!file) {
      const path = join(deviceDir, name);
      if (!existsSync(path)) return undefined;
      const body = readFileSync(path);
      file = { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
      deviceFiles.set(name, file);
    }
    return file;
  };
  const page = async (_req: unknown, reply: FastifyReply) =>
    secure(reply)
      .header('Cache-Control', 'no-cache')
      .type(built ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8')
      .code(built ? 200 : 503)
      .send(index);

  // Not API operations: kept out of the OpenAPI document, as /docs is.
  app.get('/console', { schema: { hide: true } }, page);
  app.get('/console/*', { schema: { hide: true } }, async (req, reply) => {
    const rest = (req.params as { '*': string })['*'];
    if (rest.startsWith('device/')) {
      const name = rest.slice('device/'.length);
      // Only the files the SDK build writes: no path from the URL reaches the disk.
      const kind = Object.hasOwn(DEVICE_FILES, name) ? DEVICE_FILES[name] : undefined;
      const file = kind ? deviceFile(name) : undefined;
      if (!kind || !file) throw new AppError('ERR_NOT_FOUND', 'No such console file (is the on-device SDK built? run "npm run build").');
      isolated(reply)
        .header('Content-Security-Policy', kind.worker ? DEVICE_WORKER_CSP : CONSOLE_CSP)
        .header('X-Content-Type-Options', 'nosniff')
        // Names do not change with content: revalidated each load (a 304 keeps Chromium's compiled WebAssembly).
        .header('Cache-Control', 'no-cache')
        .header('ETag', file.etag);
      if (req.headers['if-none-match'] === file.etag) return reply.code(304).send();
      return reply.type(kind.type).send(file.body);
    }
    if (rest.startsWith('assets/')) {
      const file = assets.get(rest.slice('assets/'.length));
      if (!file) throw new AppError('ERR_NOT_FOUND', 'No such console file.');
      return secure(reply).header('Cache-Control', 'public, max-age=31536000, immutable').type(file.type).send(file.body);
    }
    return page(req, reply);
  });
}
