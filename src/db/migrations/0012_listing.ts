/**
 * 0012: indexes for keyset listing (issue 9, item 10). `GET /v1/assets` and `GET /v1/jobs` page by
 * `(created_at, id)` within an org, newest first; these indexes serve exactly that order (scanned
 * backwards) so a page costs one index range however deep the cursor is. Live assets only, as listed.
 */
import { statements } from './helpers.js';

export const listing = statements([
  `CREATE INDEX assets_org_list_idx ON assets (org_id, created_at, id) WHERE deleted_at IS NULL`,
  `CREATE INDEX jobs_org_list_idx ON jobs (org_id, created_at, id)`,
]);
