/**
 * Where archives live: a local directory or an S3 bucket/prefix (through the project's S3 store).
 *
 * Layout (the same on both):
 * - `blobs/<aa>/<sha256>`: one copy of each store object, named by the SHA-256 of its bytes. The
 *   bytes are what the store holds: STREAM ciphertext under the org's key (src/crypto/stream.ts),
 *   never decrypted here. A blob already present is not copied again (incremental backups).
 * - `snapshots/<id>/db`: the database dump, sealed under the backup key (keys.ts);
 * - `snapshots/<id>/manifest`: sealed; every file's size and digest. Written last: a snapshot
 *   without it (a backup that was killed) is incomplete, and nothing accepts it.
 * - `erasures`: the sealed erasure ledger (every org erasure any backup has seen; restore.ts).
 *
 * Every file is written atomically (temporary name, rename; a single PUT or a completed multipart
 * upload on S3), so a crash never leaves a torn file under its final name. On disk, sealed files are
 * fsynced one by one; blobs are fsynced in one batch by `flush()` (every blob file in parallel, then
 * each directory once), which `create` calls before the manifest, the commit point: a manifest on
 * disk means every file it names was durable before it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, createReadStream, createWriteStream } from 'node:fs';
import { copyFile, lstat, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobStore } from '../assets/stores/types.js';
import { AppError } from '../errors.js';
import { digestFileOffThread } from './digest-pool.js';

/** Size and SHA-256 (hex) of a file's bytes as stored. */
export interface Digest {
  size: number;
  sha256: string;
}

/** An archive location. Names are archive-relative (`snapshots/<id>/db`), built by this room. */
export interface Archive {
  /** For messages: the directory or `s3://bucket/prefix`. */
  readonly where: string;
  /** Writes a file atomically from `body`; resolves with the stored bytes' digest. */
  putFile(name: string, body: Readable): Promise<Digest>;
  /** Opens a file; rejects with `ERR_NOT_FOUND` when missing. */
  openFile(name: string): Promise<Readable>;
  /** Names under `prefix`. */
  list(prefix: string): AsyncIterable<string>;
  /** Copies a blob in under its content address (single pass where the medium allows). */
  putBlob(open: () => Promise<Readable>): Promise<Digest>;
  /**
   * Only on disk: copies a local file in under its content address by the kernel (copy_file_range,
   * or a reflink where the filesystem has them), then hashes the copy, so the digest is of the
   * archive's bytes. Rejects with `ERR_NOT_FOUND` when `path` is missing or not a regular file.
   */
  putBlobFile?(path: string): Promise<Digest>;
  /** Only on disk: the file of `name` (for a kernel copy out of the archive). */
  localPath?(name: string): string;
  /** Makes every blob written so far durable (on disk: one batch of fsyncs; on S3 nothing to do). */
  flush(): Promise<void>;
  /** Removes a file (idempotent). */
  remove(name: string): Promise<void>;
  close(): Promise<void>;
}

/** The archive name of the blob with this digest. */
export const blobName = (sha256: string): string => `blobs/${sha256.slice(0, 2)}/${sha256}`;

/** A pass-through that computes the digest of what flows through it. */
export class Hasher extends Transform {
  private readonly hash = createHash('sha256');
  size = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }
  /** The digest; call once, after the stream ended. */
  digest(): Digest {
    return { size: this.size, sha256: this.hash.digest('hex') };
  }
}

const SNAPSHOT_ID = /^[0-9]{8}T[0-9]{6}Z-[a-z0-9]{6}$/;
/** Whether `id` is a snapshot id (`20261205T201500Z-k3j9x2`); what a user types is checked with this. */
export const isSnapshotId = (id: string): boolean => SNAPSHOT_ID.test(id);

/**
 * The SHA-256 of a file's bytes, on a worker thread (digest-pool.ts): the copies' hashes run on
 * every core instead of one after another on the main thread.
 */
export function digestFile(path: string): Promise<Digest> {
  return digestFileOffThread(path);
}

/** fsyncs a file or directory. */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Files written without their own fsync, made durable together: every file (in parallel, bounded),
 * then each of their directories once. One fsync per file is what a durable copy needs; what this
 * saves is waiting for each before the next copy starts, and a directory fsync per file.
 */
export class PendingSync {
  private files: string[] = [];
  private dirs = new Set<string>();
  /** Records a file just renamed into place (and, with `newDirs`, directories just created for it). */
  add(file: string, ...newDirs: string[]): void {
    this.files.push(file);
    this.dirs.add(dirname(file));
    for (const d of newDirs) this.dirs.add(d);
  }
  async flush(): Promise<void> {
    const files = this.files;
    const dirs = [...this.dirs];
    this.files = [];
    this.dirs = new Set();
    await runLimited(files, 16, fsyncPath);
    await runLimited(dirs, 16, fsyncPath);
  }
}

async function runLimited<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/** `ERR_NOT_FOUND` unless `path` is a regular file (a symlink is not followed: as the fs store reads). */
async function regularFile(path: string): Promise<void> {
  const st = await lstat(path).catch(() => null);
  if (!st?.isFile()) throw new AppError('ERR_NOT_FOUND', 'The blob is missing.');
}

/** A local directory. */
export function dirArchive(root: string): Archive {
  const base = resolve(root);
  const tmp = join(base, '.tmp');
  const path = (name: string) => join(base, ...name.split('/'));
  const fsyncDir = async (dir: string) => {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  };
  const pending = new PendingSync();
  const tempName = () => join(tmp, `${randomBytes(9).toString('hex')}.part`);
  /** Streams `body` to a temporary file (hashing), fsyncs it when `durable`, and returns its path and digest. */
  const spool = async (body: Readable, durable: boolean): Promise<{ file: string; digest: Digest }> => {
    await mkdir(tmp, { recursive: true, mode: 0o700 });
    const file = tempName();
    const hasher = new Hasher();
    try {
      const fh = await open(file, 'wx', 0o600);
      try {
        await pipeline(body, hasher, createWriteStream('', { fd: fh.fd, autoClose: false, highWaterMark: 1024 * 1024 }));
        if (durable) await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      await rm(file, { force: true });
      throw err;
    }
    return { file, digest: hasher.digest() };
  };
  const place = async (file: string, name: string) => {
    const target = path(name);
    await mkdir(dirname(target), { recursive: true, mode: 0o700 });
    await rename(file, target);
    await fsyncDir(dirname(target));
  };
  /**
   * A blob goes under its content address without an fsync of its own (`flush` does them in one
   * batch). It replaces a file already there: one left by an interrupted backup may never have been
   * made durable, and this copy will be.
   */
  const placeBlob = async (file: string, digest: Digest) => {
    const target = path(blobName(digest.sha256));
    const created = await mkdir(dirname(target), { recursive: true, mode: 0o700 });
    await rename(file, target);
    // A new directory is an entry in its parent: that parent is fsynced too.
    const parents: string[] = [];
    if (created) for (let d = dirname(target); ; d = dirname(d)) {
      parents.push(dirname(d));
      if (d === created || d === base) break;
    }
    pending.add(target, ...parents);
  };
  return {
    where: base,
    async putFile(name, body) {
      const { file, digest } = await spool(body, true);
      await place(file, name);
      return digest;
    },
    async putBlobFile(source) {
      await regularFile(source);
      await mkdir(tmp, { recursive: true, mode: 0o700 });
      const file = tempName();
      let digest: Digest;
      try {
        // The kernel copies (no bytes through this process); a hashing thread then reads the copy from the page cache.
        await copyFile(source, file, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
        digest = await digestFile(file);
        await placeBlob(file, digest);
      } catch (err) {
        await rm(file, { force: true });
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !(await lstat(source).catch(() => null))) throw new AppError('ERR_NOT_FOUND', 'The blob is missing.');
        throw err;
      }
      return digest;
    },
    localPath: (name) => path(name),
    flush: () => pending.flush(),
    async openFile(name) {
      try {
        await stat(path(name));
      } catch {
        throw new AppError('ERR_NOT_FOUND', `${name} is missing`);
      }
      return createReadStream(path(name));
    },
    async *list(prefix) {
      const walk = async function* (dir: string, rel: string): AsyncGenerator<string> {
        let entries;
        try {
          entries = await readdir(dir, { withFileTypes: true });
        } catch {
          return;
        }
        for (const e of entries) {
          if (e.name.startsWith('.')) continue;
          const r = rel ? `${rel}/${e.name}` : e.name;
          if (e.isDirectory()) yield* walk(join(dir, e.name), r);
          else if (r.startsWith(prefix)) yield r;
        }
      };
      const top = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
      yield* walk(top ? path(top) : base, top);
    },
    async putBlob(openSource) {
      const { file, digest } = await spool(await openSource(), false);
      try {
        await placeBlob(file, digest);
      } catch (err) {
        await rm(file, { force: true });
        throw err;
      }
      return digest;
    },
    async remove(name) {
      await rm(path(name), { force: true });
    },
    async close() {},
  };
}

/** A bucket/prefix through a blob store (S3). */
export function storeArchive(store: BlobStore, where: string): Archive {
  const putFile = async (name: string, body: Readable): Promise<Digest> => {
    const hasher = new Hasher();
    const through = new PassThrough();
    const piping = pipeline(body, hasher, through);
    await Promise.all([store.put(name, through), piping]);
    return hasher.digest();
  };
  return {
    where,
    putFile,
    openFile: (name) => store.get(name),
    list: (prefix) => store.list(prefix),
    async putBlob(openSource) {
      // No rename on S3: hash first, then copy under the content address unless it is already there.
      const hasher = new Hasher();
      await pipeline(await openSource(), hasher, async function* (source: AsyncIterable<Buffer>) {
        for await (const _ of source) void _;
      });
      const digest = hasher.digest();
      const name = blobName(digest.sha256);
      const head = await store.head(name);
      if (!head || head.size !== digest.size) await store.put(name, await openSource(), { contentLength: digest.size });
      return digest;
    },
    remove: (name) => store.delete(name),
    // Each PUT is durable when S3 answers it.
    flush: async () => undefined,
    close: async () => store.close?.(),
  };
}
