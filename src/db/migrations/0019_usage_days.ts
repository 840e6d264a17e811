/**
 * 0019: usage per UTC day (issue 13, item 5: the console charts usage per day as well as per month).
 * The monthly counters keep no day, so the meter now also adds each count to `usage_days` (per org,
 * app, day and metric; no credential split), in the same flush transaction. Days before this
 * migration have no rows (the monthly totals are unchanged).
 *
 * Also: `resolution:<bucket>` counts exports by the output's shorter side (240p … 2160p, above), in
 * both tables, so usage can be exported by media type and by resolution.
 */
import { TENANT_ROLE, rls, statements } from './helpers.js';

const METRIC = `'^(requests|bytes_in|bytes_out|processing_ms|(exports|pixels|video_ms):[a-z0-9]+/[a-z0-9.+-]+|resolution:[a-z0-9]+)$'`;

export const usageDays = statements([
  `CREATE TABLE usage_days (
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     day date NOT NULL,
     metric text NOT NULL CHECK (metric ~ ${METRIC} AND length(metric) <= 120),
     value bigint NOT NULL DEFAULT 0 CHECK (value >= 0),
     updated_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (org_id, app_id, day, metric)
   )`,
  `CREATE INDEX usage_days_day_idx ON usage_days (org_id, day)`,
  ...rls('usage_days'),
  `GRANT SELECT, INSERT, UPDATE, DELETE ON usage_days TO ${TENANT_ROLE}`,
  `ALTER TABLE usage_counters DROP CONSTRAINT usage_counters_metric_check`,
  `ALTER TABLE usage_counters ADD CONSTRAINT usage_counters_metric_check CHECK (metric ~ ${METRIC} AND length(metric) <= 120)`,
]);
