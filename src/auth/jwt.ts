/**
 * JWT access tokens (RFC 9068 profile) and the server's signing keys.
 *
 * - Tokens are signed with EdDSA (Ed25519) through `jose`; verification allows that one algorithm
 *   (an allowlist, so `alg: none` and the HS256-with-the-public-key confusion are refused before any
 *   key is touched) and checks `typ: at+jwt` (RFC 9068 §4, so an ID token or another JWT signed by a
 *   key we trust cannot be replayed as an access token), issuer, audience, expiry and age.
 * - Signing keys live in `signing_keys` (a system table the tenant role cannot read). The private JWK
 *   is stored only wrapped by the master key (`keywrap.ts`, AES-256-GCM bound to the kid), so a copy of
 *   the database alone cannot mint tokens.
 * - Keys rotate on a schedule (checked whenever a token is signed; `rotationDays`, default 30) and on
 *   demand (`rotate()`, CLI `obscura oauth rotate-signing-key`). A rotated key stops signing at once and
 *   stays published in the JWKS until `retire_at = rotated_at + token TTL + margin`, when every token
 *   it signed has expired.
 * - Verification keys are cached per process; an unknown `kid` triggers at most one database refresh
 *   per `unknownKidRefreshMs` (coalesced), so a flood of forged kids cannot hammer the database while a
 *   key rotated on another node is still picked up within seconds.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { SignJWT, calculateJwkThumbprint, errors as joseErrors, exportJWK, generateKeyPair, importJWK, jwtVerify, type JWK, type JWTPayload, type JWTHeaderParameters } from 'jose';
import type { DatabaseHandle } from '../db/database.js';
import type { MasterKeys } from '../crypto/master.js';
import { unwrapKey, wrapKey, type WrappedColumn } from '../crypto/keywrap.js';
import { appendAudit, type AuditActor } from '../audit/log.js';
import { AppError } from '../errors.js';
import { isScope } from './scopes.js';
import type { AuthFailure, Principal } from './keys.js';
import type { PublicSigningJwk } from './oauth-schema.js';

/** The one signing algorithm: EdDSA over Ed25519 (RFC 8037). Also the only one verification accepts. */
export const ACCESS_TOKEN_ALG = 'EdDSA';
/** RFC 9068 §2.1 media type of an access token JWT. */
export const ACCESS_TOKEN_TYP = 'at+jwt';
/** Default access token lifetime: 15 minutes. */
export const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 900;
/** Longest lifetime accepted from configuration; also the maximum token age verification accepts. */
export const MAX_ACCESS_TOKEN_TTL_SECONDS = 3600;
/** Clock skew tolerated when checking `exp` and `iat` (seconds). Small: tokens are short-lived. */
export const CLOCK_TOLERANCE_SECONDS = 5;
/**
 * Extra time a rotated key stays published after its last token expired: covers clock skew between
 * nodes, the verification tolerance above, and a node that read the old kid just before the rotation
 * committed.
 */
export const RETIRE_MARGIN_SECONDS = 60;
/** Longest token we parse at all (a bound before any decoding). */
export const MAX_TOKEN_LENGTH = 8192;

const LOCK_KEY = 'obscura:signing_keys';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The key that signs new tokens right now. */
export interface ActiveSigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
}

/** A published (verification) key, as listed by `obscura oauth signing-keys`. */
export interface SigningKeyInfo {
  kid: string;
  alg: string;
  createdAt: string;
  /** null for the current key. */
  rotatedAt: string | null;
  /** When it leaves the JWKS (null for the current key). */
  retireAt: string | null;
  current: boolean;
}

export interface SigningKeyStoreOptions {
  /** Access token lifetime (seconds); sets how long a rotated key stays published. Default 900. */
  tokenTtlSeconds?: number;
  /** Scheduled rotation period in days (default 30). */
  rotationDays?: number;
  /** Wall clock (ms), injectable for expiry tests. */
  now?: () => number;
  /** How long the published key set is cached before a background re-read (ms, default 60 000). */
  keySetTtlMs?: number;
  /** Minimum interval between refreshes caused by an unknown `kid` (ms, default 2000). */
  unknownKidRefreshMs?: number;
}

type KeyRow = {
  kid: string;
  alg: string;
  public_jwk: PublicSigningJwk | string;
  private_wrapped: string;
  master_key_id: string;
  created_at: Date;
  rotated_at: Date | null;
  retire_at: Date | null;
};

interface PublishedKey {
  readonly kid: string;
  readonly jwk: PublicSigningJwk;
  readonly key: CryptoKey;
  readonly createdAt: Date;
  readonly rotatedAt: Date | null;
  readonly retireAt: Date | null;
}

/** The wrap context binds a wrapped private key to its kid: a row's ciphertext cannot be swapped in. */
/** Wrapping context of a signing key (also used by `obscura keys rotate-master`). */
export const wrapContext = (kid: string) => `signing_key:${kid}`;

/** The access-token signing keys' private halves, wrapped by the master key. */
export const JWT_SIGNING_COLUMNS: readonly WrappedColumn[] = [
  { table: 'signing_keys', key: ['kid'], column: 'private_wrapped', masterIdColumn: 'master_key_id', context: (r) => wrapContext(String(r.kid)) },
];
const parseJwk = (v: PublicSigningJwk | string): PublicSigningJwk => (typeof v === 'string' ? (JSON.parse(v) as PublicSigningJwk) : v);

/**
 * The signing keys of this deployment: creation, scheduled and on-demand rotation, the published
 * key set (JWKS) and verification-key lookup by `kid`. One instance per process.
 */
export class SigningKeyStore {
  private readonly ttlSeconds: number;
  private readonly rotationMs: number;
  private signer: ActiveSigningKey | null = null;
  private published: { keys: Map<string, PublishedKey>; loadedAt: number } | null = null;
  private loading: Promise<Map<string, PublishedKey>> | null = null;
  private unknownRefresh: Promise<void> | null = null;

  constructor(
    private readonly db: DatabaseHandle,
    private readonly master: MasterKeys,
    private readonly opts: SigningKeyStoreOptions = {},
  ) {
    this.ttlSeconds = opts.tokenTtlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL_SECONDS;
    this.rotationMs = (opts.rotationDays ?? 30) * 86_400_000;
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  /** Seconds a rotated key stays published: the token TTL plus the margin. */
  get retireAfterSeconds(): number {
    return this.ttlSeconds + RETIRE_MARGIN_SECONDS;
  }

  /**
   * The key that signs new tokens. Creates the first key when there is none, and rotates the current
   * one when it is older than the rotation period (the schedule), under a database lock so that
   * several nodes rotate once. Reads the current kid on every call (one indexed row of a tiny table)
   * so a rotation made on another node or by the CLI takes effect here at once; the private key is
   * unwrapped only when the kid changes.
   */
  async signingKey(): Promise<ActiveSigningKey> {
    let row = (await this.db.system.selectFrom('signing_keys').selectAll().where('rotated_at', 'is', null).executeTakeFirst()) as KeyRow | undefined;
    if (!row || this.now() - new Date(row.created_at).getTime() >= this.rotationMs) row = await this.rotateLocked(row ? 'due' : 'ensure', { type: 'system' });
    return this.adopt(row);
  }

  /** Rotates now (on demand): a new key signs from this moment; the previous one is kept until it retires. */
  async rotate(actor: AuditActor = { type: 'system' }): Promise<{ kid: string; previousKid: string | null; previousRetireAt: string | null }> {
    const before = await this.db.system.selectFrom('signing_keys').select('kid').where('rotated_at', 'is', null).executeTakeFirst();
    const row = await this.adopt(await this.rotateLocked('force', actor));
    const prev = before ? await this.db.system.selectFrom('signing_keys').select(['kid', 'retire_at']).where('kid', '=', before.kid).executeTakeFirst() : undefined;
    return { kid: row.kid, previousKid: prev?.kid ?? null, previousRetireAt: prev?.retire_at ? new Date(prev.retire_at).toISOString() : null };
  }

  /** Rotates when the current key is older than the rotation period (or creates the first); returns whether it did. */
  async rotateIfDue(): Promise<boolean> {
    const before = await this.db.system.selectFrom('signing_keys').select('kid').where('rotated_at', 'is', null).executeTakeFirst();
    const row = await this.adopt(await this.rotateLocked(before ? 'due' : 'ensure', { type: 'system' }));
    return row.kid !== before?.kid;
  }

  /** Makes `row` this node's signer, unwrapping its private key unless it is already loaded. */
  private async adopt(row: KeyRow): Promise<ActiveSigningKey> {
    if (this.signer?.kid === row.kid) return this.signer;
    const privateKey = await this.unwrapPrivate(row);
    this.signer = { kid: row.kid, privateKey };
    // The signer changed, so the published set did too: this node must verify (and publish) it at once.
    this.published = null;
    return this.signer;
  }

  /**
   * `ensure`: create a key if none exists; `due`: rotate if the current key is older than the period;
   * `force`: rotate. Runs under a transaction-scoped advisory lock and re-reads the current key inside
   * it, so concurrent callers on several nodes produce one rotation.
   */
  private async rotateLocked(mode: 'ensure' | 'due' | 'force', actor: AuditActor): Promise<KeyRow> {
    const now = this.now();
    const generated = await generateKeyPair(ACCESS_TOKEN_ALG, { extractable: true });
    const privateJwk = await exportJWK(generated.privateKey);
    const publicJwk = await exportJWK(generated.publicKey);
    const jwk: PublicSigningJwk = { kty: String(publicJwk.kty), crv: String(publicJwk.crv), x: String(publicJwk.x) };
    const kid = await calculateJwkThumbprint(jwk as JWK);
    const row = await this.db.withSystem(async (trx) => {
      await sql`select pg_advisory_xact_lock(hashtextextended(${LOCK_KEY}, 0))`.execute(trx);
      const cur = (await trx.selectFrom('signing_keys').selectAll().where('rotated_at', 'is', null).forUpdate().executeTakeFirst()) as KeyRow | undefined;
      if (cur && (mode === 'ensure' || (mode === 'due' && now - new Date(cur.created_at).getTime() < this.rotationMs))) return cur;
      const rotatedAt = new Date(now);
      const retireAt = new Date(now + this.retireAfterSeconds * 1000);
      if (cur) await trx.updateTable('signing_keys').set({ rotated_at: rotatedAt, retire_at: retireAt }).where('kid', '=', cur.kid).execute();
      const plain = Buffer.from(JSON.stringify(privateJwk), 'utf8');
      let wrapped: string;
      try {
        wrapped = wrapKey(this.master.current, this.master.currentId, plain, wrapContext(kid));
      } finally {
        plain.fill(0);
      }
      const inserted = (await trx
        .insertInto('signing_keys')
        .values({ kid, alg: ACCESS_TOKEN_ALG, public_jwk: JSON.stringify(jwk), private_wrapped: wrapped, master_key_id: this.master.currentId, created_at: rotatedAt })
        .returningAll()
        .executeTakeFirstOrThrow()) as KeyRow;
      await appendAudit(
        trx,
        {
          orgId: null,
          actor,
          action: cur ? 'signing_key.rotate' : 'signing_key.create',
          target: { kid },
          data: cur ? { previous: cur.kid, previous_retire_at: retireAt.toISOString(), reason: mode === 'force' ? 'on_demand' : 'scheduled' } : {},
        },
        rotatedAt,
      );
      return inserted;
    });
    if (row.kid === kid) {
      // We created it: use the key in hand (no unwrap round trip).
      this.signer = { kid, privateKey: (await importJWK(privateJwk, ACCESS_TOKEN_ALG)) as CryptoKey };
      this.published = null;
    }
    privateJwk.d = '';
    return row;
  }

  private async unwrapPrivate(row: KeyRow): Promise<CryptoKey> {
    const plain = unwrapKey(this.master.all, row.private_wrapped, wrapContext(row.kid));
    try {
      const jwk = JSON.parse(plain.toString('utf8')) as JWK;
      return (await importJWK(jwk, ACCESS_TOKEN_ALG)) as CryptoKey;
    } finally {
      plain.fill(0);
    }
  }

  private async loadPublished(): Promise<Map<string, PublishedKey>> {
    if (this.loading) return this.loading;
    this.loading = (async () => {
      const rows = (await this.db.system
        .selectFrom('signing_keys')
        .selectAll()
        .where((eb) => eb.or([eb('retire_at', 'is', null), eb('retire_at', '>', new Date(this.now()))]))
        .orderBy('created_at', 'desc')
        .execute()) as KeyRow[];
      const keys = new Map<string, PublishedKey>();
      for (const r of rows) {
        const jwk = parseJwk(r.public_jwk);
        const key = (await importJWK({ ...jwk, alg: ACCESS_TOKEN_ALG }, ACCESS_TOKEN_ALG)) as CryptoKey;
        keys.set(r.kid, { kid: r.kid, jwk, key, createdAt: new Date(r.created_at), rotatedAt: r.rotated_at ? new Date(r.rotated_at) : null, retireAt: r.retire_at ? new Date(r.retire_at) : null });
      }
      this.published = { keys, loadedAt: performance.now() };
      return keys;
    })().finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  private async publishedKeys(): Promise<Map<string, PublishedKey>> {
    const p = this.published;
    if (p && performance.now() - p.loadedAt < (this.opts.keySetTtlMs ?? 60_000)) return p.keys;
    return this.loadPublished();
  }

  private live(k: PublishedKey): boolean {
    return k.retireAt === null || k.retireAt.getTime() > this.now();
  }

  /** Every key still published: the current one and rotated ones not yet retired. */
  async list(): Promise<SigningKeyInfo[]> {
    const keys = [...(await this.loadPublished()).values()].filter((k) => this.live(k));
    return keys.map((k) => ({
      kid: k.kid,
      alg: ACCESS_TOKEN_ALG,
      createdAt: k.createdAt.toISOString(),
      rotatedAt: k.rotatedAt?.toISOString() ?? null,
      retireAt: k.retireAt?.toISOString() ?? null,
      current: k.rotatedAt === null,
    }));
  }

  /**
   * The JSON Web Key Set (RFC 7517 §5): public keys only (`kty`, `crv`, `x`, `kid`, `alg`, `use`),
   * current and not-yet-retired previous keys. Creates the first key if none exists, so a client that
   * fetches the JWKS before any token was issued still gets the key that will sign.
   */
  async jwks(): Promise<{ keys: Array<PublicSigningJwk & { kid: string; alg: string; use: 'sig' }> }> {
    // Read fresh (coalesced: concurrent requests share one query) so a rotation on any node is
    // published at once; verification uses the cached set instead.
    let keys = await this.loadPublished();
    if (keys.size === 0) {
      await this.signingKey();
      keys = await this.loadPublished();
    }
    return { keys: [...keys.values()].filter((k) => this.live(k)).map((k) => ({ kty: k.jwk.kty, crv: k.jwk.crv, x: k.jwk.x, kid: k.kid, alg: ACCESS_TOKEN_ALG, use: 'sig' as const })) };
  }

  /** The verification key for `kid`, or undefined (unknown, or retired). */
  async verificationKey(kid: string): Promise<CryptoKey | undefined> {
    const hit = (await this.publishedKeys()).get(kid);
    if (hit) return this.live(hit) ? hit.key : undefined;
    await this.refreshForUnknownKid();
    const again = this.published?.keys.get(kid);
    return again && this.live(again) ? again.key : undefined;
  }

  private refreshForUnknownKid(): Promise<void> {
    if (this.unknownRefresh) return this.unknownRefresh;
    const since = this.published ? performance.now() - this.published.loadedAt : Infinity;
    const wait = Math.max(0, (this.opts.unknownKidRefreshMs ?? 2000) - since);
    // Coalesced and rate-limited: every request with an unknown kid waits for the same single re-read.
    this.unknownRefresh = (async () => {
      if (wait > 0) await sleep(wait);
      await this.loadPublished();
    })().finally(() => {
      this.unknownRefresh = null;
    });
    return this.unknownRefresh;
  }
}

/** What an access token says about its holder. */
export interface AccessTokenSubject {
  /** Public client id (`sub` and `client_id`). */
  clientId: string;
  /** The client's row id (uuid), carried as the private claim `obs_cid`; the principal's `keyId`. */
  clientRef: string;
  orgId: string;
  appId: string;
  scopes: readonly string[];
}

export interface TokenClaimsOptions {
  /** `iss`: the deployment's public URL. */
  issuer: string;
  /** `aud`: the deployment's public URL (the resource server is this API; RFC 8707 style). */
  audience: string;
  /** Lifetime in seconds. */
  ttlSeconds: number;
  /** Issue time (ms since the epoch). */
  now: number;
}

/**
 * Signs an access token (RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti, scope) plus `org_id`,
 * `app_id` and `obs_cid`. Internal: the token endpoint is the only caller (tests use it to craft
 * expired tokens with the real key).
 */
export async function signAccessToken(key: ActiveSigningKey, subject: AccessTokenSubject, opts: TokenClaimsOptions): Promise<{ token: string; expiresIn: number; jti: string }> {
  const iat = Math.floor(opts.now / 1000);
  const jti = randomBytes(16).toString('base64url');
  const token = await new SignJWT({
    client_id: subject.clientId,
    scope: [...subject.scopes].join(' '),
    org_id: subject.orgId,
    app_id: subject.appId,
    obs_cid: subject.clientRef,
  })
    .setProtectedHeader({ alg: ACCESS_TOKEN_ALG, typ: ACCESS_TOKEN_TYP, kid: key.kid })
    .setIssuer(opts.issuer)
    .setSubject(subject.clientId)
    .setAudience(opts.audience)
    .setJti(jti)
    .setIssuedAt(iat)
    .setExpirationTime(iat + opts.ttlSeconds)
    .sign(key.privateKey);
  return { token, expiresIn: opts.ttlSeconds, jti };
}

export interface AccessTokenVerifierOptions {
  issuer: string;
  audience: string;
  keys: SigningKeyStore;
  now?: () => number;
}

const invalid = (cause?: unknown) => new AppError('ERR_TOKEN_INVALID', 'The access token is not valid.', { cause, internal: { failure: { code: 'ERR_TOKEN_INVALID', orgId: null, keyId: null } satisfies AuthFailure } });

/**
 * Returns a verifier of our access tokens that yields the same `Principal` an API key would
 * (`kind: 'token'`, `keyId` = the OAuth client's row id). Throws `ERR_TOKEN_EXPIRED` for a genuine
 * token past its `exp`, and `ERR_TOKEN_INVALID` for everything else (bad signature, unknown or retired
 * key, another algorithm, wrong `typ`/`iss`/`aud`, missing claims, malformed). Only an expired token
 * names its org in `internal.failure`: its signature was verified, so its claims are ours; a forged
 * token's claims are never trusted, not even for the audit trail.
 *
 * Security note: a revoked client's tokens keep working until they expire (at most the token TTL);
 * there is no per-request revocation lookup. That is the standard trade-off of self-contained tokens.
 */
export function accessTokenVerifier(opts: AccessTokenVerifierOptions): (token: string) => Promise<Principal> {
  const getKey = async (header: JWTHeaderParameters): Promise<CryptoKey> => {
    if (header.alg !== ACCESS_TOKEN_ALG || typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > 128) throw invalid();
    const key = await opts.keys.verificationKey(header.kid);
    if (!key) throw invalid();
    return key;
  };
  return async (token: string): Promise<Principal> => {
    if (token.length > MAX_TOKEN_LENGTH || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) throw invalid();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        algorithms: [ACCESS_TOKEN_ALG],
        issuer: opts.issuer,
        audience: opts.audience,
        typ: ACCESS_TOKEN_TYP,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        maxTokenAge: MAX_ACCESS_TOKEN_TTL_SECONDS + CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id', 'scope', 'org_id', 'app_id', 'obs_cid'],
        currentDate: new Date(opts.now ? opts.now() : Date.now()),
      }));
    } catch (err) {
      if (err instanceof AppError) throw err;
      if (err instanceof joseErrors.JWTExpired) {
        const p = err.payload;
        const orgId = typeof p.org_id === 'string' && UUID_RE.test(p.org_id) ? p.org_id : null;
        const keyId = typeof p.obs_cid === 'string' && UUID_RE.test(p.obs_cid) ? p.obs_cid : null;
        throw new AppError('ERR_TOKEN_EXPIRED', 'The access token has expired; request a new one.', { cause: err, internal: { failure: { code: 'ERR_TOKEN_EXPIRED', orgId, keyId } satisfies AuthFailure } });
      }
      throw invalid(err);
    }
    const { sub, client_id: clientId, org_id: orgId, app_id: appId, obs_cid: clientRef, scope } = payload;
    if (
      typeof clientId !== 'string' ||
      sub !== clientId ||
      typeof orgId !== 'string' ||
      !UUID_RE.test(orgId) ||
      typeof appId !== 'string' ||
      !UUID_RE.test(appId) ||
      typeof clientRef !== 'string' ||
      !UUID_RE.test(clientRef) ||
      typeof scope !== 'string'
    ) {
      throw invalid();
    }
    const scopes = new Set(scope.split(' ').filter(isScope));
    return { orgId, appId, keyId: clientRef, kind: 'token', scopes };
  };
}
