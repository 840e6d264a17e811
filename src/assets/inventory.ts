/**
 * The org's media inventory (issue 14, item 5: the data-inventory report): per app and kind, how many
 * assets, how many bytes, the oldest and newest, how many will expire, how many are held, and which
 * retention applies; plus unfinished uploads. Counts and sizes only: no names, labels or content.
 */
import { sql } from 'kysely';
import type { Tx } from '../db/database.js';
import type { AppSettings } from '../db/schema.js';
import { liveAt } from './assets.js';
import { effectivePolicy, type MetadataPolicy } from './retention.js';

/** One app × kind line of the inventory. */
export interface InventoryLine {
  appId: string;
  kind: 'upload' | 'output';
  count: number;
  bytes: number;
  oldest: string | null;
  newest: string | null;
  /** Assets with an expiry date (retention applies). */
  expiring: number;
  /** Assets under legal hold. */
  held: number;
}

/** One app's retention: what applies to new originals and outputs. */
export interface AppRetention {
  appId: string;
  name: string;
  /** Seconds an original is kept (the app's `retention_seconds`); null = until deleted. */
  originalsSeconds: number | null;
  /** Seconds a stored output is kept by default (the app's `output_retention_seconds`; a request may ask for another lifetime). */
  outputsSeconds: number;
  /** What uploaded images keep of their metadata. */
  metadataPolicy: MetadataPolicy;
}

export interface MediaInventory {
  lines: InventoryLine[];
  retention: AppRetention[];
  openUploads: { count: number; declaredBytes: number };
}

const iso = (v: unknown) => (v ? new Date(v as string).toISOString() : null);

/** The inventory of `orgId`'s live media, in the caller's tenant transaction. */
export async function mediaInventory(trx: Tx, orgId: string, now = Date.now(), defaultMetadataPolicy?: MetadataPolicy): Promise<MediaInventory> {
  const rows = await trx
    .selectFrom('assets')
    .where('org_id', '=', orgId)
    .where('deleted_at', 'is', null)
    .where(liveAt(new Date(now)))
    .select((eb) => [
      'app_id',
      'kind',
      eb.fn.countAll<number>().as('count'),
      eb.fn.sum<number>('size').as('bytes'),
      eb.fn.min('created_at').as('oldest'),
      eb.fn.max('created_at').as('newest'),
      sql<number>`count(*) filter (where expires_at is not null and not legal_hold)`.as('expiring'),
      sql<number>`count(*) filter (where legal_hold)`.as('held'),
    ])
    .groupBy(['app_id', 'kind'])
    .orderBy('app_id')
    .orderBy('kind')
    .execute();
  const apps = await trx.selectFrom('apps').select(['id', 'name', 'settings']).where('org_id', '=', orgId).orderBy('created_at').execute();
  const open = await trx
    .selectFrom('uploads')
    .where('org_id', '=', orgId)
    .where('expires_at', '>', new Date(now))
    .where('completed_asset_id', 'is', null)
    .select((eb) => [eb.fn.countAll<number>().as('count'), eb.fn.sum<number>('upload_length').as('bytes')])
    .executeTakeFirstOrThrow();
  return {
    lines: rows.map((r) => ({
      appId: r.app_id,
      kind: r.kind,
      count: Number(r.count),
      bytes: Number(r.bytes ?? 0),
      oldest: iso(r.oldest),
      newest: iso(r.newest),
      expiring: Number(r.expiring),
      held: Number(r.held),
    })),
    retention: apps.map((a) => {
      const policy = effectivePolicy((typeof a.settings === 'string' ? JSON.parse(a.settings) : a.settings ?? {}) as AppSettings, defaultMetadataPolicy);
      return { appId: a.id, name: a.name, originalsSeconds: policy.retention_seconds, outputsSeconds: policy.output_retention_seconds, metadataPolicy: policy.metadata_policy };
    }),
    openUploads: { count: Number(open.count), declaredBytes: Number(open.bytes ?? 0) },
  };
}
