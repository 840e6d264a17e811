/**
 * Wire types of the Obscura API v1, exactly as the API sends and accepts them (snake_case, as in the
 * OpenAPI document at `/docs/json`). Options that exist only in the SDK (callbacks, signals) are
 * camelCase.
 */

/** ISO 8601 date-time string. */
export type DateTime = string;

/** Scopes a credential can hold. */
export type Scope =
  | 'apps:read'
  | 'apps:write'
  | 'keys:manage'
  | 'assets:read'
  | 'assets:write'
  | 'assets:delete'
  | 'jobs:read'
  | 'jobs:write'
  | 'webhooks:manage'
  | 'audit:read'
  | 'usage:read'
  | 'licenses:session'
  | 'licenses:issue';

/** `GET /v1/whoami` */
export interface WhoAmI {
  org_id: string;
  app_id: string;
  credential_id: string;
  kind: 'secret' | 'publishable' | 'restricted' | 'token' | string;
  scopes: string[];
}

/** An app's policy. */
export interface AppSettings {
  allowed_types?: string[];
  allow_browser_uploads?: boolean;
  max_upload_bytes?: number;
  require_authorized_urls?: boolean;
  retention_seconds?: number | null;
  /** Default lifetime of stored outputs, seconds (60–604800; default 86400). */
  output_retention_seconds?: number;
  /** What uploaded images keep of their metadata (default `strip_all`, or the server's OBSCURA_METADATA_POLICY). */
  metadata_policy?: MetadataPolicy;
  allow_svg?: boolean;
  strict_transforms?: boolean;
  [setting: string]: unknown;
}

/** What uploaded images keep of their metadata: everything, all but the place, or only orientation and colour profile. */
export type MetadataPolicy = 'keep' | 'strip_location' | 'strip_all';

/** The data policy in force for an app's new assets, defaults resolved. */
export interface EffectivePolicy {
  metadata_policy: MetadataPolicy;
  /** Originals: seconds kept; null = until deleted. */
  retention_seconds: number | null;
  /** Stored outputs: default seconds kept. */
  output_retention_seconds: number;
}

export interface App {
  id: string;
  name: string;
  settings: AppSettings;
  /** The policy in force, defaults resolved (on every app answer, lists included). */
  effective: EffectivePolicy;
  created_at: DateTime;
}

export interface CreateAppInput {
  name: string;
  settings?: AppSettings;
}

export interface UpdateAppInput {
  name?: string;
  settings?: AppSettings;
}

export type KeyKind = 'secret' | 'publishable' | 'restricted';

export interface ApiKey {
  id: string;
  app_id: string;
  kind: KeyKind;
  name: string;
  /** Non-secret hint to recognise the key. */
  display: string;
  scopes: string[];
  allowed_ips: string[];
  allowed_origins: string[];
  /** Native app identifiers a publishable key may be used from (issue 15). */
  allowed_app_ids?: string[];
  expires_at: DateTime | null;
  revoked_at: DateTime | null;
  rolled_to: string | null;
  /** When a rolled key stops; null on a key rolled with grace 0: when its replacement is first used. */
  grace_ends_at: DateTime | null;
  /** When the key was first accepted; null if never used. */
  first_used_at: DateTime | null;
  created_at: DateTime;
}

export interface CreateKeyInput {
  kind: KeyKind;
  name?: string;
  scopes?: Scope[];
  expires_at?: DateTime | null;
  allowed_ips?: string[];
  allowed_origins?: string[];
  /** Publishable keys only: native app identifiers (on-device licence sessions without an Origin). */
  allowed_app_ids?: string[];
}

/** A new key: `secret` is shown once. */
export interface CreatedKey {
  key: ApiKey;
  secret: string;
}

export interface RolledKey extends CreatedKey {
  previous: ApiKey;
}

export interface OAuthClient {
  id: string;
  app_id: string;
  client_id: string;
  name: string;
  scopes: string[];
  revoked_at: DateTime | null;
  created_at: DateTime;
}

export interface CreatedOAuthClient {
  client: OAuthClient;
  client_id: string;
  /** Shown once. */
  client_secret: string;
}

export interface Asset {
  /** `ast_…` (≥ 128 random bits). */
  id: string;
  app_id: string;
  kind: 'upload' | 'output';
  /** Sniffed from the bytes. */
  content_type: string;
  size: number;
  /** SHA-256 of the plaintext, hex. */
  sha256: string;
  width: number | null;
  height: number | null;
  filename: string | null;
  /** Labels set with {@link AssetsResource.update}; filter with `tag`. */
  tags: string[];
  /** A small map of string keys to scalar values. */
  metadata: Record<string, string | number | boolean>;
  /** Under legal hold: cannot be deleted, does not expire while held. */
  legal_hold: boolean;
  created_at: DateTime;
  /** When retention removes it; null when kept forever or while under legal hold. */
  expires_at: DateTime | null;
}

/** What `PATCH /v1/assets/{id}` changes. */
export interface AssetLabelChange {
  /** Replaces the tags (at most 32; letters and digits, then also `_ . : / -`). */
  tags?: string[];
  /** JSON merge patch: a key set to null is removed, others are set (at most 50 keys, 8 KiB). */
  metadata?: Record<string, string | number | boolean | null>;
  /** Place (true) or release (false) a legal hold; needs `assets:delete` too. */
  legal_hold?: boolean;
}

/** The filters shared by the asset list and bulk deletion. */
export interface AssetFilterQuery {
  /** A media type (`image/png`) or a family (`image`, `video`). */
  type?: string | undefined;
  /** `upload` (alias `original`) or `output`. */
  kind?: 'upload' | 'original' | 'output' | undefined;
  /** Created at or after this instant (ISO 8601). */
  created_after?: DateTime | undefined;
  /** Created before this instant (ISO 8601). */
  created_before?: DateTime | undefined;
  /** Carries every one of these tags (comma-separated). */
  tag?: string | undefined;
  /** At least / at most this many bytes. */
  min_size?: number | undefined;
  max_size?: number | undefined;
  /** The filename contains this text (case-insensitive). */
  filename?: string | undefined;
}

/** `POST /v1/assets/bulk-delete`. */
export interface BulkDeleteInput extends AssetFilterQuery {
  /** Default true: answer what would be deleted and change nothing. */
  dry_run?: boolean;
  /** Required (true) when no filter is named. */
  all?: boolean;
  /** At most this many per call (1–1000, default 100). */
  limit?: number;
}

export interface BulkDeleteResult {
  dry_run: boolean;
  /** Live assets matching the filter (all of them). */
  matched: number;
  /** Deleted by this call (dry run: that this call would delete). */
  ids: string[];
  has_more: boolean;
  /** Matching assets under legal hold: never deleted, not counted in `matched`. */
  held: number;
}

export interface UploadIntent {
  id: string;
  method: 'PUT';
  /** PUT the bytes here with exactly `headers`. Single use. */
  url: string;
  headers: Record<string, string>;
  expires_at: DateTime;
  /** POST here after the PUT (S3), or null when the PUT completes the upload. */
  complete_url: string | null;
}

export interface CreateUploadUrlInput {
  content_type: string;
  content_length: number;
  filename?: string;
}

export interface SignedUrl {
  url: string;
  expires_at: DateTime;
}

export interface SignedUrlInput {
  ttl_seconds?: number;
  disposition?: 'inline' | 'attachment';
}

export interface AuditEntry {
  id: number;
  seq: number;
  at: DateTime;
  actor: Record<string, unknown>;
  action: string;
  target: Record<string, unknown>;
  data: Record<string, unknown>;
  ip: string | null;
  request_id: string | null;
  prev_hash: string;
  hash: string;
}

/** One page of a list: pass `next_cursor` back as `cursor` (same filters) for the next; `null` on the last. */
export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

/** The page parameters every list takes. */
export interface PageQuery {
  /** Items per page (1–500, default 100). */
  limit?: number | undefined;
  /** The previous page's `next_cursor`, unchanged. */
  cursor?: string | undefined;
}

/** Filters of `GET /v1/assets` (every one optional). */
export interface AssetListQuery extends PageQuery, AssetFilterQuery {}

export interface AuditPage extends Page<AuditEntry> {
  /** Deprecated: use `next_cursor`. */
  next_before: number | null;
}

export interface AuditQuery extends PageQuery {
  /** Deprecated: use `cursor`. */
  before?: number;
}

/**
 * One image operation in the JSON spelling (`{ op: 'resize', width: 400 }`), or a segment of the
 * string spelling (`'resize:width=400'`); see the API reference for the registry.
 */
export type Operation = ({ op: string } & Record<string, unknown>) | string;
