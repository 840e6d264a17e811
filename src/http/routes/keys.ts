/** API key management: create and list an app's keys, roll and revoke a key. */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { DatabaseHandle } from '../../db/database.js';
import { createKey, getKey, listKeys, revokeKey, rollKey, KEY_ORDER, MAX_GRACE_SECONDS, type KeyInfo, type KeyVerifier } from '../../auth/keys.js';
import { listErrorResponses, pageQuery, pageReply, pageRequest, pageSchema } from '../pagination.js';

const ListQuery = pageQuery();
import { SCOPES } from '../../auth/scopes.js';
import { principalOf } from '../auth.js';
import { DateTime, IdParams, Uuid, bearer, ctxOf, errorResponses } from './common.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T, opts?: { description: string }) => Type.Union([t, Type.Null()], opts);

const KeySchema = Type.Object(
  {
    id: Uuid,
    app_id: Uuid,
    kind: Type.Union([Type.Literal('secret'), Type.Literal('publishable'), Type.Literal('restricted')]),
    name: Type.String(),
    display: Type.String({ description: 'Non-secret hint to recognise the key.' }),
    scopes: Type.Array(Type.String()),
    allowed_ips: Type.Array(Type.String()),
    allowed_origins: Type.Array(Type.String()),
    allowed_app_ids: Type.Array(Type.String(), { description: 'Native app identifiers a publishable key may be used from (Obscura-App-Id header) instead of a web origin.' }),
    expires_at: Nullable(DateTime),
    revoked_at: Nullable(DateTime),
    rolled_to: Nullable(Uuid),
    grace_ends_at: Nullable(DateTime, { description: 'When a rolled key stops. Null on a key rolled with grace 0: it stops when its replacement is first used (or revoked).' }),
    first_used_at: Nullable(DateTime, { description: 'When the key was first accepted; null if never used.' }),
    created_at: DateTime,
  },
  { additionalProperties: false },
);

const CreateBody = Type.Object(
  {
    kind: Type.Union([Type.Literal('secret'), Type.Literal('publishable'), Type.Literal('restricted')], { description: 'publishable keys need allowed_origins and hold only assets:write.' }),
    name: Type.Optional(Type.String({ maxLength: 200 })),
    scopes: Type.Optional(Type.Array(Type.Union(SCOPES.map((s) => Type.Literal(s))), { maxItems: SCOPES.length, description: 'Least privilege: defaults to all scopes for secret keys; required for restricted keys.' })),
    expires_at: Type.Optional(Nullable(DateTime)),
    allowed_ips: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 100, description: 'IPv4/IPv6 addresses or CIDR ranges.' })),
    allowed_origins: Type.Optional(Type.Array(Type.String({ maxLength: 300 }), { maxItems: 50, description: 'Exact origins such as https://app.example.com.' })),
    allowed_app_ids: Type.Optional(Type.Array(Type.String({ maxLength: 200 }), { maxItems: 50, description: 'Publishable keys only: native app identifiers (com.example.photos) that may use the key without an Origin, naming themselves in the Obscura-App-Id header (on-device licence sessions).' })),
  },
  { additionalProperties: false, examples: [{ kind: 'restricted', name: 'uploader', scopes: ['assets:write'], allowed_ips: ['203.0.113.0/24'] }] },
);

const CreatedSchema = Type.Object(
  { key: KeySchema, secret: Type.String({ description: 'The key itself. Shown once; store it in your secret manager.', examples: ['obs_sk_…'] }) },
  { additionalProperties: false },
);

const RollBody = Type.Object(
  { grace_period_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_GRACE_SECONDS, default: 0, description: 'How long the old key keeps working (up to 30 days). 0 (default): until the replacement is first used, so a lost answer never locks you out (roll again to get a new replacement while it is unused). To stop a leaked key now, roll it and then revoke it (DELETE /v1/keys/{id}).' })) },
  { additionalProperties: false },
);

/** A key's description as the API shows it, never the key or its hash (also the tenant export's records). */
export const out = (k: KeyInfo) => ({
  id: k.id,
  app_id: k.appId,
  kind: k.kind,
  name: k.name,
  display: k.display,
  scopes: k.scopes,
  allowed_ips: k.allowedIps,
  allowed_origins: k.allowedOrigins,
  allowed_app_ids: k.allowedAppIds,
  expires_at: k.expiresAt,
  revoked_at: k.revokedAt,
  rolled_to: k.rolledTo,
  grace_ends_at: k.graceEndsAt,
  first_used_at: k.firstUsedAt,
  created_at: k.createdAt,
});

const WhoAmI = Type.Object(
  { org_id: Uuid, app_id: Uuid, credential_id: Uuid, kind: Type.String({ examples: ['secret'] }), scopes: Type.Array(Type.String()) },
  { additionalProperties: false },
);

export function keyRoutes(app: FastifyInstance, db: DatabaseHandle, verifier: KeyVerifier): void {
  // Answers from the verified credential alone (no database access beyond verification): a cheap way
  // for an integration to check its configuration, and the authenticated no-op of the benchmark.
  app.get('/v1/whoami', {
    // Any valid credential may describe itself (no scope on purpose).
    config: { auth: true, scopes: [] },
    schema: { tags: ['keys'], summary: 'Describe the calling credential', security: bearer, response: { 200: WhoAmI, ...errorResponses() } },
    handler: async (req) => {
      const p = principalOf(req);
      return { org_id: p.orgId, app_id: p.appId, credential_id: p.keyId, kind: p.kind, scopes: [...p.scopes].sort() };
    },
  });
  app.get<{ Params: Static<typeof IdParams>; Querystring: Static<typeof ListQuery> }>('/v1/apps/:id/keys', {
    config: { auth: true, scope: 'keys:manage' },
    schema: {
      tags: ['keys'],
      summary: "List an app's keys, oldest first (never the secrets; cursor-paginated)",
      security: bearer,
      params: IdParams,
      querystring: ListQuery,
      response: { 200: pageSchema(KeySchema), ...listErrorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      const scope = { list: 'apps/keys', orgId: p.orgId, filter: { app: req.params.id } };
      const page = await db.withTenant(p.orgId, (trx) => listKeys(trx, p.orgId, req.params.id, pageRequest(req, req.query, scope, KEY_ORDER)));
      return pageReply(req, page, scope, out);
    },
  });
  app.post<{ Params: Static<typeof IdParams>; Body: Static<typeof CreateBody> }>('/v1/apps/:id/keys', {
    config: { auth: true, scope: 'keys:manage' },
    schema: { tags: ['keys'], summary: 'Create a key (the secret is returned once)', security: bearer, params: IdParams, body: CreateBody, response: { 201: CreatedSchema, ...errorResponses() } },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const b = req.body;
      const { key, secret } = await db.withTenant(p.orgId, (trx) =>
        createKey(
          trx,
          p.orgId,
          req.params.id,
          { kind: b.kind, name: b.name, scopes: b.scopes, expiresAt: b.expires_at ?? null, allowedIps: b.allowed_ips, allowedOrigins: b.allowed_origins, allowedAppIds: b.allowed_app_ids },
          { ...ctxOf(req), granter: p.scopes },
        ),
      );
      return reply.code(201).header('Cache-Control', 'no-store').send({ key: out(key), secret });
    },
  });
  app.get<{ Params: Static<typeof IdParams> }>('/v1/keys/:id', {
    config: { auth: true, scope: 'keys:manage' },
    schema: { tags: ['keys'], summary: 'Read a key', security: bearer, params: IdParams, response: { 200: KeySchema, ...errorResponses() } },
    handler: async (req) => {
      const p = principalOf(req);
      return out(await db.withTenant(p.orgId, (trx) => getKey(trx, p.orgId, req.params.id)));
    },
  });
  app.post<{ Params: Static<typeof IdParams>; Body: Static<typeof RollBody> | undefined }>('/v1/keys/:id/roll', {
    config: { auth: true, scope: 'keys:manage' },
    schema: {
      tags: ['keys'],
      summary: 'Roll a key: a replacement now; the old key stops after the grace period, or (grace 0) when the replacement is first used',
      security: bearer,
      params: IdParams,
      body: RollBody,
      response: { 200: Type.Object({ key: KeySchema, secret: Type.String(), previous: KeySchema }, { additionalProperties: false }), ...errorResponses({ 409: 'The key is revoked or already rolled (ERR_CONFLICT).' }) },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const grace = req.body?.grace_period_seconds ?? 0;
      const r = await db.withTenant(p.orgId, (trx) => rollKey(trx, p.orgId, req.params.id, grace, { ...ctxOf(req), granter: p.scopes }));
      // The old key's cached state changed (rolled_to); other nodes re-read it within the cache TTL.
      verifier.invalidate(r.oldHash);
      if (r.supersededHash) verifier.invalidate(r.supersededHash);
      return reply.header('Cache-Control', 'no-store').send({ key: out(r.key), secret: r.secret, previous: out(r.previous) });
    },
  });
  app.delete<{ Params: Static<typeof IdParams> }>('/v1/keys/:id', {
    config: { auth: true, scope: 'keys:manage' },
    schema: { tags: ['keys'], summary: 'Revoke a key immediately', security: bearer, params: IdParams, response: { 200: KeySchema, ...errorResponses() } },
    handler: async (req) => {
      const p = principalOf(req);
      const r = await db.withTenant(p.orgId, (trx) => revokeKey(trx, p.orgId, req.params.id, { ...ctxOf(req), granter: p.scopes }));
      verifier.invalidate(r.hash);
      for (const h of r.predecessorHashes) verifier.invalidate(h);
      return out(r.key);
    },
  });
}
