/**
 * The backup key and the sealed files of an archive (issue 14, item 1).
 *
 * Choice: one symmetric key from the operator's secret manager (`OBSCURA_BACKUP_KEY`), not age/X25519
 * recipients. Why:
 * - Whoever makes a backup already holds the master key, which opens all live data: a symmetric key
 *   on that host exposes nothing new, while giving authenticity for free (an X25519 recipient key is
 *   public by design, so anyone holding it could forge a whole archive that decrypts cleanly; we
 *   would need a signing key on the same host anyway).
 * - `verify` and `restore` need the same key; the operator already keeps one secret that way
 *   (`OBSCURA_MASTER_KEY`), so there is no new kind of secret to manage.
 * - It is never the master key (refused when equal): a stolen archive plus a leaked backup key still
 *   gives only wrapped tenant keys; reading media also takes the master key.
 *
 * Construction (no new cryptography): the archive key is HKDF-SHA256(backup key, info
 * "obscura/backup/v1"), and every sealed file (database dump, manifest, erasure ledger) is the
 * project's STREAM format (src/crypto/stream.ts: AES-256-GCM, 64 KiB segments, per-file key from
 * HKDF with a random salt, truncation and reordering detected) with the file's archive-relative name
 * as its blob id, so a sealed file moved to another name or snapshot fails authentication.
 */
import { createHash, hkdfSync } from 'node:crypto';
import type { Transform } from 'node:stream';
import { AppError, ConfigError } from '../errors.js';
import { parseMasterKey } from '../crypto/keywrap.js';
import { decryptStream, encryptStream } from '../crypto/stream.js';

/** The backup key in memory: its public fingerprint and the derived archive key. */
export interface BackupKey {
  /** Public fingerprint (16 hex characters), recorded in each archive. */
  readonly id: string;
  readonly key: Buffer;
}

const ENV = 'OBSCURA_BACKUP_KEY';

/**
 * Parses `OBSCURA_BACKUP_KEY` and derives the archive key.
 *
 * @throws ConfigError naming `OBSCURA_BACKUP_KEY` when unset, malformed, or equal to a master key.
 */
export function openBackupKey(text: string | undefined, masterKeys: Iterable<Buffer>): BackupKey {
  if (!text) throw new ConfigError(ENV, 'is required for backups: 32 random bytes from your secret manager, e.g. `openssl rand -hex 32` (not the master key)');
  let raw: Buffer;
  try {
    raw = parseMasterKey(text);
  } catch (err) {
    throw new ConfigError(ENV, (err as Error).message.replace(/^OBSCURA_MASTER_KEY:?\s*/, ''));
  }
  for (const m of masterKeys) {
    if (m.equals(raw)) throw new ConfigError(ENV, 'must not be the master key: a backup must not carry what opens it; generate a separate key');
  }
  const id = createHash('sha256').update('obscura/backup-key-id/v1\0').update(raw).digest().subarray(0, 8).toString('hex');
  const key = Buffer.from(hkdfSync('sha256', raw, Buffer.alloc(0), 'obscura/backup/v1', 32));
  raw.fill(0);
  return { id, key };
}

const keyIdOf = (bk: BackupKey) => `backup:${bk.id}`;

/** Encrypts a file of the archive under the backup key, bound to its archive-relative `name`. */
export function sealStream(bk: BackupKey, name: string): Transform {
  return encryptStream({ key: bk.key, keyId: keyIdOf(bk), blobId: name });
}

/**
 * Decrypts and authenticates a sealed file; the stream errors with `ERR_BACKUP_INVALID` naming
 * `name` when the file was changed, cut, moved, or sealed under another backup key.
 */
export function openSealedStream(bk: BackupKey, name: string): Transform {
  const plain = decryptStream({
    keyFor: (keyId) => {
      if (keyId !== keyIdOf(bk)) throw invalid(name, `was sealed under another backup key (${keyId.replace(/^backup:/, '')}; OBSCURA_BACKUP_KEY is ${bk.id})`);
      return bk.key;
    },
    blobId: name,
  });
  return plain;
}

/** The archive error naming the file; exit code 4 in the CLI. */
export function invalid(name: string, why: string): AppError {
  return new AppError('ERR_BACKUP_INVALID', `${name}: ${why}`);
}

/** Maps a failure while reading sealed file `name` to `ERR_BACKUP_INVALID` (keeps one that already is). */
export function asInvalid(err: unknown, name: string): AppError {
  if (err instanceof AppError && err.code === 'ERR_BACKUP_INVALID') return err;
  if (err instanceof AppError && err.code === 'ERR_NOT_FOUND') return invalid(name, 'is missing');
  if (err instanceof AppError && (err.code === 'ERR_INTEGRITY' || err.code === 'ERR_PAYLOAD_TOO_LARGE')) return invalid(name, 'failed authentication under the backup key (changed, cut or not part of this archive)');
  if (err instanceof AppError) return err;
  return invalid(name, `could not be read (${(err as Error)?.message ?? String(err)})`);
}
