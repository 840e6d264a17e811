/**
 * Housekeeping of stored media: retention (expired assets and their blobs), interrupted deletions,
 * expired presigned uploads, and stale temporary files of the fs store. Every pass is idempotent.
 * It runs as part of the fleet's one maintenance job (src/jobs/schedules.ts, composed in main.ts).
 */
import type { AssetDeps } from './assets.js';
import { sweepAssets } from './assets.js';
import { sweepUploadIntents } from './direct.js';

/** What one pass over stored media removed. */
export interface MediaMaintenanceReport {
  assets: number;
  intents: number;
  temp: number;
}

/** One pass: retention and interrupted deletions, expired presigned uploads, stale temporary files. */
export async function maintainMedia(deps: AssetDeps): Promise<MediaMaintenanceReport> {
  const assets = await sweepAssets(deps);
  const intents = await sweepUploadIntents(deps);
  const temp = deps.store.supports('sweep-temp') && deps.store.sweepTemp ? await deps.store.sweepTemp(3600_000) : 0;
  return { assets, intents, temp };
}
