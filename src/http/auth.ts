/**
 * Authentication as a Fastify hook. A route opts in with `config: { auth: true, scope: '...' }`
 * (per-route policy in routeOptions.config, as @fastify/rate-limit does). Credentials are checked in
 * `onRequest`, before the body is read, so an unauthenticated client cannot make us parse anything.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { requireScope, type KeyVerifier, type Principal, type AuthFailure } from '../auth/keys.js';
import type { FailureTracker } from '../auth/failures.js';
import type { Scope } from '../auth/scopes.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Require a credential (API key or access token). */
    auth?: boolean;
    /** The scope the credential must hold. */
    scope?: Scope;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Verifies a bearer token that is not an API key (OAuth2 access tokens plug in here). */
export type TokenVerifier = (token: string, req: FastifyRequest) => Promise<Principal>;

export interface AuthDeps {
  keys: KeyVerifier;
  failures: FailureTracker;
  tokens?: TokenVerifier;
}

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

export async function authenticate(req: FastifyRequest, deps: AuthDeps): Promise<Principal> {
  const token = bearerToken(req);
  if (token.startsWith('obs_')) return deps.keys.verify(token, { ip: req.ip, origin: originOf(req) });
  if (deps.tokens) return deps.tokens(token, req);
  throw new AppError('ERR_TOKEN_INVALID', 'The bearer credential is not a valid API key or access token.');
}

export function installAuth(app: FastifyInstance, deps: AuthDeps): void {
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (req) => {
    const cfg = req.routeOptions.config;
    if (!cfg?.auth) return;
    try {
      const principal = await authenticate(req, deps);
      if (cfg.scope) requireScope(principal, cfg.scope);
      req.principal = principal;
    } catch (err) {
      if (err instanceof AppError && (err.status === 401 || err.status === 403)) {
        await deps.failures.record(req.ip, err.code, err.internal?.failure as AuthFailure | undefined, String(req.id));
      }
      throw err;
    }
  });
}

/** The verified principal of an authenticated route (a programming error if called elsewhere). */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new Error('principalOf: route is missing config.auth');
  return req.principal;
}
