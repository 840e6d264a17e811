/**
 * Console accounts: the people who manage an org log in with email + password (+ TOTP), hold a
 * cookie session, reset a forgotten password with a single-use token and enrol an authenticator.
 * Domain code only: takes the database, master keys, throttle, mailer and clock; knows nothing of HTTP.
 *
 * Decisions (docs/security-model.md):
 * - Sessions: a random 256-bit token, stored only as its SHA-256. Idle timeout 30 min (OWASP
 *   Session Management: 15–30 min for an administrative console), absolute lifetime 12 h (a working
 *   day; a stolen cookie is useful for at most that long). `last_seen_at` is written at most once a
 *   minute, so the idle timeout is exact to within a minute.
 * - CSRF: a synchronizer token bound to the session, HMAC-SHA256 keyed by the session token. Only
 *   the holder of the cookie value (which scripts cannot read: HttpOnly) can compute it, nothing
 *   extra is stored, and it dies with the session.
 * - Login: throttled before argon2 (`throttle.ts`); `authenticateUser` (tenants) checks the password
 *   and audits success/failure. When the user has MFA, the TOTP is checked in the same transaction;
 *   a missing, wrong or replayed code rolls back the success entry and audits a failure instead.
 * - Password reset: 256-bit token, stored hashed, 30 minutes, single use; confirming it sets a
 *   policy-checked password, spends every outstanding token of the user, revokes all the user's
 *   sessions and clears the account's throttle. A reset does not remove MFA.
 * - MFA: TOTP secrets are wrapped by the master key (`keywrap.ts`), bound to org and user. An org with
 *   `require_mfa` limits its un-enrolled users' sessions to enrolment.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { DatabaseHandle, Tx } from '../db/database.js';
import type { UserRole } from '../db/schema.js';
import type { MasterKeys } from '../crypto/master.js';
import { unwrapKey, wrapKey, type WrappedColumn } from '../crypto/keywrap.js';
import { newId, safeEqual, sha256Hex } from '../crypto/random.js';
import { AppError, isAppError, notFound } from '../errors.js';
import { appendAudit } from '../audit/log.js';
import { authenticateUser, type Ctx, type User } from '../tenants/index.js';
import { ALL_ROWS, keysetPage, mapPage, type ListOrder, type Page, type PageRequest } from '../db/pagination.js';
import { hashPassword } from '../crypto/passwords.js';
import { assertPasswordPolicy } from '../tenants/password-policy.js';
import type { LoginThrottle, Throttled } from './throttle.js';
import { newTotpSecret, totpSecretBase32, totpUri, verifyTotp } from './totp.js';
import './console-schema.js';

/** The session cookie. `__Host-` makes browsers insist on Secure, Path=/ and no Domain (RFC 6265bis §4.1.3.2). */
export const SESSION_COOKIE = '__Host-obscura_session';
/** Idle timeout: 30 minutes without a request ends a session. */
export const SESSION_IDLE_MS = 30 * 60_000;
/** Absolute lifetime: 12 hours after login a session ends, however active. */
export const SESSION_ABSOLUTE_MS = 12 * 3_600_000;
/** `last_seen_at` is refreshed at most this often (bounds writes; idle precision). */
export const SESSION_TOUCH_MS = 60_000;
/** Password reset tokens live 30 minutes. */
export const RESET_TTL_MS = 30 * 60_000;
/** At most this many unexpired reset tokens per user from the public endpoint (mailbox flooding). */
export const MAX_ACTIVE_RESETS = 3;

const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;
const newToken = () => randomBytes(32).toString('base64url');

/** Delivers password-reset tokens to users. Operators wire a real one (SMTP, a transactional API). */
export interface ResetMailer {
  /**
   * Sends the token to the account's address. Security: the token is a credential; never log it.
   * Called after the HTTP answer has gone out, so a slow mailer does not reveal that the account exists.
   */
  sendPasswordReset(message: PasswordResetMessage): Promise<void>;
}

export interface PasswordResetMessage {
  email: string;
  /** The single-use token, to be put in a link the user opens (`POST /v1/console/password-reset/confirm`). */
  token: string;
  expiresAt: string;
  orgId: string;
  userId: string;
}

/**
 * The default mailer: it sends nothing and logs that a reset was requested (user and org ids, never
 * the token or the address). An operator either wires a `ResetMailer` or issues links with
 * `createPasswordResetLink` (`obscura users reset-link`).
 */
export function logOnlyResetMailer(log: (obj: Record<string, unknown>, msg: string) => void): ResetMailer {
  return {
    async sendPasswordReset(m) {
      log({ user: m.userId, org: m.orgId }, 'a password reset was requested, but no ResetMailer is configured: nothing was sent');
    },
  };
}

/** Dependencies of the console domain. */
export interface ConsoleDeps {
  db: DatabaseHandle;
  masterKeys: MasterKeys;
  throttle: LoginThrottle;
  mailer: ResetMailer;
  /** Wall clock in ms (default `Date.now`). */
  now?: (() => number) | undefined;
  /** Issuer shown by authenticator apps (default `Obscura`). */
  issuer?: string | undefined;
}

/** Facts about the HTTP request, for sessions and the audit trail. */
export interface RequestCtx {
  ip: string;
  userAgent?: string | undefined;
  requestId?: string | undefined;
}

/** A live session, as the console sees it. */
export interface ConsoleSession {
  id: string;
  userId: string;
  orgId: string;
  orgName: string;
  email: string;
  role: UserRole;
  mfaEnabled: boolean;
  requireMfa: boolean;
  /** The org requires MFA and the user has not enrolled: the session may only enrol (or log out). */
  mfaEnrolmentRequired: boolean;
  createdAt: string;
  lastSeenAt: string;
  /** The earlier of the absolute expiry and the idle expiry. */
  expiresAt: string;
}

/** A session in the user's list. */
export interface SessionSummary {
  id: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
  ip: string | null;
  userAgent: string | null;
  current: boolean;
}

const clockOf = (deps: { now?: (() => number) | undefined }) => deps.now ?? Date.now;
const iso = (ms: number) => new Date(ms).toISOString();
const ms = (d: Date | string) => new Date(d).getTime();
/** Wrapping context of a TOTP secret (also used by `obscura keys rotate-master`). */
export const mfaContext = (orgId: string, userId: string) => `obscura/mfa/${orgId}/${userId}`;

/** TOTP secrets, wrapped by the master key. */
export const MFA_COLUMNS: readonly WrappedColumn[] = [
  { table: 'user_mfa', key: ['user_id'], fields: ['org_id'], column: 'secret_wrapped', masterIdColumn: 'master_key_id', context: (r) => mfaContext(String(r.org_id), String(r.user_id)) },
];
const sessionInvalid = () => new AppError('ERR_SESSION_INVALID', 'The session has expired or was revoked; log in again.');

/** The CSRF token of a session: HMAC-SHA256 keyed by the session token (OWASP "HMAC based token"). */
export function csrfTokenFor(sessionToken: string): string {
  return createHmac('sha256', sessionToken).update('obscura/console/csrf/v1').digest('base64url');
}

/** Constant-time check of a presented CSRF token against the session's. */
export function csrfTokenValid(sessionToken: string, presented: string | undefined): boolean {
  return typeof presented === 'string' && safeEqual(csrfTokenFor(sessionToken), presented);
}

function throttledError(t: Throttled): AppError {
  const secs = Math.max(1, Math.ceil(t.retryAfterMs / 1000));
  return new AppError('ERR_LOGIN_THROTTLED', 'Too many login attempts; wait before trying again.', { headers: { 'Retry-After': String(secs) }, details: { retry_after: secs } });
}

async function userByEmail(trx: Tx, email: string) {
  return trx
    .selectFrom('users')
    .select(['id', 'org_id', 'email'])
    .where((eb) => eb(eb.fn('lower', ['email']), '=', email.trim().toLowerCase()))
    .executeTakeFirst();
}

class MfaRefusal extends Error {
  constructor(
    readonly reason: 'mfa_required' | 'mfa_invalid' | 'mfa_reused',
    readonly user: User,
  ) {
    super(reason);
  }
}

async function createSession(trx: Tx, user: User, now: number, rc: RequestCtx, mfa: boolean): Promise<{ id: string; token: string }> {
  const token = newToken();
  const id = newId();
  await trx
    .insertInto('console_sessions')
    .values({
      id,
      org_id: user.orgId,
      user_id: user.id,
      token_hash: sha256Hex(token),
      created_at: new Date(now),
      last_seen_at: new Date(now),
      expires_at: new Date(now + SESSION_ABSOLUTE_MS),
      ip: rc.ip,
      user_agent: rc.userAgent ? rc.userAgent.slice(0, 256) : null,
    })
    .execute();
  await appendAudit(trx, { orgId: user.orgId, actor: { type: 'user', id: user.id }, action: 'session.create', target: { session: id, user: user.id }, data: { mfa }, ip: rc.ip, requestId: rc.requestId });
  return { id, token };
}

/**
 * Logs a user in. Order: throttle (cheap refusal, 429 `ERR_LOGIN_THROTTLED` + Retry-After, audited
 * once per lock as `auth.login_throttled`), password (`ERR_LOGIN_FAILED`), then TOTP when the user
 * has enrolled (`ERR_MFA_REQUIRED` without a code, `ERR_MFA_INVALID`, `ERR_MFA_CODE_REUSED`).
 * Returns the new session, its token (for the cookie, never stored) and its CSRF token.
 */
export async function login(
  deps: ConsoleDeps,
  input: { email: string; password: string; totp?: string | undefined },
  rc: RequestCtx,
): Promise<{ session: ConsoleSession; token: string; csrfToken: string }> {
  const now = clockOf(deps)();
  const created = await checkCredentials(deps, input.email.trim(), input, rc, (trx, user, usedMfa) => createSession(trx, user, now, rc, usedMfa));
  const session = await loadSession(deps, sha256Hex(created.token), now, false);
  if (!session) throw new Error('login: the new session vanished');
  return { session, token: created.token, csrfToken: csrfTokenFor(created.token) };
}

/**
 * Re-authenticates the user of a live session (password, and TOTP when enrolled) before a
 * destructive action such as erasing the org: a stolen session cookie alone is not enough. The same
 * throttle, failure auditing and error codes as `login`; a correct password of another account is
 * refused like a wrong one. Records `auth.reauth` with `purpose`.
 */
export async function reauthenticate(
  deps: ConsoleDeps,
  s: ConsoleSession,
  input: { password: string; totp?: string | undefined },
  purpose: string,
  rc: RequestCtx,
): Promise<void> {
  await checkCredentials(deps, s.email, input, rc, async (trx, user, usedMfa) => {
    if (user.id !== s.userId || user.orgId !== s.orgId) throw new AppError('ERR_LOGIN_FAILED', 'The password is wrong.');
    await appendAudit(trx, { orgId: s.orgId, actor: { type: 'user', id: s.userId }, action: 'auth.reauth', target: { user: s.userId, session: s.id }, data: { purpose, mfa: usedMfa }, ip: rc.ip, requestId: rc.requestId });
  });
}

/**
 * Throttle, password, then TOTP (see `login`); on success runs `then` in the transaction that
 * verified them.
 */
async function checkCredentials<T>(
  deps: ConsoleDeps,
  email: string,
  input: { password: string; totp?: string | undefined },
  rc: RequestCtx,
  then: (trx: Tx, user: User, usedMfa: boolean) => Promise<T>,
): Promise<T> {
  const now = clockOf(deps)();
  const gate = await deps.throttle.attempt(email, rc.ip, async (trx, info) => {
    const user = info.scope === 'account' ? await userByEmail(trx, email) : undefined;
    await appendAudit(trx, {
      orgId: user?.org_id ?? null,
      actor: { type: 'anonymous' },
      action: 'auth.login_throttled',
      target: user ? { user: user.id } : { ip: rc.ip },
      data: { scope: info.scope, retry_after_s: Math.ceil(info.retryAfterMs / 1000) },
      ip: rc.ip,
      requestId: rc.requestId,
    });
  });
  if (!gate.ok) throw throttledError(gate);

  let outcome: { failed: AppError } | { value: T };
  try {
    outcome = await deps.db.withSystem(async (trx) => {
      let user: User;
      try {
        user = await authenticateUser(trx, email, input.password, { ip: rc.ip, requestId: rc.requestId });
      } catch (err) {
        // authenticateUser has audited the failure in this transaction: commit it, then refuse.
        if (isAppError(err) && err.code === 'ERR_LOGIN_FAILED') return { failed: err };
        throw err;
      }
      const mfa = await trx.selectFrom('user_mfa').selectAll().where('user_id', '=', user.id).where('org_id', '=', user.orgId).executeTakeFirst();
      let usedMfa = false;
      if (mfa?.confirmed_at) {
        // Throwing rolls back the success entries: the login did not succeed.
        if (!input.totp) throw new MfaRefusal('mfa_required', user);
        const secret = unwrapKey(deps.masterKeys.all, mfa.secret_wrapped, mfaContext(user.orgId, user.id));
        const r = verifyTotp(secret, input.totp, now, mfa.last_used_step === null ? null : Number(mfa.last_used_step));
        secret.fill(0);
        if (!r.ok) throw new MfaRefusal(r.reason === 'reused' ? 'mfa_reused' : 'mfa_invalid', user);
        // Compare-and-set: of two concurrent logins with one code, exactly one advances the step.
        const upd = await trx
          .updateTable('user_mfa')
          .set({ last_used_step: r.step })
          .where('user_id', '=', user.id)
          .where((eb) => eb.or([eb('last_used_step', 'is', null), eb('last_used_step', '<', r.step)]))
          .executeTakeFirst();
        if (Number(upd.numUpdatedRows) !== 1) throw new MfaRefusal('mfa_reused', user);
        usedMfa = true;
      }
      return { value: await then(trx, user, usedMfa) };
    });
  } catch (err) {
    if (!(err instanceof MfaRefusal)) throw err;
    await deps.db.withSystem((trx) =>
      appendAudit(trx, { orgId: err.user.orgId, actor: { type: 'anonymous' }, action: 'auth.login_failure', target: { user: err.user.id }, data: { reason: err.reason }, ip: rc.ip, requestId: rc.requestId }),
    );
    if (err.reason === 'mfa_required') throw new AppError('ERR_MFA_REQUIRED', 'This account uses two-factor authentication: send the current code as "totp".');
    if (err.reason === 'mfa_reused') throw new AppError('ERR_MFA_CODE_REUSED', 'This code has already been used; wait for the next one.');
    throw new AppError('ERR_MFA_INVALID', 'The two-factor code is wrong.');
  }
  if ('failed' in outcome) throw outcome.failed;
  await deps.throttle.succeeded(email, rc.ip);
  return outcome.value;
}

async function loadSession(deps: ConsoleDeps, tokenHash: string, now: number, touch: boolean): Promise<ConsoleSession | undefined> {
  const row = await deps.db.system
    .selectFrom('console_sessions as s')
    .innerJoin('users as u', (j) => j.onRef('u.id', '=', 's.user_id').onRef('u.org_id', '=', 's.org_id'))
    .innerJoin('orgs as o', 'o.id', 's.org_id')
    .leftJoin('user_mfa as m', 'm.user_id', 's.user_id')
    .select(['s.id', 's.org_id', 's.user_id', 's.created_at', 's.last_seen_at', 's.expires_at', 'u.email', 'u.role', 'o.name as org_name', 'o.require_mfa', 'm.confirmed_at'])
    .where('s.token_hash', '=', tokenHash)
    .executeTakeFirst();
  if (!row) return undefined;
  const lastSeen = ms(row.last_seen_at);
  if (ms(row.expires_at) <= now || lastSeen + SESSION_IDLE_MS <= now) {
    await deps.db.withTenant(row.org_id, (trx) => trx.deleteFrom('console_sessions').where('id', '=', row.id).where('org_id', '=', row.org_id).execute());
    return undefined;
  }
  let seen = lastSeen;
  if (touch && now - lastSeen >= SESSION_TOUCH_MS) {
    seen = now;
    await deps.db.withTenant(row.org_id, (trx) =>
      trx.updateTable('console_sessions').set({ last_seen_at: new Date(now) }).where('id', '=', row.id).where('org_id', '=', row.org_id).execute(),
    );
  }
  const mfaEnabled = row.confirmed_at !== null && row.confirmed_at !== undefined;
  return {
    id: row.id,
    userId: row.user_id,
    orgId: row.org_id,
    orgName: row.org_name,
    email: row.email,
    role: row.role,
    mfaEnabled,
    requireMfa: row.require_mfa,
    mfaEnrolmentRequired: row.require_mfa && !mfaEnabled,
    createdAt: iso(ms(row.created_at)),
    lastSeenAt: iso(seen),
    expiresAt: iso(Math.min(ms(row.expires_at), seen + SESSION_IDLE_MS)),
  };
}

/**
 * The session of a cookie value, refreshing its idle timer. Throws `ERR_SESSION_INVALID` for an
 * unknown, revoked, idle-expired or expired session (one answer for all).
 */
export async function resolveSession(deps: ConsoleDeps, token: string): Promise<ConsoleSession> {
  if (!TOKEN_RE.test(token)) throw sessionInvalid();
  const s = await loadSession(deps, sha256Hex(token), clockOf(deps)(), true);
  if (!s) throw sessionInvalid();
  return s;
}

/** Session lists: newest first, keyset on (created_at, id). */
export const SESSION_ORDER: ListOrder = { keys: [{ column: 'created_at', type: 'timestamptz' }, { column: 'id', type: 'uuid' }], direction: 'desc' };

/** One page of the user's live sessions (all by default), newest first, the calling one flagged `current`. */
export async function listSessions(deps: ConsoleDeps, s: ConsoleSession, page: PageRequest = ALL_ROWS): Promise<Page<SessionSummary>> {
  const now = clockOf(deps)();
  const rows = await deps.db.withTenant(s.orgId, (trx) =>
    keysetPage(
      trx
        .selectFrom('console_sessions')
        .select(['id', 'created_at', 'last_seen_at', 'expires_at', 'ip', 'user_agent'])
        .where('org_id', '=', s.orgId)
        .where('user_id', '=', s.userId)
        .where('expires_at', '>', new Date(now))
        .where('last_seen_at', '>', new Date(now - SESSION_IDLE_MS)),
      SESSION_ORDER,
      page,
    ),
  );
  return mapPage(rows, (r) => ({
    id: r.id,
    createdAt: iso(ms(r.created_at)),
    lastSeenAt: iso(ms(r.last_seen_at)),
    expiresAt: iso(Math.min(ms(r.expires_at), ms(r.last_seen_at) + SESSION_IDLE_MS)),
    ip: r.ip,
    userAgent: r.user_agent,
    current: r.id === s.id,
  }));
}

/** Revokes one of the user's own sessions (another user's id is `ERR_NOT_FOUND`). Audited. */
export async function revokeSession(deps: ConsoleDeps, s: ConsoleSession, sessionId: string, rc: RequestCtx): Promise<void> {
  await deps.db.withTenant(s.orgId, async (trx) => {
    const r = await trx.deleteFrom('console_sessions').where('org_id', '=', s.orgId).where('user_id', '=', s.userId).where('id', '=', sessionId).executeTakeFirst();
    if (Number(r.numDeletedRows) !== 1) throw notFound('session');
    await appendAudit(trx, { orgId: s.orgId, actor: { type: 'user', id: s.userId }, action: 'session.revoke', target: { session: sessionId, user: s.userId }, data: { current: sessionId === s.id }, ip: rc.ip, requestId: rc.requestId });
  });
}

/** Ends the calling session. Audited. */
export async function logout(deps: ConsoleDeps, s: ConsoleSession, rc: RequestCtx): Promise<void> {
  await deps.db.withTenant(s.orgId, async (trx) => {
    await trx.deleteFrom('console_sessions').where('org_id', '=', s.orgId).where('id', '=', s.id).execute();
    await appendAudit(trx, { orgId: s.orgId, actor: { type: 'user', id: s.userId }, action: 'session.logout', target: { session: s.id, user: s.userId }, ip: rc.ip, requestId: rc.requestId });
  });
}

// ---------------------------------------------------------------------------------------------
// Password reset

/** A freshly issued reset token (shown or mailed once; only its hash is stored). */
export interface IssuedReset {
  token: string;
  expiresAt: string;
  userId: string;
  orgId: string;
  email: string;
}

async function issueReset(db: DatabaseHandle, email: string, opts: { now: number; ctx: Ctx; capped: boolean }): Promise<IssuedReset | null> {
  return db.withSystem(async (trx) => {
    const user = await userByEmail(trx, email);
    if (!user) return null;
    // Serialise issuers for one user so the cap cannot be raced past.
    await sql`select pg_advisory_xact_lock(hashtextextended(${'reset:' + user.id}, 0))`.execute(trx);
    if (opts.capped) {
      const active = await trx
        .selectFrom('password_resets')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('user_id', '=', user.id)
        .where('used_at', 'is', null)
        .where('expires_at', '>', new Date(opts.now))
        .executeTakeFirstOrThrow();
      if (Number(active.n) >= MAX_ACTIVE_RESETS) return null;
    }
    const token = newToken();
    const id = newId();
    const expiresAt = opts.now + RESET_TTL_MS;
    await trx
      .insertInto('password_resets')
      .values({ id, org_id: user.org_id, user_id: user.id, token_hash: sha256Hex(token), created_at: new Date(opts.now), expires_at: new Date(expiresAt), requested_ip: opts.ctx.ip ?? null })
      .execute();
    await appendAudit(trx, { orgId: user.org_id, actor: opts.ctx.actor, action: 'auth.password_reset_request', target: { user: user.id, reset: id }, data: { expires_at: iso(expiresAt) }, ip: opts.ctx.ip, requestId: opts.ctx.requestId });
    return { token, expiresAt: iso(expiresAt), userId: user.id, orgId: user.org_id, email: user.email };
  });
}

/**
 * Handles `POST /v1/console/password-reset`: issues a token for the address if it belongs to an
 * account (and it has fewer than `MAX_ACTIVE_RESETS` live tokens) and hands it to the mailer. Resolves
 * the same way whether or not the account exists (no enumeration); the route answers 202 before
 * calling it.
 */
export async function requestPasswordReset(deps: ConsoleDeps, email: string, rc: RequestCtx): Promise<void> {
  const issued = await issueReset(deps.db, email, { now: clockOf(deps)(), ctx: { actor: { type: 'anonymous' }, ip: rc.ip, requestId: rc.requestId }, capped: true });
  if (issued) await deps.mailer.sendPasswordReset(issued);
}

/**
 * For operators (`obscura users reset-link --email <address>`): issues a reset token for an account
 * and returns it (with a link when `baseUrl` is given) instead of mailing it. Throws `ERR_NOT_FOUND`
 * for an unknown address (the operator is trusted). Audited with the operator as actor.
 *
 * Security: the token is a credential for 30 minutes; print it once, to the operator only.
 */
export async function createPasswordResetLink(
  db: DatabaseHandle,
  email: string,
  opts: { actor?: Ctx['actor']; now?: () => number; baseUrl?: string } = {},
): Promise<IssuedReset & { url: string | undefined }> {
  const issued = await issueReset(db, email, { now: (opts.now ?? Date.now)(), ctx: { actor: opts.actor ?? { type: 'cli' } }, capped: false });
  if (!issued) throw notFound('user');
  const url = opts.baseUrl ? `${opts.baseUrl.replace(/\/+$/, '')}/console/reset-password#token=${issued.token}` : undefined;
  return { ...issued, url };
}

/**
 * Sets a new password with a reset token. The token must exist, be unused and unexpired (else 400
 * `ERR_RESET_TOKEN_INVALID`, the same code for all three; used and expired tokens are audited as
 * `auth.password_reset_failure`). The password must pass the policy (`ERR_VALIDATION`, token not
 * spent). On success every outstanding token of the user is spent, all the user's sessions are
 * revoked and the account's login throttle is cleared. Audited as `auth.password_reset`.
 */
export async function confirmPasswordReset(deps: ConsoleDeps, token: string, password: string, rc: RequestCtx): Promise<void> {
  const invalid = () => new AppError('ERR_RESET_TOKEN_INVALID', 'The reset link is invalid, expired or already used; request a new one.');
  if (!TOKEN_RE.test(token)) throw invalid();
  const now = clockOf(deps)();
  const result = await deps.db.withSystem(async (trx) => {
    const row = await trx
      .selectFrom('password_resets as r')
      .innerJoin('users as u', (j) => j.onRef('u.id', '=', 'r.user_id').onRef('u.org_id', '=', 'r.org_id'))
      .innerJoin('orgs as o', 'o.id', 'r.org_id')
      .select(['r.id', 'r.org_id', 'r.user_id', 'r.expires_at', 'r.used_at', 'u.email', 'o.name as org_name'])
      .where('r.token_hash', '=', sha256Hex(token))
      .forUpdate('r')
      .executeTakeFirst();
    if (!row) return { refused: true as const };
    if (row.used_at !== null || ms(row.expires_at) <= now) {
      await appendAudit(trx, { orgId: row.org_id, actor: { type: 'anonymous' }, action: 'auth.password_reset_failure', target: { user: row.user_id, reset: row.id }, data: { reason: row.used_at !== null ? 'used' : 'expired' }, ip: rc.ip, requestId: rc.requestId });
      return { refused: true as const };
    }
    assertPasswordPolicy(password, { email: row.email, orgName: row.org_name });
    const hash = await hashPassword(password);
    await trx.updateTable('users').set({ password_hash: hash }).where('id', '=', row.user_id).where('org_id', '=', row.org_id).execute();
    await trx.updateTable('password_resets').set({ used_at: new Date(now) }).where('user_id', '=', row.user_id).where('used_at', 'is', null).execute();
    const revoked = await trx.deleteFrom('console_sessions').where('user_id', '=', row.user_id).where('org_id', '=', row.org_id).executeTakeFirst();
    await deps.throttle.clearAccount(trx, row.email);
    await appendAudit(trx, { orgId: row.org_id, actor: { type: 'user', id: row.user_id }, action: 'auth.password_reset', target: { user: row.user_id, reset: row.id }, data: { sessions_revoked: Number(revoked.numDeletedRows) }, ip: rc.ip, requestId: rc.requestId });
    return { refused: false as const };
  });
  if (result.refused) throw invalid();
}

// ---------------------------------------------------------------------------------------------
// TOTP MFA

/**
 * Starts (or restarts, while unconfirmed) TOTP enrolment: a new 160-bit secret, stored wrapped by the
 * master key. Returns the secret (base32) and its `otpauth://` URI, shown once. `ERR_CONFLICT` when
 * MFA is already active. Audited as `mfa.enroll`.
 */
export async function enrollMfa(deps: ConsoleDeps, s: ConsoleSession, rc: RequestCtx): Promise<{ secret: string; uri: string }> {
  const now = clockOf(deps)();
  return deps.db.withTenant(s.orgId, async (trx) => {
    const existing = await trx.selectFrom('user_mfa').select(['confirmed_at']).where('org_id', '=', s.orgId).where('user_id', '=', s.userId).forUpdate().executeTakeFirst();
    if (existing?.confirmed_at) throw new AppError('ERR_CONFLICT', 'Two-factor authentication is already enabled for this account.');
    const secret = newTotpSecret();
    try {
      const wrapped = wrapKey(deps.masterKeys.current, deps.masterKeys.currentId, secret, mfaContext(s.orgId, s.userId));
      const values = { secret_wrapped: wrapped, master_key_id: deps.masterKeys.currentId, confirmed_at: null, last_used_step: null, created_at: new Date(now) };
      await trx
        .insertInto('user_mfa')
        .values({ user_id: s.userId, org_id: s.orgId, ...values })
        .onConflict((oc) => oc.column('user_id').doUpdateSet(values))
        .execute();
      await appendAudit(trx, { orgId: s.orgId, actor: { type: 'user', id: s.userId }, action: 'mfa.enroll', target: { user: s.userId }, ip: rc.ip, requestId: rc.requestId });
      return { secret: totpSecretBase32(secret), uri: totpUri(secret, { issuer: deps.issuer ?? 'Obscura', label: s.email }) };
    } finally {
      secret.fill(0);
    }
  });
}

/**
 * Confirms enrolment with a current code: MFA is enforced at login from then on. The code's step is
 * recorded as used, so it cannot then be replayed at login. A wrong code is 400 `ERR_MFA_CONFIRM_FAILED`
 * (audited as `mfa.confirm_failure`); no pending enrolment or already active is `ERR_CONFLICT`.
 * Audited as `mfa.confirm`.
 */
export async function confirmMfa(deps: ConsoleDeps, s: ConsoleSession, code: string, rc: RequestCtx): Promise<void> {
  const now = clockOf(deps)();
  const ok = await deps.db.withTenant(s.orgId, async (trx) => {
    const row = await trx.selectFrom('user_mfa').selectAll().where('org_id', '=', s.orgId).where('user_id', '=', s.userId).forUpdate().executeTakeFirst();
    if (!row) throw new AppError('ERR_CONFLICT', 'Start enrolment first (POST /v1/console/mfa/enroll).');
    if (row.confirmed_at) throw new AppError('ERR_CONFLICT', 'Two-factor authentication is already enabled for this account.');
    const secret = unwrapKey(deps.masterKeys.all, row.secret_wrapped, mfaContext(s.orgId, s.userId));
    const r = verifyTotp(secret, code, now, null);
    secret.fill(0);
    if (!r.ok) {
      await appendAudit(trx, { orgId: s.orgId, actor: { type: 'user', id: s.userId }, action: 'mfa.confirm_failure', target: { user: s.userId }, ip: rc.ip, requestId: rc.requestId });
      return false;
    }
    await trx.updateTable('user_mfa').set({ confirmed_at: new Date(now), last_used_step: r.step }).where('org_id', '=', s.orgId).where('user_id', '=', s.userId).execute();
    await appendAudit(trx, { orgId: s.orgId, actor: { type: 'user', id: s.userId }, action: 'mfa.confirm', target: { user: s.userId }, ip: rc.ip, requestId: rc.requestId });
    return true;
  });
  if (!ok) throw new AppError('ERR_MFA_CONFIRM_FAILED', 'The two-factor code is wrong: check the device clock and enter the current code.');
}

/**
 * Sets the org policy requiring MFA for every user (run in a tenant transaction for `orgId`). Users
 * without MFA keep their sessions but may only enrol until they do. Audited as `org.mfa_policy`.
 */
export async function setRequireMfa(trx: Tx, orgId: string, requireMfa: boolean, ctx: Ctx): Promise<void> {
  const r = await trx.updateTable('orgs').set({ require_mfa: requireMfa }).where('id', '=', orgId).executeTakeFirst();
  if (Number(r.numUpdatedRows) !== 1) throw notFound('org');
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'org.mfa_policy', target: { org: orgId }, data: { require_mfa: requireMfa }, ip: ctx.ip, requestId: ctx.requestId });
}

/**
 * Deletes expired and idle sessions, reset tokens a day past their expiry, and quiet throttle records.
 * For a periodic sweeper; correctness never depends on it (every read checks expiry itself).
 */
export async function sweepConsole(db: DatabaseHandle, throttle: LoginThrottle, now: number = Date.now()): Promise<{ sessions: number; resets: number; attempts: number }> {
  const sessions = await db.system
    .deleteFrom('console_sessions')
    .where((eb) => eb.or([eb('expires_at', '<=', new Date(now)), eb('last_seen_at', '<=', new Date(now - SESSION_IDLE_MS))]))
    .executeTakeFirst();
  const resets = await db.system.deleteFrom('password_resets').where('expires_at', '<', new Date(now - 86_400_000)).executeTakeFirst();
  const attempts = await throttle.sweep();
  return { sessions: Number(sessions.numDeletedRows), resets: Number(resets.numDeletedRows), attempts };
}
