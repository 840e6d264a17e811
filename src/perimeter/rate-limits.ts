/**
 * Rate limits (docs/security-model.md, "Perimeter"), fixed one-minute windows:
 * - per credential, once authenticated: `key:<keyId>` (`perKeyPerMinute`); publishable keys per key
 *   and client IP, `pk:<keyId>:<ip>` (`perPublishablePerMinute`). Keying by the verified id rather
 *   than a hash of the bearer text means a rolled key and its replacement, or an OAuth client's
 *   successive tokens, share nothing they should not, and an unverified string can never mint buckets;
 * - per app, all its credentials together: `app:<appId>` (`perAppPerMinute`);
 * - per client IP (`ip:<ip or /64>`, `perIpPerMinute`) on routes without authentication;
 * - failed-auth throttle: an address with more than `authFailuresPerMinute` refused credentials in
 *   the current minute gets 429 on authenticated routes, without a database lookup, so random-key
 *   floods cannot make every request cost a query.
 *
 * Cost (issue 12, item 4): one counter operation per request — on Redis, one round trip running one
 * atomic script over every window the request must pass (see rate-limit-store.ts). An authenticated
 * request checks its failed-auth budget before authentication only when authenticating could cost a
 * database lookup; when the credential is already verified in memory (the key cache), that check
 * rides in the same script as the key and app windows, after authentication, with the same answer.
 *
 * Per-route overrides: `config: { rateLimit: { max: 10, timeWindow: 60_000 } }` (milliseconds; a
 * budget of its own per client, or per credential on an authenticated route) or `rateLimit: false`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { normalizeIP } from '@fastify/rate-limit';
import { AppError } from '../errors.js';
import type { ProcessMetrics } from '../usage/metrics.js';
import type { PerimeterSettings } from './settings.js';
import { connectRedis, windowCounters, type WindowCheck, type WindowState } from './rate-limit-store.js';
import { addAuthenticatedRouteHook, addRouteHook, ROUTE_PHASE } from './route-hooks.js';

const WINDOW_MS = 60_000;

type Scope = 'key' | 'app' | 'ip' | 'auth_failures';

/** What the rate-limit plugin needs. */
export interface RateLimitOptions {
  settings: PerimeterSettings;
  metrics: ProcessMetrics;
  /**
   * True when the request's credential is verified from memory (no database lookup at stake): its
   * failed-auth check then joins the post-auth round trip instead of costing one of its own.
   */
  credentialInMemory?: (req: FastifyRequest) => boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The failed-auth budget was already checked before authentication. */
    authFailuresChecked: boolean;
  }
}

/** A route's own budget (`config.rateLimit`), validated at boot. */
function routeOverride(route: RouteOptions): { max: number; windowMs: number; name: string } | false | null {
  const cfg = route.config?.rateLimit as unknown;
  if (cfg === undefined || cfg === null) return null;
  if (cfg === false) return false;
  const o = cfg as { max?: unknown; timeWindow?: unknown };
  if (typeof o.max !== 'number' || !Number.isInteger(o.max) || o.max < 0 || typeof o.timeWindow !== 'number' || !(o.timeWindow > 0)) {
    throw new Error(`route ${String(route.method)} ${route.url}: config.rateLimit must be false or { max: <integer>, timeWindow: <milliseconds> }`);
  }
  return { max: o.max, windowMs: Math.trunc(o.timeWindow), name: `route:${String(route.method)} ${route.url}:` };
}

/** The rate-limit plugin; connects to Redis at boot when `redisUrl` is set (refusing to start if it cannot). */
export const rateLimits = fp(
  async (app: FastifyInstance, opts: RateLimitOptions) => {
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
    const counters = windowCounters(redis, 'obscura:rl:', onFallback);
    app.decorateRequest('authFailuresChecked', false);

    const clientOf = (req: FastifyRequest) => normalizeIP(req.ip, 64);
    const authFailureWindow = (req: FastifyRequest): WindowCheck => ({ key: `authfail:${clientOf(req)}`, max: p.authFailuresPerMinute, windowMs: WINDOW_MS, count: false });

    const refuse = (scope: Scope, max: number, state: WindowState): never => {
      metrics.rateLimited.inc({ limit: scope });
      throw rateLimited(scope, max, state.ttl);
    };

    // Failed-auth throttle, before auth (route phase `authFailures`) — only when authenticating could
    // cost a database lookup. A callback hook: the common case (a key verified from memory) returns
    // without a promise.
    addAuthenticatedRouteHook(app, ROUTE_PHASE.authFailures, (route) => {
      // Deferred only where the combined check runs (a route with `rateLimit: false` has none).
      const deferrable = route.config?.rateLimit !== false && opts.credentialInMemory !== undefined;
      return (req: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
        if (deferrable && opts.credentialInMemory!(req)) return done();
        const w = authFailureWindow(req);
        req.authFailuresChecked = true;
        const settle = (states: WindowState[]) => {
          const s = states[0];
          if (s && s.current > w.max) refuse('auth_failures', w.max, s);
        };
        let r: WindowState[] | Promise<WindowState[]>;
        try {
          r = counters.check([w]);
          if (Array.isArray(r)) settle(r);
        } catch (err) {
          return done(err as Error);
        }
        if (Array.isArray(r)) return done();
        r.then(settle).then(() => done(), done);
      };
    });
    app.addHook('onResponse', (req, reply, done) => {
      // Only a refusal of a credential can count: status first, then the route's config (a getter).
      if ((reply.statusCode === 401 || reply.statusCode === 403) && !req.principal && req.routeOptions.config?.auth) {
        void Promise.resolve()
          .then(() => counters.check([{ ...authFailureWindow(req), max: Number.MAX_SAFE_INTEGER, count: true }]))
          .catch(() => undefined)
          .then(() => done());
        return;
      }
      done();
    });

    // Every window of a request in one check (route phase `rateLimits`: after authentication, so the
    // principal is known). The route's override and key prefix are read once, at registration.
    addRouteHook(app, ROUTE_PHASE.rateLimits, (route) => {
      const override = routeOverride(route);
      if (override === false) return null;
      const authenticated = route.config?.auth === true;
      const settle = (req: FastifyRequest, reply: FastifyReply, windows: WindowCheck[], scopes: Scope[], states: WindowState[]) => {
        // Report the tightest limit (draft-ietf-httpapi-ratelimit-headers: the closest to exhaustion).
        let tightest = -1;
        for (let i = 0; i < states.length; i++) {
          const s = states[i]!;
          const w = windows[i]!;
          if (s.current > w.max) refuse(scopes[i]!, w.max, s);
          if (scopes[i] === 'auth_failures') continue;
          if (tightest < 0 || w.max - s.current < windows[tightest]!.max - states[tightest]!.current) tightest = i;
        }
        if (tightest >= 0) {
          const w = windows[tightest]!;
          const s = states[tightest]!;
          reply.header('ratelimit-limit', w.max).header('ratelimit-remaining', Math.max(0, w.max - s.current)).header('ratelimit-reset', Math.ceil(s.ttl / 1000));
        }
      };
      return (req: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
        const principal = req.principal;
        const windows: WindowCheck[] = [];
        const scopes: Scope[] = [];
        if (authenticated && principal && !req.authFailuresChecked) {
          windows.push(authFailureWindow(req));
          scopes.push('auth_failures');
        }
        const who = !principal ? `ip:${clientOf(req)}` : principal.kind === 'publishable' ? `pk:${principal.keyId}:${clientOf(req)}` : `key:${principal.keyId}`;
        const max = override ? override.max : !principal ? p.perIpPerMinute : principal.kind === 'publishable' ? p.perPublishablePerMinute : p.perKeyPerMinute;
        windows.push({ key: override ? override.name + who : who, max, windowMs: override ? override.windowMs : WINDOW_MS, count: true });
        scopes.push(principal ? 'key' : 'ip');
        if (principal) {
          windows.push({ key: `app:${principal.appId}`, max: p.perAppPerMinute, windowMs: WINDOW_MS, count: true });
          scopes.push('app');
        }
        // In memory (no Redis, or Redis in fallback) the answer is synchronous: no promise.
        let r: WindowState[] | Promise<WindowState[]>;
        try {
          r = counters.check(windows);
          if (Array.isArray(r)) settle(req, reply, windows, scopes, r);
        } catch (err) {
          return done(err as Error);
        }
        if (Array.isArray(r)) return done();
        r.then((states) => settle(req, reply, windows, scopes, states)).then(() => done(), done);
      };
    });
  },
  { name: 'obscura-rate-limits' },
);

function rateLimited(scope: Scope, limit: number, ttlMs: number): AppError {
  const retry = Math.max(1, Math.ceil(ttlMs / 1000));
  const what = { key: 'this credential', app: 'this app', ip: 'this client address', auth_failures: 'this client address after repeated failed authentications' }[scope];
  return new AppError('ERR_RATE_LIMITED', `Too many requests for ${what}; retry in ${retry} s.`, {
    details: { limit_scope: scope, limit, window_seconds: WINDOW_MS / 1000, retry_after: retry },
    headers: { 'Retry-After': String(retry), 'RateLimit-Limit': String(limit), 'RateLimit-Remaining': '0', 'RateLimit-Reset': String(retry) },
  });
}
