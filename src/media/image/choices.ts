/**
 * What the image pipeline decides from the plan and sizes alone, before any pixel is decoded: the
 * output media types and default qualities, the format `auto` picks, and the cost estimate with its
 * refusal. Pure (no engine): the server's pipeline (pipeline.ts, sharp) and the browser SDK
 * (packages/browser, wasm-vips) decide with the same code, so the two cannot drift (issue 15, item 4).
 */
import { AppError } from '../../errors.js';
import type { MediaLimits } from '../limits.js';
import { ENCODE_COST } from './operations/output.js';
import type { Plan } from './operations/registry.js';
import type { OutputFormat } from './operations/types.js';

/** Output media types. */
export const OUTPUT_MIME: Readonly<Record<OutputFormat, string>> = Object.freeze({
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  avif: 'image/avif',
  gif: 'image/gif',
  tiff: 'image/tiff',
});

/** Encoder quality when the plan names none (PNG and GIF take none). */
export const DEFAULT_QUALITY: Readonly<Record<OutputFormat, number | undefined>> = {
  jpeg: 80,
  webp: 80,
  avif: 50,
  tiff: 80,
  png: undefined,
  gif: undefined,
};

/** Media types a client accepts with q > 0 (RFC 9110 §12.5.1), lower-cased; wildcards are ignored. */
function acceptedTypes(accept: string | undefined): Set<string> {
  const out = new Set<string>();
  if (!accept) return out;
  for (const part of accept.slice(0, 1024).split(',')) {
    const [type, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    if (!type) continue;
    const q = params.find((p) => p.startsWith('q='));
    if (q !== undefined && !(Number(q.slice(2)) > 0)) continue;
    out.add(type);
  }
  return out;
}

/**
 * Picks the format for `format: auto`: AVIF, then WebP when the client lists them, else PNG for images
 * with transparency and JPEG otherwise. Animated sources pick WebP or GIF so frames survive.
 */
export function negotiateFormat(accept: string | undefined, image: { hasAlpha: boolean; animated: boolean }): OutputFormat {
  const types = acceptedTypes(accept);
  if (image.animated) return types.has('image/webp') ? 'webp' : 'gif';
  if (types.has('image/avif')) return 'avif';
  if (types.has('image/webp')) return 'webp';
  return image.hasAlpha ? 'png' : 'jpeg';
}

/** What {@link estimateCost} found. */
export interface CostEstimate {
  /** Cost units (see `MediaLimits.maxCost`). */
  units: number;
  inputPixels: number;
  outputPixels: number;
}

/**
 * The work a run will do, from sizes alone: megapixels touched (input + output, every frame) × (1 +
 * the operations' weights) + output megapixels × the encoder's weight. Each operation states its own
 * weight in its registry entry (`cost`, default 1); the encoders' are `ENCODE_COST`.
 */
export function estimateCost(o: { source: { width: number; height: number }; output: { width: number; height: number }; frames: number; plan: Plan; format: OutputFormat }): CostEstimate {
  const inputPixels = o.source.width * o.source.height * o.frames;
  const outputPixels = o.output.width * o.output.height * o.frames;
  const weights = o.plan.steps.reduce((sum, s) => sum + (s.operation.cost ? s.operation.cost(s.args as never) : 1), 0);
  const units = ((inputPixels + outputPixels) / 1e6) * (1 + weights) + (outputPixels / 1e6) * ENCODE_COST[o.format];
  return { units, inputPixels, outputPixels };
}

/**
 * Refuses an estimate over `limits.maxCost`.
 * @throws AppError `ERR_TOO_EXPENSIVE` (422) naming the limit and the setting.
 */
export function assertAffordable(cost: CostEstimate | undefined, limits: Pick<MediaLimits, 'maxCost'>): void {
  if (!cost || cost.units <= limits.maxCost) return;
  throw new AppError(
    'ERR_TOO_EXPENSIVE',
    `This request would cost ${Math.ceil(cost.units)} units of work, over this server's limit of ${limits.maxCost} (OBSCURA_PROCESS_MAX_COST). Ask for a smaller output, a lighter format (WebP or JPEG rather than AVIF) or fewer or lighter operations (a smaller blur sigma).`,
    { details: { cost: Math.ceil(cost.units), max_cost: limits.maxCost, input_pixels: cost.inputPixels, output_pixels: cost.outputPixels, setting: 'OBSCURA_PROCESS_MAX_COST' } },
  );
}
