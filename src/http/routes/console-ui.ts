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
 */
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
export function consoleUiRoutes(app: FastifyInstance, opts: { dir?: string } = {}): void {
  const dir = opts.dir ?? DEFAULT_CONSOLE_DIR;
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
  const secure = (reply: FastifyReply) => reply.header('Content-Security-Policy', CONSOLE_CSP).header('X-Content-Type-Options', 'nosniff');
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
    if (rest.startsWith('assets/')) {
      const file = assets.get(rest.slice('assets/'.length));
      if (!file) throw new AppError('ERR_NOT_FOUND', 'No such console file.');
      return secure(reply).header('Cache-Control', 'public, max-age=31536000, immutable').type(file.type).send(file.body);
    }
    return page(req, reply);
  });
}
