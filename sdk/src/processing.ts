/**
 * Processing resources: synchronous `POST /v1/process`, asynchronous jobs, webhooks, usage and the
 * transform-URL signing keys.
 */
import { ObscuraError, usageError } from './errors.js';
import type { Transport, RequestSpec } from './http.js';
import type { Asset, DateTime, MetadataPolicy, Operation, Page, PageQuery } from './types.js';
import { MAX_PAGE_LIMIT, allItems, eachItem } from './pages.js';
import { operationsPath } from './operations.js';

interface CallOpts {
  signal?: AbortSignal | undefined;
  idempotencyKey?: string | undefined;
  timeoutMs?: number | undefined;
}

function spec(base: Omit<RequestSpec, 'signal' | 'timeoutMs'>, o?: CallOpts): RequestSpec {
  return { ...base, signal: o?.signal, timeoutMs: o?.timeoutMs, ...(o?.idempotencyKey ? { idempotencyKey: o.idempotencyKey } : {}) };
}

const enc = encodeURIComponent;

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** Filters of `GET /v1/jobs` (every one optional). */
export interface JobListQuery extends PageQuery {
  status?: JobStatus | undefined;
  /** Created at or after this instant (ISO 8601). */
  created_after?: DateTime | undefined;
  /** Created before this instant (ISO 8601). */
  created_before?: DateTime | undefined;
}

/** `GET /v1/jobs/{id}` */
export interface Job {
  id: string;
  status: JobStatus;
  created_at: DateTime;
  started_at: DateTime | null;
  finished_at: DateTime | null;
  attempts: number;
  input: { source: 'asset' | 'url' | 'upload'; asset_id: string; url: string | null };
  /** Canonical string spelling of the operations. */
  operations: string;
  preview: boolean;
  keep_metadata: boolean;
  output: { asset_id: string | null; ttl_seconds: number; put_url: string | null; put_status: number | null };
  error: { code: string; message: string } | null;
  /** The input's media kind; video jobs run on their own queue. */
  media: 'image' | 'video';
  /** Video jobs: progress from ffmpeg, about every second while running (100 once succeeded); null otherwise. */
  progress: JobProgress | null;
}

/** Progress of a video job. */
export interface JobProgress {
  /** 0–100. */
  percent: number;
  /** Frames written so far. */
  frames: number;
  /** Frames per second being processed. */
  fps: number;
  /** Seconds left at the current speed (null until known). */
  eta_seconds: number | null;
}

/** Where the input comes from: exactly one. */
export type ProcessSource =
  /** An asset of the app. */
  | { assetId: string }
  /** A remote URL (https; fetched through the server's SSRF-safe fetcher). `headers` are forwarded once, never stored. */
  | { url: string; headers?: Record<string, string> }
  /** The bytes themselves (small inputs). */
  | { bytes: Blob | Uint8Array | ArrayBuffer };

/** A processing request (`POST /v1/process`, `POST /v1/jobs`). */
export interface ProcessRequest {
  input: ProcessSource;
  /** Operations, JSON (`{ op: 'resize', width: 400 }`) or string (`'resize:width=400'`) spelling. */
  operations: Operation[] | string;
  /** Fast, downscaled (≤ 512 px), visibly watermarked output. */
  preview?: boolean;
  /** Keep EXIF/XMP/IPTC metadata, GPS included (stripped by default). */
  keep_metadata?: boolean;
  output?: {
    /** Output retention in seconds (60 s to 7 days; default 24 h). */
    ttl_seconds?: number;
    /** Async only: also PUT the output to this presigned https URL. */
    put_url?: string;
  };
}

/** The bytes of a synchronous result. */
export interface ProcessedImage {
  contentType: string;
  data: Uint8Array;
}

/** Options of {@link JobsResource.wait}. */
export interface WaitOptions {
  signal?: AbortSignal | undefined;
  /** Give up after this many ms (default 600000) with `ERR_JOB_TIMEOUT`. */
  timeoutMs?: number | undefined;
  /** First poll delay (default 250 ms); grows ×1.5 up to `maxIntervalMs`. */
  intervalMs?: number | undefined;
  /** Longest poll delay (default 5000 ms). */
  maxIntervalMs?: number | undefined;
  /** Called after every poll with the job as it is now (a video job's `progress` included). */
  onPoll?: ((job: Job) => void) | undefined;
  /** Resolve with a failed or cancelled job instead of throwing `ERR_JOB_FAILED`. */
  allowFailure?: boolean | undefined;
}

function jsonInput(input: ProcessSource): Record<string, unknown> {
  if ('assetId' in input) return { asset_id: input.assetId };
  if ('url' in input) return { url: input.url, ...(input.headers ? { headers: input.headers } : {}) };
  throw usageError('bytes inputs are sent as the request body, not JSON.');
}

function bodyOf(req: ProcessRequest, store?: boolean): Pick<RequestSpec, 'json' | 'body' | 'headers' | 'query'> {
  if (!req || !req.input) throw usageError('input is required: { assetId }, { url } or { bytes }.');
  const given = ['assetId', 'url', 'bytes'].filter((k) => k in req.input);
  if (given.length !== 1) throw usageError('input must be exactly one of { assetId }, { url } or { bytes }.');
  if ('bytes' in req.input) {
    if (req.output?.put_url !== undefined) throw usageError('put_url is not available with a raw-bytes input; upload first and use { assetId }.');
    const query: RequestSpec['query'] = { operations: operationsPath(req.operations), preview: req.preview, keep_metadata: req.keep_metadata, store, ttl_seconds: req.output?.ttl_seconds };
    return { body: req.input.bytes as BodyInit, headers: { 'content-type': 'application/octet-stream' }, query };
  }
  const json: Record<string, unknown> = { input: jsonInput(req.input), operations: req.operations };
  if (req.preview !== undefined) json.preview = req.preview;
  if (req.keep_metadata !== undefined) json.keep_metadata = req.keep_metadata;
  const output = { ...(req.output ?? {}), ...(store ? { store: true } : {}) };
  if (Object.keys(output).length) json.output = output;
  return { json };
}

const TERMINAL = new Set<JobStatus>(['succeeded', 'failed', 'cancelled']);

/** Waits `ms`, or rejects with `ERR_ABORTED` as soon as `signal` aborts (the SDK's pollers share it). */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ObscuraError({ code: 'ERR_ABORTED', detail: 'Aborted.' }));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new ObscuraError({ code: 'ERR_ABORTED', detail: 'Aborted.' }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Asynchronous jobs: `POST /v1/jobs`, `GET /v1/jobs/{id}`. */
export class JobsResource {
  constructor(private readonly t: Transport) {}

  /**
   * `POST /v1/jobs`: queue a processing job. The SDK sends a random `Idempotency-Key` (pass your own
   * in `o.idempotencyKey` to dedupe across restarts): retries never create a second job.
   */
  create(req: ProcessRequest, o?: CallOpts): Promise<Job> {
    const b = bodyOf(req);
    // POST /v1/jobs takes JSON only; raw bytes go to /v1/process with Prefer: respond-async (same job).
    if (b.body !== undefined) return this.t.json(spec({ method: 'POST', path: '/v1/process', ...b, headers: { ...(b.headers ?? {}), prefer: 'respond-async' } }, o));
    return this.t.json(spec({ method: 'POST', path: '/v1/jobs', ...b }, o));
  }

  /**
   * `GET /v1/jobs`: one page of the org's jobs, newest first, filtered by status and creation time.
   * Pass `next_cursor` back as `cursor` (same filters) for the next page. Scope `jobs:read`.
   */
  list(query: JobListQuery = {}, o?: CallOpts): Promise<Page<Job>> {
    return this.t.json(spec({ method: 'GET', path: '/v1/jobs', query: { ...query } }, o));
  }

  /** Every job matching `query`, newest first, page by page. */
  all(query: Omit<JobListQuery, 'cursor'> = {}, o?: CallOpts): AsyncGenerator<Job> {
    return eachItem((cursor) => this.list({ ...query, cursor }, o));
  }

  /** `GET /v1/jobs/{id}`. Scope `jobs:read`. */
  get(id: string, o?: CallOpts): Promise<Job> {
    return this.t.json(spec({ method: 'GET', path: `/v1/jobs/${enc(id)}` }, o));
  }

  /**
   * `POST /v1/jobs/{id}/cancel`: cancel a queued or running job. A running video's ffmpeg is killed
   * within about a second and no output is kept. `ERR_CONFLICT` when the job already ended. Scope `jobs:write`.
   */
  cancel(id: string, o?: CallOpts): Promise<Job> {
    return this.t.json(spec({ method: 'POST', path: `/v1/jobs/${enc(id)}/cancel` }, o));
  }

  /**
   * Polls until the job succeeds, fails or is cancelled (backoff from 250 ms to 5 s). Throws `ERR_JOB_FAILED`
   * (with the job's error code in `problem.job_error_code`) unless `allowFailure`, and
   * `ERR_JOB_TIMEOUT` after `timeoutMs`.
   */
  async wait(id: string, opts: WaitOptions = {}): Promise<Job> {
    const deadline = Date.now() + (opts.timeoutMs ?? 600_000);
    let delay = opts.intervalMs ?? 250;
    const max = opts.maxIntervalMs ?? 5000;
    for (;;) {
      const job = await this.get(id, { signal: opts.signal });
      opts.onPoll?.(job);
      if (TERMINAL.has(job.status)) {
        if ((job.status === 'failed' || job.status === 'cancelled') && !opts.allowFailure) {
          throw new ObscuraError({
            code: 'ERR_JOB_FAILED',
            detail: job.error ? `${job.error.code}: ${job.error.message}` : 'The job failed.',
            problem: { type: 'urn:obscura:error:ERR_JOB_FAILED', title: 'Job failed', status: 0, detail: job.error?.message ?? 'The job failed.', code: 'ERR_JOB_FAILED', request_id: '', job_id: job.id, job_error_code: job.error?.code ?? null },
          });
        }
        return job;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new ObscuraError({ code: 'ERR_JOB_TIMEOUT', detail: `Job ${id} is still ${job.status}.` });
      await abortableSleep(Math.min(delay, left), opts.signal);
      delay = Math.min(max, Math.ceil(delay * 1.5));
    }
  }
}

/** `POST /v1/process`: synchronous (bytes back, or a stored asset) or `Prefer: respond-async` (a job). Scope `jobs:write`. */
export class ProcessResource {
  constructor(
    private readonly t: Transport,
    private readonly jobs: JobsResource,
  ) {}

  /**
   * Processes now and returns the output bytes (small inputs; the server bounds size and time and
   * answers 503 + Retry-After when busy, which the SDK retries). `accept` drives `format:auto`.
   */
  async run(req: ProcessRequest, o?: CallOpts & { accept?: string }): Promise<ProcessedImage> {
    const b = bodyOf(req);
    const res = await this.t.send(spec({ method: 'POST', path: '/v1/process', ...b, headers: { ...(b.headers ?? {}), ...(o?.accept ? { accept: o.accept } : {}) } }, o));
    const data = new Uint8Array(await res.arrayBuffer());
    return { contentType: res.headers.get('content-type') ?? 'application/octet-stream', data };
  }

  /** Processes now and stores the output as an encrypted asset (expires after `output.ttl_seconds`, default 24 h). */
  store(req: ProcessRequest, o?: CallOpts): Promise<Asset> {
    return this.t.json(spec({ method: 'POST', path: '/v1/process', ...bodyOf(req, true) }, o));
  }

  /** The same request with `Prefer: respond-async` (RFC 7240): 202 + a job to poll (Idempotency-Key honoured). */
  start(req: ProcessRequest, o?: CallOpts): Promise<Job> {
    const b = bodyOf(req);
    return this.t.json(spec({ method: 'POST', path: '/v1/process', ...b, headers: { ...(b.headers ?? {}), prefer: 'respond-async' } }, o));
  }

  /** {@link start} then {@link JobsResource.wait}. */
  async startAndWait(req: ProcessRequest, opts: WaitOptions & CallOpts = {}): Promise<Job> {
    const job = await this.start(req, opts);
    return this.jobs.wait(job.id, opts);
  }
}

export type WebhookEvent = 'job.completed' | 'job.failed';

export interface WebhookEndpoint {
  id: string;
  app_id: string;
  url: string;
  events: WebhookEvent[];
  description: string;
  enabled: boolean;
  previous_secret_expires_at: DateTime | null;
  created_at: DateTime;
  updated_at: DateTime;
}

export interface WebhookEndpointInput {
  url: string;
  events?: WebhookEvent[];
  description?: string;
  enabled?: boolean;
}

/** A new endpoint (or one whose secret was rotated): `secret` (`whsec_…`) is shown once. */
export interface WebhookWithSecret extends WebhookEndpoint {
  secret: string;
}

export interface WebhookDelivery {
  id: string;
  event_id: string;
  event_type: string;
  status: 'pending' | 'delivered' | 'failed';
  created_at: DateTime;
  finished_at: DateTime | null;
  attempts: Array<{ attempt: number; at: DateTime; status_code: number | null; duration_ms: number; error: string | null }>;
}

/** `/v1/webhooks`: endpoints of the credential's app. Scope `webhooks:manage`. */
export class WebhooksResource {
  constructor(private readonly t: Transport) {}
  /** `GET /v1/webhooks`: all the app's endpoints (every page). */
  async list(o?: CallOpts): Promise<WebhookEndpoint[]> {
    return allItems((cursor) => this.t.json<Page<WebhookEndpoint>>(spec({ method: 'GET', path: '/v1/webhooks', query: { limit: MAX_PAGE_LIMIT, cursor } }, o)));
  }
  /** `POST /v1/webhooks`: the URL must be https on a public address; `secret` is shown once. */
  create(input: WebhookEndpointInput, o?: CallOpts): Promise<WebhookWithSecret> {
    return this.t.json(spec({ method: 'POST', path: '/v1/webhooks', json: input }, o));
  }
  /** `GET /v1/webhooks/{id}` */
  get(id: string, o?: CallOpts): Promise<WebhookEndpoint> {
    return this.t.json(spec({ method: 'GET', path: `/v1/webhooks/${enc(id)}` }, o));
  }
  /** `PATCH /v1/webhooks/{id}`: URL, events, description, enabled. */
  update(id: string, input: Partial<WebhookEndpointInput>, o?: CallOpts): Promise<WebhookEndpoint> {
    return this.t.json(spec({ method: 'PATCH', path: `/v1/webhooks/${enc(id)}`, json: input }, o));
  }
  /** `DELETE /v1/webhooks/{id}` (and its delivery log). */
  async delete(id: string, o?: CallOpts): Promise<void> {
    await this.t.json(spec({ method: 'DELETE', path: `/v1/webhooks/${enc(id)}` }, o));
  }
  /** `POST /v1/webhooks/{id}/rotate-secret`: new secret now; the previous one keeps signing for `grace_seconds` (default 24 h). */
  rotateSecret(id: string, input: { grace_seconds?: number } = {}, o?: CallOpts): Promise<WebhookWithSecret> {
    return this.t.json(spec({ method: 'POST', path: `/v1/webhooks/${enc(id)}/rotate-secret`, json: input }, o));
  }
  /** `GET /v1/webhooks/{id}/deliveries`: one page (the newest `limit`, or after `cursor`), with every attempt. */
  async deliveries(id: string, query: PageQuery = {}, o?: CallOpts): Promise<WebhookDelivery[]> {
    return (await this.t.json<{ data: WebhookDelivery[] }>(spec({ method: 'GET', path: `/v1/webhooks/${enc(id)}/deliveries`, query: { ...query } }, o))).data;
  }
  /** `POST /v1/webhooks/{id}/test`: queue a signed `webhook.test` event to the endpoint; answers the pending delivery. */
  sendTest(id: string, o?: CallOpts): Promise<WebhookDelivery> {
    return this.t.json(spec({ method: 'POST', path: `/v1/webhooks/${enc(id)}/test` }, o));
  }
  /** `POST /v1/webhooks/{id}/deliveries/{delivery}/redeliver`: send a finished delivery's event again (a new delivery). */
  redeliver(id: string, deliveryId: string, o?: CallOpts): Promise<WebhookDelivery> {
    return this.t.json(spec({ method: 'POST', path: `/v1/webhooks/${enc(id)}/deliveries/${enc(deliveryId)}/redeliver` }, o));
  }
}

export interface UsageFigures {
  requests: number;
  bytes_in: number;
  bytes_out: number;
  processing_seconds: number;
  exports: { total: number; by_type: Record<string, number>; by_resolution?: Record<string, number> };
  /** On-device processing (POST /v1/telemetry): engine loads by platform and exports made on the device. */
  device?: { loads: { total: number; by_platform: Record<string, number> }; exports: { total: number; by_type: Record<string, number> } };
}

/** `GET /v1/usage/daily`: one month, per UTC day (zero-filled up to today). */
export interface UsageDays {
  month: string;
  days: Array<UsageFigures & { day: string }>;
}

export interface UsageReport {
  month: string;
  resets_at: DateTime;
  apps: Array<
    UsageFigures & {
      app_id: string;
      monthly_active_end_users: number;
      quotas: { requests: number | null; exports: number | null; bytes: number | null };
      keys: Array<UsageFigures & { key_id: string | null }>;
    }
  >;
}

/** `GET /v1/usage`. Scope `usage:read`. */
export class UsageResource {
  constructor(private readonly t: Transport) {}
  /** One UTC month (`YYYY-MM`, default current) of metered usage, per app and credential. */
  get(query: { month?: string; app_id?: string } = {}, o?: CallOpts): Promise<UsageReport> {
    return this.t.json(spec({ method: 'GET', path: '/v1/usage', query: { ...query } }, o));
  }
  /** `GET /v1/usage/daily`: one UTC month (default current) per day, every app summed (or one `app_id`). */
  daily(query: { month?: string; app_id?: string } = {}, o?: CallOpts): Promise<UsageDays> {
    return this.t.json(spec({ method: 'GET', path: '/v1/usage/daily', query: { ...query } }, o));
  }

  /**
   * `GET /v1/orgs/{orgId}/data-report`: the org's data inventory (media per app and kind, retention,
   * unfinished uploads, record counts). Scopes `apps:read` and `assets:read`.
   */
  dataReport(orgId: string, o?: CallOpts): Promise<DataReport> {
    return this.t.json(spec({ method: 'GET', path: `/v1/orgs/${encodeURIComponent(orgId)}/data-report` }, o));
  }
}

/** The org's data inventory (counts and sizes, never content). */
export interface DataReport {
  org_id: string;
  generated_at: DateTime;
  media: Array<{ app_id: string; kind: 'upload' | 'output'; count: number; bytes: number; oldest: DateTime | null; newest: DateTime | null; expiring: number; held: number }>;
  retention: Array<{ app_id: string; name: string; originals_seconds: number | null; outputs_seconds: number; metadata_policy: MetadataPolicy }>;
  open_uploads: { count: number; declared_bytes: number };
  records: Record<string, number>;
}

export interface TransformKey {
  /** `tfk_…` */
  id: string;
  app_id: string;
  created_at: DateTime;
}

/** A new transform key: `secret` (base64url, 32 bytes) is shown once; keep it on servers. */
export interface TransformKeyWithSecret extends TransformKey {
  secret: string;
}

export interface TransformPreset {
  name: string;
  /** Canonical string form. */
  operations: string;
  updated_at: DateTime;
}

/**
 * Transform-URL signing keys and presets of an app (`/v1/apps/{id}/transform-keys`,
 * `/v1/apps/{id}/transform-presets`). Build the URLs themselves with `buildTransformUrl` from
 * `@obscura/sdk/node` (HMAC on your backend).
 */
export class TransformResource {
  constructor(private readonly t: Transport) {}
  /** `POST /v1/apps/{appId}/transform-keys`. Scopes `keys:manage` and `assets:read` (the key reads every asset). */
  createKey(appId: string, o?: CallOpts): Promise<TransformKeyWithSecret> {
    return this.t.json(spec({ method: 'POST', path: `/v1/apps/${enc(appId)}/transform-keys` }, o));
  }
  /** `GET /v1/apps/{appId}/transform-keys` (ids only; every page). */
  async listKeys(appId: string, o?: CallOpts): Promise<TransformKey[]> {
    return allItems((cursor) => this.t.json<Page<TransformKey>>(spec({ method: 'GET', path: `/v1/apps/${enc(appId)}/transform-keys`, query: { limit: MAX_PAGE_LIMIT, cursor } }, o)));
  }
  /** `DELETE /v1/apps/{appId}/transform-keys/{kid}`: URLs signed with it stop working. Scopes `keys:manage` and `assets:read`. */
  async deleteKey(appId: string, kid: string, o?: CallOpts): Promise<void> {
    await this.t.json(spec({ method: 'DELETE', path: `/v1/apps/${enc(appId)}/transform-keys/${enc(kid)}` }, o));
  }
  /** `GET /v1/apps/{appId}/transform-presets` (every page). Scope `apps:read`. */
  async listPresets(appId: string, o?: CallOpts): Promise<TransformPreset[]> {
    return allItems((cursor) => this.t.json<Page<TransformPreset>>(spec({ method: 'GET', path: `/v1/apps/${enc(appId)}/transform-presets`, query: { limit: MAX_PAGE_LIMIT, cursor } }, o)));
  }
  /** `PUT /v1/apps/{appId}/transform-presets/{name}`: create or replace (`preset:<name>` in URLs). Scope `apps:write`. */
  putPreset(appId: string, name: string, operations: Operation[] | string, o?: CallOpts): Promise<TransformPreset> {
    return this.t.json(spec({ method: 'PUT', path: `/v1/apps/${enc(appId)}/transform-presets/${enc(name)}`, json: { operations } }, o));
  }
  /** `DELETE /v1/apps/{appId}/transform-presets/{name}`. */
  async deletePreset(appId: string, name: string, o?: CallOpts): Promise<void> {
    await this.t.json(spec({ method: 'DELETE', path: `/v1/apps/${enc(appId)}/transform-presets/${enc(name)}` }, o));
  }
}
