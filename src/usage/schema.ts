/** Table types for usage metering (declaration merging into the Kysely `Database`; see migration 0005). */
import type { ColumnType } from 'kysely';

export interface UsageCountersTable {
  org_id: string;
  app_id: string;
  /** UTC month, `YYYY-MM`. */
  month: string;
  /** The credential that caused the usage ('' when none did). */
  key_id: ColumnType<string, string | undefined, string>;
  /** `requests`, `bytes_in`, `bytes_out`, `processing_ms` or `exports:<media type>`. */
  metric: string;
  value: ColumnType<number | string, number, number | string>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface UsageEndUsersTable {
  org_id: string;
  app_id: string;
  month: string;
  /** HMAC-SHA256 (hex) of the caller-supplied end-user id; never the id itself. */
  user_hash: string;
  first_seen: ColumnType<Date, Date | string | undefined, never>;
}

/** The same counts per UTC day and app (migration 0019), for per-day charts. */
export interface UsageDaysTable {
  org_id: string;
  app_id: string;
  /** UTC day; written as `YYYY-MM-DD`. */
  day: ColumnType<string | Date, string, string>;
  metric: string;
  value: ColumnType<number | string, number, number | string>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

declare module '../db/schema.js' {
  interface Database {
    usage_days: UsageDaysTable;
    usage_counters: UsageCountersTable;
    usage_end_users: UsageEndUsersTable;
  }
}
