/**
 * TOTP (RFC 6238) for console MFA, composed from `otpauth` (which compares codes with
 * `crypto.timingSafeEqual`). Pure: the caller passes the time and the last accepted step.
 *
 * Parameters are the ones every authenticator app supports: HMAC-SHA1, 6 digits, 30-second steps,
 * a 160-bit secret (RFC 4226 §4 recommends at least 128, 160 preferred). Verification accepts the
 * current step and one step either side (RFC 6238 §5.2 clock drift), and refuses any step at or
 * before the last one accepted for the user, so an observed code cannot be replayed within its window
 * (RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt of the same OTP").
 */
import { randomBytes } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';

/** Step length in seconds (RFC 6238 default). */
export const TOTP_PERIOD = 30;
/** Code length. */
export const TOTP_DIGITS = 6;
/** Steps accepted either side of the current one (±30 s of clock drift). */
export const TOTP_WINDOW = 1;

/** A new random 160-bit TOTP secret (from the CSPRNG). */
export function newTotpSecret(): Buffer {
  return randomBytes(20);
}

/** The secret in base32 (RFC 4648), as authenticator apps expect it typed in. */
export function totpSecretBase32(secret: Buffer): string {
  return new Secret({ buffer: Uint8Array.from(secret).buffer }).base32;
}

function totpFor(secret: Buffer, issuer = 'Obscura', label = 'user'): TOTP {
  return new TOTP({ issuer, label, algorithm: 'SHA1', digits: TOTP_DIGITS, period: TOTP_PERIOD, secret: new Secret({ buffer: Uint8Array.from(secret).buffer }) });
}

/** The `otpauth://totp/...` URI to show as a QR code (Key Uri Format). Contains the secret. */
export function totpUri(secret: Buffer, opts: { issuer: string; label: string }): string {
  return totpFor(secret, opts.issuer, opts.label).toString();
}

/** The time step (counter) of a timestamp. */
export function totpStep(nowMs: number): number {
  return Math.floor(nowMs / 1000 / TOTP_PERIOD);
}

export type TotpResult = { ok: true; step: number } | { ok: false; reason: 'invalid' | 'reused' };

/**
 * Verifies a code at `nowMs`. `lastUsedStep` is the last step accepted for this user (null if none):
 * a code whose step is not later than it is refused as `reused`. On success, store the returned step.
 */
export function verifyTotp(secret: Buffer, code: string, nowMs: number, lastUsedStep: number | null): TotpResult {
  if (!/^[0-9]{6}$/.test(code)) return { ok: false, reason: 'invalid' };
  const delta = totpFor(secret).validate({ token: code, timestamp: nowMs, window: TOTP_WINDOW });
  if (delta === null) return { ok: false, reason: 'invalid' };
  const step = totpStep(nowMs) + delta;
  if (lastUsedStep !== null && step <= lastUsedStep) return { ok: false, reason: 'reused' };
  return { ok: true, step };
}
