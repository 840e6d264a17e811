/**
 * Org erasure (issue 9, item 1): `DELETE /v1/orgs/{id}` (console, owner, re-authenticated) and
 * `obscura orgs erase ID`.
 *
 * Three steps, each idempotent, driven by a tombstone (`org_erasures`, migration 0014) so that an
 * erasure interrupted at any moment is finished by the next maintenance pass:
 *
 * 1. **Shred** (one transaction): write the tombstone, delete the org's wrapped keys (every blob of
 *    the org is now undecryptable: crypto-shredding) and every credential that could reach its data
 *    (API keys, console sessions, OAuth clients, transform keys, webhook endpoints). Other nodes stop
 *    using what they cached within the key-cache bound (`OBSCURA_KEY_CACHE_TTL_MS`, at most 5 s):
 *    the keyring re-reads a key's row after that bound, API keys are re-verified after it, and OAuth
 *    access tokens of a tombstoned org are refused (`ErasedOrgs`).
 * 2. **Rows** (one transaction): delete the org row, which cascades to every table of the org
 *    (assets with their plaintext SHA-256, jobs, uploads, usage, users, apps...), and replace the
 *    org's audit chain by one `org.erase` entry in the keyed `system` chain, which is never deleted
 *    and carries no personal data (`eraseAuditChain`).
 * 3. **Blobs**: delete every object under the org's prefixes in the store (already ciphertext under
 *    shredded keys), then mark the tombstone complete.
 *
 * What remains afterwards: the tombstone (org id, times, who asked, blob count) and the `system`
 * audit entry. Nothing of the org's content, names, e-mail addresses or digests.
 */
import { sql } from 'kysely';
import type { DatabaseHandle } from '../db/database.js';
import type { BlobStore } from '../assets/stores/types.js';
import { AppError } from '../errors.js';
import { shredOrgKeys } from '../crypto/keyring.js';
import { appendAudit, eraseAuditChain, type AuditActor } from '../audit/log.js';
import type { Ctx } from '../tenants/index.js';

/** The tombstone of an erased org. */
export interface OrgErasuresTable {
  org_id: string;
  requested_at: Date | string;
  requested_by: unknown;
  rows_deleted_at: Date | string | null;
  completed_at: Date | string | null;
  blobs_deleted: number | string;
}

declare module '../db/schema.js' {
  interface Database {
    org_erasures: OrgErasuresTable;
  }
}

/** What an erasure did, as the API and the CLI report it. */
export interface ErasureReport {
  org_id: string;
  requested_at: string;
  completed_at: string | null;
  /** Wrapped org keys deleted (crypto-shred) by this call; 0 when an earlier call already did. */
  keys_shredded: number;
  /** Store objects deleted (in total, over every attempt). */
  blobs_deleted: number;
  /** Audit entries of the org's chain removed (the `system` chain records the erasure). */
  audit_entries_removed: number;
}

/** Prefixes under which the org's objects live (assets, tus uploads, presigned staging). */
export const orgBlobPrefixes = (orgId: string): string[] => [`orgs/${orgId}/`, `uploads/${orgId}/`, `staging/${orgId}/`];

/** Tables holding credentials that could reach the org's data, deleted in the shred step. */
const CREDENTIAL_TABLES = ['api_keys', 'console_sessions', 'oauth_clients', 'transform_keys', 'webhook_endpoints', 'password_resets'] as const;

const iso = (d: Date | string | null): string | null => (d === null ? null : new Date(d).toISOString());

/**
 * Erases an org: shred, rows, blobs (see the module comment). Idempotent: calling it again for an org
 * whose erasure was interrupted finishes it; for an org already erased it returns the tombstone.
 *
 * @throws AppError `ERR_NOT_FOUND` when no such org exists and none was erased.
 */
export async function eraseOrg(deps: { db: DatabaseHandle; store: BlobStore; now?: () => number }, orgId: string, ctx: Ctx): Promise<ErasureReport> {
  const keysShredded = await shred(deps.db, orgId, ctx, deps.now?.() ?? Date.now());
  const removed = await deleteRows(deps.db, orgId, ctx);
  const report = await deleteBlobs(deps, orgId);
  return { ...report, keys_shredded: keysShredded, audit_entries_removed: removed };
}

/** Step 1: tombstone, keys and credentials, in one transaction. Returns the keys deleted. */
async function shred(db: DatabaseHandle, orgId: string, ctx: Ctx, now: number): Promise<number> {
  return db.withSystem(async (trx) => {
    // One erasure at a time per org (two owners clicking at once, or maintenance resuming it).
    await sql`select pg_advisory_xact_lock(hashtextextended(${'erase:' + orgId}, 0))`.execute(trx);
    const tomb = await trx.selectFrom('org_erasures').select('org_id').where('org_id', '=', orgId).executeTakeFirst();
    if (!tomb) {
      const org = await trx.selectFrom('orgs').select('id').where('id', '=', orgId).executeTakeFirst();
      if (!org) throw new AppError('ERR_NOT_FOUND', 'The org does not exist.');
      await trx
        .insertInto('org_erasures')
        .values({ org_id: orgId, requested_at: new Date(now), requested_by: JSON.stringify(actorSummary(ctx.actor)), blobs_deleted: 0 })
        .execute();
      // Recorded in the org's own chain too (removed in step 2 with the chain): until then, the org's
      // auditors see that the erasure began and who asked.
      await appendAudit(trx, { orgId, actor: ctx.actor, action: 'org.erase_requested', target: { org: orgId }, ip: ctx.ip, requestId: ctx.requestId });
    }
    const keys = await shredOrgKeys(trx, orgId);
    for (const t of CREDENTIAL_TABLES) await sql`delete from ${sql.table(t)} where org_id = ${orgId}`.execute(trx);
    return keys;
  });
}

/** Step 2: the org row (cascading to every table of the org) and its audit chain. */
async function deleteRows(db: DatabaseHandle, orgId: string, ctx: Ctx): Promise<number> {
  return db.withSystem(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtextextended(${'erase:' + orgId}, 0))`.execute(trx);
    const tomb = await trx.selectFrom('org_erasures').select(['rows_deleted_at']).where('org_id', '=', orgId).forUpdate().executeTakeFirst();
    if (!tomb) throw new AppError('ERR_NOT_FOUND', 'The org does not exist.');
    if (tomb.rows_deleted_at) return 0;
    await trx.deleteFrom('orgs').where('id', '=', orgId).execute();
    const removed = await eraseAuditChain(trx, orgId, { actor: ctx.actor, ip: ctx.ip ?? null, requestId: ctx.requestId ?? null });
    await trx.updateTable('org_erasures').set({ rows_deleted_at: new Date() }).where('org_id', '=', orgId).execute();
    return removed;
  });
}

/** Step 3: every object under the org's prefixes; then the tombstone is complete. */
async function deleteBlobs(deps: { db: DatabaseHandle; store: BlobStore }, orgId: string): Promise<Omit<ErasureReport, 'keys_shredded' | 'audit_entries_removed'>> {
  let deleted = 0;
  for (const prefix of orgBlobPrefixes(orgId)) {
    for await (const key of deps.store.list(prefix)) {
      await deps.store.delete(key);
      deleted += 1;
    }
  }
  const row = await deps.db.withSystem(async (trx) => {
    return trx
      .updateTable('org_erasures')
      .set((eb) => ({ blobs_deleted: eb('blobs_deleted', '+', deleted), completed_at: new Date() }))
      .where('org_id', '=', orgId)
      .returningAll()
      .executeTakeFirstOrThrow();
  });
  return { org_id: orgId, requested_at: iso(row.requested_at)!, completed_at: iso(row.completed_at), blobs_deleted: Number(row.blobs_deleted) };
}

/** Only what identifies the actor (type and id), never other fields a caller may have put there. */
function actorSummary(actor: AuditActor): Record<string, unknown> {
  return { type: actor.type, ...(actor.id ? { id: actor.id } : {}) };
}

/**
 * Maintenance: finishes every erasure that was interrupted (a crash, a store outage) and requested at
 * least `graceMs` ago (the maintenance interval: a live request is most likely still working on a
 * fresher one; running both at once is harmless, every step is idempotent). Returns how many.
 */
export async function resumeErasures(deps: { db: DatabaseHandle; store: BlobStore; now?: () => number }, graceMs = 60_000): Promise<number> {
  const cutoff = new Date((deps.now?.() ?? Date.now()) - graceMs);
  const pending = await deps.db.system.selectFrom('org_erasures').select(['org_id']).where('completed_at', 'is', null).where('requested_at', '<', cutoff).limit(100).execute();
  for (const p of pending) await eraseOrg(deps, p.org_id, { actor: { type: 'system', id: 'maintenance' } });
  return pending.length;
}

/** Whether an org has been erased (or its erasure has begun). */
export async function isErased(db: DatabaseHandle, orgId: string): Promise<boolean> {
  return !!(await db.system.selectFrom('org_erasures').select('org_id').where('org_id', '=', orgId).executeTakeFirst());
}

/**
 * Refuses bearer tokens (OAuth2 access tokens, which are stateless) of an org whose erasure has begun,
 * with the same short cache as API keys: within `ttlMs` of the shred on every node.
 */
export class ErasedOrgs {
  private readonly live = new Map<string, number>();

  constructor(
    private readonly db: DatabaseHandle,
    private readonly opts: { ttlMs: number; now?: () => number },
  ) {}

  /** @throws AppError `ERR_TOKEN_INVALID` when the org has been erased. */
  async assertLive(orgId: string): Promise<void> {
    const now = this.opts.now?.() ?? Date.now();
    const at = this.live.get(orgId);
    if (at !== undefined && now - at < this.opts.ttlMs) return;
    if (await isErased(this.db, orgId)) {
      this.live.delete(orgId);
      throw new AppError('ERR_TOKEN_INVALID', 'The organisation this token belongs to has been erased.');
    }
    if (this.live.size > 10_000) this.live.clear();
    this.live.set(orgId, now);
  }
}
