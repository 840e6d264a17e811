/** Helpers for media tests: pixel sampling and error assertions (real sharp, never mocked). */
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { AppError } from '../../src/errors.js';
import { DEFAULT_MEDIA_LIMITS, type MediaLimits } from '../../src/media/limits.js';

/** Default limits for tests. */
export const limits: Readonly<MediaLimits> = DEFAULT_MEDIA_LIMITS;

/** RGB(A) values of one pixel of an encoded image. */
export async function pixel(image: Buffer, x: number, y: number): Promise<number[]> {
  const data = await sharp(image).extract({ left: x, top: y, width: 1, height: 1 }).raw().toBuffer();
  return [...data];
}

/** Asserts two colours are within `tolerance` per channel (lossy encoders shift colours a little). */
export function assertColour(actual: readonly number[], expected: readonly number[], tolerance = 40): void {
  for (let i = 0; i < expected.length; i++) {
    assert.ok(
      Math.abs((actual[i] ?? -999) - expected[i]!) <= tolerance,
      `channel ${i}: got ${actual.join(',')}, expected ~${expected.join(',')}`,
    );
  }
}

/** Per-channel means of an encoded image. */
export async function means(image: Buffer): Promise<number[]> {
  const stats = await sharp(image).stats();
  return stats.channels.map((c) => c.mean);
}

/** Awaits `promise` and asserts it rejects with an AppError of `code`; returns the error. */
export async function rejectsWith(promise: Promise<unknown>, code: string): Promise<AppError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof AppError, `expected AppError ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    return err;
  }
  assert.fail(`expected rejection with ${code}`);
}

/** Asserts a synchronous call throws an AppError of `code`; returns the error. */
export function throwsWith(fn: () => unknown, code: string): AppError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AppError, `expected AppError ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    return err;
  }
  assert.fail(`expected ${code}`);
}

/** A solid-colour PNG. */
export function solid(width: number, height: number, colour: string, channels: 3 | 4 = 3): Promise<Buffer> {
  return sharp({ create: { width, height, channels, background: colour } }).png().toBuffer();
}
