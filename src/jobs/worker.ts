/**
 * Workers: the pg-boss handlers for processing jobs and webhook deliveries, their dead-letter
 * handlers, and the reconciler. Started by `main.ts` for roles `all` and `worker`.
 *
 * Failure model: a handler that throws is retried by pg-boss with exponential backoff; a worker that
 * dies mid-job (SIGKILL, OOM, power) stops heartbeating and its job expires after
 * `OBSCURA_JOB_TIMEOUT_SECONDS` (or 30 s without a heartbeat), then runs again elsewhere. Whatever
 * ran out of retries lands in the dead-letter queue, whose handler marks the job failed (once) and
 * emits `job.failed`. Repeating any of these steps is harmless (see jobs.ts).
 *
 * A `worker` process (`OBSCURA_ROLE=worker`) has no HTTP listener: it prints `OBSCURA_WORKER_READY`
 * once its handlers are registered and stops cleanly on SIGINT/SIGTERM (running jobs get up to 10 s;
 * whatever is cut short is retried by another worker).
 */
import type { Job, JobWithMetadata } from 'pg-boss';
import { QUEUES } from './boss.js';
import { UsageMeter } from '../usage/meter.js';
import type { ProcessingServiceSettings } from '../processing/service.js';
import type { DatabaseHandle } from '../db/database.js';
import type { MasterKeys } from '../crypto/master.js';
import { Keyring } from '../crypto/keyring.js';
import type { BlobStore } from '../assets/stores/types.js';
import { createProcessingService } from '../processing/service.js';
import { JobRuntime, type JobRuntimeSettings } from './runtime.js';
import { abandonDelivery, attemptDelivery } from './webhooks.js';
import { sweepVideoTemp } from '../media/video/pipeline.js';

/** Options of {@link startWorkers}. */
export interface WorkerOptions {
  /** Processing jobs run at once in this process (`OBSCURA_WORKER_CONCURRENCY`). */
  concurrency: number;
  /**
   * Processing jobs of one org running at once across every worker (pg-boss `groupConcurrency`, the
   * group being the org; `OBSCURA_WORKER_ORG_CONCURRENCY`). 0 or absent = no per-org cap.
   */
  orgConcurrency?: number;
  /** Video jobs run at once in this process, on their own queue (`OBSCURA_VIDEO_WORKER_CONCURRENCY`). Default 1. */
  videoConcurrency?: number;
  /** Webhook deliveries in flight at once. Default 4. */
  webhookConcurrency?: number;
  /** Reconciler period in seconds. Default: the job monitor interval. */
  reconcileSeconds?: number;
  /**
   * More queues, handed down by the composition root (a room above jobs/ owns their work, e.g. tenant
   * exports in backup/): each is registered like the queues above (single slots, woken after a job).
   */
  extra?: readonly ExtraQueue[];
}

/** A queue whose handler another room provides (see {@link WorkerOptions.extra}). */
export interface ExtraQueue {
  queue: string;
  /** Slots in this process. */
  concurrency: number;
  /** Runs one job; throw to have pg-boss retry it. `lastAttempt`: no retry follows a throw. */
  handle(ref: { org: string; id: string }, job: { lastAttempt: boolean; signal: AbortSignal }): Promise<void>;
}

/** Running workers. */
export interface Workers {
  /** Stops taking jobs and waits (bounded) for running handlers. */
  stop(): Promise<void>;
}

interface Ref {
  org: string;
  id: string;
}

function isRef(data: unknown): data is Ref {
  return typeof data === 'object' && data !== null && typeof (data as Ref).org === 'string' && typeof (data as Ref).id === 'string';
}

// `includeMetadata: true` makes pg-boss fill retryLimit; without it, assume this is not the last attempt.
const lastAttempt = (job: Job<unknown>) => job.retryCount >= ((job as Partial<JobWithMetadata<unknown>>).retryLimit ?? Number.POSITIVE_INFINITY);

/** Starts the workers of this process on the runtime's pg-boss. */
export async function startWorkers(service: JobRuntime, opts: WorkerOptions): Promise<Workers> {
  const boss = await service.boss();
  const polling = { pollingIntervalSeconds: service.pollingIntervalSeconds, notifyPollingIntervalSeconds: service.pollingIntervalSeconds };
  const ids: Array<[string, string]> = [];

  /**
   * Registers `count` single-slot workers on `queue`. pg-boss fetches one job per poll and then
   * waits out its polling interval unless woken by NOTIFY, which only fires for new jobs; so a busy
   * queue would drain at one job per interval per slot. Each slot therefore wakes itself after a job
   * (`notifyWorker`): a backlog drains back to back, an empty fetch falls back to polling.
   */
  const register = async (queue: string, count: number, handle: (job: Job<unknown> & { data: Ref }) => Promise<void>, extra: { groupConcurrency?: number } = {}): Promise<void> => {
    for (let i = 0; i < count; i++) {
      let self: string | undefined;
      self = await boss.work<unknown>(queue, { ...polling, ...extra, localConcurrency: 1, includeMetadata: true }, async (jobs) => {
        try {
          for (const job of jobs) if (isRef(job.data)) await handle(job as Job<unknown> & { data: Ref });
        } finally {
          if (self) boss.notifyWorker(self);
        }
      });
      ids.push([queue, self]);
    }
  };

  await register(QUEUES.process, opts.concurrency, (job) => service.jobs.run({ orgId: job.data.org, id: job.data.id }, { lastAttempt: lastAttempt(job), signal: job.signal }), opts.orgConcurrency ? { groupConcurrency: opts.orgConcurrency } : {});
  // Only timeouts and dead workers reach the dead-letter queue (handler errors on the last attempt
  // are recorded by the handler itself); `fail` is a no-op for a job that is already final.
  await register(QUEUES.processDead, 1, (job) => service.jobs.fail(job.data.org, job.data.id, 'ERR_JOB_TIMEOUT', 'The job did not finish in time, including retries.'));
  // Video jobs have their own workers, so a long transcode never holds a worker image jobs need.
  await register(QUEUES.processVideo, opts.videoConcurrency ?? 1, (job) => service.jobs.run({ orgId: job.data.org, id: job.data.id }, { lastAttempt: lastAttempt(job), signal: job.signal }), opts.orgConcurrency ? { groupConcurrency: opts.orgConcurrency } : {});
  await register(QUEUES.processVideoDead, 1, (job) => service.jobs.fail(job.data.org, job.data.id, 'ERR_JOB_TIMEOUT', 'The video job did not finish in time, including retries.'));
  await register(QUEUES.webhook, opts.webhookConcurrency ?? 4, async (job) => {
    const outcome = await attemptDelivery(service.webhookDeps, { orgId: job.data.org, id: job.data.id }, { lastAttempt: lastAttempt(job), signal: job.signal });
    // Throwing is how pg-boss schedules the next attempt (backoff with jitter).
    if (outcome === 'retry') throw new Error('webhook delivery failed; retrying');
  });
  await register(QUEUES.webhookDead, 1, (job) => abandonDelivery(service.webhookDeps, { orgId: job.data.org, id: job.data.id }));
  for (const q of opts.extra ?? []) await register(q.queue, q.concurrency, (job) => q.handle(job.data, { lastAttempt: lastAttempt(job), signal: job.signal }));

  const period = (opts.reconcileSeconds ?? service.config.jobs.monitorIntervalSeconds) * 1000;
  let reconciling: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    reconciling ??= service.jobs
      .reconcile()
      .catch(() => undefined)
      .finally(() => {
        reconciling = undefined;
      });
  }, period);
  timer.unref();

  let stopped = false;
  return {
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await reconciling;
      for (const [queue, id] of ids) await boss.offWork(queue, { id, wait: true }).catch(() => undefined);
    },
  };
}

/** What the workers of one process need. */
export interface JobWorkerDeps {
  config: ProcessingServiceSettings & JobRuntimeSettings & { readonly auth: { readonly keyCacheTtlMs: number } };
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
  /** Queues of rooms above jobs/, given the runtime (for pg-boss) by the composition root (see {@link WorkerOptions.extra}). */
  extra?: (runtime: JobRuntime) => readonly ExtraQueue[];
}

/** Running workers of this process. */
export interface JobWorkers {
  stop(): Promise<void>;
}

/** Starts this process's job and webhook workers. */
export async function startJobWorkers(deps: JobWorkerDeps): Promise<JobWorkers> {
  // Jobs are metered where they run; a worker process has no HTTP app, so it keeps its own meter.
  const meter = deps.meter ?? new UsageMeter({ db: deps.db, masterKey: deps.masterKeys.current, onError: () => undefined });
  const processing = createProcessingService({
    meter,
    db: deps.db,
    store: deps.store,
    keyring: new Keyring(deps.db, deps.masterKeys, { ttlMs: deps.config.auth.keyCacheTtlMs }),
    masterKeys: deps.masterKeys,
    config: deps.config,
  });
  const runtime = new JobRuntime({ processing, config: deps.config, masterKeys: deps.masterKeys, testDelayMs: deps.testDelayMs && deps.testDelayMs > 0 ? deps.testDelayMs : undefined });
  // What a crashed process left in the video temporary area is removed (older than one run can last).
  await sweepVideoTemp(deps.config.video.tempDir, (deps.config.video.timeoutSeconds + 300) * 1000).catch(() => 0);
  const workers = await startWorkers(runtime, { concurrency: deps.config.jobs.workerConcurrency, orgConcurrency: deps.config.jobs.workerOrgConcurrency, videoConcurrency: deps.config.video.workerConcurrency, extra: deps.extra?.(runtime) ?? [] });
  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        await workers.stop();
        await runtime.close();
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
