/**
 * Resumable uploads (tus 1.0: core, creation, creation-with-upload, expiration, checksum, termination)
 * over `@tus/server`, with a `DataStore` that never lets plaintext reach a disk or a bucket.
 *
 * How the bytes travel (one pass: every byte is encrypted once and written once; issue 12, item 2):
 * - An upload fixes the id of the asset it becomes when it is created. Each PATCH body (and a
 *   creation-with-upload POST body) becomes one **part** per segment (`OBSCURA_UPLOAD_SEGMENT_BYTES`,
 *   8 MiB; a body with `Upload-Checksum` stays one part, since only the whole body can be verified),
 *   sealed as it arrives in the asset's own layout (format version 2, docs/encryption-format.md: a
 *   STREAM blob whose key binds the asset id, the part's offset and its random id, and whose last
 *   segment says whether it ends the asset) and stored with the store's atomic `put` under
 *   `orgs/<orgId>/parts/<assetId>/<offset>-<partId>`. A killed server leaves at most an invisible
 *   temporary object or an unlisted part, never a half part, and never plaintext (a PATCH that ends
 *   mid-segment simply ends its part there).
 * - The upload row (`uploads`, RLS) is the source of truth: the offset advances, and the part is
 *   listed, in one conditional UPDATE (`WHERE upload_offset = <expected>`) only after the put
 *   succeeded. That also serialises PATCHes across nodes: the loser gets 409 and its part is deleted.
 * - Segments are committed as they fill, so a server killed mid-PATCH (issue 9, item 18) leaves the
 *   offset at the last whole segment it received: a client resumes and resends at most one segment.
 * - A client that disconnects mid-PATCH keeps what arrived (tus-node-server ends the body stream
 *   gracefully on abort, so the part is a whole authenticated ciphertext) and resumes from the new
 *   offset. With `Upload-Checksum` a partial body cannot be verified, so it is refused and dropped.
 * - The plaintext SHA-256 is computed as the parts stream in and continued from PATCH to PATCH in
 *   this process ({@link DigestChains}); completion hashes the stored parts only when that chain broke.
 * - When the offset reaches the length, completion is a metadata step (`adoptParts`): it reads only the
 *   head the checks need (sniff → allowlist → decodable-upload check → video probe), then records the
 *   asset row with the part list and marks the upload complete in one transaction. Refused content
 *   (415/413/422) leaves neither parts nor row nor asset. Uploads begun before one-pass uploads (legacy
 *   parts under `uploads/<orgId>/<uploadId>/`) still complete the old way: decrypted and re-encrypted
 *   into a new asset through `ingest`.
 * - Completion holds a lease (`completing_at`, refreshed while it runs). If the process dies
 *   mid-completion, the next HEAD or `sweepExpiredUploads` takes over; nothing was recorded yet, so it
 *   simply runs again for the same asset id.
 *
 * Request state (the verified principal, the parsed checksum, the asset id to return) travels into the
 * tus hooks and the store through `AsyncLocalStorage`, because tus calls the store without it.
 */
import { isDatabaseUnavailable } from '../db/unavailable.js';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, timingSafeEqual, type Hash } from 'node:crypto';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { IncomingMessage } from 'node:http';
import { DataStore, ERRORS, Server, Upload } from '@tus/server';
import type { ColumnType } from 'kysely';
import { sql } from 'kysely';
import type { UploadPathSettings } from './settings.js';
import type { AppSettings } from '../db/schema.js';
import { AppError } from '../errors.js';
import { publicId, randomBase62 } from '../crypto/random.js';
import { decryptStream, encryptStream, type EncryptOptions } from '../crypto/stream.js';
import { appendAudit } from '../audit/log.js';
import type { Principal } from '../auth/keys.js';
import type { Ctx } from '../tenants/index.js';
import { ingest, liveAt, partsPrefixFor, type Asset, type AssetDeps } from './assets.js';
import { adoptParts } from './adopt.js';
import { reserveUpload } from './upload-limits.js';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type Json<T> = ColumnType<T, string | T, string | T>;

/** One committed encrypted part of an upload. */
export interface UploadPart {
  /** Plaintext offset of the part's first byte. */
  offset: number;
  /** Plaintext bytes in the part. */
  size: number;
  /** Blob key (for a legacy part, also its encryption blob id). */
  key: string;
  /**
   * Set for a version-2 part (the asset's own layout, written under the upload's target asset id);
   * absent for a legacy part of an upload created before one-pass uploads (decrypted and re-encrypted
   * at completion, as before).
   */
  id?: string;
}

/** The `uploads` table (migration 0006, tenant table under RLS). */
export interface UploadsTable {
  id: string;
  org_id: string;
  app_id: string;
  created_by: string;
  upload_length: ColumnType<number, number, number>;
  upload_offset: ColumnType<number, number | undefined, number>;
  metadata: Json<Record<string, string | null>>;
  parts: ColumnType<UploadPart[], string | undefined, string>;
  created_at: Timestamp;
  expires_at: Timestamp;
  completing_at: NullableTimestamp;
  completed_asset_id: string | null;
  /** The id the asset will have, fixed when completion first starts (migration 0010). */
  target_asset_id: string | null;
}

declare module '../db/schema.js' {
  interface Database {
    uploads: UploadsTable;
  }
}

/** How long an unfinished upload may be resumed: 24 hours (tus expiration extension). */
export const DEFAULT_UPLOAD_EXPIRY_SECONDS = 24 * 3600;
/**
 * Most parts one upload may have. Every PATCH is a part (a blob and a row update), so this bounds
 * what a client sending one-byte chunks can cost us; 10 000 parts of tus-js-client's usual sizes
 * is far beyond any real upload.
 */
export const MAX_UPLOAD_PARTS = 10_000;
/** Largest `Upload-Metadata` we keep, serialised (it is echoed on every HEAD). */
export const MAX_METADATA_BYTES = 4096;
/** A completion lease not refreshed for this long belonged to a dead process and may be taken over. */
export const COMPLETION_LEASE_MS = 10_000;

/** How long a HEAD waits for a completion that another request (or node) is running. */
const HEAD_COMPLETION_WAIT_MS = 2000;
/** Checksum algorithms of the tus checksum extension we accept (`Tus-Checksum-Algorithm`). */
export const CHECKSUM_ALGORITHMS = ['sha1', 'sha256'] as const;
/** A checksum algorithm of {@link CHECKSUM_ALGORITHMS}. */
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];
/** tus extensions advertised in `Tus-Extension`. */
export const TUS_EXTENSIONS = ['creation', 'creation-with-upload', 'expiration', 'checksum', 'termination'] as const;
/** Response header carrying the asset an upload became (on the completing PATCH/POST and on HEAD). */
export const ASSET_ID_HEADER = 'Obscura-Asset-Id';

/** Upload ids: `tus_` + 22 base62 characters (≥ 128 random bits, so an id is not guessable). */
export const UPLOAD_ID_PATTERN = /^tus_[0-9A-Za-z]{22}$/;

/** A parsed `Upload-Checksum` request header. */
export interface UploadChecksum {
  algorithm: ChecksumAlgorithm;
  digest: Buffer;
}

/**
 * Parses `Upload-Checksum: <algorithm> <base64 digest>` (tus checksum extension). An unknown
 * algorithm or a malformed value is `ERR_BAD_REQUEST` (400), as the protocol requires.
 */
export function parseUploadChecksum(header: string | undefined): UploadChecksum | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*([A-Za-z0-9-]+) +([A-Za-z0-9+/]+={0,2})\s*$/.exec(header);
  if (!m) throw new AppError('ERR_BAD_REQUEST', 'Upload-Checksum must be "<algorithm> <base64 digest>".');
  const algorithm = m[1]!.toLowerCase();
  if (!(CHECKSUM_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw new AppError('ERR_BAD_REQUEST', `Unsupported checksum algorithm; use one of ${CHECKSUM_ALGORITHMS.join(', ')}.`, { details: { supported: [...CHECKSUM_ALGORITHMS] } });
  }
  const digest = Buffer.from(m[2]!, 'base64');
  const expected = algorithm === 'sha1' ? 20 : 32;
  if (digest.length !== expected) throw new AppError('ERR_BAD_REQUEST', `An ${algorithm} digest is ${expected} bytes.`);
  return { algorithm: algorithm as ChecksumAlgorithm, digest };
}

/** Per-request state carried into the tus hooks and the store. */
export interface TusRequestContext {
  /** The verified credential (absent only for OPTIONS, which is unauthenticated). */
  principal?: Principal;
  /** Audit context of the request. */
  ctx: Ctx;
  /** The parsed `Upload-Checksum` of this request's body, if any. */
  checksum?: UploadChecksum;
  /** Set when the addressed upload has become an asset; the HTTP layer returns it as a header. */
  assetId?: string;
  /** The error a tus handler failed with, for the HTTP layer's problem document. */
  error?: AppError;
  /** The raw request (only HEAD may finish a completion interrupted by a crash). */
  raw?: IncomingMessage;
  /** Per-request cache of the app's settings. */
  settings?: AppSettings;
}

/** Dependencies of the tus capability. */
export interface TusDeps extends AssetDeps {
  config: UploadPathSettings;
  /** Where unexpected failures are reported (never sent to the client). */
  log?: { error(obj: unknown, msg?: string): void; warn?(obj: unknown, msg?: string): void };
}

/** Options of {@link createTusUploads}. */
export interface TusOptions {
  /** URL path the tus endpoint is mounted at (default `/v1/uploads`). */
  path?: string;
  /** Lifetime of an unfinished upload in seconds (default 24 h). */
  expirySeconds?: number;
}

type UploadRow = {
  id: string;
  org_id: string;
  app_id: string;
  created_by: string;
  upload_length: number | string;
  upload_offset: number | string;
  metadata: Record<string, string | null> | string;
  parts: UploadPart[] | string;
  created_at: Date;
  expires_at: Date;
  completing_at: Date | null;
  completed_asset_id: string | null;
  target_asset_id: string | null;
};

interface UploadRecord {
  id: string;
  orgId: string;
  appId: string;
  createdBy: string;
  length: number;
  offset: number;
  metadata: Record<string, string | null>;
  parts: UploadPart[];
  createdAt: Date;
  expiresAt: Date;
  completingAt: Date | null;
  assetId: string | null;
  /** The asset this upload becomes, fixed by the first completion attempt. */
  targetAssetId: string | null;
}

const json = <T>(v: T | string): T => (typeof v === 'string' ? (JSON.parse(v) as T) : v);

function toRecord(r: UploadRow): UploadRecord {
  return {
    id: r.id,
    orgId: r.org_id,
    appId: r.app_id,
    createdBy: r.created_by,
    length: Number(r.upload_length),
    offset: Number(r.upload_offset),
    metadata: json(r.metadata),
    parts: json(r.parts),
    createdAt: new Date(r.created_at),
    expiresAt: new Date(r.expires_at),
    completingAt: r.completing_at ? new Date(r.completing_at) : null,
    assetId: r.completed_asset_id,
    targetAssetId: r.target_asset_id,
  };
}

/** Blob prefix of one upload's parts. */
export const uploadPrefix = (orgId: string, uploadId: string) => `uploads/${orgId}/${uploadId}/`;

/** The key of a new part: offset padded so keys sort by offset, random tail so a retry never overwrites. */
/** One part being written: plaintext goes into `input`, ciphertext into the store under `key`. */
interface Segment {
  key: string;
  /** The part id of a version-2 part. */
  id?: string;
  input: PassThrough;
  meter: PartMeter;
  /** Settles when the part is stored (or failed). */
  done: Promise<void>;
  /** Resolves when `input` can take more (or the segment failed). */
  drained(): Promise<void>;
}

function openSegment(store: TusDeps['store'], o: { key: string; id?: string; encrypt: EncryptOptions; checksum: UploadChecksum | undefined; running: Hash | undefined }): Segment {
  const input = new PassThrough({ highWaterMark: 64 * 1024 });
  const meter = new PartMeter(o.checksum, o.running);
  const sink = new PassThrough({ highWaterMark: 64 * 1024 });
  const writing = store.put(o.key, sink);
  const done = pipeline(input, meter, encryptStream(o.encrypt), sink).then(
    () => writing.then(() => undefined),
    async (err: unknown) => {
      sink.destroy(err as Error);
      await writing.catch(() => undefined);
      throw err;
    },
  );
  // A failure is reported by `done` (awaited by whoever ends the segment); never unhandled meanwhile.
  done.catch(() => undefined);
  const drained = () =>
    new Promise<void>((resolve) => {
      const finish = () => {
        input.off('drain', finish);
        input.off('close', finish);
        resolve();
      };
      input.once('drain', finish);
      input.once('close', finish);
    });
  return { key: o.key, ...(o.id ? { id: o.id } : {}), input, meter, done, drained };
}

/** Key of a legacy part (uploads created before one-pass uploads). */
function partKey(orgId: string, uploadId: string, offset: number): string {
  return `${uploadPrefix(orgId, uploadId)}part-${String(offset).padStart(16, '0')}-${randomBase62(8)}`;
}

/**
 * Key of a version-2 part: under the asset the upload becomes (offset padded so keys sort by offset;
 * the random part id, also bound into the part's key, so a retry never overwrites a committed part).
 */
function assetPartKey(orgId: string, assetId: string, offset: number, partId: string): string {
  return `${partsPrefixFor(orgId, assetId)}${String(offset).padStart(16, '0')}-${partId}`;
}

/**
 * The plaintext SHA-256 of each upload, continued in this process from PATCH to PATCH (issue 12,
 * item 2), so completion needs no second read of the file. A chain holds the hash of exactly the
 * committed bytes `[0, offset)`; a PATCH at that offset takes it over, one that arrives elsewhere (another
 * node, after a restart, or after the chain was evicted) finds none, and completion then hashes the
 * stored parts instead. Bounded by count (a chain is a few hundred bytes); the oldest go first.
 */
export class DigestChains {
  private readonly chains = new Map<string, { offset: number; hash: Hash }>();
  constructor(private readonly max = 10_000) {}

  /** The chain of `uploadId` if it stands at `offset` (a fresh one at 0), removed from the map; else undefined. */
  take(uploadId: string, offset: number): Hash | undefined {
    const chain = this.chains.get(uploadId);
    this.chains.delete(uploadId);
    if (offset === 0) return createHash('sha256');
    return chain && chain.offset === offset ? chain.hash : undefined;
  }

  /** Records the hash of the committed bytes `[0, offset)`. */
  put(uploadId: string, offset: number, hash: Hash): void {
    this.chains.delete(uploadId);
    this.chains.set(uploadId, { offset, hash });
    if (this.chains.size > this.max) this.chains.delete(this.chains.keys().next().value!);
  }

  /** The hex digest when the chain of `uploadId` covers exactly `[0, length)`; the chain is consumed. */
  digest(uploadId: string, length: number): string | undefined {
    const chain = this.chains.get(uploadId);
    this.chains.delete(uploadId);
    return chain && chain.offset === length ? chain.hash.digest('hex') : undefined;
  }
}

/** tus's own error objects (`ERRORS.*`, `MaxFileExceededError`) carry `status_code` and `body`. */
function isTusError(err: unknown): err is { status_code: number; body: string } {
  return typeof err === 'object' && err !== null && typeof (err as { status_code?: unknown }).status_code === 'number';
}

/**
 * Maps whatever a tus handler failed with to our error vocabulary, keeping tus's status codes
 * (404, 409, 410, 413, 460) and never reusing a library's message (tus-node-server would send
 * `error.message` of an unexpected error verbatim).
 */
export function toUploadError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (isTusError(err)) {
    switch (err.status_code) {
      case 404:
        return new AppError('ERR_NOT_FOUND', 'The upload does not exist.');
      case 409:
        return new AppError('ERR_UPLOAD_OFFSET_MISMATCH', 'Upload-Offset does not match the upload; send HEAD to learn the current offset.');
      case 410:
        return new AppError('ERR_UPLOAD_EXPIRED', 'The upload has expired; start a new one.');
      case 413:
        return new AppError('ERR_PAYLOAD_TOO_LARGE', 'The upload exceeds its declared length or the maximum size.');
      case 500:
        if (err === ERRORS.ERR_LOCK_TIMEOUT) return new AppError('ERR_UNAVAILABLE', 'The upload is busy; retry shortly.', { headers: { 'Retry-After': '1' } });
        break;
      case 501:
        return new AppError('ERR_NOT_IMPLEMENTED', 'This tus extension is not supported (supported: creation, creation-with-upload, expiration, checksum, termination).');
      default:
        if (err.status_code >= 400 && err.status_code < 500) {
          if (err === ERRORS.MISSING_OFFSET) return new AppError('ERR_BAD_REQUEST', 'Send the Upload-Offset header.');
          if (err === ERRORS.INVALID_CONTENT_TYPE) return new AppError('ERR_BAD_REQUEST', 'Send Content-Type: application/offset+octet-stream.');
          if (err === ERRORS.INVALID_LENGTH) return new AppError('ERR_BAD_REQUEST', 'Send Upload-Length (deferred lengths are not supported).');
          if (err === ERRORS.INVALID_METADATA) return new AppError('ERR_BAD_REQUEST', 'Upload-Metadata is not valid (comma-separated "key base64value" pairs).');
          return new AppError('ERR_BAD_REQUEST', 'The tus request is not valid.');
        }
    }
  }
  if (isDatabaseUnavailable(err)) {
    return new AppError('ERR_DEPENDENCY_UNAVAILABLE', 'The database did not answer in time; retry after the Retry-After delay.', { cause: err, details: { dependency: 'database' }, headers: { 'Retry-After': '5' } });
  }
  return new AppError('ERR_INTERNAL', 'Something went wrong on our side; quote the request id when reporting it.', { cause: err });
}

/**
 * Counts a part's bytes and, when the request carried `Upload-Checksum`, hashes them and refuses to
 * finish (so the atomic put stores nothing) unless the digest matches.
 */
class PartMeter extends Transform {
  bytes = 0;
  private readonly hash: Hash | undefined;
  constructor(
    private readonly checksum: UploadChecksum | undefined,
    /** The upload's running plaintext SHA-256 (a copy, adopted only if the part commits). */
    readonly running: Hash | undefined,
  ) {
    super();
    this.hash = checksum ? createHash(checksum.algorithm) : undefined;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash?.update(chunk);
    this.running?.update(chunk);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    if (this.checksum && this.hash) {
      const got = this.hash.digest();
      if (!timingSafeEqual(got, this.checksum.digest)) {
        cb(new AppError('ERR_CHECKSUM_MISMATCH', 'The chunk does not match its Upload-Checksum; it was discarded and the offset is unchanged.'));
        return;
      }
    }
    cb();
  }
}

async function settingsOf(deps: TusDeps, orgId: string, appId: string): Promise<AppSettings> {
  const row = await deps.db.withTenant(orgId, (trx) => trx.selectFrom('apps').select('settings').where('org_id', '=', orgId).where('id', '=', appId).executeTakeFirst());
  return (row ? json(row.settings as AppSettings | string) : {}) ?? {};
}

/** The largest upload an app accepts: its `max_upload_bytes`, never above the server's `OBSCURA_MAX_UPLOAD_BYTES`. */
export function maxUploadBytes(config: UploadPathSettings, settings: AppSettings): number {
  return Math.min(config.uploads.maxBytes, settings.max_upload_bytes ?? Number.MAX_SAFE_INTEGER);
}

async function loadUpload(deps: TusDeps, orgId: string, appId: string | null, uploadId: string): Promise<UploadRecord | null> {
  if (!UPLOAD_ID_PATTERN.test(uploadId)) return null;
  const row = await deps.db.withTenant(orgId, (trx) => {
    let q = trx.selectFrom('uploads').selectAll().where('org_id', '=', orgId).where('id', '=', uploadId);
    if (appId) q = q.where('app_id', '=', appId);
    return q.executeTakeFirst();
  });
  return row ? toRecord(row as UploadRow) : null;
}

/** Whether an asset is still served (not deleted, not expired unless held). */
async function assetIsLive(deps: TusDeps, orgId: string, assetId: string): Promise<boolean> {
  const now = new Date(nowOf(deps));
  const row = await deps.db.withTenant(orgId, (trx) => trx.selectFrom('assets').select('id').where('org_id', '=', orgId).where('id', '=', assetId).where('deleted_at', 'is', null).where(liveAt(now)).executeTakeFirst());
  return row !== undefined;
}

async function deleteBlobs(deps: TusDeps, prefix: string): Promise<void> {
  for await (const key of deps.store.list(prefix)) await deps.store.delete(key);
}

/** Decrypts one part, checking that it yields exactly the bytes that were committed. */
async function* partPlaintext(deps: TusDeps, orgId: string, part: UploadPart): AsyncGenerator<Buffer> {
  const source = await deps.store.get(part.key);
  const plain = decryptPart(deps, orgId, part, source);
  let n = 0;
  for await (const chunk of plain) {
    n += (chunk as Buffer).length;
    yield chunk as Buffer;
  }
  if (n !== part.size) throw new AppError('ERR_INTEGRITY', 'An upload part does not have the length that was committed.');
}

function decryptPart(deps: TusDeps, orgId: string, part: UploadPart, source: Readable): Readable {
  const dec = decryptStream({ blobId: part.key, keyFor: (keyId) => deps.keyring.get(orgId, keyId) });
  source.on('error', (err) => dec.destroy(err));
  return source.pipe(dec);
}

/** The upload's plaintext, streamed from its decrypted parts in order. */
function uploadPlaintext(deps: TusDeps, rec: UploadRecord): Readable {
  const parts = [...rec.parts].sort((a, b) => a.offset - b.offset);
  let expected = 0;
  for (const p of parts) {
    // Defence in depth: the row's list must tile [0, length) exactly.
    if (p.offset !== expected) throw new AppError('ERR_INTEGRITY', 'The upload parts are not contiguous.');
    expected += p.size;
  }
  if (expected !== rec.length) throw new AppError('ERR_INTEGRITY', 'The upload parts do not add up to its length.');
  return Readable.from(
    (async function* () {
      for (const p of parts) yield* partPlaintext(deps, rec.orgId, p);
    })(),
    { objectMode: false },
  );
}

/** The actor of everything done on an upload's behalf: the credential that created it. */
const uploadActor = (rec: UploadRecord, ctx: Ctx): Ctx => ({ actor: { type: 'key', id: rec.createdBy, via: 'tus' }, ip: ctx.ip ?? null, requestId: ctx.requestId ?? null });

/**
 * Removes an upload and its parts (termination, refusal, expiry). The row goes first, in a statement
 * that also tells whether the upload had become an asset: the parts of a completed version-2 upload
 * ARE that asset and stay; otherwise they are deleted. A completion racing with this either committed
 * first (the row then says so) or finds the row gone and records nothing. A crash between the row and
 * the blobs leaves parts no row owns, which the upload sweep (legacy parts) and the orphan sweep
 * (version-2 parts) remove.
 */
async function discardUpload(deps: TusDeps, rec: UploadRecord, ctx: Ctx, action: 'upload.terminate' | 'upload.refuse' | 'upload.expire', data: Record<string, unknown> = {}): Promise<void> {
  const removed = await deps.db.withTenant(rec.orgId, async (trx) => {
    const r = await trx.deleteFrom('uploads').where('org_id', '=', rec.orgId).where('id', '=', rec.id).returning(['completed_asset_id', 'target_asset_id']).executeTakeFirst();
    if (!r) return null;
    await appendAudit(trx, {
      orgId: rec.orgId,
      actor: ctx.actor,
      action,
      target: { upload: rec.id, app: rec.appId },
      data: { offset: rec.offset, length: rec.length, ...data },
      ip: ctx.ip,
      requestId: ctx.requestId,
    });
    return r;
  });
  await deleteBlobs(deps, uploadPrefix(rec.orgId, rec.id));
  if (removed && removed.completed_asset_id === null && removed.target_asset_id) await deleteBlobs(deps, partsPrefixFor(rec.orgId, removed.target_asset_id));
}

const nowOf = (deps: TusDeps) => deps.now?.() ?? Date.now();

type Claim =
  | { kind: 'claimed'; rec: UploadRecord; recovering: Date | null }
  | { kind: 'done'; assetId: string }
  | { kind: 'busy' }
  | { kind: 'not-ready' };

/** Takes the completion lease (or says why not). `recovering`: when an earlier holder died mid-run. */
async function claimCompletion(deps: TusDeps, orgId: string, uploadId: string): Promise<Claim> {
  const now = nowOf(deps);
  return deps.db.withTenant(orgId, async (trx) => {
    const row = await trx.selectFrom('uploads').selectAll().where('org_id', '=', orgId).where('id', '=', uploadId).forUpdate().executeTakeFirst();
    if (!row) throw new AppError('ERR_NOT_FOUND', 'The upload does not exist.');
    const rec = toRecord(row as UploadRow);
    if (rec.assetId) return { kind: 'done', assetId: rec.assetId };
    if (rec.offset !== rec.length) return { kind: 'not-ready' };
    if (rec.completingAt && rec.completingAt.getTime() > now - COMPLETION_LEASE_MS) return { kind: 'busy' };
    // The asset's identity is fixed with the claim, before any of it exists: every later attempt
    // (after a crash, on any node) completes *this* asset and nothing else.
    const targetAssetId = rec.targetAssetId ?? publicId('ast');
    await trx.updateTable('uploads').set({ completing_at: new Date(now), target_asset_id: targetAssetId }).where('org_id', '=', orgId).where('id', '=', uploadId).execute();
    return { kind: 'claimed', rec: { ...rec, targetAssetId }, recovering: rec.completingAt };
  });
}

/**
 * After a crash between "asset created" and "asset recorded on the upload", the asset exists but the
 * upload does not know it: it is the one with the upload's own target id (never one found by content,
 * which could be another upload's identical file).
 */
async function findCrashedRunAsset(deps: TusDeps, rec: UploadRecord): Promise<string | null> {
  if (!rec.targetAssetId) return null;
  const row = await deps.db.withTenant(rec.orgId, (trx) =>
    trx.selectFrom('assets').select('id').where('org_id', '=', rec.orgId).where('id', '=', rec.targetAssetId!).where('deleted_at', 'is', null).executeTakeFirst(),
  );
  return row?.id ?? null;
}

/**
 * Completion of a version-2 upload: its parts already are the asset, so this validates what is stored
 * (reading only the head the checks need, and the whole file only when the in-process hash chain
 * broke), removes stray parts a crash or a lost race left under the asset's prefix, and records the
 * asset and the upload's completion in one transaction. No blob is written or rewritten.
 */
async function adoptUpload(deps: TusDeps, rec: UploadRecord, actorCtx: Ctx, chains: DigestChains | undefined): Promise<string> {
  const assetId = rec.targetAssetId!;
  const parts = [...rec.parts].sort((a, b) => a.offset - b.offset);
  const listed = new Set(parts.map((p) => p.key));
  for await (const key of deps.store.list(partsPrefixFor(rec.orgId, assetId))) if (!listed.has(key)) await deps.store.delete(key);
  const settings = await settingsOf(deps, rec.orgId, rec.appId);
  try {
    await adoptParts(deps, {
      orgId: rec.orgId,
      appId: rec.appId,
      id: assetId,
      parts: parts.map((p) => ({ offset: p.offset, size: p.size, id: p.id!, key: p.key })),
      size: rec.length,
      maxBytes: maxUploadBytes(deps.config, settings),
      sha256: chains?.digest(rec.id, rec.length),
      filename: typeof rec.metadata.filename === 'string' ? rec.metadata.filename : null,
      ctx: actorCtx,
      commit: async (trx) => {
        // Only an upload still unfinished becomes the asset: one discarded meanwhile (expired,
        // terminated) rolls the asset back.
        const done = await trx
          .updateTable('uploads')
          .set({ completed_asset_id: assetId, completing_at: null, parts: JSON.stringify([]) })
          .where('org_id', '=', rec.orgId)
          .where('id', '=', rec.id)
          .where('completed_asset_id', 'is', null)
          .returning('id')
          .executeTakeFirst();
        if (!done) throw new AppError('ERR_NOT_FOUND', 'The upload does not exist.');
        await appendAudit(trx, { orgId: rec.orgId, actor: actorCtx.actor, action: 'upload.complete', target: { upload: rec.id, app: rec.appId, asset: assetId }, data: { length: rec.length, parts: parts.length }, ip: actorCtx.ip, requestId: actorCtx.requestId });
      },
    });
  } catch (err) {
    if (err instanceof AppError && err.status >= 400 && err.status < 500) {
      // Refused content is not kept "for later": nothing of it stays, encrypted or not.
      await discardUpload(deps, rec, actorCtx, 'upload.refuse', { code: err.code });
    }
    throw err;
  }
  return assetId;
}

/**
 * Turns a fully received upload into an asset, exactly once: idempotent (a completed upload returns
 * its asset id), crash-safe (see the module comment) and clean (refused content leaves nothing).
 * When another request or node holds a live completion lease, waits up to `waitMs` (default: one
 * lease) for its result. Resolves with the asset id, or `null` when the upload is not fully received
 * or the wait ran out. Rejects with ingest's `ERR_UNSUPPORTED_MEDIA_TYPE` (415) /
 * `ERR_PAYLOAD_TOO_LARGE` (413) after discarding the upload, and with `ERR_NOT_FOUND` when there is
 * no such upload in the org (including one discarded by a concurrent refused completion).
 */
export async function completeUpload(deps: TusDeps, orgId: string, uploadId: string, ctx: Ctx, opts: { waitMs?: number; chains?: DigestChains } = {}): Promise<string | null> {
  const deadline = Date.now() + (opts.waitMs ?? COMPLETION_LEASE_MS);
  let claim = await claimCompletion(deps, orgId, uploadId);
  while (claim.kind === 'busy' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    claim = await claimCompletion(deps, orgId, uploadId);
  }
  if (claim.kind === 'done') return claim.assetId;
  if (claim.kind !== 'claimed') return null;
  const { rec, recovering } = claim;
  const heartbeat = setInterval(() => {
    void deps.db
      .withTenant(orgId, (trx) => trx.updateTable('uploads').set({ completing_at: new Date(nowOf(deps)) }).where('org_id', '=', orgId).where('id', '=', uploadId).where('completed_asset_id', 'is', null).execute())
      .catch(() => undefined);
  }, COMPLETION_LEASE_MS / 3);
  heartbeat.unref();
  const actorCtx = uploadActor(rec, ctx);
  try {
    if (rec.parts.every((p) => p.id !== undefined) && rec.targetAssetId) return await adoptUpload(deps, rec, actorCtx, opts.chains);
    let assetId = recovering ? await findCrashedRunAsset(deps, rec) : null;
    if (!assetId) {
      const settings = await settingsOf(deps, orgId, rec.appId);
      let asset: Asset;
      try {
        asset = await ingest(deps, {
          orgId,
          appId: rec.appId,
          kind: 'upload',
          body: uploadPlaintext(deps, rec),
          maxBytes: maxUploadBytes(deps.config, settings),
          expectedSize: rec.length,
          filename: typeof rec.metadata.filename === 'string' ? rec.metadata.filename : null,
          ctx: actorCtx,
          id: rec.targetAssetId ?? undefined,
        });
      } catch (err) {
        if (err instanceof AppError && err.status >= 400 && err.status < 500) {
          // Refused content is not kept "for later": nothing of it stays, encrypted or not.
          await discardUpload(deps, rec, actorCtx, 'upload.refuse', { code: err.code });
        }
        throw err;
      }
      assetId = asset.id;
    }
    await deps.db.withTenant(orgId, async (trx) => {
      await trx.updateTable('uploads').set({ completed_asset_id: assetId, completing_at: null }).where('org_id', '=', orgId).where('id', '=', uploadId).execute();
      await appendAudit(trx, { orgId, actor: actorCtx.actor, action: 'upload.complete', target: { upload: uploadId, app: rec.appId, asset: assetId }, data: { length: rec.length, parts: rec.parts.length }, ip: actorCtx.ip, requestId: actorCtx.requestId });
    });
    await deleteBlobs(deps, uploadPrefix(orgId, uploadId));
    await deps.db.withTenant(orgId, (trx) => trx.updateTable('uploads').set({ parts: JSON.stringify([]) }).where('org_id', '=', orgId).where('id', '=', uploadId).execute());
    return assetId;
  } catch (err) {
    // Release the lease so a retry need not wait for it to go stale (the row may be gone: refused).
    await deps.db
      .withTenant(orgId, (trx) => trx.updateTable('uploads').set({ completing_at: null }).where('org_id', '=', orgId).where('id', '=', uploadId).where('completed_asset_id', 'is', null).execute())
      .catch(() => undefined);
    throw err;
  } finally {
    clearInterval(heartbeat);
  }
}

/**
 * Deletes expired uploads (their parts, then their rows; audited as `upload.expire` when unfinished),
 * removes the parts of completed uploads left behind by a crash, finishes completions whose process
 * died, and deletes part blobs that belong to no upload. Owner-level scans, tenant-level changes.
 * Call it periodically (every few minutes). Returns how many uploads it removed.
 */
export async function sweepExpiredUploads(deps: TusDeps, batch = 100): Promise<number> {
  const now = new Date(nowOf(deps));
  const sys: Ctx = { actor: { type: 'system', id: 'upload-sweeper' } };
  let removed = 0;
  const expired = await deps.db.system.selectFrom('uploads').selectAll().where('expires_at', '<=', now).limit(batch).execute();
  for (const row of expired) {
    const rec = toRecord(row as UploadRow);
    await discardUpload(deps, rec, sys, 'upload.expire', { offset: rec.offset, length: rec.length, completed: rec.assetId !== null });
    removed++;
  }
  const leftovers = await deps.db.system
    .selectFrom('uploads')
    .selectAll()
    .where('completed_asset_id', 'is not', null)
    .where(sql<boolean>`jsonb_array_length(parts) > 0`)
    .limit(batch)
    .execute();
  for (const row of leftovers) {
    await deleteBlobs(deps, uploadPrefix(row.org_id, row.id));
    await deps.db.withTenant(row.org_id, (trx) => trx.updateTable('uploads').set({ parts: JSON.stringify([]) }).where('org_id', '=', row.org_id).where('id', '=', row.id).execute());
  }
  const stuck = await deps.db.system
    .selectFrom('uploads')
    .select(['id', 'org_id'])
    .where('completed_asset_id', 'is', null)
    .where(sql<boolean>`upload_offset = upload_length`)
    .where((eb) => eb.or([eb('completing_at', 'is', null), eb('completing_at', '<', new Date(now.getTime() - COMPLETION_LEASE_MS))]))
    .limit(batch)
    .execute();
  for (const s of stuck) {
    try {
      await completeUpload(deps, s.org_id, s.id, sys, { waitMs: 0 });
    } catch (err) {
      if (!(err instanceof AppError) || err.status >= 500) deps.log?.error({ err, upload: s.id }, 'could not finish an interrupted upload completion');
      else if (err.code !== 'ERR_NOT_FOUND') removed++;
    }
  }
  // Parts whose upload row is gone (e.g. a PATCH that finished writing after its upload was swept).
  const seen = new Map<string, string[]>();
  for await (const key of deps.store.list('uploads/')) {
    const [, orgId, uploadId] = key.split('/');
    if (!orgId || !uploadId) continue;
    const list = seen.get(`${orgId}/${uploadId}`) ?? [];
    list.push(key);
    seen.set(`${orgId}/${uploadId}`, list);
    if (seen.size >= batch * 10) break;
  }
  for (const [k, keys] of seen) {
    const [, uploadId] = k.split('/');
    const exists = await deps.db.system.selectFrom('uploads').select('id').where('id', '=', uploadId!).executeTakeFirst();
    if (!exists) for (const key of keys) await deps.store.delete(key);
  }
  return removed;
}

/**
 * The encrypting tus `DataStore`. Every method acts for the principal in the request context, so an
 * upload of another org (or another app) is `FILE_NOT_FOUND` (404), the same answer as a missing one.
 */
export class EncryptedUploadStore extends DataStore {
  /** Running plaintext hashes of the uploads this process is receiving. */
  readonly chains = new DigestChains();

  constructor(
    private readonly deps: TusDeps,
    private readonly als: AsyncLocalStorage<TusRequestContext>,
    private readonly expiryMs: number,
  ) {
    super();
    this.extensions = [...TUS_EXTENSIONS];
  }

  private context(): TusRequestContext & { principal: Principal } {
    const rc = this.als.getStore();
    // Not reachable through the HTTP layer (every non-OPTIONS route is authenticated); a guard so the
    // store can never act without a tenant.
    if (!rc?.principal) throw new AppError('ERR_AUTH_MISSING', 'Send a credential as "Authorization: Bearer <key or token>".');
    return rc as TusRequestContext & { principal: Principal };
  }

  /** The addressed upload of the caller's org and app, or `FILE_NOT_FOUND`. */
  async find(id: string): Promise<UploadRecord> {
    const { principal } = this.context();
    const rec = await loadUpload(this.deps, principal.orgId, principal.appId, id);
    if (!rec) throw ERRORS.FILE_NOT_FOUND;
    // Deletion is final (issue 14, item 7): once the asset an upload became is deleted or expired,
    // its upload URL is gone too (404 on HEAD and PATCH), so a client that resumes it (tus-js-client,
    // Uppy keep upload URLs in storage) uploads anew instead of being told the dead asset's id.
    if (rec.assetId && !(await assetIsLive(this.deps, rec.orgId, rec.assetId))) throw ERRORS.FILE_NOT_FOUND;
    return rec;
  }

  private toUpload(rec: UploadRecord): Upload {
    return new Upload({
      id: rec.id,
      size: rec.length,
      offset: rec.offset,
      metadata: rec.metadata,
      // tus derives Upload-Expires from creation + getExpiration(); keep them consistent with expires_at.
      creation_date: new Date(rec.expiresAt.getTime() - this.expiryMs).toISOString(),
      storage: { type: 'obscura', path: uploadPrefix(rec.orgId, rec.id) },
    });
  }

  override async create(upload: Upload): Promise<Upload> {
    const { principal, ctx } = this.context();
    if (upload.size === undefined) throw ERRORS.INVALID_LENGTH;
    const metadata = upload.metadata ?? {};
    if (Buffer.byteLength(JSON.stringify(metadata)) > MAX_METADATA_BYTES) {
      throw new AppError('ERR_BAD_REQUEST', `Upload-Metadata may hold at most ${MAX_METADATA_BYTES} bytes.`);
    }
    const now = nowOf(this.deps);
    const expiresAt = new Date(now + this.expiryMs);
    await this.deps.db.withTenant(principal.orgId, async (trx) => {
      // The declared length is reserved until the upload completes, is terminated or expires.
      await reserveUpload(trx, this.deps.config.uploads.limits, principal.orgId, principal.appId, upload.size!, new Date(now));
      await trx
        .insertInto('uploads')
        .values({
          id: upload.id,
          org_id: principal.orgId,
          app_id: principal.appId,
          created_by: principal.keyId,
          upload_length: upload.size!,
          metadata: JSON.stringify(metadata),
          // The asset's identity is fixed now: every part is encrypted for it as it arrives.
          target_asset_id: publicId('ast'),
          created_at: new Date(now),
          expires_at: expiresAt,
        })
        .execute();
      await appendAudit(trx, { orgId: principal.orgId, actor: ctx.actor, action: 'upload.create', target: { upload: upload.id, app: principal.appId }, data: { length: upload.size }, ip: ctx.ip, requestId: ctx.requestId });
    });
    upload.creation_date = new Date(now).toISOString();
    upload.storage = { type: 'obscura', path: uploadPrefix(principal.orgId, upload.id) };
    return upload;
  }

  override async getUpload(id: string): Promise<Upload> {
    const rc = this.context();
    let rec = await this.find(id);
    if (rec.expiresAt.getTime() <= nowOf(this.deps)) throw ERRORS.FILE_NO_LONGER_EXISTS;
    if (!rec.assetId && rec.offset === rec.length && rc.raw?.method === 'HEAD') {
      // A completion interrupted by a crash (or still running elsewhere): finish it before answering,
      // so a client that resumes a fully sent upload learns its asset.
      // A HEAD answers promptly (issue 9, item 18: it used to wait out a dead node's whole lease): it
      // waits a moment for a live completion, else reports the offset and the client asks again.
      const assetId = await completeUpload(this.deps, rec.orgId, rec.id, rc.ctx, { waitMs: HEAD_COMPLETION_WAIT_MS, chains: this.chains });
      if (assetId) rec = { ...rec, assetId };
    }
    if (rec.assetId) rc.assetId = rec.assetId;
    return this.toUpload(rec);
  }

  override async write(body: Readable, id: string, offset: number): Promise<number> {
    const rc = this.context();
    const { orgId } = rc.principal;
    const rec = await this.find(id);
    if (rec.assetId || rec.completingAt || rec.offset !== offset) throw ERRORS.INVALID_OFFSET;
    let parts = rec.parts.length;
    const tk = await this.deps.db.withTenant(orgId, (trx) => this.deps.keyring.current(trx, orgId));
    // An upload created with its asset id writes parts in the asset's own layout (version 2); one
    // created before one-pass uploads keeps its legacy parts to the end.
    const assetId = rec.parts.every((p) => p.id !== undefined) ? rec.targetAssetId : null;
    // The running SHA-256 of the committed bytes, when this process saw every byte before `offset`.
    let hash = assetId ? this.chains.take(id, offset) : undefined;
    // The body is committed segment by segment, so a connection or a server that dies mid-PATCH loses
    // at most the segment in flight. A body with `Upload-Checksum` can only be verified whole: it stays
    // one segment (and a cut one is refused whole, as the checksum extension says).
    const limit = rc.checksum ? Number.POSITIVE_INFINITY : this.deps.config.uploads.segmentBytes;
    let at = offset;
    let seg: Segment | undefined;
    const open = (): Segment => {
      if (parts >= MAX_UPLOAD_PARTS) {
        throw new AppError('ERR_PAYLOAD_TOO_LARGE', `An upload may have at most ${MAX_UPLOAD_PARTS} chunks; send larger chunks.`);
      }
      if (!assetId) {
        const key = partKey(orgId, id, at);
        return openSegment(this.deps.store, { key, encrypt: { key: tk.key, keyId: tk.id, blobId: key }, checksum: rc.checksum, running: undefined });
      }
      // The part is sealed for its place in the asset (asset id, offset, part id; final flag if it
      // ends the upload): completion then only records it.
      const partId = randomBase62(12);
      return openSegment(this.deps.store, {
        key: assetPartKey(orgId, assetId, at, partId),
        id: partId,
        encrypt: { key: tk.key, keyId: tk.id, blobId: assetId, part: { id: partId, offset: at, assetSize: rec.length } },
        checksum: rc.checksum,
        running: hash?.copy(),
      });
    };
    const commit = async (s: Segment): Promise<void> => {
      s.input.end();
      await s.done;
      if (s.meter.bytes === 0) {
        await this.deps.store.delete(s.key);
        return;
      }
      at = await this.commitPart(orgId, id, at, s);
      hash = s.meter.running;
      parts += 1;
    };
    try {
      seg = open();
      let filled = 0;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        let rest = chunk;
        while (rest.length > 0) {
          const piece = rest.length > limit - filled ? rest.subarray(0, limit - filled) : rest;
          rest = rest.subarray(piece.length);
          if (!seg.input.write(piece)) await seg.drained();
          filled += piece.length;
          if (filled >= limit) {
            const full = seg;
            seg = undefined;
            await commit(full);
            seg = open();
            filled = 0;
          }
        }
      }
      const last = seg;
      seg = undefined;
      await commit(last);
    } catch (err) {
      if (seg) {
        seg.input.destroy(err as Error);
        await seg.done.catch(() => undefined);
        await this.deps.store.delete(seg.key).catch(() => undefined);
      }
      // Segments committed before the failure stay: the client resumes from `at`.
      if (at !== offset && !(err instanceof AppError && err.code === 'ERR_CHECKSUM_MISMATCH')) return at;
      throw err;
    } finally {
      // The chain covers exactly the committed bytes [0, at): the next PATCH here continues it.
      if (hash) this.chains.put(id, at, hash);
    }
    return at;
  }

  /** Lists a stored part and advances the offset in one conditional UPDATE; returns the new offset. */
  private async commitPart(orgId: string, id: string, offset: number, s: Segment): Promise<number> {
    const part: UploadPart = { offset, size: s.meter.bytes, key: s.key, ...(s.id ? { id: s.id } : {}) };
    const updated = await this.deps.db.withTenant(orgId, (trx) =>
      trx
        .updateTable('uploads')
        .set({ upload_offset: offset + s.meter.bytes, parts: sql`parts || ${JSON.stringify([part])}::jsonb` })
        .where('org_id', '=', orgId)
        .where('id', '=', id)
        .where('upload_offset', '=', offset)
        .where('completed_asset_id', 'is', null)
        .where('completing_at', 'is', null)
        .returning('upload_offset')
        .executeTakeFirst(),
    );
    if (!updated) {
      // Another request (possibly on another node) moved the upload on meanwhile: ours is not part of it.
      await this.deps.store.delete(s.key);
      throw ERRORS.INVALID_OFFSET;
    }
    return offset + s.meter.bytes;
  }

  override async remove(id: string): Promise<void> {
    const rc = this.context();
    const rec = await this.find(id);
    if (rec.completingAt && !rec.assetId && rec.completingAt.getTime() > nowOf(this.deps) - COMPLETION_LEASE_MS) {
      throw new AppError('ERR_CONFLICT', 'The upload is being turned into an asset; it can no longer be terminated.');
    }
    await discardUpload(this.deps, rec, rc.ctx, 'upload.terminate');
  }

  override async deleteExpired(): Promise<number> {
    return sweepExpiredUploads(this.deps);
  }

  override getExpiration(): number {
    return this.expiryMs;
  }
}

/** What {@link createTusUploads} returns: the tus server, its store, and the request-context runner. */
export interface TusUploads {
  server: Server;
  store: EncryptedUploadStore;
  /** Runs `fn` (the tus handling of one request) with `rc` as its request context. */
  run<T>(rc: TusRequestContext, fn: () => Promise<T>): Promise<T>;
  /** The request context of the current async call chain (inside `run`). */
  current(): TusRequestContext | undefined;
}

/**
 * Builds the tus server over the encrypting store. The HTTP layer authenticates, fills a
 * {@link TusRequestContext} and calls `server.handleWeb` inside `run`.
 *
 * Security notes: upload URLs are relative (`Location: /v1/uploads/<id>`), so a forged `Host` header
 * cannot point a client elsewhere; tus's permissive default CORS is off (the API's one CORS policy
 * applies); ownership is checked before tus takes its per-upload lock, so a stranger's request
 * cannot even interrupt a running PATCH.
 */
export function createTusUploads(deps: TusDeps, opts: TusOptions = {}): TusUploads {
  const als = new AsyncLocalStorage<TusRequestContext>();
  const expiryMs = (opts.expirySeconds ?? DEFAULT_UPLOAD_EXPIRY_SECONDS) * 1000;
  const store = new EncryptedUploadStore(deps, als, expiryMs);
  const inFlight = new Map<string, Promise<string | null>>();

  const settings = async (rc: TusRequestContext): Promise<AppSettings> => {
    if (!rc.principal) return {};
    rc.settings ??= await settingsOf(deps, rc.principal.orgId, rc.principal.appId);
    return rc.settings;
  };

  const options: ConstructorParameters<typeof Server>[0] = {
    path: opts.path ?? '/v1/uploads',
    datastore: store,
    relativeLocation: true,
    namingFunction: () => publicId('tus'),
    // Only our routing decides the id (Fastify already matched `/v1/uploads/:id`).
    getFileIdFromRequest: (req) => new URL(req.url).pathname.split('/').pop() || undefined,
    maxSize: async () => {
      const rc = als.getStore();
      return rc ? maxUploadBytes(deps.config, await settings(rc)) : deps.config.uploads.maxBytes;
    },
    // CORS is decided once for the whole API by the perimeter (src/perimeter/cors.ts); tus's own
    // (by default `Access-Control-Allow-Origin: *`) is switched off and stripped by the HTTP layer.
    allowedOrigins: () => false,
    onIncomingRequest: async (req, id) => {
      // Ownership before tus's per-upload lock: a stranger gets 404 without touching the upload.
      // (POST calls this too, with the id it is about to create.)
      if (req.method !== 'POST') await store.find(id);
    },
    onUploadFinish: async (_req, upload) => {
      const rc = als.getStore();
      if (!rc?.principal) throw ERRORS.FILE_NOT_FOUND;
      const { orgId } = rc.principal;
      let run = inFlight.get(upload.id);
      if (!run) {
        run = completeUpload(deps, orgId, upload.id, rc.ctx, { chains: store.chains }).finally(() => inFlight.delete(upload.id));
        inFlight.set(upload.id, run);
      }
      const assetId = await run;
      if (!assetId) return {};
      rc.assetId = assetId;
      return { headers: { [ASSET_ID_HEADER]: assetId } };
    },
    onResponseError: (_req, err) => {
      const appErr = toUploadError(err);
      if (appErr.status >= 500) deps.log?.error({ err, code: appErr.code }, 'tus request failed');
      const rc = als.getStore();
      if (rc) rc.error = appErr;
      return { status_code: appErr.status, body: appErr.publicMessage };
    },
  };
  const server = new Server(options);
  return {
    server,
    store,
    run: (rc, fn) => als.run(rc, fn),
    current: () => als.getStore(),
  };
}
