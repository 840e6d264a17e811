/**
 * Random identifiers and tokens. Everything comes from node:crypto's CSPRNG.
 */
import * as nodeCrypto from 'node:crypto';
import { randomBytes, randomUUID, timingSafeEqual, createHash } from 'node:crypto';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/**
 * `length` uniformly random base62 characters (≈5.95 bits each). Rejection sampling avoids the modulo
 * bias of mapping 256 byte values onto 62 symbols.
 */
export function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    const buf = randomBytes(Math.ceil((length - out.length) * 1.3) + 8);
    for (const b of buf) {
      if (b < 248) out += BASE62[b % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

/** Fixed-width base62 of an unsigned 32-bit integer (6 characters: 62^6 > 2^32). */
export function base62Uint32(n: number): string {
  let v = n >>> 0;
  let out = '';
  for (let i = 0; i < 6; i++) {
    out = BASE62[v % 62] + out;
    v = Math.floor(v / 62);
  }
  return out;
}

/** A random UUID v4 (122 random bits), used for internal row ids. */
export function newId(): string {
  return randomUUID();
}

/** A public id with `prefix_` and >= 128 random bits (22 base62 chars ≈ 131 bits). */
export function publicId(prefix: string): string {
  return `${prefix}_${randomBase62(22)}`;
}

const oneShotHash = (nodeCrypto as { hash?: (algorithm: string, data: string | Buffer, encoding: 'hex') => string }).hash;

/** SHA-256 hex digest. */
export function sha256Hex(data: string | Buffer): string {
  // The one-shot form where Node has it (>= 20.12): a fraction of createHash's cost on the per-request
  // key check (issue 12, item 4).
  return oneShotHash ? oneShotHash('sha256', data, 'hex') : createHash('sha256').update(data).digest('hex');
}

/** Constant-time equality of two strings (false, in constant time for equal lengths, when they differ). */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  if (ab.length !== bb.length) {
    // Compare anyway so that timing does not reveal where a same-length prefix matched.
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}
