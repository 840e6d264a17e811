/**
 * The processing service: one object per process that the HTTP routes and the job workers share. It
 * owns the bounded work queue, the remote-URL fetchers, the transform key cache and the decrypted
 * source cache. The durable queue that runs jobs on it lives in `jobs/` (see jobs/runtime.ts).
 */
import type { UsageMeter } from '../usage/meter.js';
import type { ProcessingSettings } from './settings.js';
import type { MediaSettings } from '../media/settings.js';
import type { DatabaseHandle } from '../db/database.js';
import type { MasterKeys } from '../crypto/master.js';
import type { Keyring } from '../crypto/keyring.js';
import type { BlobStore } from '../assets/stores/types.js';
import { getAsset, ingest, DEFAULT_OUTPUT_TTL_SECONDS, type Asset } from '../assets/assets.js';
import { openAssetStream } from '../assets/read.js';
import { createWorkQueue, type WorkQueue } from '../media/queue.js';
import { DEFAULT_MEDIA_LIMITS } from '../media/limits.js';
import { assertAffordable, estimateCostUpFront, type ProcessResult } from '../media/image/pipeline.js';
import { AppError } from '../errors.js';
import type { Ctx } from '../tenants/index.js';
import { Readable } from 'node:stream';
import { readFile } from 'node:fs/promises';
import { sniff } from '../media/sniff.js';
import { isVideoType, videoProbeFor, type VideoFacts } from '../media/video/probe.js';
import { compileVideoOperations } from '../media/video/operations.js';
import type { SourceBytes } from '../media/video/source.js';
import { VideoProcessing, videoNeedsJob, type ResolvedVideoSettings } from './video.js';
import { appSettings, compileOperations, estimateMemory, fetchRemote, limitsFor, MAX_OUTPUT_TTL_SECONDS, readAsset, readBounded, runPipeline, type ProcessingDeps, type ProcessingInput } from './processing.js';
import { createRemote, type Remote, type RemotePolicy } from '../remote/remote.js';
import { SourceCache, TransformKeys, acceptClass, expandPresetSegments, parseTransformUrl, resolveTransformOperations, transformEtag } from './transform.js';

/** The configuration sections the processing service reads (the server's `Config` has them). */
export interface ProcessingServiceSettings {
  readonly processing: ProcessingSettings;
  readonly media: MediaSettings;
  readonly unsafe: { readonly remoteAllowHttp: boolean; readonly remoteAllowPrivate: boolean };
  readonly video: ResolvedVideoSettings;
  /** The default metadata policy of job input copies (`OBSCURA_METADATA_POLICY`). */
  readonly uploads?: { readonly metadataPolicy: 'keep' | 'strip_location' | 'strip_all' };
}

/** Construction options of {@link createProcessingService}. */
export interface ProcessingServiceOptions {
  db: DatabaseHandle;
  store: BlobStore;
  keyring: Keyring;
  masterKeys: MasterKeys;
  config: ProcessingServiceSettings;
  now?: (() => number) | undefined;
  /**
   * UNSAFE overrides of the remote-URL policy, for tests and development only: `unsafeTestAllow`
   * (e.g. one 127.0.0.1 test server), `lookup`, `tls`. Never from user input.
   */
  remote?: Partial<RemotePolicy> | undefined;
  /** The process's usage meter: every output is counted (exports, pixels, processing time). */
  meter?: UsageMeter | undefined;
  /**
   * Refuses an export the app's monthly quota no longer allows (transform URLs carry no credential,
   * so the HTTP perimeter cannot check them); throws `ERR_QUOTA_EXCEEDED`.
   */
  exportAllowed?: ((orgId: string, appId: string) => Promise<void>) | undefined;
}

/** A transform response, decided before (304) or after processing (200). */
export interface TransformResponse {
  status: 200 | 304;
  etag: string;
  /** Seconds until the URL expires (the CDN may keep the response that long). */
  maxAge: number;
  varyAccept: boolean;
  result?: ProcessResult;
  /** The app requires authorized URLs: the caller's credential was checked; the answer must stay private (no shared cache). */
  authorized?: boolean;
}

/**
 * Checks the request's bearer credential for an "authorized" URL: it must belong to `orgId` and hold
 * `assets:read` (the HTTP layer supplies it; the service knows nothing of requests).
 */
export type AuthorizeRead = (orgId: string) => Promise<void>;

/** Input of {@link ProcessingService.processSync}. */
export interface SyncRequest {
  orgId: string;
  appId: string;
  input: ProcessingInput;
  operations: unknown;
  preview?: boolean | undefined;
  keepMetadata?: boolean | undefined;
  accept?: string | undefined;
  signal?: AbortSignal | undefined;
  /** The credential that asked (usage is counted per app and per credential). */
  keyId?: string | null | undefined;
}

/** See the module comment. */
export class ProcessingService {
  readonly remote: Remote;
  readonly queue: WorkQueue;
  readonly transformKeys: TransformKeys;
  /** Decrypted transform sources, briefly (see SourceCache). */
  readonly sources: SourceCache;
  readonly deps: ProcessingDeps;
  /** Video outputs (previews and poster frames here; whole videos in jobs). */
  readonly video: VideoProcessing;

  constructor(private readonly o: ProcessingServiceOptions) {
    const { config } = o;
    this.remote = createRemote(
      { allowHttp: config.unsafe.remoteAllowHttp, unsafeAllowPrivateAddresses: config.unsafe.remoteAllowPrivate, allowedPorts: [...config.processing.remoteAllowedPorts], ...o.remote },
      // Remote inputs are bounded like any input (the app's own limit applies again when it is read).
      { timeoutMs: config.processing.remoteTimeoutMs, maxInputBytes: DEFAULT_MEDIA_LIMITS.maxInputBytes },
    );
    // Fair across orgs, bounded in waiting time and in decoded-image memory (issue 9, item 4).
    this.queue = createWorkQueue({
      concurrency: config.processing.concurrency,
      maxQueued: config.processing.maxQueued,
      perKeyConcurrency: Math.min(config.processing.concurrencyPerOrg, config.processing.concurrency),
      perKeyQueued: Math.min(config.processing.maxQueuedPerOrg, config.processing.maxQueued),
      maxWaitMs: config.processing.maxWaitMs,
      memoryBudgetBytes: config.processing.memoryBudgetBytes,
    });
    this.deps = { db: o.db, store: o.store, keyring: o.keyring, now: o.now, meter: o.meter, maxInputPixels: config.media.maxInputPixels, metadataPolicy: config.uploads?.metadataPolicy, videoProbe: videoProbeFor(config.video) };
    this.video = new VideoProcessing(this.deps, config.video, config.media.maxOutputDimension);
    this.transformKeys = new TransformKeys(o.db, o.masterKeys, { now: o.now });
    this.sources = new SourceCache({ now: o.now });
  }

  get config(): ProcessingServiceSettings {
    return this.o.config;
  }

  get masterKeys(): MasterKeys {
    return this.o.masterKeys;
  }

  /**
   * Synchronous processing: validate operations, then load the input and process it inside one slot
   * of the bounded queue (so concurrency also bounds the memory held by inputs).
   * @throws AppError 400 (operations) before any fetch or decode; 503 + Retry-After when the queue is full.
   */
  async processSync(req: SyncRequest): Promise<ProcessResult> {
    // The input's media kind picks the registry: an asset's type is in its row, sent bytes are sniffed.
    if (req.input.kind === 'asset') {
      const assetId = req.input.assetId;
      const asset = await this.o.db.withTenant(req.orgId, (trx) => getAsset(trx, req.orgId, assetId, this.o.now?.() ?? Date.now()));
      if (isVideoType(asset.mime)) return this.videoSync(req, asset.mime, this.video.sourceOfAsset(asset), asset.video);
    } else if (req.input.kind === 'upload') {
      const type = await sniff(req.input.bytes);
      if (type && isVideoType(type.mime)) return this.videoSync(req, type.mime, VideoProcessing.sourceOfBuffer(req.input.bytes), null);
    }
    const compiled = compileOperations(req.operations);
    const settings = await this.o.db.withTenant(req.orgId, (trx) => appSettings(trx, req.orgId, req.appId));
    const limits = limitsFor(settings, { ...this.o.config.media, maxCost: this.o.config.processing.maxCost });
    // The input's size decides its place under the memory budget: an asset's is known from its row and
    // sent bytes from their header before a slot is taken; a remote input is fetched inside its slot
    // (so slots also bound concurrent fetches) and reserves its memory once its header is read.
    let memoryBytes = 0;
    if (req.input.kind === 'asset') {
      const assetId = req.input.assetId;
      const asset = await this.o.db.withTenant(req.orgId, (trx) => getAsset(trx, req.orgId, assetId, this.o.now?.() ?? Date.now()));
      // Too much work is refused before a slot is taken or a byte is read (the stored size suffices).
      if (asset.width && asset.height) assertAffordable(estimateCostUpFront(compiled.plan, { width: asset.width, height: asset.height, format: asset.mime.replace(/^image\//, '') }, limits, { accept: req.accept, preview: req.preview }), limits);
      memoryBytes = await estimateMemory(asset, { plan: compiled.plan, limits, preview: req.preview });
    } else if (req.input.kind === 'upload') {
      memoryBytes = await estimateMemory(req.input.bytes, { plan: compiled.plan, limits, preview: req.preview });
    }
    return this.queue.run(async (slot) => {
      let input: Buffer;
      if (req.input.kind === 'asset') input = (await readAsset(this.deps, req.orgId, req.input.assetId, limits.maxInputBytes)).bytes;
      else if (req.input.kind === 'url') {
        input = await fetchRemote(this.remote.inputs, req.input.url, req.input.headers, req.signal);
        const type = await sniff(input);
        if (type && isVideoType(type.mime)) throw new AppError('ERR_UNPROCESSABLE', 'A video from a URL is processed as a job: POST /v1/jobs (or send Prefer: respond-async) with the same body.', { details: { reason: 'video_needs_job' } });
        slot.reserve(await estimateMemory(input, { plan: compiled.plan, limits, preview: req.preview }));
      } else input = req.input.bytes;
      return runPipeline(this.deps, { orgId: req.orgId, input, plan: compiled.plan, limits, accept: req.accept, preview: req.preview, keepMetadata: req.keepMetadata, signal: req.signal, billTo: { appId: req.appId, keyId: req.keyId } });
    }, { key: req.orgId, memoryBytes, signal: req.signal });
  }

  /**
   * A preview or poster frame of a video, in the request (bounded by the video sync queue); a whole
   * transcode is refused here with a pointer to jobs.
   */
  private async videoSync(req: SyncRequest, mime: string, source: SourceBytes, known: VideoFacts | null): Promise<ProcessResult> {
    const { plan } = compileVideoOperations(req.operations);
    // One short file comes back in the request: a preview, a poster frame or an animation.
    if (!req.preview && !plan.steps.some((s) => s.operation.name === 'poster' || s.operation.name === 'animate')) throw videoNeedsJob();
    if (plan.steps.some((s) => s.operation.name === 'storyboard' || s.operation.name === 'hls')) throw videoNeedsJob();
    return this.video.queue.run(async () => {
      const out = await this.video.run({ orgId: req.orgId, mime, source, known, plan, preview: req.preview ? {} : null, signal: req.signal, billTo: { appId: req.appId, keyId: req.keyId } });
      try {
        const data = await readFile(out.path);
        // `format` names the container for a video output; only image callers read it as an image format.
        return { data, info: { format: out.ext as ProcessResult['info']['format'], mime: out.mime, width: out.width, height: out.height, size: data.length, frames: 1 }, varyAccept: false };
      } finally {
        await out.cleanup();
      }
    }, { key: req.orgId, signal: req.signal });
  }

  /**
   * Replaces every `preset:NAME` of the app (string form or array item) with the preset's operations,
   * so presets work in `/v1/process` and jobs as in transform URLs. `ERR_VALIDATION` (reason
   * `unknown_preset`) for a name the app does not have.
   */
  async expandPresets(orgId: string, appId: string, operations: unknown): Promise<unknown> {
    const mentions = typeof operations === 'string' ? operations.includes('preset:') : Array.isArray(operations) && operations.some((o) => typeof o === 'string' && o.startsWith('preset:'));
    if (!mentions) return operations;
    const { presets } = await this.transformKeys.app(orgId, appId);
    return expandPresetSegments(operations, presets);
  }

  /** Stores a synchronous result as an output asset (encrypted, expiring after `ttlSeconds`, default 24 h). */
  async storeOutput(orgId: string, appId: string, result: ProcessResult, ttlSeconds: number | undefined, ctx: Ctx): Promise<Asset> {
    const ttl = ttlSeconds ?? (await this.o.db.withTenant(orgId, (trx) => appSettings(trx, orgId, appId))).output_retention_seconds ?? DEFAULT_OUTPUT_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 60 || ttl > MAX_OUTPUT_TTL_SECONDS) {
      throw new AppError('ERR_VALIDATION', `The output retention must be 60 to ${MAX_OUTPUT_TTL_SECONDS} seconds.`, { details: { field: 'output.ttl_seconds' } });
    }
    return ingest({ db: this.o.db, store: this.o.store, keyring: this.o.keyring, now: this.o.now }, {
      orgId,
      appId,
      kind: 'output',
      body: Readable.from([result.data]),
      maxBytes: result.data.length,
      ttlSeconds: ttl,
      ctx,
    });
  }

  /**
   * Serves a signed transform URL (`rawUrl` = path and query exactly as received).
   * A matching `If-None-Match` is answered 304 before any decoding.
   */
  async transform(rawUrl: string, accept: string | undefined, ifNoneMatch: string | undefined, signal?: AbortSignal, authorize?: AuthorizeRead): Promise<TransformResponse> {
    const parsed = parseTransformUrl(rawUrl);
    const key = await this.transformKeys.verify(parsed);
    const facts = await this.transformKeys.app(key.orgId, key.appId);
    const compiled = resolveTransformOperations(parsed.operations, facts);
    const now = this.o.now?.() ?? Date.now();
    // The key decides the org: an asset of any other org is "not found" (RLS + explicit filter).
    const asset = await this.transformKeys.asset(key.orgId, parsed.assetId);
    // require_authorized_urls covers transform URLs as it covers signed download URLs: the signed link
    // alone is not enough when the key's app or the asset's app asks for it. Checked before the ETag,
    // so a 304 reveals nothing either.
    const assetFacts = asset.appId === key.appId ? facts : await this.transformKeys.app(asset.orgId, asset.appId);
    const authorized = facts.settings.require_authorized_urls === true || assetFacts.settings.require_authorized_urls === true;
    if (authorized) {
      if (!authorize) throw new AppError('ERR_AUTH_MISSING', 'This app requires authorized URLs: send a credential of the org with the assets:read scope.');
      await authorize(key.orgId);
    }
    const varyAccept = compiled.plan.negotiatesFormat;
    const etag = transformEtag({ sourceSha256: asset.sha256, operations: compiled.canonical, accept: varyAccept ? acceptClass(accept) : '' });
    const maxAge = Math.max(0, Math.min(365 * 86400, parsed.exp - Math.floor(now / 1000)));
    if (ifNoneMatch !== undefined && ifNoneMatch.split(',').some((t) => t.trim() === etag || t.trim() === `W/${etag}`)) {
      return { status: 304, etag, maxAge, varyAccept, authorized };
    }
    await this.o.exportAllowed?.(key.orgId, key.appId);
    const limits = limitsFor(facts.settings, { ...this.o.config.media, maxCost: this.o.config.processing.maxCost });
    if (asset.width && asset.height) assertAffordable(estimateCostUpFront(compiled.plan, { width: asset.width, height: asset.height, format: asset.mime.replace(/^image\//, '') }, limits, { accept }), limits);
    const result = await this.queue.run(async () => {
      if (asset.size > limits.maxInputBytes) throw new AppError('ERR_PAYLOAD_TOO_LARGE', 'The input is too large.', { details: { maxBytes: limits.maxInputBytes } });
      const input = await this.sources.get(`${asset.orgId}/${asset.id}/${asset.sha256}`, async () => readBounded(await openAssetStream(this.deps, asset), limits.maxInputBytes));
      // A transform URL is billed to the app of the key that signed it.
      return runPipeline(this.deps, { orgId: key.orgId, input, plan: compiled.plan, limits, accept, signal, billTo: { appId: key.appId } });
    }, { key: key.orgId, memoryBytes: await estimateMemory(asset, { plan: compiled.plan, limits }), signal });
    return { status: 200, etag, maxAge, varyAccept, result, authorized };
  }
}

/** Creates the per-process processing service. */
export function createProcessingService(o: ProcessingServiceOptions): ProcessingService {
  return new ProcessingService(o);
}
