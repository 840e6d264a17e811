/**
 * The embedded database's thread: PGlite (synchronous WASM PostgreSQL) runs here, in a
 * `worker_thread`, so a slow statement stalls only this thread and never the HTTP event loop
 * (issue 12, item 1). The main thread reaches it only through this thread's MessagePort
 * (src/db/pglite-proxy.ts): nothing listens on a socket, so no other local user can connect.
 *
 * Protocol (structured clone, so Date, Uint8Array, bigint and plain objects keep their types):
 * requests `{ id, op, ... }` get exactly one `{ id, ok: true, value }` or `{ id, ok: false, error }`;
 * `{ type: 'notify', channel, payload }` carries LISTEN notifications; `{ type: 'ready' }` or
 * `{ type: 'failed', error }` answers the start.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite, type PGliteOptions, type Results } from '@electric-sql/pglite';

/** What the proxy passes as `workerData`. */
export interface PgliteWorkerData {
  /** The PGlite directory (`<dataDir>/db`). */
  path: string;
  options?: Pick<PGliteOptions, 'initialMemory'> & { postgresqlconf?: string[] };
  /** Server settings passed on PostgreSQL's command line (`-c name=value`), after PGlite's own start parameters. */
  settings?: Record<string, string>;
}

/** One request from the proxy. */
export type WorkerRequest =
  | { id: number; op: 'query'; sql: string; params: unknown[] }
  | { id: number; op: 'exec'; sql: string }
  | { id: number; op: 'listen'; channel: string }
  | { id: number; op: 'unlisten'; channel: string }
  | { id: number; op: 'dump'; compression: 'none' | 'gzip' | 'auto' }
  | { id: number; op: 'close' };

/** The PostgreSQL fields of an error that cross the thread (message and name too); never the parameters. */
export const ERROR_FIELDS = ['name', 'message', 'code', 'severity', 'detail', 'hint', 'position', 'internalPosition', 'internalQuery', 'where', 'schema', 'table', 'column', 'dataType', 'constraint', 'file', 'line', 'routine'] as const;

/** An error as plain data (structured clone would drop every field but name and message). */
export function errorData(err: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (err && typeof err === 'object') {
    for (const k of ERROR_FIELDS) {
      const v = (err as Record<string, unknown>)[k];
      if (typeof v === 'string' || typeof v === 'number') out[k] = v;
    }
  } else {
    out.message = String(err);
  }
  return out;
}

const BYTEA = 17;

/**
 * bytea values as their own exact-size arrays: a view into a larger buffer would be cloned with the
 * whole buffer behind it.
 */
function ownBuffers(r: Results): Results {
  for (const f of r.fields) {
    if (f.dataTypeID !== BYTEA) continue;
    for (const row of r.rows as Record<string, unknown>[]) {
      const v = row[f.name];
      if (v instanceof Uint8Array && v.byteLength !== v.buffer.byteLength) row[f.name] = v.slice();
    }
  }
  // A Blob (COPY TO) cannot be used by the callers we have; leave it out rather than fail the clone.
  return { rows: r.rows, fields: r.fields, ...(r.affectedRows === undefined ? {} : { affectedRows: r.affectedRows }) };
}

async function main(): Promise<void> {
  const port = parentPort!;
  const data = workerData as PgliteWorkerData;
  let db: PGlite;
  try {
    // Command-line settings win over the data dir's postgresql.conf and leave the file as initdb wrote it.
    const settings = Object.entries(data.settings ?? {}).flatMap(([name, value]) => ['-c', `${name}=${value}`]);
    db = await PGlite.create(data.path, { ...data.options, ...(settings.length ? { startParams: [...PGlite.defaultStartParams, ...settings] } : {}) });
  } catch (err) {
    port.postMessage({ type: 'failed', error: errorData(err) });
    return;
  }
  const unlisten = new Map<string, () => Promise<void>>();
  const handle = async (req: WorkerRequest): Promise<unknown> => {
    switch (req.op) {
      case 'query':
        return ownBuffers(await db.query(req.sql, req.params));
      case 'exec':
        return (await db.exec(req.sql)).map(ownBuffers);
      case 'listen': {
        if (unlisten.has(req.channel)) return undefined;
        const channel = req.channel;
        unlisten.set(channel, await db.listen(channel, (payload) => port.postMessage({ type: 'notify', channel, payload })));
        return undefined;
      }
      case 'unlisten': {
        const stop = unlisten.get(req.channel);
        unlisten.delete(req.channel);
        await stop?.();
        return undefined;
      }
      case 'dump': {
        const file = await db.dumpDataDir(req.compression);
        return new Uint8Array(await file.arrayBuffer());
      }
      case 'close':
        // A clean close checkpoints, so the next start needs no recovery.
        if (!db.closed) await db.close();
        return undefined;
    }
  };
  port.on('message', (req: WorkerRequest) => {
    handle(req).then(
      (value) => {
        try {
          if (value instanceof Uint8Array) port.postMessage({ id: req.id, ok: true, value }, [value.buffer as ArrayBuffer]);
          else port.postMessage({ id: req.id, ok: true, value });
        } catch (err) {
          // A value structured clone cannot carry: the caller gets an error, not silence.
          port.postMessage({ id: req.id, ok: false, error: errorData(err) });
        }
        if (req.op === 'close') port.close();
      },
      (err: unknown) => port.postMessage({ id: req.id, ok: false, error: errorData(err) }),
    );
  });
  port.postMessage({ type: 'ready' });
}

await main();
