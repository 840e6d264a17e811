/**
 * The output size of a plan, known before any pixel is decoded: the geometry operations' own `apply`
 * replayed on an idle sharp instance (sharp only records options; nothing is read or decoded), so the
 * prediction and the pipeline cannot disagree. Used to reserve memory under the processing budget
 * for what a request will produce, not only for what it reads (issue 9, item 4: an enlarge to 8192²
 * from a tiny input holds ~256 MiB per RGBA frame).
 */
import sharp from 'sharp';
import type { MediaLimits } from '../limits.js';
import type { Plan } from './operations/registry.js';
import { newOperationContext } from './operations/types.js';

/** What {@link predictOutput} found. */
export interface OutputPrediction {
  width: number;
  height: number;
  /** Stages that hold a whole output-sized frame at once (blur, trim, free rotation, overlays, AVIF/GIF encoders). */
  wholeFrameStages: number;
  /** False when a geometry step could not be replayed (the size is then an upper-bound guess). */
  complete: boolean;
}

/**
 * Predicts the output size of `plan` on an image of `source` size under `limits` (pure; no I/O).
 * A geometry step that cannot be replayed (say, a crop outside the stored size) is skipped: the
 * pipeline reports the real error later.
 */
export function predictOutput(plan: Plan, source: { width: number; height: number }, limits: Readonly<MediaLimits>, o: { preview?: boolean; previewMaxDimension?: number } = {}): OutputPrediction {
  const maxDimension = o.preview ? Math.min(o.previewMaxDimension ?? 512, limits.maxOutputDimension) : limits.maxOutputDimension;
  const ctx = newOperationContext({ limits, source: { format: 'png', mime: 'image/png', width: source.width, height: source.height, frames: 1, hasAlpha: false, orientation: 1 }, maxDimension });
  const idle = sharp();
  let wholeFrameStages = o.preview ? 1 : 0;
  let resized = false;
  let complete = true;
  for (const step of plan.steps) {
    const op = step.operation;
    const args = step.args as Record<string, unknown>;
    if (op.geometry) {
      try {
        const applied = op.apply(idle, args, ctx);
        if (applied instanceof Promise) applied.catch(() => undefined);
      } catch {
        // Skipped: see the function's note.
        complete = false;
      }
      if (op.sizesOutput) resized = true;
    }
    if (op.wholeFrame?.(args)) wholeFrameStages++;
  }
  let { width, height } = ctx;
  if (!resized && (width > maxDimension || height > maxDimension)) {
    const f = Math.min(maxDimension / width, maxDimension / height);
    width = Math.max(1, Math.round(width * f));
    height = Math.max(1, Math.round(height * f));
  }
  if (plan.format === 'avif' || plan.format === 'gif' || plan.format === 'auto') wholeFrameStages++;
  return { width, height, wholeFrameStages, complete };
}
