/**
 * The image input gate: which formats are decoded (the allowlist, checked against both the sniffed
 * type and what libvips reports) and {@link inspect}, which checks an untrusted input against the
 * limits from its header alone, before any pixel is decoded.
 */
import sharp, { type Metadata } from 'sharp';
import { AppError } from '../../errors.js';
import { sniff } from '../sniff.js';
import type { MediaLimits } from '../limits.js';
import { sanitizeSvg } from './svg.js';

/** Input formats Obscura will decode, by name. */
export type InputFormat = 'jpeg' | 'png' | 'webp' | 'avif' | 'gif' | 'tiff' | 'svg';

/**
 * The input allowlist: sniffed media type → format, and what libvips must report for the same bytes.
 * Checking both means a polyglot file that `file-type` and libvips read differently is refused.
 */
const INPUT_FORMATS: ReadonlyMap<string, { format: InputFormat; vips: string }> = new Map([
  ['image/jpeg', { format: 'jpeg', vips: 'jpeg' }],
  ['image/png', { format: 'png', vips: 'png' }],
  ['image/webp', { format: 'webp', vips: 'webp' }],
  ['image/avif', { format: 'avif', vips: 'heif' }],
  ['image/gif', { format: 'gif', vips: 'gif' }],
  ['image/tiff', { format: 'tiff', vips: 'tiff' }],
  ['image/svg+xml', { format: 'svg', vips: 'svg' }],
]);

/** Media types accepted under `limits` (SVG only when `allowSvg`). */
export function allowedInputTypes(limits: Pick<MediaLimits, 'allowSvg'>): string[] {
  return [...INPUT_FORMATS.keys()].filter((mime) => mime !== 'image/svg+xml' || limits.allowSvg);
}

/** What {@link inspect} learned about an input, from headers only. */
export interface ImageInfo {
  format: InputFormat;
  mime: string;
  /** Width after EXIF orientation is applied (what a viewer displays). */
  width: number;
  /** Height of one frame after EXIF orientation is applied. */
  height: number;
  /** Number of frames (1 for still images). */
  frames: number;
  hasAlpha: boolean;
  /** EXIF orientation 1–8 (1 when absent). */
  orientation: number;
  /** The bytes to hand to the decoder: the input, or for SVG the sanitised document. */
  bytes: Buffer;
}

function unsupported(limits: Pick<MediaLimits, 'allowSvg'>): AppError {
  return new AppError('ERR_UNSUPPORTED_MEDIA_TYPE', 'This file type is not accepted.', {
    details: { accepted: allowedInputTypes(limits) },
  });
}

/**
 * Checks an untrusted input against `limits` without decoding its pixels.
 *
 * @throws AppError `ERR_PAYLOAD_TOO_LARGE` (413) over `maxInputBytes`;
 *   `ERR_UNSUPPORTED_MEDIA_TYPE` (415) when the sniffed type is not on the allowlist (or SVG is off);
 *   `ERR_IMAGE_TOO_LARGE` (422, `details.reason` `pixels` | `frames`) over the pixel or frame limit;
 *   `ERR_UNPROCESSABLE` (422) when the header cannot be read.
 */
export async function inspect(input: Buffer | Uint8Array, limits: Readonly<MediaLimits>): Promise<ImageInfo> {
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (buf.length > limits.maxInputBytes) {
    throw new AppError('ERR_PAYLOAD_TOO_LARGE', 'The file is too large.', {
      details: { maxBytes: limits.maxInputBytes },
    });
  }
  const type = await sniff(buf);
  const entry = type ? INPUT_FORMATS.get(type.mime) : undefined;
  if (!type || !entry || (entry.format === 'svg' && !limits.allowSvg)) throw unsupported(limits);
  // librsvg must only ever see the sanitised document, including for the metadata read.
  const bytes = entry.format === 'svg' ? sanitizeSvg(buf) : buf;
  let meta: Metadata;
  try {
    meta = await sharp(bytes, {
      limitInputPixels: limits.maxInputPixels,
      failOn: 'error',
      pages: -1,
    }).metadata();
  } catch (cause) {
    // sharp's own pixel guard (it checks the header's dimensions) reports the same condition we check
    // below; keep the answer identical whichever fires first.
    if (cause instanceof Error && /pixel limit/i.test(cause.message)) throw tooLarge('pixels', limits, cause);
    throw new AppError('ERR_UNPROCESSABLE', 'The image could not be read.', { cause });
  }
  if (meta.format !== entry.vips || (entry.format === 'avif' && meta.compression !== 'av1')) throw unsupported(limits);
  const frames = Math.max(1, meta.pages ?? 1);
  const rawWidth = meta.width;
  const frameHeight = meta.pageHeight ?? (frames > 1 ? Math.floor(meta.height / frames) : meta.height);
  if (!(rawWidth > 0 && frameHeight > 0)) throw new AppError('ERR_UNPROCESSABLE', 'The image could not be read.');
  if (frames > limits.maxFrames) throw tooLarge('frames', limits);
  if (rawWidth * frameHeight * frames > limits.maxInputPixels) throw tooLarge('pixels', limits);
  const orientation = meta.orientation ?? 1;
  const swap = orientation >= 5 && orientation <= 8;
  return {
    format: entry.format,
    mime: type.mime,
    width: swap ? frameHeight : rawWidth,
    height: swap ? rawWidth : frameHeight,
    frames,
    hasAlpha: meta.hasAlpha === true,
    orientation,
    bytes,
  };
}

function tooLarge(reason: 'pixels' | 'frames', limits: Readonly<MediaLimits>, cause?: unknown): AppError {
  return new AppError('ERR_IMAGE_TOO_LARGE', 'The image is too large to process.', {
    details: reason === 'pixels' ? { reason, maxPixels: limits.maxInputPixels } : { reason, maxFrames: limits.maxFrames },
    cause,
  });
}
