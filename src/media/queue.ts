/**
 * A bounded work queue for image jobs: at most `concurrency` running, at most `maxQueued` waiting, and
 * an immediate 503 with `Retry-After` beyond that (load shedding, DESIGN.md "Abuse") instead of an
 * unbounded backlog of decoded images in memory.
 *
 * Sizing: libvips also has its own thread pool per image, `sharp.concurrency()`. On glibc without
 * jemalloc sharp defaults it to 1 to limit fragmentation (shared/DEPENDENCY-NOTES.md), so parallelism
 * comes from running several images at once: `concurrency` ≈ CPU cores is a good start. The caller
 * (main.ts) sets both; this module never touches global sharp state.
 */
import { AppError } from '../errors.js';

/** Options for {@link createWorkQueue}. */
export interface WorkQueueOptions {
  /** Tasks running at once (≥ 1). */
  concurrency: number;
  /** Tasks waiting beyond those (≥ 0); one more is refused with 503. */
  maxQueued: number;
  /** Seconds sent in `Retry-After` when full. Default 1. */
  retryAfterSeconds?: number;
}

/** A bounded queue. */
export interface WorkQueue {
  /**
   * Runs `fn` when a slot is free.
   * @throws AppError `ERR_UNAVAILABLE` (503, header `Retry-After`) at once when the queue is full;
   *   the same error (`details.reason: 'aborted'`) if `signal` aborts while waiting.
   */
  run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Tasks running now. */
  readonly active: number;
  /** Tasks waiting now. */
  readonly queued: number;
}

/** Creates a {@link WorkQueue}. @throws TypeError for a non-integer or out-of-range option. */
export function createWorkQueue(options: WorkQueueOptions): WorkQueue {
  const { concurrency, maxQueued } = options;
  const retryAfter = String(options.retryAfterSeconds ?? 1);
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new TypeError('queue concurrency must be an integer >= 1');
  if (!Number.isSafeInteger(maxQueued) || maxQueued < 0) throw new TypeError('queue maxQueued must be an integer >= 0');
  let active = 0;
  const waiting: Array<() => void> = [];

  const busy = (reason: string): AppError =>
    new AppError('ERR_UNAVAILABLE', 'The server is busy; retry shortly.', {
      headers: { 'Retry-After': retryAfter },
      details: { reason },
    });

  function release(): void {
    const next = waiting.shift();
    if (next) next();
    else active--;
  }

  async function run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw busy('aborted');
    if (active >= concurrency) {
      if (waiting.length >= maxQueued) throw busy('queue_full');
      await new Promise<void>((resolve, reject) => {
        // The slot is handed over directly by release(): `active` stays counted for this task.
        const start = (): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = (): void => {
          const i = waiting.indexOf(start);
          if (i >= 0) waiting.splice(i, 1);
          reject(busy('aborted'));
        };
        waiting.push(start);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    } else {
      active++;
    }
    try {
      return await fn();
    } finally {
      release();
    }
  }

  return {
    run,
    get active() {
      return active;
    },
    get queued() {
      return waiting.length;
    },
  };
}
