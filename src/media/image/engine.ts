/**
 * Process-wide sharp (libvips) settings, applied once by the composition root (issue 12, item 6).
 * libvips' operation cache is bounded in bytes by `OBSCURA_IMAGE_CACHE_BYTES`; the per-image thread
 * count stays sharp's glibc default (1, to limit malloc fragmentation), parallelism coming from the
 * work queue (media/queue.ts).
 */
import sharp from 'sharp';

const MIB = 1024 * 1024;

/** Sets libvips' operation cache to at most `cacheBytes` (whole MiB; 0 turns it off). */
export function configureImageEngine(opts: { cacheBytes: number }): void {
  const mib = Math.floor(opts.cacheBytes / MIB);
  // `files: 0`: inputs are buffers, never paths, so no file handle is worth keeping open.
  sharp.cache(mib > 0 ? { memory: mib, files: 0, items: 1000 } : false);
}

/** Bytes libvips' operation cache holds now (for the `image_cache` part of `obscura_memory_bytes`). */
export function imageCacheBytes(): number {
  return sharp.cache().memory.current * MIB;
}

/** The cache's bound in bytes as libvips applies it (whole MiB). */
export function imageCacheLimitBytes(): number {
  return sharp.cache().memory.max * MIB;
}
