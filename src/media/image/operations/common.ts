/** Schemas and helpers shared by several operations. */
import { Type } from 'typebox';
import { AppError } from '../../../errors.js';

/** Where an overlay or a crop is anchored. */
export const Gravity = Type.Enum([
  'north', 'northeast', 'east', 'southeast', 'south', 'southwest', 'west', 'northwest', 'center', 'centre',
]);

/** sharp's colour object for a validated `Color` string (media/parameters.ts). */
export function parseColor(hex: string): { r: number; g: number; b: number; alpha: number } {
  const h = hex.slice(1);
  const full = h.length === 3 ? [...h].map((c) => c + c).join('') : h;
  const byte = (i: number): number => Number.parseInt(full.slice(i, i + 2), 16);
  return { r: byte(0), g: byte(2), b: byte(4), alpha: full.length === 8 ? byte(6) / 255 : 1 };
}

/** The error for a parameter that is valid alone but not for this image (checked from headers). */
export function invalidFor(operation: string, reason: string): AppError {
  return new AppError('ERR_VALIDATION', `Invalid parameters for operation "${operation}".`, {
    details: { operation, reason },
  });
}

/**
 * Makes sharp mirror/rotate *before* trim, crop and resize, so that their coordinates always refer to
 * the oriented image. sharp only does so when a rotation is combined with one of those (resize.js sets
 * `rotateBefore`), which would make `flop` + `extract` depend on whether a `rotate` was also present.
 * sharp is pinned (0.35.x); test/media/image/operations.test.ts fails if this internal changes meaning.
 */
export function orientFirst(pipeline: object): void {
  const options = (pipeline as { options?: Record<string, unknown> }).options;
  if (options && 'rotateBefore' in options) options.rotateBefore = true;
}
