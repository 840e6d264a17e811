/**
 * `obscura backup verify`: checks a snapshot without restoring it. The manifest must authenticate
 * under the backup key; the dump's bytes must match the manifest's digest and authenticate too; every
 * blob the snapshot references must be present with the digest the manifest names; the erasure
 * ledger must authenticate. Every problem is reported with the file it concerns.
 */
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';
import { blobName, Hasher, isSnapshotId, type Archive } from './archive.js';
import { eachLimit, type Progress } from './create.js';
import { asInvalid, invalid, openSealedStream, type BackupKey } from './keys.js';
import { listSnapshots, manifestName, readLedger, readSealedJson, type Manifest } from './manifest.js';

/** One problem found, naming the archive file. */
export interface Problem {
  file: string;
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  where: string;
  snapshot: string | null;
  blobs: number;
  bytes: number;
  problems: Problem[];
  /** Snapshots without a manifest (interrupted backups): never restorable. */
  incomplete: string[];
}

const drain = async function* (source: AsyncIterable<unknown>) {
  for await (const _ of source) void _;
};

/**
 * The snapshot to use: `id` when given (checked), else the newest complete one.
 * @throws AppError `ERR_BACKUP_INVALID` when there is none (an interrupted backup leaves none).
 */
export async function chooseSnapshot(archive: Archive, id?: string): Promise<{ id: string; incomplete: string[] }> {
  const { complete, incomplete } = await listSnapshots(archive);
  if (id !== undefined) {
    if (!isSnapshotId(id)) throw new AppError('ERR_BACKUP_INVALID', `"${id}" is not a snapshot id (like 20261205T201500Z-k3j9x2)`);
    if (incomplete.includes(id)) throw invalid(manifestName(id), 'is missing: this backup did not finish (it was interrupted) and cannot be used');
    if (!complete.includes(id)) throw invalid(`snapshots/${id}`, `does not exist in ${archive.where}`);
    return { id, incomplete };
  }
  const last = complete.at(-1);
  if (!last) throw new AppError('ERR_BACKUP_INVALID', `${archive.where} holds no complete backup${incomplete.length ? ` (only interrupted ones: ${incomplete.join(', ')})` : ''}`);
  return { id: last, incomplete };
}

/** Checks the dump file against the manifest: digest of the stored bytes and authentication. */
export async function checkDump(archive: Archive, bk: BackupKey, m: Manifest): Promise<void> {
  const hasher = new Hasher();
  try {
    await pipeline(await archive.openFile(m.db.name), hasher, openSealedStream(bk, m.db.name), drain);
  } catch (err) {
    throw asInvalid(err, m.db.name);
  }
  const d = hasher.digest();
  if (d.sha256 !== m.db.sha256 || d.size !== m.db.size) throw invalid(m.db.name, 'does not match the digest in the manifest');
}

/** Verifies a snapshot (see the module comment); never throws for a problem of the archive, reports it. */
export async function verifyBackup(deps: { archive: Archive; backupKey: BackupKey; snapshot?: string; onProgress?: (p: Progress) => void; concurrency?: number }): Promise<VerifyReport> {
  const { archive, backupKey: bk } = deps;
  const problems: Problem[] = [];
  const report = (snapshot: string | null, blobs = 0, bytes = 0, incomplete: string[] = []): VerifyReport => ({ ok: problems.length === 0, where: archive.where, snapshot, blobs, bytes, problems, incomplete });
  const note = (err: unknown) => {
    if (!(err instanceof AppError)) throw err;
    const [file, ...rest] = err.publicMessage.split(': ');
    problems.push(rest.length ? { file: file!, message: rest.join(': ') } : { file: archive.where, message: err.publicMessage });
  };
  let chosen: { id: string; incomplete: string[] };
  try {
    chosen = await chooseSnapshot(archive, deps.snapshot);
  } catch (err) {
    note(err);
    return report(deps.snapshot ?? null);
  }
  let m: Manifest;
  try {
    m = await readSealedJson<Manifest>(archive, bk, manifestName(chosen.id));
    if (m.format !== 'obscura-backup/1' || m.id !== chosen.id) throw invalid(manifestName(chosen.id), 'is not the manifest of this snapshot');
  } catch (err) {
    note(err);
    return report(chosen.id, 0, 0, chosen.incomplete);
  }
  try {
    await checkDump(archive, bk, m);
  } catch (err) {
    note(err);
  }
  try {
    await readLedger(archive, bk);
  } catch (err) {
    note(err);
  }
  let done = 0;
  let bytes = 0;
  deps.onProgress?.({ phase: 'verify', done, total: m.blobs.length });
  await eachLimit(m.blobs, deps.concurrency ?? 4, async (b) => {
    const name = blobName(b.sha256);
    const hasher = new Hasher();
    try {
      await pipeline(await archive.openFile(name), hasher, drain);
      const d = hasher.digest();
      if (d.sha256 !== b.sha256 || d.size !== b.size) problems.push({ file: name, message: `does not match its digest (store key ${b.key})` });
      bytes += d.size;
    } catch (err) {
      if (err instanceof AppError && err.code === 'ERR_NOT_FOUND') problems.push({ file: name, message: `is missing (store key ${b.key})` });
      else problems.push({ file: name, message: `could not be read (store key ${b.key})` });
    }
    deps.onProgress?.({ phase: 'verify', done: ++done, total: m.blobs.length });
  });
  problems.sort((a, b) => a.file.localeCompare(b.file));
  return report(chosen.id, m.blobs.length, bytes, chosen.incomplete);
}
