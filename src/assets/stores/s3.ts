/**
 * The S3 blob store (AWS S3 and S3-compatible servers such as MinIO), for fleets.
 *
 * Writes stream through `@aws-sdk/lib-storage` `Upload`: bodies up to one part go out as a single
 * PutObject, larger ones as a multipart upload. Both are atomic on S3 (an object appears only when
 * PutObject or CompleteMultipartUpload succeeds), and a failed multipart upload is aborted so its
 * parts do not linger. A process that dies mid-upload cannot abort it: give the bucket a lifecycle
 * rule `AbortIncompleteMultipartUpload` (e.g. after 1 day), the S3 equivalent of the fs store's
 * `sweepTemp`.
 */
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  paginateListObjectsV2,
  type S3Client,
  type ServerSideEncryption,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { addAbortSignal, pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import { AppError } from '../../errors.js';
import type { BlobStore, BlobStoreFeature, ByteRange, PresignedPut, PresignPutOptions, PutOptions } from './types.js';
import {
  assertValidKey,
  assertValidLength,
  assertValidPrefix,
  assertValidRange,
  isValidKey,
  lengthMismatch,
  MAX_PRESIGNED_PUT_BYTES,
  toBytes,
} from './validation.js';

/** Options for {@link createS3Store}. */
export interface S3StoreOptions {
  /** The SDK client (region, endpoint, credentials, `forcePathStyle` for MinIO). Owned by the caller. */
  client: S3Client;
  /** Bucket name. */
  bucket: string;
  /**
   * Key prefix inside the bucket (default none), e.g. `obscura/`; a missing trailing `/` is added.
   * Lets several deployments share a bucket without seeing each other's keys.
   */
  prefix?: string;
  /**
   * Server-side encryption requested on every write, including presigned PUTs (default none: the
   * bucket's default encryption applies). Objects are already AEAD-encrypted by Obscura; this
   * adds the provider's layer for compliance regimes that ask for it.
   */
  serverSideEncryption?: 'AES256' | 'aws:kms';
  /** KMS key id or ARN when `serverSideEncryption` is `aws:kms` (default: the account's `aws/s3` key). */
  kmsKeyId?: string;
  /** Keys per ListObjectsV2 page (default and maximum 1000). */
  listPageSize?: number;
}

/**
 * Multipart part size. Memory per concurrent put is about (QUEUE_SIZE + 1) × PART_SIZE = 24 MiB,
 * and 10,000 parts × 8 MiB caps an object at ~78 GiB.
 */
const PART_SIZE = 8 * 1024 * 1024;
/** Parts uploaded in parallel per put. */
const QUEUE_SIZE = 2;
/** SigV4 presigned URLs live at most 7 days. */
const MAX_PRESIGN_SECONDS = 604_800;
/** RFC 6838 `type/subtype` restricted names, no parameters: nothing that can split a header. */
const CONTENT_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+)$/;

interface SdkError {
  name?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
  code?: string;
}

/** Maps an SDK failure to an `AppError`; the SDK's message (bucket, key, request ids) stays in `cause`. */
function s3Error(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const e = (err ?? {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  // NoSuchBucket is a 404 too, but it is a configuration error, not a missing object.
  if (e.name === 'NoSuchKey' || e.name === 'NotFound' || (status === 404 && e.name !== 'NoSuchBucket')) {
    return new AppError('ERR_NOT_FOUND', 'The blob does not exist.', { cause: err });
  }
  if (e.name === 'InvalidRange' || status === 416) {
    return new AppError('ERR_RANGE_NOT_SATISFIABLE', 'The byte range is outside the object.', { cause: err });
  }
  // Throttling, server errors and network failures (no HTTP status at all) are worth a retry.
  if (status === undefined || status >= 500 || status === 429 || e.$retryable !== undefined || e.name === 'SlowDown') {
    return new AppError('ERR_DEPENDENCY_UNAVAILABLE', 'The blob store did not answer in time; retry after the Retry-After delay.', {
      cause: err,
      details: { dependency: 'store' },
      headers: { 'Retry-After': '5' },
    });
  }
  return new AppError('ERR_INTERNAL', 'The blob store failed.', { cause: err });
}

/** Counts bytes on their way to the uploader and enforces the declared length. */
class ByteCounter extends Transform {
  bytes = 0;
  constructor(private readonly expected: number | undefined) {
    super();
  }
  override _transform(chunk: unknown, _enc: BufferEncoding, done: TransformCallback): void {
    let bytes: Uint8Array;
    try {
      bytes = toBytes(chunk);
    } catch (err) {
      done(err as Error);
      return;
    }
    this.bytes += bytes.byteLength;
    if (this.expected !== undefined && this.bytes > this.expected) {
      done(lengthMismatch(this.expected));
      return;
    }
    done(null, bytes);
  }
  override _flush(done: TransformCallback): void {
    // Failing before end-of-stream makes the uploader abort instead of completing a short object.
    done(this.expected !== undefined && this.bytes !== this.expected ? lengthMismatch(this.expected) : null);
  }
}

/** The first `n` bytes of `source`; stops reading (and destroys `source`) once they are out. */
async function* take(source: Readable, n: number): AsyncGenerator<Uint8Array> {
  let left = n;
  for await (const chunk of source) {
    const bytes = toBytes(chunk);
    if (bytes.byteLength >= left) {
      yield bytes.subarray(0, left);
      return;
    }
    left -= bytes.byteLength;
    yield bytes;
  }
}

/**
 * Creates the S3 store. Performs no I/O; check reachability with a `head` in `doctor`/readiness.
 *
 * Security: SDK errors are mapped to `AppError` (never echoed); presigned PUTs bind the exact
 * length, content type and SSE header into the SigV4 signature, and the store refuses to hand out
 * a URL whose signature does not cover them.
 */
export function createS3Store(options: S3StoreOptions): BlobStore {
  const { client, bucket, serverSideEncryption, kmsKeyId } = options;
  if (typeof bucket !== 'string' || bucket.length === 0) throw new TypeError('createS3Store: `bucket` is required');
  let prefix = options.prefix ?? '';
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  if (prefix !== '' && !isValidKey(prefix.slice(0, -1))) {
    throw new TypeError('createS3Store: `prefix` must follow the key grammar, e.g. "obscura/"');
  }
  if (kmsKeyId !== undefined && serverSideEncryption !== 'aws:kms') {
    throw new TypeError('createS3Store: `kmsKeyId` requires `serverSideEncryption: "aws:kms"`');
  }
  const listPageSize = options.listPageSize ?? 1000;
  if (!Number.isSafeInteger(listPageSize) || listPageSize < 1 || listPageSize > 1000) {
    throw new TypeError('createS3Store: `listPageSize` must be an integer from 1 to 1000');
  }
  const sseParams: { ServerSideEncryption?: ServerSideEncryption; SSEKMSKeyId?: string } = {};
  const sseHeaders: Record<string, string> = {};
  if (serverSideEncryption) {
    sseParams.ServerSideEncryption = serverSideEncryption;
    sseHeaders['x-amz-server-side-encryption'] = serverSideEncryption;
  }
  if (kmsKeyId) {
    sseParams.SSEKMSKeyId = kmsKeyId;
    sseHeaders['x-amz-server-side-encryption-aws-kms-key-id'] = kmsKeyId;
  }

  function objectKey(key: string): string {
    assertValidKey(key);
    return prefix + key;
  }

  async function put(key: string, body: Readable, opts: PutOptions = {}): Promise<{ size: number }> {
    let Key: string;
    try {
      Key = objectKey(key);
      assertValidLength(opts.contentLength);
    } catch (err) {
      body.destroy();
      throw err;
    }
    const counter = new ByteCounter(opts.contentLength);
    // pipeline propagates a source error (or abort) into the counter, which fails the upload.
    pipeline(body, counter, () => undefined);
    if (opts.signal) addAbortSignal(opts.signal, counter);
    const upload = new Upload({
      client,
      params: { Bucket: bucket, Key, Body: counter, ContentType: 'application/octet-stream', ...sseParams },
      partSize: PART_SIZE,
      queueSize: QUEUE_SIZE,
      // We abort the multipart upload ourselves: lib-storage would otherwise replace the original
      // error with the abort's own failure, losing why the put failed.
      leavePartsOnError: true,
    });
    try {
      await upload.done();
      return { size: counter.bytes };
    } catch (err) {
      // done() rejects only after every in-flight request settled, so aborting now leaves no
      // part behind (and nothing was ever visible: only CompleteMultipartUpload publishes).
      counter.destroy();
      if (upload.uploadId) {
        // Best effort: if this fails too, the bucket's AbortIncompleteMultipartUpload rule reaps it.
        await client
          .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId: upload.uploadId }))
          .catch(() => undefined);
      }
      // The error the counter was destroyed with (the caller's source error, the abort, a length
      // mismatch) is passed through as is; anything else came from the SDK.
      if (err === counter.errored) throw err;
      throw s3Error(err);
    }
  }

  async function get(key: string, range?: ByteRange): Promise<Readable> {
    const Key = objectKey(key);
    if (range) assertValidRange(range);
    let res;
    try {
      res = await client.send(
        new GetObjectCommand({ Bucket: bucket, Key, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
      );
    } catch (err) {
      throw s3Error(err);
    }
    const body = res.Body;
    if (!(body instanceof Readable)) throw new AppError('ERR_INTERNAL', 'The blob store failed.');
    if (!range) return body;
    // Never trust a server to have honoured Range: a whole-object 200 or a shifted window would
    // hand the decryptor the wrong bytes. Empty objects cannot satisfy any range (RFC 9110).
    const m = CONTENT_RANGE.exec(res.ContentRange ?? '');
    const first = Number(m?.[1]);
    const last = Number(m?.[2]);
    const total = Number(m?.[3]);
    if (m && (total === 0 || range.start >= total)) {
      body.destroy();
      throw new AppError('ERR_RANGE_NOT_SATISFIABLE', 'The byte range is outside the object.');
    }
    const wantedLast = Math.min(range.end, total - 1);
    if (!m || first !== range.start || last < wantedLast) {
      body.destroy();
      throw new AppError('ERR_INTERNAL', 'The blob store returned a different byte range.');
    }
    // A wider window that starts at the right byte (some S3 look-alikes answer `bytes=0-0` with the
    // whole object) is cut to size rather than refused.
    return last === wantedLast ? body : Readable.from(take(body, wantedLast - first + 1), { objectMode: false });
  }

  async function read(key: string, maxBytes: number): Promise<Buffer> {
    assertValidLength(maxBytes);
    const body = await get(key);
    const chunks: Buffer[] = [];
    let length = 0;
    try {
      for await (const chunk of body) {
        length += (chunk as Buffer).length;
        if (length > maxBytes) throw new AppError('ERR_PAYLOAD_TOO_LARGE', 'The object is larger than this read allows.');
        chunks.push(chunk as Buffer);
      }
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw s3Error(err);
    } finally {
      body.destroy();
    }
    return Buffer.concat(chunks, length);
  }

  async function head(key: string): Promise<{ size: number } | null> {
    const Key = objectKey(key);
    try {
      const res = await client.send(new HeadObjectCommand({ Bucket: bucket, Key }));
      return { size: res.ContentLength ?? 0 };
    } catch (err) {
      const mapped = s3Error(err);
      if (mapped.code === 'ERR_NOT_FOUND') return null;
      throw mapped;
    }
  }

  async function del(key: string): Promise<void> {
    const Key = objectKey(key);
    try {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
    } catch (err) {
      const mapped = s3Error(err);
      if (mapped.code !== 'ERR_NOT_FOUND') throw mapped;
    }
  }

  async function* list(listPrefix: string): AsyncGenerator<string> {
    assertValidPrefix(listPrefix);
    const pages = paginateListObjectsV2(
      { client, pageSize: listPageSize },
      { Bucket: bucket, Prefix: prefix + listPrefix },
    );
    try {
      for await (const page of pages) {
        for (const item of page.Contents ?? []) {
          const key = item.Key?.slice(prefix.length);
          // Objects written around this store (not under the key grammar) are not ours to report.
          if (isValidKey(key)) yield key;
        }
      }
    } catch (err) {
      throw s3Error(err);
    }
  }

  async function presignPut(key: string, opts: PresignPutOptions): Promise<PresignedPut> {
    const Key = objectKey(key);
    const { contentLength, contentType, expiresInSeconds } = opts;
    if (!Number.isSafeInteger(contentLength) || contentLength < 0 || contentLength > MAX_PRESIGNED_PUT_BYTES) {
      throw new AppError('ERR_VALIDATION', 'The content length is not valid.');
    }
    if (typeof contentType !== 'string' || !CONTENT_TYPE.test(contentType)) {
      throw new AppError('ERR_VALIDATION', 'The content type is not valid.');
    }
    if (!Number.isSafeInteger(expiresInSeconds) || expiresInSeconds < 1 || expiresInSeconds > MAX_PRESIGN_SECONDS) {
      throw new AppError('ERR_VALIDATION', 'The expiry is not valid.');
    }
    const command = new PutObjectCommand({
      Bucket: bucket,
      Key,
      ContentLength: contentLength,
      ContentType: contentType,
      ...sseParams,
    });
    // With default flexible checksums the SDK presigns the CRC32 of an *empty* body into the query
    // string, which real S3 then enforces against the upload (BadDigest). The client cannot know
    // the bytes' checksum at signing time, so drop those headers before the presigner hoists them.
    command.middlewareStack.add(
      (next) => async (args) => {
        const headers = (args.request as { headers?: Record<string, string> }).headers;
        if (headers) {
          for (const name of Object.keys(headers)) {
            const lower = name.toLowerCase();
            if (lower.startsWith('x-amz-checksum-') || lower === 'x-amz-sdk-checksum-algorithm') delete headers[name];
          }
        }
        return next(args);
      },
      { step: 'build', priority: 'low', name: 'obscuraStripPresignChecksums' },
    );
    let url: string;
    try {
      url = await getSignedUrl(client, command, {
        expiresIn: expiresInSeconds,
        // The presigner leaves content-type unsigned by default; signing it (and the length, and
        // SSE as headers rather than query) is what binds the URL to this one upload.
        signableHeaders: new Set(['content-type', 'content-length', ...Object.keys(sseHeaders)]),
        unhoistableHeaders: new Set(Object.keys(sseHeaders)),
      });
    } catch (err) {
      throw s3Error(err);
    }
    const query = new URL(url).searchParams;
    const signed = new Set((query.get('X-Amz-SignedHeaders') ?? '').split(';'));
    const required = ['content-type', 'content-length', ...Object.keys(sseHeaders)];
    const checksumInQuery = [...query.keys()].some((k) => k.toLowerCase().startsWith('x-amz-checksum-'));
    if (required.some((h) => !signed.has(h)) || checksumInQuery) {
      // An SDK change must not silently turn this into an unbounded upload URL.
      throw new AppError('ERR_INTERNAL', 'The blob store could not sign the upload.');
    }
    return {
      url,
      headers: { 'content-type': contentType, 'content-length': String(contentLength), ...sseHeaders },
    };
  }

  return {
    kind: 's3',
    supports: (feature: BlobStoreFeature) => feature === 'range' || feature === 'presign',
    put,
    get,
    read,
    head,
    delete: del,
    list,
    presignPut,
  };
}
