/**
 * The image pipeline: untrusted bytes + validated operations → output bytes.
 *
 * Steps: parse/validate operations (400 before anything is read) → {@link inspect} (sniff, allowlist,
 * header-only limits) → one sharp pipeline with the pixel limit, sequential read, `failOn: 'error'`,
 * EXIF auto-orientation and a libvips timeout → operations in registry order → overlays (watermark,
 * text, preview mark) on the processed image → encoder. Metadata (EXIF, GPS, XMP, IPTC) is stripped
 * unless `keepMetadata`; the ICC colour profile is kept.
 *
 * Concurrency is the caller's: run this inside a {@link createWorkQueue} queue and set
 * `sharp.concurrency()` at startup (see queue.ts).
 */
import sharp, { type Sharp, type OverlayOptions } from 'sharp';
import { AppError, isAppError } from '../../errors.js';
import type { MediaLimits } from '../limits.js';
import { inspect, type ImageInfo } from './inspect.js';
import { applyResize } from './operations/geometry.js';
import { buildPlan, parseOperations, type Plan } from './operations/registry.js';
import { newOperationContext, type OutputFormat } from './operations/types.js';
import { renderText } from './text.js';
import { predictOutput } from './output-size.js';
import { sharpOverlayDrawing } from './overlays.js';
import { assertAffordable, DEFAULT_QUALITY, estimateCost, negotiateFormat, OUTPUT_MIME, type CostEstimate } from './choices.js';

export { assertAffordable, estimateCost, negotiateFormat, OUTPUT_MIME, type CostEstimate };

/** Options for {@link processImage}. */
export interface ProcessOptions {
  /** Limits for this app (see {@link MediaLimits}). */
  limits: Readonly<MediaLimits>;
  /**
   * Loads another asset for `watermark`. Security: must only return assets of the same org and throw
   * `notFound()` otherwise. Default: every id is "not found".
   */
  loadAsset?: (assetId: string) => Promise<Buffer>;
  /** The request's Accept header, used by `format: auto`. */
  accept?: string;
  /** Keep EXIF/XMP/IPTC (including GPS) in the output. Default false (privacy: DESIGN.md). */
  keepMetadata?: boolean;
  /** Preview mode: output ≤ 512 px per side with a visible diagonal "PREVIEW" mark. Default false. */
  preview?: boolean;
  /** Aborts between stages (libvips work in flight finishes or times out). */
  signal?: AbortSignal;
}

/** Facts about the produced output. */
export interface OutputDescription {
  format: OutputFormat;
  mime: string;
  width: number;
  /** Height of one frame. */
  height: number;
  /** Size in bytes. */
  size: number;
  /** Frames in the output (1 unless an animation was kept). */
  frames: number;
}

/** Result of {@link processImage}. */
export interface ProcessResult {
  data: Buffer;
  info: OutputDescription;
  /** True when the format was negotiated from Accept: the response must carry `Vary: Accept`. */
  varyAccept: boolean;
}

/** Longest side of a preview. */
export const PREVIEW_MAX_DIMENSION = 512;

const ANIMATED_FORMATS: ReadonlySet<OutputFormat> = new Set(['gif', 'webp']);

function chooseFormat(plan: Plan, source: ImageInfo, accept: string | undefined, flattened: boolean): OutputFormat {
  const requested = plan.format;
  if (requested === 'auto') {
    return negotiateFormat(accept, { hasAlpha: source.hasAlpha && !flattened, animated: source.frames > 1 && !plan.hasOverlays });
  }
  if (requested !== undefined) return requested;
  return source.format === 'svg' ? 'png' : source.format;
}

function checkAbort(signal: AbortSignal | undefined, deadline: number): void {
  if (signal?.aborted) {
    throw new AppError('ERR_UNAVAILABLE', 'Processing was cancelled.', { details: { reason: 'aborted' } });
  }
  if (Date.now() > deadline) {
    throw new AppError('ERR_UNPROCESSABLE', 'The image took too long to process.', { details: { reason: 'timeout' } });
  }
}

/** Maps a libvips/sharp failure to a public error without echoing its message. */
function processingError(cause: unknown): AppError {
  if (isAppError(cause)) return cause;
  const message = cause instanceof Error ? cause.message : '';
  if (/timeout/i.test(message)) {
    return new AppError('ERR_UNPROCESSABLE', 'The image took too long to process.', { cause, details: { reason: 'timeout' } });
  }
  if (/pixel limit/i.test(message)) {
    return new AppError('ERR_IMAGE_TOO_LARGE', 'The image is too large to process.', { cause, details: { reason: 'pixels' } });
  }
  return new AppError('ERR_UNPROCESSABLE', 'The image could not be processed.', { cause });
}

function timeoutSeconds(limits: Readonly<MediaLimits>): number {
  return Math.max(1, Math.ceil(limits.timeoutMs / 1000));
}

function encode(image: Sharp, format: OutputFormat, quality: number | undefined, keepMetadata: boolean): Sharp {
  const q = quality ?? DEFAULT_QUALITY[format];
  switch (format) {
    case 'jpeg':
      image.jpeg({ quality: q });
      break;
    case 'png':
      image.png();
      break;
    case 'webp':
      image.webp({ quality: q });
      break;
    case 'avif':
      image.avif({ quality: q });
      break;
    case 'gif':
      image.gif();
      break;
    case 'tiff':
      image.tiff({ quality: q });
      break;
  }
  // Default output carries no EXIF/GPS/XMP/IPTC (sharp strips unless told otherwise); the colour
  // profile is kept so colours do not shift. keepMetadata is the explicit opt-in.
  return keepMetadata ? image.keepMetadata() : image.keepIccProfile();
}

async function previewMark(base: { width: number; height: number }): Promise<OverlayOptions> {
  const rendered = await renderText({
    text: ' PREVIEW ',
    size: Math.max(12, Math.round(Math.min(base.width, base.height) / 5)),
    color: '#ffffffc0',
    background: '#00000060',
    maxWidth: base.width,
    maxHeight: base.height,
    angle: -30,
  });
  return { input: rendered.data, raw: { width: rendered.width, height: rendered.height, channels: 4 }, gravity: 'centre' };
}

/**
 * The cost of running `plan` on a still image of `source` size, known before the input is read (an
 * asset's stored size): the output size from {@link predictOutput}, the format as the pipeline would
 * choose it. The pipeline checks again on the real header (animations, orientation). Undefined when
 * the stored size cannot predict the output (a crop that only fits the EXIF-oriented image): no
 * guess refuses a request; the pipeline's own check decides.
 */
export function estimateCostUpFront(plan: Plan, source: { width: number; height: number; format: string }, limits: Readonly<MediaLimits>, o: { accept?: string | undefined; preview?: boolean | undefined } = {}): CostEstimate | undefined {
  const out = predictOutput(plan, source, limits, { preview: o.preview === true, previewMaxDimension: PREVIEW_MAX_DIMENSION });
  if (!out.complete) return undefined;
  const known = (OUTPUT_MIME as Record<string, string>)[source.format] !== undefined ? (source.format as OutputFormat) : 'png';
  const format: OutputFormat = plan.format === 'auto' ? negotiateFormat(o.accept, { hasAlpha: false, animated: false }) : (plan.format ?? known);
  return estimateCost({ source, output: out, frames: 1, plan, format });
}

/**
 * Processes one image.
 *
 * @param input untrusted bytes (any name, any claimed type: only the sniffed type counts).
 * @param ops a plan from {@link buildPlan}, the string form, or the JSON array form.
 * @throws AppError `ERR_VALIDATION` (400, names the operation) before reading the input;
 *   `ERR_PAYLOAD_TOO_LARGE` (413), `ERR_UNSUPPORTED_MEDIA_TYPE` (415), `ERR_IMAGE_TOO_LARGE` (422) from
 *   {@link inspect}; `ERR_UNPROCESSABLE` (422) when decoding fails or the time limit is hit;
 *   `ERR_UNAVAILABLE` (503) when `signal` aborts.
 */
export async function processImage(
  input: Buffer | Uint8Array,
  ops: Plan | string | readonly unknown[],
  options: ProcessOptions,
): Promise<ProcessResult> {
  const { limits, signal } = options;
  const deadline = Date.now() + limits.timeoutMs;
  const plan = isPlan(ops) ? ops : buildPlan(parseOperations(ops));
  checkAbort(signal, deadline);
  const source = await inspect(input, limits);
  checkAbort(signal, deadline);

  const preview = options.preview === true;
  const keepMetadata = options.keepMetadata === true;
  const flattened = plan.steps.some((s) => s.operation.removesAlpha === true);
  const format = chooseFormat(plan, source, options.accept, flattened);
  const overlaid = plan.hasOverlays || preview;
  // Overlays are drawn on one frame; otherwise animations survive into formats that can hold them.
  const animated = source.frames > 1 && ANIMATED_FORMATS.has(format) && !overlaid;
  const seconds = timeoutSeconds(limits);

  const pipeline = sharp(source.bytes, {
    limitInputPixels: limits.maxInputPixels,
    sequentialRead: true,
    failOn: 'error',
    autoOrient: true,
    pages: animated ? source.frames : 1,
  }).timeout({ seconds });

  const { bytes: _bytes, ...facts } = source;
  const ctx = newOperationContext({ limits, source: facts, maxDimension: preview ? Math.min(PREVIEW_MAX_DIMENSION, limits.maxOutputDimension) : limits.maxOutputDimension, loadAsset: options.loadAsset, draw: sharpOverlayDrawing(limits, options.loadAsset ?? notFound) });

  for (const step of plan.steps) {
    await step.operation.apply(pipeline, step.args, ctx);
    checkAbort(signal, deadline);
  }
  if (!plan.steps.some((s) => s.operation.sizesOutput === true) && (ctx.width > ctx.maxDimension || ctx.height > ctx.maxDimension)) {
    applyResize(pipeline, ctx, { width: ctx.maxDimension, height: ctx.maxDimension, fit: 'inside', enlarge: false });
  }
  // JPEG has no alpha: composite transparency onto the background instead of letting it turn black.
  if (format === 'jpeg' && source.hasAlpha && !flattened) {
    pipeline.flatten({ background: ctx.background });
  }
  // Every size is known and no pixel has been decoded yet (sharp is lazy): refuse too much work now.
  assertAffordable(estimateCost({ source, output: ctx, frames: animated ? source.frames : 1, plan, format }), limits);

  try {
    let final: Sharp = pipeline;
    if (overlaid) {
      // Overlays need the processed size and must not be tinted/normalised (libvips composites before
      // those), so the base is materialised first: raw sRGB pixels, or lossless WebP when metadata is
      // kept (raw pixels cannot carry EXIF).
      const stage = keepMetadata
        ? await pipeline.keepMetadata().webp({ lossless: true, effort: 0 }).toBuffer({ resolveWithObject: true })
        : await pipeline.toColourspace('srgb').ensureAlpha().raw().toBuffer({ resolveWithObject: true });
      checkAbort(signal, deadline);
      const base = { width: stage.info.width, height: stage.info.height };
      const composites = await Promise.all([
        ...ctx.overlays.map((overlay) => overlay(base)),
        ...(preview ? [previewMark(base)] : []),
      ]);
      checkAbort(signal, deadline);
      final = (
        keepMetadata
          ? sharp(stage.data, { failOn: 'error' })
          : sharp(stage.data, { raw: { width: base.width, height: base.height, channels: stage.info.channels } })
      )
        .timeout({ seconds })
        .composite(composites);
      if (format === 'jpeg') final.flatten({ background: ctx.background });
    }
    const { data, info } = await encode(final, format, ctx.output.quality, keepMetadata).toBuffer({ resolveWithObject: true });
    const frames = animated ? Math.max(1, info.pages ?? source.frames) : 1;
    return {
      data,
      info: {
        format,
        mime: OUTPUT_MIME[format],
        width: info.width,
        height: info.pageHeight ?? (frames > 1 ? Math.round(info.height / frames) : info.height),
        size: data.length,
        frames,
      },
      varyAccept: plan.negotiatesFormat,
    };
  } catch (err) {
    throw processingError(err);
  }
}

function notFound(): Promise<Buffer> {
  return Promise.reject(new AppError('ERR_NOT_FOUND', 'The asset does not exist.'));
}

function isPlan(ops: unknown): ops is Plan {
  return typeof ops === 'object' && ops !== null && !Array.isArray(ops) && Array.isArray((ops as Plan).steps);
}
