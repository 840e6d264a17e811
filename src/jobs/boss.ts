/**
 * pg-boss on our database: one instance per database handle per process, shared (reference-counted)
 * by the API routes that enqueue and the workers that run.
 *
 * - PostgreSQL: pg-boss runs its statements on the handle's pool (as the same non-superuser role,
 *   outside any tenant transaction) and holds one pooled connection for LISTEN, so an idle worker
 *   wakes the moment a job is created instead of waiting out its polling interval.
 * - PGlite (in its worker thread, reached through src/db/pglite-proxy.ts, which `fromPglite` adapts
 *   like a PGlite instance): there is exactly one connection, and Kysely's PGlite driver serialises access to it with
 *   its own queue. pg-boss's `fromPglite` adapter calls the PGlite instance directly, so its statements
 *   would land INSIDE whatever Kysely transaction is open at that moment: measured here, every tenant
 *   transaction (`SET LOCAL ROLE obscura_app`) interleaved with pg-boss polling failed, and a worker
 *   ran 199 handlers for 100 jobs. So every pg-boss statement first takes the Kysely connection
 *   (`db.connection().execute`), i.e. waits its turn behind open transactions, and only then talks to
 *   PGlite. Code inside a transaction must therefore never call pg-boss without passing that
 *   transaction (it would wait for itself); we only enqueue after commit.
 *
 * Queue entries carry ids only (`{ org, id }`): no operations, no URLs, no credentials.
 */
import { PgBoss, fromPglite, type Db as IDatabase, type ConstructorOptions } from 'pg-boss';
import type pg from 'pg';
import type { DatabaseHandle } from '../db/database.js';

/** Queue names. */
export const QUEUES = Object.freeze({
  process: 'obscura_process',
  processDead: 'obscura_process_dead',
  /** Video jobs: their own workers and concurrency, so long transcodes never hold image workers. */
  processVideo: 'obscura_process_video',
  processVideoDead: 'obscura_process_video_dead',
  webhook: 'obscura_webhook',
  webhookDead: 'obscura_webhook_dead',
  /** Tenant exports (src/backup/export.ts): writing an archive, and expiring it (a job delayed to its expiry). */
  orgExport: 'obscura_org_export',
  orgExportDead: 'obscura_org_export_dead',
  /**
   * Periodic maintenance (retention, sweeps, erasure resumption; src/jobs/schedules.ts). Policy
   * `exclusive`: at most one maintenance job queued or running across the whole fleet.
   */
  maintenance: 'obscura_maintenance',
});

/** Tuning shared by every user of the instance. */
export interface BossOptions {
  /** How often expired and heartbeat-less jobs are retried, in seconds (>= 1). Default 30. */
  monitorIntervalSeconds?: number;
  /**
   * Run pg-boss's timekeeper in this process (cron schedules fire from here). Only processes that run
   * maintenance ask for it (roles `all` and `worker`); the first acquire of a process decides.
   */
  schedule?: boolean;
}

/** A started pg-boss plus its release function. */
export interface BossHandle {
  readonly boss: PgBoss;
  release(): Promise<void>;
}

interface Shared {
  started: Promise<PgBoss>;
  refs: number;
  schedule: boolean;
}

const instances = new WeakMap<DatabaseHandle, Shared>();

/** The PGlite adapter that queues behind Kysely's single connection (see the module comment). */
function serialisedPglite(db: DatabaseHandle): IDatabase {
  const inner = fromPglite(db.pglite!);
  const adapter: IDatabase = {
    executeSql: (text: string, values?: unknown[]) => db.system.connection().execute(() => inner.executeSql(text, values)),
  };
  // Notifications are delivered in process (from the database thread, after commit). The LISTEN
  // and UNLISTEN statements themselves take their turn on the connection like any other: run inside
  // someone's open transaction, a LISTEN would be lost with its rollback.
  const listen = inner.listen;
  if (listen) {
    adapter.listen = async (channel, onNotification, onReconnect) => {
      // onReconnect (a catch-up fetch) runs after the connection is handed back, never inside it.
      const sub = await db.system.connection().execute(() => listen(channel, onNotification, () => {}));
      onReconnect();
      return { close: () => db.system.connection().execute(() => sub.close()) };
    };
  }
  return adapter;
}

/** The pool adapter for PostgreSQL, with LISTEN on one dedicated pooled connection. */
function pooled(pool: pg.Pool): IDatabase {
  return {
    executeSql: (text, values) => pool.query(text, values as unknown[] | undefined) as unknown as Promise<{ rows: unknown[] }>,
    async listen(channel, onNotification, onReconnect) {
      const client = await pool.connect();
      const onMessage = (m: pg.Notification): void => {
        if (m.channel === channel) onNotification(m.payload ?? '');
      };
      // A broken listener connection only costs latency: polling (see pollingIntervalSeconds) still
      // finds every job. Drop the client so the pool replaces it.
      client.on('error', () => {});
      client.on('notification', onMessage);
      await client.query(`LISTEN "${channel.replace(/"/g, '""')}"`);
      onReconnect();
      return {
        async close() {
          client.off('notification', onMessage);
          await client.query('UNLISTEN *').catch(() => undefined);
          client.release();
        },
      };
    },
  };
}

async function create(db: DatabaseHandle, opts: BossOptions): Promise<PgBoss> {
  const monitor = opts.monitorIntervalSeconds ?? 30;
  const common: ConstructorOptions = {
    schema: 'pgboss',
    useListenNotify: true,
    schedule: opts.schedule === true,
    // The cron pass runs on whichever node claims it first (a row lock in pgboss), once per interval.
    cronMonitorIntervalSeconds: Math.min(30, Math.max(1, monitor)),
    registerInstance: false,
    superviseIntervalSeconds: monitor,
    monitorIntervalSeconds: monitor,
    openTelemetry: { enabled: false },
  };
  const boss =
    db.kind === 'pglite'
      ? new PgBoss({ ...common, db: serialisedPglite(db), backend: 'pglite' })
      : // The schema owner creates `pgboss` for the runtime role (src/db/roles.ts), which has no right
        // to create schemas in the database (CREATE SCHEMA IF NOT EXISTS checks that right first).
        new PgBoss({ ...common, db: pooled(db.pool!), createSchema: false });
  // pg-boss reports background failures (a poll that hit a restarting database) as events; without a
  // listener an 'error' event would crash the process. They are retried by pg-boss itself.
  boss.on('error', () => {});
  boss.on('warning', () => {});
  await boss.start();
  await ensureQueues(boss);
  return boss;
}

async function ensureQueues(boss: PgBoss): Promise<void> {
  const existing = new Set((await boss.getQueues()).map((q) => q.name));
  const want: Array<[string, Record<string, unknown>]> = [
    [QUEUES.processDead, { notify: true }],
    [QUEUES.process, { notify: true, deadLetter: QUEUES.processDead }],
    [QUEUES.processVideoDead, { notify: true }],
    [QUEUES.processVideo, { notify: true, deadLetter: QUEUES.processVideoDead }],
    [QUEUES.webhookDead, { notify: true }],
    [QUEUES.webhook, { notify: true, deadLetter: QUEUES.webhookDead }],
    [QUEUES.orgExportDead, { notify: true }],
    [QUEUES.orgExport, { notify: true, deadLetter: QUEUES.orgExportDead }],
    [QUEUES.maintenance, { notify: true, policy: 'exclusive' }],
  ];
  for (const [name, options] of want) {
    if (existing.has(name)) continue;
    try {
      await boss.createQueue(name, options);
    } catch (err) {
      // Another node created it between our read and our create.
      if (!(await boss.getQueue(name))) throw err;
    }
  }
}

/**
 * Returns the process-wide pg-boss for `db`, starting it on first use. Call `release()` once per
 * acquire; the last release stops it (waiting for running handlers up to `stopTimeoutMs`).
 */
export async function acquireBoss(db: DatabaseHandle, opts: BossOptions = {}): Promise<BossHandle> {
  let shared = instances.get(db);
  if (!shared) {
    const s: Shared = { refs: 0, started: create(db, opts), schedule: opts.schedule === true };
    instances.set(db, s);
    s.started.catch(() => {
      if (instances.get(db) === s) instances.delete(db);
    });
    shared = s;
  }
  // A programming error, not a runtime condition: schedules would silently never fire.
  if (opts.schedule && !shared.schedule) throw new Error('pg-boss was started in this process without scheduling; start maintenance before the first other use of the queue');
  shared.refs += 1;
  const s = shared;
  let boss: PgBoss;
  try {
    boss = await s.started;
  } catch (err) {
    s.refs -= 1;
    throw err;
  }
  let released = false;
  return {
    boss,
    async release() {
      if (released) return;
      released = true;
      s.refs -= 1;
      if (s.refs > 0) return;
      if (instances.get(db) === s) instances.delete(db);
      await boss.stop({ graceful: true, timeout: 10_000, close: true });
    },
  };
}
