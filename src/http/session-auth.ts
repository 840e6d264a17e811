/**
 * Console session cookies on `/v1/*`: the console calls the same API as curl, with the session
 * cookie instead of `Authorization` (issue 13). API keys and access tokens remain the way for
 * machines; a request that sends `Authorization` is judged by it alone.
 *
 * CSRF (the cookie is ambient, so a page of another origin could make the browser send it; SameSite=
 * Strict does not stop a same-site origin such as another port of the same host):
 * - state-changing methods need `X-CSRF-Token`, the session's synchronizer token (HMAC of the session
 *   token, `csrfTokenFor`), which only a script of the console origin can have read from
 *   `GET /v1/console/session`; a cross-origin HTML form cannot set a header at all;
 * - and they are refused when Fetch Metadata or `Origin` says the request comes from elsewhere.
 * Safe methods change nothing, and CORS (no `Access-Control-Allow-Credentials`) keeps another origin
 * from reading the answer.
 *
 * The session acts with its member's role as scopes (src/auth/roles.ts). App-scoped routes (uploads,
 * processing) act for the app named by `X-Obscura-App` (one of the org's apps), else the org's oldest.
 */
import type { FastifyRequest } from 'fastify';
import { fastifyCookie } from '@fastify/cookie';
import { AppError } from '../errors.js';
import type { DatabaseHandle } from '../db/database.js';
import type { Principal } from '../auth/keys.js';
import { ROLE_SCOPES } from '../auth/roles.js';
import { SESSION_COOKIE, csrfTokenValid, resolveSession, type ConsoleDeps } from '../auth/console.js';
import { getApp } from '../tenants/index.js';
import { refuseCrossSite, csrfError } from './routes/console.js';

/** The header naming the app a console session acts for on app-scoped routes. */
export const APP_HEADER = 'x-obscura-app';
const CSRF_HEADER = 'x-csrf-token';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** An org without apps: app-scoped routes answer "app not found" rather than act for nothing. */
const NO_APP = '00000000-0000-0000-0000-000000000000';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Verifies a console session cookie: the principal, or null when the request carries no session cookie. */
export type SessionVerifier = (req: FastifyRequest) => Promise<Principal | null>;

/** Builds the `/v1/*` session verifier over the console domain (`resolveSession`). */
export function sessionVerifier(deps: { db: DatabaseHandle; now?: (() => number) | undefined; publicUrl: string }): SessionVerifier {
  const consoleDeps = { db: deps.db, now: deps.now } as ConsoleDeps; // resolveSession reads only db and now
  const allowed = new Set([new URL(deps.publicUrl).origin]);
  return async (req) => {
    const header = req.headers.cookie;
    if (typeof header !== 'string' || !header.includes(SESSION_COOKIE)) return null;
    const token = (fastifyCookie as unknown as { parse: (h: string) => Record<string, string> }).parse(header)[SESSION_COOKIE];
    if (!token) return null;
    if (!SAFE_METHODS.has(req.method)) {
      refuseCrossSite(req, allowed);
      const presented = req.headers[CSRF_HEADER];
      // Before the session lookup: a forged request costs no database work.
      if (!csrfTokenValid(token, typeof presented === 'string' ? presented : undefined)) throw csrfError();
    }
    const session = await resolveSession(consoleDeps, token);
    if (session.mfaEnrolmentRequired) {
      throw new AppError('ERR_MFA_ENROLMENT_REQUIRED', 'Your organisation requires two-factor authentication: enrol (POST /v1/console/mfa/enroll) before anything else.');
    }
    const appId = await appFor(deps.db, session.orgId, req.headers[APP_HEADER]);
    return { orgId: session.orgId, appId, keyId: session.id, kind: 'session', scopes: new Set(ROLE_SCOPES[session.role]), user: { id: session.userId, role: session.role } };
  };
}

async function appFor(db: DatabaseHandle, orgId: string, named: string | string[] | undefined): Promise<string> {
  if (typeof named === 'string' && named.length > 0) {
    if (!UUID_RE.test(named)) throw new AppError('ERR_VALIDATION', `${APP_HEADER} must be the id of one of your apps.`, { details: { field: APP_HEADER } });
    return (await db.withTenant(orgId, (trx) => getApp(trx, orgId, named))).id;
  }
  const oldest = await db.withTenant(orgId, (trx) => trx.selectFrom('apps').select('id').where('org_id', '=', orgId).orderBy('created_at').orderBy('id').limit(1).executeTakeFirst());
  return oldest?.id ?? NO_APP;
}
