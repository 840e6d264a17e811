/**
 * Webhook signatures: `Obscura-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
 * with one `v1` per active secret while a secret is being rotated (issue 4, item 5).
 *
 * The scheme is Stripe's, which receivers already know how to verify: the timestamp is inside the
 * MAC so a captured delivery cannot be replayed outside the tolerance window, and several `v1`
 * values let a receiver keep working with either the old or the new secret during a rotation.
 *
 * Self-contained on purpose (node:crypto only, no project imports) so the SDK can ship it to
 * receivers unchanged. Everything secret-dependent is one `hmac(key, bytes)` call on byte arrays,
 * so a WebCrypto port replaces only that function (`crypto.subtle.sign('HMAC', ...)`).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The HTTP header that carries the signature. */
export const WEBHOOK_SIGNATURE_HEADER = 'Obscura-Signature';

/** Default tolerance between the signed timestamp and the receiver's clock, in seconds (either direction). */
export const DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 300;

/** Stable codes of {@link WebhookVerificationError}. */
export type WebhookErrorCode = 'ERR_WEBHOOK_HEADER' | 'ERR_WEBHOOK_SIGNATURE' | 'ERR_WEBHOOK_TIMESTAMP';

/**
 * Why a delivery was rejected: `ERR_WEBHOOK_HEADER` (missing or malformed header),
 * `ERR_WEBHOOK_SIGNATURE` (no `v1` matches any secret: body, timestamp or secret differ) or
 * `ERR_WEBHOOK_TIMESTAMP` (authentic but outside the tolerance: a replay or a skewed clock).
 * Receivers should answer 400 for all three and not say which.
 */
export class WebhookVerificationError extends Error {
  readonly code: WebhookErrorCode;

  constructor(code: WebhookErrorCode, message: string) {
    super(message);
    this.name = 'WebhookVerificationError';
    this.code = code;
  }
}

/** Options of {@link verifyWebhook}. */
export interface VerifyWebhookOptions {
  /** Accepted distance between `t` and `now`, seconds, past or future. Default 300. */
  toleranceSeconds?: number;
  /** The receiver's clock, in milliseconds since the epoch. Default `Date.now()`. */
  now?: number;
}

/** Caps that bound the work an unauthenticated header can cause. */
const MAX_HEADER_LENGTH = 8192;
const MAX_SIGNATURES = 16;
const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;
const DECIMAL = /^[0-9]{1,15}$/;

const encoder = new TextEncoder();

function toBytes(body: string | Uint8Array): Uint8Array {
  return typeof body === 'string' ? encoder.encode(body) : body;
}

/** HMAC-SHA256. The one place a WebCrypto port changes. */
function hmac(secret: string, parts: readonly Uint8Array[]): Buffer {
  const mac = createHmac('sha256', encoder.encode(secret));
  for (const p of parts) mac.update(p);
  return mac.digest();
}

/** MAC input: `<t>.` followed by the raw body bytes (never a re-serialised JSON value). */
function signedParts(timestamp: number, body: string | Uint8Array): Uint8Array[] {
  return [encoder.encode(`${timestamp}.`), toBytes(body)];
}

function checkSecrets(secrets: readonly string[]): void {
  if (secrets.length === 0 || secrets.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw new TypeError('webhook secrets must be a non-empty list of non-empty strings');
  }
}

/**
 * Signs a webhook body. Returns the header value `t=<timestamp>,v1=<hex>[,v1=<hex>...]`, one `v1`
 * per secret in the order given (current secret first during a rotation).
 *
 * `timestamp` is Unix time in seconds (an integer). The key is the secret string's UTF-8 bytes,
 * `whsec_` prefix included, so any language can verify with a plain HMAC call.
 * Security: sign the exact bytes you send; the receiver must verify the raw body, not a parsed one.
 */
export function signWebhook(body: string | Uint8Array, secrets: readonly string[], timestamp: number): string {
  checkSecrets(secrets);
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new RangeError('webhook timestamp must be a non-negative integer (Unix seconds)');
  const parts = signedParts(timestamp, body);
  return [`t=${timestamp}`, ...secrets.map((s) => `v1=${hmac(s, parts).toString('hex')}`)].join(',');
}

interface ParsedHeader {
  timestamp: number;
  signatures: Buffer[];
}

/** Tolerant parser: unknown schemes ignored, repeated v1 allowed; anything ambiguous is malformed. */
function parseHeader(header: string): ParsedHeader {
  const bad = (why: string): WebhookVerificationError => new WebhookVerificationError('ERR_WEBHOOK_HEADER', `Malformed signature header: ${why}.`);
  if (typeof header !== 'string' || header.length === 0) throw bad('missing');
  if (header.length > MAX_HEADER_LENGTH) throw bad('too long');
  let timestamp: number | undefined;
  const signatures: Buffer[] = [];
  for (const item of header.split(',')) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw bad('expected key=value pairs');
    const key = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    if (key === 't') {
      // Two timestamps would let a proxy or parser pick a different one than we verified.
      if (timestamp !== undefined) throw bad('more than one timestamp');
      if (!DECIMAL.test(value)) throw bad('timestamp is not an integer');
      timestamp = Number(value);
    } else if (key === 'v1') {
      if (!HEX_SHA256.test(value)) throw bad('v1 is not a hex SHA-256 MAC');
      if (signatures.length === MAX_SIGNATURES) throw bad('too many signatures');
      signatures.push(Buffer.from(value, 'hex'));
    }
    // Other schemes (a future v2, a test-mode v0) are ignored so senders can add them without breaking receivers.
  }
  if (timestamp === undefined) throw bad('no timestamp');
  return { timestamp, signatures };
}

/**
 * Verifies a webhook delivery. Returns `true`, or throws {@link WebhookVerificationError}.
 *
 * Pass the raw request body exactly as received, the `Obscura-Signature` header, and the endpoint's
 * secret (or all secrets still valid during a rotation). The signature is checked first, with a
 * constant-time comparison against every `v1` and every secret; only an authentic delivery can then
 * fail on its timestamp (default tolerance 300 s either way), which is what stops replays.
 * Security: do not parse or act on the body before this returns.
 */
export function verifyWebhook(
  body: string | Uint8Array,
  header: string,
  secret: string | readonly string[],
  options: VerifyWebhookOptions = {},
): true {
  const secrets = typeof secret === 'string' ? [secret] : secret;
  checkSecrets(secrets);
  const tolerance = options.toleranceSeconds ?? DEFAULT_WEBHOOK_TOLERANCE_SECONDS;
  if (!Number.isFinite(tolerance) || tolerance < 0) throw new RangeError('toleranceSeconds must be a non-negative number');
  const now = options.now ?? Date.now();

  const { timestamp, signatures } = parseHeader(header);
  const parts = signedParts(timestamp, body);
  let match = false;
  for (const s of secrets) {
    const expected = hmac(s, parts);
    for (const candidate of signatures) {
      // Both are 32 bytes (the regex guarantees it), as timingSafeEqual requires; no early exit.
      if (timingSafeEqual(expected, candidate)) match = true;
    }
  }
  if (!match) throw new WebhookVerificationError('ERR_WEBHOOK_SIGNATURE', 'No signature matches the body and secret.');
  if (Math.abs(now / 1000 - timestamp) > tolerance) {
    throw new WebhookVerificationError('ERR_WEBHOOK_TIMESTAMP', 'The signature timestamp is outside the tolerance.');
  }
  return true;
}

/** A new endpoint secret: `whsec_` + base64url of 32 random bytes (256 bits). Shown to the user once. */
export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}
