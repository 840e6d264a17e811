/**
 * 0014: org erasure (issue 9, item 1; src/erasure/erasure.ts).
 *
 * `org_erasures` is the tombstone: one row per erased org, written in the transaction that shreds the
 * org's keys, and kept after every other row of the org is gone. It holds no personal data (no name,
 * no email): the org id, when, who asked (actor type and id) and how far the erasure got, so that an
 * interrupted erasure is finished by maintenance and a request for an erased org is refused clearly.
 * No foreign key: the org row it names is deleted.
 */
import { TENANT_ROLE, rls, statements } from './helpers.js';

export const erasure = statements([
  `CREATE TABLE org_erasures (
     org_id uuid PRIMARY KEY,
     requested_at timestamptz NOT NULL,
     requested_by jsonb NOT NULL,
     rows_deleted_at timestamptz,
     completed_at timestamptz,
     blobs_deleted bigint NOT NULL DEFAULT 0
   )`,
  `CREATE INDEX org_erasures_pending_idx ON org_erasures (requested_at) WHERE completed_at IS NULL`,
  // A tenant transaction may see its own org's tombstone (the keyring refuses to create a key for an
  // org being erased) and nothing else.
  ...rls('org_erasures'),
  `GRANT SELECT ON org_erasures TO ${TENANT_ROLE}`,
]);
