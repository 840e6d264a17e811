/**
 * Credentials: an API key, a fixed access token, a token callback, or OAuth2 client credentials
 * (RFC 6749 §4.4) exchanged for short-lived access tokens that are cached until shortly before they
 * expire.
 *
 * Security: every secret lives in a private class field of this object, in memory only. The SDK
 * never writes it to disk, `localStorage`, `sessionStorage`, IndexedDB or a cookie, never logs it,
 * and only ever sends it to the configured API origin (see `Transport.url`).
 */
import { ObscuraError, usageError } from './errors.js';
import type { AuthorizationSource } from './http.js';

/** OAuth2 client credentials (from `POST /v1/apps/{id}/oauth-clients`). */
export interface ClientCredentials {
  /** `obs_client_…` */
  clientId: string;
  /** `obs_cs_…` (keep it on servers only). */
  clientSecret: string;
  /** Narrow the token to these scopes (space-separated string or list); default: all of the client's scopes. */
  scope?: string | readonly string[];
}

/** The token endpoint's answer (RFC 6749 §5.1). */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
}

/** Exactly one credential. */
export interface CredentialOptions {
  /** An API key: `obs_sk_…` (secret), `obs_rk_…` (restricted) or `obs_pk_…` (publishable, browsers). */
  apiKey?: string | undefined;
  /** A ready access token (you refresh it yourself). */
  accessToken?: string | undefined;
  /** Called before every request; return a current access token (you cache it). */
  getAccessToken?: (() => string | Promise<string>) | undefined;
  /** OAuth2 client credentials; the SDK fetches and caches access tokens itself. */
  clientCredentials?: ClientCredentials | undefined;
}

/** Fetches a token for client credentials (the client wires it to `POST /v1/oauth/token`). */
export type TokenFetcher = (cc: ClientCredentials) => Promise<TokenResponse>;

const KEY_PREFIX = /^obs_(sk|rk|pk)_/;

/** Refresh this long before `expires_in` runs out, so a token never expires in flight. */
const EXPIRY_SKEW_MS = 30_000;

/** Holds one credential and produces `Authorization` header values. */
export class Credentials implements AuthorizationSource {
  readonly kind: 'apiKey' | 'accessToken' | 'getAccessToken' | 'clientCredentials';
  readonly #apiKey: string | undefined;
  readonly #accessToken: string | undefined;
  readonly #getter: (() => string | Promise<string>) | undefined;
  readonly #cc: ClientCredentials | undefined;
  readonly #fetchToken: TokenFetcher | undefined;
  readonly #now: () => number;
  #cached: { token: string; refreshAt: number } | undefined;
  #inflight: Promise<string> | undefined;

  constructor(opts: CredentialOptions, fetchToken: TokenFetcher | undefined, now: () => number = Date.now) {
    const given = (['apiKey', 'accessToken', 'getAccessToken', 'clientCredentials'] as const).filter((k) => opts[k] !== undefined);
    if (given.length !== 1) throw usageError(`Pass exactly one of apiKey, accessToken, getAccessToken or clientCredentials (got ${given.length ? given.join(', ') : 'none'}).`);
    this.kind = given[0]!;
    this.#now = now;
    if (opts.apiKey !== undefined) {
      if (typeof opts.apiKey !== 'string' || !KEY_PREFIX.test(opts.apiKey)) throw usageError('apiKey must be an Obscura key (obs_sk_…, obs_rk_… or obs_pk_…).');
      this.#apiKey = opts.apiKey;
    }
    if (opts.accessToken !== undefined) {
      if (typeof opts.accessToken !== 'string' || opts.accessToken.length === 0) throw usageError('accessToken must be a non-empty string.');
      this.#accessToken = opts.accessToken;
    }
    this.#getter = opts.getAccessToken;
    if (opts.clientCredentials) {
      const cc = opts.clientCredentials;
      if (!cc.clientId || !cc.clientSecret) throw usageError('clientCredentials needs clientId and clientSecret.');
      this.#cc = { ...cc };
      this.#fetchToken = fetchToken;
    }
  }

  /** The kind of API key (`sk`, `rk`, `pk`), or undefined for tokens. Never the key itself. */
  get keyKind(): 'sk' | 'rk' | 'pk' | undefined {
    return this.#apiKey ? (KEY_PREFIX.exec(this.#apiKey)![1] as 'sk' | 'rk' | 'pk') : undefined;
  }

  /** `Bearer <credential>` for the next request. */
  async authorization(): Promise<string> {
    return `Bearer ${await this.#token()}`;
  }

  async #token(): Promise<string> {
    if (this.#apiKey) return this.#apiKey;
    if (this.#accessToken) return this.#accessToken;
    if (this.#getter) {
      const t = await this.#getter();
      if (typeof t !== 'string' || t.length === 0) throw usageError('getAccessToken returned no token.');
      return t;
    }
    if (this.#cached && this.#now() < this.#cached.refreshAt) return this.#cached.token;
    // Concurrent requests share one token request instead of stampeding the token endpoint.
    this.#inflight ??= this.#fetch().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #fetch(): Promise<string> {
    if (!this.#fetchToken || !this.#cc) throw usageError('No token endpoint configured.');
    const issuedAt = this.#now();
    const res = await this.#fetchToken(this.#cc);
    if (!res || typeof res.access_token !== 'string' || typeof res.expires_in !== 'number') {
      throw new ObscuraError({ code: 'ERR_INVALID_RESPONSE', detail: 'The token endpoint did not return an access token.' });
    }
    const lifetime = res.expires_in * 1000;
    this.#cached = { token: res.access_token, refreshAt: issuedAt + Math.max(0, lifetime - Math.min(EXPIRY_SKEW_MS, lifetime / 10)) };
    return res.access_token;
  }

  /** Forgets a cached access token; true when a new one can be obtained (client credentials or a callback). */
  invalidate(): boolean {
    if (this.#cc) {
      this.#cached = undefined;
      return true;
    }
    return this.#getter !== undefined;
  }

  /** Never reveal the secret through logging or serialisation. */
  toJSON(): Record<string, string> {
    return { kind: this.kind };
  }
}

/** `client_secret_basic` (RFC 6749 §2.3.1): id and secret form-urlencoded, then Base64 (ASCII only after encoding). */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${btoa(`${enc(clientId)}:${enc(clientSecret)}`)}`;
}
