/** 0006: resumable (tus 1.0) uploads in progress. The bytes live encrypted in the blob store, one part per PATCH. */
import { TENANT_ROLE, rls, statements } from './helpers.js';

export const tus = statements([
  `CREATE TABLE uploads (
     id text PRIMARY KEY,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
     created_by text NOT NULL,
     upload_length bigint NOT NULL CHECK (upload_length >= 0),
     upload_offset bigint NOT NULL DEFAULT 0 CHECK (upload_offset >= 0 AND upload_offset <= upload_length),
     -- Client-supplied Upload-Metadata (untrusted: shown back, never used for a decision).
     metadata jsonb NOT NULL DEFAULT '{}',
     -- The committed encrypted parts in offset order: [{ "offset", "size", "key" }]. Only parts listed
     -- here are part of the upload; anything else under the upload's prefix is debris a sweep removes.
     parts jsonb NOT NULL DEFAULT '[]',
     created_at timestamptz NOT NULL DEFAULT now(),
     expires_at timestamptz NOT NULL,
     -- Lease of the node turning the parts into an asset (refreshed while it runs), so a crash during
     -- completion is taken over by the next request or sweep.
     completing_at timestamptz,
     completed_asset_id text
   )`,
  `CREATE INDEX uploads_org_idx ON uploads (org_id, created_at)`,
  `CREATE INDEX uploads_expiry_idx ON uploads (expires_at)`,
  ...rls('uploads'),
  `GRANT SELECT, INSERT, UPDATE, DELETE ON uploads TO ${TENANT_ROLE}`,
]);
