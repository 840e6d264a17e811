/**
 * `obscura backup create`: one consistent snapshot of a running deployment.
 *
 * 1. The database dump (dump.ts), taken in one repeatable-read transaction, is sealed under the
 *    backup key as it streams into the archive; the same snapshot lists the blobs it references.
 * 2. Those blobs are copied as stored (ciphertext; never decrypted), each under the SHA-256 of its
 *    bytes. A blob the previous snapshot already copied (same store key: keys are never rewritten)
 *    and still present in the archive is not read again: backups after the first are incremental.
 *    Blobs written after the snapshot are not needed by it and are not copied.
 * 3. The erasure ledger takes in the snapshot's tombstones.
 * 4. The manifest, sealed, is written last, once every blob is durable (`archive.flush()`: one batch
 *    of fsyncs). A backup killed at any point before leaves no manifest, so `verify` and `restore`
 *    accept nothing of it (and the next backup reuses what it copied).
 *
 * Speed (docs/performance.md): blobs are copied 8 at a time; from a local store into a local archive
 * the kernel copies each file and the hash reads the copy, so the digest is of the archive's bytes.
 */
import { randomBytes } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobStore } from '../assets/stores/types.js';
import { AppError } from '../errors.js';
import { blobName, type Archive, type Digest } from './archive.js';
import type { DumpEnd, DumpHeader } from './dump.js';
import { sealStream, type BackupKey } from './keys.js';
import { dumpName, LEDGER, listSnapshots, manifestName, readLedger, readSealedJson, writeSealedJson, type Ledger, type Manifest, type ManifestBlob } from './manifest.js';

/** Progress of a running backup or restore, for a progress bar. */
export interface Progress {
  phase: 'database' | 'blobs' | 'manifest' | 'verify' | 'load' | 'checks';
  done: number;
  total: number;
}

export interface CreateDeps {
  /** The dump's bytes (lines), from the database directly or through the running server. */
  dump: () => Promise<Readable>;
  /** The deployment's blob store (read only). */
  source: BlobStore;
  archive: Archive;
  backupKey: BackupKey;
  onProgress?: (p: Progress) => void;
  /** Warnings (a previous manifest that could not be read). */
  onWarning?: (message: string) => void;
  now?: () => number;
  /** Blobs copied at once (default 8). */
  concurrency?: number;
  /** Runs just before the manifest is written (the CLI's test-only pause, to kill a backup mid-way). */
  beforeManifest?: () => Promise<void>;
}

/** What `backup create` reports. */
export interface CreateReport {
  snapshot: string;
  where: string;
  database: Digest & { rows: number; tables: number };
  blobs: { total: number; copied: number; reused: number; bytes_copied: number; gone: number };
  erasures_in_ledger: number;
  ms: number;
  /** Where the time went, milliseconds: the dump, the blob copies, the fsyncs, ledger and manifest. */
  phases_ms: { database: number; blobs: number; commit: number };
}

/** Reads the dump's control lines as the bytes stream past, unchanged. */
class DumpWatcher extends Transform {
  header: DumpHeader | undefined;
  last: DumpEnd | undefined;
  readonly blobs: { key: string; org: string }[] = [];
  readonly erasures: { org: string; requested_at: string }[] = [];
  private carry = '';
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    const text = this.carry + chunk.toString('utf8');
    const lines = text.split('\n');
    this.carry = lines.pop()!;
    for (const line of lines) this.look(line);
    cb(null, chunk);
  }
  override _flush(cb: (err?: Error | null) => void): void {
    if (this.carry) this.look(this.carry);
    cb(this.last ? null : new AppError('ERR_INTERNAL', 'The database dump ended early (no end line).'));
  }
  private look(line: string): void {
    const tag = line.slice(0, 2);
    if (tag === 'R ' || tag === 'T ') return;
    if (tag === 'H ') this.header = JSON.parse(line.slice(2)) as DumpHeader;
    else if (tag === 'B ') this.blobs.push(JSON.parse(line.slice(2)) as { key: string; org: string });
    else if (tag === 'X ') this.erasures.push(JSON.parse(line.slice(2)) as { org: string; requested_at: string });
    else if (tag === 'E ') this.last = JSON.parse(line.slice(2)) as DumpEnd;
  }
}

/** A new snapshot id: sortable by time, unique by its random tail. */
export function newSnapshotId(now: number): string {
  const t = new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
  const tail = Array.from(randomBytes(6), (b) => 'abcdefghijklmnopqrstuvwxyz0123456789'[b % 36]).join('');
  return `${t}-${tail}`;
}

/**
 * Runs `fn` over `items` with at most `n` at once. After a failure no new item starts, and the first
 * error is thrown only once every running item has settled (so a cleanup sees everything written).
 */
export async function eachLimit<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      try {
        await fn(items[next++]!);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failure) throw failure.error;
}

/** Makes one snapshot (see the module comment). */
export async function createBackup(deps: CreateDeps): Promise<CreateReport> {
  const started = Date.now();
  const now = deps.now ?? Date.now;
  const { archive, backupKey: bk } = deps;
  const id = newSnapshotId(now());
  // Read before anything is written: a ledger that fails authentication stops the backup (someone
  // changed the archive), rather than being silently replaced.
  const ledger = await readLedger(archive, bk);
  const previous = await previousBlobs(deps);

  deps.onProgress?.({ phase: 'database', done: 0, total: 1 });
  const watcher = new DumpWatcher();
  const source = await deps.dump();
  const sealed = sealStream(bk, dumpName(id));
  const writing = archive.putFile(dumpName(id), sealed);
  await Promise.all([pipeline(source, watcher, sealed), writing]);
  const dbDigest = await writing;
  const header = watcher.header!;
  const end = watcher.last!;
  deps.onProgress?.({ phase: 'database', done: 1, total: 1 });
  const dbDone = Date.now();

  const present = new Set<string>();
  for await (const name of archive.list('blobs/')) present.add(name);
  const unique = [...new Map(watcher.blobs.map((b) => [b.key, b])).values()];
  const blobs: ManifestBlob[] = [];
  const gone: string[] = [];
  let copied = 0;
  let bytes = 0;
  let done = 0;
  deps.onProgress?.({ phase: 'blobs', done, total: unique.length });
  // A local store into a local archive: the kernel copies the file (no bytes through this process).
  const kernelCopy = deps.source.supports('local-files') && deps.source.filePath && archive.putBlobFile ? { path: deps.source.filePath.bind(deps.source), put: archive.putBlobFile.bind(archive) } : undefined;
  await eachLimit(unique, deps.concurrency ?? 8, async (ref) => {
    const known = previous.get(ref.key);
    if (known && present.has(blobName(known.sha256))) {
      blobs.push({ key: ref.key, org: ref.org, size: known.size, sha256: known.sha256 });
    } else {
      try {
        const digest = kernelCopy ? await kernelCopy.put(kernelCopy.path(ref.key)) : await archive.putBlob(() => deps.source.get(ref.key));
        blobs.push({ key: ref.key, org: ref.org, ...digest });
        present.add(blobName(digest.sha256));
        copied += 1;
        bytes += digest.size;
      } catch (err) {
        // Deleted between the snapshot and this copy: its asset was deleted after the snapshot.
        if (err instanceof AppError && err.code === 'ERR_NOT_FOUND') gone.push(ref.key);
        else throw err;
      }
    }
    deps.onProgress?.({ phase: 'blobs', done: ++done, total: unique.length });
  });

  const blobsDone = Date.now();
  // The commit point's precondition: every blob the manifest will name is durable before it.
  await archive.flush();
  const entries = new Map(ledger.entries.map((e) => [e.org, e]));
  for (const e of watcher.erasures) if (!entries.has(e.org)) entries.set(e.org, e);
  if (entries.size !== ledger.entries.length) {
    const next: Ledger = { format: 'obscura-erasures/1', entries: [...entries.values()].sort((a, b) => a.org.localeCompare(b.org)) };
    await writeSealedJson(archive, bk, LEDGER, next);
  }

  await deps.beforeManifest?.();
  deps.onProgress?.({ phase: 'manifest', done: 0, total: 1 });
  blobs.sort((a, b) => a.key.localeCompare(b.key));
  const manifest: Manifest = {
    format: 'obscura-backup/1',
    id,
    created_at: new Date(now()).toISOString(),
    snapshot_at: header.at,
    database: header.database,
    backup_key_id: bk.id,
    master_key_ids: header.master_key_ids,
    migrations: header.migrations,
    db: { name: dumpName(id), ...dbDigest, rows: end.rows, tables: end.tables },
    blobs,
    gone: gone.sort(),
    erased: watcher.erasures.map((e) => e.org).sort(),
    ledger: [...entries.keys()].sort(),
  };
  await writeSealedJson(archive, bk, manifestName(id), manifest);
  deps.onProgress?.({ phase: 'manifest', done: 1, total: 1 });
  return {
    snapshot: id,
    where: archive.where,
    database: { ...dbDigest, rows: end.rows, tables: end.tables },
    blobs: { total: unique.length, copied, reused: blobs.length - copied, bytes_copied: bytes, gone: gone.length },
    erasures_in_ledger: entries.size,
    ms: Date.now() - started,
    phases_ms: { database: dbDone - started, blobs: blobsDone - dbDone, commit: Date.now() - blobsDone },
  };
}

/** Store key → digest from the newest complete snapshot (empty when there is none or it cannot be read). */
async function previousBlobs(deps: CreateDeps): Promise<Map<string, { size: number; sha256: string }>> {
  const { complete } = await listSnapshots(deps.archive);
  const last = complete.at(-1);
  if (!last) return new Map();
  try {
    const m = await readSealedJson<Manifest>(deps.archive, deps.backupKey, manifestName(last));
    return new Map(m.blobs.map((b) => [b.key, { size: b.size, sha256: b.sha256 }]));
  } catch (err) {
    deps.onWarning?.(`${(err as AppError).publicMessage ?? String(err)}; copying every blob again`);
    return new Map();
  }
}
