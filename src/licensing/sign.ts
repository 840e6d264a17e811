/**
 * Building and signing licences (the format is docs/licensing.md; the verifier is
 * sdk/src/licence.ts, which the server also uses, so signer and verifier cannot drift).
 *
 * Canonical encoding: the payload is the UTF-8 JSON of the claims in the fixed order below, with no
 * whitespace; the protected header is `{"alg","kid","typ"}` in that order. A verifier never
 * re-serialises: the signature covers the exact base64url bytes of header and payload (RFC 7515 §5.2).
 */
import { randomBytes } from 'node:crypto';
import { CompactSign } from 'jose';
import { AppError } from '../errors.js';
import { LICENCE_FEATURES, LICENCE_TYP, MAX_SESSION_LICENCE_SECONDS, normaliseLicenceOrigin, type Licence } from '../../sdk/src/licence.js';
import type { LicenceSigner } from './keys.js';
export { APP_ID_PATTERN, normaliseAppIds } from '../auth/network.js';

/** What a licence says, before the issuer fills in iat, nbf and jti. */
export interface LicenceTerms {
  kind: 'session' | 'offline';
  licensee: string;
  orgId: string;
  appId: string;
  origins: readonly string[];
  appIds: readonly string[];
  features: readonly string[];
  /** Expiry, seconds since the epoch. */
  exp: number;
  /** Session licences: the credential that started the session. */
  keyId?: string;
}


/**
 * Normalises an offline licence's `--domain` values: an origin (`https://app.example.com`) or a bare
 * host (`app.example.com`, meaning https). Plain http only for loopback development hosts.
 */
export function normaliseLicenceDomains(list: readonly string[]): string[] {
  return [
    ...new Set(
      list.map((d) => {
        const text = d.trim();
        const origin = normaliseLicenceOrigin(text.includes('://') ? text : `https://${text}`);
        const host = origin ? new URL(origin).hostname : '';
        const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(host);
        if (!origin || (origin.startsWith('http:') && !loopback) || host.includes('*')) {
          throw new AppError('ERR_VALIDATION', `"${text.slice(0, 64)}" is not a domain or origin such as app.example.com or https://app.example.com (http only for localhost).`, { details: { field: 'domains' } });
        }
        return origin;
      }),
    ),
  ];
}


/** Validates features against the known list. */
export function normaliseFeatures(list: readonly string[]): string[] {
  for (const f of list) if (!(LICENCE_FEATURES as readonly string[]).includes(f)) throw new AppError('ERR_VALIDATION', `Unknown licence feature "${f.slice(0, 32)}"; known: ${LICENCE_FEATURES.join(', ')}.`, { details: { field: 'features' } });
  return [...new Set(list)].sort();
}

/** Signs a licence with `signer`; returns the compact JWS and the claims as signed. */
export async function signLicence(signer: LicenceSigner, terms: LicenceTerms, opts: { issuer: string; now: number }): Promise<{ jws: string; claims: Omit<Licence, 'kid' | 'alg'> }> {
  const iat = Math.floor(opts.now / 1000);
  if (terms.exp <= iat) throw new AppError('ERR_VALIDATION', 'The licence must expire in the future.', { details: { field: 'expires_at' } });
  if (terms.kind === 'session' && terms.exp - iat > MAX_SESSION_LICENCE_SECONDS) throw new Error('signLicence: a session licence lives at most one day');
  if (terms.origins.length === 0 && terms.appIds.length === 0) throw new AppError('ERR_VALIDATION', 'A licence must be pinned to at least one domain or app id.', { details: { field: 'domains' } });
  // The fixed claim order is the canonical encoding (docs/licensing.md).
  const claims: Omit<Licence, 'kid' | 'alg'> = {
    iss: opts.issuer,
    kind: terms.kind,
    licensee: terms.licensee,
    org_id: terms.orgId,
    app_id: terms.appId,
    ...(terms.keyId !== undefined ? { key_id: terms.keyId } : {}),
    origins: [...terms.origins],
    app_ids: [...terms.appIds],
    features: [...terms.features],
    telemetry: !terms.features.includes('no_telemetry'),
    iat,
    nbf: iat,
    exp: terms.exp,
    jti: randomBytes(16).toString('base64url'),
  };
  const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: LICENCE_TYP }).sign(signer.privateKey);
  return { jws, claims };
}
