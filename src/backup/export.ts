/**
 * Tenant export (issue 14, item 4; GDPR access and portability): an org asks for an export, a worker
 * on the durable queue writes ONE archive of everything the org owns (src/backup/export-archive.ts),
 * encrypted under the org's tenant key like any other blob, and the org downloads it through a signed
 * URL that expires with it.
 *
 * Life of an export (table `org_exports`, migration 0017):
 * 1. **queued**: `requestExport` inserts the row and its `export.request` audit entry; at most one
 *    export per org is queued or running (a partial unique index), so a second request is a 409
 *    naming the first. The caller enqueues `{ org, id }` after the commit.
 * 2. **running → succeeded**: `runExport` streams the archive (records page by page, media decrypted
 *    asset by asset) through the org's STREAM AEAD into the store (`orgs/<org>/exports/<id>`, an atomic
 *    put: a failed attempt leaves nothing), then records size, SHA-256, counts and expiry with an
 *    `export.complete` entry. A failed attempt is retried by the queue; the last one marks the export
 *    **failed** (`export.fail`).
 * 3. **expired**: after `OBSCURA_EXPORT_TTL_SECONDS` the archive is no longer served, and
 *    `expireExport` deletes its blob (a delayed queue job at the expiry, and every new request of the
 *    org sweeps the org's expired ones as a backstop).
 *
 * Every download through the signed URL is audited (`export.download`). Erasing the org removes its
 * export rows (they cascade with the org) and blobs (under the org's prefix), and its key is shredded.
 * Plaintext never touches the disk: the tar bytes go straight into the encryption.
 */
import { createHash } from 'node:crypto';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sql } from 'kysely';
import type { DatabaseHandle, Tx } from '../db/database.js';
import type { BlobStore } from '../assets/stores/types.js';
import type { Keyring } from '../crypto/keyring.js';
import { decryptStream, encryptStream } from '../crypto/stream.js';
import { publicId } from '../crypto/random.js';
import { AppError, notFound } from '../errors.js';
import { appendAudit, type AuditActor } from '../audit/log.js';
import { listAssets, type Asset } from '../assets/assets.js';
import { openAssetStream, primed } from '../assets/read.js';
import { exportArchive, type ArchiveSummary, type ExportContent, type ExportMedia } from './export-archive.js';

/** A row of `org_exports`. */
export interface OrgExportsTable {
  id: string;
  org_id: string;
  status: ExportStatus;
  requested_by: unknown;
  blob_key: string | null;
  tenant_key_id: string | null;
  size: number | string | null;
  sha256: string | null;
  counts: unknown;
  attempts: number;
  error_code: string | null;
  error_message: string | null;
  created_at: Date | string;
  started_at: Date | string | null;
  finished_at: Date | string | null;
  expires_at: Date | string | null;
}

declare module '../db/schema.js' {
  interface Database {
    org_exports: OrgExportsTable;
  }
}

export type ExportStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'expired';

/** An export as the API shows it. */
export interface OrgExport {
  id: string;
  orgId: string;
  /** `expired` also for a succeeded export past its expiry that the sweep has not reached yet. */
  status: ExportStatus;
  requestedBy: { type: string; id?: string };
  /** Plaintext bytes of the archive, once written. */
  size: number | null;
  /** SHA-256 (hex) of the archive's bytes, once written. */
  sha256: string | null;
  counts: Record<string, number> | null;
  attempts: number;
  error: { code: string; message: string } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  expiresAt: string | null;
}

/** The record readers, in the API's own shapes, built by the composition root (see ExportContent). */
export interface ExportRecords {
  /** Kinds other than assets: each reads the org's rows page by page. */
  sections: ReadonlyArray<{ name: string; records: (orgId: string) => AsyncIterable<unknown> }>;
  /** An asset in its API form. */
  asset: (a: Asset) => unknown;
}

/** What exports need. */
export interface ExportDeps {
  db: DatabaseHandle;
  store: BlobStore;
  keyring: Keyring;
  now?: (() => number) | undefined;
  /** How long a finished archive is kept and served (`OBSCURA_EXPORT_TTL_SECONDS`). */
  ttlSeconds: number;
}

/** Who asks, from where (the shape of tenants' `Ctx`, which backup/ does not import). */
export interface Ctx {
  actor: AuditActor;
  ip?: string | null | undefined;
  requestId?: string | null | undefined;
}

/** Assets read per page while exporting (one short tenant transaction each). */
const ASSET_PAGE = 200;

/** Where an export's archive lives: under the org's prefix, so erasure removes it with the rest. */
export const exportBlobKey = (orgId: string, exportId: string): string => `orgs/${orgId}/exports/${exportId}`;

const iso = (d: Date | string | null): string | null => (d === null ? null : new Date(d).toISOString());
const nowOf = (deps: { now?: (() => number) | undefined }): number => deps.now?.() ?? Date.now();

function toExport(r: OrgExportsTable, now: number): OrgExport {
  const expired = r.status === 'expired' || (r.status === 'succeeded' && r.expires_at !== null && new Date(r.expires_at).getTime() <= now);
  const by = (typeof r.requested_by === 'string' ? JSON.parse(r.requested_by) : r.requested_by) as { type: string; id?: string };
  const counts = (typeof r.counts === 'string' ? JSON.parse(r.counts) : r.counts) as Record<string, number> | null;
  return {
    id: r.id,
    orgId: r.org_id,
    status: expired ? 'expired' : r.status,
    requestedBy: { type: by.type, ...(by.id ? { id: by.id } : {}) },
    size: r.size === null ? null : Number(r.size),
    sha256: r.sha256,
    counts: counts ?? null,
    attempts: r.attempts,
    error: r.error_code ? { code: r.error_code, message: r.error_message ?? '' } : null,
    createdAt: iso(r.created_at)!,
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
    expiresAt: iso(r.expires_at),
  };
}

/** Only what identifies the actor (type and id). */
const actorSummary = (a: AuditActor) => ({ type: a.type, ...(a.id ? { id: a.id } : {}) });

function inProgress(id: string): AppError {
  return new AppError('ERR_EXPORT_IN_PROGRESS', 'An export of this org is already queued or running; poll it (GET /v1/orgs/{id}/exports/{export_id}) and ask again once it has finished.', {
    details: { export_id: id },
  });
}

/**
 * Records a new export of `orgId` (queued) with its audit entry; sweeps the org's expired exports first.
 * The caller enqueues it after this returns (the row exists before the queue entry does).
 * @throws AppError `ERR_EXPORT_IN_PROGRESS` (409) while another export of the org is queued or running.
 */
export async function requestExport(deps: ExportDeps, orgId: string, ctx: Ctx): Promise<OrgExport> {
  await sweepExpiredExports(deps, orgId);
  const now = nowOf(deps);
  const id = publicId('exp');
  try {
    const row = await deps.db.withTenant(orgId, async (trx) => {
      const active = await trx.selectFrom('org_exports').select('id').where('org_id', '=', orgId).where('status', 'in', ['queued', 'running']).executeTakeFirst();
      if (active) throw inProgress(active.id);
      const inserted = await trx
        .insertInto('org_exports')
        .values({ id, org_id: orgId, status: 'queued', requested_by: JSON.stringify(actorSummary(ctx.actor)), attempts: 0, created_at: new Date(now) })
        .returningAll()
        .executeTakeFirstOrThrow();
      await appendAudit(trx, { orgId, actor: ctx.actor, action: 'export.request', target: { export: id }, ip: ctx.ip, requestId: ctx.requestId });
      return inserted;
    });
    return toExport(row as OrgExportsTable, now);
  } catch (err) {
    // Two requests at once: the partial unique index lets only one insert commit.
    if ((err as { code?: string; constraint?: string })?.code === '23505') {
      const active = await deps.db.withTenant(orgId, (trx) => trx.selectFrom('org_exports').select('id').where('org_id', '=', orgId).where('status', 'in', ['queued', 'running']).executeTakeFirst());
      throw inProgress(active?.id ?? 'unknown');
    }
    throw err;
  }
}

/** An export of `orgId` (404 for any other org's). */
export async function getExport(deps: Pick<ExportDeps, 'db' | 'now'>, orgId: string, id: string): Promise<OrgExport> {
  const row = await deps.db.withTenant(orgId, (trx) => trx.selectFrom('org_exports').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst());
  if (!row) throw notFound('export');
  return toExport(row as OrgExportsTable, nowOf(deps));
}

/** Marks an export failed (once; a final export is left as it is) with its audit entry. */
export async function failExport(deps: Pick<ExportDeps, 'db' | 'now'>, orgId: string, id: string, code: string, message: string): Promise<void> {
  await deps.db.withTenant(orgId, async (trx) => {
    const r = await trx
      .updateTable('org_exports')
      .set({ status: 'failed', error_code: code, error_message: message, finished_at: new Date(nowOf(deps)) })
      .where('org_id', '=', orgId)
      .where('id', '=', id)
      .where('status', 'in', ['queued', 'running'])
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) > 0) await appendAudit(trx, { orgId, actor: { type: 'system', id: 'export' }, action: 'export.fail', target: { export: id }, data: { code } });
  });
}

/** The org row as the archive's `org.json` shows it. */
async function orgRecord(trx: Tx, orgId: string): Promise<Record<string, unknown>> {
  const r = await sql<{ id: string; name: string; created_at: Date | string }>`select id, name, created_at from orgs where id = ${orgId}`.execute(trx);
  const org = r.rows[0];
  if (!org) throw notFound('org');
  return { id: org.id, name: org.name, created_at: iso(org.created_at) };
}

/** The org's live assets page by page (keyset), each with its API record and its decrypted media. */
async function* assetsOf(deps: ExportDeps, records: ExportRecords, orgId: string): AsyncIterable<{ record: unknown; media: ExportMedia }> {
  let after: readonly string[] | null = null;
  for (;;) {
    const page = await deps.db.withTenant(orgId, (trx) => listAssets(trx, orgId, {}, { limit: ASSET_PAGE, after }, nowOf(deps)));
    for (const asset of page.items) {
      yield {
        record: records.asset(asset),
        media: { id: asset.id, ext: asset.ext, size: asset.size, sha256: asset.sha256, open: () => openAssetStream({ db: deps.db, store: deps.store, keyring: deps.keyring }, asset) },
      };
    }
    if (!page.next) return;
    after = page.next;
  }
}

/**
 * One attempt of an export (the queue's handler). Returns the expiry of the archive it wrote, or null
 * when the export was already final (nothing to do). Throws to ask the queue for a retry; on the last
 * attempt the export is marked failed first.
 */
export async function runExport(deps: ExportDeps, records: ExportRecords, ref: { orgId: string; id: string }, opts: { lastAttempt: boolean }): Promise<Date | null> {
  const { orgId, id } = ref;
  const claimed = await deps.db.withTenant(orgId, async (trx) => {
    const row = await trx
      .updateTable('org_exports')
      .set((eb) => ({ status: 'running', attempts: eb('attempts', '+', 1), started_at: eb.fn.coalesce('started_at', eb.val(new Date(nowOf(deps)))) }))
      .where('org_id', '=', orgId)
      .where('id', '=', id)
      .where('status', 'in', ['queued', 'running'])
      .returningAll()
      .executeTakeFirst();
    if (!row) return null;
    return { org: await orgRecord(trx, orgId), tk: await deps.keyring.current(trx, orgId) };
  });
  if (!claimed) return null;
  const blobKey = exportBlobKey(orgId, id);
  try {
    const content: ExportContent = {
      exportId: id,
      orgId,
      generatedAt: new Date(nowOf(deps)).toISOString(),
      org: claimed.org,
      sections: records.sections.map((s) => ({ name: s.name, records: () => s.records(orgId) })),
      assets: () => assetsOf(deps, records, orgId),
    };
    const { stream, summary } = await exportArchive(content);
    const hash = createHash('sha256');
    let size = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    });
    // The archive's plaintext exists only in these streams: it is encrypted before the store sees it.
    const encrypted = new PassThrough({ highWaterMark: 64 * 1024 });
    const writing = deps.store.put(blobKey, encrypted);
    let result: ArchiveSummary;
    try {
      await pipeline([stream, counter, encryptStream({ key: claimed.tk.key, keyId: claimed.tk.id, blobId: id }), encrypted]);
      result = await summary;
    } catch (err) {
      encrypted.destroy(err as Error);
      await writing.catch(() => undefined);
      throw err;
    }
    await writing;
    const now = nowOf(deps);
    const expiresAt = new Date(now + deps.ttlSeconds * 1000);
    const committed = await deps.db.withTenant(orgId, async (trx) => {
      const r = await trx
        .updateTable('org_exports')
        .set({ status: 'succeeded', blob_key: blobKey, tenant_key_id: claimed.tk.id, size, sha256: hash.digest('hex'), counts: JSON.stringify(result.counts), finished_at: new Date(now), expires_at: expiresAt, error_code: null, error_message: null })
        .where('org_id', '=', orgId)
        .where('id', '=', id)
        .where('status', '=', 'running')
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) === 0) return false;
      await appendAudit(trx, { orgId, actor: { type: 'system', id: 'export' }, action: 'export.complete', target: { export: id }, data: { size, counts: result.counts, media_skipped: result.mediaSkipped.length } });
      return true;
    });
    // Failed or erased meanwhile: the archive must not outlive its row.
    if (!committed) {
      await deps.store.delete(blobKey).catch(() => undefined);
      return null;
    }
    return expiresAt;
  } catch (err) {
    await deps.store.delete(blobKey).catch(() => undefined);
    if (opts.lastAttempt) {
      const e = err instanceof AppError ? err : new AppError('ERR_INTERNAL', 'The export failed.');
      await failExport(deps, orgId, id, e.code, e.publicMessage);
    }
    throw err;
  }
}

/**
 * Expires an export whose time is up: deletes its archive and marks it `expired`. Returns false when
 * it is not due yet (or not a finished export).
 */
export async function expireExport(deps: Pick<ExportDeps, 'db' | 'store' | 'now'>, orgId: string, id: string): Promise<boolean> {
  const now = new Date(nowOf(deps));
  const row = await deps.db.withTenant(orgId, (trx) =>
    trx.selectFrom('org_exports').select(['blob_key']).where('org_id', '=', orgId).where('id', '=', id).where('status', '=', 'succeeded').where('expires_at', '<=', now).executeTakeFirst(),
  );
  if (!row) return false;
  // The blob first: a crash in between leaves a row that the next sweep expires again.
  if (row.blob_key) await deps.store.delete(row.blob_key);
  await deps.db.withTenant(orgId, async (trx) => {
    await trx.updateTable('org_exports').set({ status: 'expired', blob_key: null }).where('org_id', '=', orgId).where('id', '=', id).where('status', '=', 'succeeded').execute();
    await appendAudit(trx, { orgId, actor: { type: 'system', id: 'export' }, action: 'export.expire', target: { export: id } });
  });
  return true;
}

/** Expires every export of the org whose time is up (the backstop of the delayed expiry job). */
export async function sweepExpiredExports(deps: Pick<ExportDeps, 'db' | 'store' | 'now'>, orgId: string): Promise<number> {
  const due = await deps.db.withTenant(orgId, (trx) =>
    trx.selectFrom('org_exports').select('id').where('org_id', '=', orgId).where('status', '=', 'succeeded').where('expires_at', '<=', new Date(nowOf(deps))).execute(),
  );
  let n = 0;
  for (const d of due) if (await expireExport(deps, orgId, d.id)) n += 1;
  return n;
}

/**
 * Opens a finished, unexpired export for its signed URL (the signature was checked by the caller) and
 * records the download in the org's audit log before a byte is sent.
 * @throws AppError `ERR_NOT_FOUND` for an unknown, unfinished, expired or erased export.
 */
export async function openExportDownload(deps: Pick<ExportDeps, 'db' | 'store' | 'keyring' | 'now'>, id: string, ctx: Ctx): Promise<{ export: OrgExport; stream: Readable }> {
  // The signature names the export but not its org: find the org first (a system read of one column).
  const owner = await deps.db.system.selectFrom('org_exports').select(['org_id']).where('id', '=', id).executeTakeFirst();
  if (!owner) throw notFound('export');
  const orgId = owner.org_id;
  const now = nowOf(deps);
  const row = await deps.db.withTenant(orgId, async (trx) => {
    const r = await trx.selectFrom('org_exports').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
    if (!r || r.status !== 'succeeded' || !r.blob_key || !r.tenant_key_id || (r.expires_at !== null && new Date(r.expires_at).getTime() <= now)) return null;
    await appendAudit(trx, { orgId, actor: ctx.actor, action: 'export.download', target: { export: id }, ip: ctx.ip, requestId: ctx.requestId });
    return r as OrgExportsTable;
  });
  if (!row) throw notFound('export');
  const source = await deps.store.get(row.blob_key!);
  const plain = decryptStream({ keyFor: (keyId) => deps.keyring.get(orgId, keyId), blobId: id });
  source.on('error', (err) => plain.destroy(err));
  source.pipe(plain);
  // The first segment is authenticated before the caller sends headers (a clean error, not a cut).
  return { export: toExport(row, now), stream: await primed(plain) };
}
