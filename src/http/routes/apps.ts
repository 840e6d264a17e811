/** `/v1/apps`: list, create, read and update an org's apps. */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { DatabaseHandle } from '../../db/database.js';
import { applyRetention, effectivePolicy, type MetadataPolicy } from '../../assets/retention.js';
import { MAX_OUTPUT_TTL_SECONDS } from '../../assets/assets.js';
import { APP_ORDER, createApp, getApp, listApps, updateAppSettings, type App } from '../../tenants/index.js';
import { listErrorResponses, pageQuery, pageReply, pageRequest, pageSchema } from '../pagination.js';
import { principalOf } from '../auth.js';
import { DateTime, IdParams, Uuid, bearer, ctxOf, errorResponses } from './common.js';

export const AppSettingsSchema = Type.Object(
  {
    allowed_types: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z]+/[a-z0-9.+-]+$', maxLength: 100 }), { maxItems: 50, description: 'Media types this app accepts (sniffed from bytes).' })),
    allow_browser_uploads: Type.Optional(Type.Boolean({ description: 'Allow uploads with publishable keys (origin-checked). Default false.' })),
    max_upload_bytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 ** 4 })),
    require_authorized_urls: Type.Optional(Type.Boolean({ description: 'Signed download URLs and transform URLs also need a bearer credential of the org with assets:read (transform answers become Cache-Control: private). Default false.' })),
    retention_seconds: Type.Optional(Type.Union([Type.Integer({ minimum: 60, maximum: 10 * 365 * 86400 }), Type.Null()], { description: 'Seconds an original (upload) is kept, from its creation; null or unset = until deleted. Shortening it also brings forward the expiry of existing originals; lengthening it applies to new ones (an expiry never moves later).' })),
    output_retention_seconds: Type.Optional(Type.Integer({ minimum: 60, maximum: MAX_OUTPUT_TTL_SECONDS, description: 'Default lifetime of stored processing outputs, seconds (default 86400); a request may ask for another (output.ttl_seconds).' })),
    metadata_policy: Type.Optional(Type.Union([Type.Literal('keep'), Type.Literal('strip_location'), Type.Literal('strip_all')], { description: 'What uploaded images keep of their metadata (EXIF, XMP, IPTC, comments), applied at ingest without re-encoding pixels: strip_all (default: only orientation and colour profile stay), strip_location (GPS and the XMP/IPTC/text blocks that can name a place go), keep. The stored SHA-256 is of the stored bytes.' })),
    allow_svg: Type.Optional(Type.Boolean({ description: 'Accept SVG input (sanitised before rasterising). Default false.' })),
    strict_transforms: Type.Optional(Type.Boolean({ description: 'Only named presets through transform URLs. Default false.' })),
    quota_requests_per_month: Type.Optional(Type.Unsafe<number | null>({ type: ['integer', 'null'], minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Monthly request quota; beyond it 429 ERR_QUOTA_EXCEEDED until the next UTC month. Unset or null = unlimited.' })),
    quota_exports_per_month: Type.Optional(Type.Unsafe<number | null>({ type: ['integer', 'null'], minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Monthly quota of outputs produced. Unset or null = unlimited.' })),
    quota_bytes_per_month: Type.Optional(Type.Unsafe<number | null>({ type: ['integer', 'null'], minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Monthly quota of bytes received + sent. Unset or null = unlimited.' })),
  },
  { additionalProperties: false },
);

/** The data policy in force, defaults resolved (issue 14, item 5: retention and minimisation visible). */
const EffectivePolicySchema = Type.Object(
  {
    metadata_policy: Type.Union([Type.Literal('keep'), Type.Literal('strip_location'), Type.Literal('strip_all')]),
    retention_seconds: Type.Union([Type.Integer(), Type.Null()], { description: 'Originals: seconds kept; null = until deleted.' }),
    output_retention_seconds: Type.Integer({ description: 'Stored outputs: default seconds kept.' }),
  },
  { additionalProperties: false, description: 'The policy in force for new assets, defaults included (settings lists only what was set).' },
);

const AppSchema = Type.Object(
  { id: Uuid, name: Type.String(), settings: AppSettingsSchema, effective: EffectivePolicySchema, created_at: DateTime },
  {
    additionalProperties: false,
    examples: [{ id: '3f0c2a8e-6f5e-4b8a-9c55-0d3a1f6a9b10', name: 'Storefront', settings: {}, effective: { metadata_policy: 'strip_all', retention_seconds: null, output_retention_seconds: 86400 }, created_at: '2026-11-24T12:00:00.000Z' }],
  },
);
const CreateBody = Type.Object({ name: Type.String({ minLength: 1, maxLength: 200 }), settings: Type.Optional(AppSettingsSchema) }, { additionalProperties: false });
const PatchBody = Type.Object({ name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })), settings: Type.Optional(AppSettingsSchema) }, { additionalProperties: false });

const ListQuery = pageQuery();

/**
 * An app as the API shows it (also the tenant export's records): every answer, lists included, carries
 * the policy in force with the server's defaults resolved (issue 14, item 5).
 */
export const out = (a: App, defaultMetadataPolicy?: MetadataPolicy) => ({
  id: a.id,
  name: a.name,
  settings: a.settings,
  effective: effectivePolicy(a.settings, defaultMetadataPolicy),
  created_at: a.createdAt,
});

/**
 * `settingsChanged` is told after an app's settings change, so this node's caches that hold a setting
 * (the signed-download cache holds `require_authorized_urls`) drop it at once rather than at their TTL.
 */
export function appRoutes(app: FastifyInstance, db: DatabaseHandle, settingsChanged: (orgId: string, appId: string) => void = () => undefined, defaultMetadataPolicy?: MetadataPolicy): void {
  const outWithPolicy = (a: App) => out(a, defaultMetadataPolicy);
  app.get<{ Querystring: Static<typeof ListQuery> }>('/v1/apps', {
    config: { auth: true, scope: 'apps:read' },
    schema: { tags: ['apps'], summary: "List the org's apps, oldest first (cursor-paginated)", security: bearer, querystring: ListQuery, response: { 200: pageSchema(AppSchema), ...listErrorResponses() } },
    handler: async (req) => {
      const p = principalOf(req);
      const scope = { list: 'apps', orgId: p.orgId };
      const page = await db.withTenant(p.orgId, (trx) => listApps(trx, p.orgId, pageRequest(req, req.query, scope, APP_ORDER)));
      return pageReply(req, page, scope, outWithPolicy);
    },
  });
  app.post<{ Body: Static<typeof CreateBody> }>('/v1/apps', {
    config: { auth: true, scope: 'apps:write' },
    schema: { tags: ['apps'], summary: 'Create an app', security: bearer, body: CreateBody, response: { 201: AppSchema, ...errorResponses() } },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const created = await db.withTenant(p.orgId, (trx) => createApp(trx, p.orgId, { name: req.body.name, settings: req.body.settings ?? {} }, ctxOf(req)));
      return reply.code(201).send(outWithPolicy(created));
    },
  });
  app.get<{ Params: Static<typeof IdParams> }>('/v1/apps/:id', {
    config: { auth: true, scope: 'apps:read' },
    schema: { tags: ['apps'], summary: 'Read an app', security: bearer, params: IdParams, response: { 200: AppSchema, ...errorResponses() } },
    handler: async (req) => {
      const p = principalOf(req);
      return outWithPolicy(await db.withTenant(p.orgId, (trx) => getApp(trx, p.orgId, req.params.id)));
    },
  });
  app.patch<{ Params: Static<typeof IdParams>; Body: Static<typeof PatchBody> }>('/v1/apps/:id', {
    config: { auth: true, scope: 'apps:write' },
    schema: { tags: ['apps'], summary: "Rename an app or change its policy", security: bearer, params: IdParams, body: PatchBody, response: { 200: AppSchema, ...errorResponses() } },
    handler: async (req) => {
      const p = principalOf(req);
      const updated = outWithPolicy(
        await db.withTenant(p.orgId, async (trx) => {
          const a = await updateAppSettings(trx, p.orgId, req.params.id, req.body, ctxOf(req));
          // A shorter retention also applies to the originals already stored (in the same transaction).
          if (req.body.settings && 'retention_seconds' in req.body.settings) await applyRetention(trx, p.orgId, a.id, a.settings.retention_seconds ?? null, ctxOf(req));
          return a;
        }),
      );
      settingsChanged(p.orgId, req.params.id);
      return updated;
    },
  });
}
