/**
 * Per-app retention and minimisation policy (issue 14, item 5): what applies to an app's new assets,
 * defaults resolved, and re-applying a shortened retention to the originals already stored.
 *
 * Expiry is recorded per asset at ingest (`expires_at`); the maintenance job deletes what is past it
 * (`sweepAssets`), skipping assets under legal hold. When an app's retention of originals changes:
 * - shorter: existing originals get the earlier date (`created_at` + the new retention) if it is
 *   earlier than theirs, so a promise to delete sooner covers what is already stored;
 * - longer or unset: existing originals keep their date. An expiry never moves later, because a
 *   deletion date promised when the media arrived is never silently withdrawn (and an asset whose
 *   expiry came from the request, such as a job's input copy, must not be kept longer than asked).
 */
import { sql } from 'kysely';
import type { Tx } from '../db/database.js';
import type { AppSettings } from '../db/schema.js';
import { appendAudit } from '../audit/log.js';
import type { Ctx } from '../tenants/index.js';
import { DEFAULT_OUTPUT_TTL_SECONDS } from './assets.js';

import type { MetadataPolicy } from '../media/image/metadata.js';
export type { MetadataPolicy };

/**
 * The default metadata policy (`OBSCURA_METADATA_POLICY` unset, app setting unset): `strip_all`. Originals keep only what displaying them needs (the
 * orientation and the colour profile); camera serial numbers, owner names, capture times, GPS, XMP
 * and IPTC blocks and comments are removed before the bytes are stored (GDPR data minimisation: an
 * integrator who needs them opts in with `keep` or `strip_location`).
 */
export const DEFAULT_METADATA_POLICY: MetadataPolicy = 'strip_all';

/** The policy in force for an app's new assets, defaults resolved. */
export interface EffectivePolicy {
  metadata_policy: MetadataPolicy;
  /** Seconds an original is kept; null = until deleted. */
  retention_seconds: number | null;
  /** Default seconds a stored output is kept. */
  output_retention_seconds: number;
}

/** Resolves an app's settings to the policy in force. */
export function effectivePolicy(settings: AppSettings, defaultMetadataPolicy: MetadataPolicy = DEFAULT_METADATA_POLICY): EffectivePolicy {
  return {
    metadata_policy: settings.metadata_policy ?? defaultMetadataPolicy,
    retention_seconds: settings.retention_seconds ?? null,
    output_retention_seconds: settings.output_retention_seconds ?? DEFAULT_OUTPUT_TTL_SECONDS,
  };
}

/**
 * Brings forward the expiry of the app's stored originals to `created_at + seconds` where that is
 * earlier (see the module comment), in the caller's transaction; audited as `app.retention_applied`
 * with the number of originals whose date moved. Returns that number. `null` changes nothing.
 */
export async function applyRetention(trx: Tx, orgId: string, appId: string, seconds: number | null, ctx: Ctx): Promise<number> {
  if (seconds === null) return 0;
  const due = sql<Date>`created_at + make_interval(secs => ${seconds})`;
  const moved = await trx
    .updateTable('assets')
    .set({ expires_at: due })
    .where('org_id', '=', orgId)
    .where('app_id', '=', appId)
    .where('kind', '=', 'upload')
    .where('deleted_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', due)]))
    .executeTakeFirst();
  const count = Number(moved.numUpdatedRows ?? 0);
  if (count > 0) await appendAudit(trx, { orgId, actor: ctx.actor, action: 'app.retention_applied', target: { app: appId }, data: { originals: count, retention_seconds: seconds }, ip: ctx.ip, requestId: ctx.requestId });
  return count;
}
