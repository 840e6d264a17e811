/**
 * Bounds on unfinished uploads (issue 9, item 6): 200 tus uploads declaring 5 GiB each used to be
 * accepted from one key. An unfinished upload — a tus upload not yet completed, or a presigned upload
 * URL not yet used — *reserves* its declared length from creation until it completes, is terminated
 * or refused, or expires. Per app and per org, the number of unfinished uploads and the sum of their
 * declared lengths are bounded; a creation beyond a bound is 429 `ERR_UPLOAD_LIMIT` naming the limit,
 * the figures and the setting that controls it.
 *
 * Nothing needs releasing: the count is taken from the rows themselves (completed, deleted and
 * expired ones do not count, even before the sweeper removes them), so a crash cannot leak a
 * reservation.
 */
import { sql } from 'kysely';
import type { UploadSettings } from './settings.js';
import type { Tx } from '../db/database.js';
import { AppError } from '../errors.js';

/** The configured bounds (`config.uploads.limits`). */
export type UploadLimits = UploadSettings['limits'];

/** What the unfinished uploads of an app or an org hold. */
export interface Reserved {
  /** Unfinished uploads. */
  count: number;
  /** Sum of their declared lengths, in bytes. */
  bytes: number;
}

/** The name of a bound, as reported in the error's `limit` member. */
export type UploadLimitName = 'open_uploads_per_app' | 'open_uploads_per_org' | 'reserved_upload_bytes_per_app' | 'reserved_upload_bytes_per_org';

const SETTING: Record<UploadLimitName, string> = {
  open_uploads_per_app: 'OBSCURA_MAX_OPEN_UPLOADS_PER_APP',
  open_uploads_per_org: 'OBSCURA_MAX_OPEN_UPLOADS_PER_ORG',
  reserved_upload_bytes_per_app: 'OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_APP',
  reserved_upload_bytes_per_org: 'OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_ORG',
};

const FIX = 'Finish or terminate (tus DELETE) unfinished uploads, or wait until they expire, then retry; the operator can raise';

function limitError(limit: UploadLimitName, max: number, current: number, message: string): AppError {
  return new AppError('ERR_UPLOAD_LIMIT', `${message} ${FIX} ${SETTING[limit]}.`, { details: { limit, max, current, setting: SETTING[limit] } });
}

/**
 * Throws 429 `ERR_UPLOAD_LIMIT` when a new unfinished upload of `length` bytes would exceed a bound,
 * given what the app and its org already hold. App bounds are checked first (the narrower fix).
 */
export function assertWithinUploadLimits(limits: UploadLimits, held: { app: Reserved; org: Reserved }, length: number): void {
  if (held.app.count + 1 > limits.maxOpenPerApp) {
    throw limitError('open_uploads_per_app', limits.maxOpenPerApp, held.app.count, `This app already has ${held.app.count} unfinished uploads, its limit.`);
  }
  if (held.app.bytes + length > limits.maxReservedBytesPerApp) {
    throw limitError('reserved_upload_bytes_per_app', limits.maxReservedBytesPerApp, held.app.bytes, `This app's unfinished uploads declare ${held.app.bytes} bytes; ${length} more would exceed its ${limits.maxReservedBytesPerApp}-byte limit.`);
  }
  if (held.org.count + 1 > limits.maxOpenPerOrg) {
    throw limitError('open_uploads_per_org', limits.maxOpenPerOrg, held.org.count, `This organisation already has ${held.org.count} unfinished uploads, its limit.`);
  }
  if (held.org.bytes + length > limits.maxReservedBytesPerOrg) {
    throw limitError('reserved_upload_bytes_per_org', limits.maxReservedBytesPerOrg, held.org.bytes, `This organisation's unfinished uploads declare ${held.org.bytes} bytes; ${length} more would exceed its ${limits.maxReservedBytesPerOrg}-byte limit.`);
  }
}

/**
 * Checks the bounds for a new unfinished upload inside the tenant transaction that will insert it.
 * Takes a per-org transaction lock first, so concurrent creations (on any node) are counted one after
 * another and cannot all slip under a bound together; the lock is held only until that transaction
 * commits. Counts unfinished tus uploads and unused presigned upload URLs of the org.
 */
export async function reserveUpload(trx: Tx, limits: UploadLimits, orgId: string, appId: string, length: number, now: Date): Promise<void> {
  // Serialise creations of one org (on every node) until this transaction commits: count, then insert.
  await sql`select pg_advisory_xact_lock(hashtextextended(${'uploads:' + orgId}, 0))`.execute(trx);
  const tus = await trx
    .selectFrom('uploads')
    .select((eb) => ['app_id', eb.fn.countAll<string | number>().as('n'), eb.fn.coalesce(eb.fn.sum<string | number>('upload_length'), sql<number>`0`).as('bytes')])
    .where('org_id', '=', orgId)
    .where('completed_asset_id', 'is', null)
    .where('expires_at', '>', now)
    .groupBy('app_id')
    .execute();
  const presigned = await trx
    .selectFrom('upload_intents')
    .select((eb) => ['app_id', eb.fn.countAll<string | number>().as('n'), eb.fn.coalesce(eb.fn.sum<string | number>('content_length'), sql<number>`0`).as('bytes')])
    .where('org_id', '=', orgId)
    .where('asset_id', 'is', null)
    .where('expires_at', '>', now)
    .groupBy('app_id')
    .execute();
  const held = { app: { count: 0, bytes: 0 }, org: { count: 0, bytes: 0 } };
  for (const row of [...tus, ...presigned]) {
    const count = Number(row.n);
    const bytes = Number(row.bytes);
    held.org.count += count;
    held.org.bytes += bytes;
    if (row.app_id === appId) {
      held.app.count += count;
      held.app.bytes += bytes;
    }
  }
  assertWithinUploadLimits(limits, held, length);
}
