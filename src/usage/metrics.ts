/**
 * Process-level Prometheus metrics (prom-client). Tenants never become labels: per-org and per-app
 * figures live in the database (`GET /v1/usage`); labels here are bounded sets (route templates, status
 * codes, limit names), so a scrape stays small however many tenants there are.
 *
 * Exposure (never unauthenticated on the public listener): a separate listener
 * (`OBSCURA_METRICS_PORT`, bound to `OBSCURA_METRICS_HOST`, default 127.0.0.1), and/or `GET /metrics`
 * on the main listener when `OBSCURA_METRICS_TOKEN` is set, with `Authorization: Bearer <token>`.
 */
import { listenSide } from '../listen.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ProcessMetrics {
  readonly registry: Registry;
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route'>;
  readonly httpBytesIn: Counter;
  readonly httpBytesOut: Counter;
  readonly rateLimited: Counter<'limit'>;
  readonly quotaExceeded: Counter<'quota'>;
  readonly loadShed: Counter<'reason'>;
  readonly exports: Counter;
  readonly processingSeconds: Counter;
  readonly usageFlushFailures: Counter;
  readonly usagePending: Gauge;
}

let processDefaults: Registry | null = null;

/** Memory held outside V8's own accounting that a capability can report (name → bytes now). */
const memorySources = new Map<string, { bytes: () => number | undefined; limit?: (() => number) | undefined }>(); // bounded: one entry per source the composition root names

/**
 * Adds a part to `obscura_memory_bytes` (e.g. `image_cache`: libvips' operation cache), with its bound
 * in bytes as `obscura_memory_limit_bytes` when it has one. The composition root registers what it
 * builds; a later registration under the same name replaces it.
 */
export function registerMemorySource(part: string, bytes: () => number | undefined, limit?: () => number): void {
  memorySources.set(part, { bytes, limit });
}

/** One reading of /proc/self/status (Linux): resident memory by kind, its peak and the thread count. */
interface ProcStatus {
  rss: number;
  rssAnon: number;
  rssFile: number;
  rssShmem: number;
  peak: number;
  threads: number;
}

function procStatus(): ProcStatus | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/status', 'utf8');
  } catch {
    return undefined; // not Linux: process.memoryUsage() still gives the rest
  }
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  const threads = Number(/^Threads:\s+(\d+)/m.exec(text)?.[1] ?? NaN);
  const s = { rss: kb('VmRSS'), rssAnon: kb('RssAnon'), rssFile: kb('RssFile'), rssShmem: kb('RssShmem'), peak: kb('VmHWM'), threads };
  return Object.values(s).every(Number.isFinite) ? s : undefined;
}

/**
 * The memory breakdown operators see on /metrics (issue 12, item 6), one gauge with a `part` label:
 * - `rss` = `rss_anon` + `rss_file` + `rss_shmem` (the kernel's split, all threads of the process:
 *   the embedded database's worker, libuv's pool, libvips' threads);
 * - `v8_heap_total` / `v8_heap_used`: the JavaScript heap of the main thread;
 * - `external`: memory the main thread's V8 objects hold outside that heap (Buffers, WebAssembly
 *   memories), `array_buffers` the Buffer part of it (the embedded database's thread has its own heap:
 *   it shows in `rss` only);
 * - whatever the composition root registered ({@link registerMemorySource}).
 * Plus the peak resident size and the thread count.
 */
function memoryMetrics(register: Registry): void {
  new Gauge({
    name: 'obscura_memory_bytes',
    help: 'Memory of this process by part: rss = rss_anon + rss_file + rss_shmem; V8 heap, external (Buffers, WebAssembly) and registered caches.',
    labelNames: ['part'],
    registers: [register],
    collect() {
      this.reset();
      const st = procStatus();
      const mu = process.memoryUsage();
      this.set({ part: 'rss' }, st?.rss ?? mu.rss);
      if (st) {
        this.set({ part: 'rss_anon' }, st.rssAnon);
        this.set({ part: 'rss_file' }, st.rssFile);
        this.set({ part: 'rss_shmem' }, st.rssShmem);
      }
      this.set({ part: 'v8_heap_total' }, mu.heapTotal);
      this.set({ part: 'v8_heap_used' }, mu.heapUsed);
      this.set({ part: 'external' }, mu.external);
      this.set({ part: 'array_buffers' }, mu.arrayBuffers);
      for (const [part, source] of memorySources) {
        const v = source.bytes();
        if (v !== undefined && Number.isFinite(v)) this.set({ part }, v);
      }
    },
  });
  new Gauge({
    name: 'obscura_memory_limit_bytes',
    help: 'The bound in bytes of each bounded part of obscura_memory_bytes (caches).',
    labelNames: ['part'],
    registers: [register],
    collect() {
      this.reset();
      for (const [part, source] of memorySources) if (source.limit) this.set({ part }, source.limit());
    },
  });
  new Gauge({
    name: 'obscura_memory_peak_rss_bytes',
    help: 'Highest resident memory of this process since it started (VmHWM).',
    registers: [register],
    collect() {
      const st = procStatus();
      if (st) this.set(st.peak);
    },
  });
  new Gauge({
    name: 'obscura_process_threads',
    help: 'Threads of this process (main, V8, libuv pool, libvips, database worker).',
    registers: [register],
    collect() {
      const st = procStatus();
      if (st) this.set(st.threads);
    },
  });
}

/** Node's own metrics (CPU, memory, event loop, GC), collected once per process whatever the number of apps. */
function defaultRegistry(): Registry {
  if (!processDefaults) {
    processDefaults = new Registry();
    collectDefaultMetrics({ register: processDefaults, prefix: 'obscura_' });
    memoryMetrics(processDefaults);
  }
  return processDefaults;
}

/** The exposition text: this app's metrics plus the process defaults. */
export async function metricsText(m: ProcessMetrics): Promise<string> {
  return Registry.merge([defaultRegistry(), m.registry]).metrics();
}

/** Prometheus text exposition content type. */
export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/** A fresh registry for one app (several servers in one process never collide). */
export function createProcessMetrics(): ProcessMetrics {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    httpRequests: new Counter({ name: 'obscura_http_requests_total', help: 'HTTP requests answered, by method, route template and status.', labelNames: ['method', 'route', 'status'], registers }),
    httpDuration: new Histogram({
      name: 'obscura_http_request_duration_seconds',
      help: 'Time to answer HTTP requests, by method and route template.',
      labelNames: ['method', 'route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    httpBytesIn: new Counter({ name: 'obscura_http_received_bytes_total', help: 'Bytes received on HTTP connections.', registers }),
    httpBytesOut: new Counter({ name: 'obscura_http_sent_bytes_total', help: 'Bytes sent on HTTP connections.', registers }),
    rateLimited: new Counter({ name: 'obscura_rate_limited_total', help: 'Requests refused with 429 by a rate limit (key, app, ip, auth_failures).', labelNames: ['limit'], registers }),
    quotaExceeded: new Counter({ name: 'obscura_quota_exceeded_total', help: 'Requests refused because an app used up a monthly quota.', labelNames: ['quota'], registers }),
    loadShed: new Counter({ name: 'obscura_load_shed_total', help: 'Requests refused with 503 under pressure (event loop delay, heap).', labelNames: ['reason'], registers }),
    exports: new Counter({ name: 'obscura_exports_total', help: 'Outputs produced (all tenants).', registers }),
    processingSeconds: new Counter({ name: 'obscura_processing_seconds_total', help: 'Media processing time (all tenants).', registers }),
    usageFlushFailures: new Counter({ name: 'obscura_usage_flush_failures_total', help: 'Failed writes of buffered usage counts (retried).', registers }),
    usagePending: new Gauge({ name: 'obscura_usage_pending_entries', help: 'Usage entries buffered in memory, not yet written.', registers }),
  };
}

/** Constant-time check of a presented metrics token (both sides hashed first, so lengths do not leak). */
export function metricsTokenMatches(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** Extracts the token from `Authorization: Bearer <token>`. */
export function bearerOf(header: string | undefined): string | undefined {
  const m = header ? /^Bearer[ ]+(\S+)\s*$/i.exec(header) : null;
  return m ? m[1] : undefined;
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` on its own listener (default host 127.0.0.1, so only the machine's own
 * scraper reaches it). With a `token`, a bearer token is required there too. Nothing else is served.
 */
export async function startMetricsServer(opts: { host: string; port: number; metrics: ProcessMetrics; token?: string | undefined }): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
      return;
    }
    if (opts.token !== undefined && !metricsTokenMatches(bearerOf(req.headers.authorization), opts.token)) {
      res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer realm="obscura-metrics"' }).end('unauthorized\n');
      return;
    }
    metricsText(opts.metrics).then(
      (text) => res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : text),
      () => res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('error\n'),
    );
  });
  return listenSide(server, { port: opts.port, host: opts.host, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 5_000 });
}
