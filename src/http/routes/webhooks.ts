/** `/v1/webhooks`: endpoints of the caller's app, secret rotation, and the delivery log. */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { JobRuntime } from '../../jobs/runtime.js';
import {
  createEndpoint,
  deleteEndpoint,
  getEndpoint,
  listDeliveries,
  listEndpoints,
  DELIVERY_ORDER,
  ENDPOINT_ORDER,
  redeliver,
  rotateSecret,
  sendTestEvent,
  updateEndpoint,
  DEFAULT_ROTATION_GRACE_SECONDS,
  MAX_ROTATION_GRACE_SECONDS,
  WEBHOOK_EVENTS,
  type DeliveryLogEntry,
  type WebhookEndpoint,
} from '../../jobs/webhooks.js';
import { principalOf } from '../auth.js';
import { DateTime, Uuid, bearer, ctxOf, errorResponses } from './common.js';
import { listErrorResponses, pageQuery, pageReply, pageRequest, pageSchema } from '../pagination.js';

const EndpointId = Type.String({ pattern: '^whe_[0-9A-Za-z]{22}$', description: 'A webhook endpoint id.' });
const Params = Type.Object({ id: EndpointId }, { additionalProperties: false });
const Event = Type.Union(WEBHOOK_EVENTS.map((e) => Type.Literal(e)));
const Url = Type.String({ maxLength: 2048, description: 'https URL on a public address (checked now and at every delivery). No redirects are followed.' });

const EndpointSchema = Type.Object(
  {
    id: EndpointId,
    app_id: Uuid,
    url: Type.String(),
    events: Type.Array(Event),
    description: Type.String(),
    enabled: Type.Boolean(),
    previous_secret_expires_at: Type.Union([DateTime, Type.Null()], { description: 'During a rotation: when the previous secret stops signing.' }),
    created_at: DateTime,
    updated_at: DateTime,
  },
  { additionalProperties: false },
);
const WithSecret = Type.Object(
  { ...EndpointSchema.properties, secret: Type.String({ description: 'whsec_… — shown once. Verify deliveries with it (docs/webhooks.md).' }) },
  { additionalProperties: false },
);
const CreateBody = Type.Object(
  {
    url: Url,
    events: Type.Optional(Type.Array(Event, { minItems: 1, maxItems: 10, description: 'Default: every event.' })),
    description: Type.Optional(Type.String({ maxLength: 500 })),
    enabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, examples: [{ url: 'https://api.example.com/obscura/webhooks', events: ['job.completed', 'job.failed'], description: 'production backend' }] },
);
const PatchBody = Type.Object(
  {
    url: Type.Optional(Url),
    events: Type.Optional(Type.Array(Event, { minItems: 1, maxItems: 10 })),
    description: Type.Optional(Type.String({ maxLength: 500 })),
    enabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, examples: [{ enabled: false }] },
);
const RotateBody = Type.Object(
  {
    grace_seconds: Type.Optional(
      Type.Integer({ minimum: 0, maximum: MAX_ROTATION_GRACE_SECONDS, description: `How long the previous secret keeps signing (default ${DEFAULT_ROTATION_GRACE_SECONDS}).` }),
    ),
  },
  { additionalProperties: false, examples: [{ grace_seconds: 86400 }] },
);
const ListQuery = pageQuery();
const DeliveriesQuery = ListQuery;
const DeliveryParams = Type.Object({ id: EndpointId, delivery: Type.String({ pattern: '^whd_[0-9A-Za-z]{22}$', description: 'A delivery id (from the delivery log).' }) }, { additionalProperties: false });
const DeliverySchema = Type.Object(
  {
    id: Type.String(),
    event_id: Type.String(),
    event_type: Type.String(),
    status: Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')]),
    created_at: DateTime,
    finished_at: Type.Union([DateTime, Type.Null()]),
    attempts: Type.Array(
      Type.Object(
        {
          attempt: Type.Integer(),
          at: DateTime,
          status_code: Type.Union([Type.Integer(), Type.Null()], { description: "The receiver's HTTP status; null when no answer arrived." }),
          duration_ms: Type.Integer(),
          error: Type.Union([Type.String(), Type.Null()], { description: 'A short code (status, timeout, network, forbidden, …); never the response body.' }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

/** An endpoint as the API shows it, never its secret (also the tenant export's records). */
export const out = (e: WebhookEndpoint) => ({
  id: e.id,
  app_id: e.appId,
  url: e.url,
  events: e.events,
  description: e.description,
  enabled: e.enabled,
  previous_secret_expires_at: e.previousSecretExpiresAt,
  created_at: e.createdAt,
  updated_at: e.updatedAt,
});

const deliveryOut = (d: DeliveryLogEntry) => ({
  id: d.id,
  event_id: d.eventId,
  event_type: d.eventType,
  status: d.status,
  created_at: d.createdAt,
  finished_at: d.finishedAt,
  attempts: d.attempts.map((a) => ({ attempt: a.attempt, at: a.at, status_code: a.statusCode, duration_ms: a.durationMs, error: a.error })),
});

/** Registers the webhook routes (scope `webhooks:manage`, endpoints of the credential's app). */
export function webhookRoutes(app: FastifyInstance, runtime: JobRuntime): void {
  const deps = runtime.webhookDeps;
  const cfg = { auth: true, scope: 'webhooks:manage' as const };
  // A webhook receives job events (the job record, as GET /v1/jobs/{id} shows it): minting its secret
  // or choosing where events go also needs jobs:read.
  const receiving = { auth: true, scopes: ['webhooks:manage', 'jobs:read'] as const };
  const tags = ['webhooks'];

  app.post<{ Body: Static<typeof CreateBody> }>('/v1/webhooks', {
    config: receiving,
    schema: { tags, summary: 'Register a webhook endpoint (the secret is shown once)', security: bearer, body: CreateBody, response: { 201: WithSecret, ...errorResponses({ 409: 'Too many endpoints (ERR_CONFLICT).' }) } },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const { endpoint, secret } = await createEndpoint(deps, p.orgId, p.appId, req.body, ctxOf(req));
      return reply.code(201).header('Cache-Control', 'no-store').header('Location', `/v1/webhooks/${endpoint.id}`).send({ ...out(endpoint), secret });
    },
  });
  app.get<{ Querystring: Static<typeof ListQuery> }>('/v1/webhooks', {
    config: cfg,
    schema: { tags, summary: "List the app's webhook endpoints, oldest first (cursor-paginated)", security: bearer, querystring: ListQuery, response: { 200: pageSchema(EndpointSchema), ...listErrorResponses() } },
    handler: async (req) => {
      const p = principalOf(req);
      const scope = { list: 'webhooks', orgId: p.orgId, filter: { app: p.appId } };
      return pageReply(req, await listEndpoints(deps, p.orgId, p.appId, pageRequest(req, req.query, scope, ENDPOINT_ORDER)), scope, out);
    },
  });
  app.get<{ Params: Static<typeof Params> }>('/v1/webhooks/:id', {
    config: cfg,
    schema: { tags, summary: 'Read a webhook endpoint', security: bearer, params: Params, response: { 200: EndpointSchema, ...errorResponses() } },
    handler: async (req) => {
      const p = principalOf(req);
      return out(await getEndpoint(deps, p.orgId, p.appId, req.params.id));
    },
  });
  app.patch<{ Params: Static<typeof Params>; Body: Static<typeof PatchBody> }>('/v1/webhooks/:id', {
    config: receiving,
    schema: { tags, summary: 'Change URL, events, description or enabled', security: bearer, params: Params, body: PatchBody, response: { 200: EndpointSchema, ...errorResponses() } },
    handler: async (req) => {
      const p = principalOf(req);
      return out(await updateEndpoint(deps, p.orgId, p.appId, req.params.id, req.body, ctxOf(req)));
    },
  });
  app.delete<{ Params: Static<typeof Params> }>('/v1/webhooks/:id', {
    config: cfg,
    schema: { tags, summary: 'Delete a webhook endpoint and its delivery log', security: bearer, params: Params, response: { 204: Type.Null(), ...errorResponses() } },
    handler: async (req, reply) => {
      const p = principalOf(req);
      await deleteEndpoint(deps, p.orgId, p.appId, req.params.id, ctxOf(req));
      return reply.code(204).send();
    },
  });
  app.post<{ Params: Static<typeof Params>; Body: Static<typeof RotateBody> | undefined }>('/v1/webhooks/:id/rotate-secret', {
    config: receiving,
    schema: {
      tags,
      summary: 'Rotate the signing secret; the previous one keeps signing during the grace period',
      security: bearer,
      params: Params,
      body: RotateBody,
      response: { 200: WithSecret, ...errorResponses() },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const { endpoint, secret } = await rotateSecret(deps, p.orgId, p.appId, req.params.id, req.body?.grace_seconds ?? DEFAULT_ROTATION_GRACE_SECONDS, ctxOf(req));
      return reply.header('Cache-Control', 'no-store').send({ ...out(endpoint), secret });
    },
  });
  // Both send what the endpoint would receive (a redelivery repeats a job event), through the queue and
  // the worker like every event: the same scopes as choosing where events go.
  app.post<{ Params: Static<typeof Params> }>('/v1/webhooks/:id/test', {
    config: receiving,
    schema: {
      tags,
      summary: 'Send a signed `webhook.test` event to this endpoint now (queued like every event; see the delivery log)',
      security: bearer,
      params: Params,
      response: { 202: DeliverySchema, ...errorResponses({ 409: 'The endpoint is disabled (ERR_CONFLICT).' }) },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const { ref, delivery } = await sendTestEvent(deps, p.orgId, p.appId, req.params.id, ctxOf(req));
      await runtime.jobs.dispatch([ref]);
      return reply.code(202).send(deliveryOut(delivery));
    },
  });
  app.post<{ Params: Static<typeof DeliveryParams> }>('/v1/webhooks/:id/deliveries/:delivery/redeliver', {
    config: receiving,
    schema: {
      tags,
      summary: 'Send a finished delivery again: a new delivery of the same event (same id and bytes, freshly signed)',
      security: bearer,
      params: DeliveryParams,
      response: { 202: DeliverySchema, ...errorResponses({ 409: 'The delivery is still pending, or the endpoint is disabled (ERR_CONFLICT).' }) },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const { ref, delivery } = await redeliver(deps, p.orgId, p.appId, req.params.id, req.params.delivery, ctxOf(req));
      await runtime.jobs.dispatch([ref]);
      return reply.code(202).send(deliveryOut(delivery));
    },
  });
  app.get<{ Params: Static<typeof Params>; Querystring: Static<typeof DeliveriesQuery> }>('/v1/webhooks/:id/deliveries', {
    config: cfg,
    schema: {
      tags,
      summary: 'Delivery log: time, status code, duration and attempt of each delivery (newest first; cursor-paginated)',
      security: bearer,
      params: Params,
      querystring: DeliveriesQuery,
      response: { 200: pageSchema(DeliverySchema), ...listErrorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      const scope = { list: 'webhooks/deliveries', orgId: p.orgId, filter: { app: p.appId, endpoint: req.params.id } };
      return pageReply(req, await listDeliveries(deps, p.orgId, p.appId, req.params.id, pageRequest(req, req.query, scope, DELIVERY_ORDER)), scope, deliveryOut);
    },
  });
}
