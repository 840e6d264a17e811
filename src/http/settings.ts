/**
 * The server section of the configuration (issue 10, item 8): the main listener (host, port, TLS,
 * trusted proxies, public URL), the JSON body limit, the shutdown drain, the log level and the role of
 * the process. `config/` spreads it over the top level, `http`, `log` and `unsafe` of `Config`.
 */
import { ConfigError } from '../errors.js';
import { bool, defineSection, int, list, oneOf, str, type Section, type Source } from '../settings.js';

export type Role = 'all' | 'api' | 'worker';

export interface ServerSettings {
  /** Listener host (default `127.0.0.1`: not reachable from other machines until an operator says so). */
  readonly host: string;
  /** Listener port (default 8080; 0 picks a free one). */
  readonly port: number;
  /** Which parts run in this process (default `all`). */
  readonly role: Role;
  /** Trust `X-Forwarded-*` from these proxies (comma-separated IPs/CIDRs; default none). */
  readonly trustProxy: readonly string[];
  /** Maximum JSON body size in bytes (default 1 MiB). */
  readonly bodyLimit: number;
  /** TLS certificate and key files; when both are set the listener speaks HTTPS (TLS >= 1.2). */
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  /** On SIGTERM/SIGINT, how long running requests may finish while new ones get 503, ms. */
  readonly shutdownDrainMs: number;
  /** pino level (default `info`). */
  readonly logLevel: string;
  /** Listen on a non-loopback address over plain HTTP without a trusted proxy. Default false; reported by `doctor`. */
  readonly allowPlainHttp: boolean;
  /** The public base URL clients use (signed URLs, token issuer, OpenAPI servers). Default `http(s)://<host>:<port>`. */
  readonly publicUrl: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const FIELDS = defineSection<Omit<ServerSettings, 'publicUrl'>>({
  host: str({ env: 'OBSCURA_HOST', doc: 'Listen address; a non-loopback one over plain HTTP needs TLS, a trusted proxy or the unsafe switch.', default: '127.0.0.1' }),
  port: int({ env: 'OBSCURA_PORT', doc: 'Listen port (0 picks a free one).', default: 8080, min: 0, max: 65535 }),
  role: oneOf({ env: 'OBSCURA_ROLE', doc: 'Which parts run in this process.', values: ['all', 'api', 'worker'], default: 'all' }),
  trustProxy: list({ env: 'OBSCURA_TRUST_PROXY', doc: 'Proxies (IPs/CIDRs) whose X-Forwarded-* headers are trusted.' }),
  bodyLimit: int({ env: 'OBSCURA_BODY_LIMIT', doc: 'Maximum JSON body in bytes.', default: 1024 * 1024, min: 1024, max: 100 * 1024 * 1024 }),
  tlsCertFile: str({ env: 'OBSCURA_TLS_CERT_FILE', doc: 'TLS certificate file (with the key file: HTTPS, TLS 1.2 minimum).' }),
  tlsKeyFile: str({ env: 'OBSCURA_TLS_KEY_FILE', doc: 'TLS private key file.' }),
  shutdownDrainMs: int({ env: 'OBSCURA_SHUTDOWN_DRAIN_MS', doc: 'On SIGTERM/SIGINT, how long running requests may finish, ms.', default: 120_000, min: 0, max: 24 * 3_600_000 }),
  logLevel: oneOf({ env: 'OBSCURA_LOG_LEVEL', doc: 'pino level.', values: LOG_LEVELS, default: 'info', message: `must be one of ${LOG_LEVELS.join(', ')}` }),
  allowPlainHttp: bool({ env: 'OBSCURA_UNSAFE_ALLOW_PLAIN_HTTP', doc: 'Allow plain HTTP on a non-loopback address without a proxy.', default: false }),
});

const PUBLIC_URL_ENV = 'OBSCURA_PUBLIC_URL';

/** Reads the server section and its rules between fields. @throws ConfigError naming the variable. */
function readServer(src: Source): ServerSettings {
  const f = FIELDS.read(src);
  if ((f.tlsCertFile === undefined) !== (f.tlsKeyFile === undefined)) {
    throw new ConfigError(f.tlsCertFile ? 'OBSCURA_TLS_KEY_FILE' : 'OBSCURA_TLS_CERT_FILE', 'TLS needs both a certificate and a key file');
  }
  const loopback = f.host === '127.0.0.1' || f.host === '::1' || f.host === 'localhost';
  // Secure by default: refuse to serve plain HTTP to the network unless TLS ends at a trusted proxy
  // or the operator said so explicitly (STYLE.md: refuse to start rather than warn).
  if (!loopback && !f.tlsCertFile && f.trustProxy.length === 0 && !f.allowPlainHttp) {
    throw new ConfigError(
      'OBSCURA_HOST',
      `listening on ${f.host} over plain HTTP needs TLS (OBSCURA_TLS_CERT_FILE/OBSCURA_TLS_KEY_FILE), a trusted proxy (OBSCURA_TRUST_PROXY) or OBSCURA_UNSAFE_ALLOW_PLAIN_HTTP=true`,
    );
  }
  const scheme = f.tlsCertFile ? 'https' : 'http';
  const publicUrl = (src[PUBLIC_URL_ENV] ?? `${scheme}://${f.host.includes(':') ? `[${f.host}]` : f.host}:${f.port}`).replace(/\/+$/, '');
  try {
    const u = new URL(publicUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
  } catch {
    throw new ConfigError(PUBLIC_URL_ENV, `must be an absolute http(s) URL, got "${publicUrl}"`);
  }
  return { ...f, publicUrl };
}

export const SERVER_SETTINGS: Section<ServerSettings> = {
  envNames: Object.freeze([...FIELDS.envNames, PUBLIC_URL_ENV]),
  read: (src) => Object.freeze(readServer(src)),
};
