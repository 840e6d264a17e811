/**
 * The configuration sections the assets room reads (types; `config/` loads them). The server's
 * `Config` is built from these types, so assets/ never imports config/.
 */

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
