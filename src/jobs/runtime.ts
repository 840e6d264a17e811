/**
 * Process-level wiring of the job workers, called by `main.ts` for roles `all` and `worker`
 * (`OBSCURA_ROLE`). A `worker` process has no HTTP listener: it prints `OBSCURA_WORKER_READY` once its
 * handlers are registered and stops cleanly on SIGINT/SIGTERM (running jobs get up to 10 s; whatever
 * is cut short is retried by another worker, see worker.ts).
 */
import { UsageMeter } from '../usage/meter.js';
import type { Config } from '../config/index.js';
import type { DatabaseHandle } from '../db/database.js';
import type { MasterKeys } from '../crypto/master.js';
import { Keyring } from '../crypto/keyring.js';
import type { BlobStore } from '../assets/stores/types.js';
import { createProcessingService } from './service.js';
import { startWorkers } from './worker.js';

/** What the workers of one process need. */
export interface JobWorkerDeps {
  config: Config;
  db: DatabaseHandle;
  masterKeys: MasterKeys;
  store: BlobStore;
  /**
   * TEST ONLY (`OBSCURA_TEST_JOB_DELAY_MS`, read by main.ts): sleep this long inside every job
   * attempt so an end-to-end test can kill a worker mid-job. Default 0; never set it in production.
   */
  testDelayMs?: number;
  /** The process's usage meter, when it has one (role `all`: the HTTP app's); else the workers make their own. */
  meter?: UsageMeter;
}

/** Running workers of this process. */
export interface JobWorkers {
  stop(): Promise<void>;
}

/** Starts this process's job and webhook workers. */
export async function startJobWorkers(deps: JobWorkerDeps): Promise<JobWorkers> {
  // Jobs are metered where they run; a worker process has no HTTP app, so it keeps its own meter.
  const meter = deps.meter ?? new UsageMeter({ db: deps.db, masterKey: deps.masterKeys.current, onError: () => undefined });
  const service = createProcessingService({
    meter,
    db: deps.db,
    store: deps.store,
    keyring: new Keyring(deps.db, deps.masterKeys, { ttlMs: deps.config.auth.keyCacheTtlMs }),
    masterKeys: deps.masterKeys,
    config: deps.config,
    testDelayMs: deps.testDelayMs && deps.testDelayMs > 0 ? deps.testDelayMs : undefined,
  });
  const workers = await startWorkers(service, { concurrency: deps.config.jobs.workerConcurrency, orgConcurrency: deps.config.jobs.workerOrgConcurrency });
  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        await workers.stop();
        await service.close();
        if (!deps.meter) await meter.close();
      })();
      return stopping;
    },
  };
}

/**
 * Runs a worker-only process until SIGINT/SIGTERM: announces readiness on stdout, then on a signal
 * stops the workers and calls `close` (database, data-dir lock).
 */
export async function runWorkerRole(workers: JobWorkers, close: () => Promise<void>): Promise<void> {
  await new Promise<void>((resolve) => {
    let closing = false;
    const shutdown = (): void => {
      if (closing) return;
      closing = true;
      const timer = setTimeout(() => process.exit(1), 15_000).unref();
      void (async () => {
        try {
          await workers.stop();
          await close();
        } finally {
          clearTimeout(timer);
          resolve();
        }
      })();
    };
    process.once('SIGINT', shutdown);
    process.once('SIGTERM', shutdown);
    // Machine-readable line for scripts and tests (a worker has no listener to announce).
    process.stdout.write(`OBSCURA_WORKER_READY ${process.pid}\n`);
  });
}
