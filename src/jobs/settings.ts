/** The jobs section of the configuration (issue 10, item 8): workers, retries, polling, webhook retries. */
import { availableParallelism } from 'node:os';
import { defineSection, int } from '../settings.js';

export interface JobsSettings {
  /** Jobs run at once per worker process. */
  readonly workerConcurrency: number;
  /**
   * Processing jobs of one org running at once across all workers (pg-boss group concurrency,
   * counted in the database; 0 = no per-org cap). Keeps one org's backlog from holding every worker.
   */
  readonly workerOrgConcurrency: number;
  /** A running job is retried after this long without finishing, seconds. */
  readonly timeoutSeconds: number;
  /** Retries after a failed attempt (exponential backoff). */
  readonly retryLimit: number;
  /** Idle polling interval of workers, ms; new jobs also wake workers by NOTIFY. */
  readonly pollIntervalMs: number;
  /** How often expired jobs (dead workers) are detected, seconds. */
  readonly monitorIntervalSeconds: number;
  /** First webhook retry delay, seconds, doubled with jitter up to 1 h, retried for about 24 h. */
  readonly webhookRetryDelaySeconds: number;
}

export const JOBS_SETTINGS = defineSection<JobsSettings>({
  workerConcurrency: int({ env: 'OBSCURA_WORKER_CONCURRENCY', doc: 'Jobs run at once per worker process.', default: () => availableParallelism(), defaultText: 'CPU count', min: 1, max: 1024 }),
  workerOrgConcurrency: int({ env: 'OBSCURA_WORKER_ORG_CONCURRENCY', doc: 'Jobs of one org running at once across all workers (0 = no cap).', default: (s) => Math.ceil((s.workerConcurrency as number) / 2), defaultText: 'half the worker concurrency, rounded up', min: 0, max: 100_000 }),
  timeoutSeconds: int({ env: 'OBSCURA_JOB_TIMEOUT_SECONDS', doc: 'A running job is retried after this long.', default: 300, min: 1, max: 86_400 }),
  retryLimit: int({ env: 'OBSCURA_JOB_RETRY_LIMIT', doc: 'Retries after a failed attempt.', default: 3, min: 0, max: 100 }),
  pollIntervalMs: int({ env: 'OBSCURA_JOB_POLL_INTERVAL_MS', doc: 'Idle polling interval of workers, ms.', default: 2000, min: 500, max: 600_000 }),
  monitorIntervalSeconds: int({ env: 'OBSCURA_JOB_MONITOR_INTERVAL_SECONDS', doc: 'How often expired jobs are detected, seconds.', default: 30, min: 1, max: 3600 }),
  webhookRetryDelaySeconds: int({ env: 'OBSCURA_WEBHOOK_RETRY_DELAY_SECONDS', doc: 'First webhook retry delay, seconds.', default: 10, min: 1, max: 3600 }),
});
