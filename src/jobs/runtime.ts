/**
 * The durable job queue of one process: the job service, the webhook deliveries and a lazily started
 * pg-boss (started on the first enqueue, so an API that never queues never polls). The HTTP routes
 * enqueue through it; the workers (worker.ts) run what it queued.
 */
import type { JobsSettings } from './settings.js';
import type { ProcessingSettings } from '../processing/settings.js';
import type { MediaSettings } from '../media/settings.js';
import type { MasterKeys } from '../crypto/master.js';
import type { PgBoss } from 'pg-boss';
import { AppError } from '../errors.js';
import { DEFAULT_MEDIA_LIMITS } from '../media/limits.js';
import type { ProcessingService } from '../processing/service.js';
import { acquireBoss, type BossHandle } from './boss.js';
import { JobService } from './jobs.js';
import type { WebhookDeps } from './webhooks.js';

/** The configuration sections the job runtime reads (the server's `Config` has them). */
export interface JobRuntimeSettings {
  readonly jobs: JobsSettings;
  readonly processing: ProcessingSettings;
  readonly media: MediaSettings;
}

/** Construction options of {@link JobRuntime}. */
export interface JobRuntimeOptions {
  /** The process's processing service: jobs run on its queue, fetchers and meter. */
  processing: ProcessingService;
  config: JobRuntimeSettings;
  masterKeys: MasterKeys;
  /** TEST ONLY: extra delay per job attempt (`OBSCURA_TEST_JOB_DELAY_MS`), to kill a worker mid-job. */
  testDelayMs?: number | undefined;
}

/** See the module comment. One per process, shared by the HTTP routes and the workers. */
export class JobRuntime {
  readonly jobs: JobService;
  readonly webhookDeps: WebhookDeps;
  private bossHandle: Promise<BossHandle> | undefined;
  private closed = false;

  constructor(private readonly o: JobRuntimeOptions) {
    const { config, processing } = o;
    this.jobs = new JobService({
      ...processing.deps,
      masterKeys: o.masterKeys,
      remote: processing.remote,
      settings: {
        timeoutSeconds: config.jobs.timeoutSeconds,
        retryLimit: config.jobs.retryLimit,
        webhookRetryDelaySeconds: config.jobs.webhookRetryDelaySeconds,
        maxInputBytes: Math.max(config.processing.maxBodyBytes, DEFAULT_MEDIA_LIMITS.maxInputBytes),
        maxCost: config.processing.maxCost,
        media: config.media,
        videoTimeoutSeconds: processing.config.video.timeoutSeconds,
        progressWebhookSeconds: processing.config.video.progressWebhookSeconds,
      },
      video: processing.video,
      boss: () => this.boss(),
      testDelayMs: o.testDelayMs,
    });
    this.webhookDeps = { db: processing.deps.db, masterKeys: o.masterKeys, remote: processing.remote, now: processing.deps.now };
  }

  get config(): JobRuntimeSettings {
    return this.o.config;
  }

  /** The shared pg-boss, started on first use. */
  async boss(): Promise<PgBoss> {
    if (this.closed) throw new AppError('ERR_UNAVAILABLE', 'The server is shutting down.', { headers: { 'Retry-After': '5' } });
    this.bossHandle ??= acquireBoss(this.o.processing.deps.db, { monitorIntervalSeconds: this.o.config.jobs.monitorIntervalSeconds });
    this.bossHandle.catch(() => {
      this.bossHandle = undefined;
    });
    return (await this.bossHandle).boss;
  }

  /** Polling interval workers should use (seconds). */
  get pollingIntervalSeconds(): number {
    return this.o.config.jobs.pollIntervalMs / 1000;
  }

  /** Releases pg-boss (stopping it when this was the last user). */
  async close(): Promise<void> {
    this.closed = true;
    const h = this.bossHandle;
    this.bossHandle = undefined;
    if (h) await (await h.catch(() => undefined))?.release();
  }
}
