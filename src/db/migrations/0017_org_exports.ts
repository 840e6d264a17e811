/**
 * 0017: tenant exports (issue 14, item 4). One row per export an org asked for: its state, the
 * encrypted archive's store key once it is written, and when it expires. At most one export per org
 * is queued or running at a time (the partial unique index), so two concurrent requests cannot both
 * start one. Rows cascade with the org (erasure); their blobs live under `orgs/<org>/exports/`, which
 * erasure removes with the org's other objects.
 */
import { TENANT_ROLE, rls, statements } from './helpers.js';

export const orgExports = statements([
  `CREATE TABLE org_exports (
     id text PRIMARY KEY,
     org_id uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
     status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'expired')),
     -- Who asked (type and id only), for the status answer and the audit trail.
     requested_by jsonb NOT NULL,
     blob_key text,
     tenant_key_id text,
     -- Plaintext bytes of the archive and their SHA-256 (the recipient can check what they got).
     size bigint,
     sha256 text,
     -- Counts per part of the archive (records per kind, media files).
     counts jsonb,
     attempts integer NOT NULL DEFAULT 0,
     error_code text,
     error_message text,
     created_at timestamptz NOT NULL DEFAULT now(),
     started_at timestamptz,
     finished_at timestamptz,
     expires_at timestamptz,
     CHECK ((status = 'succeeded') = (blob_key IS NOT NULL AND expires_at IS NOT NULL))
   )`,
  `CREATE INDEX org_exports_org_idx ON org_exports (org_id, created_at)`,
  `CREATE UNIQUE INDEX org_exports_one_active ON org_exports (org_id) WHERE status IN ('queued', 'running')`,
  `CREATE INDEX org_exports_expiry_idx ON org_exports (expires_at) WHERE status = 'succeeded'`,
  ...rls('org_exports'),
  `GRANT SELECT, INSERT, UPDATE, DELETE ON org_exports TO ${TENANT_ROLE}`,
]);
