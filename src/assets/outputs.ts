/**
 * Processing outputs as assets: the only way an output becomes an asset row and a blob (assets/ is
 * the sole writer of both). Two steps, so a job's output commits exactly once with the job:
 * {@link stageOutput} encrypts and stores the blob under a chosen id (invisible: no row), then
 * {@link commitOutput} inserts the row and its audit entry in the CALLER's transaction (the one that
 * marks the job succeeded). A staged blob whose commit never happens is removed by its writer
 * ({@link discardStaged}, {@link removeUnclaimed}) or, failing that, by the orphan sweep.
 */
import { createHash } from 'node:crypto';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Tx } from '../db/database.js';
import { encryptStream } from '../crypto/stream.js';
import { appendAudit } from '../audit/log.js';
import type { Ctx } from '../tenants/index.js';
import { blobKeyFor, toAsset, type Asset, type AssetDeps } from './assets.js';

/** What a processing run produced, as assets/ needs it (any media kind). */
export interface OutputFile {
  data: Buffer;
  mime: string;
  /** File extension without the dot (`jpg`). */
  ext: string;
  width: number | null;
  height: number | null;
}

/** An output's ciphertext, written but not yet visible (no row). */
export interface StagedOutput {
  assetId: string;
  blobKey: string;
  tenantKeyId: string;
  size: number;
  sha256: string;
  file: Omit<OutputFile, 'data'>;
}

/**
 * Encrypts and stores an output blob under `assetId` (atomic put). Nothing is visible until
 * {@link commitOutput} commits the row; until then the blob is an orphan its writer removes.
 */
export async function stageOutput(deps: AssetDeps, orgId: string, assetId: string, output: OutputFile): Promise<StagedOutput> {
  const tk = await deps.db.withTenant(orgId, (trx) => deps.keyring.current(trx, orgId));
  const blobKey = blobKeyFor(orgId, assetId);
  const encrypted = Readable.from([output.data]).pipe(encryptStream({ key: tk.key, keyId: tk.id, blobId: assetId }));
  await deps.store.put(blobKey, encrypted);
  const { data, ...file } = output;
  return { assetId, blobKey, tenantKeyId: tk.id, size: data.length, sha256: createHash('sha256').update(data).digest('hex'), file };
}

/**
 * Like {@link stageOutput}, for an output too large to hold in memory (a video): the plaintext is
 * streamed from `source` through the encryption to the store, hashed and counted on the way.
 */
export async function stageOutputStream(deps: AssetDeps, orgId: string, assetId: string, source: Readable, file: Omit<OutputFile, 'data'>): Promise<StagedOutput> {
  const tk = await deps.db.withTenant(orgId, (trx) => deps.keyring.current(trx, orgId));
  const blobKey = blobKeyFor(orgId, assetId);
  const hash = createHash('sha256');
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  const encrypted = new PassThrough({ highWaterMark: 64 * 1024 });
  const writing = deps.store.put(blobKey, encrypted);
  try {
    await pipeline([source, counter, encryptStream({ key: tk.key, keyId: tk.id, blobId: assetId }), encrypted]);
  } catch (err) {
    encrypted.destroy(err as Error);
    await writing.catch(() => undefined);
    await deps.store.delete(blobKey).catch(() => undefined);
    throw err;
  }
  await writing;
  return { assetId, blobKey, tenantKeyId: tk.id, size, sha256: hash.digest('hex'), file };
}

/** Inserts the asset row of a staged output (kind `output`) with its audit entry, in the caller's transaction. */
export async function commitOutput(trx: Tx, o: { orgId: string; appId: string; staged: StagedOutput; ttlSeconds: number; ctx: Ctx; now: number }): Promise<Asset> {
  const { staged } = o;
  const row = await trx
    .insertInto('assets')
    .values({
      id: staged.assetId,
      org_id: o.orgId,
      app_id: o.appId,
      kind: 'output',
      mime: staged.file.mime,
      ext: staged.file.ext,
      size: staged.size,
      sha256: staged.sha256,
      width: staged.file.width,
      height: staged.file.height,
      filename: null,
      blob_key: staged.blobKey,
      tenant_key_id: staged.tenantKeyId,
      created_by: o.ctx.actor.id ?? null,
      expires_at: new Date(o.now + o.ttlSeconds * 1000),
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await appendAudit(trx, {
    orgId: o.orgId,
    actor: o.ctx.actor,
    action: 'asset.create',
    target: { asset: staged.assetId, app: o.appId },
    data: { kind: 'output', mime: staged.file.mime, size: staged.size, sha256: staged.sha256 },
    ip: o.ctx.ip,
    requestId: o.ctx.requestId,
  });
  return toAsset(row);
}

/** Removes a staged blob that will never get its row (best effort: the orphan sweep is the backstop). */
export async function discardStaged(deps: Pick<AssetDeps, 'store'>, staged: StagedOutput): Promise<void> {
  await deps.store.delete(staged.blobKey).catch(() => undefined);
}

/** Deletes the blobs among `assetIds` of the org that have no row (earlier attempts that died between put and commit). */
export async function removeUnclaimed(deps: AssetDeps, orgId: string, assetIds: readonly string[]): Promise<void> {
  if (assetIds.length === 0) return;
  const rows = await deps.db.withTenant(orgId, (trx) => trx.selectFrom('assets').select('id').where('org_id', '=', orgId).where('id', 'in', assetIds).execute());
  const live = new Set(rows.map((r) => r.id));
  for (const id of assetIds) if (!live.has(id)) await deps.store.delete(blobKeyFor(orgId, id)).catch(() => undefined);
}

/** Hides an asset at once (soft delete; retention removes the blob). Best effort. */
export async function hideAsset(deps: Pick<AssetDeps, 'db'>, orgId: string, assetId: string, now: number): Promise<void> {
  await deps.db
    .withTenant(orgId, (trx) => trx.updateTable('assets').set({ deleted_at: new Date(now) }).where('org_id', '=', orgId).where('id', '=', assetId).execute())
    .catch(() => undefined);
}
