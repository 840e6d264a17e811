/**
 * OAuth2 client credentials (RFC 6749 §4.4): confidential clients of an app, and the token endpoint
 * logic that turns a client's id + secret into a short-lived JWT access token (jwt.ts).
 *
 * - A client has a public `client_id` (`obs_client_<22 base62>`, ≈131 bits) and a secret
 *   (`obs_cs_<43 base62><6 base62 CRC32>`, ≈256 bits, the CRC tail for secret scanners as with API
 *   keys). Only SHA-256 of the secret is stored — a fast hash is right for a high-entropy secret — and
 *   it is compared in constant time. The secret is shown once.
 * - A client holds a maximum set of scopes; a token request may narrow it (`scope=`), never widen it.
 * - Revoking a client stops new tokens at once on every node (the token endpoint reads the database on
 *   each request). Tokens already issued stay valid until they expire (15 min by default): access
 *   tokens are self-contained and verified without a database lookup. That is the documented trade-off
 *   of RFC 9068 tokens; shorten `OBSCURA_ACCESS_TOKEN_TTL_SECONDS` to shrink the window.
 * - Failures are audited to the client's org when the client is known (at most once per client and
 *   reason per minute, so guessing cannot flood the chain), and count towards the per-IP burst detector.
 */
import { crc32 } from 'node:zlib';
import type { DatabaseHandle, Tx } from '../db/database.js';
import { AppError, notFound, type ErrorCode } from '../errors.js';
import { base62Uint32, newId, publicId, randomBase62, safeEqual, sha256Hex } from '../crypto/random.js';
import { appendAudit } from '../audit/log.js';
import { getApp, type Ctx } from '../tenants/index.js';
import type { FailureTracker } from './failures.js';
import { SCOPES, isScope, type Scope } from './scopes.js';
import { requireCovers } from './keys.js';
import { signAccessToken, type SigningKeyStore } from './jwt.js';
import type { OAuthClientsTable } from './oauth-schema.js';
import { ALL_ROWS, keysetPage, mapPage, type ListOrder, type Page, type PageRequest } from '../db/pagination.js';

/** Public client ids. */
export const CLIENT_ID_PATTERN = /^obs_client_[0-9A-Za-z]{22}$/;
/** Client secrets (the pattern a secret scanner can use). */
export const CLIENT_SECRET_PATTERN = /^obs_cs_([0-9A-Za-z]{43})([0-9A-Za-z]{6})$/;
/** The only grant this server supports. */
export const GRANT_CLIENT_CREDENTIALS = 'client_credentials';
/** Client authentication methods (RFC 6749 §2.3.1), as advertised in the RFC 8414 metadata. */
export const TOKEN_ENDPOINT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post'] as const;

/** RFC 6749 §5.2 error names of our codes. */
export const OAUTH_ERROR_NAMES: Partial<Record<ErrorCode, string>> = {
  ERR_OAUTH_INVALID_REQUEST: 'invalid_request',
  ERR_OAUTH_INVALID_CLIENT: 'invalid_client',
  ERR_OAUTH_CLIENT_REVOKED: 'invalid_client',
  ERR_OAUTH_UNSUPPORTED_GRANT_TYPE: 'unsupported_grant_type',
  ERR_OAUTH_INVALID_SCOPE: 'invalid_scope',
};

/** Public description of a client (never the secret or its hash). */
export interface OAuthClientInfo {
  id: string;
  appId: string;
  clientId: string;
  name: string;
  scopes: string[];
  revokedAt: string | null;
  createdAt: string;
}

type ClientRow = Omit<OAuthClientsTable, 'created_at' | 'revoked_at'> & { created_at: Date; revoked_at: Date | null };

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

function toInfo(r: ClientRow): OAuthClientInfo {
  return { id: r.id, appId: r.app_id, clientId: r.client_id, name: r.name, scopes: r.scopes, revokedAt: iso(r.revoked_at), createdAt: iso(r.created_at)! };
}

/** A new client secret: `obs_cs_` + 43 random base62 (≈256 bits) + a 6-character CRC32 tail. */
export function generateClientSecret(): string {
  const body = `obs_cs_${randomBase62(43)}`;
  return body + base62Uint32(crc32(body));
}

/** SHA-256 (hex) of a client secret: the only stored form. */
export function hashClientSecret(secret: string): string {
  return sha256Hex(secret);
}

/** Refuses unknown scopes and scopes the granting credential lacks (no privilege escalation). */
function resolveClientScopes(requested: string[] | undefined, granter: ReadonlySet<string> | null): Scope[] {
  for (const s of requested ?? []) {
    if (!isScope(s)) throw new AppError('ERR_VALIDATION', `Unknown scope "${s.slice(0, 64)}".`, { details: { field: 'scopes' } });
  }
  // Least privilege by default: a client created through the API gets at most its creator's scopes.
  const scopes = [...new Set((requested ?? SCOPES.filter((s) => !granter || granter.has(s))) as Scope[])].sort();
  if (scopes.length === 0) throw new AppError('ERR_VALIDATION', 'A client needs at least one scope.', { details: { field: 'scopes' } });
  if (granter) {
    const missing = scopes.filter((s) => !granter.has(s));
    if (missing.length) throw new AppError('ERR_SCOPE_MISSING', 'A client cannot be granted scopes that the calling credential does not hold.', { details: { missing } });
  }
  return scopes;
}

/**
 * Creates a confidential client for an app. Returns the secret once; only its SHA-256 is stored.
 * `granter` is the calling principal's scopes (null for the CLI acting as the operator).
 */
export async function createClient(
  trx: Tx,
  orgId: string,
  appId: string,
  input: { name?: string; scopes?: string[] },
  ctx: Ctx & { granter: ReadonlySet<string> | null },
): Promise<{ client: OAuthClientInfo; secret: string }> {
  await getApp(trx, orgId, appId);
  const scopes = resolveClientScopes(input.scopes, ctx.granter);
  const name = (input.name ?? '').slice(0, 200);
  const secret = generateClientSecret();
  const row = (await trx
    .insertInto('oauth_clients')
    .values({ id: newId(), org_id: orgId, app_id: appId, client_id: publicId('obs_client'), name, secret_hash: hashClientSecret(secret), scopes })
    .returningAll()
    .executeTakeFirstOrThrow()) as ClientRow;
  await appendAudit(trx, {
    orgId,
    actor: ctx.actor,
    action: 'oauth_client.create',
    target: { oauth_client: row.id, app: appId },
    data: { client_id: row.client_id, name, scopes },
    ip: ctx.ip,
    requestId: ctx.requestId,
  });
  return { client: toInfo(row), secret };
}

/** An app's clients, oldest first. */
/** OAuth client lists: oldest first, keyset on (created_at, id). */
export const CLIENT_ORDER: ListOrder = { keys: [{ column: 'created_at', type: 'timestamptz' }, { column: 'id', type: 'uuid' }], direction: 'asc' };

/** One page of an app's OAuth clients (all of them by default), oldest first; never the secrets. */
export async function listClients(trx: Tx, orgId: string, appId: string, page: PageRequest = ALL_ROWS): Promise<Page<OAuthClientInfo>> {
  await getApp(trx, orgId, appId);
  const q = trx.selectFrom('oauth_clients').selectAll().where('org_id', '=', orgId).where('app_id', '=', appId);
  return mapPage(await keysetPage(q, CLIENT_ORDER, page), (r) => toInfo(r as ClientRow));
}

/**
 * Revokes a client: no new token from this moment, on every node. Tokens already issued expire on
 * their own (at most the access token TTL). Idempotent: revoking twice keeps the first time.
 */
export async function revokeClient(trx: Tx, orgId: string, id: string, ctx: Ctx & { granter: ReadonlySet<string> | null }, now: Date = new Date()): Promise<OAuthClientInfo> {
  const row = (await trx.selectFrom('oauth_clients').selectAll().where('org_id', '=', orgId).where('id', '=', id).forUpdate().executeTakeFirst()) as ClientRow | undefined;
  if (!row) throw notFound('OAuth client');
  requireCovers(ctx.granter, row.scopes, 'revoke this OAuth client');
  if (row.revoked_at) return toInfo(row);
  const updated = (await trx.updateTable('oauth_clients').set({ revoked_at: now }).where('org_id', '=', orgId).where('id', '=', id).returningAll().executeTakeFirstOrThrow()) as ClientRow;
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'oauth_client.revoke', target: { oauth_client: id, app: row.app_id }, data: { client_id: row.client_id }, ip: ctx.ip, requestId: ctx.requestId }, now);
  return toInfo(updated);
}

/** The org a client belongs to (operator tools; owner-level read). */
export async function orgOfClient(db: DatabaseHandle, id: string): Promise<string> {
  const row = await db.system.selectFrom('oauth_clients').select('org_id').where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('OAuth client');
  return row.org_id;
}

/** A token request as received: form parameters (each at most once) and the Authorization header. */
export interface TokenRequest {
  params: Readonly<Record<string, string>>;
  authorization: string | undefined;
}

/** RFC 6749 §5.1 successful response. */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
}

export interface TokenIssuerOptions {
  db: DatabaseHandle;
  keys: SigningKeyStore;
  /** `iss` of the tokens (the public URL). */
  issuer: string;
  /** `aud` of the tokens (the public URL). */
  audience: string;
  /** Access token lifetime (seconds, default 900). */
  ttlSeconds: number;
  /** Per-IP burst detection shared with key authentication (optional). */
  failures?: FailureTracker;
  now?: () => number;
  /** Minimum interval between two audit entries for the same client and failure (ms, default 60 000). */
  dedupeMs?: number;
}

interface ClientCredentials {
  clientId: string;
  secret: string;
  method: 'client_secret_basic' | 'client_secret_post';
}

const oauthError = (code: ErrorCode, message: string, headers?: Record<string, string>) => new AppError(code, message, headers ? { headers } : {});
// RFC 6749 §5.2 / RFC 7235: a failed Basic authentication is answered with a Basic challenge.
const BASIC_CHALLENGE = { 'WWW-Authenticate': 'Basic realm="obscura", charset="UTF-8"' };
const invalidClient = () => oauthError('ERR_OAUTH_INVALID_CLIENT', 'Client authentication failed.', BASIC_CHALLENGE);

/** application/x-www-form-urlencoded decoding of one Basic credential part (RFC 6749 §2.3.1, Appendix B). */
function formDecode(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '));
}

/** Parses `Authorization: Basic` per RFC 6749 §2.3.1 (id and secret are form-urlencoded before base64). */
export function parseBasicCredentials(header: string): { clientId: string; secret: string } {
  const m = /^Basic[ ]+([A-Za-z0-9+/]+={0,2})[ ]*$/i.exec(header);
  if (!m) throw invalidClient();
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) throw invalidClient();
  try {
    return { clientId: formDecode(decoded.slice(0, i)), secret: formDecode(decoded.slice(i + 1)) };
  } catch {
    throw invalidClient();
  }
}

/**
 * The token endpoint's logic. One instance per process; `issue` throws AppErrors with `ERR_OAUTH_*`
 * codes that the route maps to RFC 6749 §5.2 errors.
 */
export class TokenIssuer {
  private readonly recent = new Map<string, number>();
  // Compared against when the client is unknown, so the work (and timing) matches a known client.
  private readonly dummyHash = hashClientSecret(generateClientSecret());

  constructor(private readonly opts: TokenIssuerOptions) {}

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  private credentials(req: TokenRequest): ClientCredentials {
    const p = req.params;
    if (req.authorization !== undefined) {
      if (!/^Basic /i.test(req.authorization)) throw invalidClient();
      const basic = parseBasicCredentials(req.authorization);
      // RFC 6749 §2.3: one authentication method per request.
      if (p.client_secret !== undefined) throw oauthError('ERR_OAUTH_INVALID_REQUEST', 'Use one client authentication method: Basic or client_secret in the body, not both.');
      if (p.client_id !== undefined && p.client_id !== basic.clientId) throw oauthError('ERR_OAUTH_INVALID_REQUEST', 'client_id in the body does not match the Authorization header.');
      return { ...basic, method: 'client_secret_basic' };
    }
    if (p.client_id === undefined || p.client_secret === undefined) {
      throw oauthError('ERR_OAUTH_INVALID_CLIENT', 'Authenticate the client with HTTP Basic or client_id and client_secret in the body.', BASIC_CHALLENGE);
    }
    return { clientId: p.client_id, secret: p.client_secret, method: 'client_secret_post' };
  }

  /**
   * Handles one token request. Order: request syntax and grant type, then client authentication, then
   * the requested scope. Nothing is written on success (the token is self-contained); failures with a
   * known client are audited to its org.
   */
  async issue(req: TokenRequest, meta: { ip: string; requestId: string }): Promise<TokenResponse> {
    let client: ClientRow | undefined;
    try {
      const grant = req.params.grant_type;
      if (grant === undefined || grant === '') throw oauthError('ERR_OAUTH_INVALID_REQUEST', 'grant_type is required.');
      if (grant !== GRANT_CLIENT_CREDENTIALS) throw oauthError('ERR_OAUTH_UNSUPPORTED_GRANT_TYPE', 'Only the client_credentials grant is supported.');
      const creds = this.credentials(req);
      const wellFormedId = CLIENT_ID_PATTERN.test(creds.clientId);
      client = wellFormedId ? ((await this.opts.db.system.selectFrom('oauth_clients').selectAll().where('client_id', '=', creds.clientId).executeTakeFirst()) as ClientRow | undefined) : undefined;
      // Hash and compare even for an unknown client or an oversized secret, so timing does not tell
      // which client ids exist.
      const presented = hashClientSecret(creds.secret.length <= 256 ? creds.secret : '');
      const match = safeEqual(presented, client?.secret_hash ?? this.dummyHash) && client !== undefined && CLIENT_SECRET_PATTERN.test(creds.secret);
      if (!match) throw invalidClient();
      if (client!.revoked_at) {
        throw oauthError('ERR_OAUTH_CLIENT_REVOKED', 'This client has been revoked.', BASIC_CHALLENGE);
      }
      const scopes = this.grantedScopes(client!, req.params.scope);
      const key = await this.opts.keys.signingKey();
      const { token, expiresIn } = await signAccessToken(
        key,
        { clientId: client!.client_id, clientRef: client!.id, orgId: client!.org_id, appId: client!.app_id, scopes },
        { issuer: this.opts.issuer, audience: this.opts.audience, ttlSeconds: this.opts.ttlSeconds, now: this.now() },
      );
      return { access_token: token, token_type: 'Bearer', expires_in: expiresIn, scope: scopes.join(' ') };
    } catch (err) {
      if (err instanceof AppError && err.status < 500) await this.recordFailure(err, client, meta);
      throw err;
    }
  }

  /** RFC 6749 §3.3: absent scope means the client's full set; a requested scope may only narrow it. */
  private grantedScopes(client: ClientRow, requested: string | undefined): string[] {
    const allowed = new Set(client.scopes);
    if (requested === undefined) return [...allowed].sort();
    const asked = requested.split(' ').filter((s) => s.length > 0);
    if (asked.length === 0 || asked.length > SCOPES.length * 2) throw oauthError('ERR_OAUTH_INVALID_SCOPE', 'scope must list one or more scopes separated by spaces.');
    const refused = asked.filter((s) => !allowed.has(s));
    if (refused.length) throw oauthError('ERR_OAUTH_INVALID_SCOPE', 'The requested scope exceeds what this client may hold.');
    return [...new Set(asked)].sort();
  }

  private async recordFailure(err: AppError, client: ClientRow | undefined, meta: { ip: string; requestId: string }): Promise<void> {
    try {
      if (client) {
        const k = `${client.id}:${err.code}`;
        const now = this.now();
        const last = this.recent.get(k);
        if (last === undefined || now - last >= (this.opts.dedupeMs ?? 60_000)) {
          this.recent.set(k, now);
          // Bounded memory: forget the oldest entries first.
          while (this.recent.size > 50_000) this.recent.delete(this.recent.keys().next().value as string);
          await this.opts.db.withTenant(client.org_id, (trx) =>
            appendAudit(trx, {
              orgId: client.org_id,
              // The caller proved nothing, so it is not the client: only the client is the target.
              actor: { type: 'anonymous' },
              action: 'oauth_token.failure',
              target: { oauth_client: client.id, app: client.app_id },
              data: { code: err.code, error: OAUTH_ERROR_NAMES[err.code] ?? 'invalid_request' },
              ip: meta.ip,
              requestId: meta.requestId,
            }),
          );
        }
      }
      await this.opts.failures?.record(meta.ip, err.code, undefined, meta.requestId);
    } catch {
      // Auditing a refusal must never turn it into a 500.
    }
  }
}
