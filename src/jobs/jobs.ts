/**
 * Asynchronous processing jobs: creation with `Idempotency-Key`, the worker's run, failure and
 * dead-letter handling, and the reconciler that repairs a crash between commit and enqueue.
 *
 * Guarantees:
 * - Idempotency: per org, 24 h. Same key + same request → the same job; same key + another request
 *   → 409 ERR_IDEMPOTENCY_MISMATCH. The fingerprint covers the app and the canonical request (the
 *   names of forwarded headers, never their values).
 * - At-least-once, safe to repeat: each attempt writes its output under an id derived from the job's
 *   secret seed and the attempt number; the asset row and the job's `succeeded` status commit in ONE
 *   transaction, only if the job is not already final. A repeated or zombie attempt finds the job
 *   final, rolls back and deletes its own blob; a later attempt deletes earlier attempts' orphans.
 *   So a job never shows two outputs and never a half-written one (blob puts are atomic).
 * - Credentials: a remote input is fetched when the job is created (the customer's headers are used
 *   once and never stored); a presigned PUT URL is stored only wrapped by the master key and shown
 *   redacted.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Selectable } from 'kysely';
import type { PgBoss } from 'pg-boss';
import type { MasterKeys } from '../crypto/master.js';
import { unwrapKey, wrapKey } from '../crypto/keywrap.js';
import { publicId } from '../crypto/random.js';
import { AppError, isAppError } from '../errors.js';
import { appendAudit, canonicalJson } from '../audit/log.js';
import type { Ctx } from '../tenants/index.js';
import { DEFAULT_OUTPUT_TTL_SECONDS, getAsset, ingest, liveAt } from '../assets/assets.js';
import { commitOutput, discardStaged, hideAsset, removeUnclaimed, stageOutput, stageOutputStream, type StagedOutput } from '../assets/outputs.js';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { HLS_PLAYLIST_MIME, type HlsPackage } from '../media/video/pipeline.js';
import { HLS_ASSET_REF } from '../assets/downloads.js';
import { sniff } from '../media/sniff.js';
import { isVideoType } from '../media/video/probe.js';
import { compileVideoOperations } from '../media/video/operations.js';
import type { VideoProcessing } from '../processing/video.js';
import { redactUrl } from '../remote/fetcher.js';
import type { MediaLimits } from '../media/limits.js';
import {
  appSettings,
  attemptAssetId,
  compileOperations,
  fetchRemote,
  limitsFor,
  newOutputSeed,
  readAsset,
  runPipeline,
  outputFileOf,
  MAX_OUTPUT_TTL_SECONDS,
  type ProcessingDeps,
  type ProcessingInput,
} from '../processing/processing.js';
import { QUEUES } from './boss.js';
import type { Remote } from '../remote/remote.js';
import { deliveryRetryPolicy, recordEvent, type DeliveryRef } from './webhooks.js';
import type { JobsTable } from './schema.js';
import type { WrappedColumn } from '../crypto/keywrap.js';
import { keysetPage, mapPage, type ListOrder, type Page, type PageRequest } from '../db/pagination.js';

/** Job lists: newest first, keyset on (created_at, id). */
export const JOB_ORDER: ListOrder = { keys: [{ column: 'created_at', type: 'timestamptz' }, { column: 'id', type: 'text' }], direction: 'desc' };

/** Filters of a job list; every member optional. */
export interface JobFilter {
  status?: JobsTable['status'] | undefined;
  /** Created at or after this instant (ISO 8601). */
  createdAfter?: string | undefined;
  /** Created before this instant (ISO 8601). */
  createdBefore?: string | undefined;
}

/** How long an `Idempotency-Key` is remembered. */
export const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;
/** Remote/raw input copies made for async jobs live as long as a default output. */
const INPUT_COPY_TTL_SECONDS = 24 * 3600;

/** A request for a new job. */
export interface NewJob {
  orgId: string;
  appId: string;
  input: ProcessingInput;
  /** Operations in either spelling; validated before anything else happens. */
  operations: unknown;
  preview?: boolean | undefined;
  keepMetadata?: boolean | undefined;
  /** Output retention in seconds (default 24 h, at most 7 days). */
  ttlSeconds?: number | undefined;
  /** Customer's presigned URL to PUT the output to (checked now and at PUT time). */
  putUrl?: string | undefined;
  idempotencyKey?: string | undefined;
  ctx: Ctx;
}

/** A job as the API shows it. */
export interface JobView {
  id: string;
  status: JobsTable['status'];
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  attempts: number;
  input: { source: 'asset' | 'url' | 'upload'; asset_id: string; url: string | null };
  operations: string;
  preview: boolean;
  keep_metadata: boolean;
  output: { asset_id: string | null; ttl_seconds: number; put_url: string | null; put_status: number | null };
  error: { code: string; message: string } | null;
  /** `image` or `video` (video jobs run on their own queue). */
  media: 'image' | 'video';
  /** Progress of a video job (null for image jobs and before the first report). */
  progress: JobProgress | null;
}

/** Progress of a video job, from ffmpeg (`percent` reaches 100 when the job succeeds). */
export interface JobProgress {
  percent: number;
  frames: number;
  fps: number;
  eta_seconds: number | null;
}

type JobRow = Selectable<JobsTable>;

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());

/** Tuning of the job system (from Config.jobs). */
export interface JobSettings {
  timeoutSeconds: number;
  retryLimit: number;
  webhookRetryDelaySeconds: number;
  /** Largest raw input accepted for a job. */
  maxInputBytes: number;
  /** Most work one job may ask for (`OBSCURA_PROCESS_MAX_COST`; default the media default). */
  maxCost?: number;
  /** The operator's media limits (`config.media`); default the media defaults. */
  media?: Partial<Omit<MediaLimits, 'allowSvg' | 'maxCost'>>;
  /** Wall-clock limit of one ffmpeg run, seconds: a video job's lease is this plus a margin. */
  videoTimeoutSeconds?: number;
  /** Seconds between two `job.progress` webhooks of one job. */
  progressWebhookSeconds?: number;
}

/** What the job service needs. */
export interface JobDeps extends ProcessingDeps {
  masterKeys: MasterKeys;
  remote: Remote;
  settings: JobSettings;
  /** The started pg-boss (lazily acquired by the caller). */
  boss: () => Promise<PgBoss>;
  /** TEST ONLY: extra delay inside each run, so a test can kill a worker mid-job. Default 0. */
  testDelayMs?: number;
  /** Video outputs (the processing service's). */
  video: VideoProcessing;
}

/** Key-wrap context of a job's presigned PUT URL (a customer credential). */
export const putUrlContext = (orgId: string, jobId: string): string => `job-put:${orgId}:${jobId}`;

function view(r: JobRow): JobView {
  return {
    id: r.id,
    status: r.status,
    created_at: iso(r.created_at)!,
    started_at: iso(r.started_at),
    finished_at: iso(r.finished_at),
    attempts: r.attempts,
    input: { source: r.input_source, asset_id: r.input_asset_id, url: r.input_url },
    operations: r.operations,
    preview: r.preview,
    keep_metadata: r.keep_metadata,
    output: {
      asset_id: r.output_asset_id,
      ttl_seconds: r.output_ttl_seconds ?? DEFAULT_OUTPUT_TTL_SECONDS,
      put_url: r.put_url_wrapped ? '[redacted]' : null,
      put_status: r.put_status,
    },
    error: r.error_code ? { code: r.error_code, message: r.error_message ?? '' } : null,
    media: r.media,
    progress: (typeof r.progress === 'string' ? JSON.parse(r.progress) : r.progress ?? null) as JobProgress | null,
  };
}

/** The job system (creation side and worker side share it). */
export class JobService {
  constructor(private readonly deps: JobDeps) {}

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  /** pg-boss send options of a processing job. */
  private processSendOptions(queueId: string, orgId: string, media: 'image' | 'video'): Record<string, unknown> {
    const s = this.deps.settings;
    if (media === 'video') {
      // A video runs as long as ffmpeg's own limit allows; a dead worker is noticed by its heartbeat.
      // The heartbeat follows the job timeout (10–30 s; pg-boss's floor is 10) so a lost worker is noticed as
      // quickly as an image worker's timeout would be.
      return { id: queueId, group: { id: orgId }, expireInSeconds: (s.videoTimeoutSeconds ?? 3600) + 120, retryLimit: s.retryLimit, retryDelay: 2, retryBackoff: true, retryDelayMax: 300, heartbeatSeconds: Math.max(10, Math.min(30, s.timeoutSeconds)) };
    }
    return {
      id: queueId,
      // The org is the pg-boss group: workers cap how many of one org's jobs run at once (fairness).
      group: { id: orgId },
      expireInSeconds: s.timeoutSeconds,
      retryLimit: s.retryLimit,
      retryDelay: 2,
      retryBackoff: true,
      retryDelayMax: 60,
      // A worker that dies (SIGKILL, OOM) stops heartbeating; the job is retried after this long
      // instead of waiting for its full timeout.
      ...(s.timeoutSeconds > 30 ? { heartbeatSeconds: 30 } : {}),
    };
  }

  /** Enqueues a processing job (idempotent: the queue id is fixed). Failures are left to the reconciler. */
  private async enqueue(orgId: string, jobId: string, queueId: string, media: 'image' | 'video'): Promise<void> {
    try {
      const boss = await this.deps.boss();
      await boss.send(media === 'video' ? QUEUES.processVideo : QUEUES.process, { org: orgId, id: jobId }, this.processSendOptions(queueId, orgId, media));
    } catch {
      // Committed is committed: the reconciler re-sends jobs that stay queued without a queue entry.
    }
  }

  /** Enqueues webhook deliveries written in a committed transaction. */
  async dispatch(refs: readonly DeliveryRef[]): Promise<void> {
    if (refs.length === 0) return;
    try {
      const boss = await this.deps.boss();
      const policy = deliveryRetryPolicy(this.deps.settings.webhookRetryDelaySeconds);
      for (const r of refs) await boss.send(QUEUES.webhook, { org: r.orgId, id: r.id }, { id: r.queueId, expireInSeconds: 60, ...policy });
    } catch {
      // As above: pending deliveries without a queue entry are re-sent by the reconciler.
    }
  }

  /**
   * Creates a job (or returns the one an earlier request with the same `Idempotency-Key` created).
   * Validates operations first, then the PUT URL, then resolves the input to an asset of the org.
   */
  async create(req: NewJob): Promise<{ job: JobView; replayed: boolean }> {
    const { db } = this.deps;
    // The input's media kind picks the registry. An asset's type is in its row and sent bytes are
    // sniffed; a URL's is known only once fetched, so its operations must first be valid for some kind.
    let kind: 'image' | 'video';
    if (req.input.kind === 'asset') {
      const assetId = req.input.assetId;
      kind = isVideoType((await db.withTenant(req.orgId, (trx) => getAsset(trx, req.orgId, assetId, this.now()))).mime) ? 'video' : 'image';
    } else if (req.input.kind === 'upload') {
      const type = await sniff(req.input.bytes);
      kind = type && isVideoType(type.mime) ? 'video' : 'image';
    } else {
      kind = 'image';
      try {
        compileOperations(req.operations);
      } catch (imageError) {
        try {
          compileVideoOperations(req.operations);
          kind = 'video';
        } catch {
          throw imageError;
        }
      }
    }
    let compiled = compileFor(kind, req.operations);
    // The app's default output lifetime (issue 14, item 5) unless the request asks for its own.
    const ttlSeconds = req.ttlSeconds ?? (await db.withTenant(req.orgId, (trx) => appSettings(trx, req.orgId, req.appId))).output_retention_seconds ?? DEFAULT_OUTPUT_TTL_SECONDS;
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 60 || ttlSeconds > MAX_OUTPUT_TTL_SECONDS) {
      throw new AppError('ERR_VALIDATION', `The output retention must be 60 to ${MAX_OUTPUT_TTL_SECONDS} seconds.`, { details: { field: 'output.ttl_seconds' } });
    }
    if (req.putUrl !== undefined) await this.deps.remote.check(req.putUrl);
    const fingerprint = createHash('sha256')
      .update(
        canonicalJson({
          app: req.appId,
          input:
            req.input.kind === 'asset'
              ? { asset_id: req.input.assetId }
              : req.input.kind === 'url'
                ? { url: req.input.url, header_names: Object.keys(req.input.headers ?? {}).map((h) => h.toLowerCase()).sort() }
                : { upload_sha256: createHash('sha256').update(req.input.bytes).digest('hex') },
          operations: compiled.canonical,
          preview: req.preview === true,
          keep_metadata: req.keepMetadata === true,
          ttl: ttlSeconds,
          put_url: req.putUrl ?? null,
        }),
      )
      .digest('hex');

    if (req.idempotencyKey !== undefined) {
      const existing = await this.findByKey(req.orgId, req.idempotencyKey, fingerprint);
      if (existing) return { job: existing, replayed: true };
    }

    // Resolve the input to an asset of this org. Remote and raw inputs become encrypted input copies.
    let inputAssetId: string;
    let inputUrl: string | null = null;
    let copied = false;
    if (req.input.kind === 'asset') {
      const assetId = req.input.assetId;
      await db.withTenant(req.orgId, (trx) => getAsset(trx, req.orgId, assetId, this.now()));
      inputAssetId = assetId;
    } else {
      const bytes = req.input.kind === 'url' ? await fetchRemote(this.deps.remote.inputs, req.input.url, req.input.headers) : req.input.bytes;
      if (req.input.kind === 'url') inputUrl = redactUrl(req.input.url);
      const asset = await ingest(this.deps, {
        orgId: req.orgId,
        appId: req.appId,
        kind: 'upload',
        body: Readable.from([bytes]),
        maxBytes: this.deps.settings.maxInputBytes,
        ttlSeconds: INPUT_COPY_TTL_SECONDS,
        // A transient input copy for a job that asks to keep metadata keeps it (else the app's policy).
        ...(req.keepMetadata ? { metadataPolicy: 'keep' as const } : {}),
        ctx: req.ctx,
      });
      inputAssetId = asset.id;
      copied = true;
      const fetched = isVideoType(asset.mime) ? 'video' : 'image';
      if (fetched !== kind) {
        kind = fetched;
        try {
          compiled = compileFor(kind, req.operations);
        } catch (err) {
          await this.discardInputCopy(req.orgId, inputAssetId);
          throw err;
        }
      }
    }

    const id = publicId('job');
    const queueId = randomUUID();
    const now = this.now();
    const outcome = await db.withTenant(req.orgId, async (trx) => {
      const row = await trx
        .insertInto('jobs')
        .values({
          id,
          queue_id: queueId,
          org_id: req.orgId,
          app_id: req.appId,
          status: 'queued',
          input_asset_id: inputAssetId,
          input_source: req.input.kind,
          input_url: inputUrl,
          operations: compiled.canonical,
          media: kind,
          preview: req.preview === true,
          keep_metadata: req.keepMetadata === true,
          output_ttl_seconds: ttlSeconds,
          put_url_wrapped: req.putUrl === undefined ? null : wrapKey(this.deps.masterKeys.current, this.deps.masterKeys.currentId, Buffer.from(req.putUrl, 'utf8'), putUrlContext(req.orgId, id)),
          output_seed: newOutputSeed(),
          created_by: req.ctx.actor.id ?? null,
          created_at: new Date(now),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      if (req.idempotencyKey !== undefined) {
        // An expired key may be reused: remove it first (same transaction, so no window).
        await trx.deleteFrom('idempotency_keys').where('org_id', '=', req.orgId).where('key', '=', req.idempotencyKey).where('expires_at', '<=', new Date(now)).execute();
        const claimed = await trx
          .insertInto('idempotency_keys')
          .values({ org_id: req.orgId, key: req.idempotencyKey, fingerprint, job_id: id, expires_at: new Date(now + IDEMPOTENCY_TTL_SECONDS * 1000) })
          .onConflict((oc) => oc.columns(['org_id', 'key']).doNothing())
          .returning('job_id')
          .executeTakeFirst();
        // A concurrent request with the same key won the race: undo ours, answer with theirs.
        if (!claimed) throw new LostRace();
      }
      await appendAudit(trx, {
        orgId: req.orgId,
        actor: req.ctx.actor,
        action: 'job.create',
        target: { job: id, app: req.appId },
        data: { input: req.input.kind, operations: compiled.canonical, preview: req.preview === true },
        ip: req.ctx.ip,
        requestId: req.ctx.requestId,
      });
      return row;
    }).catch(async (err: unknown) => {
      if (err instanceof LostRace && req.idempotencyKey !== undefined) {
        const winner = await this.findByKey(req.orgId, req.idempotencyKey, fingerprint);
        if (winner) return winner;
      }
      throw err;
    });

    if (!('queue_id' in outcome)) {
      if (copied) await this.discardInputCopy(req.orgId, inputAssetId);
      return { job: outcome, replayed: true };
    }
    await this.enqueue(req.orgId, id, queueId, kind);
    return { job: view(outcome), replayed: false };
  }

  private async discardInputCopy(orgId: string, assetId: string): Promise<void> {
    // Best effort: an unreferenced input copy also expires on its own after 24 h.
    await hideAsset(this.deps, orgId, assetId, this.now());
  }

  private async findByKey(orgId: string, key: string, fingerprint: string): Promise<JobView | null> {
    const now = new Date(this.now());
    return this.deps.db.withTenant(orgId, async (trx) => {
      const k = await trx.selectFrom('idempotency_keys').selectAll().where('org_id', '=', orgId).where('key', '=', key).where('expires_at', '>', now).executeTakeFirst();
      if (!k) return null;
      if (k.fingerprint !== fingerprint) {
        throw new AppError('ERR_IDEMPOTENCY_MISMATCH', 'This Idempotency-Key was already used with a different request.');
      }
      const row = await trx.selectFrom('jobs').selectAll().where('org_id', '=', orgId).where('id', '=', k.job_id).executeTakeFirst();
      return row ? view(row) : null;
    });
  }

  /** A job of the org, or ERR_NOT_FOUND (missing and other orgs' jobs alike). */
  async get(orgId: string, id: string): Promise<JobView> {
    const row = await this.deps.db.withTenant(orgId, (trx) => trx.selectFrom('jobs').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst());
    if (!row) throw new AppError('ERR_NOT_FOUND', 'The job does not exist.');
    return view(row);
  }

  /** One page of the org's jobs, newest first. */
  async list(orgId: string, filter: JobFilter, page: PageRequest): Promise<Page<JobView>> {
    return this.deps.db.withTenant(orgId, async (trx) => {
      let q = trx.selectFrom('jobs').selectAll().where('org_id', '=', orgId);
      if (filter.status) q = q.where('status', '=', filter.status);
      if (filter.createdAfter) q = q.where('created_at', '>=', new Date(filter.createdAfter));
      if (filter.createdBefore) q = q.where('created_at', '<', new Date(filter.createdBefore));
      return mapPage(await keysetPage(q, JOB_ORDER, page), (r) => view(r as JobRow));
    });
  }

  /**
   * One attempt of a job (the pg-boss handler). Returns normally when the job reached a final state
   * or was already final; throws to ask pg-boss for a retry.
   */
  async run(ref: { orgId: string; id: string }, opts: { lastAttempt: boolean; signal?: AbortSignal }): Promise<void> {
    const { db } = this.deps;
    const started = await db.withTenant(ref.orgId, async (trx) => {
      const row = await trx
        .updateTable('jobs')
        .set((eb) => ({ status: 'running', attempts: eb('attempts', '+', 1), started_at: eb.fn.coalesce('started_at', eb.val(new Date(this.now()))) }))
        .where('org_id', '=', ref.orgId)
        .where('id', '=', ref.id)
        .where('status', 'in', ['queued', 'running'])
        .returningAll()
        .executeTakeFirst();
      return row;
    });
    if (!started) return;
    const job = started;
    const attempt = job.attempts;
    const assetId = attemptAssetId(job.output_seed, attempt);
    if (job.media === 'video') return this.runVideo(job, assetId, opts);
    try {
      await this.removeOrphans(job, attempt);
      const settings = await db.withTenant(job.org_id, (trx) => appSettings(trx, job.org_id, job.app_id));
      const limits = limitsFor(settings, { ...this.deps.settings.media, ...(this.deps.settings.maxCost === undefined ? {} : { maxCost: this.deps.settings.maxCost }) });
      const compiled = compileOperations(job.operations);
      const { bytes } = await readAsset(this.deps, job.org_id, job.input_asset_id, limits.maxInputBytes);
      if (this.deps.testDelayMs) await delay(this.deps.testDelayMs, opts.signal);
      const result = await runPipeline(this.deps, { orgId: job.org_id, input: bytes, plan: compiled.plan, limits, preview: job.preview, keepMetadata: job.keep_metadata, signal: opts.signal, billTo: { appId: job.app_id, keyId: job.created_by } });
      const staged = await stageOutput(this.deps, job.org_id, assetId, outputFileOf(result));
      let putStatus: number | null = null;
      try {
        if (job.put_url_wrapped) putStatus = await this.putOutput(job, result.data, result.info.mime, opts.signal);
        const refs = await this.commitSuccess(job, staged, putStatus);
        if (refs === null) {
          // Another attempt finished first: ours must not become a second visible output.
          await discardStaged(this.deps, staged);
          return;
        }
        await this.dispatch(refs);
      } catch (err) {
        await discardStaged(this.deps, staged);
        throw err;
      }
    } catch (err) {
      // Expired (timeout) or the worker is stopping: pg-boss already owns what happens next (a retry,
      // or the dead-letter queue that records ERR_JOB_TIMEOUT).
      if (opts.signal?.aborted) throw err;
      if (await this.inputDeleted(job)) return this.failInputDeleted(job);
      const permanent = isAppError(err) && err.status >= 400 && err.status < 500;
      if (permanent || opts.lastAttempt) {
        const e = isAppError(err) ? err : new AppError('ERR_INTERNAL', 'Processing failed.');
        await this.fail(job.org_id, job.id, e.code, e.publicMessage);
        return;
      }
      throw err;
    }
  }

  /**
   * One attempt of a video job: ffmpeg under its leash, progress written to the job (and `job.progress`
   * webhooks, throttled), a cancel noticed within half a second on any node (ffmpeg is killed, nothing
   * is kept), the output streamed from the run directory to the store, then committed with the job.
   */
  private async runVideo(job: JobRow, assetId: string, opts: { lastAttempt: boolean; signal?: AbortSignal }): Promise<void> {
    const { db } = this.deps;
    const abort = new AbortController();
    const stop = () => abort.abort(opts.signal?.reason);
    opts.signal?.addEventListener('abort', stop, { once: true });
    let cancelled = false;
    RUNNING_VIDEO.set(job.id, () => {
      cancelled = true;
      abort.abort(new AppError('ERR_JOB_CANCELLED', 'The job was cancelled.'));
    });
    let writing: Promise<unknown> = Promise.resolve();
    let lastWrite = 0;
    let lastHook = 0;
    const hookEvery = (this.deps.settings.progressWebhookSeconds ?? 10) * 1000;
    const watch = setInterval(() => {
      void db
        .withTenant(job.org_id, (trx) => trx.selectFrom('jobs').select('status').where('org_id', '=', job.org_id).where('id', '=', job.id).executeTakeFirst())
        .then(async (row) => {
          if (row && row.status !== 'running') {
            cancelled = row.status === 'cancelled';
            abort.abort(new AppError('ERR_JOB_CANCELLED', 'The job was cancelled.'));
          } else if (await this.inputDeleted(job)) {
            // Deletion is final (issue 14, item 7): ffmpeg stops reading a deleted input at once.
            abort.abort(inputDeletedError());
          }
        })
        .catch(() => undefined);
    }, 500);
    const report = (p: JobProgress): void => {
      const now = this.now();
      if (now - lastWrite < 1000 && p.percent < 100) return;
      lastWrite = now;
      const hook = now - lastHook >= hookEvery && p.percent < 100;
      if (hook) lastHook = now;
      writing = writing.then(() =>
        db
          .withTenant(job.org_id, async (trx) => {
            const row = await trx.updateTable('jobs').set({ progress: JSON.stringify(p) }).where('org_id', '=', job.org_id).where('id', '=', job.id).where('status', '=', 'running').returningAll().executeTakeFirst();
            return row && hook ? recordEvent(trx, { orgId: job.org_id, appId: job.app_id, type: 'job.progress', data: { job: view(row) }, now }) : [];
          })
          .then((refs) => this.dispatch(refs))
          .catch(() => undefined),
      );
    };
    try {
      await this.removeOrphans(job, job.attempts);
      const input = await db.withTenant(job.org_id, (trx) => getAsset(trx, job.org_id, job.input_asset_id, this.now()));
      const { plan } = compileVideoOperations(job.operations);
      if (this.deps.testDelayMs) await delay(this.deps.testDelayMs, abort.signal);
      const out = await this.deps.video.run({
        orgId: job.org_id,
        mime: input.mime,
        source: this.deps.video.sourceOfAsset(input),
        known: input.video,
        plan,
        preview: job.preview ? {} : null,
        signal: abort.signal,
        onProgress: report,
        billTo: { appId: job.app_id, keyId: job.created_by },
      });
      const staged: StagedOutput[] = [];
      try {
        if (out.storyboard) {
          if (job.put_url_wrapped) throw new AppError('ERR_VALIDATION', 'output.put_url takes one file, and a storyboard has two: drop put_url and download it through a signed URL of its WebVTT file.', { details: { field: 'output.put_url', reason: 'storyboard_has_two_files' } });
          const spriteId = partAssetId(job.output_seed, job.attempts, 0);
          const sprite = await stageOutputStream(this.deps, job.org_id, spriteId, createReadStream(out.storyboard.sprite), { mime: 'image/jpeg', ext: 'jpg', width: out.storyboard.width, height: out.storyboard.height });
          const vtt = (await readFile(out.storyboard.vtt, 'utf8')).split('sprite.jpg#').join(`${HLS_ASSET_REF}${spriteId}#`);
          staged.push(await stageOutput(this.deps, job.org_id, assetId, { data: Buffer.from(vtt, 'utf8'), mime: 'text/vtt', ext: 'vtt', width: out.width, height: out.height }), sprite);
        } else if (out.hls) {
          if (job.put_url_wrapped) throw new AppError('ERR_VALIDATION', 'output.put_url takes one file, and an HLS package has several: drop put_url and download the package through a signed URL of its master playlist.', { details: { field: 'output.put_url', reason: 'hls_has_several_files' } });
          staged.push(...(await this.stageHls(job, assetId, out.hls)));
        } else {
          staged.push(await stageOutputStream(this.deps, job.org_id, assetId, createReadStream(out.path), { mime: out.mime, ext: out.ext, width: out.width, height: out.height }));
        }
        let putStatus: number | null = null;
        if (job.put_url_wrapped) putStatus = await this.putOutput(job, createReadStream(out.path), out.mime, abort.signal, staged[0]!.size);
        await writing;
        const refs = await this.commitSuccess(job, staged[0]!, putStatus, { percent: 100, frames: 0, fps: 0, eta_seconds: 0 }, staged.slice(1));
        if (refs === null) {
          for (const s of staged) await discardStaged(this.deps, s);
          return;
        }
        await this.dispatch(refs);
      } catch (err) {
        for (const s of staged) await discardStaged(this.deps, s);
        throw err;
      } finally {
        await out.cleanup();
      }
    } catch (err) {
      // Cancelled by its owner: the job is already final; ffmpeg is dead and nothing was kept.
      if (cancelled || (isAppError(err) && err.code === 'ERR_JOB_CANCELLED')) return;
      if (opts.signal?.aborted) throw err;
      if (await this.inputDeleted(job)) return this.failInputDeleted(job);
      const permanent = isAppError(err) && err.status >= 400 && err.status < 500;
      if (permanent || opts.lastAttempt || (isAppError(err) && err.code === 'ERR_JOB_TIMEOUT')) {
        const e = isAppError(err) ? err : new AppError('ERR_INTERNAL', 'Processing failed.');
        await this.fail(job.org_id, job.id, e.code, e.publicMessage);
        return;
      }
      throw err;
    } finally {
      RUNNING_VIDEO.delete(job.id);
      clearInterval(watch);
      opts.signal?.removeEventListener('abort', stop);
      await writing;
    }
  }

  /**
   * Stages an HLS package: each rendition's media file and its playlist become output assets, the
   * playlists naming their parts as `obscura-asset:<id>` (signed at serve time with the playlist's own
   * expiry, assets/downloads.ts); the master playlist is staged under the job's output id and listed first.
   */
  private async stageHls(job: JobRow, masterId: string, pkg: HlsPackage): Promise<StagedOutput[]> {
    const parts: StagedOutput[] = [];
    let master = await readFile(pkg.master, 'utf8');
    for (const [i, v] of pkg.variants.entries()) {
      const mediaId = partAssetId(job.output_seed, job.attempts, 2 * i);
      const listId = partAssetId(job.output_seed, job.attempts, 2 * i + 1);
      parts.push(await stageOutputStream(this.deps, job.org_id, mediaId, createReadStream(v.media), { mime: v.mediaMime, ext: extname(v.media).slice(1), width: v.width, height: v.height }));
      const playlist = (await readFile(v.playlist, 'utf8')).split(basename(v.media)).join(`${HLS_ASSET_REF}${mediaId}`);
      parts.push(await stageOutput(this.deps, job.org_id, listId, { data: Buffer.from(playlist, 'utf8'), mime: HLS_PLAYLIST_MIME, ext: 'm3u8', width: v.width, height: v.height }));
      master = master.split(basename(v.playlist)).join(`${HLS_ASSET_REF}${listId}`);
    }
    const top = pkg.variants[0]!;
    const head = await stageOutput(this.deps, job.org_id, masterId, { data: Buffer.from(master, 'utf8'), mime: HLS_PLAYLIST_MIME, ext: 'm3u8', width: top.width, height: top.height });
    return [head, ...parts];
  }

  /**
   * Cancels a queued or running job of the org: it becomes `cancelled` at once (a running video's
   * ffmpeg is killed within a second by its worker, and no output is kept); `job.cancelled` is sent.
   * 409 `ERR_CONFLICT` when the job already ended.
   */
  async cancel(orgId: string, id: string, ctx: Ctx): Promise<JobView> {
    const now = this.now();
    const { row, refs } = await this.deps.db.withTenant(orgId, async (trx) => {
      const updated = await trx
        .updateTable('jobs')
        .set({ status: 'cancelled', error_code: 'ERR_JOB_CANCELLED', error_message: 'The job was cancelled.', finished_at: new Date(now) })
        .where('org_id', '=', orgId)
        .where('id', '=', id)
        .where('status', 'in', ['queued', 'running'])
        .returningAll()
        .executeTakeFirst();
      if (!updated) {
        const existing = await trx.selectFrom('jobs').select('status').where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
        if (!existing) throw new AppError('ERR_NOT_FOUND', 'The job does not exist.');
        throw new AppError('ERR_CONFLICT', `The job already ended (${existing.status}); only a queued or running job can be cancelled.`, { details: { status: existing.status } });
      }
      await appendAudit(trx, { orgId, actor: ctx.actor, action: 'job.cancel', target: { job: id, app: updated.app_id }, ip: ctx.ip, requestId: ctx.requestId });
      return { row: updated, refs: await recordEvent(trx, { orgId, appId: updated.app_id, type: 'job.cancelled', data: { job: view(updated) }, now }) };
    });
    await this.dispatch(refs);
    // Running in this process: stop it now (another process's worker sees the status within 0.5 s).
    RUNNING_VIDEO.get(id)?.();
    return view(row);
  }

  /** Deletes blobs of earlier attempts that never got a row (a worker died between put and commit). */
  private async removeOrphans(job: JobRow, attempt: number): Promise<void> {
    if (attempt <= 1) return;
    const earlier = Array.from({ length: attempt - 1 }, (_, i) => i + 1);
    await removeUnclaimed(this.deps, job.org_id, [...earlier.map((n) => attemptAssetId(job.output_seed, n)), ...(job.media === 'video' ? earlier.flatMap((n) => Array.from({ length: MAX_HLS_PARTS }, (_, k) => partAssetId(job.output_seed, n, k))) : [])]);
  }

  /** PUTs the output to the customer's presigned URL; 4xx is permanent, 5xx/network retried. */
  private async putOutput(job: JobRow, data: Buffer | Readable, mime: string, signal?: AbortSignal, size?: number): Promise<number> {
    const bytes = unwrapKey(this.deps.masterKeys.all, job.put_url_wrapped!, putUrlContext(job.org_id, job.id));
    const url = bytes.toString('utf8');
    bytes.fill(0);
    const res = await this.deps.remote.puts.put(url, data, { headers: { 'content-type': mime, ...(size !== undefined ? { 'content-length': String(size) } : {}) }, signal });
    if (res.status >= 200 && res.status <= 299) return res.status;
    const refused = res.status >= 400 && res.status < 500;
    throw new AppError(refused ? 'ERR_REMOTE_REJECTED' : 'ERR_REMOTE_FAILED', refused ? `The output URL refused the upload (HTTP ${res.status}): check that the presigned URL is valid and not expired.` : 'The output could not be uploaded to the given URL.', {
      details: { upstreamStatus: res.status },
    });
  }

  /** Asset row + `succeeded` in one transaction, only if the job is not final yet. Null when it was. */
  private async commitSuccess(job: JobRow, staged: StagedOutput, putStatus: number | null, progress?: JobProgress, parts: readonly StagedOutput[] = []): Promise<DeliveryRef[] | null> {
    const now = this.now();
    try {
      return await this.deps.db.withTenant(job.org_id, async (trx) => {
        const done = await trx
          .updateTable('jobs')
          .set({ status: 'succeeded', output_asset_id: staged.assetId, put_status: putStatus, finished_at: new Date(now), error_code: null, error_message: null, ...(progress ? { progress: JSON.stringify(progress) } : {}) })
          .where('org_id', '=', job.org_id)
          .where('id', '=', job.id)
          .where('status', 'not in', ['succeeded', 'failed', 'cancelled'])
          .returningAll()
          .executeTakeFirst();
        if (!done) throw new AlreadyFinal();
        // An input deleted while the job ran produces nothing (issue 14, item 7). FOR SHARE: a deletion
        // committing now waits for this transaction, so the output is never newer than its input's deletion.
        const input = await trx.selectFrom('assets').select('id').where('org_id', '=', job.org_id).where('id', '=', job.input_asset_id).where('deleted_at', 'is', null).where(liveAt(new Date(now))).forShare().executeTakeFirst();
        if (!input) throw inputDeletedError();
        for (const s of [staged, ...parts]) {
          await commitOutput(trx, {
            orgId: job.org_id,
            appId: job.app_id,
            staged: s,
            ttlSeconds: job.output_ttl_seconds ?? DEFAULT_OUTPUT_TTL_SECONDS,
            ctx: WORKER_CTX,
            now,
          });
        }
        return recordEvent(trx, { orgId: job.org_id, appId: job.app_id, type: 'job.completed', data: { job: view(done) }, now });
      });
    } catch (err) {
      if (err instanceof AlreadyFinal) return null;
      throw err;
    }
  }

  /** Whether the job's input asset is deleted or expired (an unknown answer counts as not deleted). */
  private async inputDeleted(job: JobRow): Promise<boolean> {
    try {
      await this.deps.db.withTenant(job.org_id, (trx) => getAsset(trx, job.org_id, job.input_asset_id, this.now()));
      return false;
    } catch (err) {
      return isAppError(err) && err.code === 'ERR_NOT_FOUND';
    }
  }

  private async failInputDeleted(job: JobRow): Promise<void> {
    const e = inputDeletedError();
    await this.fail(job.org_id, job.id, e.code, e.publicMessage);
  }

  /** Marks a job failed (once) and emits `job.failed`. No-op when it is already final. */
  async fail(orgId: string, id: string, code: string, message: string): Promise<void> {
    const now = this.now();
    const refs = await this.deps.db.withTenant(orgId, async (trx) => {
      const row = await trx
        .updateTable('jobs')
        .set({ status: 'failed', error_code: code, error_message: message.slice(0, 500), finished_at: new Date(now) })
        .where('org_id', '=', orgId)
        .where('id', '=', id)
        .where('status', 'in', ['queued', 'running'])
        .returningAll()
        .executeTakeFirst();
      if (!row) return [];
      return recordEvent(trx, { orgId, appId: row.app_id, type: 'job.failed', data: { job: view(row) }, now });
    });
    await this.dispatch(refs);
  }

  /**
   * Repairs what a crash between commit and enqueue left behind: re-sends queued jobs and pending
   * deliveries older than `olderThanSeconds` (the fixed queue ids make re-sending a no-op when the
   * entry exists), and drops expired idempotency keys. Owner-level scan (a sweeper: no tenant known).
   */
  async reconcile(olderThanSeconds = 60): Promise<{ jobs: number; deliveries: number }> {
    const { db } = this.deps;
    const before = new Date(this.now() - olderThanSeconds * 1000);
    const jobs = await db.system.selectFrom('jobs').select(['id', 'org_id', 'queue_id', 'media']).where('status', '=', 'queued').where('created_at', '<', before).limit(500).execute();
    for (const j of jobs) await this.enqueue(j.org_id, j.id, j.queue_id, j.media);
    const deliveries = await db.system.selectFrom('webhook_deliveries').select(['id', 'org_id', 'queue_id']).where('status', '=', 'pending').where('created_at', '<', before).limit(500).execute();
    await this.dispatch(deliveries.map((d) => ({ orgId: d.org_id, id: d.id, queueId: d.queue_id })));
    await db.system.deleteFrom('idempotency_keys').where('expires_at', '<=', new Date(this.now())).execute();
    return { jobs: jobs.length, deliveries: deliveries.length };
  }
}

/** Jobs running at a backup's snapshot go back to the queue on restore (its own file: the CLI loads it alone). */
export { requeueInterrupted } from './requeue.js';

/** The audit actor of worker-side changes. */
const WORKER_CTX: Ctx = { actor: { type: 'system', id: 'worker' } };

/** A job's input was deleted before the job finished: its final, stable error. */
function inputDeletedError(): AppError {
  return new AppError('ERR_INPUT_DELETED', "The job's input asset was deleted (or expired) before the job finished; nothing was produced. Upload the input again and create a new job.");
}

class LostRace extends Error {}
class AlreadyFinal extends Error {}

/**
 * Video jobs running in this process, by job id → a function that stops one. A cancel answered by this
 * process stops its own runs at once; runs elsewhere notice the status change by polling.
 */
const RUNNING_VIDEO = new Map<string, () => void>();

/** Most parts an HLS package has (4 renditions × a media file and a playlist). */
const MAX_HLS_PARTS = 8;

/** The id of part `k` of one attempt's HLS package: as unguessable and as deterministic as the output id. */
function partAssetId(seed: string, attempt: number, k: number): string {
  return attemptAssetId(`${seed}:part${k}`, attempt);
}

/** Operations compiled for the input's media kind (image or video registry). */
function compileFor(kind: 'image' | 'video', operations: unknown): { canonical: string } {
  return kind === 'video' ? compileVideoOperations(operations) : compileOperations(operations);
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(new AppError('ERR_UNAVAILABLE', 'Processing was cancelled.'));
      },
      { once: true },
    );
  });
}


/** The master-wrapped column of this capability, for master-key rotation (`keys rotate-master`). */
export const JOB_PUT_URL_COLUMNS: readonly WrappedColumn[] = [
  { table: 'jobs', key: ['id'], fields: ['org_id'], column: 'put_url_wrapped', context: (r) => putUrlContext(String(r.org_id), String(r.id)) },
];
