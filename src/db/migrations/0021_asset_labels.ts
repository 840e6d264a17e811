/**
 * 0021: asset organisation (issue 14, item 6).
 *
 * - `assets.tags`: the labels an integrator attaches (searchable: `GET /v1/assets?tag=`), at most 32.
 * - `assets.metadata`: a small free-form map of string keys to scalar values (at most 50 keys, 8 KiB).
 *
 * Both are customer-chosen labels kept in the database like filenames (docs/security-model.md,
 * "Asset labels"): searchable, deleted with the asset and with the org, never secrets.
 */
import { statements } from './helpers.js';

export const assetLabels = statements([
  `ALTER TABLE assets ADD COLUMN tags text[] NOT NULL DEFAULT '{}'`,
  `ALTER TABLE assets ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'`,
  `CREATE INDEX assets_tags ON assets USING gin (tags)`,
]);
