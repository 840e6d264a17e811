/**
 * Table types for jobs, idempotency keys and webhooks (migration 0007), merged into
 * the Kysely `Database` interface so schema.ts stays untouched.
 */
import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;

/** Lifecycle of a processing job. */
export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** The tenant-visible record of a processing job (pg-boss holds the queue entry). */
export interface JobsTable {
  /** Public id, `job_<22 base62>`. */
  id: string;
  /** pg-boss job id (uuid). */
  queue_id: string;
  org_id: string;
  app_id: string;
  status: JobStatus;
  input_asset_id: string;
  input_source: 'asset' | 'url' | 'upload';
  /** Redacted remote URL (no query), display only. */
  input_url: string | null;
  /** Canonical string form of the validated operations. */
  operations: string;
  preview: Generated<boolean>;
  keep_metadata: Generated<boolean>;
  output_ttl_seconds: number | null;
  /** Presigned PUT target, wrapped by the master key (context `job-put:<id>`). */
  put_url_wrapped: string | null;
  put_status: number | null;
  output_seed: string;
  output_asset_id: string | null;
  /** Which queue runs it: video jobs have their own workers (issue 11). */
  media: Generated<'image' | 'video'>;
  /** Latest progress of a running video job (JSON: percent, frames, fps, eta_seconds). */
  progress: ColumnType<unknown, string | null | undefined, string | null>;
  attempts: Generated<number>;
  error_code: string | null;
  error_message: string | null;
  created_by: string | null;
  created_at: Timestamp;
  started_at: NullableTimestamp;
  finished_at: NullableTimestamp;
}

/** `Idempotency-Key` records: per org, kept 24 h. */
export interface IdempotencyKeysTable {
  org_id: string;
  key: string;
  /** SHA-256 over the app and the canonical request: same key + different request is a 409. */
  fingerprint: string;
  job_id: string;
  created_at: Timestamp;
  expires_at: Timestamp;
}

/** A receiver of events for one app. */
export interface WebhookEndpointsTable {
  /** Public id, `whe_<22 base62>`. */
  id: string;
  org_id: string;
  app_id: string;
  url: string;
  events: string[];
  description: Generated<string>;
  enabled: Generated<boolean>;
  /** The signing secret (`whsec_…`), wrapped by the master key (context `webhook:<id>`). */
  secret_wrapped: string;
  /** The secret before the last rotation, still signing until `previous_expires_at`. */
  previous_secret_wrapped: string | null;
  previous_expires_at: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** One event for one endpoint. */
export interface WebhookDeliveriesTable {
  /** Public id, `whd_<22 base62>`. */
  id: string;
  queue_id: string;
  org_id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  body: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: Generated<number>;
  created_at: Timestamp;
  finished_at: NullableTimestamp;
}

/** The delivery log: one row per HTTP attempt (never the response body, never a secret). */
export interface WebhookAttemptsTable {
  delivery_id: string;
  org_id: string;
  attempt: number;
  at: Timestamp;
  status_code: number | null;
  duration_ms: number;
  /** A short machine code (`status`, `timeout`, `network`, `forbidden`, …), never upstream text. */
  error: string | null;
}

declare module '../db/schema.js' {
  interface Database {
    jobs: JobsTable;
    idempotency_keys: IdempotencyKeysTable;
    webhook_endpoints: WebhookEndpointsTable;
    webhook_deliveries: WebhookDeliveriesTable;
    webhook_attempts: WebhookAttemptsTable;
  }
}
