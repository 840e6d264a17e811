/**
 * Settings: loaded once by the composition root (`main.ts`) from `OBSCURA_*` environment variables and
 * an optional JSON file, validated at boot with messages naming the setting, then frozen and passed
 * down. No other module reads `process.env`.
 *
 * Precedence: environment > file (`OBSCURA_CONFIG_FILE`) > defaults. Every default is the safe one;
 * options that weaken security are named `unsafe...` / `allow...` and reported by `obscura doctor`.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { readInt } from '../settings.js';
import { PROCESSING_SETTINGS, type ProcessingSettings } from '../processing/settings.js';
import { MEDIA_SETTINGS, type MediaSettings } from '../media/settings.js';
import { JOBS_SETTINGS, type JobsSettings } from '../jobs/settings.js';
import { DOWNLOAD_SETTINGS, MAINTENANCE_SETTINGS, type DownloadSettings, type MaintenanceSettings, type StorageSettings, type UploadSettings } from '../assets/settings.js';
import { PERIMETER_SETTINGS, checkPerimeterAgainstServer, type PerimeterSettings } from '../perimeter/settings.js';
import { AUTH_SETTINGS, OAUTH_SETTINGS, type AuthSettings, type OAuthSettings } from '../auth/settings.js';

export type DatabaseKind = 'pglite' | 'postgres';
export type Role = 'all' | 'api' | 'worker';

export interface Config {
  /** Data directory (default `./data`): PGlite database, local blobs, embedded master key. Locked exclusively. */
  readonly dataDir: string;
  /** Listener host (default `127.0.0.1`: not reachable from other machines until an operator says so). */
  readonly host: string;
  /** Listener port (default 8080). */
  readonly port: number;
  /** Which parts run in this process (default `all`). */
  readonly role: Role;
  /** The public base URL clients use (for signed URLs, OpenAPI servers). Default `http://<host>:<port>`. */
  readonly publicUrl: string;
  readonly database: {
    /** `postgres` when `DATABASE_URL` (or `OBSCURA_DATABASE_URL`) is set, else the embedded `pglite`. */
    readonly kind: DatabaseKind;
    /** Connection string (postgres only). Never logged. */
    readonly url: string | undefined;
    /**
     * Connection string of the schema owner, used only to migrate (`OBSCURA_MIGRATION_DATABASE_URL`,
     * postgres only; `obscura migrate`). Unset: `DATABASE_URL` migrates when its role owns the schema.
     * Security: give `DATABASE_URL` a login role that is only a member of `obscura_runtime`, and keep
     * this URL out of the server's environment, so nothing the server holds can alter a table or a
     * trigger (README, "Running on PostgreSQL"). Never logged.
     */
    readonly migrationUrl: string | undefined;
    /** Pool size per process (postgres only, default 10). */
    readonly poolSize: number;
    /**
     * Longest a statement may run or wait for its answer (`OBSCURA_DATABASE_QUERY_TIMEOUT_MS`, default
     * 15000; postgres only): sent as `statement_timeout` and enforced on our side too, so a frozen or
     * partitioned server answers 503 instead of hanging requests.
     */
    readonly queryTimeoutMs: number;
    /** Longest wait for a pooled connection or a new one (`OBSCURA_DATABASE_CONNECT_TIMEOUT_MS`, default 5000). */
    readonly connectTimeoutMs: number;
  };
  /**
   * The master key (32 bytes) wrapping every tenant key, from `OBSCURA_MASTER_KEY` (64 hex chars or
   * base64). When unset in embedded mode a key file is generated in the data dir (mode 0600), which
   * `doctor` reports: anyone with a copy of the data dir then has the key too.
   */
  readonly masterKey: string | undefined;
  /** Previous master keys still accepted for unwrapping during rotation (`OBSCURA_PREVIOUS_MASTER_KEYS`, comma-separated). */
  readonly previousMasterKeys: readonly string[];
  /** Key cache and failed-auth bursts (src/auth/settings.ts). */
  readonly auth: AuthSettings;

  /** Access tokens and their signing keys (src/auth/settings.ts). */
  readonly oauth: OAuthSettings;

  readonly http: {
    /** Trust `X-Forwarded-*` from these proxies (comma-separated IPs/CIDRs; default none). */
    readonly trustProxy: readonly string[];
    /** Maximum JSON body size in bytes (default 1 MiB). */
    readonly bodyLimit: number;
    /** TLS certificate and key files; when both are set the listener speaks HTTPS (TLS >= 1.2). */
    readonly tlsCertFile: string | undefined;
    readonly tlsKeyFile: string | undefined;
    /**
     * On SIGTERM/SIGINT, how long running requests may finish while new ones get 503
     * (`OBSCURA_SHUTDOWN_DRAIN_MS`, default 120000: the request time limit, so an upload or download
     * within the limits completes). Then remaining connections are cut; the data-dir lock is released
     * either way.
     */
    readonly shutdownDrainMs: number;
  };
  /** Where blobs live (src/assets/settings.ts). */
  readonly storage: StorageSettings;

  /** Upload sizes, presigned URLs, tus segments and the bounds on unfinished uploads (src/assets/settings.ts). */
  readonly uploads: UploadSettings;

  /** Signed download URLs (src/assets/settings.ts). */
  readonly downloads: DownloadSettings;

  readonly log: {
    /** pino level (default `info`). */
    readonly level: string;
  };
  /** Sync processing, its fair queue and remote inputs (src/processing/settings.ts). */
  readonly processing: ProcessingSettings;
  /** The operator's media limits, the ceiling for every app (src/media/settings.ts). */
  readonly media: MediaSettings;

  /** Workers, retries, polling and webhook retries (src/jobs/settings.ts). */
  readonly jobs: JobsSettings;

  /** Housekeeping of worker processes (src/assets/maintenance.ts, src/assets/orphans.ts). */
  /** Housekeeping of worker processes (src/assets/settings.ts). */
  readonly maintenance: MaintenanceSettings;

  /** Rate limits, timeouts, load shedding, redirect and metrics listeners (src/perimeter/settings.ts). */
  readonly perimeter: PerimeterSettings;

  /** Explicitly unsafe switches (each reported by `obscura doctor`). */
  readonly unsafe: {
    /** Listen on a non-loopback address over plain HTTP without a trusted proxy. Default false. */
    readonly allowPlainHttp: boolean;
    /** Remote inputs, presigned PUTs and webhooks may use plain `http:` (`OBSCURA_UNSAFE_REMOTE_ALLOW_HTTP`, development only). Default false. */
    readonly remoteAllowHttp: boolean;
    /** Remote URLs may point at private/loopback addresses, never cloud metadata (`OBSCURA_UNSAFE_REMOTE_ALLOW_PRIVATE`, development only: an SSRF primitive). Default false. */
    readonly remoteAllowPrivate: boolean;
  };
}


type Source = Record<string, string | undefined>;

/** The sections capabilities declare next to their code (each variable is named once, there). */
const SECTIONS = [PERIMETER_SETTINGS, AUTH_SETTINGS, OAUTH_SETTINGS, DOWNLOAD_SETTINGS, MAINTENANCE_SETTINGS, PROCESSING_SETTINGS, MEDIA_SETTINGS, JOBS_SETTINGS] as const;

/** Variables this loader reads itself; the capabilities' sections declare the rest (SECTIONS). */
const KNOWN = new Set([
  ...SECTIONS.flatMap((section) => section.envNames),
  'OBSCURA_DATA_DIR', 'OBSCURA_HOST', 'OBSCURA_PORT', 'OBSCURA_ROLE', 'OBSCURA_PUBLIC_URL', 'OBSCURA_DATABASE_URL', 'OBSCURA_MIGRATION_DATABASE_URL',
  'OBSCURA_DATABASE_POOL_SIZE', 'OBSCURA_SHUTDOWN_DRAIN_MS', 'OBSCURA_DATABASE_QUERY_TIMEOUT_MS', 'OBSCURA_DATABASE_CONNECT_TIMEOUT_MS', 'OBSCURA_S3_REQUEST_TIMEOUT_MS', 'OBSCURA_S3_CONNECT_TIMEOUT_MS', 'OBSCURA_MASTER_KEY', 'OBSCURA_PREVIOUS_MASTER_KEYS', 'OBSCURA_TRUST_PROXY', 'OBSCURA_BODY_LIMIT',
  'OBSCURA_TLS_CERT_FILE', 'OBSCURA_TLS_KEY_FILE', 'OBSCURA_LOG_LEVEL', 'OBSCURA_UNSAFE_ALLOW_PLAIN_HTTP',
  'OBSCURA_CONFIG_FILE', 'OBSCURA_STORE', 'OBSCURA_S3_BUCKET', 'OBSCURA_S3_ENDPOINT', 'OBSCURA_S3_REGION', 'OBSCURA_S3_PREFIX',
  'OBSCURA_S3_FORCE_PATH_STYLE', 'OBSCURA_MAX_SIMPLE_UPLOAD_BYTES', 'OBSCURA_MAX_UPLOAD_BYTES', 'OBSCURA_PRESIGN_TTL_SECONDS', 'OBSCURA_UPLOAD_SEGMENT_BYTES',
  'OBSCURA_MAX_OPEN_UPLOADS_PER_APP', 'OBSCURA_MAX_OPEN_UPLOADS_PER_ORG', 'OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_APP', 'OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_ORG', 'OBSCURA_UNSAFE_REMOTE_ALLOW_HTTP', 'OBSCURA_UNSAFE_REMOTE_ALLOW_PRIVATE',
  // client commands (src/cli/credentials.ts); the server ignores them
  'OBSCURA_URL', 'OBSCURA_API_KEY', 'OBSCURA_CREDENTIALS_FILE',
]);

function bool(src: Source, name: string, def: boolean): boolean {
  const raw = src[name];
  if (raw === undefined || raw === '') return def;
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function list(src: Source, name: string): string[] {
  const raw = src[name];
  if (!raw) return [];
  return raw.split(',').map((s) => s.trim()).filter(Boolean);
}

function readFileSource(path: string): Source {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError('OBSCURA_CONFIG_FILE', `cannot read ${path} as JSON (${(err as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError('OBSCURA_CONFIG_FILE', 'must contain a JSON object of OBSCURA_* settings');
  }
  const out: Source = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (!KNOWN.has(k) || k === 'OBSCURA_CONFIG_FILE') throw new ConfigError(k, `unknown setting in ${path}`);
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new ConfigError(k, `must be a string, number or boolean in ${path}`);
    }
    out[k] = String(v);
  }
  return out;
}

/**
 * Builds the frozen configuration from an environment (usually `process.env`).
 * Unknown `OBSCURA_*` variables are refused so that a typo never silently falls back to a default.
 */
export function loadConfig(env: Source, cwd = process.cwd()): Config {
  for (const k of Object.keys(env)) {
    if (k.startsWith('OBSCURA_') && !KNOWN.has(k) && !k.startsWith('OBSCURA_TEST_')) {
      throw new ConfigError(k, 'unknown setting (check the spelling; see the configuration table in README.md)');
    }
  }
  const file = env.OBSCURA_CONFIG_FILE ? readFileSource(resolve(cwd, env.OBSCURA_CONFIG_FILE)) : {};
  const src: Source = { ...file };
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') src[k] = v;

  const dataDir = resolve(cwd, src.OBSCURA_DATA_DIR ?? './data');
  const host = src.OBSCURA_HOST ?? '127.0.0.1';
  const port = readInt(src, 'OBSCURA_PORT', 8080, 0, 65535);
  const role = (src.OBSCURA_ROLE ?? 'all') as Role;
  if (!['all', 'api', 'worker'].includes(role)) throw new ConfigError('OBSCURA_ROLE', 'must be all, api or worker');

  const dbUrl = src.OBSCURA_DATABASE_URL ?? src.DATABASE_URL ?? env.DATABASE_URL;
  if (dbUrl !== undefined && !/^postgres(ql)?:\/\//.test(dbUrl)) {
    throw new ConfigError('DATABASE_URL', 'must be a postgres:// or postgresql:// connection string');
  }
  const migrationUrl = src.OBSCURA_MIGRATION_DATABASE_URL;
  if (migrationUrl !== undefined && (!dbUrl || !/^postgres(ql)?:\/\//.test(migrationUrl))) {
    throw new ConfigError('OBSCURA_MIGRATION_DATABASE_URL', dbUrl ? 'must be a postgres:// or postgresql:// connection string' : 'needs DATABASE_URL too (the embedded database has no separate roles)');
  }

  const trustProxy = list(src, 'OBSCURA_TRUST_PROXY');
  const tlsCertFile = src.OBSCURA_TLS_CERT_FILE;
  const tlsKeyFile = src.OBSCURA_TLS_KEY_FILE;
  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    throw new ConfigError(tlsCertFile ? 'OBSCURA_TLS_KEY_FILE' : 'OBSCURA_TLS_CERT_FILE', 'TLS needs both a certificate and a key file');
  }
  const allowPlainHttp = bool(src, 'OBSCURA_UNSAFE_ALLOW_PLAIN_HTTP', false);
  const loopback = host === '127.0.0.1' || host === '::1' || host === 'localhost';
  // Secure by default: refuse to serve plain HTTP to the network unless TLS ends at a trusted proxy
  // or the operator said so explicitly (STYLE.md: refuse to start rather than warn).
  if (!loopback && !tlsCertFile && trustProxy.length === 0 && !allowPlainHttp) {
    throw new ConfigError(
      'OBSCURA_HOST',
      `listening on ${host} over plain HTTP needs TLS (OBSCURA_TLS_CERT_FILE/OBSCURA_TLS_KEY_FILE), a trusted proxy (OBSCURA_TRUST_PROXY) or OBSCURA_UNSAFE_ALLOW_PLAIN_HTTP=true`,
    );
  }
  const scheme = tlsCertFile ? 'https' : 'http';
  const publicUrl = (src.OBSCURA_PUBLIC_URL ?? `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`).replace(/\/+$/, '');
  try {
    const u = new URL(publicUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
  } catch {
    throw new ConfigError('OBSCURA_PUBLIC_URL', `must be an absolute http(s) URL, got "${publicUrl}"`);
  }
  const logLevel = src.OBSCURA_LOG_LEVEL ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError('OBSCURA_LOG_LEVEL', 'must be one of fatal, error, warn, info, debug, trace, silent');
  }

  const storeKind = (src.OBSCURA_STORE ?? 'fs') as 'fs' | 's3';
  if (storeKind !== 'fs' && storeKind !== 's3') throw new ConfigError('OBSCURA_STORE', 'must be fs or s3');
  if (storeKind === 's3' && !src.OBSCURA_S3_BUCKET) throw new ConfigError('OBSCURA_S3_BUCKET', 'is required when OBSCURA_STORE=s3');
  if (src.OBSCURA_S3_ENDPOINT) {
    try {
      new URL(src.OBSCURA_S3_ENDPOINT);
    } catch {
      throw new ConfigError('OBSCURA_S3_ENDPOINT', 'must be an absolute URL');
    }
  }

  const config: Config = {
    dataDir,
    host,
    port,
    role,
    publicUrl,
    database: {
      kind: dbUrl ? 'postgres' : 'pglite',
      url: dbUrl,
      migrationUrl,
      poolSize: readInt(src, 'OBSCURA_DATABASE_POOL_SIZE', 10, 1, 500),
      queryTimeoutMs: readInt(src, 'OBSCURA_DATABASE_QUERY_TIMEOUT_MS', 15_000, 100, 3_600_000),
      connectTimeoutMs: readInt(src, 'OBSCURA_DATABASE_CONNECT_TIMEOUT_MS', 5000, 100, 600_000),
    },
    masterKey: src.OBSCURA_MASTER_KEY,
    previousMasterKeys: list(src, 'OBSCURA_PREVIOUS_MASTER_KEYS'),
    auth: AUTH_SETTINGS.read(src),

    oauth: OAUTH_SETTINGS.read(src),

    http: {
      trustProxy,
      bodyLimit: readInt(src, 'OBSCURA_BODY_LIMIT', 1024 * 1024, 1024, 100 * 1024 * 1024),
      tlsCertFile,
      tlsKeyFile,
      shutdownDrainMs: readInt(src, 'OBSCURA_SHUTDOWN_DRAIN_MS', 120_000, 0, 24 * 3_600_000),
    },
    storage: {
      kind: storeKind,
      s3: {
        bucket: src.OBSCURA_S3_BUCKET,
        endpoint: src.OBSCURA_S3_ENDPOINT,
        region: src.OBSCURA_S3_REGION ?? 'us-east-1',
        prefix: src.OBSCURA_S3_PREFIX ?? '',
        forcePathStyle: bool(src, 'OBSCURA_S3_FORCE_PATH_STYLE', false),
        requestTimeoutMs: readInt(src, 'OBSCURA_S3_REQUEST_TIMEOUT_MS', 30_000, 100, 3_600_000),
        connectTimeoutMs: readInt(src, 'OBSCURA_S3_CONNECT_TIMEOUT_MS', 5000, 100, 600_000),
      },
    },
    uploads: {
      maxSimpleBytes: readInt(src, 'OBSCURA_MAX_SIMPLE_UPLOAD_BYTES', 25 * 1000 * 1000, 1, 1024 ** 3),
      maxBytes: readInt(src, 'OBSCURA_MAX_UPLOAD_BYTES', 5 * 1024 ** 3, 1, 5 * 1024 ** 4),
      presignTtlSeconds: readInt(src, 'OBSCURA_PRESIGN_TTL_SECONDS', 900, 30, 3600),
      segmentBytes: readInt(src, 'OBSCURA_UPLOAD_SEGMENT_BYTES', 8 * 1024 ** 2, 64 * 1024, 1024 ** 3),
      limits: {
        maxOpenPerApp: readInt(src, 'OBSCURA_MAX_OPEN_UPLOADS_PER_APP', 1000, 1, 10_000_000),
        maxOpenPerOrg: readInt(src, 'OBSCURA_MAX_OPEN_UPLOADS_PER_ORG', 5000, 1, 10_000_000),
        maxReservedBytesPerApp: readInt(src, 'OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_APP', 100 * 1024 ** 3, 1, Number.MAX_SAFE_INTEGER),
        maxReservedBytesPerOrg: readInt(src, 'OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_ORG', 500 * 1024 ** 3, 1, Number.MAX_SAFE_INTEGER),
      },
    },
    downloads: DOWNLOAD_SETTINGS.read(src),
    log: { level: logLevel },
    processing: PROCESSING_SETTINGS.read(src),
    media: MEDIA_SETTINGS.read(src),

    jobs: JOBS_SETTINGS.read(src),

    maintenance: MAINTENANCE_SETTINGS.read(src),

    perimeter: PERIMETER_SETTINGS.read(src),
    unsafe: { allowPlainHttp, remoteAllowHttp: bool(src, 'OBSCURA_UNSAFE_REMOTE_ALLOW_HTTP', false), remoteAllowPrivate: bool(src, 'OBSCURA_UNSAFE_REMOTE_ALLOW_PRIVATE', false) },
  };
  checkPerimeterAgainstServer(config.perimeter, { port, publicUrl });
  return deepFreeze(config);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** A report line from `obscura doctor`. */
export interface DoctorFinding {
  readonly level: 'unsafe' | 'warn' | 'ok';
  readonly setting: string;
  readonly message: string;
}

/**
 * Reviews a configuration (and facts gathered by the caller, e.g. whether the master key lives in
 * the data dir) and lists what weakens security. Pure: the CLI gathers the facts.
 */
export function doctor(config: Config, facts: { masterKeyInDataDir: boolean }): DoctorFinding[] {
  const out: DoctorFinding[] = [];
  const loopback = ['127.0.0.1', '::1', 'localhost'].includes(config.host);
  if (facts.masterKeyInDataDir) {
    out.push({
      level: 'unsafe',
      setting: 'OBSCURA_MASTER_KEY',
      message: 'the master key is a file inside the data dir: a copy of the data dir (backup, snapshot) can decrypt everything. Set OBSCURA_MASTER_KEY from a secret manager.',
    });
  }
  if (!config.http.tlsCertFile && config.http.trustProxy.length === 0) {
    out.push({
      level: loopback ? 'warn' : 'unsafe',
      setting: 'OBSCURA_TLS_CERT_FILE',
      message: loopback
        ? 'TLS is off; fine for a loopback listener, but put TLS (native or a trusted proxy) in front before exposing it.'
        : `plain HTTP on a public listener (${config.host}) without a trusted proxy: keys and media cross the network in clear.`,
    });
  }
  if (config.unsafe.allowPlainHttp) {
    out.push({ level: 'unsafe', setting: 'OBSCURA_UNSAFE_ALLOW_PLAIN_HTTP', message: 'plain HTTP to the network is explicitly allowed.' });
  }
  if (config.unsafe.remoteAllowHttp) {
    out.push({ level: 'unsafe', setting: 'OBSCURA_UNSAFE_REMOTE_ALLOW_HTTP', message: 'remote inputs, presigned PUTs and webhooks may use plain http: forwarded credentials and media cross the network in clear.' });
  }
  if (config.unsafe.remoteAllowPrivate) {
    out.push({ level: 'unsafe', setting: 'OBSCURA_UNSAFE_REMOTE_ALLOW_PRIVATE', message: 'remote URLs may reach private and loopback addresses: any API key can probe your internal network (SSRF).' });
  }
  if (config.database.kind === 'postgres' && !config.perimeter.redisUrl) {
    out.push({ level: 'warn', setting: 'REDIS_URL', message: 'rate limits are counted per process: with several API nodes a client gets the limit once per node. Set REDIS_URL to share them.' });
  }
  if (config.auth.keyCacheTtlMs > 5000) {
    out.push({ level: 'warn', setting: 'OBSCURA_KEY_CACHE_TTL_MS', message: 'revocations may take longer than 5 s to reach other nodes.' });
  }
  if (config.database.kind === 'postgres' && config.database.url && !/sslmode=(require|verify-ca|verify-full)/.test(config.database.url)) {
    const u = new URL(config.database.url);
    if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(u.hostname)) {
      out.push({ level: 'warn', setting: 'DATABASE_URL', message: 'the database connection does not require TLS (add sslmode=verify-full).' });
    }
  }
  if (out.length === 0) out.push({ level: 'ok', setting: '-', message: 'no unsafe settings found' });
  return out;
}
