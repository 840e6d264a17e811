/**
 * The manifest of a snapshot and the erasure ledger of an archive: small JSON documents, sealed under
 * the backup key (keys.ts), so that changing, swapping or forging one fails authentication.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Archive, Digest } from './archive.js';
import { AppError } from '../errors.js';
import { asInvalid, invalid, openSealedStream, sealStream, type BackupKey } from './keys.js';

/** One store object in a snapshot. */
export interface ManifestBlob {
  /** The store key it is restored under. */
  key: string;
  /** The org it belongs to. */
  org: string;
  size: number;
  sha256: string;
}

/** What a snapshot holds; every byte of the snapshot is named here with its digest. */
export interface Manifest {
  format: 'obscura-backup/1';
  id: string;
  created_at: string;
  /** The snapshot's moment (the dump transaction's start). */
  snapshot_at: string;
  database: 'pglite' | 'postgres';
  backup_key_id: string;
  /** Master key fingerprints the restored keys are wrapped with (a restore needs them). */
  master_key_ids: string[];
  migrations: string[];
  db: Digest & { name: string; rows: number; tables: number };
  blobs: ManifestBlob[];
  /** Store keys referenced by the snapshot but deleted before they could be copied (their assets were deleted after the snapshot). */
  gone: string[];
  /** Orgs with an erasure tombstone in the snapshot. */
  erased: string[];
  /**
   * Every org in the archive's erasure ledger when this snapshot was made: a restore honours these
   * too, so deleting the ledger file alone does not bring an erased org back while a later snapshot exists.
   */
  ledger: string[];
}

/** One org erasure seen by a backup. */
export interface LedgerEntry {
  org: string;
  requested_at: string;
}

/** The erasure ledger: every erasure any backup into this archive has seen (grows only). */
export interface Ledger {
  format: 'obscura-erasures/1';
  entries: LedgerEntry[];
}

export const manifestName = (id: string): string => `snapshots/${id}/manifest`;
export const dumpName = (id: string): string => `snapshots/${id}/db`;
export const LEDGER = 'erasures';

/** Seals `value` under the backup key and writes it atomically as `name`. */
export async function writeSealedJson(archive: Archive, bk: BackupKey, name: string, value: unknown): Promise<Digest> {
  const sealed = Readable.from([Buffer.from(JSON.stringify(value))]).pipe(sealStream(bk, name));
  return archive.putFile(name, sealed);
}

/** Reads and authenticates a sealed JSON file; `ERR_BACKUP_INVALID` naming it when missing or not authentic. */
export async function readSealedJson<T>(archive: Archive, bk: BackupKey, name: string, maxBytes = 256 * 1024 * 1024): Promise<T> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    await pipeline(await archive.openFile(name), openSealedStream(bk, name), async function* (source: AsyncIterable<Buffer>) {
      for await (const c of source) {
        size += c.length;
        if (size > maxBytes) throw invalid(name, 'is larger than any file of this kind');
        chunks.push(c);
      }
    });
  } catch (err) {
    throw asInvalid(err, name);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
  } catch {
    throw invalid(name, 'is not valid JSON');
  }
}

/** The erasure ledger of `archive` (empty when none was written yet). */
export async function readLedger(archive: Archive, bk: BackupKey): Promise<Ledger> {
  try {
    (await archive.openFile(LEDGER)).destroy();
  } catch (err) {
    if (err instanceof AppError && err.code === 'ERR_NOT_FOUND') return { format: 'obscura-erasures/1', entries: [] };
    throw err;
  }
  const ledger = await readSealedJson<Ledger>(archive, bk, LEDGER);
  if (ledger.format !== 'obscura-erasures/1' || !Array.isArray(ledger.entries)) throw invalid(LEDGER, 'is not an erasure ledger');
  return ledger;
}

/** Ids of complete snapshots (with a manifest), oldest first, and of incomplete ones. */
export async function listSnapshots(archive: Archive): Promise<{ complete: string[]; incomplete: string[] }> {
  const seen = new Map<string, boolean>();
  for await (const name of archive.list('snapshots/')) {
    const [, id, file] = name.split('/');
    if (!id) continue;
    seen.set(id, (seen.get(id) ?? false) || file === 'manifest');
  }
  const ids = [...seen.keys()].sort();
  return { complete: ids.filter((i) => seen.get(i)), incomplete: ids.filter((i) => !seen.get(i)) };
}
