/**
 * The app without a listening port, for route-matrix tests (fastify's testing guide): `buildApp` over a
 * test database, driven with `app.inject()`, and the app's routes read from its own OpenAPI document,
 * so a route added later is covered by every matrix without editing the tests.
 *
 * End-to-end tests that prove a behaviour on the wire still use `startServer` (test/support/server.ts);
 * a matrix over every route uses this, one in-process request per case.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { openTestDb, tempDir, type DbKind, type TestDb } from './db.js';
import { TEST_SERVER_ENV, masterKeysFor } from './server.js';
import { loadConfig, type Config } from '../../src/config/index.js';
import { buildApp, type BuiltApp } from '../../src/app.js';
import { createFsStore } from '../../src/assets/stores/fs.js';
import type { Scope } from '../../src/auth/scopes.js';

/** Routes that take no API credential, and why (anything else must declare its scopes). */
export const UNAUTHENTICATED: Record<string, string> = {
  'GET /healthz': 'liveness probe',
  'GET /readyz': 'readiness probe',
  'GET /robots.txt': 'crawler policy',
  'GET /.well-known/jwks.json': 'public keys that verify access tokens (RFC 7517)',
  'GET /.well-known/oauth-authorization-server': 'authorization server metadata (RFC 8414)',
  'POST /v1/oauth/token': 'the OAuth client authenticates with its own secret (RFC 6749 §4.4)',
  'GET /v1/files/{id}': 'signed, expiring download URL (plus a credential with assets:read under require_authorized_urls)',
  'GET /v1/exports/{export_id}/archive': "signed, expiring URL of a tenant export, minted only for a credential holding every export scope (never after the export's expiry; each download audited)",
  'PUT /v1/uploads/direct/{id}': 'signed, single-use upload URL bound to size and type',
  'GET /t/{*}': 'signed transform URL (plus a credential with assets:read under require_authorized_urls)',
  'OPTIONS /v1/uploads': 'tus capability discovery (no data)',
  'OPTIONS /v1/uploads/{id}': 'tus capability discovery (no data)',
  'GET /v1/operations': 'the operation reference generated from the registry: public and cacheable, no tenant data (issue 9, item 11)',
  'POST /v1/setup': 'first run only: the one-time setup token from the data dir, refused once an org exists',
  'GET /v1/licenses/keys': 'public keys that verify on-device licences (issue 15)',
  'POST /v1/telemetry': 'authenticated by the licence itself (Authorization: Bearer <licence>), not an API credential: an offline licence has no key (issue 15)',
  'DELETE /v1/orgs/{id}': 'org erasure: a console session of an owner, CSRF token, password (and TOTP) again and a typed confirmation; never an API key (test/erasure/erasure.test.ts)',
};

/** The console authenticates users by session cookie, role and CSRF token, not API scopes (test/auth/console.test.ts). */
export const CONSOLE_PREFIX = '/v1/console/';

/** Routes outside /v1/console/ that a console session (not an API credential) authorizes. */
export const CONSOLE_SESSION_ROUTES: readonly string[] = ['DELETE /v1/orgs/{id}'];

/** One operation of the app's OpenAPI document. */
export interface Route {
  /** `METHOD /path`, the path as OpenAPI writes it (`{id}` placeholders). */
  id: string;
  method: string;
  path: string;
  params: Record<string, { pattern?: string; format?: string }>;
  /** The scopes the route requires (`[]`: any valid credential), or null: it takes no API credential. */
  scopes: Scope[] | null;
  /** Whether the route declares a JSON request body (`requestBody` with application/json). */
  jsonBody: boolean;
}

interface OpenApiOperation {
  security?: Array<Record<string, string[]>>;
  parameters?: Array<{ in: string; name: string; schema?: { pattern?: string; format?: string } }>;
  requestBody?: { content?: Record<string, unknown> };
}

/** The operations of an OpenAPI document, one per method and path. */
export function routesOf(doc: { paths: Record<string, Record<string, OpenApiOperation>> }): Route[] {
  const out: Route[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const params = Object.fromEntries((op.parameters ?? []).filter((p) => p.in === 'path').map((p) => [p.name, p.schema ?? {}]));
      const sec = op.security?.find((s) => 'bearerAuth' in s);
      out.push({
        id: `${method.toUpperCase()} ${path}`,
        method: method.toUpperCase(),
        path,
        params,
        scopes: sec ? (sec.bearerAuth as Scope[]) : null,
        jsonBody: Object.keys(op.requestBody?.content ?? {}).some((t) => t.split(';')[0]!.trim() === 'application/json'),
      });
    }
  }
  return out;
}

/** A well-formed placeholder for a path parameter (so the request reaches the scope check and the handler). */
export function placeholder(name: string, schema: { pattern?: string; format?: string } | undefined, appId: string, path: string): string {
  if (name === 'id' && path.startsWith('/v1/apps/')) return appId;
  if (schema?.format === 'uuid') return randomUUID();
  const prefixed = /^\^([a-z]+)_\[0-9A-Za-z\]\{22\}\$$/.exec(schema?.pattern ?? '');
  if (prefixed) return `${prefixed[1]}_${'A'.repeat(22)}`;
  if (name === 'name') return 'thumb';
  return 'x';
}

/** The route's path with every placeholder filled (`{id}` of /v1/apps/ is the tenant's own app). */
export function urlOf(r: Route, appId: string): string {
  return r.path.replace(/\{([^}]+)\}/g, (_m, name: string) => (name === '*' ? 'x' : placeholder(name, r.params[name], appId, r.path)));
}

/** Whether the request has a body by its method (the matrices send one to every such route). */
export function takesBody(r: Route): boolean {
  return ['POST', 'PUT', 'PATCH'].includes(r.method);
}

export interface InjectedApp {
  t: TestDb;
  app: FastifyInstance;
  /** What buildApp returned (the usage meter to flush, the key verifier, …). */
  built: BuiltApp;
  config: Config;
  /** Every operation of the app's own OpenAPI document (GET /docs/json). */
  routes: Route[];
  close(): Promise<void>;
}

/**
 * Builds the production app (`buildApp`) over a fresh test database without listening, and reads its
 * routes from /docs/json. Rate limits are raised out of the way: a matrix refuses on purpose many
 * times from one address, and a stray 429 is not what it is about.
 */
export async function injectedApp(opts: { db?: DbKind; env?: Record<string, string> } = {}): Promise<InjectedApp> {
  const t = await openTestDb(opts.db ?? 'pglite');
  try {
    const config = loadConfig({
      ...TEST_SERVER_ENV,
      OBSCURA_PORT: '1',
      OBSCURA_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE: '1000000',
      OBSCURA_RATE_LIMIT_PER_MINUTE: '1000000',
      OBSCURA_RATE_LIMIT_APP_PER_MINUTE: '1000000',
      OBSCURA_RATE_LIMIT_PUBLISHABLE_PER_MINUTE: '1000000',
      ...opts.env,
    });
    const store = await createFsStore({ root: join(tempDir('obscura-inject-'), 'blobs') });
    const built = await buildApp(config, { db: t.db, masterKeys: masterKeysFor(t.db), store, logger: false });
    const { app } = built;
    await app.ready();
    const routes = routesOf((await app.inject({ method: 'GET', url: '/docs/json' })).json());
    return {
      t,
      app,
      built,
      config,
      routes,
      async close() {
        await app.close();
        await t.close();
      },
    };
  } catch (err) {
    await t.close();
    throw err;
  }
}

/** Injects a request to a route with its placeholders filled. */
export function injectRoute(app: FastifyInstance, r: Route, appId: string, opts: Omit<InjectOptions, 'method' | 'url'> = {}): Promise<LightMyRequestResponse> {
  return app.inject({ ...opts, method: r.method as 'GET', url: urlOf(r, appId) });
}
