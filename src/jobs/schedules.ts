/**
 * Periodic maintenance on the queue (issue 14, item 8): retention, interrupted deletions and
 * erasures, expired uploads and sessions, orphaned blobs. It used to run on a timer in every worker
 * process, so a fleet of N workers swept N times. Now it is one pg-boss job:
 *
 * - the queue `obscura_maintenance` has the `exclusive` policy: at most one maintenance job queued or
 *   running in the whole fleet, so a slow sweep never overlaps another;
 * - from one minute up, the interval is a pg-boss cron schedule (`* * * * *`, `*\/5 * * * *`, …). Every
 *   worker writes the same schedule row (an upsert), and pg-boss's cron pass runs on the node that
 *   claims it (a conditional UPDATE of one row) and files each occurrence under a one-minute throttle
 *   slot, so one occurrence is one job, whichever nodes are up;
 * - below a minute (development and tests: `OBSCURA_MAINTENANCE_INTERVAL_MS=500`) cron cannot express
 *   the interval, so each worker offers a job every interval, throttled to one per interval
 *   (`singletonSeconds`) on top of the exclusive policy.
 *
 * Whichever node's worker fetches the job runs every task once and reports what it did.
 */
import type { PgBoss } from 'pg-boss';
import { maintenanceCron } from '../assets/settings.js';
import type { DatabaseHandle } from '../db/database.js';
import { acquireBoss, QUEUES, type BossHandle } from './boss.js';

/** What one maintenance run did, by task (counts of things removed or resumed). */
export type MaintenanceReport = Record<string, number>;

/** Options of {@link startMaintenanceSchedule}. */
export interface MaintenanceScheduleOptions {
  /** `OBSCURA_MAINTENANCE_INTERVAL_MS`. */
  intervalMs: number;
  /** The job monitor interval (`OBSCURA_JOB_MONITOR_INTERVAL_SECONDS`); also paces the cron pass (at most 30 s). */
  monitorIntervalSeconds?: number;
  /** One maintenance run: every task once. Throwing fails the job; the next occurrence runs again. */
  run: () => Promise<MaintenanceReport>;
  /** Told after each run in this process (the job id, what it did, how long it took). */
  onRun?: (run: { jobId: string; report: MaintenanceReport; ms: number }) => void;
  onError?: (err: unknown) => void;
}

/** A started schedule. */
export interface MaintenanceSchedule {
  /** The cron expression in use, or null below a minute. */
  readonly cron: string | null;
  /** Stops offering and running maintenance in this process (a running pass finishes first, bounded). */
  stop(): Promise<void>;
}

/** Longest one maintenance run may take before pg-boss considers it dead (and the next occurrence runs). */
const RUN_EXPIRY_SECONDS = 3600;

/**
 * Registers the maintenance schedule and a maintenance worker on the process's pg-boss (started
 * with its timekeeper). Call it before anything else in the process uses the queue.
 */
export async function startMaintenanceSchedule(db: DatabaseHandle, opts: MaintenanceScheduleOptions): Promise<MaintenanceSchedule> {
  const handle: BossHandle = await acquireBoss(db, { schedule: true, ...(opts.monitorIntervalSeconds ? { monitorIntervalSeconds: opts.monitorIntervalSeconds } : {}) });
  const boss: PgBoss = handle.boss;
  const cron = maintenanceCron(opts.intervalMs);
  const jobOptions = { retryLimit: 0, expireInSeconds: RUN_EXPIRY_SECONDS };
  let offer: NodeJS.Timeout | undefined;
  let workerId: string | undefined;
  try {
    if (cron) {
      // Idempotent upsert: every worker of the fleet writes the same row.
      await boss.schedule(QUEUES.maintenance, cron, {}, jobOptions);
    } else {
      // A fleet that moved from a schedule to a sub-minute interval stops the schedule too.
      await boss.unschedule(QUEUES.maintenance).catch(() => undefined);
      const singletonSeconds = Math.max(1, Math.round(opts.intervalMs / 1000));
      const send = () => void boss.send(QUEUES.maintenance, {}, { ...jobOptions, singletonSeconds }).catch((err: unknown) => opts.onError?.(err));
      send();
      offer = setInterval(send, opts.intervalMs);
      offer.unref();
    }
    workerId = await boss.work(QUEUES.maintenance, { localConcurrency: 1, pollingIntervalSeconds: Math.min(30, Math.max(1, opts.intervalMs / 1000)) }, async (jobs) => {
      for (const job of jobs) {
        const started = Date.now();
        try {
          const report = await opts.run();
          opts.onRun?.({ jobId: job.id, report, ms: Date.now() - started });
        } catch (err) {
          opts.onError?.(err);
          throw err;
        }
      }
    });
  } catch (err) {
    if (offer) clearInterval(offer);
    await handle.release();
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    cron,
    stop() {
      stopping ??= (async () => {
        if (offer) clearInterval(offer);
        if (workerId) await boss.offWork(QUEUES.maintenance, { id: workerId, wait: true }).catch(() => undefined);
        await handle.release();
      })();
      return stopping;
    },
  };
}
