/**
 * Input checks shared by every blob store: keys, list prefixes, byte ranges and declared lengths.
 *
 * Security: keys become file paths in the fs store, so the key grammar is an allowlist that cannot
 * express a traversal: ASCII `[A-Za-z0-9_.-]` segments joined by `/`, each segment starting with a
 * letter, digit or `_`. That rules out `..`, `.`, empty segments (`//`, leading or trailing `/`),
 * absolute paths, backslashes, NUL, percent-encoding and every non-ASCII look-alike, and it keeps
 * dot-names (such as the fs store's `.tmp/`) out of the key space.
 */
import { AppError } from '../../errors.js';
import type { ByteRange } from './types.js';

/** Longest key in characters (S3 allows 1024 bytes; this leaves room for a store prefix). */
export const MAX_KEY_LENGTH = 512;
/** Longest segment between slashes (NAME_MAX on common filesystems). */
export const MAX_SEGMENT_LENGTH = 255;
/** Largest object a single presigned PUT may upload (S3's single-request limit, 5 GiB). */
export const MAX_PRESIGNED_PUT_BYTES = 5 * 1024 ** 3;

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** Whether `key` is a valid blob key (see the module comment for the grammar). */
export function isValidKey(key: unknown): key is string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) return false;
  for (const segment of key.split('/')) {
    if (segment.length > MAX_SEGMENT_LENGTH || !SEGMENT.test(segment)) return false;
  }
  return true;
}

/** Throws `ERR_VALIDATION` unless `key` is a valid blob key. */
export function assertValidKey(key: unknown): asserts key is string {
  if (!isValidKey(key)) throw new AppError('ERR_VALIDATION', 'The storage key is not valid.');
}

/** Throws `ERR_VALIDATION` unless `prefix` is `''`, a valid key, or a valid key followed by `/`. */
export function assertValidPrefix(prefix: unknown): asserts prefix is string {
  if (prefix === '') return;
  if (typeof prefix === 'string' && isValidKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix)) return;
  throw new AppError('ERR_VALIDATION', 'The storage prefix is not valid.');
}

/** Throws `ERR_VALIDATION` unless `range` has safe integer bounds with `0 <= start <= end`. */
export function assertValidRange(range: ByteRange): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new AppError('ERR_VALIDATION', 'The byte range is not valid.');
  }
}

/**
 * Fits a valid range to an object of `size` bytes the way HTTP does (RFC 9110 §14.1.2): the end is
 * clamped to the last byte; a start at or past the end is `ERR_RANGE_NOT_SATISFIABLE`.
 */
export function clampRange(range: ByteRange, size: number): ByteRange {
  if (range.start >= size) {
    throw new AppError('ERR_RANGE_NOT_SATISFIABLE', 'The byte range is outside the object.', {
      headers: { 'content-range': `bytes */${size}` },
    });
  }
  return { start: range.start, end: Math.min(range.end, size - 1) };
}

/** Throws `ERR_VALIDATION` unless `n` is `undefined` or a non-negative safe integer. */
export function assertValidLength(n: number | undefined): void {
  if (n !== undefined && (!Number.isSafeInteger(n) || n < 0)) {
    throw new AppError('ERR_VALIDATION', 'The content length is not valid.');
  }
}

/** The error for a body whose length differs from the declared `contentLength`. */
export function lengthMismatch(expected: number): AppError {
  return new AppError('ERR_VALIDATION', 'The body length does not match the declared content length.', {
    details: { expectedLength: expected },
  });
}

/** Converts a stream chunk to bytes (strings are UTF-8, as `Readable` encodes them by default). */
export function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  throw new AppError('ERR_VALIDATION', 'The body stream produced a chunk that is not bytes.');
}
