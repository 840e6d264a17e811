/**
 * 0011: least privilege across scopes (issue 9, items 3 and 21).
 *
 * - `assets:delete` is a new scope: deleting is no longer implied by `assets:write`. Credentials that
 *   held every scope before (secret keys minted with the default, OAuth clients created by them) get
 *   it, so an existing full-access integration keeps working; narrower keys do not (an uploader key
 *   must not erase what others stored).
 * - `api_keys.first_used_at`: when a key was first accepted. A key rolled without a grace period stays
 *   valid until its replacement is first used, so losing the roll's answer can never lock a user out.
 */
import { statements } from './helpers.js';

// The scope list as released before this migration (src/auth/scopes.ts then): a credential holding
// all of them was an "everything" credential.
const PREVIOUS_ALL = `ARRAY['apps:read','apps:write','keys:manage','assets:read','assets:write','jobs:read','jobs:write','webhooks:manage','audit:read','usage:read']::text[]`;

export const scopes = statements([
  `UPDATE api_keys SET scopes = array_append(scopes, 'assets:delete') WHERE scopes @> ${PREVIOUS_ALL} AND NOT scopes @> ARRAY['assets:delete']::text[]`,
  `UPDATE oauth_clients SET scopes = array_append(scopes, 'assets:delete') WHERE scopes @> ${PREVIOUS_ALL} AND NOT scopes @> ARRAY['assets:delete']::text[]`,
  `ALTER TABLE api_keys ADD COLUMN first_used_at timestamptz`,
]);
