/**
 * A bounded, fair work queue for image work: at most `concurrency` tasks running, at most `maxQueued`
 * waiting, and an immediate 503 with `Retry-After` beyond that (load shedding, DESIGN.md "Abuse")
 * instead of an unbounded backlog of decoded images in memory.
 *
 * Fairness between tenants (issue 9, item 4: one org's heavy requests must not starve the others):
 * - each task names its tenant (`key`, the org id); a tenant may hold at most `perKeyConcurrency`
 *   running slots and `perKeyQueued` waiting places, so one org can never fill the queue;
 * - a freed slot goes to the next tenant in round-robin order among those waiting, not to whoever
 *   queued first, so a tenant with one request waits behind at most one task of each other tenant;
 * - a task declares the memory it will need (`memoryBytes`, an estimate from the image's size): the
 *   sum over running tasks stays within `memoryBudgetBytes` (a task larger than the whole budget runs
 *   alone rather than never);
 * - a task waits at most `maxWaitMs`, then gets 503 + `Retry-After` (`reason: 'wait_timeout'`).
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
  /** Running tasks per tenant key (default: `concurrency`, i.e. no per-tenant share). */
  perKeyConcurrency?: number;
  /** Waiting tasks per tenant key (default: `maxQueued`). */
  perKeyQueued?: number;
  /** Longest wait for a slot, ms (default: unbounded). */
  maxWaitMs?: number;
  /** Sum of `memoryBytes` of running tasks (default: unbounded). */
  memoryBudgetBytes?: number;
  /** Seconds sent in `Retry-After` when full. Default 1. */
  retryAfterSeconds?: number;
}

/** Per-task options of {@link WorkQueue.run}. */
export interface RunOptions {
  /** The tenant (org id) the task is fair-shared under. Default: one shared key. */
  key?: string | undefined;
  /** Estimated memory the task needs while it runs, bytes. Default 0. */
  memoryBytes?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** A running task's hold on the queue. */
export interface Slot {
  /**
   * Adds memory the task learned it needs only once running (e.g. an input fetched inside the slot).
   * @throws AppError `ERR_UNAVAILABLE` (503, `reason: 'memory_budget'`) when it does not fit the budget
   *   while other tasks run.
   */
  reserve(bytes: number): void;
}

/** A bounded queue. */
export interface WorkQueue {
  /**
   * Runs `fn` when a slot is free (and the tenant's share and the memory budget allow).
   * @throws AppError `ERR_UNAVAILABLE` (503, header `Retry-After`) at once when the queue or the
   *   tenant's places are full (`details.reason`: `queue_full`, `org_queue_full`), after `maxWaitMs`
   *   (`wait_timeout`), or if `signal` aborts while waiting (`aborted`).
   */
  run<T>(fn: (slot: Slot) => Promise<T>, opts?: RunOptions | AbortSignal): Promise<T>;
  /** Tasks running now. */
  readonly active: number;
  /** Tasks waiting now. */
  readonly queued: number;
  /** Estimated bytes held by running tasks. */
  readonly memoryInUse: number;
}

interface Waiter {
  key: string;
  memory: number;
  start: () => void;
}

const SHARED = '';

/** Creates a {@link WorkQueue}. @throws TypeError for a non-integer or out-of-range option. */
export function createWorkQueue(options: WorkQueueOptions): WorkQueue {
  const { concurrency, maxQueued } = options;
  const perKeyConcurrency = options.perKeyConcurrency ?? concurrency;
  const perKeyQueued = options.perKeyQueued ?? maxQueued;
  const budget = options.memoryBudgetBytes ?? Number.POSITIVE_INFINITY;
  const retryAfter = String(options.retryAfterSeconds ?? 1);
  for (const [name, v, min] of [['concurrency', concurrency, 1], ['maxQueued', maxQueued, 0], ['perKeyConcurrency', perKeyConcurrency, 1], ['perKeyQueued', perKeyQueued, 0]] as const) {
    if (!Number.isSafeInteger(v) || v < min) throw new TypeError(`queue ${name} must be an integer >= ${min}`);
  }
  let active = 0;
  let memoryInUse = 0;
  let queued = 0;
  const runningByKey = new Map<string, number>();
  /** Waiting tasks per tenant, in arrival order; `order` is the round-robin ring of tenants. */
  const waitingByKey = new Map<string, Waiter[]>();
  const order: string[] = [];

  const busy = (reason: string): AppError =>
    new AppError('ERR_UNAVAILABLE', reason === 'org_queue_full' ? 'Your organisation has too many images in processing; retry shortly.' : 'The server is busy; retry shortly.', {
      headers: { 'Retry-After': retryAfter },
      details: { reason },
    });

  const fits = (key: string, memory: number): boolean =>
    active < concurrency && (runningByKey.get(key) ?? 0) < perKeyConcurrency && (memoryInUse + memory <= budget || active === 0);

  function take(key: string, memory: number): void {
    active++;
    memoryInUse += memory;
    runningByKey.set(key, (runningByKey.get(key) ?? 0) + 1);
  }

  function release(key: string, memory: number): void {
    active--;
    memoryInUse -= memory;
    const n = (runningByKey.get(key) ?? 1) - 1;
    if (n === 0) runningByKey.delete(key);
    else runningByKey.set(key, n);
    dispatch();
  }

  /** Starts waiting tasks, one tenant at a time in round-robin order, while slots allow. */
  function dispatch(): void {
    let progressed = true;
    while (progressed && active < concurrency && order.length > 0) {
      progressed = false;
      for (let i = 0; i < order.length; i++) {
        const key = order[i]!;
        const list = waitingByKey.get(key)!;
        const head = list[0]!;
        if (!fits(key, head.memory)) continue;
        list.shift();
        queued--;
        // This tenant goes to the back of the ring (or leaves it when it has nobody left waiting).
        order.splice(i, 1);
        if (list.length > 0) order.push(key);
        else waitingByKey.delete(key);
        take(key, head.memory);
        head.start();
        progressed = true;
        break;
      }
    }
  }

  function remove(w: Waiter): boolean {
    const list = waitingByKey.get(w.key);
    const i = list ? list.indexOf(w) : -1;
    if (!list || i < 0) return false;
    list.splice(i, 1);
    queued--;
    if (list.length === 0) {
      waitingByKey.delete(w.key);
      order.splice(order.indexOf(w.key), 1);
    }
    return true;
  }

  async function run<T>(fn: (slot: Slot) => Promise<T>, opts?: RunOptions | AbortSignal): Promise<T> {
    const o: RunOptions = opts instanceof AbortSignal ? { signal: opts } : (opts ?? {});
    const key = o.key ?? SHARED;
    let memory = Math.max(0, o.memoryBytes ?? 0);
    const signal = o.signal;
    if (signal?.aborted) throw busy('aborted');
    // Nobody of this tenant is waiting and a slot fits: run now (others waiting are blocked by their
    // own share or by memory, or they would have been started).
    if (!waitingByKey.has(key) && fits(key, memory)) {
      take(key, memory);
    } else {
      if (queued >= maxQueued) throw busy('queue_full');
      if ((waitingByKey.get(key)?.length ?? 0) >= perKeyQueued) throw busy('org_queue_full');
      await new Promise<void>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        const w: Waiter = {
          key,
          memory,
          // The slot is taken by dispatch() before start(): `active` already counts this task.
          start: () => {
            if (timer) clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        const onAbort = (): void => {
          if (timer) clearTimeout(timer);
          if (remove(w)) reject(busy('aborted'));
        };
        if (options.maxWaitMs !== undefined) {
          timer = setTimeout(() => {
            signal?.removeEventListener('abort', onAbort);
            if (remove(w)) reject(busy('wait_timeout'));
          }, options.maxWaitMs);
        }
        let list = waitingByKey.get(key);
        if (!list) {
          list = [];
          waitingByKey.set(key, list);
          order.push(key);
        }
        list.push(w);
        queued++;
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
    const slot: Slot = {
      reserve(bytes: number): void {
        const b = Math.max(0, bytes);
        if (memoryInUse + b > budget && active > 1) throw busy('memory_budget');
        memoryInUse += b;
        memory += b;
      },
    };
    try {
      return await fn(slot);
    } finally {
      release(key, memory);
    }
  }

  return {
    run,
    get active() {
      return active;
    },
    get queued() {
      return queued;
    },
    get memoryInUse() {
      return memoryInUse;
    },
  };
}
