/** `GET /v1/audit`: the caller's org audit trail, newest first, paged by id. */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { DatabaseHandle } from '../../db/database.js';
import { listAudit } from '../../audit/log.js';
import { principalOf } from '../auth.js';
import { DateTime, bearer, errorResponses } from './common.js';

const Query = Type.Object(
  { before: Type.Optional(Type.Integer({ minimum: 1, description: 'Return entries with an id below this (paging).' })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })) },
  { additionalProperties: false },
);
const Entry = Type.Object({
  id: Type.Integer(),
  seq: Type.Integer({ description: 'Position in the org chain.' }),
  at: DateTime,
  actor: Type.Object({}, { additionalProperties: true }),
  action: Type.String({ examples: ['key.roll'] }),
  target: Type.Object({}, { additionalProperties: true }),
  data: Type.Object({}, { additionalProperties: true }),
  ip: Type.Union([Type.String(), Type.Null()]),
  request_id: Type.Union([Type.String(), Type.Null()]),
  prev_hash: Type.String(),
  hash: Type.String(),
});

export function auditRoutes(app: FastifyInstance, db: DatabaseHandle): void {
  app.get<{ Querystring: Static<typeof Query> }>('/v1/audit', {
    config: { auth: true, scope: 'audit:read' },
    schema: {
      tags: ['audit'],
      summary: "Read the org's hash-chained audit trail",
      security: bearer,
      querystring: Query,
      response: { 200: Type.Object({ data: Type.Array(Entry), next_before: Type.Union([Type.Integer(), Type.Null()]) }), ...errorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      const limit = req.query.limit ?? 100;
      const rows = await db.withTenant(p.orgId, (trx) => listAudit(trx, p.orgId, { before: req.query.before, limit }));
      return {
        data: rows.map((e) => ({ id: e.id, seq: e.chainSeq, at: e.at, actor: e.actor, action: e.action, target: e.target, data: e.data, ip: e.ip, request_id: e.requestId, prev_hash: e.prevHash, hash: e.hash })),
        next_before: rows.length === limit ? rows[rows.length - 1]!.id : null,
      };
    },
  });
}
