/** 0002: tenant keys (crypto-shredding), assets, uploads, URL signing keys. */
import { TENANT_ROLE, rls, statements } from './helpers.js';

export const assets = statements([
  // One random 256-bit key per org, wrapped by the master key. Deleting an org's rows here makes all
  // its blobs undecryptable (crypto-shredding).
  `CREATE TABLE tenant_keys (
     id text PRIMARY KEY,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     wrapped text NOT NULL,
     master_key_id text NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now()
   )`,
  `CREATE INDEX tenant_keys_org_idx ON tenant_keys (org_id, created_at)`,
  `CREATE TABLE assets (
     id text PRIMARY KEY,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     kind text NOT NULL CHECK (kind IN ('upload', 'output')),
     mime text NOT NULL,
     ext text NOT NULL,
     size bigint NOT NULL,
     sha256 text NOT NULL,
     width integer,
     height integer,
     filename text,
     blob_key text NOT NULL,
     tenant_key_id text NOT NULL,
     created_by text,
     created_at timestamptz NOT NULL DEFAULT now(),
     expires_at timestamptz,
     -- Tombstone: set in the deleting transaction; the blob goes next and the row last, so a crash in
     -- between leaves a row the sweeper finishes, never an orphaned blob.
     deleted_at timestamptz
   )`,
  `CREATE INDEX assets_org_idx ON assets (org_id, created_at)`,
  `CREATE INDEX assets_expiry_idx ON assets (expires_at) WHERE expires_at IS NOT NULL`,
  `CREATE INDEX assets_deleted_idx ON assets (deleted_at) WHERE deleted_at IS NOT NULL`,
  // Presigned direct uploads: single use, bound to size and type, short-lived.
  `CREATE TABLE upload_intents (
     id text PRIMARY KEY,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     staging_key text NOT NULL,
     content_type text NOT NULL,
     content_length bigint NOT NULL,
     filename text,
     created_by text,
     expires_at timestamptz NOT NULL,
     used_at timestamptz,
     asset_id text,
     created_at timestamptz NOT NULL DEFAULT now()
   )`,
  // Server-wide HMAC keys for signed URLs (no org), wrapped by the master key.
  `CREATE TABLE url_signing_keys (
     kid text PRIMARY KEY,
     wrapped text NOT NULL,
     master_key_id text NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     retired_at timestamptz
   )`,
  ...rls('tenant_keys'),
  ...rls('assets'),
  ...rls('upload_intents'),
  `GRANT SELECT, INSERT ON tenant_keys TO ${TENANT_ROLE}`,
  `GRANT SELECT, INSERT, UPDATE, DELETE ON assets, upload_intents TO ${TENANT_ROLE}`,
]);
