/**
 * Assets: the records and the one ingest path every upload route shares (simple upload, presigned
 * direct upload, tus completion, processing outputs).
 *
 * Ingest streams with bounded memory: sniff the real type from the first bytes (never the name or the
 * declared Content-Type) → check the app's allowlist (415) → count against the size limit (413) →
 * SHA-256 the plaintext → encrypt (AES-256-GCM STREAM, per-blob key from the org key) → atomic put in
 * the blob store → insert the row with its audit entry. Plaintext never reaches a disk or a bucket.
 */
import { createHash } from 'node:crypto';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import sharp from 'sharp';
import type { DatabaseHandle, Tx } from '../db/database.js';
import { sql, type ExpressionBuilder, type Selectable, type SelectQueryBuilder } from 'kysely';
import type { AppSettings, AssetsTable, Database } from '../db/schema.js';
import { AppError, notFound } from '../errors.js';
import { publicId } from '../crypto/random.js';
import type { Keyring } from '../crypto/keyring.js';
import { encryptStream } from '../crypto/stream.js';
import { appendAudit } from '../audit/log.js';
import { sniffStream } from '../media/sniff-stream.js';
import { ContentCheck, FULL_DECODE_MAX_BYTES } from '../media/image/validate.js';
import { MetadataStripper, STRIPPABLE_TYPES, stripMetadata, MetadataUnreadable, type MetadataPolicy } from '../media/image/metadata.js';
import { DEFAULT_MEDIA_LIMITS } from '../media/limits.js';
import { OUTPUT_MIME } from '../media/image/pipeline.js';
import { getApp, type Ctx } from '../tenants/index.js';
import type { BlobStore } from './stores/types.js';
import { openRange } from '../crypto/stream.js';
import { isVideoType, type VideoFacts } from '../media/video/probe.js';
import { VIDEO_OUTPUT_MIME } from '../media/video/operations.js';
import type { SourceBytes } from '../media/video/source.js';
import { keysetPage, mapPage, type ListOrder, type Page, type PageRequest } from '../db/pagination.js';

/** Types accepted when an app has no `allowed_types` policy: common images and videos. SVG never by default. */
export const DEFAULT_ALLOWED_TYPES: readonly string[] = [
  'image/jpeg',
  'image/png',
  'image/webp',
  'image/avif',
  'image/gif',
  'image/tiff',
  'video/mp4',
  'video/webm',
  'video/quicktime',
];

/** Image types whose dimensions are recorded at ingest. */
const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/avif', 'image/gif', 'image/tiff']);

/** Retention of processing outputs when the caller does not say: 24 hours. */
export const DEFAULT_OUTPUT_TTL_SECONDS = 24 * 3600;

/** Longest lifetime of a stored processing output (a request's or an app's): 7 days. */
export const MAX_OUTPUT_TTL_SECONDS = 7 * 24 * 3600;

export interface Asset {
  id: string;
  orgId: string;
  appId: string;
  kind: 'upload' | 'output';
  mime: string;
  ext: string;
  size: number;
  sha256: string;
  width: number | null;
  height: number | null;
  /** ffprobe's facts of an uploaded video; null for images (and videos stored without ffprobe). */
  video: VideoFacts | null;
  filename: string | null;
  /** Labels set by the integrator (src/assets/labels.ts). */
  tags: string[];
  /** A small map of string keys to scalar values (src/assets/labels.ts). */
  metadata: Record<string, string | number | boolean>;
  /** Under legal hold: not deletable, and not expired while held (`expiresAt` is then null). */
  legalHold: boolean;
  /** The blob's key; for an asset stored as parts, the prefix they live under. */
  blobKey: string;
  /** The parts of an asset stored as a sequence of version-2 parts (a tus upload), else null. */
  parts: AssetPart[] | null;
  tenantKeyId: string;
  createdAt: string;
  /** When retention removes it; null when kept forever or while under legal hold. */
  expiresAt: string | null;
}

/** One encrypted part of an asset (docs/encryption-format.md, "Version 2"). */
export interface AssetPart {
  /** Plaintext offset of the part's first byte. */
  offset: number;
  /** Plaintext bytes in the part. */
  size: number;
  /** Random part id, bound into the part's key. */
  id: string;
  /** Where the part is stored. */
  key: string;
}

/** Where the parts of a parted asset live: one prefix per asset, so deleting the prefix deletes it all. */
export const partsPrefixFor = (orgId: string, assetId: string) => `orgs/${orgId}/parts/${assetId}/`;

export interface AssetDeps {
  db: DatabaseHandle;
  store: BlobStore;
  keyring: Keyring;
  now?: () => number;
  /** The operator's pixel limit for uploads (`OBSCURA_MAX_INPUT_PIXELS`); default the media default. */
  maxInputPixels?: number | undefined;
  /** The metadata policy of apps that set none (`OBSCURA_METADATA_POLICY`); default `strip_all`. */
  metadataPolicy?: MetadataPolicy | undefined;
  /**
   * Probes an uploaded video (ffprobe through media/video, given by the composition root). Returns null
   * when this server has no ffprobe (the video is stored after the structural check and probed before
   * it is processed); throws `ERR_MEDIA_INVALID` / `ERR_VIDEO_TOO_LARGE` to refuse it.
   */
  videoProbe?: VideoProbe | undefined;
  /**
   * Told when an asset stops being served (deleted on this node), so this process's caches of asset
   * rows and decrypted sources drop it at once rather than at the end of their TTL.
   */
  assetGone?: ((orgId: string, assetId: string) => void) | undefined;
}

/** See {@link AssetDeps.videoProbe}. */
export type VideoProbe = (mime: string, source: SourceBytes) => Promise<VideoFacts | null>;

/** The allowlist an app's policy gives (SVG only when explicitly enabled). */
export function allowedTypes(settings: AppSettings): Set<string> {
  const list = new Set(settings.allowed_types?.length ? settings.allowed_types : DEFAULT_ALLOWED_TYPES);
  if (!settings.allow_svg) list.delete('image/svg+xml');
  return list;
}

/** Reduces a client-supplied file name to a safe display name (no paths, controls or quotes). */
export function safeFilename(name: string | undefined | null): string | null {
  if (!name) return null;
  const base = name.split(/[\\/]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  const cleaned = base.replace(/[\u0000-\u001f\u007f"';<>`]/g, '').replace(/\s+/g, ' ').trim().slice(0, 200);
  return cleaned && cleaned !== '.' && cleaned !== '..' ? cleaned : null;
}

export const blobKeyFor = (orgId: string, assetId: string) => `orgs/${orgId}/assets/${assetId}`;

export interface IngestInput {
  orgId: string;
  appId: string;
  kind: 'upload' | 'output';
  body: Readable;
  /** Maximum plaintext bytes (413 beyond). */
  maxBytes: number;
  /** When known (presigned uploads), the exact size the body must have. */
  expectedSize?: number;
  /** When known (presigned uploads), the type the client declared; the sniffed type must equal it. */
  declaredType?: string;
  filename?: string | null;
  /** Overrides the app's retention (seconds from now); `null` keeps forever. */
  ttlSeconds?: number | null;
  ctx: Ctx;
  /**
   * The asset's id when the caller fixed it beforehand (a tus upload records it before completing, so
   * a retry after a crash completes the same asset); default a new random id.
   */
  id?: string;
  /**
   * Awaited after the blob is written and verified, before the row is committed; if it throws, the
   * blob is removed and nothing is stored. A multipart upload checks here that nothing follows its
   * file part (src/http/multipart.ts).
   */
  beforeCommit?: () => Promise<void>;
  /**
   * The metadata policy for this upload, overriding the app's (a job's input copy made for
   * `keep_metadata` keeps it). Outputs are never edited (the pipeline already wrote them without metadata).
   */
  metadataPolicy?: MetadataPolicy;
}

/** Largest image whose metadata is removed at ingest (the file is edited in memory): 64 MiB. */
export const METADATA_STRIP_MAX_BYTES = FULL_DECODE_MAX_BYTES;

/** The metadata policy an upload of `mime` gets, defaults resolved; `keep` for what is never edited. */
export function metadataPolicyFor(settings: AppSettings, mime: string, kind: 'upload' | 'output', fallback: MetadataPolicy | undefined, override?: MetadataPolicy): MetadataPolicy {
  if (kind !== 'upload' || !STRIPPABLE_TYPES.has(mime)) return 'keep';
  return override ?? settings.metadata_policy ?? fallback ?? 'strip_all';
}

/** The refusal of an image too large to have its metadata removed. */
export function tooLargeToStrip(policy: MetadataPolicy): AppError {
  return new AppError('ERR_PAYLOAD_TOO_LARGE', `This app removes image metadata at upload (metadata_policy ${policy}), which is done for images up to ${METADATA_STRIP_MAX_BYTES} bytes; send a smaller file or set the app's metadata_policy to keep.`, {
    details: { limit: METADATA_STRIP_MAX_BYTES, setting: 'metadata_policy' },
  });
}

/** The refusal of an image whose metadata cannot be walked safely (so it cannot be removed). */
export function metadataUnreadable(mime: string, err: MetadataUnreadable): AppError {
  return new AppError('ERR_MEDIA_INVALID', `The metadata of this ${mime} file could not be read safely (${err.reason}), so it cannot be removed as the app's metadata_policy requires; re-save the file with a common editor, or set the app's metadata_policy to keep.`, {
    details: { detected: mime, reason: 'metadata_unreadable' },
  });
}

/** Applies a metadata policy to a whole file in memory (tus completion), with the same refusals as ingest. */
export function stripForPolicy(mime: string, bytes: Buffer, policy: MetadataPolicy): { bytes: Buffer; removed: string[] } {
  try {
    return stripMetadata(mime, bytes, policy);
  } catch (err) {
    if (err instanceof MetadataUnreadable) throw metadataUnreadable(mime, err);
    throw err;
  }
}

class Limiter extends Transform {
  bytes = 0;
  constructor(private readonly max: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.max) {
      cb(new AppError('ERR_PAYLOAD_TOO_LARGE', `The file exceeds the ${this.max}-byte limit.`, { details: { limit: this.max } }));
      return;
    }
    cb(null, chunk);
  }
}

/** Keeps the first `limit` bytes (for header-only dimension probing) while passing everything through. */
class HeadKeeper extends Transform {
  private readonly parts: Buffer[] = [];
  private kept = 0;
  readonly hash = createHash('sha256');
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    if (this.kept < this.limit) {
      const part = chunk.subarray(0, this.limit - this.kept);
      this.parts.push(Buffer.from(part));
      this.kept += part.length;
    }
    cb(null, chunk);
  }
  head(): Buffer {
    return Buffer.concat(this.parts, this.kept);
  }
}

async function dimensions(mime: string, head: Buffer): Promise<{ width: number | null; height: number | null }> {
  if (!IMAGE_TYPES.has(mime)) return { width: null, height: null };
  try {
    // Header-only: sharp reads the dimensions from the first bytes without decoding pixels.
    const m = await sharp(head, { failOn: 'none', limitInputPixels: false }).metadata();
    return { width: m.width ?? null, height: m.height ?? null };
  } catch {
    return { width: null, height: null };
  }
}

/** An asset row as the database returns it (the one row type, from the schema). */
type AssetRow = Selectable<AssetsTable>;

export function toAsset(r: AssetRow): Asset {
  return {
    id: r.id,
    orgId: r.org_id,
    appId: r.app_id,
    kind: r.kind,
    mime: r.mime,
    ext: r.ext,
    size: Number(r.size),
    sha256: r.sha256,
    width: r.width,
    height: r.height,
    video: (typeof r.video === 'string' ? JSON.parse(r.video) : r.video ?? null) as VideoFacts | null,
    filename: r.filename,
    tags: r.tags ?? [],
    metadata: (typeof r.metadata === 'string' ? JSON.parse(r.metadata) : r.metadata ?? {}) as Asset['metadata'],
    blobKey: r.blob_key,
    parts: (typeof r.parts === 'string' ? JSON.parse(r.parts) : r.parts ?? null) as AssetPart[] | null,
    tenantKeyId: r.tenant_key_id,
    createdAt: new Date(r.created_at).toISOString(),
    legalHold: r.legal_hold ?? false,
    // A held asset does not expire while held (every expiry check reads this field or liveAt).
    expiresAt: r.expires_at && !r.legal_hold ? new Date(r.expires_at).toISOString() : null,
  };
}

/**
 * Drops the rest of a refused body. Reading (a bounded amount) rather than destroying lets an HTTP
 * client receive our error instead of a connection reset; past 1 MiB the source is destroyed.
 */
function discard(stream: Readable, cap = 1024 * 1024): void {
  let seen = 0;
  stream.on('data', (c: Buffer) => {
    seen += c.length;
    if (seen > cap) stream.destroy();
  });
  stream.on('error', () => undefined);
  stream.resume();
}

/**
 * Stores a plaintext stream as a new encrypted asset. On any failure nothing is visible: the blob put
 * is atomic and the row is inserted only after it succeeded (and the blob removed if the insert fails).
 */
export async function ingest(deps: AssetDeps, input: IngestInput): Promise<Asset> {
  const { db, store, keyring } = deps;
  const now = deps.now?.() ?? Date.now();
  const { settings, tk } = await db.withTenant(input.orgId, async (trx) => ({ settings: (await getApp(trx, input.orgId, input.appId)).settings, tk: await keyring.current(trx, input.orgId) }));
  const maxBytes = Math.min(input.maxBytes, settings.max_upload_bytes ?? Number.MAX_SAFE_INTEGER);

  const { type, stream } = await sniffStream(input.body);
  // The app's allowlist governs what clients upload; outputs are what our own pipeline produced (their
  // format is chosen by the requested operations), so they are held to the set of formats it writes.
  const allowed = input.kind === 'output' ? new Set([...Object.values(OUTPUT_MIME), ...VIDEO_OUTPUT_MIME]) : allowedTypes(settings);
  if (!type || !allowed.has(type.mime)) {
    discard(stream);
    throw new AppError('ERR_UNSUPPORTED_MEDIA_TYPE', type ? `Files of type ${type.mime} are not accepted by this app.` : 'The file type could not be recognised from its content.', {
      details: { detected: type?.mime ?? null, allowed: [...allowed] },
    });
  }
  if (input.declaredType && input.declaredType !== type.mime) {
    discard(stream);
    throw new AppError('ERR_UNSUPPORTED_MEDIA_TYPE', `The content is ${type.mime}, not the declared ${input.declaredType}.`, { details: { detected: type.mime, declared: input.declaredType } });
  }

  const id = input.id ?? publicId('ast');
  const blobKey = blobKeyFor(input.orgId, id);
  const limiter = new Limiter(input.expectedSize !== undefined ? Math.min(maxBytes, input.expectedSize) : maxBytes);
  const keeper = new HeadKeeper(1024 * 1024);
  // Uploads are checked to really be what they were sniffed as, on the way to the store (outputs are
  // what our own pipeline wrote).
  const check = input.kind === 'upload' ? new ContentCheck(type.mime, { maxPixels: deps.maxInputPixels ?? DEFAULT_MEDIA_LIMITS.maxInputPixels }) : null;
  // Metadata policy (issue 14, item 5): the check sees the file as sent; the hash, the size and the
  // ciphertext are of the bytes stored, after the metadata the app's policy removes.
  const policy = metadataPolicyFor(settings, type.mime, input.kind, deps.metadataPolicy, input.metadataPolicy);
  const stripper = policy === 'keep' ? null : new MetadataStripper(type.mime, policy, METADATA_STRIP_MAX_BYTES, () => tooLargeToStrip(policy), (err) => metadataUnreadable(type.mime, err));
  const encrypted = new PassThrough({ highWaterMark: 64 * 1024 });
  const writing = store.put(blobKey, encrypted);
  try {
    const stages = check ? [limiter, check, ...(stripper ? [stripper] : []), keeper] : [limiter, keeper];
    await pipeline([stream, ...stages, encryptStream({ key: tk.key, keyId: tk.id, blobId: id }), encrypted]);
  } catch (err) {
    encrypted.destroy(err as Error);
    await writing.catch(() => undefined);
    throw err;
  }
  await writing;
  if (input.expectedSize !== undefined && limiter.bytes !== input.expectedSize) {
    await store.delete(blobKey);
    throw new AppError('ERR_VALIDATION', `Expected ${input.expectedSize} bytes, received ${limiter.bytes}.`);
  }

  let facts: { width: number | null; height: number | null };
  let video: VideoFacts | null = null;
  try {
    facts = check ? await check.verify() : await dimensions(type.mime, keeper.head());
    // A video must also probe as its container, within the operator's limits (issue 11, item 2). ffprobe
    // reads the ciphertext just written, decrypting only the ranges it asks for.
    if (check && isVideoType(type.mime) && deps.videoProbe) {
      const size = limiter.bytes;
      video = await deps.videoProbe(type.mime, {
        size,
        open: async (r) => (await openRange({ get: (range) => store.get(blobKey, range), plaintextSize: size, start: r?.start ?? 0, end: r?.end ?? size - 1, keyFor: () => tk.key, blobId: id })).stream,
      });
      if (video) {
        const turned = video.rotation === 90 || video.rotation === 270;
        facts = { width: turned ? video.height : video.width, height: turned ? video.width : video.height };
      }
    }
    await input.beforeCommit?.();
  } catch (err) {
    await store.delete(blobKey).catch(() => undefined);
    throw err;
  }
  const sha256 = keeper.hash.digest('hex');
  const { width, height } = facts;
  const storedSize = stripper ? stripper.bytesOut : limiter.bytes;
  const ttl = input.ttlSeconds !== undefined ? input.ttlSeconds : input.kind === 'output' ? (settings.output_retention_seconds ?? DEFAULT_OUTPUT_TTL_SECONDS) : (settings.retention_seconds ?? null);
  const expiresAt = ttl === null ? null : new Date(now + ttl * 1000);
  try {
    return await db.withTenant(input.orgId, async (trx) => {
      const row = await trx
        .insertInto('assets')
        .values({
          id,
          org_id: input.orgId,
          app_id: input.appId,
          kind: input.kind,
          mime: type.mime,
          ext: type.ext,
          size: storedSize,
          sha256,
          width,
          height,
          video: video ? JSON.stringify(video) : null,
          filename: safeFilename(input.filename),
          blob_key: blobKey,
          tenant_key_id: tk.id,
          created_by: input.ctx.actor.id ?? null,
          expires_at: expiresAt,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await appendAudit(trx, {
        orgId: input.orgId,
        actor: input.ctx.actor,
        action: 'asset.create',
        target: { asset: id, app: input.appId },
        data: { kind: input.kind, mime: type.mime, size: storedSize, sha256, ...(stripper?.removed.length ? { metadata_removed: stripper.removed } : {}) },
        ip: input.ctx.ip,
        requestId: input.ctx.requestId,
      });
      return toAsset(row as AssetRow);
    });
  } catch (err) {
    await store.delete(blobKey).catch(() => undefined);
    throw err;
  }
}

/** The asset, or ERR_NOT_FOUND (missing, expired, deleted, or another org's: one answer). */
export async function getAsset(trx: Tx, orgId: string, assetId: string, now = Date.now()): Promise<Asset> {
  const row = await trx.selectFrom('assets').selectAll().where('org_id', '=', orgId).where('id', '=', assetId).where('deleted_at', 'is', null).executeTakeFirst();
  if (!row || (row.expires_at && !row.legal_hold && new Date(row.expires_at).getTime() <= now)) throw notFound('asset');
  return toAsset(row as AssetRow);
}

/** Asset lists: newest first, keyset on (created_at, id). */
export const ASSET_ORDER: ListOrder = { keys: [{ column: 'created_at', type: 'timestamptz' }, { column: 'id', type: 'text' }], direction: 'desc' };

/** Filters of an asset list; every member optional. */
export interface AssetFilter {
  /** A media type (`image/png`) or a family (`image`, `image/*`). */
  type?: string | undefined;
  kind?: 'upload' | 'output' | undefined;
  /** Created at or after this instant (ISO 8601). */
  createdAfter?: string | undefined;
  /** Created before this instant (ISO 8601). */
  createdBefore?: string | undefined;
  /** Carries every one of these tags. */
  tags?: string[] | undefined;
  /** At least this many bytes. */
  minSize?: number | undefined;
  /** At most this many bytes. */
  maxSize?: number | undefined;
  /** The filename contains this text (case-insensitive). */
  filename?: string | undefined;
}

/** Not expired at `now`: no expiry, expiry still ahead, or under legal hold (which suspends expiry). */
export const liveAt =
  (now: Date) =>
  (eb: ExpressionBuilder<Database, 'assets'>) =>
    eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now), eb('legal_hold', '=', true)]);

/** A `text[]` literal of bound parameters (the same on PGlite and node-postgres; `ARRAY[]::text[]` when empty). */
export const textArray = (values: readonly string[]) => (values.length ? sql<string[]>`ARRAY[${sql.join(values.map((v) => sql.val(v)))}]::text[]` : sql<string[]>`'{}'::text[]`);

/** `filter` applied to a query of the org's assets (listing and bulk deletion share it). */
export function whereAssets<Q extends SelectQueryBuilder<Database, 'assets', any>>(q: Q, filter: AssetFilter): Q {
  let r = q as SelectQueryBuilder<Database, 'assets', any>;
  if (filter.type) {
    const family = /^([a-z]+)(?:\/\*)?$/.exec(filter.type)?.[1];
    r = family ? r.where('mime', 'like', `${family}/%`) : r.where('mime', '=', filter.type);
  }
  if (filter.kind) r = r.where('kind', '=', filter.kind);
  if (filter.createdAfter) r = r.where('created_at', '>=', new Date(filter.createdAfter));
  if (filter.createdBefore) r = r.where('created_at', '<', new Date(filter.createdBefore));
  // `@>` on text[] (served by the GIN index): every tag asked for is on the asset.
  if (filter.tags?.length) r = r.where(sql<boolean>`tags @> ${textArray(filter.tags)}`);
  if (filter.minSize !== undefined) r = r.where('size', '>=', filter.minSize);
  if (filter.maxSize !== undefined) r = r.where('size', '<=', filter.maxSize);
  // LIKE's own wildcards in the search text are literal characters here.
  if (filter.filename) r = r.where('filename', 'ilike', `%${filter.filename.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
  return r as Q;
}

/** One page of the org's live assets (deleted and expired ones are not listed), newest first. */
export async function listAssets(trx: Tx, orgId: string, filter: AssetFilter, page: PageRequest, now = Date.now()): Promise<Page<Asset>> {
  let q = trx
    .selectFrom('assets')
    .selectAll()
    .where('org_id', '=', orgId)
    .where('deleted_at', 'is', null)
    .where(liveAt(new Date(now)));
  q = whereAssets(q, filter);
  return mapPage(await keysetPage(q, ASSET_ORDER, page), (r) => toAsset(r as AssetRow));
}

/**
 * Deletes an asset: tombstone + audit in one transaction, then the blob, then the row. A crash between
 * steps leaves a tombstone that `sweep` completes, so a deleted asset's ciphertext never lingers.
 */
export async function deleteAsset(deps: AssetDeps, orgId: string, assetId: string, ctx: Ctx, reason: 'request' | 'expired' = 'request'): Promise<Asset> {
  const now = new Date(deps.now?.() ?? Date.now());
  const asset = await deps.db.withTenant(orgId, async (trx) => {
    const row = await trx
      .updateTable('assets')
      .set({ deleted_at: now })
      .where('org_id', '=', orgId)
      .where('id', '=', assetId)
      .where('deleted_at', 'is', null)
      .where('legal_hold', '=', false)
      .returningAll()
      .executeTakeFirst();
    if (!row) {
      const held = await trx.selectFrom('assets').select('id').where('org_id', '=', orgId).where('id', '=', assetId).where('deleted_at', 'is', null).where('legal_hold', '=', true).executeTakeFirst();
      if (held) throw new AppError('ERR_LEGAL_HOLD', 'This asset is under legal hold and cannot be deleted. Release the hold first (PATCH /v1/assets/{id} with "legal_hold": false, which needs the assets:delete scope).', { details: { asset_id: assetId } });
      throw notFound('asset');
    }
    await appendAudit(trx, { orgId, actor: ctx.actor, action: reason === 'expired' ? 'asset.expire' : 'asset.delete', target: { asset: assetId, app: row.app_id }, ip: ctx.ip, requestId: ctx.requestId });
    return toAsset(row as AssetRow);
  });
  deps.assetGone?.(orgId, assetId);
  await finishDeletion(deps, asset.orgId, asset.id, asset.blobKey);
  return asset;
}

async function finishDeletion(deps: AssetDeps, orgId: string, assetId: string, blobKey: string): Promise<void> {
  // A parted asset's blob key is the prefix of its parts (with any stray part a crash left there).
  if (blobKey.endsWith('/')) for await (const key of deps.store.list(blobKey)) await deps.store.delete(key);
  else await deps.store.delete(blobKey);
  await deps.db.withTenant(orgId, (trx) => trx.deleteFrom('assets').where('org_id', '=', orgId).where('id', '=', assetId).where('deleted_at', 'is not', null).execute());
}

/**
 * Retention sweeper: expires assets past `expires_at` (audited as `asset.expire`) and completes
 * interrupted deletions. Owner-level scan, tenant-level changes. Returns how many it removed.
 */
export async function sweepAssets(deps: AssetDeps, batch = 100): Promise<number> {
  const now = new Date(deps.now?.() ?? Date.now());
  let removed = 0;
  const tombstones = await deps.db.system.selectFrom('assets').select(['id', 'org_id', 'blob_key']).where('deleted_at', 'is not', null).limit(batch).execute();
  for (const t of tombstones) {
    await finishDeletion(deps, t.org_id, t.id, t.blob_key);
    removed++;
  }
  // Held assets are skipped: their expiry applies again once the hold is released.
  const expired = await deps.db.system.selectFrom('assets').select(['id', 'org_id']).where('deleted_at', 'is', null).where('expires_at', '<=', now).where('legal_hold', '=', false).limit(batch).execute();
  for (const e of expired) {
    try {
      await deleteAsset(deps, e.org_id, e.id, { actor: { type: 'system', id: 'retention' } }, 'expired');
      removed++;
    } catch (err) {
      if (!(err instanceof AppError && (err.code === 'ERR_NOT_FOUND' || err.code === 'ERR_LEGAL_HOLD'))) throw err;
    }
  }
  return removed;
}
