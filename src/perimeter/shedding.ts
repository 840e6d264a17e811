/**
 * Load shedding (the first app-level onRequest hook): 503 ERR_UNAVAILABLE + Retry-After when the event
 * loop has lagged for two samples in a row ({@link LagMonitor}, plugged in as under-pressure's health
 * check) or the heap is nearly full, before any work is done for the request.
 */
import { getHeapStatistics } from 'node:v8';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import underPressure from '@fastify/under-pressure';
import { AppError } from '../errors.js';
import type { ProcessMetrics } from '../usage/metrics.js';
import type { PerimeterSettings } from './settings.js';

/**
 * Mean event-loop delay per sample interval; `lagging` once `samples` consecutive intervals exceed the
 * threshold. under-pressure's own check sheds on a single sample, so one long synchronous stall (a
 * GC pause, an embedded-database migration) would turn away every request for the following interval
 * although the loop is already free again; shedding is for overload that persists.
 */
export class LagMonitor {
  private readonly histogram = monitorEventLoopDelay({ resolution: 10 });
  private timer: NodeJS.Timeout | undefined;
  private streak = 0;

  constructor(
    private readonly thresholdMs: number,
    private readonly intervalMs: number,
    private readonly samples = 2,
  ) {}

  /** Starts sampling (idempotent). Until then the loop does not count as lagging. */
  start(): void {
    if (this.timer) return;
    this.histogram.enable();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
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
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.histogram.disable();
  }
}

/** The shedding plugin. */
export const loadShedding = fp(
  async (app: FastifyInstance, opts: { settings: PerimeterSettings; metrics: ProcessMetrics }) => {
    const p = opts.settings;
    const heapLimit = p.shedHeapUsedBytes ?? Math.floor(getHeapStatistics().heap_size_limit * 0.9);
    const lag = p.shedEventLoopDelayMs > 0 ? new LagMonitor(p.shedEventLoopDelayMs, p.shedSampleIntervalMs) : null;
    // Sampling starts once the server listens: building the app (compiling every route's schemas,
    // migrations) holds the loop for seconds before any request can arrive, and counted as overload
    // it made a freshly started server answer its first requests with 503.
    app.addHook('onListen', async () => lag?.start());
    app.addHook('onClose', async () => lag?.close());
    await app.register(underPressure, {
      maxHeapUsedBytes: heapLimit,
      sampleInterval: p.shedSampleIntervalMs,
      ...(lag ? { healthCheck: async () => !lag.lagging, healthCheckInterval: p.shedSampleIntervalMs } : {}),
      pressureHandler: async (_req: FastifyRequest, _reply: FastifyReply, type: string) => {
        opts.metrics.loadShed.inc({ reason: type === 'heapUsedBytes' ? 'heap' : type === 'healthCheck' ? 'event_loop_delay' : 'other' });
        throw new AppError('ERR_UNAVAILABLE', 'The server is under heavy load; retry shortly.', { headers: { 'Retry-After': String(p.shedRetryAfterSeconds) } });
      },
    });
  },
  { name: 'obscura-load-shedding' },
);

/** Slowloris: the HTTP server's header, request and keep-alive timeouts (set before it listens). */
export const slowClientTimeouts = fp(
  async (app: FastifyInstance, opts: { settings: PerimeterSettings }) => {
    const p = opts.settings;
    // Node cuts a connection whose headers (or whole request) take too long, but only checks every
    // `connectionsCheckingInterval` (30 s by default), read when the server starts listening.
    const server = app.server as typeof app.server & { headersTimeout: number; requestTimeout: number; keepAliveTimeout: number; connectionsCheckingInterval: number };
    server.headersTimeout = p.headersTimeoutMs;
    server.requestTimeout = p.requestTimeoutMs;
    server.keepAliveTimeout = p.keepAliveTimeoutMs;
    server.connectionsCheckingInterval = Math.min(5000, Math.max(100, Math.floor(p.headersTimeoutMs / 4)));
  },
  { name: 'obscura-slow-client-timeouts' },
);
