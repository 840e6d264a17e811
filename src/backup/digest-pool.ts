/**
 * SHA-256 of local files on worker threads (digest-worker.ts), as many as the machine has cores (at
 * most 4): the backup and the restore hash every blob they copy, and on the main thread those hashes
 * ran one after another while the kernel copies waited (docs/performance.md, "Backups, after"). The
 * threads start on first use and do not keep the process alive when idle. node:crypto does the
 * hashing; nothing here is cryptography of our own.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/** Size and SHA-256 (hex), as archive.ts's `Digest`. */
interface Digest {
  size: number;
  sha256: string;
}

interface Slot {
  worker: Worker;
  busy: number;
}

const pending = new Map<number, { resolve: (d: Digest) => void; reject: (e: Error) => void; slot: Slot }>();
let slots: Slot[] | undefined;
let nextId = 1;

function start(): Slot[] {
  const n = Math.max(1, Math.min(4, availableParallelism()));
  return Array.from({ length: n }, () => {
    const slot: Slot = { worker: new Worker(new URL('./digest-worker.js', import.meta.url)), busy: 0 };
    slot.worker.on('message', (m: { id: number; size?: number; sha256?: string; error?: { code?: string; message: string } }) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (--slot.busy === 0) slot.worker.unref();
      if (m.error) p.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
      else p.resolve({ size: m.size!, sha256: m.sha256! });
    });
    // A thread that dies fails what it had; the next call starts a fresh pool.
    const fail = (err: Error) => {
      for (const [id, p] of pending) if (p.slot === slot) (pending.delete(id), p.reject(err));
      slots = undefined;
    };
    slot.worker.on('error', fail);
    slot.worker.on('exit', (code) => code !== 0 && fail(new Error(`the digest thread exited (code ${code})`)));
    // After the listeners: adding a 'message' listener refs the worker again.
    slot.worker.unref();
    return slot;
  });
}

/** The size and SHA-256 of the file at `path`, computed on a worker thread (errors keep their `code`, e.g. ENOENT). */
export function digestFileOffThread(path: string): Promise<Digest> {
  slots ??= start();
  const slot = slots.reduce((a, b) => (b.busy < a.busy ? b : a));
  const id = nextId++;
  if (slot.busy++ === 0) slot.worker.ref();
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, slot });
    slot.worker.postMessage({ id, path });
  });
}
