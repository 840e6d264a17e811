/**
 * The main thread's handle on the embedded database, which runs in a worker thread
 * (src/db/pglite-worker.ts) so that PGlite's synchronous WASM never blocks the HTTP event loop
 * (issue 12, item 1).
 *
 * It implements exactly the part of PGlite's API that our code and its adapters call:
 * `query` (kysely-pglite-dialect, pg-boss's `fromPglite`), `exec` (pg-boss's multi-statement DDL and
 * `locked()` blocks), `listen`/`unlisten` (pg-boss's in-process LISTEN/NOTIFY, delivered after
 * commit), `close`, `closed`/`ready`, and `dumpDataDir` (a tarball of the data dir, for backups).
 *
 * - Errors cross the thread with their PostgreSQL fields (code, detail, constraint, table, column,
 *   schema, severity, hint, position, ...), so `err.code === '23505'` works as with PGlite in
 *   process and node-postgres. Parameters are never copied into an error (they may be secrets).
 * - Values keep their types (structured clone): Date, bigint, JSON objects; bytea comes back as a
 *   Buffer (as node-postgres gives it), zero-copy over the transferred bytes.
 * - Serialisation is unchanged: callers (Kysely's single-connection queue) decide the order; PGlite
 *   itself runs one statement at a time.
 * - A worker that dies (out of memory, a WASM abort) fails every pending and later call with
 *   SQLSTATE 08006 (connection failure), which src/db/unavailable.ts maps to the 503 "database
 *   unavailable" answer, and calls `onFatal` (src/db/database.ts: log, then exit non-zero so that a
 *   supervisor restarts the process; the data-dir lock is stale then and taken over on restart).
 * - The worker keeps the process alive only while a call is pending: an idle database never holds
 *   up the exit of a CLI command.
 */
import { Worker } from 'node:worker_threads';
import type { Results } from '@electric-sql/pglite';
import type { PgliteWorkerData, WorkerRequest } from './pglite-worker.js';

/** SQLSTATE connection_failure: the database went away (see src/db/unavailable.ts). */
export const WORKER_STOPPED_CODE = '08006';

/** The embedded database's thread stopped: every call fails with this (SQLSTATE 08006). */
export class DatabaseWorkerError extends Error {
  readonly code = WORKER_STOPPED_CODE;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DatabaseWorkerError';
  }
}

export interface PGliteProxyOptions {
  /** PGlite's initial WASM memory in bytes (PGlite's default: 128 MiB, reserved but mostly untouched). */
  initialMemory?: number;
  /** Extra postgresql.conf lines (e.g. `shared_buffers = 16MB`). */
  postgresqlconf?: string[];
  /** PostgreSQL settings for this start (`-c name=value`; e.g. `{ shared_buffers: '16MB' }`). */
  settings?: Record<string, string>;
  /** V8 heap limit of the worker thread in MiB (Node's default when unset). */
  heapLimitMb?: number;
  /** V8 young-generation limit of the worker thread in MiB (Node's default when unset). */
  youngGenerationMb?: number;
  /** Called once when the worker dies unexpectedly (not on `close()`). */
  onFatal?: (err: DatabaseWorkerError) => void;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: unknown) => void };
type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: Record<string, unknown> };
type Event = { type: 'ready' } | { type: 'failed'; error: Record<string, unknown> } | { type: 'notify'; channel: string; payload: string };

const BYTEA = 17;

/** An error from the worker, rebuilt with its PostgreSQL fields and a stack from this side. */
function rebuildError(data: Record<string, unknown>): Error {
  const err = new Error(typeof data.message === 'string' ? data.message : 'database error');
  for (const [k, v] of Object.entries(data)) if (k !== 'message') (err as unknown as Record<string, unknown>)[k] = v;
  return err;
}

/** Copies a view into a larger buffer: structured clone would carry the whole buffer (e.g. Buffer's pool). */
function ownParam(v: unknown): unknown {
  return v instanceof Uint8Array && (v.byteOffset !== 0 || v.byteLength !== v.buffer.byteLength) ? new Uint8Array(v) : v;
}

/** bytea as Buffer (as node-postgres returns it), over the same bytes. */
function withBuffers<T>(r: Results<T>): Results<T> {
  for (const f of r.fields) {
    if (f.dataTypeID !== BYTEA) continue;
    for (const row of r.rows as Record<string, unknown>[]) {
      const v = row[f.name];
      if (v instanceof Uint8Array && !Buffer.isBuffer(v)) row[f.name] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    }
  }
  return r;
}

/** PGlite in a worker thread, behind the subset of its API that Obscura uses. */
export class PGliteProxy {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Map<string, Set<(payload: string) => void>>();
  readonly #onFatal: ((err: DatabaseWorkerError) => void) | undefined;
  #nextId = 1;
  #dead: Error | null = null;
  #closing: Promise<void> | null = null;
  #closed = false;

  private constructor(worker: Worker, onFatal: PGliteProxyOptions['onFatal']) {
    this.#worker = worker;
    this.#onFatal = onFatal;
  }

  /** Starts the worker and opens (or creates: initdb) the database at `path`. */
  static create(path: string, opts: PGliteProxyOptions = {}): Promise<PGliteProxy> {
    const data: PgliteWorkerData = {
      path,
      options: { ...(opts.initialMemory ? { initialMemory: opts.initialMemory } : {}), ...(opts.postgresqlconf ? { postgresqlconf: opts.postgresqlconf } : {}) },
      ...(opts.settings ? { settings: opts.settings } : {}),
    };
    const resourceLimits = { ...(opts.heapLimitMb ? { maxOldGenerationSizeMb: opts.heapLimitMb } : {}), ...(opts.youngGenerationMb ? { maxYoungGenerationSizeMb: opts.youngGenerationMb } : {}) };
    const worker = new Worker(new URL('./pglite-worker.js', import.meta.url), {
      workerData: data,
      ...(Object.keys(resourceLimits).length ? { resourceLimits } : {}),
    });
    const proxy = new PGliteProxy(worker, opts.onFatal);
    return new Promise((resolve, reject) => {
      let started = false;
      const early = (err: unknown) => {
        if (started) return;
        started = true;
        void worker.terminate();
        reject(err);
      };
      worker.on('message', (m: Reply | Event) => {
        if ('id' in m) return proxy.#settle(m);
        if (m.type === 'notify') return proxy.#notify(m.channel, m.payload);
        if (started) return;
        if (m.type === 'failed') return early(rebuildError(m.error));
        started = true;
        worker.unref(); // idle: see the module comment
        resolve(proxy);
      });
      worker.on('error', (err) => (started ? proxy.#die(`the embedded database thread failed: ${err.message}`, err) : early(err)));
      worker.on('exit', (code) => (started ? proxy.#die(`the embedded database thread exited (code ${code})`) : early(new DatabaseWorkerError(`the embedded database thread exited while starting (code ${code})`))));
    });
  }

  /** Runs one statement (extended protocol, `$1` parameters). */
  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<Results<T>> {
    return withBuffers((await this.#call({ op: 'query', sql, params: params.map(ownParam) })) as Results<T>);
  }

  /** Runs several statements without parameters (simple protocol); one result per statement. */
  async exec(sql: string): Promise<Array<Results>> {
    return ((await this.#call({ op: 'exec', sql })) as Results[]).map(withBuffers);
  }

  /** LISTENs on `channel`; `callback` gets each payload after the notifying transaction commits. */
  async listen(channel: string, callback: (payload: string) => void): Promise<() => Promise<void>> {
    let set = this.#listeners.get(channel);
    const first = !set;
    if (!set) this.#listeners.set(channel, (set = new Set()));
    set.add(callback);
    if (first) {
      try {
        await this.#call({ op: 'listen', channel });
      } catch (err) {
        set.delete(callback);
        if (set.size === 0) this.#listeners.delete(channel);
        throw err;
      }
    }
    return () => this.unlisten(channel, callback);
  }

  /** Stops `callback` (or every callback) on `channel`; UNLISTENs when none is left. */
  async unlisten(channel: string, callback?: (payload: string) => void): Promise<void> {
    const set = this.#listeners.get(channel);
    if (!set) return;
    if (callback) set.delete(callback);
    else set.clear();
    if (set.size > 0) return;
    this.#listeners.delete(channel);
    if (!this.#dead && !this.#closing) await this.#call({ op: 'unlisten', channel });
  }

  /** A tarball of the data directory (`compression` 'none' → .tar, 'gzip' → .tgz), from a consistent point. */
  async dumpDataDir(compression: 'none' | 'gzip' | 'auto' = 'none'): Promise<Uint8Array> {
    return (await this.#call({ op: 'dump', compression })) as Uint8Array;
  }

  /** True once `close()` finished or the worker died. */
  get closed(): boolean {
    return this.#closed || this.#dead !== null;
  }

  get ready(): boolean {
    return !this.closed && !this.#closing;
  }

  /** The worker's thread id (diagnostics). */
  get threadId(): number {
    return this.#worker.threadId;
  }

  /** Closes PGlite cleanly (a checkpoint: the next start needs no recovery) and ends the thread. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    if (this.#dead) {
      this.#closed = true;
      return (this.#closing = Promise.resolve());
    }
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    this.#closing = (async () => {
      try {
        // A thread that ends before answering has nothing left to close.
        await this.#call({ op: 'close' }, true).catch((err: unknown) => {
          if (!(err instanceof DatabaseWorkerError)) throw err;
        });
      } finally {
        this.#closed = true;
        // The worker ends by itself once its port is closed; a stuck one is stopped.
        const timer = setTimeout(() => void this.#worker.terminate(), 5000);
        await exited;
        clearTimeout(timer);
      }
    })();
    return this.#closing;
  }

  #call(req: WorkerRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never, closing = false): Promise<unknown> {
    if (this.#dead) return Promise.reject(this.#dead);
    if ((this.#closing || this.#closed) && !closing) return Promise.reject(new Error('PGlite is closed'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      if (this.#pending.size === 1) this.#worker.ref();
      try {
        this.#worker.postMessage({ ...req, id });
      } catch (err) {
        // A parameter structured clone cannot carry (a function, a class instance with private state).
        this.#pending.delete(id);
        if (this.#pending.size === 0) this.#worker.unref();
        reject(err);
      }
    });
  }

  #settle(m: Reply): void {
    const p = this.#pending.get(m.id);
    if (!p) return;
    this.#pending.delete(m.id);
    if (this.#pending.size === 0) this.#worker.unref();
    if (m.ok) p.resolve(m.value);
    else p.reject(rebuildError(m.error));
  }

  #notify(channel: string, payload: string): void {
    // As PGlite does in process: each callback on its own microtask.
    for (const cb of this.#listeners.get(channel) ?? []) queueMicrotask(() => cb(payload));
  }

  #die(message: string, cause?: unknown): void {
    if (this.#dead) return;
    if (this.#closing) {
      // Exiting while closing is the normal end; anything still pending cannot be answered.
      this.#closed = true;
      for (const p of this.#pending.values()) p.reject(new DatabaseWorkerError(message, { cause }));
      this.#pending.clear();
      return;
    }
    const err = new DatabaseWorkerError(message, { cause });
    this.#dead = err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    this.#listeners.clear();
    this.#onFatal?.(err);
  }
}
