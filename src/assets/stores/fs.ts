/**
 * The local-disk blob store (the embedded default): one file per object under `root`.
 *
 * Layout: key `a/b/c` is the file `<root>/a/b/c` (directories mode 0700, files 0600). In-progress
 * writes live in `<root>/.tmp/` (same filesystem, so the final `rename` is atomic; the leading dot
 * keeps it outside the key space). Durability follows the classic recipe: write the temp file,
 * fsync it, rename it over the target, fsync the directory (so a crash cannot leave a renamed but
 * empty file, or lose the rename).
 */
import { randomBytes } from 'node:crypto';
import { close as closeFd, constants, open as openFd, read as readFd } from 'node:fs';
import { mkdir, open, opendir, lstat, rename, rm, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { addAbortSignal, type Readable } from 'node:stream';
import { AppError, notFound } from '../../errors.js';
import type { BlobStore, BlobStoreFeature, ByteRange, PutOptions } from './types.js';
import {
  assertValidKey,
  assertValidLength,
  assertValidPrefix,
  assertValidRange,
  clampRange,
  isValidKey,
  lengthMismatch,
  toBytes,
} from './validation.js';

/**
 * Reads a whole file of at most `maxBytes` with the callback API (open, one read, close: no FileHandle
 * or stream objects, which cost more than a small file's bytes; issue 12, item 3). One read of up to
 * `maxBytes + 1` bytes: a regular file reads short only at its end, so a short read is the whole file
 * (were it ever not, the caller's authentication would refuse the truncated bytes, never serve them),
 * and a full one means the file is too long. The descriptor is closed without waiting for it.
 */
function readWhole(path: string, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    openFd(path, constants.O_RDONLY | constants.O_NOFOLLOW, (openErr, fd) => {
      if (openErr) return reject(openErr);
      const buf = Buffer.allocUnsafe(maxBytes + 1);
      readFd(fd, buf, 0, buf.length, 0, (readErr, bytesRead) => {
        closeFd(fd, () => undefined);
        if (readErr) return reject(readErr);
        if (bytesRead > maxBytes) return reject(new AppError('ERR_PAYLOAD_TOO_LARGE', 'The object is larger than this read allows.'));
        resolve(buf.subarray(0, bytesRead));
      });
    });
  });
}

/** Options for {@link createFsStore}. */
export interface FsStoreOptions {
  /** Directory holding the objects (created, mode 0700, if missing). Relative paths resolve against the cwd. */
  root: string;
  /** Clock for {@link FsBlobStore.sweepTemp} (default `Date.now`). */
  now?: () => number;
}

/** The fs store: a {@link BlobStore} plus crash recovery for its temp directory. */
export interface FsBlobStore extends BlobStore {
  readonly kind: 'fs';
  /** Absolute path of the store's root directory. */
  readonly root: string;
  /**
   * Removes temp files (left by a crash mid-put) last modified more than `olderThanMs` ago and
   * resolves with how many were removed. Pick a value above the longest legitimate upload, since a
   * live put's temp file is removed too if it is older.
   */
  sweepTemp(olderThanMs: number): Promise<number>;
}

const TEMP_DIR = '.tmp';
const TEMP_SUFFIX = '.part';
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

type Errno = NodeJS.ErrnoException;
const errno = (err: unknown): string | undefined => (err as Errno | null)?.code;

/** Wraps a filesystem failure so the path and OS message stay server-side (`cause`). */
function storageError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const code = errno(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new AppError('ERR_UNAVAILABLE', 'The blob store is out of space.', { cause: err });
  }
  return new AppError('ERR_INTERNAL', 'The blob store failed.', { cause: err });
}

function conflict(err: unknown): AppError {
  return new AppError('ERR_CONFLICT', 'The storage key collides with an existing key prefix.', { cause: err });
}

async function io<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw storageError(err);
  }
}

/** fsync a directory so entries created, renamed or removed in it survive a crash. */
async function syncDir(path: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (err) {
    // A concurrent delete may have pruned the directory; nothing left to make durable.
    if (errno(err) === 'ENOENT') return;
    throw storageError(err);
  }
  try {
    await io(handle.sync());
  } finally {
    await handle.close();
  }
}

/**
 * Creates the fs store, creating `root` and its temp directory if needed.
 *
 * Security: keys are validated against an allowlist grammar and the resulting path is re-checked
 * to lie under `root`; reads open with `O_NOFOLLOW`, so a symlink planted as an object is treated
 * as missing rather than followed. Objects are written owner-only (0600).
 */
export async function createFsStore(options: FsStoreOptions): Promise<FsBlobStore> {
  const root = resolve(options.root);
  const now = options.now ?? Date.now;
  const tempDir = join(root, TEMP_DIR);
  await io(mkdir(tempDir, { recursive: true, mode: DIR_MODE }));

  function pathOf(key: string): string {
    assertValidKey(key);
    const path = join(root, ...key.split('/'));
    // Defence in depth: the grammar already makes escaping impossible.
    if (!path.startsWith(root + sep)) throw new AppError('ERR_VALIDATION', 'The storage key is not valid.');
    return path;
  }

  async function commit(temp: string, target: string): Promise<void> {
    const dir = dirname(target);
    // Retries cover a concurrent delete pruning the directory between mkdir and rename.
    for (let attempt = 0; ; attempt++) {
      let created: string | undefined;
      try {
        created = await mkdir(dir, { recursive: true, mode: DIR_MODE });
      } catch (err) {
        throw errno(err) === 'ENOTDIR' || errno(err) === 'EEXIST' ? conflict(err) : storageError(err);
      }
      try {
        await rename(temp, target);
      } catch (err) {
        const code = errno(err);
        if (code === 'ENOENT' && attempt < 3) continue;
        throw code === 'EISDIR' || code === 'ENOTDIR' || code === 'ENOTEMPTY' || code === 'EEXIST'
          ? conflict(err)
          : storageError(err);
      }
      // New directories are entries in their parents: make each of those durable too.
      const stop = created === undefined ? dir : dirname(created);
      for (let d = dir; ; d = dirname(d)) {
        await syncDir(d);
        if (d === stop || d === root) break;
      }
      return;
    }
  }

  async function put(key: string, body: Readable, opts: PutOptions = {}): Promise<{ size: number }> {
    let target: string;
    try {
      target = pathOf(key);
      assertValidLength(opts.contentLength);
    } catch (err) {
      body.destroy();
      throw err;
    }
    const expected = opts.contentLength;
    // The loop below observes source errors through the stream's errored state; this listener only
    // keeps an error emitted while the temp file is being opened from crashing the process.
    body.on('error', () => undefined);
    const source = opts.signal ? addAbortSignal(opts.signal, body) : body;
    // O_EXCL with a random name: never follows or reuses an existing path in the temp dir.
    const temp = join(tempDir, randomBytes(16).toString('hex') + TEMP_SUFFIX);
    let handle: FileHandle | undefined;
    try {
      handle = await io(open(temp, 'wx', FILE_MODE));
      let size = 0;
      // Errors thrown by the source (or its abort signal) surface here unchanged.
      for await (const chunk of source) {
        const bytes = toBytes(chunk);
        size += bytes.byteLength;
        if (expected !== undefined && size > expected) throw lengthMismatch(expected);
        let offset = 0;
        while (offset < bytes.byteLength) {
          const { bytesWritten } = await io(handle.write(bytes, offset, bytes.byteLength - offset));
          offset += bytesWritten;
        }
      }
      if (expected !== undefined && size !== expected) throw lengthMismatch(expected);
      await io(handle.sync());
      const h = handle;
      handle = undefined;
      await io(h.close());
      await commit(temp, target);
      return { size };
    } catch (err) {
      body.destroy();
      await handle?.close().catch(() => undefined);
      await rm(temp, { force: true }).catch(() => undefined);
      throw err;
    }
  }

  async function get(key: string, range?: ByteRange): Promise<Readable> {
    const path = pathOf(key);
    if (range) assertValidRange(range);
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'EISDIR') throw notFound('blob');
      throw storageError(err);
    }
    try {
      const stat = await io(handle.stat());
      if (!stat.isFile()) throw notFound('blob');
      // The descriptor pins this inode: a concurrent put renames a new file over the path without
      // disturbing this read, so the reader gets one complete version.
      return handle.createReadStream(range ? clampRange(range, stat.size) : {});
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  async function read(key: string, maxBytes: number): Promise<Buffer> {
    const path = pathOf(key);
    assertValidLength(maxBytes);
    try {
      return await readWhole(path, maxBytes);
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'EISDIR') throw notFound('blob');
      throw storageError(err);
    }
  }

  async function head(key: string): Promise<{ size: number } | null> {
    const path = pathOf(key);
    try {
      const stat = await lstat(path);
      return stat.isFile() ? { size: stat.size } : null;
    } catch (err) {
      if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return null;
      throw storageError(err);
    }
  }

  async function del(key: string): Promise<void> {
    const path = pathOf(key);
    try {
      await unlink(path);
    } catch (err) {
      const code = errno(err);
      // Missing, or a directory (only a prefix of other keys): either way no such object.
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'EPERM') return;
      throw storageError(err);
    }
    // Prune now-empty directories so deleted assets do not leave an inode trail. rmdir refuses a
    // non-empty directory, so this never removes another object; put retries if it races us.
    let dir = dirname(path);
    while (dir !== root) {
      try {
        await rmdir(dir);
      } catch {
        break;
      }
      dir = dirname(dir);
    }
    await syncDir(dir);
  }

  async function* walk(dirKey: string, prefix: string): AsyncGenerator<string> {
    const dirPath = dirKey === '' ? root : join(root, ...dirKey.split('/'));
    let dir;
    try {
      dir = await opendir(dirPath);
    } catch (err) {
      if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return;
      throw storageError(err);
    }
    for await (const entry of dir) {
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      // Skips `.tmp`, symlinks and anything not created through this store.
      if (!isValidKey(key)) continue;
      if (entry.isFile()) {
        if (key.startsWith(prefix)) yield key;
      } else if (entry.isDirectory() && (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`))) {
        yield* walk(key, prefix);
      }
    }
  }

  async function* list(prefix: string): AsyncGenerator<string> {
    assertValidPrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    yield* walk(slash === -1 ? '' : prefix.slice(0, slash), prefix);
  }

  async function sweepTemp(olderThanMs: number): Promise<number> {
    if (!Number.isFinite(olderThanMs) || olderThanMs < 0) {
      throw new AppError('ERR_VALIDATION', 'The temp file age is not valid.');
    }
    const cutoff = now() - olderThanMs;
    let removed = 0;
    const dir = await io(opendir(tempDir));
    for await (const entry of dir) {
      if (!entry.isFile() || !entry.name.endsWith(TEMP_SUFFIX)) continue;
      const path = join(tempDir, entry.name);
      try {
        const stat = await lstat(path);
        if (stat.mtimeMs >= cutoff) continue;
        await unlink(path);
        removed++;
      } catch (err) {
        // The put finished (renamed its file away) or another sweeper got there first.
        if (errno(err) !== 'ENOENT') throw storageError(err);
      }
    }
    return removed;
  }

  return {
    kind: 'fs',
    root,
    supports: (feature: BlobStoreFeature) => feature === 'range' || feature === 'sweep-temp' || feature === 'local-files',
    filePath: pathOf,
    tempPath: () => join(tempDir, randomBytes(16).toString('hex') + TEMP_SUFFIX),
    put,
    get,
    read,
    head,
    delete: del,
    list,
    sweepTemp,
  };
}
