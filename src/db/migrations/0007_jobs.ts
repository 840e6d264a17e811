/**
 * 0007: processing jobs (the tenant-visible record; pg-boss holds the queue in its own schema),
 * idempotency keys, webhook endpoints with their delivery log, and transform-URL signing keys and
 * presets. Every table is a tenant table under RLS.
 */
import { TENANT_ROLE, rls, statements } from './helpers.js';

export const jobs = statements([
  `CREATE TABLE jobs (
     id text PRIMARY KEY,
     -- The pg-boss job id (pg-boss wants a uuid); re-sending with the same id is a no-op, which is
     -- what makes the post-commit enqueue repeatable by the reconciler.
     queue_id uuid NOT NULL UNIQUE,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
     input_asset_id text NOT NULL,
     input_source text NOT NULL CHECK (input_source IN ('asset', 'url', 'upload')),
     -- For display only: the remote URL with its query (presigned signatures) redacted.
     input_url text,
     operations text NOT NULL,
     preview boolean NOT NULL DEFAULT false,
     keep_metadata boolean NOT NULL DEFAULT false,
     output_ttl_seconds integer,
     -- The customer's presigned PUT URL is a credential: stored only wrapped by the master key.
     put_url_wrapped text,
     put_status integer,
     -- Secret per-job seed from which each attempt's output asset id is derived (deterministic
     -- per attempt, unguessable from outside).
     output_seed text NOT NULL,
     output_asset_id text,
     attempts integer NOT NULL DEFAULT 0,
     error_code text,
     error_message text,
     created_by text,
     created_at timestamptz NOT NULL DEFAULT now(),
     started_at timestamptz,
     finished_at timestamptz,
     CHECK ((status = 'succeeded') = (output_asset_id IS NOT NULL))
   )`,
  `CREATE INDEX jobs_org_idx ON jobs (org_id, created_at)`,
  `CREATE INDEX jobs_pending_idx ON jobs (created_at) WHERE status IN ('queued', 'running')`,
  `CREATE TABLE idempotency_keys (
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     key text NOT NULL,
     fingerprint text NOT NULL,
     job_id text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
     created_at timestamptz NOT NULL DEFAULT now(),
     expires_at timestamptz NOT NULL,
     PRIMARY KEY (org_id, key)
   )`,
  `CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at)`,
  `CREATE TABLE webhook_endpoints (
     id text PRIMARY KEY,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     url text NOT NULL,
     events text[] NOT NULL,
     description text NOT NULL DEFAULT '',
     enabled boolean NOT NULL DEFAULT true,
     -- Receivers verify with the secret itself (HMAC), so it is stored wrapped, never hashed.
     secret_wrapped text NOT NULL,
     previous_secret_wrapped text,
     previous_expires_at timestamptz,
     created_at timestamptz NOT NULL DEFAULT now(),
     updated_at timestamptz NOT NULL DEFAULT now()
   )`,
  `CREATE INDEX webhook_endpoints_app_idx ON webhook_endpoints (org_id, app_id)`,
  `CREATE TABLE webhook_deliveries (
     id text PRIMARY KEY,
     queue_id uuid NOT NULL UNIQUE,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     endpoint_id text NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
     event_id text NOT NULL,
     event_type text NOT NULL,
     -- The exact bytes sent on every attempt (only the signature's timestamp changes).
     body text NOT NULL,
     status text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
     attempts integer NOT NULL DEFAULT 0,
     created_at timestamptz NOT NULL DEFAULT now(),
     finished_at timestamptz
   )`,
  `CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at)`,
  `CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (created_at) WHERE status = 'pending'`,
  `CREATE TABLE webhook_attempts (
     delivery_id text NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     attempt integer NOT NULL,
     at timestamptz NOT NULL DEFAULT now(),
     status_code integer,
     duration_ms integer NOT NULL,
     error text,
     PRIMARY KEY (delivery_id, attempt)
   )`,
  `CREATE TABLE transform_keys (
     id text PRIMARY KEY,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     wrapped text NOT NULL,
     master_key_id text NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now()
   )`,
  `CREATE INDEX transform_keys_app_idx ON transform_keys (org_id, app_id)`,
  `CREATE TABLE transform_presets (
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     name text NOT NULL,
     operations text NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     updated_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (app_id, name)
   )`,
  ...rls('jobs'),
  ...rls('idempotency_keys'),
  ...rls('webhook_endpoints'),
  ...rls('webhook_deliveries'),
  ...rls('webhook_attempts'),
  ...rls('transform_keys'),
  ...rls('transform_presets'),
  `GRANT SELECT, INSERT, UPDATE, DELETE ON jobs, idempotency_keys, webhook_endpoints, webhook_deliveries, webhook_attempts, transform_keys, transform_presets TO ${TENANT_ROLE}`,
]);
