/**
 * Authentication as a Fastify hook. A route opts in with `config: { auth: true, scope: '...' }`, or
 * `scopes: ['...', '...']` when it needs several (all are required; per-route policy in
 * routeOptions.config, as @fastify/rate-limit does). Credentials are checked in `onRequest`, before the
 * body is read, so an unauthenticated client cannot make us parse anything.
 *
 * Every authenticated route declares its scopes; test/http/scopes.test.ts enumerates the app's routes
 * and fails for a route that declares none (unless it is on its short, explained allowlist), and
 * docs/security-model.md has the table.
 */
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify';
import { AppError } from '../errors.js';
import { requireScopes, type KeyVerifier, type Principal, type AuthFailure } from '../auth/keys.js';
import type { FailureTracker } from '../auth/failures.js';
import { routeScopes, type Scope } from '../auth/scopes.js';
import { addAuthenticatedRouteHook, ROUTE_PHASE } from '../perimeter/route-hooks.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Require a credential (API key or access token). */
    auth?: boolean;
    /** The scope the credential must hold. */
    scope?: Scope;
    /** Several scopes the credential must all hold (in addition to `scope`, if both are set). */
    scopes?: readonly Scope[];
    /**
     * The kinds of credential that may call the route (default: any). Defence in depth beside the
     * scopes: e.g. `SERVER_CREDENTIALS` keeps publishable (browser) keys off server-side work even if
     * a scope were ever granted to them.
     */
    keyKinds?: readonly Principal['kind'][];
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Verifies a bearer token that is not an API key (OAuth2 access tokens plug in here). */
export type TokenVerifier = (token: string, req: FastifyRequest) => Promise<Principal>;

/** Every credential kind except publishable keys: what server-side work (processing, jobs, deletion) accepts. */
export const SERVER_CREDENTIALS: readonly Principal['kind'][] = ['secret', 'restricted', 'token', 'session'];

export interface AuthDeps {
  keys: KeyVerifier;
  failures: FailureTracker;
  tokens?: TokenVerifier;
  /** Console session cookies (src/http/session-auth.ts): used only when no `Authorization` is sent. */
  sessions?: (req: FastifyRequest) => Promise<Principal | null>;
}

/**
 * Makes every authenticated route declare its scopes, and publishes them. Install before any route
 * is registered. A route with `config.auth` but neither `scope` nor `scopes` is a programming error
 * and fails at boot (`scopes: []` says "any valid credential" on purpose). The scopes go into the
 * route's OpenAPI `security` requirement (OpenAPI 3.1 allows role names for non-OAuth schemes) and
 * its description, so Swagger UI, clients and the scope-matrix test read them from one place.
 */
export function declareRouteScopes(app: FastifyInstance): void {
  const authenticated: RouteOptions[] = [];
  authenticatedRoutes.set(app, authenticated);
  app.addHook('onRoute', (route) => {
    const cfg = route.config;
    if (!cfg?.auth) return;
    authenticated.push(route);
    if (cfg.scope === undefined && cfg.scopes === undefined) {
      throw new Error(`route ${String(route.method)} ${route.url} has config.auth but declares no scope: add config.scope or config.scopes (see docs/security-model.md, "Scopes")`);
    }
    const scopes = routeScopes(cfg);
    if (!route.schema) return;
    const kinds = cfg.keyKinds ? ` Credentials: ${cfg.keyKinds.map((k) => (k === 'token' ? 'OAuth access tokens' : k === 'session' ? 'console sessions' : `${k} keys`)).join(', ')} (not publishable keys).` : '';
    const note = (scopes.length ? `Scopes: ${scopes.map((s) => `\`${s}\``).join(', ')}.` : 'Any valid credential.') + kinds;
    // A fresh object: route schemas share the `bearer` constant, and swagger reads them lazily.
    route.schema = {
      ...route.schema,
      security: [{ bearerAuth: scopes }, { consoleSession: scopes }],
      ...(cfg.keyKinds ? { 'x-obscura-key-kinds': [...cfg.keyKinds] } : {}),
      description: route.schema.description ? `${route.schema.description}\n\n${note}` : note,
    };
  });
}

/** The routes with `config.auth` that {@link declareRouteScopes} saw, per app (for installAuth's boot check). */
const authenticatedRoutes = new WeakMap<FastifyInstance, RouteOptions[]>();

/** Reads `Authorization: Bearer <credential>`. */
export function bearerToken(req: FastifyRequest): string {
  const h = req.headers.authorization;
  if (!h) throw new AppError('ERR_AUTH_MISSING', 'Send a credential as "Authorization: Bearer <key or token>".');
  const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(h);
  if (!m) throw new AppError('ERR_AUTH_SCHEME', 'Only the Bearer authorization scheme is supported.');
  return m[1]!;
}

/** The Origin header as a serialised origin, or undefined. `null` origins are kept as "null". */
function originOf(req: FastifyRequest): string | undefined {
  const o = req.headers.origin;
  return typeof o === 'string' && o.length > 0 ? o : undefined;
}

/** The native app id a request names (`Obscura-App-Id`), for publishable keys used outside a browser. */
export const APP_ID_HEADER = 'obscura-app-id';
export function appIdOf(req: FastifyRequest): string | undefined {
  const v = req.headers[APP_ID_HEADER];
  return typeof v === 'string' && v.length > 0 && v.length <= 200 ? v : undefined;
}

/** The key hash `credentialInMemory` computed, per request (gone with the request). */
const keyHashes = new WeakMap<FastifyRequest, { key: string; hash: string }>();

export async function authenticate(req: FastifyRequest, deps: AuthDeps): Promise<Principal> {
  if (deps.sessions && req.headers.authorization === undefined) {
    const session = await deps.sessions(req);
    if (session) return session;
  }
  const token = bearerToken(req);
  if (token.startsWith('obs_')) {
    const memo = keyHashes.get(req);
    return deps.keys.verify(token, { ip: req.ip, origin: originOf(req), appId: appIdOf(req) }, memo?.key === token ? memo.hash : undefined);
  }
  if (deps.tokens) return deps.tokens(token, req);
  throw new AppError('ERR_TOKEN_INVALID', 'The bearer credential is not a valid API key or access token.');
}

/**
 * For the rate limits: true when the request's bearer is an API key this node verifies from memory
 * (so authenticating it costs no database lookup). Anything else — a missing or odd header, an
 * access token, a key not cached — is false.
 */
export function credentialInMemory(keys: Pick<KeyVerifier, 'hashOf' | 'hashInMemory'>): (req: FastifyRequest) => boolean {
  return (req) => {
    const h = req.headers.authorization;
    if (typeof h !== 'string' || h.length < 12 || !/^Bearer +obs_/i.test(h)) return false;
    const key = h.slice(h.indexOf('obs_')).trimEnd();
    const hash = keys.hashOf(key);
    if (hash === null) return false;
    // Remembered for this request only, so authentication does not hash the key again.
    keyHashes.set(req, { key, hash });
    return keys.hashInMemory(hash);
  };
}

/**
 * Authentication on every route with `config.auth`: a route-level hook attached at registration
 * (src/perimeter/route-hooks.ts, phase `auth`), so routes without it pay nothing per request.
 */
export function installAuth(app: FastifyInstance, deps: AuthDeps): void {
  app.decorateRequest('principal', null);
  const guarded = new WeakSet<RouteOptions>();
  // A route-level hook reaches only routes registered after this call: one registered before would
  // have no authentication at all. Refuse to start rather than serve it (fail closed, at boot).
  app.addHook('onReady', async () => {
    for (const route of authenticatedRoutes.get(app) ?? []) {
      if (!guarded.has(route)) throw new Error(`route ${String(route.method)} ${route.url} has config.auth but was registered before installAuth: register it after`);
    }
  });
  addAuthenticatedRouteHook(app, ROUTE_PHASE.auth, (route) => {
    guarded.add(route);
    const cfg = route.config!;
    const scopes = routeScopes(cfg);
    const kinds = cfg.keyKinds;
    return async (req: FastifyRequest) => {
      try {
        const principal = await authenticate(req, deps);
        requireScopes(principal, scopes);
        if (kinds && !kinds.includes(principal.kind)) {
          throw new AppError('ERR_SCOPE_MISSING', `A ${principal.kind} key cannot call ${req.method} ${route.url}: use a secret or restricted key on your server.`, {
            details: { key_kind: principal.kind, allowed_kinds: kinds },
          });
        }
        req.principal = principal;
      } catch (err) {
        if (err instanceof AppError && (err.status === 401 || err.status === 403)) {
          await deps.failures.record(req.ip, err.code, err.internal?.failure as AuthFailure | undefined, String(req.id));
        }
        throw err;
      }
    };
  });
}

/**
 * For "authorized" URLs (app setting `require_authorized_urls`): a signed link is not enough, the
 * request must also carry a credential of the asset's org holding `assets:read`. Another org's
 * credential gets the same 404 as a missing asset.
 */
export async function authorizeRead(req: FastifyRequest, deps: AuthDeps, orgId: string): Promise<void> {
  const principal = await authenticate(req, deps);
  if (principal.orgId !== orgId) throw new AppError('ERR_NOT_FOUND', 'The asset does not exist.');
  requireScopes(principal, ['assets:read']);
}

/** The verified principal of an authenticated route (a programming error if called elsewhere). */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new Error('principalOf: route is missing config.auth');
  return req.principal;
}
