/**
 * Every blob the database references, for backups (issue 14, item 1). The assets room owns asset rows
 * and blobs, so the answer to "which objects does this snapshot need?" lives here: when an asset comes
 * to span several objects, this is the one function that learns it.
 */
import { sql } from 'kysely';
import type { Tx } from '../db/database.js';

/** One store object a database snapshot needs. */
export interface BlobReference {
  /** The store key. */
  readonly key: string;
  /** The org it belongs to (erasure skips an erased org's objects). */
  readonly orgId: string;
}

/**
 * The store objects referenced by live rows, read in the caller's transaction (so, with a
 * repeatable-read snapshot, exactly the objects of that snapshot): each live asset's blob, and the
 * committed parts of every unfinished tus upload (so an upload can be resumed after a restore).
 */
export async function referencedBlobs(trx: Tx): Promise<BlobReference[]> {
  const out: BlobReference[] = [];
  const assets = await trx.selectFrom('assets').select(['org_id', 'blob_key', 'parts']).where('deleted_at', 'is', null).execute();
  for (const a of assets) {
    // An asset stored as version-2 parts (a tus upload, migration 0016) is its parts; `blob_key` is
    // then only their prefix.
    const parts = (typeof a.parts === 'string' ? JSON.parse(a.parts) : a.parts) as { key?: unknown }[] | null;
    if (Array.isArray(parts)) {
      for (const p of parts) if (typeof p?.key === 'string') out.push({ key: p.key, orgId: a.org_id });
    } else out.push({ key: a.blob_key, orgId: a.org_id });
  }
  const uploads = await sql<{ org_id: string; parts: unknown }>`select org_id, parts from uploads where completed_asset_id is null`.execute(trx);
  for (const u of uploads.rows) {
    const parts = (typeof u.parts === 'string' ? JSON.parse(u.parts) : u.parts) as { key?: unknown }[];
    for (const p of Array.isArray(parts) ? parts : []) if (typeof p?.key === 'string') out.push({ key: p.key, orgId: u.org_id });
  }
  return out;
}

/**
 * Marks deleted the assets whose blob was already gone when the backup copied it (the asset was
 * deleted after the snapshot was taken), so a restored server agrees with the store: maintenance
 * then finishes their deletion. Runs in the restore's transaction. Returns how many assets.
 */
export async function markBlobsGone(trx: Tx, keys: readonly string[], at: Date): Promise<number> {
  if (keys.length === 0) return 0;
  const r = await trx
    .updateTable('assets')
    .set({ deleted_at: at })
    // A parted asset is gone when any of its parts is.
    .where((eb) => eb.or([eb('blob_key', 'in', [...keys]), ...keys.map((k) => eb(sql`parts`, '@>', sql`${JSON.stringify([{ key: k }])}::jsonb`))]))
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows);
}
