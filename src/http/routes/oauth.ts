/**
 * OAuth2: client management (`/v1/apps/{id}/oauth-clients`, `/v1/oauth-clients/{id}`), the token
 * endpoint (`POST /v1/oauth/token`, RFC 6749 §4.4), the JWKS and the RFC 8414 metadata.
 *
 * The token endpoint lives in its own encapsulated plugin: it speaks
 * `application/x-www-form-urlencoded` only (RFC 6749 §4.4.2), with a small body limit, and answers
 * errors in the RFC 6749 §5.2 shape (`{"error": "invalid_client", ...}`) that standard OAuth2 clients
 * parse, plus our stable `code`. Every other route keeps the problem+json error handler.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static, type TSchema } from 'typebox';
import type { OAuthSettings } from '../../auth/settings.js';
import type { DatabaseHandle } from '../../db/database.js';
import type { MasterKeys } from '../../crypto/master.js';
import { AppError } from '../../errors.js';
import type { FailureTracker } from '../../auth/failures.js';
import { SCOPES } from '../../auth/scopes.js';
import { SigningKeyStore, accessTokenVerifier } from '../../auth/jwt.js';
import {
  GRANT_CLIENT_CREDENTIALS,
  OAUTH_ERROR_NAMES,
  TOKEN_ENDPOINT_AUTH_METHODS,
  TokenIssuer,
  createClient,
  listClients,
  CLIENT_ORDER,
  revokeClient,
  type OAuthClientInfo,
} from '../../auth/oauth.js';
import { principalOf, type TokenVerifier } from '../auth.js';
import { toAppError } from '../problem.js';
import { DateTime, IdParams, Uuid, bearer, ctxOf, errorResponses } from './common.js';
import { listErrorResponses, pageQuery, pageReply, pageRequest, pageSchema } from '../pagination.js';

const ListQuery = pageQuery();

/** Largest token request body: a few parameters (RFC 6749 §4.4.2). */
export const MAX_TOKEN_REQUEST_BYTES = 8 * 1024;
/** Path of the token endpoint. */
export const TOKEN_PATH = '/v1/oauth/token';
/** Path of the JWKS. */
export const JWKS_PATH = '/.well-known/jwks.json';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

const ClientSchema = Type.Object(
  {
    id: Uuid,
    app_id: Uuid,
    client_id: Type.String({ description: 'Public client identifier.', examples: ['obs_client_4fQa9ZkT0b1c2d3e4f5g6h'] }),
    name: Type.String(),
    scopes: Type.Array(Type.String(), { description: 'The most a token issued to this client may carry.' }),
    revoked_at: Nullable(DateTime),
    created_at: DateTime,
  },
  { additionalProperties: false },
);

const CreateBody = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 200 })),
    scopes: Type.Optional(
      Type.Array(Type.Union(SCOPES.map((s) => Type.Literal(s))), { minItems: 1, maxItems: SCOPES.length, description: "Defaults to the calling credential's scopes; never more than it holds." }),
    ),
  },
  { additionalProperties: false, examples: [{ name: 'billing backend', scopes: ['assets:read', 'assets:write'] }] },
);

const CreatedSchema = Type.Object(
  {
    client: ClientSchema,
    client_id: Type.String({ description: 'Public client identifier (also in `client`).' }),
    client_secret: Type.String({ description: 'The client secret. Shown once; store it in your secret manager.', examples: ['obs_cs_…'] }),
  },
  { additionalProperties: false },
);

const TokenBody = Type.Object(
  {
    grant_type: Type.Optional(Type.String({ maxLength: 100, description: 'Must be client_credentials.' })),
    scope: Type.Optional(Type.String({ maxLength: 1000, description: "Space-separated scopes; may narrow the client's scopes, never widen them." })),
    client_id: Type.Optional(Type.String({ maxLength: 200, description: 'client_secret_post only (or equal to the Basic user name).' })),
    client_secret: Type.Optional(Type.String({ maxLength: 300, description: 'client_secret_post only.' })),
  },
  // RFC 6749 §3.2: the authorization server MUST ignore unrecognized request parameters.
  { additionalProperties: true },
);

const TokenResponseSchema = Type.Object(
  {
    access_token: Type.String({ description: 'A JWT (RFC 9068, EdDSA). Send it as `Authorization: Bearer <token>`.' }),
    token_type: Type.Literal('Bearer'),
    expires_in: Type.Integer({ description: 'Lifetime in seconds.' }),
    scope: Type.String(),
  },
  { additionalProperties: false },
);

const OAuthErrorSchema = Type.Object(
  {
    error: Type.String({ description: 'invalid_request, invalid_client, unsupported_grant_type, invalid_scope, temporarily_unavailable or server_error.' }),
    error_description: Type.String(),
    code: Type.String({ description: 'The stable Obscura error code, as in problem+json.' }),
    request_id: Type.String(),
  },
  { description: 'RFC 6749 §5.2 error response.' },
);

const JwksSchema = Type.Object({
  keys: Type.Array(Type.Object({ kty: Type.String(), crv: Type.String(), x: Type.String(), kid: Type.String(), alg: Type.String(), use: Type.String() }, { additionalProperties: false })),
});

const MetadataSchema = Type.Object(
  {
    issuer: Type.String(),
    token_endpoint: Type.String(),
    jwks_uri: Type.String(),
    grant_types_supported: Type.Array(Type.String()),
    token_endpoint_auth_methods_supported: Type.Array(Type.String()),
    scopes_supported: Type.Array(Type.String()),
    response_types_supported: Type.Array(Type.String()),
    service_documentation: Type.String(),
  },
  { additionalProperties: false },
);

const out = (c: OAuthClientInfo) => ({ id: c.id, app_id: c.appId, client_id: c.clientId, name: c.name, scopes: c.scopes, revoked_at: c.revokedAt, created_at: c.createdAt });

/** RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E. */
const descriptionSafe = (s: string) => s.replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '');

/** Sends an error in the RFC 6749 §5.2 shape (plus our `code` and the request id). */
function sendOAuthError(req: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const e = toAppError(err);
  let error = OAUTH_ERROR_NAMES[e.code];
  let status = e.status;
  if (!error) {
    if (e.status >= 500) error = 'server_error';
    else if (e.status === 429) error = 'temporarily_unavailable';
    else {
      // Malformed body, wrong content type, too large, repeated parameter: all `invalid_request`
      // with 400 (§5.2), the precise reason in `code`.
      error = 'invalid_request';
      status = 400;
    }
  }
  if (e.status >= 500) req.log.error({ err, code: e.code }, 'token request failed');
  else req.log.info({ code: e.code, status }, 'token request refused');
  if (e.headers) for (const [k, v] of Object.entries(e.headers)) reply.header(k, v);
  return reply
    .code(status)
    .header('Cache-Control', 'no-store')
    .header('Pragma', 'no-cache')
    .type('application/json; charset=utf-8')
    .send({ error, error_description: descriptionSafe(e.publicMessage), code: e.code, request_id: String(req.id) });
}

/** Parses a form body with node's URLSearchParams, refusing repeated parameters (RFC 6749 §3.2). */
function parseForm(body: string): Record<string, string> {
  const params = Object.create(null) as Record<string, string>;
  for (const [k, v] of new URLSearchParams(body)) {
    if (k in params) throw new AppError('ERR_OAUTH_INVALID_REQUEST', 'A request parameter is repeated.', { details: { parameter: k.slice(0, 64) } });
    params[k] = v;
  }
  return params;
}

export interface OAuthRouteDeps {
  db: DatabaseHandle;
  masterKeys: MasterKeys;
  /** Per-IP failure burst detection, shared with key authentication. */
  failures?: FailureTracker;
  now?: () => number;
}

/** What the composition root keeps: the bearer-token verifier for `installAuth`, and the key store. */
export interface OAuthRuntime {
  /** Verifies our JWT access tokens; plug into `installAuth` so tokens work wherever a key does. */
  tokens: TokenVerifier;
  signingKeys: SigningKeyStore;
  issuer: TokenIssuer;
}

/**
 * Registers the OAuth2 routes and returns the access-token verifier. `iss` and `aud` of every token
 * are `config.publicUrl`.
 */
export function oauthRoutes(app: FastifyInstance, config: { readonly publicUrl: string; readonly oauth: OAuthSettings }, deps: OAuthRouteDeps): OAuthRuntime {
  const base = config.publicUrl;
  const signingKeys = new SigningKeyStore(deps.db, deps.masterKeys, {
    tokenTtlSeconds: config.oauth.accessTokenTtlSeconds,
    rotationDays: config.oauth.signingKeyRotationDays,
    now: deps.now,
  });
  const verify = accessTokenVerifier({ issuer: base, audience: base, keys: signingKeys, now: deps.now });
  const issuer = new TokenIssuer({ db: deps.db, keys: signingKeys, issuer: base, audience: base, ttlSeconds: config.oauth.accessTokenTtlSeconds, failures: deps.failures, now: deps.now });

  app.post<{ Params: Static<typeof IdParams>; Body: Static<typeof CreateBody> }>('/v1/apps/:id/oauth-clients', {
    config: { auth: true, scope: 'keys:manage' },
    schema: {
      tags: ['oauth'],
      summary: 'Create an OAuth2 client (the secret is returned once)',
      security: bearer,
      params: IdParams,
      body: CreateBody,
      response: { 201: CreatedSchema, ...errorResponses() },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const { client, secret } = await deps.db.withTenant(p.orgId, (trx) => createClient(trx, p.orgId, req.params.id, { name: req.body.name, scopes: req.body.scopes }, { ...ctxOf(req), granter: p.scopes }));
      return reply.code(201).header('Cache-Control', 'no-store').send({ client: out(client), client_id: client.clientId, client_secret: secret });
    },
  });
  app.get<{ Params: Static<typeof IdParams>; Querystring: Static<typeof ListQuery> }>('/v1/apps/:id/oauth-clients', {
    config: { auth: true, scope: 'keys:manage' },
    schema: {
      tags: ['oauth'],
      summary: "List an app's OAuth2 clients, oldest first (never the secrets; cursor-paginated)",
      security: bearer,
      params: IdParams,
      querystring: ListQuery,
      response: { 200: pageSchema(ClientSchema), ...listErrorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      const scope = { list: 'apps/oauth-clients', orgId: p.orgId, filter: { app: req.params.id } };
      const page = await deps.db.withTenant(p.orgId, (trx) => listClients(trx, p.orgId, req.params.id, pageRequest(req, req.query, scope, CLIENT_ORDER)));
      return pageReply(req, page, scope, out);
    },
  });
  app.delete<{ Params: Static<typeof IdParams> }>('/v1/oauth-clients/:id', {
    config: { auth: true, scope: 'keys:manage' },
    schema: {
      tags: ['oauth'],
      summary: 'Revoke an OAuth2 client: no new tokens from now; issued tokens expire on their TTL',
      security: bearer,
      params: IdParams,
      response: { 200: ClientSchema, ...errorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      return out(await deps.db.withTenant(p.orgId, (trx) => revokeClient(trx, p.orgId, req.params.id, { ...ctxOf(req), granter: p.scopes })));
    },
  });

  app.get(JWKS_PATH, {
    schema: { tags: ['oauth'], summary: 'Public keys that verify access tokens (RFC 7517)', response: { 200: JwksSchema } },
    handler: async (_req, reply) => {
      // Short cache: a client that meets an unknown kid refetches anyway, and a retired key should
      // disappear from caches soon after it retires.
      return reply.header('Cache-Control', 'public, max-age=60').send(await signingKeys.jwks());
    },
  });
  app.get('/.well-known/oauth-authorization-server', {
    schema: { tags: ['oauth'], summary: 'Authorization server metadata (RFC 8414)', response: { 200: MetadataSchema } },
    handler: async (_req, reply) =>
      reply.header('Cache-Control', 'public, max-age=300').send({
        issuer: base,
        token_endpoint: base + TOKEN_PATH,
        jwks_uri: base + JWKS_PATH,
        grant_types_supported: [GRANT_CLIENT_CREDENTIALS],
        token_endpoint_auth_methods_supported: [...TOKEN_ENDPOINT_AUTH_METHODS],
        scopes_supported: [...SCOPES],
        // No authorization endpoint: client credentials only.
        response_types_supported: [],
        service_documentation: base + '/docs',
      }),
  });

  void app.register(async (child) => {
    // Only form bodies reach this route; JSON or anything else is an invalid_request (415 code).
    child.removeAllContentTypeParsers();
    child.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: MAX_TOKEN_REQUEST_BYTES }, (_req, body, done) => {
      try {
        done(null, parseForm(body as string));
      } catch (err) {
        done(err as Error, undefined);
      }
    });
    child.setErrorHandler((err, req, reply) => sendOAuthError(req, reply, err));
    child.post<{ Body: Static<typeof TokenBody> }>(TOKEN_PATH, {
      bodyLimit: MAX_TOKEN_REQUEST_BYTES,
      schema: {
        tags: ['oauth'],
        summary: 'Issue an access token (client credentials grant, RFC 6749 §4.4)',
        description: 'Authenticate with HTTP Basic (client_secret_basic, id and secret form-urlencoded first) or client_id and client_secret in the body (client_secret_post). Errors follow RFC 6749 §5.2.',
        consumes: ['application/x-www-form-urlencoded'],
        body: TokenBody,
        response: { 200: TokenResponseSchema, 400: OAuthErrorSchema, 401: OAuthErrorSchema, 500: OAuthErrorSchema },
      },
      handler: async (req, reply) => {
        if (!req.body || typeof req.body !== 'object') throw new AppError('ERR_OAUTH_INVALID_REQUEST', 'Send the parameters as an application/x-www-form-urlencoded body.');
        const result = await issuer.issue({ params: req.body as Record<string, string>, authorization: req.headers.authorization }, { ip: req.ip, requestId: String(req.id) });
        // RFC 6749 §5.1: token responses must not be cached.
        return reply.header('Cache-Control', 'no-store').header('Pragma', 'no-cache').send(result);
      },
    });
  });

  return { tokens: (token) => verify(token), signingKeys, issuer };
}
