/**
 * 0010: a tus upload records the id of the asset it becomes *before* completion starts (issue 9,
 * item 18). A completion that a crash interrupted is then finished by that identity alone — never by
 * looking for an asset with the same content, which could adopt another user's identical upload.
 */
import { statements } from './helpers.js';

export const uploadIdentity = statements([`ALTER TABLE uploads ADD COLUMN target_asset_id text CHECK (target_asset_id ~ '^ast_[0-9A-Za-z]{22}$')`]);
