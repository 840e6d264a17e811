/**
 * The configuration sections the assets room reads. Downloads and maintenance are declared here
 * with the settings kit; storage and uploads are types here that `config/` still reads. The server's
 * `Config` is built from these, so assets/ never imports config/.
 */
import { ConfigError } from '../errors.js';
import { defineSection, int } from '../settings.js';

/** Where blobs live. */
export interface StorageSettings {
  /** `fs` (default: `<dataDir>/blobs`) or `s3`. Either way only ciphertext is stored. */
  readonly kind: 'fs' | 's3';
  readonly s3: {
    readonly bucket: string | undefined;
    /** Custom endpoint (MinIO, Ceph, R2…); unset means AWS. */
    readonly endpoint: string | undefined;
    readonly region: string;
    readonly prefix: string;
    readonly forcePathStyle: boolean;
    /** Longest an S3 request may stay silent (`OBSCURA_S3_REQUEST_TIMEOUT_MS`, default 30000): a hung store answers 503. */
    readonly requestTimeoutMs: number;
    /** Longest wait for a TCP connection to S3 (`OBSCURA_S3_CONNECT_TIMEOUT_MS`, default 5000). */
    readonly connectTimeoutMs: number;
  };
}

/** Upload sizes, presigned URLs, tus segments and the bounds on unfinished uploads. */
export interface UploadSettings {
  /** Largest one-request upload (`POST /v1/assets`), default 25 MB. */
  readonly maxSimpleBytes: number;
  /** Largest upload of any kind (tus, presigned) unless an app sets less, default 5 GiB. */
  readonly maxBytes: number;
  /** Lifetime of a presigned direct upload URL (default 900 s = 15 min). */
  readonly presignTtlSeconds: number;
  /**
   * A tus PATCH body is committed every this many bytes (`OBSCURA_UPLOAD_SEGMENT_BYTES`, default
   * 8 MiB): a client whose connection, or whose server, dies mid-PATCH resumes from the last
   * committed segment and resends at most one segment.
   */
  readonly segmentBytes: number;
  /**
   * Bounds on unfinished uploads (tus and presigned), so one tenant cannot reserve the server's disk
   * by declaring uploads it never sends (issue 9, item 6). An upload holds its declared length from
   * creation until it completes, is terminated or expires; beyond a bound, creation is 429
   * ERR_UPLOAD_LIMIT naming the setting.
   */
  readonly limits: {
    /** Unfinished uploads one app may hold (`OBSCURA_MAX_OPEN_UPLOADS_PER_APP`, default 1000). */
    readonly maxOpenPerApp: number;
    /** Unfinished uploads one org may hold over all its apps (`OBSCURA_MAX_OPEN_UPLOADS_PER_ORG`, default 5000). */
    readonly maxOpenPerOrg: number;
    /** Declared bytes of one app's unfinished uploads (`OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_APP`, default 100 GiB). */
    readonly maxReservedBytesPerApp: number;
    /** Declared bytes of one org's unfinished uploads (`OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_ORG`, default 500 GiB). */
    readonly maxReservedBytesPerOrg: number;
  };
}

/** What the upload paths read: their section and the public URL their signed links start with. */
export interface UploadPathSettings {
  readonly publicUrl: string;
  readonly uploads: UploadSettings;
}

/** What opening the store reads. */
export interface StoreSettings {
  readonly dataDir: string;
  readonly storage: StorageSettings;
}

/** Signed download URLs. */
export interface DownloadSettings {
  /** Longest lifetime a caller may ask for, seconds. */
  readonly maxTtlSeconds: number;
  /** Default lifetime of a signed download URL, seconds. */
  readonly defaultTtlSeconds: number;
}

export const DOWNLOAD_SETTINGS = defineSection<DownloadSettings>(
  {
    maxTtlSeconds: int({ env: 'OBSCURA_URL_MAX_TTL_SECONDS', doc: 'Longest lifetime a caller may ask for a signed download URL.', default: 7 * 86400, min: 60, max: 365 * 86400 }),
    defaultTtlSeconds: int({ env: 'OBSCURA_URL_TTL_SECONDS', doc: 'Default lifetime of a signed download URL.', default: 86400, min: 60, max: 365 * 86400 }),
  },
  (d) => {
    if (d.defaultTtlSeconds > d.maxTtlSeconds) throw new ConfigError('OBSCURA_URL_TTL_SECONDS', `must not exceed OBSCURA_URL_MAX_TTL_SECONDS (${d.maxTtlSeconds})`);
  },
);

/** Housekeeping of worker processes (maintenance.ts, orphans.ts). */
export interface MaintenanceSettings {
  /** How often a worker runs retention, erasure resumption and sweeps, ms. */
  readonly intervalMs: number;
  /** A blob without a row is deleted once it has stayed so this long, ms; the store is listed at most this often. */
  readonly orphanGraceMs: number;
}

export const MAINTENANCE_SETTINGS = defineSection<MaintenanceSettings>({
  intervalMs: int({ env: 'OBSCURA_MAINTENANCE_INTERVAL_MS', doc: 'How often a worker runs retention, erasure resumption and sweeps, ms.', default: 60_000, min: 500, max: 3_600_000 }),
  orphanGraceMs: int({ env: 'OBSCURA_ORPHAN_GRACE_MS', doc: 'Age after which a blob without a row is deleted, ms.', default: 3_600_000, min: 1000, max: 7 * 86_400_000 }),
});
