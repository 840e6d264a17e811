/**
 * The processing core shared by `POST /v1/process`, jobs and transform URLs: validate operations,
 * load inputs (an asset of the caller's org, a remote URL through the SSRF-safe fetcher, or bytes),
 * run the pipeline; outputs become assets through assets/outputs.ts (assets/ writes every asset row and blob).
 *
 * Nothing here knows HTTP. Every asset read is scoped to one org (RLS transaction + explicit filter),
 * so a watermark or input id of another org is "not found", never read.
 */
import { createHmac } from 'node:crypto';
import { Readable } from 'node:stream';
import type { DatabaseHandle, Tx } from '../db/database.js';
import type { AppSettings } from '../db/schema.js';
import sharp from 'sharp';
import { AppError } from '../errors.js';
import { getApp } from '../tenants/index.js';
import type { Keyring } from '../crypto/keyring.js';
import { randomBase62 } from '../crypto/random.js';
import type { BlobStore } from '../assets/stores/types.js';
import { getAsset, type Asset, type VideoProbe } from '../assets/assets.js';
import type { OutputFile } from '../assets/outputs.js';
import { openAssetStream } from '../assets/read.js';
import { mediaLimits, type MediaLimits } from '../media/limits.js';
import { buildPlan, parseOperations, serializeOperations, type ParsedOperation, type Plan } from '../media/image/operations/registry.js';
import { PREVIEW_MAX_DIMENSION, processImage, type ProcessResult } from '../media/image/pipeline.js';
import { predictOutput } from '../media/image/output-size.js';
import type { OutputFormat } from '../media/image/operations/types.js';
import type { Fetcher } from '../remote/fetcher.js';
import { resolutionBucket, type UsageMeter } from '../usage/meter.js';

/** What processing needs from the outside world. */
/** Largest output retention a caller may ask for (7 days); the default is 24 h. */
export { MAX_OUTPUT_TTL_SECONDS } from '../assets/assets.js';

/** Where a processing request's input comes from: an asset of the org, a remote URL, or sent bytes. */
export type ProcessingInput =
  | { kind: 'asset'; assetId: string }
  | { kind: 'url'; url: string; headers?: Record<string, string> | undefined }
  | { kind: 'upload'; bytes: Buffer };

export interface ProcessingDeps {
  db: DatabaseHandle;
  store: BlobStore;
  keyring: Keyring;
  now?: () => number;
  /** Where exports and processing time are counted (the process's usage meter); none = not metered. */
  meter?: UsageMeter | undefined;
  /** The operator's pixel limit (`OBSCURA_MAX_INPUT_PIXELS`), for input copies kept as assets. */
  maxInputPixels?: number | undefined;
  /** The metadata policy of apps that set none (`OBSCURA_METADATA_POLICY`), for input copies. */
  metadataPolicy?: 'keep' | 'strip_location' | 'strip_all' | undefined;
  /** Probes uploaded videos (input copies of jobs are uploads too); see AssetDeps.videoProbe. */
  videoProbe?: VideoProbe | undefined;
}

/** Validated operations in the three forms callers need. */
export interface CompiledOperations {
  ops: ParsedOperation[];
  plan: Plan;
  /** Canonical string form (sorted parameters), stored on jobs and used in fingerprints. */
  canonical: string;
}

/**
 * Parses and validates operations (JSON array or string form) before anything is fetched or decoded.
 * @throws AppError `ERR_VALIDATION` (400) naming the operation.
 */
export function compileOperations(input: unknown): CompiledOperations {
  const ops = parseOperations(input);
  const plan = buildPlan(ops);
  return { ops, plan, canonical: serializeOperations(ops) };
}

/** The app's settings (policy), inside a tenant transaction. 404 when the app is not the org's. */
export async function appSettings(trx: Tx, orgId: string, appId: string): Promise<AppSettings> {
  return (await getApp(trx, orgId, appId)).settings;
}

/**
 * Media limits for an app: the operator's limits (`config.media`, `OBSCURA_PROCESS_MAX_COST`; the
 * secure defaults where unset), SVG only when the app enabled it.
 */
export function limitsFor(settings: AppSettings, server: Partial<Omit<MediaLimits, 'allowSvg'>> = {}): Readonly<MediaLimits> {
  return mediaLimits({ ...server, allowSvg: settings.allow_svg === true });
}

/**
 * Memory a run is expected to hold: its decoded input frames (4 B/pixel, RGBA) and about as much
 * again for libvips' working buffers, plus — when the plan is given — its output (4 B/pixel) once
 * more for every stage that holds a whole output frame (blur, trim, free rotation, overlays, AVIF/GIF
 * encoders), so an enlargement is reserved for what it produces, not for its small input. Used to
 * admit work under the processing memory budget; 0 when the header cannot be read (the pipeline
 * then refuses the input).
 */
export async function estimateMemory(
  input: Buffer | { width: number | null; height: number | null },
  output?: { plan: Plan; limits: Readonly<MediaLimits>; preview?: boolean | undefined },
): Promise<number> {
  let pixels = 0;
  let width = 0;
  let height = 0;
  if (Buffer.isBuffer(input)) {
    try {
      const m = await sharp(input, { failOn: 'none', limitInputPixels: false }).metadata();
      width = m.width ?? 0;
      height = m.pageHeight ?? m.height ?? 0;
      pixels = width * height * Math.max(1, m.pages ?? 1);
    } catch {
      pixels = 0;
    }
  } else {
    width = input.width ?? 0;
    height = input.height ?? 0;
    pixels = width * height;
  }
  let outputBytes = 0;
  if (output && width > 0 && height > 0) {
    const out = predictOutput(output.plan, { width, height }, output.limits, { preview: output.preview === true, previewMaxDimension: PREVIEW_MAX_DIMENSION });
    outputBytes = out.width * out.height * 4 * (1 + out.wholeFrameStages);
  }
  return pixels * 4 * 2 + outputBytes;
}

/** Reads a stream into memory, failing with 413 beyond `maxBytes` (bounded memory). */
export async function readBounded(stream: Readable, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) throw new AppError('ERR_PAYLOAD_TOO_LARGE', 'The input is too large.', { details: { maxBytes } });
      chunks.push(chunk);
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks, total);
}

/**
 * The decrypted bytes of an asset of `orgId`. Missing, expired, deleted and other orgs' assets are
 * all ERR_NOT_FOUND (one answer); larger than `maxBytes` is ERR_PAYLOAD_TOO_LARGE before reading.
 */
export async function readAsset(deps: ProcessingDeps, orgId: string, assetId: string, maxBytes: number): Promise<{ asset: Asset; bytes: Buffer }> {
  const asset = await deps.db.withTenant(orgId, (trx) => getAsset(trx, orgId, assetId, deps.now?.() ?? Date.now()));
  if (asset.size > maxBytes) throw new AppError('ERR_PAYLOAD_TOO_LARGE', 'The input is too large.', { details: { maxBytes } });
  const stream = await openAssetStream(deps, asset);
  return { asset, bytes: await readBounded(stream, maxBytes) };
}

/**
 * Fetches a remote input through the SSRF-safe fetcher. `headers` (the customer's temporary
 * credentials for their storage) are forwarded on this one call and kept nowhere.
 */
export async function fetchRemote(fetcher: Fetcher, url: string, headers: Record<string, string> | undefined, signal?: AbortSignal): Promise<Buffer> {
  const res = await fetcher.getBuffer(url, { headers: headers ?? {}, signal });
  return res.body;
}

/** Options of {@link runPipeline}. */
export interface RunOptions {
  orgId: string;
  input: Buffer;
  plan: Plan;
  limits: Readonly<MediaLimits>;
  accept?: string | undefined;
  preview?: boolean;
  keepMetadata?: boolean;
  signal?: AbortSignal | undefined;
  /** The app (and credential) the output is billed to. */
  billTo: { appId: string; keyId?: string | null | undefined };
}

/**
 * Runs the pipeline; watermarks load only assets of the same org. The one place every output is
 * produced (sync, jobs, previews, transform URLs), so it is also where each is metered: one export of
 * its media type, its pixels, and the processing time (issue 9, item 7).
 */
export async function runPipeline(deps: ProcessingDeps, o: RunOptions): Promise<ProcessResult> {
  const started = performance.now();
  const result = await processImage(o.input, o.plan, {
    limits: o.limits,
    accept: o.accept,
    preview: o.preview === true,
    keepMetadata: o.keepMetadata === true,
    signal: o.signal,
    loadAsset: async (assetId) => (await readAsset(deps, o.orgId, assetId, o.limits.maxInputBytes)).bytes,
  });
  const { mime, width, height, frames } = result.info;
  deps.meter?.record({
    orgId: o.orgId,
    appId: o.billTo.appId,
    keyId: o.billTo.keyId ?? null,
    exports: { [mime]: 1 },
    pixels: { [mime]: width * height * Math.max(1, frames) },
    resolutions: { [resolutionBucket(width, height)]: 1 },
    processingMs: performance.now() - started,
  });
  return result;
}

const EXT: Readonly<Record<OutputFormat, string>> = { jpeg: 'jpg', png: 'png', webp: 'webp', avif: 'avif', gif: 'gif', tiff: 'tif' };

/** File extension for an output format (as the sniffer names it). */
export function extensionOf(format: OutputFormat): string {
  return EXT[format];
}

/**
 * The output asset id of one job attempt: `ast_` + 22 base62 characters of HMAC-SHA256(seed, attempt).
 * Deterministic, so a later attempt can find and remove an earlier attempt's half-written blob; as
 * unguessable as a random id because the seed is a secret random value stored with the job.
 */
export function attemptAssetId(seed: string, attempt: number): string {
  const mac = createHmac('sha256', seed).update(`obscura/job-output/v1:${attempt}`).digest();
  const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  let n = BigInt(`0x${mac.toString('hex')}`);
  let out = '';
  for (let i = 0; i < 22; i++) {
    out += alphabet[Number(n % 62n)];
    n /= 62n;
  }
  return `ast_${out}`;
}

/** A new secret seed for {@link attemptAssetId}. */
export function newOutputSeed(): string {
  return randomBase62(32);
}

/** A pipeline result as an output file for assets/ ({@link stageOutput} and `storeOutput`). */
export function outputFileOf(result: ProcessResult): OutputFile {
  const info = result.info;
  return { data: result.data, mime: info.mime, ext: extensionOf(info.format), width: info.width, height: info.height };
}
