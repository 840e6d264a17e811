/**
 * Security headers on every response (helmet's: CSP `default-src 'none'`, HSTS, no-referrer,
 * same-site CORP, nosniff, frame denial, ...), set in the first onRequest hooks as @fastify/helmet
 * does, so that even a request refused by a later hook (shedding, auth, rate limits) carries them.
 *
 * Cost (issue 12, item 4): @fastify/helmet runs `helmet(options)` on every request, re-validating
 * every option and re-parsing the CSP directives (8 % of a no-op request in a profile). The headers
 * do not depend on the request, so they are computed once at boot by @fastify/helmet itself (one
 * request through a private Fastify instance) and copied onto each response. The values are helmet's
 * own, byte for byte (test/http/security-headers.test.ts compares them with the per-request plugin).
 * No route sets its own helmet options; a route that must differ (the `/docs` page) sets its header
 * later, which wins as it did with the plugin.
 *
 * The same hook sets `X-Request-Id` (our own id, never the client's): every response carries it,
 * refusals by later hooks included.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type HookHandlerDoneFunction } from 'fastify';
import fp from 'fastify-plugin';
import helmet, { type FastifyHelmetOptions } from '@fastify/helmet';

/** Obscura's helmet options: the API serves JSON and media; the only HTML is /docs, which sets its own CSP. */
export const HELMET_OPTIONS: FastifyHelmetOptions = {
  contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
  hsts: { maxAge: 31_536_000, includeSubDomains: true },
  crossOriginResourcePolicy: { policy: 'same-site' },
  referrerPolicy: { policy: 'no-referrer' },
};

/** The headers @fastify/helmet sets for `options`, read from one request through a private instance. */
export async function helmetHeaders(options: FastifyHelmetOptions): Promise<[string, string | number | readonly string[]][]> {
  const probe = Fastify({ logger: false });
  let captured: [string, string | number | readonly string[]][] = [];
  try {
    await probe.register(helmet, options);
    // Registered after helmet's hooks, so it sees exactly what they set on the raw response.
    probe.addHook('onRequest', (_req, reply, done) => {
      captured = Object.entries(reply.raw.getHeaders()).filter((e): e is [string, string | number | string[]] => e[1] !== undefined);
      done();
    });
    probe.get('/', async () => '');
    const res = await probe.inject({ method: 'GET', url: '/' });
    if (res.statusCode !== 200 || captured.length === 0) throw new Error(`computing the security headers failed (${res.statusCode})`);
  } finally {
    await probe.close();
  }
  return captured;
}

/** The security-headers plugin (register before every other hook and route). */
export const securityHeaders = fp(
  async (app: FastifyInstance, opts: { helmet: FastifyHelmetOptions }) => {
    const headers = await helmetHeaders(opts.helmet);
    const names = headers.map((h) => h[0]);
    const values = headers.map((h) => h[1]);
    const count = headers.length;
    // A callback hook (no promise per request); setHeader on the raw response, as helmet does. The
    // request id rides along (it was an onSend hook of its own: one hook fewer per request).
    app.addHook('onRequest', (req: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
      const res = reply.raw;
      for (let i = 0; i < count; i++) res.setHeader(names[i]!, values[i]!);
      res.setHeader('X-Request-Id', req.id);
      done();
    });
  },
  { name: 'obscura-security-headers' },
);
