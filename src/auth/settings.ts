/** The auth and OAuth sections of the configuration (issue 10, item 8). */
import { defineSection, int } from '../settings.js';

export interface AuthSettings {
  /** How long a verified API key stays cached, ms: bounds how late another node sees a revocation. */
  readonly keyCacheTtlMs: number;
  /** Failed authentications from one IP within `burstWindowMs` that raise an audit event. */
  readonly burstThreshold: number;
  /** Window for burst detection, ms. */
  readonly burstWindowMs: number;
}

export interface OAuthSettings {
  /** Lifetime of OAuth2 access tokens, seconds; also how long a revoked client's tokens keep working. */
  readonly accessTokenTtlSeconds: number;
  /** Scheduled rotation of the JWT signing key, days. */
  readonly signingKeyRotationDays: number;
}

export const AUTH_SETTINGS = defineSection<AuthSettings>({
  keyCacheTtlMs: int({ env: 'OBSCURA_KEY_CACHE_TTL_MS', doc: 'How long a verified key (and an unwrapped org key) stays cached; the bound on revocation and erasure across nodes.', default: 2000, min: 0, max: 5000 }),
  burstThreshold: int({ env: 'OBSCURA_AUTH_BURST_THRESHOLD', doc: 'Failed authentications from one IP within the window that raise an audit event.', default: 20, min: 1, max: 1_000_000 }),
  burstWindowMs: int({ env: 'OBSCURA_AUTH_BURST_WINDOW_MS', doc: 'Window for burst detection, ms.', default: 60_000, min: 1000, max: 86_400_000 }),
});

export const OAUTH_SETTINGS = defineSection<OAuthSettings>({
  accessTokenTtlSeconds: int({ env: 'OBSCURA_ACCESS_TOKEN_TTL_SECONDS', doc: 'Lifetime of OAuth2 access tokens, seconds.', default: 900, min: 60, max: 3600 }),
  signingKeyRotationDays: int({ env: 'OBSCURA_JWT_ROTATION_DAYS', doc: 'Scheduled rotation of the JWT signing key, days.', default: 30, min: 1, max: 365 }),
});
