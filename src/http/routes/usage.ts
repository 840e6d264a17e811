/** `GET /v1/usage`: one month of the org's metered usage, per app and per credential (counts, not content). */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { DatabaseHandle } from '../../db/database.js';
import type { UsageMeter } from '../../usage/meter.js';
import { usageDays, usageReport, type AppUsage, type UsageFigures } from '../../usage/report.js';
import { monthEnd, monthOf } from '../../usage/month.js';
import { principalOf } from '../auth.js';
import { DateTime, Uuid, bearer, errorResponses } from './common.js';

const Query = Type.Object(
  {
    month: Type.Optional(Type.String({ pattern: '^[0-9]{4}-(0[1-9]|1[0-2])$', description: 'UTC month, YYYY-MM (default: the current month).', examples: ['2026-11'] })),
    app_id: Type.Optional(Uuid),
  },
  { additionalProperties: false },
);

const Figures = {
  requests: Type.Integer(),
  bytes_in: Type.Integer({ description: 'Bytes received (request bodies).' }),
  bytes_out: Type.Integer({ description: 'Bytes sent (responses).' }),
  processing_seconds: Type.Number(),
  exports: Type.Object(
    { total: Type.Integer(), by_type: Type.Record(Type.String(), Type.Integer()), by_resolution: Type.Record(Type.String(), Type.Integer(), { description: "By the output's shorter side: 240p, 480p, 720p, 1080p, 1440p, 2160p or above (counted since migration 0019)." }) },
    { description: 'Outputs produced (sync, jobs, previews, transform URLs), by media type and by resolution.' },
  ),
  pixels: Type.Object({ total: Type.Integer(), by_type: Type.Record(Type.String(), Type.Integer()) }, { description: 'Output pixels (width × height × frames), by media type.' }),
  video_seconds: Type.Object({ total: Type.Number(), by_type: Type.Record(Type.String(), Type.Number()) }, { description: 'Output video duration, by media type.' }),
  device: Type.Optional(
    Type.Object(
      {
        loads: Type.Object({ total: Type.Integer(), by_platform: Type.Record(Type.String(), Type.Integer()) }),
        exports: Type.Object({ total: Type.Integer(), by_type: Type.Record(Type.String(), Type.Integer()) }),
      },
      { description: 'On-device processing (POST /v1/telemetry): engine loads by platform, and exports made on the device (also counted in `exports`).' },
    ),
  ),
};
const DaysQuery = Query;
const DaysReport = Type.Object(
  { month: Type.String(), days: Type.Array(Type.Object({ day: Type.String({ description: 'UTC day, YYYY-MM-DD.' }), ...Figures })) },
  { examples: [{ month: '2026-11', days: [{ day: '2026-11-01', requests: 12, bytes_in: 0, bytes_out: 0, processing_seconds: 0, exports: { total: 0, by_type: {}, by_resolution: {} }, pixels: { total: 0, by_type: {} }, video_seconds: { total: 0, by_type: {} } }] }] },
);
const Limit = Type.Union([Type.Integer(), Type.Null()]);
const AppUsage = Type.Object({
  app_id: Uuid,
  ...Figures,
  monthly_active_end_users: Type.Integer({ description: 'Distinct Obscura-End-User ids seen this month (stored only as keyed hashes).' }),
  quotas: Type.Object({ requests: Limit, exports: Limit, bytes: Limit }, { description: 'Monthly quotas from the app settings (null = unlimited).' }),
  keys: Type.Array(Type.Object({ key_id: Type.Union([Type.String(), Type.Null()], { description: 'Credential id; null for usage no credential caused.' }), ...Figures })),
});
const Report = Type.Object(
  { month: Type.String(), resets_at: DateTime, apps: Type.Array(AppUsage) },
  { examples: [{ month: '2026-11', resets_at: '2026-12-01T00:00:00.000Z', apps: [] }] },
);

const figures = (f: UsageFigures) => ({
  requests: f.requests,
  bytes_in: f.bytesIn,
  bytes_out: f.bytesOut,
  processing_seconds: f.processingSeconds,
  exports: { total: f.exports.total, by_type: f.exports.byType, by_resolution: f.exports.byResolution },
  pixels: { total: f.pixels.total, by_type: f.pixels.byType },
  video_seconds: { total: f.videoSeconds.total, by_type: f.videoSeconds.byType },
  device: { loads: { total: f.device.loads.total, by_platform: f.device.loads.byPlatform }, exports: { total: f.device.exports.total, by_type: f.device.exports.byType } },
});

/** A month's usage report as the API shows it (also the tenant export's records, one per month). */
export const usageOut = (month: string, apps: AppUsage[]) => ({
  month,
  resets_at: monthEnd(month).toISOString(),
  apps: apps.map((a) => ({
    app_id: a.appId,
    ...figures(a),
    monthly_active_end_users: a.monthlyActiveEndUsers,
    quotas: { requests: a.quotas.requests, exports: a.quotas.exports, bytes: a.quotas.bytes },
    keys: a.keys.map((k) => ({ key_id: k.keyId, ...figures(k) })),
  })),
});

export function usageRoutes(app: FastifyInstance, deps: { db: DatabaseHandle; meter: UsageMeter; now?: () => number }): void {
  app.get<{ Querystring: Static<typeof Query> }>('/v1/usage', {
    // Exempt from quotas: an app that used up its quota must still be able to see why.
    config: { auth: true, scope: 'usage:read', quota: false },
    schema: {
      tags: ['usage'],
      summary: "The org's metered usage for a month, per app and credential",
      description: 'Counts written by other nodes appear within a few seconds (usage is buffered and flushed in batches).',
      security: bearer,
      querystring: Query,
      response: { 200: Report, ...errorResponses() },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const month = req.query.month ?? monthOf(deps.now ? deps.now() : Date.now());
      // Include what this node has buffered so far (a client reads its own writes on one node).
      await deps.meter.flush();
      const apps = await deps.db.withTenant(p.orgId, (trx) => usageReport(trx, p.orgId, month, req.query.app_id));
      reply.header('cache-control', 'no-store');
      return usageOut(month, apps);
    },
  });
  app.get<{ Querystring: Static<typeof DaysQuery> }>('/v1/usage/daily', {
    config: { auth: true, scope: 'usage:read', quota: false },
    schema: {
      tags: ['usage'],
      summary: "The org's metered usage per UTC day of a month (every app summed, or one app)",
      description: 'Every day of the month up to today (zero-filled). Days before the server counted per day (migration 0019) read as zero; the monthly report still has their totals.',
      security: bearer,
      querystring: DaysQuery,
      response: { 200: DaysReport, ...errorResponses() },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const now = deps.now ? deps.now() : Date.now();
      const month = req.query.month ?? monthOf(now);
      await deps.meter.flush();
      const days = await deps.db.withTenant(p.orgId, (trx) => usageDays(trx, p.orgId, month, { appId: req.query.app_id, untilDay: new Date(now).toISOString().slice(0, 10) }));
      reply.header('cache-control', 'no-store');
      return { month, days: days.map((d) => ({ day: d.day, ...figures(d) })) };
    },
  });
}
