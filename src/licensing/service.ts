/**
 * The licensing service (issue 15): session licences for publishable keys, offline licence files,
 * verification with the deployment's own published keys, and device telemetry into the usage meter.
 * Knows nothing of HTTP: routes (src/http/routes/licensing.ts) and the CLI call it.
 */
import type { DatabaseHandle } from '../db/database.js';
import { AppError, ERROR_CODES } from '../errors.js';
import { appendAudit, type AuditActor } from '../audit/log.js';
import { getApp } from '../tenants/index.js';
import type { Principal } from '../auth/keys.js';
import type { UsageMeter } from '../usage/meter.js';
import { armourLicence, LicenceError, verifyLicence, type Licence, type LicenceAlgorithm } from '../../sdk/src/licence.js';
import type { JWK } from 'jose';
import type { LicenceKeyStore } from './keys.js';
import { normaliseAppIds, normaliseFeatures, normaliseLicenceDomains, signLicence } from './sign.js';
import { telemetryUsage, type TelemetryEventInput } from './telemetry.js';
import type { LicensingSettings } from './settings.js';

/** A licence error as the API's error (same code; the status comes from src/errors.ts). */
export function licenceProblem(err: unknown): unknown {
  if (!(err instanceof LicenceError)) return err;
  const hint: Record<string, string> = {
    ERR_LICENSE_MALFORMED: 'Send the licence exactly as issued (a compact JWS, or the licence file).',
    ERR_LICENSE_SIGNATURE: 'The licence was changed or was not issued by this deployment; request a new one.',
    ERR_LICENSE_EXPIRED: 'Start a new licence session (or ask for a renewed licence file).',
    ERR_LICENSE_ORIGIN: 'Use the licence only on the origins and app ids it names.',
    ERR_LICENSE_FEATURE: 'This licence does not include that feature.',
  };
  return new AppError(err.code, `${err.message} ${hint[err.code] ?? ''}`.trim(), { cause: err });
}

/** Where a session licence is pinned. */
export type SessionPin = { origin: string } | { appId: string };

export interface SessionLicence {
  licence: string;
  claims: Licence;
  expiresAt: Date;
  refreshAfter: Date;
}

export interface OfflineLicenceInput {
  licensee: string;
  domains: readonly string[];
  appIds: readonly string[];
  features: readonly string[];
  expiresAt: Date;
  alg?: LicenceAlgorithm;
}

export interface LicensingDeps {
  db: DatabaseHandle;
  keys: LicenceKeyStore;
  settings: LicensingSettings;
  /** `iss` of every licence: the deployment's public URL. */
  issuer: string;
  now?: () => number;
  /**
   * How long the published keys are cached for verification (ms; default 2000, the key-cache TTL):
   * a telemetry flood costs no database query per request, and a removed key stops verifying on
   * every node within this bound.
   */
  keysTtlMs?: number;
}

export class LicensingService {
  private verificationKeys: { keys: Promise<JWK[]>; at: number } | null = null;

  constructor(private readonly deps: LicensingDeps) {}

  /** The published keys for verification, cached for `keysTtlMs` (one shared read when stale). */
  private trustedKeys(): Promise<JWK[]> {
    const now = performance.now();
    const hit = this.verificationKeys;
    if (hit && now - hit.at < (this.deps.keysTtlMs ?? 2000)) return hit.keys;
    const keys = this.deps.keys.publicKeys();
    this.verificationKeys = { keys, at: now };
    // A failed read is not cached: the next request tries again.
    keys.catch(() => {
      if (this.verificationKeys?.keys === keys) this.verificationKeys = null;
    });
    return keys;
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /**
   * A short-lived session licence for the calling credential's app, pinned to `pin` (the verified
   * Origin of a publishable key, or its verified native app id). Refresh after three quarters of it.
   */
  async startSession(principal: Principal, pin: SessionPin): Promise<SessionLicence> {
    const now = this.now();
    const app = await this.deps.db.withTenant(principal.orgId, (trx) => getApp(trx, principal.orgId, principal.appId));
    const ttl = this.deps.settings.sessionTtlSeconds;
    const exp = Math.floor(now / 1000) + ttl;
    const signer = await this.deps.keys.signer('RS256');
    const { jws, claims } = await signLicence(
      signer,
      {
        kind: 'session',
        licensee: app.name.slice(0, 200),
        orgId: principal.orgId,
        appId: principal.appId,
        keyId: principal.keyId,
        origins: 'origin' in pin ? [pin.origin] : [],
        appIds: 'appId' in pin ? [pin.appId] : [],
        features: ['image', 'video'],
        exp,
      },
      { issuer: this.deps.issuer, now },
    );
    return { licence: jws, claims: { ...claims, kid: signer.kid, alg: signer.alg }, expiresAt: new Date(exp * 1000), refreshAfter: new Date(now + Math.floor(ttl * 750)) };
  }

  /** Issues an offline licence file (armoured) for an org's app; audited (never the licence text). */
  async issueOffline(orgId: string, appId: string, input: OfflineLicenceInput, actor: AuditActor, ctx: { ip?: string; requestId?: string } = {}): Promise<{ file: string; claims: Licence }> {
    const licensee = input.licensee.trim();
    if (licensee.length === 0 || licensee.length > 200) throw new AppError('ERR_VALIDATION', 'The licensee must be 1 to 200 characters.', { details: { field: 'licensee' } });
    const origins = normaliseLicenceDomains(input.domains);
    const appIds = normaliseAppIds(input.appIds);
    const features = normaliseFeatures(input.features.length ? input.features : ['image']);
    const exp = Math.floor(input.expiresAt.getTime() / 1000);
    if (!Number.isFinite(exp)) throw new AppError('ERR_VALIDATION', 'expires_at must be a date-time.', { details: { field: 'expires_at' } });
    const alg = input.alg ?? 'RS256';
    const signer = await this.deps.keys.signer(alg);
    const now = this.now();
    const { jws, claims } = await this.deps.db.withTenant(orgId, async (trx) => {
      await getApp(trx, orgId, appId);
      const signed = await signLicence(signer, { kind: 'offline', licensee, orgId, appId, origins, appIds, features, exp }, { issuer: this.deps.issuer, now });
      await appendAudit(trx, {
        orgId,
        actor,
        action: 'license.issue',
        target: { license: signed.claims.jti, app: appId },
        data: { licensee, origins, app_ids: appIds, features, expires_at: new Date(exp * 1000).toISOString(), kid: signer.kid, alg },
        ip: ctx.ip ?? null,
        requestId: ctx.requestId ?? null,
      });
      return signed;
    });
    return { file: armourLicence(jws), claims: { ...claims, kid: signer.kid, alg } };
  }

  /** The published public keys (JWKs). */
  publicKeys(): ReturnType<LicenceKeyStore['publicKeys']> {
    return this.deps.keys.publicKeys();
  }

  /** Verifies a licence against this deployment's published keys; throws the API's `ERR_LICENSE_*`. */
  async verify(text: string, opts: { origin?: string; appId?: string; features?: string[] } = {}): Promise<Licence> {
    const keys = await this.trustedKeys();
    try {
      return await verifyLicence(text, { keys, ...opts, now: new Date(this.now()) });
    } catch (err) {
      throw licenceProblem(err);
    }
  }

  /**
   * Counts a batch of device telemetry under the licence that authenticates it. The licence must be
   * valid (and, when the request comes from a page, pinned to that page's origin) and must not have
   * telemetry switched off. Returns how many events were counted.
   */
  async acceptTelemetry(meter: UsageMeter, licenceText: string, origin: string | undefined, events: readonly TelemetryEventInput[]): Promise<number> {
    const licence = await this.verify(licenceText, origin !== undefined && origin !== 'null' ? { origin } : {});
    if (!licence.telemetry) throw new AppError('ERR_LICENSE_FEATURE', 'This licence has telemetry switched off (feature no_telemetry): send no telemetry.');
    const usage = telemetryUsage(licence, events, this.now());
    for (const u of usage) meter.record(u);
    return events.length;
  }
}

// Compile-time check: every LicenceError code is an API error code.
const _codes: Record<import('../../sdk/src/licence.js').LicenceErrorCode, number> = {
  ERR_LICENSE_MALFORMED: ERROR_CODES.ERR_LICENSE_MALFORMED,
  ERR_LICENSE_SIGNATURE: ERROR_CODES.ERR_LICENSE_SIGNATURE,
  ERR_LICENSE_EXPIRED: ERROR_CODES.ERR_LICENSE_EXPIRED,
  ERR_LICENSE_ORIGIN: ERROR_CODES.ERR_LICENSE_ORIGIN,
  ERR_LICENSE_FEATURE: ERROR_CODES.ERR_LICENSE_FEATURE,
};
void _codes;
