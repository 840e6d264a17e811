/**
 * 0020: licences for on-device processing (issue 15). `license_signing_keys` is a system table (no
 * org, no grant to the tenant role, like `signing_keys`): the deployment's licence signing keys, the
 * private JWK stored only wrapped by the master key. One current key per algorithm signs; rotated keys
 * stay published (offline licence files live for months) until an operator removes them.
 * `api_keys.allowed_app_ids`: the native app identifiers a publishable key may start sessions for.
 * The usage metric checks (monthly and daily, after 0019) are widened for device telemetry:
 * `device_exports:<type>` and `device_loads:<platform>` (src/usage/meter.ts).
 */
import { statements } from './helpers.js';

const METRIC = `'^(requests|bytes_in|bytes_out|processing_ms|(exports|pixels|video_ms|device_exports):[a-z0-9]+/[a-z0-9.+-]+|resolution:[a-z0-9]+|device_loads:[a-z0-9][a-z0-9._-]{0,31})$'`;

export const licensing = statements([
  `CREATE TABLE license_signing_keys (
     kid text PRIMARY KEY,
     alg text NOT NULL CHECK (alg IN ('RS256', 'EdDSA')),
     public_jwk jsonb NOT NULL,
     private_wrapped text NOT NULL,
     master_key_id text NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     rotated_at timestamptz
   )`,
  // At most one key per algorithm signs at a time, even when several nodes create it at once.
  `CREATE UNIQUE INDEX license_signing_keys_one_current ON license_signing_keys (alg) WHERE rotated_at IS NULL`,
  `ALTER TABLE api_keys ADD COLUMN allowed_app_ids text[] NOT NULL DEFAULT '{}'`,
  `ALTER TABLE usage_counters DROP CONSTRAINT usage_counters_metric_check`,
  `ALTER TABLE usage_counters ADD CONSTRAINT usage_counters_metric_check CHECK (metric ~ ${METRIC} AND length(metric) <= 120)`,
  `ALTER TABLE usage_days DROP CONSTRAINT usage_days_metric_check`,
  `ALTER TABLE usage_days ADD CONSTRAINT usage_days_metric_check CHECK (metric ~ ${METRIC} AND length(metric) <= 120)`,
]);
