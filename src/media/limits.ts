/**
 * The limits every input and every processing run is held to (bytes, pixels, frames, output size,
 * time, cost). Each media kind checks them at its own gate before decoding anything (for images:
 * image/inspect.ts), so a decompression bomb (a few kilobytes that claim gigapixels) is refused
 * having cost one header read (imgproxy `IMGPROXY_MAX_SRC_RESOLUTION`, ipx `maxInputPixels`).
 */

/** Limits applied to every image operation. Pass a frozen value built by {@link mediaLimits}. */
export interface MediaLimits {
  /** Largest accepted input, in bytes. Default 50 MB. */
  maxInputBytes: number;
  /**
   * Largest accepted input, in pixels (width × height × frames). Default 40 000 000. Security: the
   * decompression-bomb guard; memory for one decoded RGBA frame is ~4 B/pixel.
   */
  maxInputPixels: number;
  /**
   * Largest output side, in pixels; larger requests are scaled down to fit. Default 8192
   * ("8192 × 8192 × 4 B is ~268 MB", ipx).
   */
  maxOutputDimension: number;
  /** Most animation frames accepted. Default 100. */
  maxFrames: number;
  /** Processing time limit, in milliseconds (enforced by libvips, whole seconds, rounded up). Default 30 000. */
  timeoutMs: number;
  /**
   * Most work one request may ask for, in cost units: megapixels touched (input + output, every frame)
   * × (1 + the operations' weights) + output megapixels × the encoder's weight. Checked after the
   * header is read and before any pixel is decoded: a request over it is refused with 422
   * `ERR_TOO_EXPENSIVE`. Default 1500 (`OBSCURA_PROCESS_MAX_COST`): a 40 MP photo resized to 2000 px
   * and encoded as WebP costs ~100, a 12 MP photo as a full-size AVIF ~750, an 8192² AVIF ~4200.
   */
  maxCost: number;
  /**
   * Accept SVG input (sanitised, then rasterised). Default false. Security: SVG is a document format
   * with scripts and references; see svg.ts for what the sanitiser removes.
   */
  allowSvg: boolean;
}

/** The secure defaults for {@link MediaLimits}. */
export const DEFAULT_MEDIA_LIMITS: Readonly<MediaLimits> = Object.freeze({
  maxInputBytes: 50 * 1024 * 1024,
  maxInputPixels: 40_000_000,
  maxOutputDimension: 8192,
  maxFrames: 100,
  timeoutMs: 30_000,
  maxCost: 1500,
  allowSvg: false,
});

/**
 * Builds a frozen {@link MediaLimits} from the defaults and overrides.
 * @throws TypeError naming the field when a value is not a positive integer (a configuration mistake,
 *   meant to fail at boot).
 */
export function mediaLimits(overrides: Partial<MediaLimits> = {}): Readonly<MediaLimits> {
  const limits: MediaLimits = { ...DEFAULT_MEDIA_LIMITS, ...overrides };
  for (const key of ['maxInputBytes', 'maxInputPixels', 'maxOutputDimension', 'maxFrames', 'timeoutMs', 'maxCost'] as const) {
    const value = limits[key];
    if (!Number.isSafeInteger(value) || value <= 0) throw new TypeError(`media limit ${key} must be a positive integer`);
  }
  if (limits.maxOutputDimension > 16_383) throw new TypeError('media limit maxOutputDimension must be at most 16383 (WebP limit)');
  if (typeof limits.allowSvg !== 'boolean') throw new TypeError('media limit allowSvg must be a boolean');
  return Object.freeze(limits);
}
