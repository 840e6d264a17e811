/**
 * Signed transform URLs (imgproxy-style), built on a backend:
 *
 *   `{baseUrl}/t/{kid}.{mac}/{operations}/{asset id}?exp={unix seconds}`
 *
 * `mac` = base64url (no padding) of HMAC-SHA256(key, `/{operations}/{asset id}?exp={exp}`), where
 * `operations` is exactly the string placed in the URL path (percent-encoding included) and `key` is
 * the 32 bytes of a transform key (`tfk_…`, secret shown once as base64url when the key is created).
 * This is the scheme `src/processing/transform.ts` verifies; see docs/transform-urls.md.
 *
 * Node-only (node:crypto). Security: the key signs URLs for anyone; keep it on servers, give URLs a
 * short `exp`, and prefer apps in strict mode (`preset:<name>` only) so a leaked URL cannot be edited
 * into arbitrary work (it cannot anyway: any edit breaks the MAC).
 */
import { createHmac } from 'node:crypto';
import type { Operation } from './types.js';
import { operationsPath } from './operations.js';

export { operationsPath };

/** A transform signing key as returned once by the API. */
export interface TransformSigningKey {
  /** `tfk_…` */
  id: string;
  /** base64url of 32 random bytes. */
  secret: string;
}

/** Options of {@link buildTransformUrl}. */
export interface TransformUrlOptions {
  /** The API's public base URL (the CDN origin in front of it). */
  baseUrl: string;
  key: TransformSigningKey;
  assetId: string;
  /** Operations, JSON or string spelling; `preset:<name>` for named presets. */
  operations: readonly Operation[] | string;
  /** Expiry: Unix seconds, a Date, or `{ ttlSeconds }` from now (default 24 h from now). */
  expires?: number | Date | { ttlSeconds: number } | undefined;
  /** Clock in ms (tests). */
  now?: number | undefined;
}

const KID = /^tfk_[0-9A-Za-z]{22}$/;
const ASSET = /^ast_[0-9A-Za-z]{22}$/;

/** `/t/{kid}.{mac}/{operations}/{assetId}?exp={exp}` for a raw key. */
export function signTransformPath(key: TransformSigningKey, operations: string, assetId: string, exp: number): string {
  if (!KID.test(key.id)) throw new TypeError('key.id must be a transform key id (tfk_…)');
  if (!ASSET.test(assetId)) throw new TypeError('assetId must be an asset id (ast_…)');
  if (!Number.isSafeInteger(exp) || exp <= 0) throw new TypeError('exp must be Unix seconds');
  if (operations === '' || /[?#\s]/.test(operations)) throw new TypeError('operations must be a non-empty path segment list without ?, # or spaces');
  const secret = Buffer.from(key.secret, 'base64url');
  if (secret.length !== 32) throw new TypeError('key.secret must be the 32-byte base64url secret shown when the key was created');
  try {
    const mac = createHmac('sha256', secret).update(`/${operations}/${assetId}?exp=${exp}`, 'utf8').digest('base64url');
    return `/t/${key.id}.${mac}/${operations}/${assetId}?exp=${exp}`;
  } finally {
    secret.fill(0);
  }
}

/** Builds an absolute signed transform URL. */
export function buildTransformUrl(opts: TransformUrlOptions): string {
  const nowS = Math.floor((opts.now ?? Date.now()) / 1000);
  const e = opts.expires;
  const exp = e === undefined ? nowS + 86_400 : typeof e === 'number' ? e : e instanceof Date ? Math.floor(e.getTime() / 1000) : nowS + e.ttlSeconds;
  return opts.baseUrl.replace(/\/+$/, '') + signTransformPath(opts.key, operationsPath(opts.operations), opts.assetId, exp);
}
