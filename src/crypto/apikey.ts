/**
 * API key format: `obs_<kind>_<32 random base62><6 base62 CRC32>`.
 *
 * - 32 base62 characters carry ≈190 random bits (requirement: >= 128).
 * - The CRC32 tail (over everything before it) lets us reject a mistyped or truncated key without a
 *   database round trip, and lets secret scanners (GitHub, gitleaks) match our keys with few false
 *   positives — the scheme GitHub uses for its tokens. It is not a security control: anyone can compute it.
 * - Only SHA-256 of the whole key is stored; a fast hash is right here because the key has ~190 bits of
 *   entropy (no dictionary to brute-force), and verification must be fast.
 */
import { crc32 } from 'node:zlib';
import { AppError } from '../errors.js';
import { base62Uint32, randomBase62, sha256Hex } from './random.js';

export type KeyKind = 'secret' | 'publishable' | 'restricted';

const KIND_TO_TAG: Record<KeyKind, string> = { secret: 'sk', publishable: 'pk', restricted: 'rk' };
const TAG_TO_KIND: Record<string, KeyKind> = { sk: 'secret', pk: 'publishable', rk: 'restricted' };

/** The regular expression a secret scanner can use. */
export const API_KEY_PATTERN = /^obs_(sk|pk|rk)_([0-9A-Za-z]{32})([0-9A-Za-z]{6})$/;

function checksum(body: string): string {
  return base62Uint32(crc32(body));
}

/** Mints a new key; the caller shows it once and stores only `hashKey(key)`. */
export function generateApiKey(kind: KeyKind): string {
  const body = `obs_${KIND_TO_TAG[kind]}_${randomBase62(32)}`;
  return body + checksum(body);
}

/**
 * Checks shape and checksum. Throws `ERR_KEY_MALFORMED` or `ERR_KEY_CHECKSUM` (401); touches no storage.
 */
export function parseApiKey(key: string): { kind: KeyKind } {
  const m = API_KEY_PATTERN.exec(key);
  if (!m) throw new AppError('ERR_KEY_MALFORMED', 'The API key is malformed.');
  const body = key.slice(0, key.length - 6);
  if (checksum(body) !== m[3]) throw new AppError('ERR_KEY_CHECKSUM', 'The API key checksum does not match; check for a typo or truncation.');
  return { kind: TAG_TO_KIND[m[1]!]! };
}

/** SHA-256 (hex) of the whole key: the only form that is stored. */
export function hashApiKey(key: string): string {
  return sha256Hex(key);
}

/** Non-secret display form for listings: prefix, first 4 and last 4 random characters. */
export function displayApiKey(key: string): string {
  return `${key.slice(0, 11)}…${key.slice(-10, -6)}`;
}
