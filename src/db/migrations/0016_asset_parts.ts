/**
 * 0016: one-pass uploads (issue 12, item 2; docs/encryption-format.md "Version 2").
 *
 * - `assets.parts`: the manifest of an asset stored as a sequence of encrypted parts (a tus upload's
 *   parts become the asset as they are, so completion writes no blob): an ordered JSON array of
 *   `{ offset, size, id, key }` tiling `[0, size)`. NULL for an asset stored as one blob (`blob_key`);
 *   when set, `blob_key` is the prefix every part lives under (`orgs/<org>/parts/<asset>/`).
 * - an index on `uploads.target_asset_id`: new uploads fix their asset id at creation and write their
 *   parts under it, and the orphan sweep asks which unfinished upload owns a part prefix.
 */
import { statements } from './helpers.js';

export const assetParts = statements([
  `ALTER TABLE assets ADD COLUMN parts jsonb CHECK (parts IS NULL OR jsonb_typeof(parts) = 'array')`,
  `CREATE INDEX uploads_target_asset_idx ON uploads (target_asset_id) WHERE target_asset_id IS NOT NULL`,
]);
