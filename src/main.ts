/**
 * The composition root: load config, build the adapters (data-dir lock, database, master key), build
 * the app, listen, and shut down cleanly on SIGINT/SIGTERM.
 */
import { chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import type { BlobStore } from './assets/stores/types.js';
import { openStore } from './assets/stores/factory.js';
import { loadConfig, type Config } from './config/index.js';
import { ConfigError } from './errors.js';
import { lockDataDir, type DataDirLock } from './db/lock.js';
import { freePort } from './listen.js';
import { openDatabase, type DatabaseHandle } from './db/database.js';
import { buildApp } from './app.js';
import { hasNoOrg, SetupGate } from './auth/setup.js';
import { nodeSupportFinding } from './config/node-support.js';
import { runWorkerRole, startJobWorkers, type JobWorkers } from './jobs/worker.js';
import { exportQueues } from './http/routes/export.js';
import { maintainMedia } from './assets/maintenance.js';
import { startMaintenanceSchedule, type MaintenanceReport, type MaintenanceSchedule } from './jobs/schedules.js';
import { sweepExpiredUploads } from './assets/tus.js';
import { sweepConsole } from './auth/console.js';
import { LoginThrottle } from './auth/throttle.js';
import { Keyring, TENANT_KEY_COLUMNS } from './crypto/keyring.js';
import type { WrappedColumn } from './crypto/keywrap.js';
import { URL_SIGNING_COLUMNS } from './assets/signing.js';
import { JWT_SIGNING_COLUMNS } from './auth/jwt.js';
import { MFA_COLUMNS } from './auth/console.js';
import { JOB_PUT_URL_COLUMNS } from './jobs/jobs.js';
import { WEBHOOK_SECRET_COLUMNS } from './jobs/webhooks.js';
import { TRANSFORM_KEY_COLUMNS } from './processing/transform.js';
import { startSideListeners, type SideListeners } from './perimeter/listeners.js';
import { resolveMasterKey, type MasterKeys } from './crypto/master.js';
import { AUDIT_KEY_COLUMNS, openAuditKey } from './audit/keys.js';
import { LICENCE_KEY_COLUMNS } from './licensing/keys.js';
import { resumeErasures } from './erasure/erasure.js';
import { OrphanSweeper } from './assets/orphans.js';
import { startDumpSocket, type DumpSocket } from './backup/socket.js';
import { dumpDatabase, masterIdColumns } from './backup/dump.js';
import { configureImageEngine, imageCacheBytes, imageCacheLimitBytes } from './media/image/engine.js';
import { registerMemorySource } from './usage/metrics.js';

/**
 * Every secret stored wrapped by the master key, as each capability declares it. A capability that
 * stores a new kind of wrapped secret exports its columns and is added here, so that `obscura keys
 * rotate-master` moves it too (the rotation tests check that nothing under the old key remains).
 */
export const WRAPPED_COLUMNS: readonly WrappedColumn[] = [...TENANT_KEY_COLUMNS, ...URL_SIGNING_COLUMNS, ...JWT_SIGNING_COLUMNS, ...MFA_COLUMNS, ...TRANSFORM_KEY_COLUMNS, ...WEBHOOK_SECRET_COLUMNS, ...JOB_PUT_URL_COLUMNS, ...AUDIT_KEY_COLUMNS, ...LICENCE_KEY_COLUMNS];

export interface Runtime {
  config: Config;
  db: DatabaseHandle;
  lock: DataDirLock | null;
  masterKeys: MasterKeys;
  close(): Promise<void>;
}

/**
 * Opens what every command needs: the config, the data-dir lock (embedded mode, or whenever local
 * blobs live in the data dir) and the migrated database.
 */
export async function openRuntime(env: NodeJS.ProcessEnv = process.env, opts: { auditKey?: boolean } = {}): Promise<Runtime> {
  const config = loadConfig(env);
  // Embedded mode keeps the database in the data dir: one process only.
  const lock = config.database.kind === 'pglite' ? lockDataDir(config.dataDir) : null;
  try {
    const masterKeys = resolveMasterKey(config);
    const db = await openDatabase({
      kind: config.database.kind,
      url: config.database.url,
      migrationUrl: config.database.migrationUrl,
      dataDir: config.dataDir,
      poolSize: config.database.poolSize,
      queryTimeoutMs: config.database.queryTimeoutMs,
      connectTimeoutMs: config.database.connectTimeoutMs,
      ...(config.database.template ? {} : { template: false as const }),
    });
    // Every audit entry this process writes is keyed (src/audit/keys.ts); `audit verify` opts out so
    // that it can report a key it cannot unwrap instead of failing to open.
    if (opts.auditKey !== false) {
      try {
        await openAuditKey(db, masterKeys);
      } catch (err) {
        await db.close();
        throw err;
      }
    }
    return {
      config,
      db,
      lock,
      masterKeys,
      async close() {
        await db.close();
        lock?.release();
      },
    };
  } catch (err) {
    lock?.release();
    throw err;
  }
}

/**
 * The workers of a process (roles `all` and `worker`): processing jobs and webhook deliveries, plus the
 * queues of rooms above jobs/ (tenant exports, src/backup/export.ts).
 */
export async function startProcessWorkers(deps: { config: Config; db: DatabaseHandle; masterKeys: MasterKeys; store: BlobStore; testDelayMs?: number; now?: () => number }): Promise<JobWorkers> {
  const { config, db, store } = deps;
  const keyring = new Keyring(db, deps.masterKeys, { ttlMs: config.auth.keyCacheTtlMs });
  return startJobWorkers({
    config,
    db,
    masterKeys: deps.masterKeys,
    store,
    ...(deps.testDelayMs !== undefined ? { testDelayMs: deps.testDelayMs } : {}),
    extra: (runtime) => exportQueues({ db, store, keyring, ttlSeconds: config.backup.exportTtlSeconds, runtime, now: deps.now, defaultMetadataPolicy: config.uploads.metadataPolicy }),
  });
}

/**
 * Starts this process's part in the fleet's maintenance (issue 14, item 8): the pg-boss schedule and
 * a worker for its job, which runs retention, interrupted deletions, expired uploads and presigned
 * URLs, console sessions, interrupted erasures and the orphan sweep, once per interval for the
 * whole fleet. Each run is logged as one JSON line (`maintenance run`) with what it did. `now` is
 * the clock the passes read (a test's fake clock; default the real one).
 */
export async function startHousekeeping(config: Config, rt: Pick<Runtime, 'db' | 'masterKeys'>, store: BlobStore, opts: { now?: () => number } = {}): Promise<MaintenanceSchedule> {
  const now = opts.now;
  const deps = { db: rt.db, store, keyring: new Keyring(rt.db, rt.masterKeys, { ttlMs: config.auth.keyCacheTtlMs }), ...(now ? { now } : {}) };
  const throttle = new LoginThrottle(rt.db);
  const orphans = new OrphanSweeper({ db: rt.db, store }, { graceMs: config.maintenance.orphanGraceMs, everyMs: config.maintenance.orphanGraceMs });
  const line = (o: Record<string, unknown>) => (Number(o.level) >= 50 ? process.stderr : process.stdout).write(JSON.stringify(o) + '\n');
  const run = async (): Promise<MaintenanceReport> => {
    // Each task on its own: one failing (a store outage) does not keep the others from running.
    const report: MaintenanceReport = {};
    const failures: string[] = [];
    const task = async (name: string, fn: () => Promise<number>) => {
      try {
        report[name] = await fn();
      } catch (err) {
        failures.push(name);
        line({ level: 50, msg: 'housekeeping failed', task: name, err: (err as Error)?.message });
      }
    };
    await task('media', async () => {
      const m = await maintainMedia(deps);
      report.intents = m.intents;
      report.temp = m.temp;
      return m.assets;
    });
    await task('uploads', () => sweepExpiredUploads({ ...deps, config }));
    await task('console', async () => Object.values(await sweepConsole(rt.db, throttle, now?.())).reduce((a, b) => a + b, 0));
    await task('erasures', () => resumeErasures({ db: rt.db, store, ...(now ? { now } : {}) }, config.maintenance.intervalMs));
    await task('orphans', async () => (await orphans.run())?.deleted ?? 0);
    if (failures.length) throw new Error(`maintenance tasks failed: ${failures.join(', ')}`);
    return report;
  };
  return startMaintenanceSchedule(rt.db, {
    intervalMs: config.maintenance.intervalMs,
    monitorIntervalSeconds: config.jobs.monitorIntervalSeconds,
    run,
    onRun: ({ jobId, report, ms }) => line({ level: 30, msg: 'maintenance run', job: jobId, pid: process.pid, ms, ...report }),
    onError: () => undefined,
  });
}

/**
 * A listen failure the operator can fix is a configuration error naming the setting; anything else
 * is passed through unchanged.
 */
function listenError(err: unknown, config: Config): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  const where = `${config.host}:${config.port}`;
  if (code === 'EADDRINUSE') return new ConfigError('OBSCURA_PORT', `${where} is already in use by another process; stop it or set OBSCURA_PORT to a free port (0 picks one).`);
  if (code === 'EACCES') return new ConfigError('OBSCURA_PORT', `not allowed to listen on ${where} (ports below 1024 need privileges); set OBSCURA_PORT to 1024 or above.`);
  if (code === 'EADDRNOTAVAIL') return new ConfigError('OBSCURA_HOST', `${config.host} is not an address of this machine; set OBSCURA_HOST to one of its addresses (or 0.0.0.0).`);
  return err;
}

/** Where a waiting first-run setup token is written (owner-only), for `obscura init` to find. */
export function setupFilePath(dataDir: string): string {
  return join(dataDir, 'setup.json');
}

/**
 * Writes the setup token owner-only (atomically: a reader never sees half a file) and tells the
 * person at the terminal what to do next.
 */
function announceFirstRun(app: FastifyInstance, file: string, url: string, token: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ url, token }) + '\n', { mode: 0o600, flag: 'w' });
  chmodSync(tmp, 0o600); // in case the file existed with a wider mode
  renameSync(tmp, file);
  app.log.warn({ setupFile: file }, 'no org yet: run `npx obscura init --org NAME --email EMAIL` to create the first org (the server can keep running)');
  process.stderr.write(
    [
      '',
      'Obscura has no org yet. Create the first org, its owner and an app (this server can keep running):',
      '',
      '  npx obscura init --org "Acme" --email you@acme.example',
      '',
      "It prints the owner's password and the app's secret key once. (It uses the one-time setup token in",
      `${file}, readable only by you.)`,
      '',
    ].join('\n') + '\n',
  );
}

/** `obscura serve`. Resolves when the server has stopped. */
export async function serve(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  // Port 0 means "any free port": choose it before building, so the public URL names the real port.
  if (env.OBSCURA_PORT === '0' && !env.OBSCURA_PUBLIC_URL) env = { ...env, OBSCURA_PORT: String(await freePort(env.OBSCURA_HOST ?? '127.0.0.1')) };
  const rt = await openRuntime(env);
  const { config } = rt;
  // Memory (issue 12, item 6): libvips' cache bounded in bytes, and shown on /metrics.
  configureImageEngine({ cacheBytes: config.processing.imageCacheBytes });
  registerMemorySource('image_cache', imageCacheBytes, imageCacheLimitBytes);
  const https = config.http.tlsCertFile && config.http.tlsKeyFile ? { cert: readFileSync(config.http.tlsCertFile), key: readFileSync(config.http.tlsKeyFile) } : undefined;
  const store = await openStore(config);
  // Maintenance (retention, interrupted deletions and erasures, expired uploads and sessions, orphans)
  // is one pg-boss job per interval for the whole fleet; it starts first so that this process's
  // pg-boss runs the timekeeper (src/jobs/schedules.ts).
  const maintenance = config.role === 'api' ? null : await startHousekeeping(config, rt, store);
  // jobs: pg-boss workers for roles all/worker; OBSCURA_TEST_JOB_DELAY_MS is a test-only slowdown (see jobs/worker.ts).
  const workers = config.role === 'api' ? null : await startProcessWorkers({ config, db: rt.db, masterKeys: rt.masterKeys, store, testDelayMs: Number(env.OBSCURA_TEST_JOB_DELAY_MS ?? 0) });
  if (workers && config.role === 'worker') {
    return runWorkerRole(workers, async () => {
      await maintenance?.stop();
      await rt.close();
    });
  }
  // First run on the embedded default: a one-time setup token lets `obscura init` create the first
  // org through this server while it holds the data dir (src/auth/setup.ts).
  const firstRun = rt.lock && (await hasNoOrg(rt.db)) ? SetupGate.issue() : null;
  const setupFile = setupFilePath(config.dataDir);
  const { app, perimeter, drain } = await buildApp(config, {
    db: rt.db,
    masterKeys: rt.masterKeys,
    store,
    https,
    firstRun: firstRun ? { gate: firstRun.gate, onDone: () => rmSync(setupFile, { force: true }) } : undefined,
  });
  app.addHook('onClose', async () => rmSync(setupFile, { force: true }));
  let side: SideListeners | null = null; // perimeter: OBSCURA_HTTP_REDIRECT_PORT / OBSCURA_METRICS_PORT listeners
  let dumpSocket: DumpSocket | null = null; // backup: the embedded database's dump socket (src/backup/socket.ts)
  let closing = false;
  // Graceful shutdown (issue 9, item 19): new requests (and /readyz) get 503 at once, running requests
  // get OBSCURA_SHUTDOWN_DRAIN_MS, jobs go back to the queue, and the data-dir lock is released on
  // every path — a second signal, the drain running out, or a stuck close. Exit code 0, or 1 only when
  // closing itself hangs 30 s past the drain time.
  const shutdown = async (signal: string) => {
    if (closing) {
      app.log.warn({ signal }, 'second signal: cutting the remaining connections now');
      drain.cut();
      return;
    }
    closing = true;
    app.log.info({ signal, inFlight: drain.inFlight, drainMs: config.http.shutdownDrainMs }, 'shutting down: refusing new requests, finishing running ones');
    // Last resort if closing itself hangs: release the lock and leave.
    const hardStop = setTimeout(() => {
      rt.lock?.release();
      process.exit(1);
    }, config.http.shutdownDrainMs + 30_000).unref();
    try {
      const [drained] = await Promise.all([drain.drain(config.http.shutdownDrainMs), workers?.stop()]); // jobs go back to the queue
      if (!drained) {
        app.log.warn({ inFlight: drain.inFlight }, 'drain time over: cutting the remaining connections');
        app.server.closeAllConnections();
      }
      await side?.close(); // perimeter
      await dumpSocket?.close(); // backup
      await maintenance?.stop();
      await app.close();
    } finally {
      await rt.close().catch(() => rt.lock?.release());
      clearTimeout(hardStop);
    }
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  let listening = false;
  try {
    const address = await app.listen({ host: config.host, port: config.port });
    listening = true;
    app.log.info({ address, database: config.database.kind, dataDir: config.dataDir }, 'obscura listening');
    const node = nodeSupportFinding();
    if (node) app.log.warn({ node: process.versions.node }, node.message);
    // Image work and blob I/O share libuv's pool (bin/obscura.js sizes it): warn when it leaves I/O no room.
    const pool = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
    const imageThreads = config.processing.concurrency + (config.role === 'api' ? 0 : config.jobs.workerConcurrency);
    if (pool < imageThreads + 4) app.log.warn({ UV_THREADPOOL_SIZE: pool, imageThreads }, 'UV_THREADPOOL_SIZE leaves fewer than 4 threads for file and blob I/O while images are processed; raise it (start through bin/obscura.js, which sizes it) or lower OBSCURA_PROCESS_CONCURRENCY / OBSCURA_WORKER_CONCURRENCY');
    // perimeter: side listeners start once the main one is up (a failure stops the server cleanly).
    side = await startSideListeners(config, perimeter).catch(async (err: unknown) => {
      await app.close();
      throw err;
    });
    // backup: `obscura backup create` cannot open the embedded data dir this process holds; it asks here.
    if (rt.lock) dumpSocket = await startDumpSocket(config.dataDir, (write) => dumpDatabase(rt.db, { masterIdColumns: masterIdColumns(WRAPPED_COLUMNS) }, write), (msg) => app.log.warn(msg));
    // Machine-readable line for scripts and tests that start us with port 0.
    process.stdout.write(`OBSCURA_LISTENING ${address}\n`);
    if (firstRun) announceFirstRun(app, setupFile, address, firstRun.token);
  } catch (err) {
    await dumpSocket?.close(); // backup
    await workers?.stop(); // jobs
    await maintenance?.stop();
    await rt.close();
    throw listening ? err : listenError(err, config);
  }
  await new Promise<void>((resolve) => app.server.once('close', () => resolve()));
}

