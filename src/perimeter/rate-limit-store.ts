/**
 * The counters behind the rate limits: Redis when `OBSCURA_REDIS_URL` is set (every node shares them;
 * one atomic Lua script per fixed window), with per-node memory counters while Redis is unreachable,
 * so limits keep holding instead of failing open or taking the API down.
 */
import type { FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import { Redis } from 'ioredis';

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

export type RedisWithScripts = Redis & {
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
export function storeCtor(redis: RedisWithScripts | null, prefix: string, onFallback: (err: unknown) => void): FastifyRateLimitStoreCtor {
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

