/**
 * Asset organisation (issue 14, item 6): tags and a small metadata map on an asset, and deleting the
 * assets that match a filter (with a dry run).
 *
 * Tags and metadata are labels the integrator chooses, kept in the database like filenames: they are
 * searchable, deleted with the asset and with the org, and never meant for secrets (docs/security-model.md,
 * "Asset labels"). Their limits keep a row small and an index useful: at most 32 tags of at most 64
 * characters, at most 50 metadata keys, 8 KiB of metadata as JSON.
 */
import { sql } from 'kysely';
import { AppError, notFound } from '../errors.js';
import { appendAudit } from '../audit/log.js';
import type { Ctx } from '../tenants/index.js';
import { deleteAsset, liveAt, textArray, toAsset, whereAssets, type Asset, type AssetDeps, type AssetFilter } from './assets.js';

export const MAX_TAGS = 32;
export const MAX_TAG_LENGTH = 64;
export const MAX_METADATA_KEYS = 50;
export const MAX_METADATA_BYTES = 8192;
export const MAX_METADATA_VALUE_LENGTH = 1024;
/** The most assets one bulk deletion removes; the answer says when more match. */
export const MAX_BULK_DELETE = 1000;

/** A tag: letters and digits of any script, then also `_ . : / -`; no spaces or commas (a list filter splits on commas). */
export const TAG_PATTERN = '^[\\p{L}\\p{N}][\\p{L}\\p{N}_.:/-]{0,63}$';
const TAG_RE = new RegExp(TAG_PATTERN, 'u');
/** A metadata key: ASCII letters, digits, `_ . -`, 1–64 characters. */
export const METADATA_KEY_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
const KEY_RE = new RegExp(METADATA_KEY_PATTERN);

export type MetadataValue = string | number | boolean;

/** What `PATCH /v1/assets/{id}` may change. */
export interface LabelChange {
  /** Replaces the asset's tags (duplicates removed, order kept). */
  tags?: string[] | undefined;
  /** An RFC 7396 merge patch of the metadata: a key set to null is removed, others set. */
  metadata?: Record<string, MetadataValue | null> | undefined;
  /** Places (true) or releases (false) a legal hold; the route requires `assets:delete` for it. */
  legalHold?: boolean | undefined;
}

function invalid(message: string, details: Record<string, unknown> = {}): AppError {
  return new AppError('ERR_VALIDATION', message, { details });
}

/** The tags normalised (NFC, duplicates dropped) or ERR_VALIDATION naming the first bad one. */
export function normaliseTags(tags: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of tags) {
    const t = raw.normalize('NFC');
    if (!TAG_RE.test(t)) {
      throw invalid(`The tag "${t.slice(0, 80)}" is not valid: a tag is 1-${MAX_TAG_LENGTH} letters or digits, then also _ . : / - (no spaces or commas).`, { tag: t.slice(0, 80), pattern: TAG_PATTERN });
    }
    if (!out.includes(t)) out.push(t);
  }
  if (out.length > MAX_TAGS) throw invalid(`An asset carries at most ${MAX_TAGS} tags; ${out.length} were given.`, { limit: MAX_TAGS });
  return out;
}

/** `current` merged with `patch` (RFC 7396, one level), validated; ERR_VALIDATION says which rule failed. */
export function mergeMetadata(current: Record<string, MetadataValue>, patch: Record<string, MetadataValue | null>): Record<string, MetadataValue> {
  const next: Record<string, MetadataValue> = { ...current };
  for (const [k, v] of Object.entries(patch)) {
    if (!KEY_RE.test(k)) throw invalid(`The metadata key "${k.slice(0, 80)}" is not valid: keys are 1-64 ASCII letters, digits, _ . or -.`, { key: k.slice(0, 80), pattern: METADATA_KEY_PATTERN });
    if (v === null) {
      delete next[k];
      continue;
    }
    if (typeof v === 'string' && v.length > MAX_METADATA_VALUE_LENGTH) throw invalid(`The metadata value of "${k}" is longer than ${MAX_METADATA_VALUE_LENGTH} characters.`, { key: k, limit: MAX_METADATA_VALUE_LENGTH });
    if (typeof v === 'number' && !Number.isFinite(v)) throw invalid(`The metadata value of "${k}" must be a finite number.`, { key: k });
    if (!['string', 'number', 'boolean'].includes(typeof v)) throw invalid(`The metadata value of "${k}" must be a string, a number, a boolean, or null to remove it.`, { key: k });
    next[k] = v;
  }
  const keys = Object.keys(next).length;
  if (keys > MAX_METADATA_KEYS) throw invalid(`An asset's metadata holds at most ${MAX_METADATA_KEYS} keys; this change would make ${keys}.`, { limit: MAX_METADATA_KEYS });
  const bytes = Buffer.byteLength(JSON.stringify(next));
  if (bytes > MAX_METADATA_BYTES) throw invalid(`An asset's metadata is at most ${MAX_METADATA_BYTES} bytes as JSON; this change would make ${bytes}.`, { limit: MAX_METADATA_BYTES });
  return next;
}

/**
 * Changes an asset's tags and metadata in one tenant transaction (row locked, so two patches of the
 * metadata merge instead of losing one), audited as `asset.label`. ERR_NOT_FOUND for a missing,
 * expired, deleted or foreign asset; ERR_VALIDATION (nothing changed) for a bad tag or metadata.
 */
export async function updateLabels(deps: Pick<AssetDeps, 'db' | 'now'>, orgId: string, assetId: string, change: LabelChange, ctx: Ctx): Promise<Asset> {
  const tags = change.tags === undefined ? undefined : normaliseTags(change.tags);
  const now = new Date(deps.now?.() ?? Date.now());
  return deps.db.withTenant(orgId, async (trx) => {
    const row = await trx
      .selectFrom('assets')
      .selectAll()
      .where('org_id', '=', orgId)
      .where('id', '=', assetId)
      .where('deleted_at', 'is', null)
      .where(liveAt(now))
      .forUpdate()
      .executeTakeFirst();
    if (!row) throw notFound('asset');
    const current = toAsset(row);
    const metadata = change.metadata === undefined ? current.metadata : mergeMetadata(current.metadata, change.metadata);
    const updated = await trx
      .updateTable('assets')
      .set({ tags: sql`${textArray(tags ?? current.tags)}`, metadata: JSON.stringify(metadata), legal_hold: change.legalHold ?? current.legalHold })
      .where('org_id', '=', orgId)
      .where('id', '=', assetId)
      .returningAll()
      .executeTakeFirstOrThrow();
    if (change.legalHold !== undefined && change.legalHold !== current.legalHold) {
      // Holds are what an investigation asks about: their own audit actions.
      await appendAudit(trx, { orgId, actor: ctx.actor, action: change.legalHold ? 'asset.hold' : 'asset.release', target: { asset: assetId, app: row.app_id }, ip: ctx.ip, requestId: ctx.requestId });
    }
    if (change.tags === undefined && change.metadata === undefined) return toAsset(updated);
    // The audit entry names what changed, not the values (they may be personal data the org erases).
    await appendAudit(trx, {
      orgId,
      actor: ctx.actor,
      action: 'asset.label',
      target: { asset: assetId, app: row.app_id },
      data: { tags: tags !== undefined, metadata_keys: change.metadata ? Object.keys(change.metadata).length : 0 },
      ip: ctx.ip,
      requestId: ctx.requestId,
    });
    return toAsset(updated);
  });
}

/** The answer of {@link deleteMatching}. */
export interface BulkDeletion {
  dryRun: boolean;
  /** How many live assets match the filter now (all of them, not only this call's batch). */
  matched: number;
  /** The ids deleted (or, on a dry run, that would be deleted by this call), oldest first. */
  ids: string[];
  /** True when more assets match than this call handles (`limit`): call again. */
  hasMore: boolean;
  /** Matching assets under legal hold: never deleted, not counted in `matched`. */
  held: number;
}

/**
 * Deletes the org's live assets that match `filter`, oldest first, at most `limit` per call (each one
 * through {@link deleteAsset}: tombstone, audit entry, blob, row). A dry run answers the same without
 * changing anything. An empty filter is refused unless `all` is set, so a forgotten filter cannot
 * empty the library.
 */
export async function deleteMatching(deps: AssetDeps, orgId: string, filter: AssetFilter, opts: { dryRun: boolean; limit: number; all?: boolean }, ctx: Ctx): Promise<BulkDeletion> {
  const named = Object.values(filter).some((v) => v !== undefined && !(Array.isArray(v) && v.length === 0));
  if (!named && !opts.all) {
    throw invalid('Name at least one filter (type, kind, tag, created_after, created_before, min_size, max_size, filename), or set "all": true to delete every asset of the org.');
  }
  const limit = Math.min(Math.max(1, opts.limit), MAX_BULK_DELETE);
  const now = new Date(deps.now?.() ?? Date.now());
  const { matched, held, ids } = await deps.db.withTenant(orgId, async (trx) => {
    const live = () =>
      whereAssets(
        trx
          .selectFrom('assets')
          .where('org_id', '=', orgId)
          .where('deleted_at', 'is', null)
          .where(liveAt(now)),
        filter,
      );
    const count = await live().where('legal_hold', '=', false).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const held = await live().where('legal_hold', '=', true).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const rows = await live().where('legal_hold', '=', false).select('id').orderBy('created_at', 'asc').orderBy('id', 'asc').limit(limit).execute();
    return { matched: Number(count.n), held: Number(held.n), ids: rows.map((r) => r.id) };
  });
  if (opts.dryRun) return { dryRun: true, matched, ids, hasMore: matched > ids.length, held };
  const deleted: string[] = [];
  for (const id of ids) {
    try {
      await deleteAsset(deps, orgId, id, ctx);
      deleted.push(id);
    } catch (err) {
      // Deleted (or held) meanwhile by someone else: not ours to report, and not an error.
      if (!(err instanceof AppError && (err.code === 'ERR_NOT_FOUND' || err.code === 'ERR_LEGAL_HOLD'))) throw err;
    }
  }
  return { dryRun: false, matched, ids: deleted, hasMore: matched > ids.length, held };
}
