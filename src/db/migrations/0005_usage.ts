/**
 * 0005: usage metering (counts, never content). Both tables are tenant tables under RLS.
 *
 * - `usage_counters`: one row per org, app, UTC month, credential and metric; increments are
 *   `INSERT ... ON CONFLICT DO UPDATE SET value = value + excluded.value`, so concurrent nodes add up
 *   atomically. `key_id` is '' for usage that no credential caused (e.g. background work).
 * - `usage_end_users`: the monthly active end users of an app, each only as a keyed hash
 *   (HMAC-SHA256 under a per-org key derived from the master key); the caller's raw id is never stored.
 */
import { TENANT_ROLE, rls, statements } from './helpers.js';

const MONTH = `'^[0-9]{4}-(0[1-9]|1[0-2])$'`;

export const usage = statements([
  `CREATE TABLE usage_counters (
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     month text NOT NULL CHECK (month ~ ${MONTH}),
     key_id text NOT NULL DEFAULT '' CHECK (length(key_id) <= 64),
     metric text NOT NULL CHECK (metric ~ '^(requests|bytes_in|bytes_out|processing_ms|exports:[a-z0-9]+/[a-z0-9.+-]+)$' AND length(metric) <= 120),
     value bigint NOT NULL DEFAULT 0 CHECK (value >= 0),
     updated_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (org_id, app_id, month, key_id, metric)
   )`,
  `CREATE INDEX usage_counters_month_idx ON usage_counters (org_id, month)`,
  ...rls('usage_counters'),
  `GRANT SELECT, INSERT, UPDATE, DELETE ON usage_counters TO ${TENANT_ROLE}`,
  `CREATE TABLE usage_end_users (
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     month text NOT NULL CHECK (month ~ ${MONTH}),
     user_hash text NOT NULL CHECK (user_hash ~ '^[0-9a-f]{64}$'),
     first_seen timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (org_id, app_id, month, user_hash)
   )`,
  ...rls('usage_end_users'),
  `GRANT SELECT, INSERT, DELETE ON usage_end_users TO ${TENANT_ROLE}`,
]);
