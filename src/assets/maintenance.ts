/**
 * Background housekeeping for stored media, run by processes with the `worker` role (or `all`):
 * retention (expired assets and their blobs), interrupted deletions, expired presigned uploads, and
 * stale temporary files of the fs store. Every pass is idempotent, so several workers may run it.
 */
import type { AssetDeps } from './assets.js';
import { sweepAssets } from './assets.js';
import { sweepUploadIntents } from './direct.js';

export interface Maintenance {
  /** Runs one pass now (also used by tests). */
  runOnce(): Promise<{ assets: number; intents: number; temp: number }>;
  stop(): void;
}

export function startMaintenance(deps: AssetDeps, opts: { intervalMs?: number; onError?: (err: unknown) => void; extra?: Array<() => Promise<unknown>> } = {}): Maintenance {
  let running = false;
  const runOnce = async () => {
    const assets = await sweepAssets(deps);
    const intents = await sweepUploadIntents(deps);
    const temp = deps.store.supports('sweep-temp') && deps.store.sweepTemp ? await deps.store.sweepTemp(3600_000) : 0;
    for (const task of opts.extra ?? []) await task();
    return { assets, intents, temp };
  };
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    runOnce()
      .catch((err) => opts.onError?.(err))
      .finally(() => {
        running = false;
      });
  }, opts.intervalMs ?? 60_000);
  timer.unref();
  return { runOnce, stop: () => clearInterval(timer) };
}
