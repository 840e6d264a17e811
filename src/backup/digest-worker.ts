/**
 * A thread that hashes files for backups and restores (digest-pool.ts): SHA-256 of 1 GiB is about a
 * second of a core even with SHA-NI, and on the main thread it ran one file at a time behind the
 * kernel copies. Here each thread hashes one file at a time, reading it (from the page cache, just
 * after its copy) in 1 MiB chunks with blocking reads, which block only this thread.
 *
 * Protocol: `{ id, path }` gets `{ id, size, sha256 }` or `{ id, error: { code, message } }`.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

const chunk = Buffer.allocUnsafe(1024 * 1024);

parentPort!.on('message', ({ id, path }: { id: number; path: string }) => {
  try {
    const fd = openSync(path, 'r');
    try {
      const hash = createHash('sha256');
      let size = 0;
      for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; size += n) hash.update(chunk.subarray(0, n));
      parentPort!.postMessage({ id, size, sha256: hash.digest('hex') });
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    parentPort!.postMessage({ id, error: { code: e.code, message: e.message } });
  }
});
