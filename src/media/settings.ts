/**
 * The server-wide media limits (issue 10, item 8): the operator's ceiling for every app. Apps may only
 * lower them (their settings never raise a limit); the defaults are DEFAULT_MEDIA_LIMITS.
 */
import { defineSection, int } from '../settings.js';
import { DEFAULT_MEDIA_LIMITS } from './limits.js';

export interface MediaSettings {
  /** Largest input in pixels (width × height × frames): the decompression-bomb guard. */
  readonly maxInputPixels: number;
  /** Largest output side in pixels; larger requests are scaled down to fit. */
  readonly maxOutputDimension: number;
  /** Most animation frames accepted. */
  readonly maxFrames: number;
  /** Processing time limit of one image, ms (enforced by libvips in whole seconds, rounded up). */
  readonly timeoutMs: number;
}

export const MEDIA_SETTINGS = defineSection<MediaSettings>({
  maxInputPixels: int({ env: 'OBSCURA_MAX_INPUT_PIXELS', doc: 'Largest input in pixels (width × height × frames); larger inputs are refused with 422 ERR_IMAGE_TOO_LARGE after one header read.', default: DEFAULT_MEDIA_LIMITS.maxInputPixels, min: 1, max: 1_000_000_000 }),
  maxOutputDimension: int({ env: 'OBSCURA_MAX_OUTPUT_DIMENSION', doc: 'Largest output side in pixels; larger requests are scaled down to fit (at most 16383, the WebP limit).', default: DEFAULT_MEDIA_LIMITS.maxOutputDimension, min: 1, max: 16_383 }),
  maxFrames: int({ env: 'OBSCURA_MAX_FRAMES', doc: 'Most animation frames accepted.', default: DEFAULT_MEDIA_LIMITS.maxFrames, min: 1, max: 10_000 }),
  timeoutMs: int({ env: 'OBSCURA_PROCESS_TIMEOUT_MS', doc: 'Processing time limit of one image, ms.', default: DEFAULT_MEDIA_LIMITS.timeoutMs, min: 1000, max: 600_000 }),
});
