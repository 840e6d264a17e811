/**
 * The counters behind the rate limits: Redis when `OBSCURA_REDIS_URL` is set (every node shares them),
 * with per-node memory counters while Redis is unreachable, so limits keep holding instead of failing
 * open or taking the API down.
 *
 * One request costs at most one counter operation (issue 12, item 4): every window a request must pass
 * (the credential's, its app's, the failed-auth budget of its address) is checked by one call,
 * {@link WindowCounters.check}, which on Redis is one atomic Lua script — one round trip, not one per
 * limit. Fixed one-minute windows, as before.
 */
import { Redis } from 'ioredis';

/** One fixed window a request must pass. */
export interface WindowCheck {
  /** Counter name (namespaced by the store). */
  readonly key: string;
  /** The budget: the window is exceeded when its count is above this. */
  readonly max: number;
  readonly windowMs: number;
  /** false: only read the count (the failed-auth budget is spent by failures, not by requests). */
  readonly count: boolean;
}

/** A window's state after a check. */
export interface WindowState {
  /** The count (after this request, for a counting window). */
  readonly current: number;
  /** Milliseconds until the window resets (0 when it holds nothing). */
  readonly ttl: number;
}

/**
 * Checks windows in order and stops at the first one exceeded (`current > max`): the windows after it
 * are neither read nor counted, so a refused request does not spend the app's budget, and a throttled
 * address spends nothing at all. Returns the states of the windows it reached.
 */
export interface WindowCounters {
  check(windows: readonly WindowCheck[]): WindowState[] | Promise<WindowState[]>;
}

/** Fixed one-window counters in memory, bounded (oldest entries are dropped first). */
export class MemoryWindows implements WindowCounters {
  private readonly map = new Map<string, { count: number; resetAt: number }>();
  constructor(private readonly maxEntries = 50_000) {}

  private one(w: WindowCheck, now: number): WindowState {
    let e = this.map.get(w.key);
    if (!e || e.resetAt <= now) {
      if (e) this.map.delete(w.key);
      if (!w.count) return { current: 0, ttl: 0 };
      if (this.map.size >= this.maxEntries) this.map.delete(this.map.keys().next().value as string);
      e = { count: 0, resetAt: now + w.windowMs };
      this.map.set(w.key, e);
    }
    if (w.count) e.count += 1;
    return { current: e.count, ttl: e.resetAt - now };
  }

  check(windows: readonly WindowCheck[]): WindowState[] {
    const now = Date.now();
    const out: WindowState[] = [];
    for (const w of windows) {
      const s = this.one(w, now);
      out.push(s);
      if (s.current > w.max) break;
    }
    return out;
  }
}

// Every window of one request in one atomic script. ARGV holds (window ms, max, count?) per key.
// A counting window: INCR, and set the expiry with the first hit (or if it was lost). A read-only
// window: GET. Stops after the first window over its max, as MemoryWindows does.
const CHECK_LUA = `
local out = {}
for i = 1, #KEYS do
  local window = tonumber(ARGV[i * 3 - 2])
  local max = tonumber(ARGV[i * 3 - 1])
  local current, ttl
  if ARGV[i * 3] == '1' then
    current = redis.call('INCR', KEYS[i])
    ttl = redis.call('PTTL', KEYS[i])
    if current == 1 or ttl < 0 then
      redis.call('PEXPIRE', KEYS[i], window)
      ttl = window
    end
  else
    current = tonumber(redis.call('GET', KEYS[i]) or '0')
    ttl = 0
    if current > 0 then
      ttl = redis.call('PTTL', KEYS[i])
      if ttl < 0 then ttl = 0 end
    end
  end
  out[#out + 1] = current
  out[#out + 1] = ttl
  if current > max then break end
end
return out`;

export type RedisWithScripts = Redis & {
  obscuraRateCheck(...args: (string | number)[]): Promise<number[]>;
};

/** Connects to Redis at boot (refusing to start if it is unreachable) and defines the counter script. */
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
  redis.defineCommand('obscuraRateCheck', { lua: CHECK_LUA });
  // Load the script now, so a node's first request is an EVALSHA like every other, not an EVALSHA
  // refused with NOSCRIPT and then an EVAL: two round trips inside one command timeout on a cold node.
  try {
    await redis.script('LOAD', CHECK_LUA);
  } catch (err) {
    redis.disconnect();
    throw new Error(`REDIS_URL: cannot load the rate-limit script (${(err as Error).message})`, { cause: err });
  }
  return redis as RedisWithScripts;
}

/** How long a node counts locally after a Redis command failed, before it tries Redis again. */
export const REDIS_RETRY_AFTER_FAILURE_MS = 5000;

/**
 * The counters over Redis, falling back to memory while Redis is unreachable. A frozen Redis still
 * looks connected, so each command would wait out the command timeout: after one failure the node
 * stops asking Redis for a few seconds (a circuit breaker), so an outage costs one timeout per node
 * per interval, not one per request (issue 9, item 17).
 */
export function windowCounters(redis: RedisWithScripts | null, prefix: string, onFallback: (err: unknown) => void): WindowCounters {
  const memory = new MemoryWindows();
  if (!redis) return memory;
  let skipUntil = 0;
  return {
    check(windows) {
      if (redis.status !== 'ready' || Date.now() < skipUntil) return memory.check(windows);
      const args: (string | number)[] = [windows.length];
      for (const w of windows) args.push(prefix + w.key);
      for (const w of windows) args.push(w.windowMs, w.max, w.count ? '1' : '0');
      return redis.obscuraRateCheck(...args).then(
        (flat) => {
          const out: WindowState[] = [];
          for (let i = 0; i + 1 < flat.length; i += 2) out.push({ current: Number(flat[i]), ttl: Number(flat[i + 1]) });
          return out;
        },
        (err: unknown) => {
          skipUntil = Date.now() + REDIS_RETRY_AFTER_FAILURE_MS;
          onFallback(err);
          return memory.check(windows);
        },
      );
    },
  };
}
