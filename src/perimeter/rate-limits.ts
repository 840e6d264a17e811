/**
 * Rate limits (docs/security-model.md, "Perimeter"):
 * - failed-auth throttle (app-level onRequest, authenticated routes, before auth): an IP with more
 *   than `authFailuresPerMinute` refused credentials in the current minute gets 429 without a
 *   database lookup (random-key floods cannot make every request cost a query);
 * - @fastify/rate-limit (ROUTE-level onRequest, which Fastify runs after every app-level onRequest
 *   hook, so the principal is known): keyed by the credential id once authenticated (`key:<keyId>`,
 *   `perKeyPerMinute`; publishable keys per key and client IP, `pk:<keyId>:<ip>`,
 *   `perPublishablePerMinute`), else by client IP (`ip:<ip or /64>`, `perIpPerMinute`). Keying by the
 *   verified id rather than a hash of the bearer text means a rolled key and its replacement, or an
 *   OAuth client's successive tokens, share nothing they should not, and an unverified string can
 *   never mint fresh buckets;
 * - the per-app limit (route-level, after the per-key one): `app:<appId>` (`perAppPerMinute`).
 * Per-route overrides: `config: { rateLimit: { max: 10, timeWindow: '1 minute' } }` or `rateLimit: false`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import rateLimit, { normalizeIP } from '@fastify/rate-limit';
import { AppError } from '../errors.js';
import type { ProcessMetrics } from '../usage/metrics.js';
import type { PerimeterSettings } from './settings.js';
import { connectRedis, storeCtor } from './rate-limit-store.js';
import { appendRouteHook } from './route-hooks.js';

const WINDOW_MS = 60_000;

/** The rate-limit plugin; connects to Redis at boot when `redisUrl` is set (refusing to start if it cannot). */
export const rateLimits = fp(
  async (app: FastifyInstance, opts: { settings: PerimeterSettings; metrics: ProcessMetrics }) => {
    const p = opts.settings;
    const { metrics } = opts;
    const redis = p.redisUrl ? await connectRedis(p.redisUrl, p.redisCommandTimeoutMs) : null;
    let lastFallbackLog = 0;
    const onFallback = (err: unknown) => {
      if (Date.now() - lastFallbackLog > 60_000) {
        lastFallbackLog = Date.now();
        app.log.error({ err }, 'Redis unreachable: rate limits fall back to per-node counters');
      }
    };
    app.addHook('onClose', async () => {
      if (redis) redis.disconnect();
    });

    await app.register(rateLimit, {
      global: true,
      hook: 'onRequest',
      enableDraftSpec: true,
      timeWindow: WINDOW_MS,
      max: (req: FastifyRequest) => (!req.principal ? p.perIpPerMinute : req.principal.kind === 'publishable' ? p.perPublishablePerMinute : p.perKeyPerMinute),
      // A publishable key is shared by every visitor of a site: each client address gets its own budget,
      // so one browser cannot use up everyone's (the per-app limit still bounds them together).
      keyGenerator: (req: FastifyRequest) =>
        !req.principal ? `ip:${normalizeIP(req.ip, 64)}` : req.principal.kind === 'publishable' ? `pk:${req.principal.keyId}:${normalizeIP(req.ip, 64)}` : `key:${req.principal.keyId}`,
      store: storeCtor(redis, 'obscura:rl:', onFallback),
      errorResponseBuilder: (req: FastifyRequest, ctx: { max: number; ttl: number }) => {
        const scope = req.principal ? 'key' : 'ip';
        metrics.rateLimited.inc({ limit: scope });
        return rateLimited(scope, ctx.max, ctx.ttl);
      },
    });
    const appLimiter = app.createRateLimit({ max: p.perAppPerMinute, timeWindow: WINDOW_MS, keyGenerator: (req) => `app:${req.principal!.appId}`, name: 'app' } as Parameters<typeof app.createRateLimit>[0]);
    const authFailures = app.createRateLimit({ max: p.authFailuresPerMinute, timeWindow: WINDOW_MS, keyGenerator: (req) => `authfail:${normalizeIP(req.ip, 64)}`, name: 'authfail' } as Parameters<typeof app.createRateLimit>[0]);

    // Failed-auth throttle, before auth (app-level; installAuth is installed after the perimeter).
    app.addHook('onRequest', async (req) => {
      if (!req.routeOptions.config?.auth) return;
      const r = await authFailures(req, { increment: false });
      if (!r.isAllowed && r.isExceeded) {
        metrics.rateLimited.inc({ limit: 'auth_failures' });
        throw rateLimited('auth_failures', r.max, r.ttl);
      }
    });
    app.addHook('onResponse', async (req, reply) => {
      if (!req.principal && req.routeOptions.config?.auth && (reply.statusCode === 401 || reply.statusCode === 403)) await authFailures(req).catch(() => undefined);
    });

    // Per-app limit: route-level, after the per-key hook (the principal is known).
    appendRouteHook(app, async (req: FastifyRequest, reply: FastifyReply) => {
      if (!req.principal || req.routeOptions.config?.rateLimit === false) return;
      const r = await appLimiter(req);
      if (r.isAllowed) return;
      if (r.isExceeded) {
        metrics.rateLimited.inc({ limit: 'app' });
        throw rateLimited('app', r.max, r.ttl);
      }
      // Report the tightest limit (draft-ietf-httpapi-ratelimit-headers: the closest to exhaustion).
      const current = Number(reply.getHeader('ratelimit-remaining') ?? Infinity);
      if (r.remaining < current) {
        reply.header('ratelimit-limit', r.max).header('ratelimit-remaining', r.remaining).header('ratelimit-reset', r.ttlInSeconds);
      }
    });
  },
  { name: 'obscura-rate-limits' },
);

function rateLimited(scope: 'key' | 'app' | 'ip' | 'auth_failures', limit: number, ttlMs: number): AppError {
  const retry = Math.max(1, Math.ceil(ttlMs / 1000));
  const what = { key: 'this credential', app: 'this app', ip: 'this client address', auth_failures: 'this client address after repeated failed authentications' }[scope];
  return new AppError('ERR_RATE_LIMITED', `Too many requests for ${what}; retry in ${retry} s.`, {
    details: { limit_scope: scope, limit, window_seconds: WINDOW_MS / 1000, retry_after: retry },
    headers: { 'Retry-After': String(retry), 'RateLimit-Limit': String(limit), 'RateLimit-Remaining': '0', 'RateLimit-Reset': String(retry) },
  });
}
