/**
 * The configuration sections the assets room reads (issue 10, item 8): storage, uploads, downloads and
 * maintenance, declared here with the settings kit. The server's `Config` is built from these, so
 * assets/ never imports config/.
 */
import { ConfigError } from '../errors.js';
import { bool, defineSection, int, oneOf, str, type Section } from '../settings.js';

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
   * The metadata policy of apps that set none (`OBSCURA_METADATA_POLICY`, default `strip_all`): what
   * uploaded images keep of their EXIF, GPS, XMP, IPTC and comments (src/media/image/metadata.ts).
   */
  readonly metadataPolicy: 'keep' | 'strip_location' | 'strip_all';
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

const S3 = defineSection<StorageSettings['s3']>({
  bucket: str({ env: 'OBSCURA_S3_BUCKET', doc: 'S3 bucket (required with OBSCURA_STORE=s3).' }),
  endpoint: str({ env: 'OBSCURA_S3_ENDPOINT', doc: 'Custom S3 endpoint (MinIO, Ceph, R2…); unset means AWS.', defaultText: 'AWS', check: (v) => (v === '' || URL.canParse(v) ? undefined : 'must be an absolute URL') }),
  region: str({ env: 'OBSCURA_S3_REGION', doc: 'S3 region.', default: 'us-east-1' }),
  prefix: str({ env: 'OBSCURA_S3_PREFIX', doc: 'Key prefix of every object.', default: '', defaultText: 'none' }),
  forcePathStyle: bool({ env: 'OBSCURA_S3_FORCE_PATH_STYLE', doc: 'Path-style S3 URLs (MinIO).', default: false }),
  requestTimeoutMs: int({ env: 'OBSCURA_S3_REQUEST_TIMEOUT_MS', doc: 'Longest an S3 request may stay silent, ms.', default: 30_000, min: 100, max: 3_600_000 }),
  connectTimeoutMs: int({ env: 'OBSCURA_S3_CONNECT_TIMEOUT_MS', doc: 'Longest TCP connect to S3, ms.', default: 5000, min: 100, max: 600_000 }),
});

const STORE = defineSection<{ kind: StorageSettings['kind'] }>({
  kind: oneOf({ env: 'OBSCURA_STORE', doc: 'Blob store: fs (<data dir>/blobs) or s3; only ciphertext is stored.', values: ['fs', 's3'], default: 'fs' }),
});

export const STORAGE_SETTINGS: Section<StorageSettings> = {
  envNames: Object.freeze([...STORE.envNames, ...S3.envNames]),
  read(src) {
    const { kind } = STORE.read(src);
    if (kind === 's3' && !src[S3.fields!.bucket.env]) throw new ConfigError(S3.fields!.bucket.env, `is required when ${STORE.fields!.kind.env}=s3`);
    return Object.freeze({ kind, s3: S3.read(src) });
  },
};

const UPLOAD_LIMITS = defineSection<UploadSettings['limits']>({
  maxOpenPerApp: int({ env: 'OBSCURA_MAX_OPEN_UPLOADS_PER_APP', doc: 'Unfinished uploads one app may hold.', default: 1000, min: 1, max: 10_000_000 }),
  maxOpenPerOrg: int({ env: 'OBSCURA_MAX_OPEN_UPLOADS_PER_ORG', doc: 'Unfinished uploads one org may hold over all its apps.', default: 5000, min: 1, max: 10_000_000 }),
  maxReservedBytesPerApp: int({ env: 'OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_APP', doc: "Declared bytes of one app's unfinished uploads.", default: 100 * 1024 ** 3, min: 1, max: Number.MAX_SAFE_INTEGER }),
  maxReservedBytesPerOrg: int({ env: 'OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_ORG', doc: "Declared bytes of one org's unfinished uploads.", default: 500 * 1024 ** 3, min: 1, max: Number.MAX_SAFE_INTEGER }),
});

const UPLOAD_SIZES = defineSection<Omit<UploadSettings, 'limits'>>({
  maxSimpleBytes: int({ env: 'OBSCURA_MAX_SIMPLE_UPLOAD_BYTES', doc: 'Largest one-request upload (POST /v1/assets).', default: 25 * 1000 * 1000, min: 1, max: 1024 ** 3 }),
  maxBytes: int({ env: 'OBSCURA_MAX_UPLOAD_BYTES', doc: 'Largest upload of any kind unless an app sets less.', default: 5 * 1024 ** 3, min: 1, max: 5 * 1024 ** 4 }),
  presignTtlSeconds: int({ env: 'OBSCURA_PRESIGN_TTL_SECONDS', doc: 'Lifetime of a presigned direct-upload URL, seconds.', default: 900, min: 30, max: 3600 }),
  segmentBytes: int({ env: 'OBSCURA_UPLOAD_SEGMENT_BYTES', doc: 'A tus PATCH body is committed every this many bytes.', default: 8 * 1024 ** 2, min: 64 * 1024, max: 1024 ** 3 }),
  metadataPolicy: oneOf({ env: 'OBSCURA_METADATA_POLICY', doc: 'Metadata policy of apps that set none: strip_all (only orientation and colour profile stay), strip_location (GPS and place-bearing blocks go) or keep.', values: ['strip_all', 'strip_location', 'keep'], default: 'strip_all' }),
});

export const UPLOAD_SETTINGS: Section<UploadSettings> = {
  envNames: Object.freeze([...UPLOAD_SIZES.envNames, ...UPLOAD_LIMITS.envNames]),
  read: (src) => Object.freeze({ ...UPLOAD_SIZES.read(src), limits: UPLOAD_LIMITS.read(src) }),
};

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
  /**
   * Memory for resolved signed downloads (asset rows, no media), bytes (`OBSCURA_DOWNLOAD_CACHE_BYTES`,
   * default 4 MiB ≈ 8000 assets; 0 = off). Entries live as long as cached keys (`OBSCURA_KEY_CACHE_TTL_MS`).
   */
  readonly cacheBytes: number;
}

export const DOWNLOAD_SETTINGS = defineSection<DownloadSettings>(
  {
    maxTtlSeconds: int({ env: 'OBSCURA_URL_MAX_TTL_SECONDS', doc: 'Longest lifetime a caller may ask for a signed download URL.', default: 7 * 86400, min: 60, max: 365 * 86400 }),
    defaultTtlSeconds: int({ env: 'OBSCURA_URL_TTL_SECONDS', doc: 'Default lifetime of a signed download URL.', default: 86400, min: 60, max: 365 * 86400 }),
    cacheBytes: int({ env: 'OBSCURA_DOWNLOAD_CACHE_BYTES', doc: 'Memory for resolved signed downloads (asset rows, never media), bytes; 0 = off. Entries live as long as cached keys.', default: 4 * 1024 * 1024, min: 0, max: 1024 * 1024 * 1024 }),
  },
  (d) => {
    if (d.defaultTtlSeconds > d.maxTtlSeconds) throw new ConfigError('OBSCURA_URL_TTL_SECONDS', `must not exceed OBSCURA_URL_MAX_TTL_SECONDS (${d.maxTtlSeconds})`);
  },
);

/** Housekeeping of worker processes (maintenance.ts, orphans.ts). */
export interface MaintenanceSettings {
  /**
   * How often maintenance (retention, erasure resumption, sweeps) runs across the fleet, ms
   * (`OBSCURA_MAINTENANCE_INTERVAL_MS`, default 60000). Whole minutes that divide an hour become a
   * pg-boss cron schedule (`* * * * *`, `*\/5 * * * *`, … `0 * * * *`); below a minute (development and
   * tests) each worker offers a run every interval and the queue lets one through per interval.
   */
  readonly intervalMs: number;
  /** A blob without a row is deleted once it has stayed so this long, ms; the store is listed at most this often. */
  readonly orphanGraceMs: number;
}

export const MAINTENANCE_SETTINGS = defineSection<MaintenanceSettings>(
  {
    intervalMs: int({ env: 'OBSCURA_MAINTENANCE_INTERVAL_MS', doc: 'How often maintenance (retention, erasure resumption, sweeps) runs across the fleet, ms: whole minutes that divide an hour run as a pg-boss cron schedule; under a minute is for development and tests.', default: 60_000, min: 500, max: 3_600_000 }),
    orphanGraceMs: int({ env: 'OBSCURA_ORPHAN_GRACE_MS', doc: 'Age after which a blob without a row is deleted, ms.', default: 3_600_000, min: 1000, max: 7 * 86_400_000 }),
  },
  (m) => {
    if (m.intervalMs >= 60_000 && maintenanceCron(m.intervalMs) === null) {
      throw new ConfigError('OBSCURA_MAINTENANCE_INTERVAL_MS', 'from one minute up, must be a whole number of minutes that divides an hour (60000, 120000, 300000, 600000, 900000, 1800000, 3600000, …); under 60000 any value from 500');
    }
  },
);

/**
 * The cron expression of a maintenance interval of whole minutes dividing an hour, or null (under a
 * minute, or a count of minutes cron cannot repeat evenly).
 */
export function maintenanceCron(intervalMs: number): string | null {
  if (intervalMs < 60_000 || intervalMs % 60_000 !== 0) return null;
  const minutes = intervalMs / 60_000;
  if (minutes === 60) return '0 * * * *';
  if (60 % minutes !== 0) return null;
  return minutes === 1 ? '* * * * *' : `*/${minutes} * * * *`;
}
