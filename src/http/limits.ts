/**
 * The perimeter, as Fastify hooks and plugins: load shedding, strict CORS, rate limits, monthly quotas,
 * slow-client timeouts, usage metering and Prometheus exposure. `installLimits` runs in `buildApp`
 * BEFORE `installAuth`, so that its app-level `onRequest` hooks (shedding, CORS, the failed-auth
 * throttle) run before any credential is looked up.
 *
 * Order of a request:
 *  1. under-pressure (app-level onRequest): 503 ERR_UNAVAILABLE + Retry-After when the event loop has
 *     lagged for two samples in a row (`LagMonitor`, plugged in as under-pressure's health check) or
 *     the heap is nearly full, before any work is done for the request.
 *  2. CORS (app-level onRequest): preflights answered here; `Access-Control-Allow-Origin` reflects the
 *     Origin only when an active publishable key allows it (never `*`, never with credentials).
 *  3. failed-auth throttle (app-level onRequest, authenticated routes): an IP with more than
 *     `authFailuresPerMinute` refused credentials in the current minute gets 429 without a database
 *     lookup (random-key floods cannot make every request cost a query).
 *  4. auth (src/http/auth.ts, app-level onRequest).
 *  5. rate limit (@fastify/rate-limit, ROUTE-level onRequest, which Fastify runs after every
 *     app-level onRequest hook, so the principal is known): keyed by the credential id once
 *     authenticated (`key:<keyId>`, `perKeyPerMinute`; publishable keys per key and client IP,
 *     `pk:<keyId>:<ip>`, `perPublishablePerMinute`), else by client IP (`ip:<ip or /64>`,
 *     `perIpPerMinute`). Keying by the verified id rather than a hash of the bearer text means a
 *     rolled key and its replacement, or an OAuth client's successive tokens, share nothing they
 *     should not, and an unverified string can never mint fresh buckets.
 *  6. per-app limit and monthly quotas (route-level onRequest, ours): `app:<appId>`
 *     (`perAppPerMinute`), then the app's quotas: headers on every authenticated response, 429
 *     ERR_QUOTA_EXCEEDED on the media routes (scopes in `QUOTA_SCOPES`, or `config.quota` set).
 *  7. onResponse: usage metering (requests, bytes, end users) and process metrics.
 *
 * Counters live in Redis when `REDIS_URL` is set, so every node shares them; if Redis becomes
 * unreachable at run time each node falls back to its own in-memory counters (limits keep holding,
 * per node) instead of failing open or taking the API down. Per-route overrides:
 * `config: { rateLimit: { max: 10, timeWindow: '1 minute' } }` or `rateLimit: false`; opt a route out
 * of quotas with `config: { quota: false }` or make it also check the export quota with
 * `config: { quota: { exports: true } }`.
 */
import { randomUUID } from 'node:crypto';
import { getHeapStatistics } from 'node:v8';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import rateLimit, { normalizeIP, type FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import underPressure from '@fastify/under-pressure';
import cors from '@fastify/cors';
import { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
import type { DatabaseHandle } from '../db/database.js';
import type { MasterKeys } from '../crypto/master.js';
import { AppError } from '../errors.js';
import { UsageMeter, MAX_END_USER_ID_LENGTH, type UsageEvent } from '../usage/meter.js';
import { QuotaGuard, exceededQuota, quotaExceededError, quotaHeaders, type QuotaKind } from '../usage/quota.js';
import { createProcessMetrics, metricsTokenMatches, metricsText, startMetricsServer, bearerOf, METRICS_CONTENT_TYPE, type MetricsServer, type ProcessMetrics } from '../usage/metrics.js';
import { startRedirectServer, type RedirectServer } from './tls.js';
import { routeScopes } from './auth.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `false`: the monthly quotas are not checked on this route; `{ exports: true }`: the export quota is checked too. */
    quota?: false | { exports?: boolean };
  }
  interface FastifyInstance {
    /** The process's usage meter (`recordUsage(app.usage, ...)`). */
    usage: UsageMeter;
  }
  interface FastifyRequest {
    /** The validated `Obscura-End-User` header of an authenticated request (raw; hashed by the meter, never logged). */
    endUser: string | null;
  }
}

/** The end-user id header: a caller's own user id, for monthly-active-end-user counts. */
export const END_USER_HEADER = 'obscura-end-user';

/** Request headers a browser may send cross-origin (tus 1.0 included: tus-js-client, Uppy). */
export const CORS_ALLOWED_HEADERS = [
  'Authorization', 'Content-Type', 'Prefer', 'Idempotency-Key', 'Obscura-End-User',
  'Tus-Resumable', 'Upload-Length', 'Upload-Offset', 'Upload-Metadata', 'Upload-Defer-Length', 'Upload-Concat', 'Upload-Checksum',
  'X-HTTP-Method-Override', 'X-Requested-With',
] as const;

/** Response headers a browser script may read cross-origin. */
export const CORS_EXPOSED_HEADERS = [
  'Location', 'Retry-After', 'X-Request-Id', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset',
  'Obscura-Quota-Limit', 'Obscura-Quota-Remaining', 'Obscura-Quota-Reset',
  'Upload-Offset', 'Upload-Length', 'Upload-Metadata', 'Upload-Expires', 'Upload-Defer-Length', 'Upload-Concat',
  'Tus-Resumable', 'Tus-Version', 'Tus-Extension', 'Tus-Max-Size', 'Tus-Checksum-Algorithm',
] as const;

const WINDOW_MS = 60_000;

/** Routes with these scopes are the metered product: monthly quotas are enforced on them. */
export const QUOTA_SCOPES: ReadonlySet<string> = new Set(['assets:read', 'assets:write', 'jobs:read', 'jobs:write']);

// ---------------------------------------------------------------------------------------------
// Rate-limit store: Redis (shared) with an in-memory fallback (per node).

type StoreCb = (err: Error | null, res?: { current: number; ttl: number }) => void;

/** Fixed one-window counters in memory, bounded (oldest entries are dropped first). */
class MemoryWindows {
  private readonly map = new Map<string, { count: number; resetAt: number }>();
  constructor(private readonly maxEntries = 50_000) {}

  incr(key: string, windowMs: number): { current: number; ttl: number } {
    const now = Date.now();
    let e = this.map.get(key);
    if (!e || e.resetAt <= now) {
      if (e) this.map.delete(key);
      if (this.map.size >= this.maxEntries) this.map.delete(this.map.keys().next().value as string);
      e = { count: 0, resetAt: now + windowMs };
      this.map.set(key, e);
    }
    e.count += 1;
    return { current: e.count, ttl: e.resetAt - now };
  }

  read(key: string): { current: number; ttl: number } {
    const now = Date.now();
    const e = this.map.get(key);
    return !e || e.resetAt <= now ? { current: 0, ttl: 0 } : { current: e.count, ttl: e.resetAt - now };
  }
}

// Atomic fixed window in Redis: INCR, and set the expiry with the first hit (or if it was lost).
const INCR_LUA = `
local current = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if current == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {current, ttl}`;
const READ_LUA = `
local current = redis.call('GET', KEYS[1])
if not current then return {0, 0} end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = 0 end
return {tonumber(current), ttl}`;

type RedisWithScripts = Redis & {
  obscuraRateIncr(key: string, windowMs: number): Promise<[number, number]>;
  obscuraRateRead(key: string): Promise<[number, number]>;
};

/** Connects to Redis at boot (refusing to start if it is unreachable) and defines the counter scripts. */
export async function connectRedis(url: string, commandTimeoutMs = 250): Promise<RedisWithScripts> {
  const redis = new Redis(url, {
    lazyConnect: true,
    // Fail fast instead of queueing: a request must never wait on a Redis outage (we fall back).
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 3000,
    commandTimeout: commandTimeoutMs,
  });
  redis.on('error', () => {
    /* reported through the store's fallback; ioredis reconnects on its own */
  });
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw new Error(`REDIS_URL: cannot connect to Redis (${(err as Error).message}); rate limits would not be shared`, { cause: err });
  }
  redis.defineCommand('obscuraRateIncr', { numberOfKeys: 1, lua: INCR_LUA });
  redis.defineCommand('obscuraRateRead', { numberOfKeys: 1, lua: READ_LUA });
  return redis as RedisWithScripts;
}

/** How long a node counts locally after a Redis command failed, before it tries Redis again. */
export const REDIS_RETRY_AFTER_FAILURE_MS = 5000;

/**
 * A @fastify/rate-limit store over Redis, falling back to memory while Redis is unreachable. A frozen
 * Redis still looks connected, so each command would wait out the command timeout: after one
 * failure the node stops asking Redis for a few seconds (a circuit breaker), so an outage costs one
 * timeout per node per interval, not one per request (issue 9, item 17).
 */
function storeCtor(redis: RedisWithScripts | null, prefix: string, onFallback: (err: unknown) => void): FastifyRateLimitStoreCtor {
  let skipUntil = 0;
  const usable = (): boolean => !!redis && redis.status === 'ready' && Date.now() >= skipUntil;
  const failed = (err: unknown): void => {
    skipUntil = Date.now() + REDIS_RETRY_AFTER_FAILURE_MS;
    onFallback(err);
  };
  class Store {
    private readonly memory = new MemoryWindows();
    constructor(private readonly ns: string = prefix) {}

    incr(key: string, cb: StoreCb, timeWindow: number): void {
      if (!usable()) return cb(null, this.memory.incr(key, timeWindow));
      redis!.obscuraRateIncr(this.ns + key, timeWindow).then(
        ([current, ttl]) => cb(null, { current: Number(current), ttl: Number(ttl) }),
        (err: unknown) => {
          failed(err);
          cb(null, this.memory.incr(key, timeWindow));
        },
      );
    }

    read(key: string, cb: StoreCb): void {
      if (!usable()) return cb(null, this.memory.read(key));
      redis!.obscuraRateRead(this.ns + key).then(
        ([current, ttl]) => cb(null, { current: Number(current), ttl: Number(ttl) }),
        (err: unknown) => {
          failed(err);
          cb(null, this.memory.read(key));
        },
      );
    }

    child(opts: { routeInfo?: { method?: string | string[]; url?: string }; name?: string }): Store {
      // Per-route overrides and named limiters count separately from the global per-key/per-IP bucket.
      const id = opts.name ?? `${String(opts.routeInfo?.method ?? '')} ${opts.routeInfo?.url ?? ''}`;
      return new Store(`${this.ns}${id}:`);
    }
  }
  return Store as unknown as FastifyRateLimitStoreCtor;
}

// ---------------------------------------------------------------------------------------------
// CORS: the union of allowed origins of active publishable keys, cached like keys.

/**
 * The origins some active publishable key allows, re-read after `ttlMs` (the key cache TTL, so a
 * revoked key's origin stops being reflected as fast as the key stops working). A browser-side
 * relaxation only: the server-side wall is the per-key origin check in `KeyVerifier`.
 */
export class BrowserOrigins {
  private origins = new Set<string>();
  private fetchedAt = -Infinity;
  private loading: Promise<void> | null = null;

  constructor(
    private readonly db: DatabaseHandle,
    private readonly opts: { ttlMs: number; now?: () => number },
  ) {}

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  private async refresh(): Promise<void> {
    const now = new Date(this.now());
    const rows = await this.db.system
      .selectFrom('api_keys')
      .select('allowed_origins')
      .where('kind', '=', 'publishable')
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .where((eb) => eb.or([eb('grace_ends_at', 'is', null), eb('grace_ends_at', '>', now)]))
      .execute();
    const next = new Set<string>();
    for (const r of rows) for (const o of r.allowed_origins) next.add(o);
    this.origins = next;
    this.fetchedAt = now.getTime();
  }

  /** True when `origin` (a serialised origin such as `https://shop.example`) may make CORS requests. */
  async allows(origin: string | undefined): Promise<boolean> {
    if (!origin || origin === 'null') return false;
    if (this.now() - this.fetchedAt >= this.opts.ttlMs) {
      if (!this.loading) this.loading = this.refresh().finally(() => (this.loading = null));
      try {
        await this.loading;
      } catch {
        // Database unreachable: keep answering from the last known set (requests fail at auth anyway).
      }
    }
    return this.origins.has(origin);
  }
}

// ---------------------------------------------------------------------------------------------
// Load shedding on SUSTAINED event-loop lag.

/**
 * Mean event-loop delay per sample interval; `lagging` once `samples` consecutive intervals exceed the
 * threshold. under-pressure's own check sheds on a single sample, so one long synchronous stall (a
 * GC pause, an embedded-database migration) would turn away every request for the following interval
 * although the loop is already free again; shedding is for overload that persists.
 */
export class LagMonitor {
  private readonly histogram = monitorEventLoopDelay({ resolution: 10 });
  private readonly timer: NodeJS.Timeout;
  private streak = 0;

  constructor(
    private readonly thresholdMs: number,
    intervalMs: number,
    private readonly samples = 2,
  ) {
    this.histogram.enable();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  private sample(): void {
    const h = this.histogram;
    // No sample at all means the loop never came round during the whole interval.
    const lagMs = h.count > 0 ? h.mean / 1e6 - 10 : Infinity;
    h.reset();
    this.streak = lagMs > this.thresholdMs ? this.streak + 1 : 0;
  }

  /** True while the lag has exceeded the threshold for `samples` consecutive intervals. */
  get lagging(): boolean {
    return this.streak >= this.samples;
  }

  /** Stops sampling. */
  close(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }
}

// ---------------------------------------------------------------------------------------------

export interface PerimeterDeps {
  db: DatabaseHandle;
  masterKeys: MasterKeys;
  now?: () => number;
}

/** What `installLimits` built; `buildApp` returns it so `main.ts` can start the side listeners. */
export interface Perimeter {
  readonly meter: UsageMeter;
  readonly quotas: QuotaGuard;
  readonly metrics: ProcessMetrics;
  readonly origins: BrowserOrigins;
  /** Throws `ERR_QUOTA_EXCEEDED` when the app's export (or byte) quota for this month is used up. */
  readonly exportAllowed: (orgId: string, appId: string) => Promise<void>;
}

function rateLimited(scope: 'key' | 'app' | 'ip' | 'auth_failures', limit: number, ttlMs: number): AppError {
  const retry = Math.max(1, Math.ceil(ttlMs / 1000));
  const what = { key: 'this credential', app: 'this app', ip: 'this client address', auth_failures: 'this client address after repeated failed authentications' }[scope];
  return new AppError('ERR_RATE_LIMITED', `Too many requests for ${what}; retry in ${retry} s.`, {
    details: { limit_scope: scope, limit, window_seconds: WINDOW_MS / 1000, retry_after: retry },
    headers: { 'Retry-After': String(retry), 'RateLimit-Limit': String(limit), 'RateLimit-Remaining': '0', 'RateLimit-Reset': String(retry) },
  });
}

/** Where each connection's byte counters stood when its previous response finished. */
const socketMarks = new WeakMap<object, { read: number; written: number }>();

/**
 * Bytes this request and its response took on the wire (headers included): the connection's counters
 * now minus where they stood after the previous response on it (HTTP/1.1 answers in order). Falls back
 * to Content-Length where there is no real socket (`inject`).
 */
function wireBytes(req: FastifyRequest, reply: FastifyReply): { bytesIn: number; bytesOut: number } {
  const sock = req.raw.socket as { bytesRead?: unknown; bytesWritten?: unknown } | null | undefined;
  if (sock && typeof sock.bytesRead === 'number' && typeof sock.bytesWritten === 'number') {
    const prev = socketMarks.get(sock) ?? { read: 0, written: 0 };
    const now = { read: sock.bytesRead, written: sock.bytesWritten };
    socketMarks.set(sock, now);
    return { bytesIn: Math.max(0, now.read - prev.read), bytesOut: Math.max(0, now.written - prev.written) };
  }
  return { bytesIn: Number(req.headers['content-length'] ?? 0) || 0, bytesOut: Number(reply.getHeader('content-length') ?? 0) || 0 };
}

/**
 * Installs the perimeter on the root instance (call before `installAuth` and before any route).
 * Sets the HTTP server's slow-client timeouts, registers load shedding, CORS and rate limiting, the
 * quota and metering hooks, and `/metrics` on the main listener when a metrics token is configured.
 */
export async function installLimits(app: FastifyInstance, config: Config, deps: PerimeterDeps): Promise<Perimeter> {
  const p = config.perimeter;
  const now = deps.now ?? Date.now;

  // Slowloris: Node cuts a connection whose headers (or whole request) take too long, but only checks
  // every `connectionsCheckingInterval` (30 s by default), read when the server starts listening.
  const server = app.server as typeof app.server & { headersTimeout: number; requestTimeout: number; keepAliveTimeout: number; connectionsCheckingInterval: number };
  server.headersTimeout = p.headersTimeoutMs;
  server.requestTimeout = p.requestTimeoutMs;
  server.keepAliveTimeout = p.keepAliveTimeoutMs;
  server.connectionsCheckingInterval = Math.min(5000, Math.max(100, Math.floor(p.headersTimeoutMs / 4)));

  const metrics = createProcessMetrics();
  const meter = new UsageMeter({
    db: deps.db,
    masterKey: deps.masterKeys.current,
    now: deps.now,
    onError: (err) => {
      metrics.usageFlushFailures.inc();
      app.log.warn({ err }, 'usage flush failed; counts kept for the next attempt');
    },
    onRecord: (e) => {
      if (e.exports) metrics.exports.inc(e.exports);
      if (e.processingMs) metrics.processingSeconds.inc(e.processingMs / 1000);
    },
  });
  // Settings and origins are cached exactly as long as keys are (the same staleness promise).
  const quotas = new QuotaGuard(deps.db, meter, { ttlMs: config.auth.keyCacheTtlMs, now: deps.now });
  const origins = new BrowserOrigins(deps.db, { ttlMs: config.auth.keyCacheTtlMs, now: deps.now });
  app.decorate('usage', meter);
  app.decorateRequest('endUser', null);

  const redis = p.redisUrl ? await connectRedis(p.redisUrl, p.redisCommandTimeoutMs) : null;
  let lastFallbackLog = 0;
  const onFallback = (err: unknown) => {
    if (Date.now() - lastFallbackLog > 60_000) {
      lastFallbackLog = Date.now();
      app.log.error({ err }, 'Redis unreachable: rate limits fall back to per-node counters');
    }
  };

  app.addHook('onClose', async () => {
    await meter.close();
    if (redis) redis.disconnect();
  });

  // 1. Load shedding.
  const heapLimit = p.shedHeapUsedBytes ?? Math.floor(getHeapStatistics().heap_size_limit * 0.9);
  const lag = p.shedEventLoopDelayMs > 0 ? new LagMonitor(p.shedEventLoopDelayMs, p.shedSampleIntervalMs) : null;
  app.addHook('onClose', async () => lag?.close());
  await app.register(underPressure, {
    maxHeapUsedBytes: heapLimit,
    sampleInterval: p.shedSampleIntervalMs,
    ...(lag ? { healthCheck: async () => !lag.lagging, healthCheckInterval: p.shedSampleIntervalMs } : {}),
    pressureHandler: async (_req: FastifyRequest, _reply: FastifyReply, type: string) => {
      metrics.loadShed.inc({ reason: type === 'heapUsedBytes' ? 'heap' : type === 'healthCheck' ? 'event_loop_delay' : 'other' });
      throw new AppError('ERR_UNAVAILABLE', 'The server is under heavy load; retry shortly.', { headers: { 'Retry-After': String(p.shedRetryAfterSeconds) } });
    },
  });

  // 2. Strict CORS.
  await app.register(cors, {
    origin: async (origin: string | undefined) => origins.allows(origin),
    credentials: false,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: [...CORS_ALLOWED_HEADERS],
    exposedHeaders: [...CORS_EXPOSED_HEADERS],
    maxAge: 600,
    strictPreflight: true,
  });

  // 5. Rate limits (route-level hooks: after auth).
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

  // 3. Failed-auth throttle, before auth (app-level; installAuth is installed after us).
  app.addHook('onRequest', async (req) => {
    if (!req.routeOptions.config?.auth) return;
    const r = await authFailures(req, { increment: false });
    if (!r.isAllowed && r.isExceeded) {
      metrics.rateLimited.inc({ limit: 'auth_failures' });
      throw rateLimited('auth_failures', r.max, r.ttl);
    }
  });

  // 6. Per-app limit, end-user header and quotas: route-level, appended after the rate-limit hook.
  const perimeterHook = async (req: FastifyRequest, reply: FastifyReply) => {
    const principal = req.principal;
    if (!principal) return;
    const cfg = req.routeOptions.config;
    const raw = req.headers[END_USER_HEADER];
    if (raw !== undefined) {
      const v = Array.isArray(raw) ? raw[0]! : raw;
      if (Array.isArray(raw) || v.length === 0 || v.length > MAX_END_USER_ID_LENGTH) {
        throw new AppError('ERR_VALIDATION', `The Obscura-End-User header must be one value of 1 to ${MAX_END_USER_ID_LENGTH} characters.`, { details: { errors: [{ path: 'headers/obscura-end-user', rule: 'maxLength' }] } });
      }
      req.endUser = v;
    }
    if (cfg?.rateLimit !== false) {
      const r = await appLimiter(req);
      if (!r.isAllowed) {
        if (r.isExceeded) {
          metrics.rateLimited.inc({ limit: 'app' });
          throw rateLimited('app', r.max, r.ttl);
        }
        // Report the tightest limit (draft-ietf-httpapi-ratelimit-headers: the closest to exhaustion).
        const current = Number(reply.getHeader('ratelimit-remaining') ?? Infinity);
        if (r.remaining < current) {
          reply.header('ratelimit-limit', r.max).header('ratelimit-remaining', r.remaining).header('ratelimit-reset', r.ttlInSeconds);
        }
      }
    }
    if (cfg?.quota === false) return;
    const status = await quotas.status(principal.orgId, principal.appId);
    const headers = quotaHeaders(status, now());
    for (const [k, v] of Object.entries(headers)) reply.header(k, v);
    // Enforced on the media routes (and any route that opts in); account management (apps, keys,
    // usage, audit, webhooks) stays reachable so an exhausted app can see why and raise its quota.
    const enforce = cfg?.quota !== undefined || routeScopes(cfg).some((s) => QUOTA_SCOPES.has(s));
    if (!enforce) return;
    const kinds: QuotaKind[] = cfg?.quota?.exports ? ['requests', 'bytes', 'exports'] : ['requests', 'bytes'];
    const over = exceededQuota(status, kinds);
    if (over) {
      metrics.quotaExceeded.inc({ quota: over });
      throw quotaExceededError(status, over, now());
    }
  };
  app.addHook('onRoute', (route) => {
    if (!route.config?.auth) return;
    const existing = route.onRequest;
    route.onRequest = existing === undefined ? [perimeterHook] : Array.isArray(existing) ? [...existing, perimeterHook] : [existing as never, perimeterHook];
  });

  // 7. Metering and metrics.
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const status = reply.statusCode;
    const { bytesIn, bytesOut } = wireBytes(req, reply);
    metrics.httpRequests.inc({ method: req.method, route, status: String(status) });
    metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    metrics.httpBytesIn.inc(bytesIn);
    metrics.httpBytesOut.inc(bytesOut);
    const principal = req.principal;
    if (principal) {
      const event: UsageEvent = {
        orgId: principal.orgId,
        appId: principal.appId,
        keyId: principal.keyId,
        // Refused-for-limits requests do not count, or a throttled client would burn its quota.
        requests: status === 429 ? 0 : 1,
        bytesIn,
        bytesOut,
        ...(req.endUser && status < 400 ? { endUser: req.endUser } : {}),
      };
      meter.record(event);
      metrics.usagePending.set(meter.pending);
    } else if (req.routeOptions.config?.auth && (status === 401 || status === 403)) {
      await authFailures(req).catch(() => undefined);
    }
  });

  // Prometheus on the main listener only behind a token (constant-time compare).
  if (p.metricsToken) {
    const token = p.metricsToken;
    app.get('/metrics', {
      schema: { hide: true },
      handler: async (req, reply) => {
        if (!metricsTokenMatches(bearerOf(req.headers.authorization), token)) {
          throw new AppError(req.headers.authorization ? 'ERR_TOKEN_INVALID' : 'ERR_AUTH_MISSING', 'The metrics endpoint needs "Authorization: Bearer <OBSCURA_METRICS_TOKEN>".');
        }
        return reply.header('cache-control', 'no-store').type(METRICS_CONTENT_TYPE).send(await metricsText(metrics));
      },
    });
  }

  // Transform URLs have no credential for the perimeter hook: the service asks this before each export.
  const exportAllowed = async (orgId: string, appId: string): Promise<void> => {
    const status = await quotas.status(orgId, appId);
    const over = exceededQuota(status, ['exports', 'bytes']);
    if (over) {
      metrics.quotaExceeded.inc({ quota: over });
      throw quotaExceededError(status, over, now());
    }
  };

  return { meter, quotas, metrics, origins, exportAllowed };
}

/** Records usage for the principal of an authenticated request (fills org, app and key). */
export function recordRequestUsage(req: FastifyRequest, event: Omit<UsageEvent, 'orgId' | 'appId' | 'keyId'>): void {
  const p = req.principal;
  if (!p) throw new Error('recordRequestUsage: request is not authenticated');
  req.server.usage.record({ ...event, orgId: p.orgId, appId: p.appId, keyId: p.keyId });
}

/** The listeners beside the main one: HTTP→HTTPS redirect and Prometheus, when configured. */
export interface SideListeners {
  readonly redirect: RedirectServer | null;
  readonly metrics: MetricsServer | null;
  close(): Promise<void>;
}

/** Starts the configured side listeners (called by `main.ts` after the main listener is up). */
export async function startSideListeners(config: Config, perimeter: Perimeter, requestId: () => string = randomUUID): Promise<SideListeners> {
  const p = config.perimeter;
  const redirect = p.httpRedirectPort !== undefined ? await startRedirectServer({ host: config.host, port: p.httpRedirectPort, publicUrl: config.publicUrl, requestId }) : null;
  let metrics: MetricsServer | null = null;
  try {
    metrics = p.metricsPort !== undefined ? await startMetricsServer({ host: p.metricsHost, port: p.metricsPort, metrics: perimeter.metrics, token: p.metricsToken }) : null;
  } catch (err) {
    await redirect?.close();
    throw err;
  }
  return {
    redirect,
    metrics,
    async close() {
      await Promise.all([redirect?.close(), metrics?.close()]);
    },
  };
}
