/**
 * `GET /v1/orgs/{id}/data-report`: the data inventory of the caller's org (issue 14, item 5) — what is
 * stored, how much, how old, and which retention applies. Counts and sizes only, never content, names or
 * labels, so it can be shared with a data-protection officer as it is.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import { sql } from 'kysely';
import type { DatabaseHandle } from '../../db/database.js';
import { notFound } from '../../errors.js';
import { mediaInventory } from '../../assets/inventory.js';
import { principalOf } from '../auth.js';
import { DateTime, Uuid, bearer, errorResponses } from './common.js';

const Params = Type.Object({ id: Uuid }, { additionalProperties: false });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** The org's records other than media, each a table of its own rows (RLS confines every count). */
const RECORDS = ['apps', 'api_keys', 'oauth_clients', 'users', 'jobs', 'webhook_endpoints', 'webhook_deliveries', 'audit_log', 'usage_counters', 'usage_end_users', 'transform_keys', 'transform_presets'] as const;

const Report = Type.Object(
  {
    org_id: Uuid,
    generated_at: DateTime,
    media: Type.Array(
      Type.Object(
        {
          app_id: Uuid,
          kind: Type.Union([Type.Literal('upload'), Type.Literal('output')]),
          count: Type.Integer(),
          bytes: Type.Integer({ description: 'Plaintext bytes (what was uploaded or produced).' }),
          oldest: Nullable(DateTime),
          newest: Nullable(DateTime),
          expiring: Type.Integer({ description: 'Assets that retention will remove (they have an expiry date).' }),
          held: Type.Integer({ description: 'Assets under legal hold.' }),
        },
        { additionalProperties: false },
      ),
      { description: 'Live assets per app and kind (`upload`: originals, `output`: processing results).' },
    ),
    retention: Type.Array(
      Type.Object(
        {
          app_id: Uuid,
          name: Type.String(),
          originals_seconds: Nullable(Type.Integer({ description: "The app's retention_seconds; null keeps originals until deleted." })),
          outputs_seconds: Type.Integer({ description: "The app's output_retention_seconds (default 86400): lifetime of a stored output unless the request asked for another." }),
          metadata_policy: Type.Union([Type.Literal('keep'), Type.Literal('strip_location'), Type.Literal('strip_all')], { description: 'What uploaded images keep of their metadata (default strip_all).' }),
        },
        { additionalProperties: false },
      ),
    ),
    open_uploads: Type.Object({ count: Type.Integer(), declared_bytes: Type.Integer() }, { additionalProperties: false, description: 'Unfinished resumable uploads (their parts are stored encrypted until they finish or expire).' }),
    records: Type.Record(Type.String(), Type.Integer(), { description: 'Rows the org owns per kind of record (apps, keys, users, jobs, webhooks, audit entries, usage counters…).' }),
  },
  { additionalProperties: false },
);

export function dataReportRoutes(app: FastifyInstance, deps: { db: DatabaseHandle; now?: () => number; metadataPolicy?: 'keep' | 'strip_location' | 'strip_all' }): void {
  app.get<{ Params: Static<typeof Params> }>('/v1/orgs/:id/data-report', {
    // What is stored about whom: readable by whoever may read the org's apps and assets.
    config: { auth: true, scopes: ['apps:read', 'assets:read'], quota: false },
    schema: {
      tags: ['orgs'],
      summary: "The org's data inventory: what is stored, how much, how old, and which retention applies",
      security: bearer,
      params: Params,
      response: { 200: Report, ...errorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      // Another org's id is the same answer as one that does not exist.
      if (req.params.id !== p.orgId) throw notFound('org');
      const now = deps.now?.() ?? Date.now();
      return deps.db.withTenant(p.orgId, async (trx) => {
        const inv = await mediaInventory(trx, p.orgId, now, deps.metadataPolicy);
        const records: Record<string, number> = {};
        for (const table of RECORDS) {
          // Fixed identifiers from the list above, never input.
          const r = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)} where org_id = ${p.orgId}`.execute(trx);
          records[table] = Number(r.rows[0]?.n ?? 0);
        }
        return {
          org_id: p.orgId,
          generated_at: new Date(now).toISOString(),
          media: inv.lines.map((l) => ({ app_id: l.appId, kind: l.kind, count: l.count, bytes: l.bytes, oldest: l.oldest, newest: l.newest, expiring: l.expiring, held: l.held })),
          retention: inv.retention.map((r) => ({ app_id: r.appId, name: r.name, originals_seconds: r.originalsSeconds, outputs_seconds: r.outputsSeconds, metadata_policy: r.metadataPolicy })),
          open_uploads: { count: inv.openUploads.count, declared_bytes: inv.openUploads.declaredBytes },
          records,
        };
      });
    },
  });
}
