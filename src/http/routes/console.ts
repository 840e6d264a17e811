/**
 * Console accounts over HTTP: `/v1/console/*` (login, session, logout, sessions, password reset,
 * TOTP enrolment, org MFA policy).
 *
 * An encapsulated plugin: `@fastify/cookie` and the session/CSRF hooks are registered inside it, so
 * no other route parses cookies or can be reached with one (the /v1 management API stays bearer-only,
 * which keeps CSRF out of it by construction).
 *
 * Per-route policy in `config.console`:
 * - `public`: no session (login, password reset). State-changing requests are still refused when the
 *   browser says they come from another site (`Sec-Fetch-Site`, `Origin`): login CSRF.
 * - `session`: a live session cookie; state-changing methods also need `X-CSRF-Token`.
 * - `enrolment`: as `session`, and allowed while the org's MFA policy confines the session to enrolment.
 *
 * Every response carries `Cache-Control: no-store` (sessions, CSRF tokens and TOTP secrets must not be
 * cached by a browser or a proxy).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import cookie from '@fastify/cookie';
import { Type, type Static } from 'typebox';
import { AppError } from '../../errors.js';
import type { DatabaseHandle } from '../../db/database.js';
import type { MasterKeys } from '../../crypto/master.js';
import type { BlobStore } from '../../assets/stores/types.js';
import {
  SESSION_ABSOLUTE_MS,
  SESSION_COOKIE,
  confirmMfa,
  confirmPasswordReset,
  csrfTokenFor,
  csrfTokenValid,
  enrollMfa,
  listSessions,
  SESSION_ORDER,
  login,
  logOnlyResetMailer,
  logout,
  reauthenticate,
  requestPasswordReset,
  resolveSession,
  revokeSession,
  setRequireMfa,
  type ConsoleDeps,
  type ConsoleSession,
  type RequestCtx,
  type ResetMailer,
} from '../../auth/console.js';
import { LoginThrottle } from '../../auth/throttle.js';
import { eraseOrg } from '../../erasure/erasure.js';
import { memberRoutes } from './console-members.js';
import { DateTime, IdParams, Uuid, errorResponses } from './common.js';
import { pageQuery, pageReply, pageRequest, pageSchema } from '../pagination.js';

const SessionsQuery = pageQuery();

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Console route policy (see `http/routes/console.ts`). */
    console?: 'public' | 'session' | 'enrolment';
  }
}

/** What the console plugin needs from the composition root. */
export interface ConsoleRouteOptions {
  /** The server's public URL: unsafe requests must come from its origin. */
  publicUrl: string;
  db: DatabaseHandle;
  masterKeys: MasterKeys;
  /** Where the org's blobs live (org erasure deletes them). */
  store: BlobStore;
  now?: (() => number) | undefined;
  /**
   * Delivers password-reset tokens (default: log that a reset was requested, send nothing, never
   * log the token). Operators wire SMTP or a transactional mail API here.
   */
  resetMailer?: ResetMailer | undefined;
  /** Told when an org was erased through this node: its per-process caches drop the org at once. */
  orgGone?: ((orgId: string) => void) | undefined;
}

const CSRF_HEADER = 'x-csrf-token';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const UserOut = Type.Object(
  { id: Uuid, email: Type.String(), role: Type.Union([Type.Literal('owner'), Type.Literal('admin'), Type.Literal('developer'), Type.Literal('viewer')]), mfa_enabled: Type.Boolean() },
  { additionalProperties: false },
);
const OrgOut = Type.Object({ id: Uuid, name: Type.String(), require_mfa: Type.Boolean() }, { additionalProperties: false });
const SessionOut = Type.Object(
  {
    user: UserOut,
    org: OrgOut,
    session: Type.Object({ id: Uuid, created_at: DateTime, expires_at: DateTime }, { additionalProperties: false }),
    csrf_token: Type.String({ description: 'Send it back as X-CSRF-Token on every state-changing console request.' }),
    mfa_enrolment_required: Type.Boolean({ description: 'The org requires MFA and this user has none: only enrolment is allowed until it is confirmed.' }),
  },
  { additionalProperties: false },
);
const SessionItem = Type.Object(
  {
    id: Uuid,
    created_at: DateTime,
    last_seen_at: DateTime,
    expires_at: DateTime,
    ip: Type.Union([Type.String(), Type.Null()]),
    user_agent: Type.Union([Type.String(), Type.Null()]),
    current: Type.Boolean(),
  },
  { additionalProperties: false },
);

const LoginBody = Type.Object(
  {
    email: Type.String({ minLength: 3, maxLength: 254 }),
    password: Type.String({ minLength: 1, maxLength: 4096 }),
    totp: Type.Optional(Type.String({ pattern: '^[0-9]{6}$', description: 'The current TOTP code, when the account has MFA.' })),
  },
  { additionalProperties: false },
);
const ResetBody = Type.Object({ email: Type.String({ minLength: 3, maxLength: 254 }) }, { additionalProperties: false });
const ResetConfirmBody = Type.Object({ token: Type.String({ minLength: 1, maxLength: 128 }), password: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false });
const MfaConfirmBody = Type.Object({ code: Type.String({ minLength: 1, maxLength: 16 }) }, { additionalProperties: false });
const PolicyBody = Type.Object({ require_mfa: Type.Boolean() }, { additionalProperties: false });
const EraseBody = Type.Object(
  {
    confirm: Type.String({ maxLength: 64, description: "The org's id, typed again: confirms which org is erased." }),
    password: Type.String({ minLength: 1, maxLength: 4096, description: "The owner's password (re-authentication)." }),
    totp: Type.Optional(Type.String({ pattern: '^[0-9]{6}$', description: 'The current TOTP code, when the account has MFA.' })),
  },
  { additionalProperties: false },
);
const ErasureOut = Type.Object(
  {
    org_id: Uuid,
    requested_at: DateTime,
    completed_at: Type.Union([DateTime, Type.Null()], { description: 'Null when deleting the blobs was interrupted; maintenance finishes it.' }),
    keys_shredded: Type.Integer({ description: 'Wrapped org keys deleted: every blob of the org is undecryptable from now on.' }),
    blobs_deleted: Type.Integer(),
    audit_entries_removed: Type.Integer({ description: "Entries of the org's audit chain removed; the system chain records the erasure." }),
  },
  { additionalProperties: false },
);

const sessionOut = (s: ConsoleSession, token: string) => ({
  user: { id: s.userId, email: s.email, role: s.role, mfa_enabled: s.mfaEnabled },
  org: { id: s.orgId, name: s.orgName, require_mfa: s.requireMfa },
  session: { id: s.id, created_at: s.createdAt, expires_at: s.expiresAt },
  csrf_token: csrfTokenFor(token),
  mfa_enrolment_required: s.mfaEnrolmentRequired,
});

const rcOf = (req: FastifyRequest): RequestCtx => ({
  ip: req.ip,
  userAgent: typeof req.headers['user-agent'] === 'string' ? req.headers['user-agent'] : undefined,
  requestId: String(req.id),
});

export const csrfError = () => new AppError('ERR_CSRF', 'Cross-site request refused: send the session CSRF token in X-CSRF-Token from the console origin.');

/**
 * Refuses requests a browser labels as cross-site (Fetch Metadata) or whose `Origin` is neither the
 * configured public URL nor this server's own origin. Absent headers (non-browser clients) pass: they
 * carry no ambient cookie of a victim.
 */
export function refuseCrossSite(req: FastifyRequest, allowed: ReadonlySet<string>): void {
  const site = req.headers['sec-fetch-site'];
  if (typeof site === 'string' && site !== 'same-origin' && site !== 'none') throw csrfError();
  const origin = req.headers.origin;
  if (typeof origin === 'string' && !allowed.has(origin) && origin !== `${req.protocol}://${req.host}`) throw csrfError();
}

/** The console plugin. Register with `app.register(consoleRoutes, { config, deps })`. */
export async function consoleRoutes(app: FastifyInstance, opts: ConsoleRouteOptions): Promise<void> {
  const appDeps = opts;
  await app.register(cookie);
  const deps: ConsoleDeps = {
    db: appDeps.db,
    masterKeys: appDeps.masterKeys,
    throttle: new LoginThrottle(appDeps.db, { now: appDeps.now }),
    mailer: appDeps.resetMailer ?? logOnlyResetMailer((obj, msg) => app.log.info(obj, msg)),
    now: appDeps.now,
  };
  const allowedOrigins = new Set([new URL(opts.publicUrl).origin]);
  const state = new WeakMap<FastifyRequest, { session: ConsoleSession; token: string }>();
  const pending = new Set<Promise<void>>();

  app.addHook('onClose', async () => {
    await Promise.allSettled([...pending]);
  });
  app.addHook('onSend', async (_req, reply) => {
    reply.header('Cache-Control', 'no-store');
  });
  app.addHook('onRequest', async (req) => {
    const mode = req.routeOptions.config?.console;
    if (!mode) return;
    const unsafe = !SAFE_METHODS.has(req.method);
    if (unsafe) refuseCrossSite(req, allowedOrigins);
    if (mode === 'public') return;
    const token = req.cookies[SESSION_COOKIE];
    if (!token) throw new AppError('ERR_AUTH_MISSING', 'Log in first: this route needs the console session cookie.');
    const presented = req.headers[CSRF_HEADER];
    // Checked before the session is looked up: a forged request costs no database work.
    if (unsafe && !csrfTokenValid(token, typeof presented === 'string' ? presented : undefined)) throw csrfError();
    const session = await resolveSession(deps, token);
    if (session.mfaEnrolmentRequired && mode !== 'enrolment') {
      throw new AppError('ERR_MFA_ENROLMENT_REQUIRED', 'Your organisation requires two-factor authentication: enrol (POST /v1/console/mfa/enroll) before anything else.');
    }
    state.set(req, { session, token });
  });
  const current = (req: FastifyRequest) => {
    const s = state.get(req);
    if (!s) throw new Error('console route is missing config.console');
    return s;
  };
  const setSessionCookie = (reply: FastifyReply, token: string) =>
    reply.setCookie(SESSION_COOKIE, token, { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: Math.floor(SESSION_ABSOLUTE_MS / 1000) });
  const clearSessionCookie = (reply: FastifyReply) => reply.clearCookie(SESSION_COOKIE, { httpOnly: true, secure: true, sameSite: 'strict', path: '/' });

  const tags = ['console'];
  const e = (extra: Record<number, string> = {}) =>
    errorResponses({
      401: 'No or invalid session (ERR_AUTH_MISSING, ERR_SESSION_INVALID).',
      403: 'Cross-site request or missing CSRF token (ERR_CSRF); MFA enrolment required by the org (ERR_MFA_ENROLMENT_REQUIRED).',
      ...extra,
    });

  app.post<{ Body: Static<typeof LoginBody> }>('/v1/console/login', {
    config: { console: 'public' },
    schema: {
      tags,
      summary: 'Log in with email, password and (when enrolled) a TOTP code; sets the session cookie',
      body: LoginBody,
      response: {
        200: SessionOut,
        ...e({
          401: 'Wrong credentials (ERR_LOGIN_FAILED), TOTP needed (ERR_MFA_REQUIRED), wrong TOTP (ERR_MFA_INVALID), TOTP already used (ERR_MFA_CODE_REUSED).',
          429: 'Too many attempts for this account or address (ERR_LOGIN_THROTTLED), with Retry-After.',
        }),
      },
    },
    handler: async (req, reply) => {
      const r = await login(deps, req.body, rcOf(req));
      setSessionCookie(reply, r.token);
      return sessionOut(r.session, r.token);
    },
  });

  app.get('/v1/console/session', {
    config: { console: 'enrolment' },
    schema: { tags, summary: 'The logged-in user, org and role, and the CSRF token', response: { 200: SessionOut, ...e() } },
    handler: async (req) => {
      const { session, token } = current(req);
      return sessionOut(session, token);
    },
  });

  app.post('/v1/console/logout', {
    config: { console: 'enrolment' },
    schema: { tags, summary: 'End this session and clear its cookie', response: { 204: Type.Null(), ...e() } },
    handler: async (req, reply) => {
      await logout(deps, current(req).session, rcOf(req));
      clearSessionCookie(reply);
      return reply.code(204).send();
    },
  });

  app.get<{ Querystring: Static<typeof SessionsQuery> }>('/v1/console/sessions', {
    config: { console: 'session' },
    schema: {
      tags,
      summary: "List the user's live sessions, newest first (the calling one is flagged current; cursor-paginated)",
      querystring: SessionsQuery,
      response: { 200: pageSchema(SessionItem), ...e({ 400: 'Invalid request (ERR_VALIDATION), or a cursor not issued for this list (ERR_CURSOR_INVALID).' }) },
    },
    handler: async (req) => {
      const { session } = current(req);
      const scope = { list: 'console/sessions', orgId: session.orgId, filter: { user: session.userId } };
      const page = await listSessions(deps, session, pageRequest(req, req.query, scope, SESSION_ORDER));
      return pageReply(req, page, scope, (x) => ({ id: x.id, created_at: x.createdAt, last_seen_at: x.lastSeenAt, expires_at: x.expiresAt, ip: x.ip, user_agent: x.userAgent, current: x.current }));
    },
  });

  app.delete<{ Params: Static<typeof IdParams> }>('/v1/console/sessions/:id', {
    config: { console: 'session' },
    schema: { tags, summary: 'Revoke one of your sessions (its cookie stops working at once)', params: IdParams, response: { 204: Type.Null(), ...e() } },
    handler: async (req, reply) => {
      const { session } = current(req);
      await revokeSession(deps, session, req.params.id, rcOf(req));
      if (req.params.id === session.id) clearSessionCookie(reply);
      return reply.code(204).send();
    },
  });

  app.post<{ Body: Static<typeof ResetBody> }>('/v1/console/password-reset', {
    config: { console: 'public' },
    schema: {
      tags,
      summary: 'Request a password reset; always 202, whether or not the address has an account',
      description: 'A single-use token (30 minutes) is handed to the configured ResetMailer. Nothing in the answer or its timing says whether the account exists.',
      body: ResetBody,
      response: { 202: Type.Object({}, { additionalProperties: false }), ...e() },
    },
    handler: async (req, reply) => {
      // The work happens after the answer: its duration cannot reveal whether the account exists.
      const rc = rcOf(req);
      const email = req.body.email;
      const job = new Promise<void>((resolve) => setImmediate(resolve))
        .then(() => requestPasswordReset(deps, email, rc))
        .catch((err: unknown) => req.log.error({ err }, 'password reset request failed'))
        .finally(() => pending.delete(job));
      pending.add(job);
      return reply.code(202).send({});
    },
  });

  app.post<{ Body: Static<typeof ResetConfirmBody> }>('/v1/console/password-reset/confirm', {
    config: { console: 'public' },
    schema: {
      tags,
      summary: "Set a new password with a reset token; revokes all the user's sessions",
      body: ResetConfirmBody,
      response: { 204: Type.Null(), ...e({ 400: 'Invalid, used or expired token (ERR_RESET_TOKEN_INVALID); password refused by the policy (ERR_VALIDATION with a reason).' }) },
    },
    handler: async (req, reply) => {
      await confirmPasswordReset(deps, req.body.token, req.body.password, rcOf(req));
      return reply.code(204).send();
    },
  });

  app.post('/v1/console/mfa/enroll', {
    config: { console: 'enrolment' },
    schema: {
      tags,
      summary: 'Start TOTP enrolment: a new secret and its otpauth:// URI (shown once)',
      response: {
        200: Type.Object({ secret: Type.String({ description: 'Base32 secret for manual entry.' }), otpauth_uri: Type.String() }, { additionalProperties: false }),
        ...e({ 409: 'MFA is already enabled (ERR_CONFLICT).' }),
      },
    },
    handler: async (req) => {
      const r = await enrollMfa(deps, current(req).session, rcOf(req));
      return { secret: r.secret, otpauth_uri: r.uri };
    },
  });

  app.post<{ Body: Static<typeof MfaConfirmBody> }>('/v1/console/mfa/confirm', {
    config: { console: 'enrolment' },
    schema: {
      tags,
      summary: 'Confirm TOTP enrolment with a current code; login requires a code from then on',
      body: MfaConfirmBody,
      response: { 200: Type.Object({ mfa_enabled: Type.Boolean() }, { additionalProperties: false }), ...e({ 400: 'Wrong code (ERR_MFA_CONFIRM_FAILED).', 409: 'No pending enrolment, or already enabled (ERR_CONFLICT).' }) },
    },
    handler: async (req) => {
      await confirmMfa(deps, current(req).session, req.body.code, rcOf(req));
      return { mfa_enabled: true };
    },
  });

  app.delete<{ Params: Static<typeof IdParams>; Body: Static<typeof EraseBody> }>('/v1/orgs/:id', {
    config: { console: 'session' },
    schema: {
      tags,
      summary: "Erase the org: crypto-shred its keys, delete every row and blob of it (owner, re-authenticated). Irreversible.",
      description:
        "Console session only (cookie + X-CSRF-Token), role owner, with the owner's password (and TOTP when enrolled) and `confirm` set to the org id. " +
        "Deletes the org's keys first (its media can never be decrypted again, on every node within the key-cache bound of OBSCURA_KEY_CACHE_TTL_MS), " +
        "with every credential; then every row of the org and its audit chain (the system audit chain keeps an `org.erase` entry); then its blobs. " +
        'An interrupted erasure is finished by maintenance. The session ends with it.',
      params: IdParams,
      body: EraseBody,
      response: {
        200: ErasureOut,
        ...e({
          400: 'confirm does not name this org (ERR_VALIDATION).',
          401: 'No or invalid session (ERR_AUTH_MISSING, ERR_SESSION_INVALID); wrong password (ERR_LOGIN_FAILED); TOTP needed or wrong (ERR_MFA_REQUIRED, ERR_MFA_INVALID, ERR_MFA_CODE_REUSED).',
          403: 'Not an owner (ERR_ROLE_FORBIDDEN); cross-site (ERR_CSRF).',
          404: 'Not your org (ERR_NOT_FOUND).',
          429: 'Too many password attempts (ERR_LOGIN_THROTTLED).',
        }),
      },
    },
    handler: async (req, reply) => {
      const { session } = current(req);
      // Another org's id is "not found", as everywhere: a session belongs to one org.
      if (req.params.id !== session.orgId) throw new AppError('ERR_NOT_FOUND', 'The org does not exist.');
      if (session.role !== 'owner') throw new AppError('ERR_ROLE_FORBIDDEN', 'Only an owner may erase the org.');
      if (req.body.confirm !== session.orgId) {
        throw new AppError('ERR_VALIDATION', 'Set "confirm" to the id of the org you are erasing; erasure cannot be undone.', { details: { field: 'confirm' } });
      }
      const rc = rcOf(req);
      await reauthenticate(deps, session, { password: req.body.password, totp: req.body.totp }, 'org.erase', rc);
      let report;
      try {
        report = await eraseOrg({ db: appDeps.db, store: appDeps.store, now: appDeps.now }, session.orgId, { actor: { type: 'user', id: session.userId }, ip: rc.ip, requestId: rc.requestId });
      } finally {
        // Even when a later step failed: the keys may already be shredded.
        appDeps.orgGone?.(session.orgId);
      }
      clearSessionCookie(reply);
      return report;
    },
  });

  memberRoutes(app, { db: appDeps.db, publicUrl: opts.publicUrl, mailer: appDeps.resetMailer, current, rcOf, errors: e });

  app.put<{ Body: Static<typeof PolicyBody> }>('/v1/console/org/mfa-policy', {
    config: { console: 'session' },
    schema: {
      tags,
      summary: 'Require (or stop requiring) MFA for every user of the org (owner or admin)',
      body: PolicyBody,
      response: { 200: PolicyBody, ...e({ 403: 'Not an owner or admin (ERR_ROLE_FORBIDDEN), cross-site (ERR_CSRF), enrolment required (ERR_MFA_ENROLMENT_REQUIRED).' }) },
    },
    handler: async (req) => {
      const { session } = current(req);
      if (session.role !== 'owner' && session.role !== 'admin') throw new AppError('ERR_ROLE_FORBIDDEN', 'Only an owner or admin may change the MFA policy.');
      const rc = rcOf(req);
      await deps.db.withTenant(session.orgId, (trx) => setRequireMfa(trx, session.orgId, req.body.require_mfa, { actor: { type: 'user', id: session.userId }, ip: rc.ip, requestId: rc.requestId }));
      return { require_mfa: req.body.require_mfa };
    },
  });
}
