/**
 * The perimeter section of the configuration (issue 10, item 8): rate limits, slow-client timeouts,
 * load shedding, the HTTP→HTTPS redirect listener and metrics exposure. Its rules against the main
 * listener (ports, HTTPS) are {@link checkPerimeterAgainstServer}, which `config/` calls.
 */
import { ConfigError } from '../errors.js';
import { defineSection, int, optionalInt, str } from '../settings.js';

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

const LOOPBACK = ['127.0.0.1', '::1', 'localhost'];

export const PERIMETER_SETTINGS = defineSection<PerimeterSettings>(
  {
    // Defaults per key kind (issue 9, item 22): a backend at 50 req/s sustained is far inside them.
    perKeyPerMinute: int({ env: 'OBSCURA_RATE_LIMIT_PER_MINUTE', doc: 'Requests per minute per server-side credential (secret or restricted key, OAuth client).', default: 60_000, min: 1, max: 10_000_000 }),
    perPublishablePerMinute: int({ env: 'OBSCURA_RATE_LIMIT_PUBLISHABLE_PER_MINUTE', doc: 'Requests per minute per publishable key and client IP.', default: 600, min: 1, max: 10_000_000 }),
    perAppPerMinute: int({ env: 'OBSCURA_RATE_LIMIT_APP_PER_MINUTE', doc: 'Requests per minute per app, all its credentials together.', default: 120_000, min: 1, max: 100_000_000 }),
    perIpPerMinute: int({ env: 'OBSCURA_RATE_LIMIT_IP_PER_MINUTE', doc: 'Requests per minute per client IP on routes without authentication.', default: 6000, min: 1, max: 10_000_000 }),
    authFailuresPerMinute: int({ env: 'OBSCURA_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE', doc: 'Failed authentications per client IP per minute before 429.', default: 30, min: 1, max: 1_000_000 }),
    // The ecosystem's REDIS_URL is accepted too (the environment is merged into the source).
    redisUrl: {
      env: 'OBSCURA_REDIS_URL',
      doc: 'Redis for rate-limit counters shared by every node (or REDIS_URL); unset = per process. Never logged.',
      defaultText: 'unset',
      read(src) {
        const url = src.OBSCURA_REDIS_URL ?? src.REDIS_URL;
        if (url !== undefined && !/^rediss?:\/\//.test(url)) throw new ConfigError('REDIS_URL', 'must be a redis:// or rediss:// URL');
        return url;
      },
    },
    redisCommandTimeoutMs: int({ env: 'OBSCURA_REDIS_COMMAND_TIMEOUT_MS', doc: 'Longest a Redis command may take before this node counts locally for a while.', default: 250, min: 10, max: 60_000 }),
    headersTimeoutMs: int({ env: 'OBSCURA_HEADERS_TIMEOUT_MS', doc: "Time a client has to send a request's headers.", default: 10_000, min: 1000, max: 600_000 }),
    requestTimeoutMs: int({ env: 'OBSCURA_REQUEST_TIMEOUT_MS', doc: 'Time a client has to send a whole request, body included.', default: 120_000, min: 1000, max: 24 * 3_600_000 }),
    keepAliveTimeoutMs: int({ env: 'OBSCURA_KEEP_ALIVE_TIMEOUT_MS', doc: 'Idle keep-alive connections are closed after this.', default: 5000, min: 1000, max: 600_000 }),
    shedEventLoopDelayMs: int({ env: 'OBSCURA_SHED_EVENT_LOOP_DELAY_MS', doc: 'Shed load above this mean event-loop delay (0 = off).', default: 1000, min: 0, max: 600_000 }),
    shedHeapUsedBytes: optionalInt({ env: 'OBSCURA_SHED_HEAP_USED_BYTES', doc: 'Shed load above this V8 heap use (unset = 90 % of the heap limit; 0 = off).', defaultText: '90 % of the heap limit', min: 0, max: Number.MAX_SAFE_INTEGER }),
    shedSampleIntervalMs: int({ env: 'OBSCURA_SHED_SAMPLE_INTERVAL_MS', doc: 'How often pressure is sampled.', default: 1000, min: 10, max: 60_000 }),
    shedRetryAfterSeconds: int({ env: 'OBSCURA_SHED_RETRY_AFTER_SECONDS', doc: 'Retry-After sent with a shed request.', default: 10, min: 1, max: 3600 }),
    httpRedirectPort: optionalInt({ env: 'OBSCURA_HTTP_REDIRECT_PORT', doc: 'A plain-HTTP listener that only redirects to HTTPS.', min: 1, max: 65535 }),
    metricsPort: optionalInt({ env: 'OBSCURA_METRICS_PORT', doc: 'Separate Prometheus listener port.', min: 1, max: 65535 }),
    metricsHost: str({ env: 'OBSCURA_METRICS_HOST', doc: 'Host of the metrics listener (a non-loopback host needs a metrics token).', default: '127.0.0.1' }),
    metricsToken: str({ env: 'OBSCURA_METRICS_TOKEN', doc: 'Bearer token for /metrics (>= 32 characters). Never logged.', check: (v) => (v.length < 32 || /\s/.test(v) ? 'must be at least 32 characters without spaces (e.g. `openssl rand -hex 32`)' : undefined) }),
  },
  (p) => {
    // Node requires it, and a request cannot finish before its headers have.
    if (p.requestTimeoutMs < p.headersTimeoutMs) throw new ConfigError('OBSCURA_REQUEST_TIMEOUT_MS', `must be at least OBSCURA_HEADERS_TIMEOUT_MS (${p.headersTimeoutMs})`);
    if (p.metricsPort !== undefined && !LOOPBACK.includes(p.metricsHost) && p.metricsToken === undefined) {
      throw new ConfigError('OBSCURA_METRICS_HOST', `serving metrics on ${p.metricsHost} needs OBSCURA_METRICS_TOKEN (metrics are never public without authentication)`);
    }
  },
);

/** The perimeter's rules against the main listener. @throws ConfigError naming the variable. */
export function checkPerimeterAgainstServer(p: PerimeterSettings, main: { port: number; publicUrl: string }): void {
  if (p.httpRedirectPort !== undefined) {
    if (!main.publicUrl.startsWith('https://')) throw new ConfigError('OBSCURA_HTTP_REDIRECT_PORT', 'redirects to HTTPS: configure TLS (OBSCURA_TLS_CERT_FILE/OBSCURA_TLS_KEY_FILE) or an https OBSCURA_PUBLIC_URL');
    if (p.httpRedirectPort === main.port) throw new ConfigError('OBSCURA_HTTP_REDIRECT_PORT', 'must differ from OBSCURA_PORT');
  }
  if (p.metricsPort !== undefined && p.metricsPort === main.port) throw new ConfigError('OBSCURA_METRICS_PORT', 'must differ from OBSCURA_PORT (use OBSCURA_METRICS_TOKEN to serve /metrics on the main listener)');
}
