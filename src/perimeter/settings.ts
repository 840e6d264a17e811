/**
 * The perimeter section of the configuration (issue 10, item 8): rate limits, slow-client timeouts,
 * load shedding, the HTTP→HTTPS redirect listener and metrics exposure. Its rules against the main
 * listener (ports, HTTPS) are {@link checkPerimeterAgainstServer}, which `config/` calls.
 */
import { ConfigError } from '../errors.js';
import { readInt, type Section, type Source } from '../settings.js';

export interface PerimeterSettings {
  /**
   * Requests per minute per server-side credential: secret or restricted key, OAuth client
   * (`OBSCURA_RATE_LIMIT_PER_MINUTE`, default 60000 = 1000/s). Such a credential belongs to the
   * customer's own backend; the limit stops a runaway loop, it must never throttle normal traffic.
   */
  readonly perKeyPerMinute: number;
  /**
   * Requests per minute per publishable key AND client IP (`OBSCURA_RATE_LIMIT_PUBLISHABLE_PER_MINUTE`,
   * default 600 = 10/s per browser). One publishable key serves every visitor of a site, so each
   * visitor's address gets its own budget; the app limit bounds them together.
   */
  readonly perPublishablePerMinute: number;
  /** Requests per minute per app, all its credentials together (`OBSCURA_RATE_LIMIT_APP_PER_MINUTE`, default 120000 = 2000/s). */
  readonly perAppPerMinute: number;
  /** Requests per minute per client IP on routes without authentication, e.g. signed download and transform URLs (`OBSCURA_RATE_LIMIT_IP_PER_MINUTE`, default 6000 = 100/s). */
  readonly perIpPerMinute: number;
  /** Failed authentications per client IP per minute before that IP gets 429 on authenticated routes (`OBSCURA_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE`, default 30). */
  readonly authFailuresPerMinute: number;
  /** Redis for rate-limit counters shared by every node (`REDIS_URL` or `OBSCURA_REDIS_URL`); unset = per process. Never logged. */
  readonly redisUrl: string | undefined;
  /** Longest a Redis command may take before this node counts locally for a while (`OBSCURA_REDIS_COMMAND_TIMEOUT_MS`, default 250). */
  readonly redisCommandTimeoutMs: number;
  /** Time a client has to send a request's headers (`OBSCURA_HEADERS_TIMEOUT_MS`, default 10000): cuts slowloris clients off. */
  readonly headersTimeoutMs: number;
  /** Time a client has to send a whole request, body included (`OBSCURA_REQUEST_TIMEOUT_MS`, default 120000). */
  readonly requestTimeoutMs: number;
  /** Idle keep-alive connections are closed after this (`OBSCURA_KEEP_ALIVE_TIMEOUT_MS`, default 5000). */
  readonly keepAliveTimeoutMs: number;
  /** Shed load (503 + Retry-After) when the mean event-loop delay exceeds this for two samples in a row (`OBSCURA_SHED_EVENT_LOOP_DELAY_MS`, default 1000; 0 = off). */
  readonly shedEventLoopDelayMs: number;
  /** Shed load above this V8 heap use (`OBSCURA_SHED_HEAP_USED_BYTES`; unset = 90% of the heap limit; 0 = off). */
  readonly shedHeapUsedBytes: number | undefined;
  /** How often pressure is sampled (`OBSCURA_SHED_SAMPLE_INTERVAL_MS`, default 1000). */
  readonly shedSampleIntervalMs: number;
  /** Retry-After sent with a shed request (`OBSCURA_SHED_RETRY_AFTER_SECONDS`, default 10). */
  readonly shedRetryAfterSeconds: number;
  /** A plain-HTTP listener on this port that only redirects to HTTPS (`OBSCURA_HTTP_REDIRECT_PORT`; unset = none). Needs an https public URL. */
  readonly httpRedirectPort: number | undefined;
  /** Separate Prometheus listener port (`OBSCURA_METRICS_PORT`; unset = none). */
  readonly metricsPort: number | undefined;
  /** Its host (`OBSCURA_METRICS_HOST`, default 127.0.0.1; a non-loopback host requires a metrics token). */
  readonly metricsHost: string;
  /** Bearer token for `/metrics` (`OBSCURA_METRICS_TOKEN`, >= 32 chars); when set, `/metrics` is also served on the main listener. Never logged. */
  readonly metricsToken: string | undefined;
}

/** Reads the perimeter section. @throws ConfigError naming the variable. */
function readPerimeter(src: Source): PerimeterSettings {
  const optionalPort = (name: string): number | undefined => (src[name] === undefined || src[name] === '' ? undefined : readInt(src, name, 0, 1, 65535));
  // The environment is merged into `src` (REDIS_URL too), so one lookup covers both.
  const redisUrl = src.OBSCURA_REDIS_URL ?? src.REDIS_URL;
  if (redisUrl !== undefined && !/^rediss?:\/\//.test(redisUrl)) throw new ConfigError('REDIS_URL', 'must be a redis:// or rediss:// URL');
  const headersTimeoutMs = readInt(src, 'OBSCURA_HEADERS_TIMEOUT_MS', 10_000, 1000, 600_000);
  const requestTimeoutMs = readInt(src, 'OBSCURA_REQUEST_TIMEOUT_MS', 120_000, 1000, 24 * 3_600_000);
  // Node requires it, and a request cannot finish before its headers have.
  if (requestTimeoutMs < headersTimeoutMs) throw new ConfigError('OBSCURA_REQUEST_TIMEOUT_MS', `must be at least OBSCURA_HEADERS_TIMEOUT_MS (${headersTimeoutMs})`);
  const httpRedirectPort = optionalPort('OBSCURA_HTTP_REDIRECT_PORT');
  const metricsPort = optionalPort('OBSCURA_METRICS_PORT');
  const metricsHost = src.OBSCURA_METRICS_HOST ?? '127.0.0.1';
  const metricsToken = src.OBSCURA_METRICS_TOKEN;
  if (metricsToken !== undefined && (metricsToken.length < 32 || /\s/.test(metricsToken))) throw new ConfigError('OBSCURA_METRICS_TOKEN', 'must be at least 32 characters without spaces (e.g. `openssl rand -hex 32`)');
  if (metricsPort !== undefined && !['127.0.0.1', '::1', 'localhost'].includes(metricsHost) && metricsToken === undefined) {
    throw new ConfigError('OBSCURA_METRICS_HOST', `serving metrics on ${metricsHost} needs OBSCURA_METRICS_TOKEN (metrics are never public without authentication)`);
  }
  const heap = src.OBSCURA_SHED_HEAP_USED_BYTES;
  return {
    // Defaults per key kind (issue 9, item 22): a backend at 50 req/s sustained is far inside them.
    perKeyPerMinute: readInt(src, 'OBSCURA_RATE_LIMIT_PER_MINUTE', 60_000, 1, 10_000_000),
    perPublishablePerMinute: readInt(src, 'OBSCURA_RATE_LIMIT_PUBLISHABLE_PER_MINUTE', 600, 1, 10_000_000),
    perAppPerMinute: readInt(src, 'OBSCURA_RATE_LIMIT_APP_PER_MINUTE', 120_000, 1, 100_000_000),
    perIpPerMinute: readInt(src, 'OBSCURA_RATE_LIMIT_IP_PER_MINUTE', 6000, 1, 10_000_000),
    authFailuresPerMinute: readInt(src, 'OBSCURA_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE', 30, 1, 1_000_000),
    redisUrl,
    redisCommandTimeoutMs: readInt(src, 'OBSCURA_REDIS_COMMAND_TIMEOUT_MS', 250, 10, 60_000),
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs: readInt(src, 'OBSCURA_KEEP_ALIVE_TIMEOUT_MS', 5000, 1000, 600_000),
    shedEventLoopDelayMs: readInt(src, 'OBSCURA_SHED_EVENT_LOOP_DELAY_MS', 1000, 0, 600_000),
    shedHeapUsedBytes: heap === undefined || heap === '' ? undefined : readInt(src, 'OBSCURA_SHED_HEAP_USED_BYTES', 0, 0, Number.MAX_SAFE_INTEGER),
    shedSampleIntervalMs: readInt(src, 'OBSCURA_SHED_SAMPLE_INTERVAL_MS', 1000, 10, 60_000),
    shedRetryAfterSeconds: readInt(src, 'OBSCURA_SHED_RETRY_AFTER_SECONDS', 10, 1, 3600),
    httpRedirectPort,
    metricsPort,
    metricsHost,
    metricsToken,
  };
}

export const PERIMETER_SETTINGS: Section<PerimeterSettings> = {
  envNames: Object.freeze(['OBSCURA_REDIS_URL', 'OBSCURA_HEADERS_TIMEOUT_MS', 'OBSCURA_HTTP_REDIRECT_PORT', 'OBSCURA_KEEP_ALIVE_TIMEOUT_MS', 'OBSCURA_METRICS_HOST', 'OBSCURA_METRICS_PORT', 'OBSCURA_METRICS_TOKEN', 'OBSCURA_RATE_LIMIT_APP_PER_MINUTE', 'OBSCURA_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE', 'OBSCURA_RATE_LIMIT_IP_PER_MINUTE', 'OBSCURA_RATE_LIMIT_PER_MINUTE', 'OBSCURA_RATE_LIMIT_PUBLISHABLE_PER_MINUTE', 'OBSCURA_REDIS_COMMAND_TIMEOUT_MS', 'OBSCURA_REQUEST_TIMEOUT_MS', 'OBSCURA_SHED_EVENT_LOOP_DELAY_MS', 'OBSCURA_SHED_HEAP_USED_BYTES', 'OBSCURA_SHED_RETRY_AFTER_SECONDS', 'OBSCURA_SHED_SAMPLE_INTERVAL_MS']),
  read: (src) => Object.freeze(readPerimeter(src)),
};

/** The perimeter's rules against the main listener. @throws ConfigError naming the variable. */
export function checkPerimeterAgainstServer(p: PerimeterSettings, main: { port: number; publicUrl: string }): void {
  if (p.httpRedirectPort !== undefined) {
    if (!main.publicUrl.startsWith('https://')) throw new ConfigError('OBSCURA_HTTP_REDIRECT_PORT', 'redirects to HTTPS: configure TLS (OBSCURA_TLS_CERT_FILE/OBSCURA_TLS_KEY_FILE) or an https OBSCURA_PUBLIC_URL');
    if (p.httpRedirectPort === main.port) throw new ConfigError('OBSCURA_HTTP_REDIRECT_PORT', 'must differ from OBSCURA_PORT');
  }
  if (p.metricsPort !== undefined && p.metricsPort === main.port) throw new ConfigError('OBSCURA_METRICS_PORT', 'must differ from OBSCURA_PORT (use OBSCURA_METRICS_TOKEN to serve /metrics on the main listener)');
}
