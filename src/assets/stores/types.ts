/**
 * The blob store contract: one small interface, two adapters (`fs.ts`, `s3.ts`), one conformance
 * suite (`test/assets/stores.test.ts`) that every adapter must pass.
 *
 * Stores hold opaque bytes (in Obscura: ciphertext from the streaming AEAD layer) under validated
 * keys (`keys.ts`). They know nothing of tenants, assets or HTTP; the callers choose the keys.
 */
import type { Readable } from 'node:stream';

/** Optional capabilities; callers test `store.supports(f)` rather than the adapter's type. */
export type BlobStoreFeature = 'presign' | 'range' | 'sweep-temp' | 'local-files';

/** An inclusive byte range, as in HTTP `Range: bytes=start-end` (RFC 9110 §14.1.2). */
export interface ByteRange {
  /** First byte, 0-based. */
  start: number;
  /** Last byte, inclusive. Clamped to the object's last byte, as HTTP and S3 do. */
  end: number;
}

/** Options for {@link BlobStore.put}. */
export interface PutOptions {
  /**
   * The exact number of bytes the body must produce (default: not checked). A body that is longer
   * or shorter fails the put with `ERR_VALIDATION` and stores nothing, so a truncated upload can
   * never become an object.
   */
  contentLength?: number;
  /** Aborts the put: it rejects with the signal's `AbortError` and stores nothing. */
  signal?: AbortSignal;
}

/** Options for {@link BlobStore.presignPut}. */
export interface PresignPutOptions {
  /** Exact size in bytes the client must upload (bound into the signature). */
  contentLength: number;
  /** `type/subtype` the client must send (bound into the signature; no parameters). */
  contentType: string;
  /** Lifetime of the URL in seconds (1 to 604800, the SigV4 maximum). Keep it short: minutes. */
  expiresInSeconds: number;
}

/** A presigned upload: the client sends `PUT url` with exactly these headers and the body. */
export interface PresignedPut {
  url: string;
  /**
   * Headers covered by the signature. Browsers set `content-length` from the body themselves
   * (it is a forbidden header name for `fetch`); other clients must send it as given.
   */
  headers: Record<string, string>;
}

/**
 * A place to keep blobs.
 *
 * Guarantees every adapter gives (proved by the conformance suite):
 * - `put` is atomic: a reader sees either no object, or the previous complete object, or the new
 *   complete object; never a prefix. If `put` rejects (source error, length mismatch, abort,
 *   backend failure) nothing new is visible.
 * - Keys are validated before any I/O (`ERR_VALIDATION`), so a key can never name a path outside
 *   the store.
 * - Backend errors surface as `AppError` (`ERR_NOT_FOUND`, `ERR_RANGE_NOT_SATISFIABLE`,
 *   `ERR_CONFLICT`, `ERR_UNAVAILABLE`, `ERR_INTERNAL`) with the original only as `cause`, so an
 *   SDK or filesystem message never reaches a client. Errors raised by the caller's body stream
 *   (or its abort signal) are passed through unchanged.
 *
 * Portability: do not use a key that is also a directory-like prefix of another key (`a` and
 * `a/b`). S3 allows it; the fs store (like MinIO) answers the second put with `ERR_CONFLICT`.
 */
export interface BlobStore {
  /** Which adapter this is (for logs and `doctor`; do not branch on it, use `supports`). */
  readonly kind: 'fs' | 's3';

  /** Whether an optional capability is available. */
  supports(feature: BlobStoreFeature): boolean;

  /**
   * Stores the stream under `key`, replacing any existing object atomically. Memory is bounded
   * (fs: one chunk; s3: a few multipart parts). Resolves with the number of bytes stored.
   */
  put(key: string, body: Readable, opts?: PutOptions): Promise<{ size: number }>;

  /**
   * Opens an object for reading, optionally only `range` (inclusive end, clamped to the object).
   * Rejects with `ERR_NOT_FOUND` when missing and `ERR_RANGE_NOT_SATISFIABLE` when `range.start`
   * is at or past the end of the object (which includes every range of an empty object).
   */
  get(key: string, range?: ByteRange): Promise<Readable>;

  /**
   * Reads a whole object of at most `maxBytes` into memory in as few backend calls as it allows (fs:
   * open, one read, close), for small objects where stream machinery costs more than the bytes.
   * Rejects with `ERR_NOT_FOUND` when missing and `ERR_PAYLOAD_TOO_LARGE` when the object is longer
   * than `maxBytes` (reading at most `maxBytes + 1` bytes of it).
   */
  read(key: string, maxBytes: number): Promise<Buffer>;

  /** The object's size, or `null` when there is no such object. */
  head(key: string): Promise<{ size: number } | null>;

  /** Removes the object. Idempotent: deleting a missing key succeeds. */
  delete(key: string): Promise<void>;

  /**
   * Every key starting with `prefix` (`''` for all), in no particular order; paginates lazily.
   * `prefix` follows the key rules, optionally with a trailing `/`.
   */
  list(prefix: string): AsyncIterable<string>;

  /**
   * Only when `supports('presign')`: a URL a client can `PUT` exactly `contentLength` bytes of
   * `contentType` to, until it expires. Security: presign only to a staging key and promote the
   * object after checking its bytes; the URL is a bearer credential, so never log it.
   */
  presignPut?(key: string, opts: PresignPutOptions): Promise<PresignedPut>;

  /**
   * Only when `supports('sweep-temp')`: deletes in-progress artefacts older than `olderThanMs` that a
   * killed process left (fs temp files). Resolves with how many.
   */
  sweepTemp?(olderThanMs: number): Promise<number>;

  /**
   * Only when `supports('local-files')`: the file that holds (or would hold) `key` (the key is
   * validated), for copies by the kernel (backups). Whoever writes one writes it atomically: a file
   * from {@link tempPath} renamed over it.
   */
  filePath?(key: string): string;
  /** Only when `supports('local-files')`: a fresh path in the store's temp directory (same filesystem). */
  tempPath?(): string;

  /** Releases resources the store owns (not injected clients). */
  close?(): Promise<void>;
}
