/**
 * Exclusive lock on the data directory.
 *
 * PGlite lets two processes open the same data dir without complaint and then silently loses writes
 * (shared/DEPENDENCY-NOTES.md), so the second process must fail fast instead. The lock is a file created
 * with O_EXCL holding the owner's pid; a lock whose pid no longer runs (the owner was SIGKILLed) is stale
 * and is taken over, so a crash never needs manual cleanup.
 */
import { openSync, writeSync, closeSync, readFileSync, unlinkSync, mkdirSync, fsyncSync, renameSync, linkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';

export class DataDirLockedError extends Error {
  constructor(readonly dataDir: string, readonly pid: number) {
    super(`data dir ${dataDir} is already in use by process ${pid} (only one Obscura process may open an embedded data dir; use PostgreSQL via DATABASE_URL to run several)`);
    this.name = 'DataDirLockedError';
  }
}

/**
 * A data dir that other local users can read or enter: the embedded database files, the local blobs'
 * directory layout and (without OBSCURA_MASTER_KEY) the master key file would be theirs to copy.
 */
export class DataDirPermissionsError extends Error {
  constructor(readonly dataDir: string, readonly mode: number) {
    super(
      `data dir ${dataDir} is accessible to other users (mode ${mode.toString(8).padStart(4, '0')}); the embedded database and keys must be private to the user running Obscura. Fix it with: chmod 700 ${dataDir}`,
    );
    this.name = 'DataDirPermissionsError';
  }
}

/** The permission bits of `dataDir` when group or others have any access, else null (or when it does not exist). */
export function widePermissions(dataDir: string): number | null {
  try {
    const mode = statSync(dataDir).mode & 0o777;
    return mode & 0o077 ? mode : null;
  } catch {
    return null;
  }
}

export interface DataDirLock {
  readonly path: string;
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else — still alive.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the lock or throws `DataDirLockedError`. Creates the data dir (mode 0700) if needed, and
 * refuses one that group or others can access (`DataDirPermissionsError`, issue 9 item 6) rather than
 * silently keeping the database readable by every local user.
 */
export function lockDataDir(dataDir: string): DataDirLock {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const wide = widePermissions(dataDir);
  if (wide !== null) throw new DataDirPermissionsError(dataDir, wide);
  const path = join(dataDir, 'obscura.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
      fsyncSync(fd);
      closeSync(fd);
      let released = false;
      return {
        path,
        release() {
          if (released) return;
          released = true;
          try {
            const owner = JSON.parse(readFileSync(path, 'utf8')) as { pid?: number };
            if (owner.pid === process.pid) unlinkSync(path);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let pid = NaN;
      try {
        pid = Number((JSON.parse(readFileSync(path, 'utf8')) as { pid?: number }).pid);
      } catch {
        // A lock file being written right now, or a torn write after a crash: treat an unreadable lock
        // younger than a moment as held, older as stale.
      }
      // A recycled pid equal to ours (e.g. pid 1 in a restarted container) cannot be a live owner.
      if (Number.isInteger(pid) && pid !== process.pid && alive(pid)) throw new DataDirLockedError(dataDir, pid);
      // Break the stale lock by renaming it aside (atomic: of two racing processes only one moves a
      // given file), then re-check what was moved: if it turns out to be a live owner's fresh lock,
      // put it back and give up.
      const aside = `${path}.stale.${process.pid}`;
      try {
        renameSync(path, aside);
      } catch {
        continue;
      }
      let movedPid = NaN;
      try {
        movedPid = Number((JSON.parse(readFileSync(aside, 'utf8')) as { pid?: number }).pid);
      } catch {
        /* unreadable: stale */
      }
      if (Number.isInteger(movedPid) && movedPid !== process.pid && alive(movedPid)) {
        try {
          linkSync(aside, path);
        } finally {
          unlinkSync(aside);
        }
        throw new DataDirLockedError(dataDir, movedPid);
      }
      unlinkSync(aside);
    }
  }
  throw new DataDirLockedError(dataDir, NaN);
}
