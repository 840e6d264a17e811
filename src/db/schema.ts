/**
 * Table types for Kysely. Every tenant-owned table has `org_id`, and row-level security keeps a
 * tenant transaction (see `tenant.ts`) to its own org's rows even if a query forgets the filter.
 */
import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type Json<T> = ColumnType<T, string | T, string | T>;

export type UserRole = 'owner' | 'admin' | 'developer' | 'viewer';
export type KeyKind = 'secret' | 'publishable' | 'restricted';

export interface OrgsTable {
  id: string;
  name: string;
  created_at: Timestamp;
}

export interface UsersTable {
  id: string;
  org_id: string;
  email: string;
  password_hash: string;
  role: UserRole;
  created_at: Timestamp;
}

/** Per-app policy. Later capabilities add fields; unknown fields are refused at the API. */
export interface AppSettings {
  allowed_types?: string[];
  allow_browser_uploads?: boolean;
  max_upload_bytes?: number;
  require_authorized_urls?: boolean;
  retention_seconds?: number | null;
  /** Default lifetime of stored processing outputs, seconds (issue 14, item 5); unset = 24 h. A request's own TTL wins. */
  output_retention_seconds?: number;
  /** What metadata originals keep at ingest (src/media/image/metadata.ts); unset = `strip_all`. */
  metadata_policy?: 'keep' | 'strip_location' | 'strip_all';
  allow_svg?: boolean;
  strict_transforms?: boolean;
  /** Monthly quotas (src/usage/quota.ts); unset = unlimited. Bytes are received + sent. */
  quota_requests_per_month?: number | null;
  quota_exports_per_month?: number | null;
  quota_bytes_per_month?: number | null;
}

export interface AppsTable {
  id: string;
  org_id: string;
  name: string;
  settings: Json<AppSettings>;
  created_at: Timestamp;
}

export interface ApiKeysTable {
  id: string;
  org_id: string;
  app_id: string;
  kind: KeyKind;
  name: string;
  /** SHA-256 of the whole key, hex. The key itself is never stored. */
  hash: string;
  /** Non-secret display form, e.g. `obs_sk_4fQa…x9Zk`. */
  display: string;
  scopes: string[];
  allowed_ips: string[];
  allowed_origins: string[];
  /** Native app identifiers a publishable key may start licence sessions for (0020, issue 15). */
  allowed_app_ids: ColumnType<string[], string[] | undefined, string[]>;
  expires_at: NullableTimestamp;
  revoked_at: NullableTimestamp;
  rolled_to: string | null;
  grace_ends_at: NullableTimestamp;
  created_at: Timestamp;
  /** When the key was first accepted (0011); a grace-0 roll ends when the replacement is first used. */
  first_used_at: NullableTimestamp;
}

export interface AuditLogTable {
  id: Generated<string>;
  chain: string;
  chain_seq: string | number;
  org_id: string | null;
  at: Timestamp;
  actor: Json<Record<string, unknown>>;
  action: string;
  target: Json<Record<string, unknown>>;
  data: Json<Record<string, unknown>>;
  ip: string | null;
  request_id: string | null;
  prev_hash: string;
  hash: string;
}

export interface TenantKeysTable {
  id: string;
  org_id: string;
  wrapped: string;
  master_key_id: string;
  created_at: Timestamp;
}

export interface AssetsTable {
  id: string;
  org_id: string;
  app_id: string;
  kind: 'upload' | 'output';
  mime: string;
  ext: string;
  size: ColumnType<number, number, number>;
  sha256: string;
  width: number | null;
  height: number | null;
  /** ffprobe's facts of an uploaded video (media/video/probe.ts VideoFacts), null otherwise. */
  video: ColumnType<unknown, string | null | undefined, string | null>;
  filename: string | null;
  /** Labels set by the integrator (0021), at most 32. */
  tags: ColumnType<string[], string[] | undefined, string[]>;
  /** A small map of string keys to scalar values (0021). */
  metadata: ColumnType<Record<string, string | number | boolean>, string | undefined, string>;
  /** Under legal hold (0022): not deletable, not expired by retention. */
  legal_hold: ColumnType<boolean, boolean | undefined, boolean>;
  blob_key: string;
  /** Manifest of an asset stored as version-2 parts (migration 0016), null for one blob. */
  parts: ColumnType<unknown, string | null | undefined, string | null>;
  tenant_key_id: string;
  created_by: string | null;
  created_at: Timestamp;
  expires_at: NullableTimestamp;
  deleted_at: NullableTimestamp;
}

export interface UploadIntentsTable {
  id: string;
  org_id: string;
  app_id: string;
  staging_key: string;
  content_type: string;
  content_length: ColumnType<number, number, number>;
  filename: string | null;
  created_by: string | null;
  expires_at: Timestamp;
  used_at: NullableTimestamp;
  asset_id: string | null;
  created_at: Timestamp;
}

export interface UrlSigningKeysTable {
  kid: string;
  wrapped: string;
  master_key_id: string;
  created_at: Timestamp;
  retired_at: NullableTimestamp;
}

export interface Database {
  tenant_keys: TenantKeysTable;
  assets: AssetsTable;
  upload_intents: UploadIntentsTable;
  url_signing_keys: UrlSigningKeysTable;
  orgs: OrgsTable;
  users: UsersTable;
  apps: AppsTable;
  api_keys: ApiKeysTable;
  audit_log: AuditLogTable;
}
