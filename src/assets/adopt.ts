/**
 * Adopting stored parts as an asset (issue 12, item 2): a tus upload's parts are written in the
 * asset's final encrypted layout (docs/encryption-format.md, "Version 2") as they arrive, so turning
 * the upload into an asset is a metadata step. This module is that step: it validates the stored
 * bytes the way `ingest` validates a stream (sniffed type, the app's allowlist, the decodable-upload
 * check, the video probe), reading only what those checks need, and records the asset row with its
 * part manifest in the caller's transaction. No blob is written.
 */
import { createHash } from 'node:crypto';
import type { Tx } from '../db/database.js';
import { AppError } from '../errors.js';
import { openParts, type StoredPart } from '../crypto/stream.js';
import { appendAudit } from '../audit/log.js';
import { sniff, SNIFF_SAMPLE_BYTES } from '../media/sniff.js';
import { verifyStoredContent } from '../media/image/validate.js';
import { DEFAULT_MEDIA_LIMITS } from '../media/limits.js';
import { isVideoType, type VideoFacts } from '../media/video/probe.js';
import { getApp, type Ctx } from '../tenants/index.js';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { encryptStream } from '../crypto/stream.js';
import { allowedTypes, blobKeyFor, METADATA_STRIP_MAX_BYTES, metadataPolicyFor, partsPrefixFor, safeFilename, stripForPolicy, toAsset, tooLargeToStrip, type Asset, type AssetDeps, type AssetPart } from './assets.js';

/** What {@link adoptParts} needs to know about the stored parts. */
export interface AdoptInput {
  orgId: string;
  appId: string;
  /** The asset id the parts were encrypted for (bound into every part's key). */
  id: string;
  /** The manifest, in offset order; it must tile `[0, size)`. */
  parts: AssetPart[];
  /** Plaintext size. */
  size: number;
  /** Maximum plaintext bytes (413 beyond). */
  maxBytes: number;
  /** The plaintext SHA-256 (hex) when the writer hashed every byte as it arrived; else it is read through. */
  sha256?: string | undefined;
  filename?: string | null;
  ctx: Ctx;
  /**
   * Runs in the transaction that inserts the asset row (e.g. marking the upload complete), so the asset
   * and its owner's bookkeeping commit together or not at all.
   */
  commit?: (trx: Tx) => Promise<void>;
}

/** Plaintext reads of parted bytes, with a small window so a walk over box headers stays cheap. */
function partedReader(deps: AssetDeps, orgId: string, assetId: string, parts: AssetPart[], size: number) {
  const stored: StoredPart[] = parts.map((p) => ({ id: p.id, offset: p.offset, size: p.size, get: (r) => deps.store.get(p.key, r) }));
  const keyFor = (keyId: string) => deps.keyring.get(orgId, keyId);
  const open = (start: number, end: number): Readable => openParts({ parts: stored, plaintextSize: size, start, end, keyFor, blobId: assetId }).stream;
  const collect = async (stream: Readable): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };
  const WINDOW = 64 * 1024;
  let window: { start: number; bytes: Buffer } | null = null;
  return {
    open,
    /** Bytes `[start, end]` (clamped to the file). */
    async read(start: number, end: number): Promise<Buffer> {
      end = Math.min(end, size - 1);
      if (end < start) return Buffer.alloc(0);
      if (window && start >= window.start && end < window.start + window.bytes.length) return window.bytes.subarray(start - window.start, end - window.start + 1);
      if (end - start + 1 >= WINDOW) return collect(open(start, end));
      window = { start, bytes: await collect(open(start, Math.min(size - 1, start + WINDOW - 1))) };
      return window.bytes.subarray(0, end - start + 1);
    },
    /** SHA-256 of the whole plaintext: one streaming read, used only when the writer's hash chain broke. */
    async sha256(): Promise<string> {
      const hash = createHash('sha256');
      if (size > 0) for await (const c of open(0, size - 1)) hash.update(c as Buffer);
      return hash.digest('hex');
    },
  };
}

/**
 * Records stored version-2 parts as a new upload asset, after the checks `ingest` makes on a stream:
 * size limit (413), sniffed type in the app's allowlist (415), a decodable instance of that type
 * (422 `ERR_MEDIA_INVALID` / `ERR_IMAGE_TOO_LARGE`) and, for videos, the probe. Reads only the head
 * the checks need (an image up to 64 MiB is decoded, so it is read whole) and, when `sha256` is not
 * given, the whole plaintext once to hash it. Writes no blob; the row (with its manifest, `blob_key`
 * = the parts' prefix) and its audit entry commit with `input.commit` in one transaction.
 *
 * On a refusal nothing is recorded; the caller decides what happens to the parts.
 */
export async function adoptParts(deps: AssetDeps, input: AdoptInput): Promise<Asset> {
  const { db, keyring } = deps;
  const { settings, tk } = await db.withTenant(input.orgId, async (trx) => ({ settings: (await getApp(trx, input.orgId, input.appId)).settings, tk: await keyring.current(trx, input.orgId) }));
  const maxBytes = Math.min(input.maxBytes, settings.max_upload_bytes ?? Number.MAX_SAFE_INTEGER);
  if (input.size > maxBytes) throw new AppError('ERR_PAYLOAD_TOO_LARGE', `The file exceeds the ${maxBytes}-byte limit.`, { details: { limit: maxBytes } });
  const reader = partedReader(deps, input.orgId, input.id, input.parts, input.size);

  const type = input.size === 0 ? null : await sniff(await reader.read(0, SNIFF_SAMPLE_BYTES - 1));
  const allowed = allowedTypes(settings);
  if (!type || !allowed.has(type.mime)) {
    throw new AppError('ERR_UNSUPPORTED_MEDIA_TYPE', type ? `Files of type ${type.mime} are not accepted by this app.` : 'The file type could not be recognised from its content.', {
      details: { detected: type?.mime ?? null, allowed: [...allowed] },
    });
  }
  let facts = await verifyStoredContent(type.mime, input.size, (s, e) => reader.read(s, e), { maxPixels: deps.maxInputPixels ?? DEFAULT_MEDIA_LIMITS.maxInputPixels });
  let video: VideoFacts | null = null;
  if (isVideoType(type.mime) && deps.videoProbe) {
    const size = input.size;
    video = await deps.videoProbe(type.mime, { size, open: async (r) => reader.open(r?.start ?? 0, r?.end ?? size - 1) });
    if (video) {
      const turned = video.rotation === 90 || video.rotation === 270;
      facts = { width: turned ? video.height : video.width, height: turned ? video.width : video.height };
    }
  }
  // Metadata policy (issue 14, item 5): an image whose metadata the app's policy removes is edited in
  // memory and stored once more as one blob (the parts, which hold the metadata, are deleted after the
  // row commits); an image with nothing to remove is adopted as it is.
  const policy = metadataPolicyFor(settings, type.mime, 'upload', deps.metadataPolicy);
  let rewritten: { blobKey: string; size: number; sha256: string; removed: string[] } | null = null;
  if (policy !== 'keep') {
    if (input.size > METADATA_STRIP_MAX_BYTES) throw tooLargeToStrip(policy);
    const { bytes, removed } = stripForPolicy(type.mime, await reader.read(0, input.size - 1), policy);
    if (removed.length) {
      const blobKey = blobKeyFor(input.orgId, input.id);
      const encrypted = new PassThrough({ highWaterMark: 64 * 1024 });
      const writing = deps.store.put(blobKey, encrypted);
      try {
        await pipeline(Readable.from([bytes]), encryptStream({ key: tk.key, keyId: tk.id, blobId: input.id }), encrypted);
      } catch (err) {
        encrypted.destroy(err as Error);
        await writing.catch(() => undefined);
        throw err;
      }
      await writing;
      rewritten = { blobKey, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), removed };
    }
  }
  const sha256 = rewritten?.sha256 ?? input.sha256 ?? (await reader.sha256());
  const size = rewritten?.size ?? input.size;
  const now = deps.now?.() ?? Date.now();
  const ttl = settings.retention_seconds ?? null;
  const insertAdopted = (): Promise<Asset> =>
    db.withTenant(input.orgId, async (trx) => {
      const row = await trx
        .insertInto('assets')
        .values({
          id: input.id,
          org_id: input.orgId,
          app_id: input.appId,
          kind: 'upload',
          mime: type.mime,
          ext: type.ext,
          size,
          sha256,
          width: facts.width,
          height: facts.height,
          video: video ? JSON.stringify(video) : null,
          filename: safeFilename(input.filename),
          blob_key: rewritten ? rewritten.blobKey : partsPrefixFor(input.orgId, input.id),
          parts: rewritten ? null : JSON.stringify(input.parts),
          tenant_key_id: tk.id,
          created_by: input.ctx.actor.id ?? null,
          expires_at: ttl === null ? null : new Date(now + ttl * 1000),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await appendAudit(trx, {
        orgId: input.orgId,
        actor: input.ctx.actor,
        action: 'asset.create',
        target: { asset: input.id, app: input.appId },
        data: { kind: 'upload', mime: type.mime, size, sha256, ...(rewritten ? { metadata_removed: rewritten.removed } : {}) },
        ip: input.ctx.ip,
        requestId: input.ctx.requestId,
      });
      await input.commit?.(trx);
      return toAsset(row as Parameters<typeof toAsset>[0]);
    });
  let asset: Asset;
  try {
    asset = await insertAdopted();
  } catch (err) {
    if (rewritten) await deps.store.delete(rewritten.blobKey).catch(() => undefined);
    throw err;
  }
  // The parts held the removed metadata: gone now that the row names the rewritten blob (the orphan
  // sweep removes any a crash leaves here).
  if (rewritten) for await (const key of deps.store.list(partsPrefixFor(input.orgId, input.id))) await deps.store.delete(key).catch(() => undefined);
  return asset;
}
