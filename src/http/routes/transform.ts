/**
 * Signed transform URLs (`GET /t/{kid}.{mac}/{operations}/{asset id}?exp=`), and the per-app signing
 * keys and presets behind them. See src/processing/transform.ts and docs/transform-urls.md.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { ProcessingService } from '../../processing/service.js';
import { createTransformKey, deletePreset, deleteTransformKey, listPresets, listTransformKeys, putPreset, PRESET_ORDER, TRANSFORM_KEY_ORDER } from '../../processing/transform.js';
import { listErrorResponses, pageQuery, pageReply, pageRequest, pageSchema } from '../pagination.js';
import { authorizeRead, principalOf, type AuthDeps } from '../auth.js';
import { DateTime, Uuid, bearer, ctxOf, errorResponses } from './common.js';
import { Operations, requireOperationScopes } from './jobs.js';
import type { FastifyReply } from 'fastify';
import type { ProcessResult } from '../../media/image/pipeline.js';

const AppParams = Type.Object({ id: Uuid }, { additionalProperties: false });
const ListQuery = pageQuery();
const Kid = Type.String({ pattern: '^tfk_[0-9A-Za-z]{22}$', description: 'A transform key id.' });
const KeyParams = Type.Object({ id: Uuid, kid: Kid }, { additionalProperties: false });
const PresetName = Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' });
const PresetParams = Type.Object({ id: Uuid, name: PresetName }, { additionalProperties: false });

const KeySchema = Type.Object({ id: Kid, app_id: Uuid, created_at: DateTime }, { additionalProperties: false });
const KeyWithSecret = Type.Object(
  { ...KeySchema.properties, secret: Type.String({ description: 'base64url of 32 random bytes: the HMAC key. Shown once.' }) },
  { additionalProperties: false },
);
const PresetSchema = Type.Object({ name: PresetName, operations: Type.String({ description: 'Canonical string form.' }), updated_at: DateTime }, { additionalProperties: false });
const PresetBody = Type.Object(
  {
    operations: Operations,
  },
  { additionalProperties: false, examples: [{ operations: 'resize:width=320,fit=cover/format:webp,quality=75' }] },
);

/** Headers every media response carries (ipx; DESIGN.md "Input": media is never executed). */
export function mediaHeaders(reply: FastifyReply, result: ProcessResult): void {
  reply.header('Content-Type', result.info.mime);
  reply.header('Content-Security-Policy', "default-src 'none'; sandbox");
  reply.header('X-Content-Type-Options', 'nosniff');
  reply.header('Cross-Origin-Resource-Policy', 'cross-origin');
  if (result.varyAccept) varyAccept(reply);
}

/** Adds `Accept` to `Vary`, keeping what other plugins (CORS: `Origin`) put there. */
export function varyAccept(reply: FastifyReply): void {
  addVary(reply, 'Accept');
}

/** Adds a header name to `Vary`, keeping what is there. */
function addVary(reply: FastifyReply, name: string): void {
  const current = reply.getHeader('Vary');
  const list = (Array.isArray(current) ? current.join(',') : String(current ?? '')).split(',').map((v) => v.trim()).filter(Boolean);
  if (!list.some((v) => v.toLowerCase() === name.toLowerCase() || v === '*')) list.push(name);
  reply.header('Vary', list.join(', '));
}

/** Registers `GET /t/...` and the key and preset management routes. */
export function transformRoutes(app: FastifyInstance, service: ProcessingService, auth: AuthDeps): void {
  app.register(async (scope) => {
    // Errors must never be cached by a CDN in front of us (a transient 503 would stick).
    scope.addHook('onSend', async (_req, reply) => {
      if (reply.statusCode >= 400) reply.header('Cache-Control', 'no-store');
    });
    scope.get('/t/*', {
      schema: {
        tags: ['transform'],
        summary: 'Signed transform URL: /t/{kid}.{mac}/{operations}/{asset id}?exp={unix}',
        description: 'HMAC-SHA256 over "/{operations}/{asset id}?exp={exp}" with the app\'s transform key (docs/transform-urls.md). 403 bad signature, 410 expired, 404 asset not in the key\'s org. When the key\'s app or the asset\'s app has `require_authorized_urls`, the request must also carry `Authorization: Bearer` with a credential of the org holding `assets:read` (401/403 otherwise), and the answer is `Cache-Control: private`.',
        response: {
          200: { type: 'string', format: 'binary', description: 'The image; cacheable by CDNs until exp.' },
          304: Type.Null(),
          ...errorResponses({ 403: 'Bad signature (ERR_SIGNATURE_INVALID) or not a preset in strict mode (ERR_PRESET_REQUIRED).', 410: 'Expired (ERR_URL_EXPIRED).', 422: 'More work than OBSCURA_PROCESS_MAX_COST allows (ERR_TOO_EXPENSIVE).', 503: 'Busy, or the org\'s share is full (ERR_UNAVAILABLE).' }),
        },
      },
      handler: async (req, reply) => {
        const abort = new AbortController();
        const onClose = () => {
          if (!reply.raw.writableEnded) abort.abort();
        };
        reply.raw.once('close', onClose);
        try {
          const inm = req.headers['if-none-match'];
          const r = await service.transform(req.url, req.headers.accept, typeof inm === 'string' ? inm : undefined, abort.signal, (orgId) => authorizeRead(req, auth, orgId));
          reply.header('ETag', r.etag);
          // Authorized URLs answer per credential: never stored by a shared cache (RFC 9111 §5.2.2.7).
          reply.header('Cache-Control', r.authorized ? `private, max-age=${r.maxAge}` : `public, max-age=${r.maxAge}, immutable`);
          if (r.authorized) addVary(reply, 'Authorization');
          if (r.varyAccept) varyAccept(reply);
          if (r.status === 304 || !r.result) return reply.code(304).send();
          mediaHeaders(reply, r.result);
          return reply.code(200).send(r.result.data);
        } finally {
          reply.raw.off('close', onClose);
        }
      },
    });
  });

  const db = service.deps.db;

  // A transform key reads every asset of the org through /t/ URLs: minting or deleting one needs
  // assets:read as well as keys:manage (no scope escalation through a signing secret).
  app.post<{ Params: Static<typeof AppParams> }>('/v1/apps/:id/transform-keys', {
    config: { auth: true, scopes: ['keys:manage', 'assets:read'] },
    schema: { tags: ['transform'], summary: 'Create a transform-URL signing key (secret shown once)', security: bearer, params: AppParams, response: { 201: KeyWithSecret, ...errorResponses({ 409: 'Too many keys (ERR_CONFLICT).' }) } },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const key = await db.withTenant(p.orgId, (trx) => createTransformKey(trx, service.masterKeys, p.orgId, req.params.id, ctxOf(req)));
      return reply.code(201).header('Cache-Control', 'no-store').send(key);
    },
  });
  app.get<{ Params: Static<typeof AppParams>; Querystring: Static<typeof ListQuery> }>('/v1/apps/:id/transform-keys', {
    config: { auth: true, scope: 'keys:manage' },
    schema: {
      tags: ['transform'],
      summary: "List an app's transform keys, oldest first (ids only; cursor-paginated)",
      security: bearer,
      params: AppParams,
      querystring: ListQuery,
      response: { 200: pageSchema(KeySchema), ...listErrorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      const scope = { list: 'apps/transform-keys', orgId: p.orgId, filter: { app: req.params.id } };
      const page = await db.withTenant(p.orgId, (trx) => listTransformKeys(trx, p.orgId, req.params.id, pageRequest(req, req.query, scope, TRANSFORM_KEY_ORDER)));
      return pageReply(req, page, scope, (k) => k);
    },
  });
  app.delete<{ Params: Static<typeof KeyParams> }>('/v1/apps/:id/transform-keys/:kid', {
    config: { auth: true, scopes: ['keys:manage', 'assets:read'] },
    schema: { tags: ['transform'], summary: 'Delete a transform key: URLs signed with it stop working', security: bearer, params: KeyParams, response: { 204: Type.Null(), ...errorResponses() } },
    handler: async (req, reply) => {
      const p = principalOf(req);
      await db.withTenant(p.orgId, (trx) => deleteTransformKey(trx, p.orgId, req.params.id, req.params.kid, ctxOf(req)));
      service.transformKeys.invalidate();
      service.sources.clear();
      return reply.code(204).send();
    },
  });
  app.get<{ Params: Static<typeof AppParams>; Querystring: Static<typeof ListQuery> }>('/v1/apps/:id/transform-presets', {
    config: { auth: true, scope: 'apps:read' },
    schema: {
      tags: ['transform'],
      summary: "List an app's transform presets, by name (cursor-paginated)",
      security: bearer,
      params: AppParams,
      querystring: ListQuery,
      response: { 200: pageSchema(PresetSchema), ...listErrorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      const scope = { list: 'apps/transform-presets', orgId: p.orgId, filter: { app: req.params.id } };
      const page = await db.withTenant(p.orgId, (trx) => listPresets(trx, p.orgId, req.params.id, pageRequest(req, req.query, scope, PRESET_ORDER)));
      return pageReply(req, page, scope, (x) => x);
    },
  });
  app.put<{ Params: Static<typeof PresetParams>; Body: Static<typeof PresetBody> }>('/v1/apps/:id/transform-presets/:name', {
    config: { auth: true, scope: 'apps:write' },
    schema: {
      tags: ['transform'],
      summary: 'Create or replace a preset (used as preset:<name> in transform URLs; the only form allowed in strict mode)',
      security: bearer,
      params: PresetParams,
      body: PresetBody,
      response: { 200: PresetSchema, ...errorResponses({ 409: 'Too many presets (ERR_CONFLICT).' }) },
    },
    handler: async (req) => {
      const p = principalOf(req);
      requireOperationScopes(p, req.body.operations);
      const preset = await db.withTenant(p.orgId, (trx) => putPreset(trx, p.orgId, req.params.id, req.params.name, req.body.operations, ctxOf(req)));
      service.transformKeys.invalidate();
      service.sources.clear();
      return preset;
    },
  });
  app.delete<{ Params: Static<typeof PresetParams> }>('/v1/apps/:id/transform-presets/:name', {
    config: { auth: true, scope: 'apps:write' },
    schema: { tags: ['transform'], summary: 'Delete a preset', security: bearer, params: PresetParams, response: { 204: Type.Null(), ...errorResponses() } },
    handler: async (req, reply) => {
      const p = principalOf(req);
      await db.withTenant(p.orgId, (trx) => deletePreset(trx, p.orgId, req.params.id, req.params.name, ctxOf(req)));
      service.transformKeys.invalidate();
      service.sources.clear();
      return reply.code(204).send();
    },
  });
}
