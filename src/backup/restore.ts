/**
 * `obscura backup restore`: a snapshot into an empty target, checked before, during and after.
 *
 * Before anything is written: the manifest authenticates, the master keys the snapshot's keys are
 * wrapped with are configured, this version knows every migration of the snapshot, the erasure
 * ledger authenticates, and the dump's digest and authentication hold. Then, blobs first: each is
 * streamed from the archive into the target store through a digest check that fails the write
 * before the object becomes visible (the store's atomic put), so a changed blob is never stored.
 * Then the dump loads in one transaction. On any failure, the blobs written so far are removed and
 * nothing of the database was committed.
 *
 * Erasure survives backups (issue 14, item 3): **the restore re-applies the erasure log.** Every org
 * in the archive's erasure ledger (every tombstone any backup into this archive has seen) or with a
 * tombstone in the snapshot stays erased: its blobs are not copied, its wrapped keys are never
 * inserted (crypto-shredded again, not even briefly on a page of the restored database), and the
 * erasure (`eraseOrg`) then removes its rows and audit chain and records `org.erase` in the system
 * chain, exactly as on the live system.
 *
 * Afterwards: the audit chains are verified (`obscura audit verify`'s logic) and a sample of assets
 * is decrypted end to end and compared with its recorded SHA-256.
 *
 * Speed (docs/performance.md): the target database is opened (for an embedded one: a copy of the
 * installation's migrated template, src/db/template.ts, else initdb and the migrations) while the
 * blobs copy, 8 at a time; from a local archive into a local
 * store the kernel copies each blob to a temporary file whose bytes are then checked against the
 * manifest before the rename makes it visible, and the copies are fsynced in one batch.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sql } from 'kysely';
import type { BlobStore } from '../assets/stores/types.js';
import { markBlobsGone } from '../assets/blob-references.js';
import { loadAuditKeys, openAuditKey } from '../audit/keys.js';
import { verifyAudit, type AuditReport } from '../audit/log.js';
import { Keyring, TENANT_KEY_COLUMNS } from '../crypto/keyring.js';
import type { MasterKeys } from '../crypto/master.js';
import { decryptStream, openParts } from '../crypto/stream.js';
import type { DatabaseHandle, Tx } from '../db/database.js';
import { eraseOrg } from '../erasure/erasure.js';
import { AppError, ConfigError } from '../errors.js';
import { blobName, digestFile, PendingSync, type Archive } from './archive.js';
import { eachLimit, type Progress } from './create.js';
import { asInvalid, invalid, openSealedStream, type BackupKey } from './keys.js';
import { loadDump } from './load.js';
import { listSnapshots, manifestName, readLedger, readSealedJson, type Manifest } from './manifest.js';
import { checkDump, chooseSnapshot } from './verify.js';

export interface RestoreDeps {
  archive: Archive;
  backupKey: BackupKey;
  snapshot?: string;
  masterKeys: MasterKeys;
  /** Migrations this version knows. */
  knownMigrations: ReadonlySet<string>;
  /** The empty target store (the caller checked it is empty). */
  store: BlobStore;
  /** Opens (and migrates) the empty target database; called once the archive has been checked. */
  openDb: () => Promise<DatabaseHandle>;
  /**
   * Open the database while the blobs copy rather than after. Only for a target that a failure
   * discards whole (the CLI's staging data dir): a configured database stays unmigrated when a blob
   * is refused, as before.
   */
  openDbEarly?: boolean;
  onProgress?: (p: Progress) => void;
  /** Assets decrypted end to end after the restore (default 16). */
  sample?: number;
  concurrency?: number;
  /**
   * Runs in the load's transaction after the last row; returns the jobs it put back in the queue. The
   * composition root hands in the jobs room's `requeueInterrupted`: jobs that were running at the
   * snapshot ran in a queue the backup does not hold (backup/ does not own, or import, jobs/).
   */
  requeueInterrupted?: (trx: Tx) => Promise<number>;
}

export interface RestoreReport {
  ok: boolean;
  snapshot: string;
  snapshot_at: string;
  rows: number;
  blobs: { restored: number; bytes: number; skipped_erased: number; gone: number };
  /** Orgs the restore erased again (the ledger or the snapshot said they were erased). */
  erasures_reapplied: string[];
  /** Jobs running when the snapshot was taken, queued again (see {@link RestoreDeps.requeueInterrupted}). */
  jobs_requeued: number;
  audit: { ok: boolean; chains: number; problems: string[] };
  decrypt_check: { checked: number; failed: string[] };
  /** Where the time went, milliseconds (`open_db` ran beside `blobs`; `wait_db` is what was left of it after them). */
  phases_ms: { checks_before: number; blobs: number; open_db: number; wait_db: number; load: number; checks_after: number };
}

/** Lines of a byte stream (UTF-8 safe across chunks). */
async function* linesOf(stream: AsyncIterable<Buffer>): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  let carry = '';
  for await (const chunk of stream) {
    const lines = (carry + decoder.write(chunk)).split('\n');
    carry = lines.pop()!;
    yield* lines;
  }
  carry += decoder.end();
  if (carry) yield carry;
}

/** Fails the stream, before its end is passed on, unless the bytes have this size and digest. */
function expectDigest(name: string, size: number, sha256: string): Transform {
  const hash = createHash('sha256');
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      seen += chunk.length;
      if (seen > size) return cb(invalid(name, 'is longer than the manifest says'));
      cb(null, chunk);
    },
    flush(cb) {
      cb(seen === size && hash.digest('hex') === sha256 ? null : invalid(name, 'does not match its digest in the manifest'));
    },
  });
}

/** Restores a snapshot (see the module comment). The caller closes nothing it did not open; the returned handle is closed here. */
export async function restoreBackup(deps: RestoreDeps): Promise<RestoreReport> {
  const started = Date.now();
  const { archive, backupKey: bk, masterKeys } = deps;
  const chosen = await chooseSnapshot(archive, deps.snapshot);
  const m = await readSealedJson<Manifest>(archive, bk, manifestName(chosen.id));
  if (m.format !== 'obscura-backup/1' || m.id !== chosen.id) throw invalid(manifestName(chosen.id), 'is not the manifest of this snapshot');
  const missingKeys = m.master_key_ids.filter((id) => !masterKeys.all.has(id));
  if (missingKeys.length) {
    throw new ConfigError('OBSCURA_MASTER_KEY', `the backup's keys are wrapped by master key ${missingKeys.join(', ')}, which is not configured (this one is ${masterKeys.currentId}); set OBSCURA_MASTER_KEY, or OBSCURA_PREVIOUS_MASTER_KEYS after a rotation, to it`);
  }
  const unknown = m.migrations.filter((x) => !deps.knownMigrations.has(x));
  if (unknown.length) throw new AppError('ERR_BACKUP_INVALID', `${manifestName(m.id)}: was made by a newer Obscura (database migrations ${unknown.join(', ')} are unknown here); restore it with that version or later`);
  const ledger = await readLedger(archive, bk);
  const erased = new Set([...ledger.entries.map((e) => e.org), ...m.erased, ...(await ledgersOfSnapshots(archive, bk))]);
  await checkDump(archive, bk, m);

  const checked = Date.now();

  // Blobs first, each checked before it becomes visible in the target store. The database opens
  // meanwhile (nothing is loaded into it before every blob is in).
  const written: string[] = [];
  const wanted = m.blobs.filter((b) => !erased.has(b.org));
  let bytes = 0;
  let done = 0;
  let db: DatabaseHandle | undefined;
  let openedAt = 0;
  let opening: Promise<DatabaseHandle> | undefined;
  const open = () => {
    opening ??= deps.openDb().then((handle) => {
      openedAt = Date.now();
      return (db = handle);
    });
    opening.catch(() => undefined); // awaited below; a failure while blobs copy is not unhandled
    return opening;
  };
  if (deps.openDbEarly) void open();
  let requeued = 0;
  const copyBlob = kernelCopy(archive, deps.store);
  try {
    deps.onProgress?.({ phase: 'blobs', done, total: wanted.length });
    await eachLimit(wanted, deps.concurrency ?? 8, async (b) => {
      const name = blobName(b.sha256);
      try {
        if (copyBlob) await copyBlob(name, b);
        else {
          const check = expectDigest(name, b.size, b.sha256);
          const source = await archive.openFile(name);
          const piping = pipeline(source, check);
          await Promise.all([deps.store.put(b.key, check, { contentLength: b.size }), piping]);
        }
      } catch (err) {
        throw asInvalid(err, name);
      }
      written.push(b.key);
      bytes += b.size;
      deps.onProgress?.({ phase: 'blobs', done: ++done, total: wanted.length });
    });
    await copyBlob?.flush();
    const blobsDone = Date.now();

    deps.onProgress?.({ phase: 'load', done: 0, total: 1 });
    db = await open();
    const loadStart = Date.now();
    const dump = openSealedStream(bk, m.db.name);
    const reading = pipeline(await archive.openFile(m.db.name), dump).catch((err: unknown) => {
      throw asInvalid(err, m.db.name);
    });
    const loaded = await Promise.all([
      loadDump(db, linesOf(dump), {
        name: m.db.name,
        knownMigrations: deps.knownMigrations,
        skipRows: { table: TENANT_KEY_COLUMNS[0]!.table, column: 'org_id', values: erased },
        finish: async (trx) => {
          await markBlobsGone(trx, m.gone, new Date(m.snapshot_at));
          requeued = (await deps.requeueInterrupted?.(trx)) ?? 0;
        },
      }),
      reading,
    ]).then(([l]) => l);
    deps.onProgress?.({ phase: 'load', done: 1, total: 1 });
    const loaded_at = Date.now();

    deps.onProgress?.({ phase: 'checks', done: 0, total: 1 });
    await openAuditKey(db, masterKeys);
    const reapplied = await reapplyErasures(db, deps.store, erased);
    const audit = await verifyAudit(db.system, { keys: await loadAuditKeys(db.system, masterKeys) });
    const decrypt = await decryptSample(db, deps.store, masterKeys, deps.sample ?? 16);
    deps.onProgress?.({ phase: 'checks', done: 1, total: 1 });
    const auditOk = audit.ok;
    return {
      ok: auditOk && decrypt.failed.length === 0,
      snapshot: m.id,
      snapshot_at: m.snapshot_at,
      rows: loaded.inserted,
      blobs: { restored: written.length, bytes, skipped_erased: m.blobs.length - wanted.length, gone: m.gone.length },
      erasures_reapplied: reapplied,
      jobs_requeued: requeued,
      audit: { ok: auditOk, chains: audit.chains.length, problems: auditProblems(audit) },
      decrypt_check: decrypt,
      phases_ms: { checks_before: checked - started, blobs: blobsDone - checked, open_db: openedAt - (deps.openDbEarly ? checked : blobsDone), wait_db: loadStart - blobsDone, load: loaded_at - loadStart, checks_after: Date.now() - loaded_at },
    };
  } catch (err) {
    // Nothing half-restored stays behind: the blobs written go; the load's transaction rolled back.
    await eachLimit(written, 8, (key) => deps.store.delete(key).catch(() => undefined));
    throw err;
  } finally {
    await opening?.catch(() => undefined);
    await db?.close();
  }
}

/**
 * A local archive into a local store: the kernel copies the archive's file to a temporary file of
 * the store, which is checked against the manifest (size and SHA-256) before the rename makes it the
 * object; `flush` fsyncs the copies in one batch. Undefined when either side is not local.
 */
function kernelCopy(archive: Archive, store: BlobStore): ((name: string, b: { key: string; size: number; sha256: string }) => Promise<void>) & { flush: () => Promise<void> } | undefined {
  if (!archive.localPath || !store.supports('local-files') || !store.filePath || !store.tempPath) return undefined;
  const pending = new PendingSync();
  const copy = async (name: string, b: { key: string; size: number; sha256: string }) => {
    const target = store.filePath!(b.key);
    const temp = store.tempPath!();
    try {
      await copyFile(archive.localPath!(name), temp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') throw invalid(name, 'is missing');
        // A full or failing target is not a fault of the archive (the message stays server-side in `cause`).
        throw new AppError(err.code === 'ENOSPC' || err.code === 'EDQUOT' ? 'ERR_UNAVAILABLE' : 'ERR_INTERNAL', err.code === 'ENOSPC' || err.code === 'EDQUOT' ? 'The blob store is out of space.' : 'The blob store failed.', { cause: err });
      });
      const got = await digestFile(temp);
      if (got.size !== b.size || got.sha256 !== b.sha256) throw invalid(name, 'does not match its digest in the manifest');
      const created = await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      await rename(temp, target);
      const parents: string[] = [];
      if (created) for (let d = dirname(target); d.length >= created.length; d = dirname(d)) parents.push(dirname(d));
      pending.add(target, ...parents);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  };
  return Object.assign(copy, { flush: () => pending.flush() });
}

/**
 * The erasures recorded by every complete snapshot's manifest (each copies the ledger as it was): an
 * archive whose ledger file was removed still remembers them through any later snapshot. A manifest
 * that fails authentication is refused, as everywhere else.
 */
async function ledgersOfSnapshots(archive: Archive, bk: BackupKey): Promise<string[]> {
  const out: string[] = [];
  for (const id of (await listSnapshots(archive)).complete) {
    const m = await readSealedJson<Manifest>(archive, bk, manifestName(id));
    out.push(...(m.ledger ?? []));
  }
  return out;
}

/** Runs the erasure again for every erased org the restored data still holds (or did not finish). */
async function reapplyErasures(db: DatabaseHandle, store: BlobStore, erased: ReadonlySet<string>): Promise<string[]> {
  const ids = [...erased];
  const present = ids.length ? await sql<{ id: string }>`select id::text as id from orgs where id::text = any(${ids}::text[])`.execute(db.system) : { rows: [] };
  const unfinished = await sql<{ id: string }>`select org_id::text as id from org_erasures where completed_at is null`.execute(db.system);
  const todo = [...new Set([...present.rows.map((r) => r.id), ...unfinished.rows.map((r) => r.id)])].sort();
  for (const org of todo) await eraseOrg({ db, store }, org, { actor: { type: 'system', id: 'backup-restore' } });
  return todo;
}

/** Decrypts up to `n` random live assets end to end and compares each with its recorded SHA-256. */
async function decryptSample(db: DatabaseHandle, store: BlobStore, masterKeys: MasterKeys, n: number): Promise<{ checked: number; failed: string[] }> {
  const rows = await sql<{ id: string; org_id: string; blob_key: string; sha256: string; size: string | number; parts: unknown }>`
    select id, org_id::text as org_id, blob_key, sha256, size, parts from assets where deleted_at is null order by random() limit ${n}`.execute(db.system);
  const keyring = new Keyring(db, masterKeys);
  const failed: string[] = [];
  for (const a of rows.rows) {
    const hash = createHash('sha256');
    try {
      const keyFor = (keyId: string) => keyring.get(a.org_id, keyId);
      const sink = async function* (source: AsyncIterable<Buffer>) {
        for await (const c of source) hash.update(c);
      };
      // An asset stored as version-2 parts (a tus upload) reads through its part list.
      const parts = (typeof a.parts === 'string' ? JSON.parse(a.parts) : a.parts) as Array<{ offset: number; size: number; id: string; key: string }> | null;
      if (parts) await pipeline(openParts({ parts: parts.map((p) => ({ ...p, get: (r?: { start: number; end: number }) => store.get(p.key, r) })), plaintextSize: Number(a.size), keyFor, blobId: a.id }).stream, sink);
      else await pipeline(await store.get(a.blob_key), decryptStream({ keyFor, blobId: a.id }), sink);
      if (hash.digest('hex') !== a.sha256) failed.push(a.id);
    } catch {
      failed.push(a.id);
    }
  }
  keyring.forget();
  return { checked: rows.rows.length, failed };
}

function auditProblems(r: AuditReport): string[] {
  const out = r.chains.filter((c) => c.broken).map((c) => `${c.chain}: ${c.broken!.reason}`);
  for (const p of r.problems) out.push(`${p.reason}: ${p.detail}`);
  return out;
}

