/**
 * Settings: loaded once by the composition root (`main.ts`) from `OBSCURA_*` environment variables and
 * an optional JSON file, validated at boot with messages naming the setting, then frozen and passed
 * down. No other module reads `process.env`.
 *
 * Precedence: environment > file (`OBSCURA_CONFIG_FILE`) > defaults. Every default is the safe one;
 * options that weaken security are named `unsafe...` / `allow...` and reported by `obscura doctor`.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import type { Source } from '../settings.js';
import { PROCESSING_SETTINGS, type ProcessingSettings } from '../processing/settings.js';
import { MEDIA_SETTINGS, type MediaSettings } from '../media/settings.js';
import { JOBS_SETTINGS, type JobsSettings } from '../jobs/settings.js';
import { VIDEO_SETTINGS, type VideoSettings } from '../media/video/settings.js';
import { DOWNLOAD_SETTINGS, MAINTENANCE_SETTINGS, STORAGE_SETTINGS, UPLOAD_SETTINGS, type DownloadSettings, type MaintenanceSettings, type StorageSettings, type UploadSettings } from '../assets/settings.js';
import { PERIMETER_SETTINGS, checkPerimeterAgainstServer, type PerimeterSettings } from '../perimeter/settings.js';
import { AUTH_SETTINGS, OAUTH_SETTINGS, type AuthSettings, type OAuthSettings } from '../auth/settings.js';
import { DATABASE_SETTINGS, DATA_DIR_SETTINGS, type DatabaseKind, type DatabaseSettings } from '../db/settings.js';
import { MASTER_KEY_SETTINGS } from '../crypto/settings.js';
import { REMOTE_UNSAFE_SETTINGS } from '../remote/settings.js';
import { SERVER_SETTINGS, type Role } from '../http/settings.js';
import { CLIENT_SETTINGS } from './client-settings.js';
import { BACKUP_SETTINGS, type BackupSettings } from '../backup/settings.js';
import { LICENSING_SETTINGS, type LicensingSettings } from '../licensing/settings.js';

export type { DatabaseKind, Role };

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
  /** Which database and how to reach it (src/db/settings.ts). */
  readonly database: DatabaseSettings;
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

  /** ffmpeg/ffprobe, video limits and the leash of every ffmpeg run (src/media/video/settings.ts); `tempDir` resolved. */
  readonly video: VideoSettings & { readonly tempDir: string };

  /** Workers, retries, polling and webhook retries (src/jobs/settings.ts). */
  readonly jobs: JobsSettings;

  /** Housekeeping of worker processes (src/assets/settings.ts). */
  readonly maintenance: MaintenanceSettings;

  /** Rate limits, timeouts, load shedding, redirect and metrics listeners (src/perimeter/settings.ts). */
  readonly perimeter: PerimeterSettings;

  /** The backup key of `obscura backup` (src/backup/settings.ts). */
  readonly backup: BackupSettings;

  /** On-device licence sessions (src/licensing/settings.ts). */
  readonly licensing: LicensingSettings;

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


/**
 * The sections capabilities declare next to their code (each variable is named once, there). The
 * client commands' section is accepted and ignored by the server.
 */
export const SECTIONS = [
  DATA_DIR_SETTINGS, SERVER_SETTINGS, DATABASE_SETTINGS, MASTER_KEY_SETTINGS, STORAGE_SETTINGS, UPLOAD_SETTINGS, PERIMETER_SETTINGS, AUTH_SETTINGS, OAUTH_SETTINGS,
  DOWNLOAD_SETTINGS, MAINTENANCE_SETTINGS, PROCESSING_SETTINGS, MEDIA_SETTINGS, VIDEO_SETTINGS, JOBS_SETTINGS, REMOTE_UNSAFE_SETTINGS, CLIENT_SETTINGS,
  BACKUP_SETTINGS,
  LICENSING_SETTINGS,
] as const;

/** The variable naming the settings file: the one name the loader owns. */
const CONFIG_FILE_ENV = 'OBSCURA_CONFIG_FILE';

const KNOWN = new Set([CONFIG_FILE_ENV, ...SECTIONS.flatMap((section) => section.envNames)]);

function readFileSource(path: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(CONFIG_FILE_ENV, `cannot read ${path} as JSON (${(err as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(CONFIG_FILE_ENV, 'must contain a JSON object of OBSCURA_* settings');
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (!KNOWN.has(k) || k === CONFIG_FILE_ENV) throw new ConfigError(k, `unknown setting in ${path}`);
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
  const fileName = env[CONFIG_FILE_ENV];
  const file = fileName ? readFileSource(resolve(cwd, fileName)) : {};
  const src: Record<string, string | undefined> = { ...file };
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') src[k] = v;
  // An empty DATABASE_URL is refused rather than taken for "use the embedded database" (a missing
  // secret must not silently give a fresh, empty database).
  if (env.DATABASE_URL === '') src.DATABASE_URL = '';

  const server = SERVER_SETTINGS.read(src);
  const database = DATABASE_SETTINGS.read(src);
  const keys = MASTER_KEY_SETTINGS.read(src);
  const config: Config = {
    dataDir: resolve(cwd, DATA_DIR_SETTINGS.read(src).dataDir),
    host: server.host,
    port: server.port,
    role: server.role,
    publicUrl: server.publicUrl,
    database,
    masterKey: keys.masterKey,
    previousMasterKeys: keys.previousMasterKeys,
    auth: AUTH_SETTINGS.read(src),
    oauth: OAUTH_SETTINGS.read(src),
    http: { trustProxy: server.trustProxy, bodyLimit: server.bodyLimit, tlsCertFile: server.tlsCertFile, tlsKeyFile: server.tlsKeyFile, shutdownDrainMs: server.shutdownDrainMs },
    storage: STORAGE_SETTINGS.read(src),
    uploads: UPLOAD_SETTINGS.read(src),
    downloads: DOWNLOAD_SETTINGS.read(src),
    log: { level: server.logLevel },
    processing: PROCESSING_SETTINGS.read(src),
    media: MEDIA_SETTINGS.read(src),
    video: videoSection(VIDEO_SETTINGS.read(src), resolve(cwd, DATA_DIR_SETTINGS.read(src).dataDir), cwd),
    jobs: JOBS_SETTINGS.read(src),
    maintenance: MAINTENANCE_SETTINGS.read(src),
    perimeter: PERIMETER_SETTINGS.read(src),
    backup: BACKUP_SETTINGS.read(src),
    licensing: LICENSING_SETTINGS.read(src),
    unsafe: { allowPlainHttp: server.allowPlainHttp, ...REMOTE_UNSAFE_SETTINGS.read(src) },
  };
  checkPerimeterAgainstServer(config.perimeter, { port: config.port, publicUrl: config.publicUrl });
  return deepFreeze(config);
}

function videoSection(v: VideoSettings, dataDir: string, cwd: string): VideoSettings & { tempDir: string } {
  return { ...v, tempDir: v.tempDir ? resolve(cwd, v.tempDir) : join(dataDir, 'tmp', 'video') };
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
export function doctor(config: Config, facts: { masterKeyInDataDir: boolean; video?: { version: string; prlimit: boolean; setpriv?: boolean } | null | undefined }): DoctorFinding[] {
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
  if (facts.video === null) {
    out.push({ level: 'warn', setting: 'OBSCURA_FFMPEG_PATH', message: `ffmpeg/ffprobe not found (${config.video.ffmpegPath}, ${config.video.ffprobePath}): video uploads are stored unprobed and video processing answers 503 ERR_VIDEO_UNAVAILABLE. Install Debian's ffmpeg or set OBSCURA_FFMPEG_PATH and OBSCURA_FFPROBE_PATH.` });
  } else if (facts.video && !facts.video.prlimit) {
    out.push({ level: 'warn', setting: 'OBSCURA_VIDEO_MEMORY_BYTES', message: 'prlimit (util-linux) not found: ffmpeg runs without its memory and CPU-time limits (the wall-clock limit still applies).' });
  }
  if (facts.video && facts.video.setpriv === false) {
    out.push({ level: 'warn', setting: 'OBSCURA_FFMPEG_PATH', message: 'setpriv with --pdeathsig (util-linux 2.33 or later) not found: an ffmpeg whose server process is killed keeps running until its own limits end it.' });
  }
  if (out.length === 0) out.push({ level: 'ok', setting: '-', message: 'no unsafe settings found' });
  if (facts.video) out.push({ level: 'ok', setting: 'OBSCURA_FFMPEG_PATH', message: `video: ${facts.video.version}` });
  return out;
}
