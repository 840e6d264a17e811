/**
 * Table types for signed transform URLs and presets (migration 0007), merged into the Kysely
 * `Database` interface so db/schema.ts stays untouched.
 */
import type { ColumnType } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

/** Per-app HMAC keys for signed transform URLs. */
export interface TransformKeysTable {
  /** Key id, `tfk_<22 base62>`, carried in the URL. */
  id: string;
  org_id: string;
  app_id: string;
  /** 32 random bytes, wrapped by the master key (context `transform-key:<id>`). */
  wrapped: string;
  master_key_id: string;
  created_at: Timestamp;
}

/** Named operation lists (`preset:<name>` in transform URLs). */
export interface TransformPresetsTable {
  org_id: string;
  app_id: string;
  name: string;
  operations: string;
  created_at: Timestamp;
  updated_at: Timestamp;
}

declare module '../db/schema.js' {
  interface Database {
    transform_keys: TransformKeysTable;
    transform_presets: TransformPresetsTable;
  }
}
