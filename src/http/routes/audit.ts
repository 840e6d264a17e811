/** `GET /v1/audit`: the caller's org audit trail, newest first, cursor-paginated like every list. */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { DatabaseHandle } from '../../db/database.js';
import { AUDIT_ORDER, listAudit, verifyAudit, type AuditEntry } from '../../audit/log.js';
import { loadAuditKeys } from '../../audit/keys.js';
import type { MasterKeys } from '../../crypto/master.js';
import { listErrorResponses, pageQuery, pageReply, pageRequest, pageSchema } from '../pagination.js';
import { principalOf } from '../auth.js';
import { DateTime, bearer } from './common.js';

/** An audit entry as the API shows it (also the tenant export's records). */
export const auditOut = (e: AuditEntry) => ({ id: e.id, seq: e.chainSeq, at: e.at, actor: e.actor, action: e.action, target: e.target, data: e.data, ip: e.ip, request_id: e.requestId, prev_hash: e.prevHash, hash: e.hash });

const Query = pageQuery({
  before: Type.Optional(Type.Integer({ minimum: 1, description: 'Deprecated (use `cursor`): entries with an id below this.' })),
});
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

const Verified = Type.Object(
  {
    ok: Type.Boolean({ description: "The org's chain recomputes from its first entry to its keyed head." }),
    entries: Type.Integer(),
    head_hash: Type.String({ description: 'The hash of the last entry: record it elsewhere to detect a rollback later.' }),
    broken: Type.Union([Type.Object({ seq: Type.Union([Type.Integer(), Type.Null()]), reason: Type.String() }, { additionalProperties: false }), Type.Null()], { description: 'The first failure, if any.' }),
  },
  { additionalProperties: false },
);

export function auditRoutes(app: FastifyInstance, db: DatabaseHandle, masterKeys?: MasterKeys): void {
  if (masterKeys) {
    app.get('/v1/audit/verify', {
      config: { auth: true, scope: 'audit:read' },
      schema: {
        tags: ['audit'],
        summary: "Verify the org's audit chain (links, hashes and keyed MACs) and return its head hash",
        description: 'The same check as `obscura audit verify --org`, for one org: every entry from the first is recomputed. Cost grows with the chain.',
        security: bearer,
        response: { 200: Verified, ...listErrorResponses() },
      },
      handler: async (req) => {
        const p = principalOf(req);
        const report = await verifyAudit(db.system, { orgId: p.orgId, keys: await loadAuditKeys(db.system, masterKeys) });
        const chain = report.chains[0];
        const broken = chain?.broken ?? (report.ok ? undefined : { reason: report.problems[0]?.reason ?? 'unknown' });
        return {
          ok: !!chain && !broken,
          entries: chain?.entries ?? 0,
          head_hash: chain?.head ?? '',
          broken: broken ? { seq: 'chainSeq' in broken ? (broken.chainSeq ?? null) : null, reason: broken.reason } : null,
        };
      },
    });
  }
  app.get<{ Querystring: Static<typeof Query> }>('/v1/audit', {
    config: { auth: true, scope: 'audit:read' },
    schema: {
      tags: ['audit'],
      summary: "Read the org's hash-chained audit trail",
      security: bearer,
      querystring: Query,
      response: {
        200: pageSchema(Entry, { next_before: Type.Union([Type.Integer(), Type.Null()], { description: 'Deprecated (use `next_cursor`): the `before` of the next page.' }) }),
        ...listErrorResponses(),
      },
    },
    handler: async (req) => {
      const p = principalOf(req);
      const scope = { list: 'audit', orgId: p.orgId, filter: { before: req.query.before } };
      const page = await db.withTenant(p.orgId, (trx) => listAudit(trx, p.orgId, pageRequest(req, req.query, scope, AUDIT_ORDER), { before: req.query.before }));
      const last = page.items[page.items.length - 1];
      return {
        ...pageReply(req, page, scope, auditOut),
        next_before: page.next && last ? last.id : null,
      };
    },
  });
}
