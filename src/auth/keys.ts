/**
 * API keys: minting, listing, rolling, revoking and verifying.
 *
 * Verification is on every request, so it is cached: a verified key's record stays in memory for
 * `ttlMs` (default 2 s, at most 5 s). A revocation or roll invalidates the entry on the node that made
 * it at once; other nodes sharing the database re-read the record when their entry expires, so a
 * revocation reaches every node within `ttlMs` (the 5-second promise). Failed lookups are not cached,
 * so a key created on another node works immediately.
 */
import type { DatabaseHandle, Tx } from '../db/database.js';
import type { KeyKind, UserRole } from '../db/schema.js';
import { AppError, notFound } from '../errors.js';
import { API_KEY_PATTERN, generateApiKey, parseApiKey, hashApiKey, displayApiKey } from '../crypto/apikey.js';
import { newId } from '../crypto/random.js';
import { appendAudit } from '../audit/log.js';
import type { Ctx } from '../tenants/index.js';
import { getApp } from '../tenants/index.js';
import { SCOPES, PUBLISHABLE_SCOPES, PUBLISHABLE_DEFAULT_SCOPES, isScope, type Scope } from './scopes.js';
import { cidrMatcher, normaliseAppIds, normaliseCidrs, normaliseOrigins } from './network.js';
import { ALL_ROWS, keysetPage, mapPage, type ListOrder, type Page, type PageRequest } from '../db/pagination.js';

/** The longest grace period a rolled key may keep working: 30 days. */
export const MAX_GRACE_SECONDS = 30 * 24 * 3600;

/** Who is calling, once a credential has been verified. */
export interface Principal {
  readonly orgId: string;
  readonly appId: string;
  /** Key id, or the OAuth client's credential id for access tokens. */
  readonly keyId: string;
  readonly kind: KeyKind | 'token' | 'session';
  readonly scopes: ReadonlySet<string>;
  /** For a console session (`kind: 'session'`; `keyId` is the session id): the member and role it acts as. */
  readonly user?: { readonly id: string; readonly role: UserRole };
}

/** Public description of a key (never the key or its hash). */
export interface KeyInfo {
  id: string;
  appId: string;
  kind: KeyKind;
  name: string;
  display: string;
  scopes: string[];
  allowedIps: string[];
  allowedOrigins: string[];
  /** Native app identifiers a publishable key may be used from instead of a web origin (issue 15). */
  allowedAppIds: string[];
  expiresAt: string | null;
  revokedAt: string | null;
  rolledTo: string | null;
  /** When a rolled key stops; null with `rolledTo` set: when its replacement is first used (or revoked). */
  graceEndsAt: string | null;
  /** When the key was first accepted (null: never used). */
  firstUsedAt: string | null;
  createdAt: string;
}

export interface CreateKeyInput {
  kind: KeyKind;
  name?: string;
  scopes?: string[];
  expiresAt?: string | null;
  allowedIps?: string[];
  allowedOrigins?: string[];
  allowedAppIds?: string[];
}

type KeyRow = {
  id: string;
  org_id: string;
  app_id: string;
  kind: KeyKind;
  name: string;
  display: string;
  hash: string;
  scopes: string[];
  allowed_ips: string[];
  allowed_origins: string[];
  allowed_app_ids: string[];
  expires_at: Date | null;
  revoked_at: Date | null;
  rolled_to: string | null;
  grace_ends_at: Date | null;
  first_used_at: Date | null;
  created_at: Date;
};

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

function toInfo(r: KeyRow): KeyInfo {
  return {
    id: r.id,
    appId: r.app_id,
    kind: r.kind,
    name: r.name,
    display: r.display,
    scopes: r.scopes,
    allowedIps: r.allowed_ips,
    allowedOrigins: r.allowed_origins,
    allowedAppIds: r.allowed_app_ids ?? [],
    expiresAt: iso(r.expires_at),
    revokedAt: iso(r.revoked_at),
    rolledTo: r.rolled_to,
    graceEndsAt: iso(r.grace_ends_at),
    firstUsedAt: iso(r.first_used_at),
    createdAt: iso(r.created_at)!,
  };
}

function resolveScopes(kind: KeyKind, requested: string[] | undefined, granter: ReadonlySet<string> | null): Scope[] {
  for (const s of requested ?? []) {
    if (!isScope(s)) throw new AppError('ERR_VALIDATION', `Unknown scope "${s.slice(0, 64)}".`, { details: { field: 'scopes' } });
  }
  let scopes: Scope[];
  if (kind === 'publishable') {
    scopes = (requested ?? [...PUBLISHABLE_DEFAULT_SCOPES]) as Scope[];
    const extra = scopes.filter((s) => !PUBLISHABLE_SCOPES.includes(s));
    if (extra.length) {
      throw new AppError('ERR_VALIDATION', `A publishable key may only hold ${PUBLISHABLE_SCOPES.join(', ')}.`, { details: { field: 'scopes', refused: extra } });
    }
  } else if (kind === 'restricted') {
    if (!requested || requested.length === 0) {
      throw new AppError('ERR_VALIDATION', 'A restricted key needs an explicit, non-empty list of scopes.', { details: { field: 'scopes' } });
    }
    scopes = requested as Scope[];
  } else {
    scopes = (requested ?? [...SCOPES]) as Scope[];
  }
  scopes = [...new Set(scopes)].sort();
  // No privilege escalation: a credential can only mint keys with scopes it holds itself.
  if (granter) {
    const missing = scopes.filter((s) => !granter.has(s));
    if (missing.length) {
      throw new AppError('ERR_SCOPE_MISSING', 'A key cannot grant scopes that the calling credential does not hold.', { details: { missing } });
    }
  }
  return scopes;
}

/**
 * Mints a key for an app. Returns the key text once; only its SHA-256 is stored.
 * `granter` is the calling principal's scopes (null for the CLI acting as the operator).
 */
export async function createKey(
  trx: Tx,
  orgId: string,
  appId: string,
  input: CreateKeyInput,
  ctx: Ctx & { granter: ReadonlySet<string> | null },
  now: Date = new Date(),
): Promise<{ key: KeyInfo; secret: string }> {
  await getApp(trx, orgId, appId);
  const scopes = resolveScopes(input.kind, input.scopes, ctx.granter);
  const allowedIps = normaliseCidrs(input.allowedIps ?? []);
  const allowedOrigins = normaliseOrigins(input.allowedOrigins ?? []);
  const allowedAppIds = normaliseAppIds(input.allowedAppIds ?? []);
  if (allowedAppIds.length > 0 && input.kind !== 'publishable') {
    throw new AppError('ERR_VALIDATION', 'Only a publishable key takes allowed app ids (native apps).', { details: { field: 'allowed_app_ids' } });
  }
  if (input.kind === 'publishable' && allowedOrigins.length === 0 && allowedAppIds.length === 0) {
    throw new AppError('ERR_VALIDATION', 'A publishable key needs at least one allowed origin (or, for a native app, an allowed app id).', { details: { field: 'allowed_origins' } });
  }
  let expiresAt: Date | null = null;
  if (input.expiresAt) {
    expiresAt = new Date(input.expiresAt);
    if (Number.isNaN(expiresAt.getTime()) || expiresAt.getTime() <= now.getTime()) {
      throw new AppError('ERR_VALIDATION', 'expires_at must be a future date-time.', { details: { field: 'expires_at' } });
    }
  }
  const secret = generateApiKey(input.kind);
  const row = await trx
    .insertInto('api_keys')
    .values({
      id: newId(),
      org_id: orgId,
      app_id: appId,
      kind: input.kind,
      name: input.name ?? '',
      hash: hashApiKey(secret),
      display: displayApiKey(secret),
      scopes,
      allowed_ips: allowedIps,
      allowed_origins: allowedOrigins,
      allowed_app_ids: allowedAppIds,
      expires_at: expiresAt,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await appendAudit(trx, {
    orgId,
    actor: ctx.actor,
    action: 'key.create',
    target: { key: row.id, app: appId },
    data: { kind: input.kind, scopes, allowed_ips: allowedIps, allowed_origins: allowedOrigins, ...(allowedAppIds.length ? { allowed_app_ids: allowedAppIds } : {}), expires_at: iso(expiresAt) },
    ip: ctx.ip,
    requestId: ctx.requestId,
  });
  return { key: toInfo(row as KeyRow), secret };
}

/** Key lists: oldest first, keyset on (created_at, id). */
export const KEY_ORDER: ListOrder = { keys: [{ column: 'created_at', type: 'timestamptz' }, { column: 'id', type: 'uuid' }], direction: 'asc' };

/** One page of an app's keys (all of them by default), oldest first; never the secrets. */
export async function listKeys(trx: Tx, orgId: string, appId: string, page: PageRequest = ALL_ROWS): Promise<Page<KeyInfo>> {
  await getApp(trx, orgId, appId);
  const q = trx.selectFrom('api_keys').selectAll().where('org_id', '=', orgId).where('app_id', '=', appId);
  return mapPage(await keysetPage(q, KEY_ORDER, page), (r) => toInfo(r as KeyRow));
}

export async function getKey(trx: Tx, orgId: string, keyId: string): Promise<KeyInfo> {
  const row = await trx.selectFrom('api_keys').selectAll().where('org_id', '=', orgId).where('id', '=', keyId).executeTakeFirst();
  if (!row) throw notFound('key');
  return toInfo(row as KeyRow);
}

/**
 * Rolls a key: mints a replacement with the same kind, scopes and restrictions. Returns the new key once.
 *
 * The old key keeps working for `graceSeconds` (1 – 30 days), or with 0 (the default) until the
 * replacement is first used: a roll whose answer is lost (a dropped connection, a CLI killed after the
 * commit) can never lock anyone out, because the old key still works and rolling it again is allowed
 * while the replacement was never used (the unused replacement is revoked). To stop a leaked key at
 * once, roll it and then revoke it (`revokeKey`).
 */
export async function rollKey(
  trx: Tx,
  orgId: string,
  keyId: string,
  graceSeconds: number,
  ctx: Ctx & { granter: ReadonlySet<string> | null },
  now: Date = new Date(),
): Promise<{ key: KeyInfo; secret: string; previous: KeyInfo; oldHash: string; supersededHash: string | null }> {
  if (!Number.isInteger(graceSeconds) || graceSeconds < 0 || graceSeconds > MAX_GRACE_SECONDS) {
    throw new AppError('ERR_VALIDATION', `grace_period_seconds must be a whole number from 0 to ${MAX_GRACE_SECONDS}.`, { details: { field: 'grace_period_seconds' } });
  }
  const old = (await trx.selectFrom('api_keys').selectAll().where('org_id', '=', orgId).where('id', '=', keyId).forUpdate().executeTakeFirst()) as KeyRow | undefined;
  if (!old) throw notFound('key');
  requireCovers(ctx.granter, old.scopes, 'roll this key');
  if (old.revoked_at) throw new AppError('ERR_CONFLICT', 'A revoked key cannot be rolled.');
  let supersededHash: string | null = null;
  if (old.rolled_to) {
    // Rolling again is how a lost roll answer is recovered: allowed while the old key still works and
    // its replacement was never used (nobody can hold it), which is then revoked.
    const replacement = (await trx.selectFrom('api_keys').selectAll().where('org_id', '=', orgId).where('id', '=', old.rolled_to).forUpdate().executeTakeFirst()) as KeyRow | undefined;
    const oldStillValid = !old.grace_ends_at || old.grace_ends_at.getTime() > now.getTime();
    if (!replacement || replacement.first_used_at || replacement.revoked_at || !oldStillValid) {
      throw new AppError('ERR_CONFLICT', 'This key was already rolled and its replacement has been used (or it has stopped); roll its replacement instead.');
    }
    await trx.updateTable('api_keys').set({ revoked_at: now }).where('org_id', '=', orgId).where('id', '=', replacement.id).execute();
    await appendAudit(trx, { orgId, actor: ctx.actor, action: 'key.revoke', target: { key: replacement.id, app: replacement.app_id }, data: { reason: 'superseded by a new roll before first use' }, ip: ctx.ip, requestId: ctx.requestId });
    supersededHash = replacement.hash;
  }
  const created = await createKey(
    trx,
    orgId,
    old.app_id,
    { kind: old.kind, name: old.name, scopes: old.scopes, allowedIps: old.allowed_ips, allowedOrigins: old.allowed_origins, allowedAppIds: old.allowed_app_ids ?? [], expiresAt: old.expires_at && old.expires_at > now ? iso(old.expires_at) : null },
    ctx,
    now,
  );
  // Grace 0: no end time yet; the replacement's first use sets it (KeyVerifier.markFirstUse).
  const graceEndsAt = graceSeconds === 0 ? null : new Date(now.getTime() + graceSeconds * 1000);
  const updated = (await trx
    .updateTable('api_keys')
    .set({ rolled_to: created.key.id, grace_ends_at: graceEndsAt })
    .where('org_id', '=', orgId)
    .where('id', '=', keyId)
    .returningAll()
    .executeTakeFirstOrThrow()) as KeyRow;
  await appendAudit(trx, {
    orgId,
    actor: ctx.actor,
    action: 'key.roll',
    target: { key: keyId, app: old.app_id },
    data: { replacement: created.key.id, grace_period_seconds: graceSeconds, grace_ends_at: graceEndsAt ? graceEndsAt.toISOString() : 'first use of the replacement' },
    ip: ctx.ip,
    requestId: ctx.requestId,
  });
  return { ...created, previous: toInfo(updated), oldHash: old.hash, supersededHash };
}

/**
 * Revokes a key at once (idempotent: revoking twice keeps the first time). `granter` is the calling
 * principal's scopes: a key with scopes the caller lacks is refused (null for the CLI operator).
 */
export async function revokeKey(trx: Tx, orgId: string, keyId: string, ctx: Ctx & { granter: ReadonlySet<string> | null }, now: Date = new Date()): Promise<{ key: KeyInfo; hash: string; predecessorHashes: string[] }> {
  const row = (await trx.selectFrom('api_keys').selectAll().where('org_id', '=', orgId).where('id', '=', keyId).forUpdate().executeTakeFirst()) as KeyRow | undefined;
  if (!row) throw notFound('key');
  requireCovers(ctx.granter, row.scopes, 'revoke this key');
  if (row.revoked_at) return { key: toInfo(row), hash: row.hash, predecessorHashes: [] };
  const updated = (await trx.updateTable('api_keys').set({ revoked_at: now }).where('org_id', '=', orgId).where('id', '=', keyId).returningAll().executeTakeFirstOrThrow()) as KeyRow;
  // A key rolled without grace waits for this replacement's first use; revoking the replacement is an
  // explicit stop, so it must not leave the old key working indefinitely: it stops now too.
  const predecessors = await trx.updateTable('api_keys').set({ grace_ends_at: now }).where('org_id', '=', orgId).where('rolled_to', '=', keyId).where('grace_ends_at', 'is', null).where('revoked_at', 'is', null).returning(['hash']).execute();
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'key.revoke', target: { key: keyId, app: row.app_id }, ip: ctx.ip, requestId: ctx.requestId });
  return { key: toInfo(updated), hash: row.hash, predecessorHashes: predecessors.map((r) => r.hash) };
}

interface CachedKey {
  readonly row: KeyRow;
  readonly scopes: ReadonlySet<string>;
  readonly ipAllowed: ((ip: string) => boolean) | null;
  readonly origins: ReadonlySet<string>;
  readonly appIds: ReadonlySet<string>;
  readonly fetchedAt: number;
}

/** Why a credential was refused, for the audit trail. */
export interface AuthFailure {
  code: AppError['code'];
  orgId: string | null;
  keyId: string | null;
}

export interface VerifyContext {
  ip: string;
  origin: string | undefined;
  /** The native app identifier a request without an Origin names (`Obscura-App-Id`; publishable keys only). */
  appId?: string | undefined;
}

/**
 * Verifies API keys with a short-lived cache. `verify` throws an `AppError` with the precise code:
 * ERR_KEY_MALFORMED / ERR_KEY_CHECKSUM (no database access), ERR_KEY_UNKNOWN, ERR_KEY_REVOKED,
 * ERR_KEY_EXPIRED, ERR_KEY_ROLLED (401), ERR_IP_NOT_ALLOWED, ERR_ORIGIN_NOT_ALLOWED (403).
 */
export class KeyVerifier {
  private readonly cache = new Map<string, CachedKey>();
  private readonly maxEntries = 100_000;

  constructor(
    private readonly db: DatabaseHandle,
    private readonly opts: { ttlMs: number; now?: () => number },
  ) {}

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  /** What the cache is keyed by: the key's SHA-256 (as stored), or null for text that is not an API key. */
  hashOf(key: string): string | null {
    return API_KEY_PATTERN.test(key) ? hashApiKey(key) : null;
  }

  /**
   * True when the key hashed (with {@link hashOf}) to `hash` would be verified from this node's cache,
   * with no database lookup (the rate limits then check the failed-auth budget after authentication,
   * in the same round trip as the request's other windows). Touches nothing.
   */
  hashInMemory(hash: string): boolean {
    const hit = this.cache.get(hash);
    return hit !== undefined && this.now() - hit.fetchedAt < this.opts.ttlMs;
  }

  /** Drops a key from this node's cache (after revoke or roll). */
  invalidate(hash: string): void {
    this.cache.delete(hash);
  }

  private async load(hash: string): Promise<CachedKey | null> {
    const now = this.now();
    const hit = this.cache.get(hash);
    if (hit && now - hit.fetchedAt < this.opts.ttlMs) return hit;
    const row = (await this.db.system.selectFrom('api_keys').selectAll().where('hash', '=', hash).executeTakeFirst()) as KeyRow | undefined;
    if (!row) {
      this.cache.delete(hash);
      return null;
    }
    const entry: CachedKey = {
      row,
      scopes: new Set(row.scopes),
      ipAllowed: row.allowed_ips.length ? cidrMatcher(row.allowed_ips) : null,
      origins: new Set(row.allowed_origins),
      appIds: new Set(row.allowed_app_ids ?? []),
      fetchedAt: now,
    };
    if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(hash, entry);
    return entry;
  }

  /**
   * Returns the principal or throws; the failure facts (when thrown) are in `err.internal.failure`.
   * `hash` is `hashOf(key)` when the caller already computed it for this very key (the rate limits
   * did, to ask {@link hashInMemory}): one SHA-256 per request, not two.
   */
  async verify(key: string, ctx: VerifyContext, hash?: string): Promise<Principal> {
    parseApiKey(key);
    const keyHash = hash ?? hashApiKey(key);
    const entry = await this.load(keyHash);
    if (!entry) throw new AppError('ERR_KEY_UNKNOWN', 'The API key is not recognised.');
    const { row } = entry;
    const now = this.now();
    const fail = (code: AppError['code'], message: string) =>
      new AppError(code, message, { internal: { failure: { code, orgId: row.org_id, keyId: row.id } satisfies AuthFailure } });
    if (row.revoked_at && new Date(row.revoked_at).getTime() <= now) throw fail('ERR_KEY_REVOKED', 'The API key has been revoked.');
    if (row.grace_ends_at && new Date(row.grace_ends_at).getTime() <= now) throw fail('ERR_KEY_ROLLED', 'The API key was rolled and its grace period has ended; use its replacement.');
    if (row.expires_at && new Date(row.expires_at).getTime() <= now) throw fail('ERR_KEY_EXPIRED', 'The API key has expired.');
    if (entry.ipAllowed && !entry.ipAllowed(ctx.ip)) throw fail('ERR_IP_NOT_ALLOWED', 'Requests with this key are not allowed from this IP address.');
    if (row.kind === 'publishable') {
      // A publishable key lives in web pages: it is only valid from the pages it was issued for.
      // A native app sends no Origin: it names its app id instead, which the key must allow (issue 15).
      const allowed = ctx.origin ? entry.origins.has(ctx.origin) : ctx.appId !== undefined && entry.appIds.has(ctx.appId);
      if (!allowed) throw fail('ERR_ORIGIN_NOT_ALLOWED', ctx.origin || ctx.appId === undefined ? 'This publishable key is not allowed from this origin.' : 'This publishable key is not allowed for this app id.');
    } else if (entry.origins.size > 0 && ctx.origin !== undefined && !entry.origins.has(ctx.origin)) {
      throw fail('ERR_ORIGIN_NOT_ALLOWED', 'This key is not allowed from this origin.');
    }
    if (!row.first_used_at) await this.markFirstUse(keyHash, entry);
    return { orgId: row.org_id, appId: row.app_id, keyId: row.id, kind: row.kind, scopes: entry.scopes };
  }

  /**
   * Records a key's first accepted use (once per key, not per request) and ends the wait of a key
   * rolled without grace for this replacement: from now on only the replacement works (this node at
   * once, other nodes within the cache TTL).
   */
  private async markFirstUse(hash: string, entry: CachedKey): Promise<void> {
    const at = new Date(this.now());
    const predecessors = await this.db.system.transaction().execute(async (trx) => {
      const first = await trx.updateTable('api_keys').set({ first_used_at: at }).where('id', '=', entry.row.id).where('first_used_at', 'is', null).executeTakeFirst();
      if (Number(first.numUpdatedRows) === 0) return [];
      return trx.updateTable('api_keys').set({ grace_ends_at: at }).where('rolled_to', '=', entry.row.id).where('grace_ends_at', 'is', null).returning(['hash']).execute();
    });
    for (const p of predecessors) this.cache.delete(p.hash);
    const cached = this.cache.get(hash);
    if (cached) this.cache.set(hash, { ...cached, row: { ...cached.row, first_used_at: at } });
  }
}

/** Throws ERR_SCOPE_MISSING (403) unless the principal holds `scope`. */
export function requireScope(p: Principal, scope: Scope): void {
  requireScopes(p, [scope]);
}

/** Throws ERR_SCOPE_MISSING (403), naming every missing scope, unless the principal holds all of `scopes`. */
export function requireScopes(p: Principal, scopes: readonly Scope[]): void {
  const missing = scopes.filter((s) => !p.scopes.has(s));
  if (missing.length === 0) return;
  const names = missing.map((s) => `"${s}"`).join(', ');
  if (p.user) {
    // A console member: the role decides (src/auth/roles.ts), so say so rather than talk of keys.
    throw new AppError('ERR_ROLE_FORBIDDEN', `Your role (${p.user.role}) may not do this: it needs the ${names} scope${missing.length > 1 ? 's' : ''}. Ask an owner or admin.`, {
      details: { role: p.user.role, required: scopes.length === 1 ? scopes[0] : [...scopes], missing },
      internal: { failure: { code: 'ERR_ROLE_FORBIDDEN', orgId: p.orgId, keyId: p.keyId } satisfies AuthFailure },
    });
  }
  throw new AppError('ERR_SCOPE_MISSING', `This credential lacks the ${names} scope${missing.length > 1 ? 's' : ''}. Use a key that holds ${missing.length > 1 ? 'them' : 'it'}, or mint one (POST /v1/apps/{id}/keys) with a credential that does.`, {
    details: { required: scopes.length === 1 ? scopes[0] : [...scopes], missing },
    internal: { failure: { code: 'ERR_SCOPE_MISSING', orgId: p.orgId, keyId: p.keyId } satisfies AuthFailure },
  });
}

/**
 * No privilege escalation through revocation or replacement either: a credential may only revoke (or
 * roll) a secret whose scopes it holds itself, so a `keys:manage` key cannot switch off the
 * all-scope key that manages it. `granter` null is the operator (CLI).
 */
export function requireCovers(granter: ReadonlySet<string> | null, target: readonly string[], what: string): void {
  if (!granter) return;
  const missing = target.filter((s) => !granter.has(s));
  if (missing.length) {
    throw new AppError('ERR_SCOPE_MISSING', `This credential cannot ${what}: it holds scopes the calling credential lacks. Use a credential that holds them.`, { details: { missing } });
  }
}
