/**
 * 0022: legal hold (issue 14, item 5). `assets.legal_hold`: while true the asset cannot be deleted
 * (single or bulk) and retention does not expire it; its `expires_at` is kept and applies again once
 * the hold is released.
 */
import { statements } from './helpers.js';

export const legalHold = statements([`ALTER TABLE assets ADD COLUMN legal_hold boolean NOT NULL DEFAULT false`]);
