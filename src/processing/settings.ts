/** The processing section of the configuration (issue 10, item 8): sync processing, its queue and remote inputs. */
import { availableParallelism, totalmem } from 'node:os';
import { defineSection, int, ports } from '../settings.js';

export interface ProcessingSettings {
  /** Largest raw request body of `POST /v1/process`; bigger inputs go through uploads and jobs. */
  readonly maxBodyBytes: number;
  /** Images processed at once per process for `/v1/process` and transform URLs. */
  readonly concurrency: number;
  /** Requests allowed to wait for a slot; beyond that 503 + Retry-After. Bounds memory. */
  readonly maxQueued: number;
  /** Slots one org may hold at once: one tenant's heavy requests leave the rest to the others. */
  readonly concurrencyPerOrg: number;
  /** Requests of one org allowed to wait. */
  readonly maxQueuedPerOrg: number;
  /** Longest a request waits for a slot before 503 + Retry-After. */
  readonly maxWaitMs: number;
  /** Estimated decoded-image memory all running requests may hold together, bytes. */
  readonly memoryBudgetBytes: number;
  /** Most work one request may ask for, in cost units (src/media/limits.ts). */
  readonly maxCost: number;
  /** Time limit of one remote fetch: input, presigned PUT. */
  readonly remoteTimeoutMs: number;
  /**
   * Ports remote inputs, presigned PUTs and webhooks may use (80 only matters with the unsafe
   * plain-http switch). Security: every port added is one more service on public hosts that a key
   * holder can make this server talk to.
   */
  readonly remoteAllowedPorts: readonly number[];
  /** Bytes libvips' operation cache may hold (`OBSCURA_IMAGE_CACHE_BYTES`, whole MiB, default 0: off). */
  readonly imageCacheBytes: number;
}

const num = (v: unknown): number => v as number;

export const PROCESSING_SETTINGS = defineSection<ProcessingSettings>({
  maxBodyBytes: int({ env: 'OBSCURA_PROCESS_MAX_BODY_BYTES', doc: 'Largest raw request body of POST /v1/process.', default: 10 * 1000 * 1000, min: 1024, max: 1024 ** 3 }),
  concurrency: int({ env: 'OBSCURA_PROCESS_CONCURRENCY', doc: 'Images processed at once per process.', default: () => availableParallelism(), defaultText: 'CPU count', min: 1, max: 1024 }),
  maxQueued: int({ env: 'OBSCURA_PROCESS_MAX_QUEUED', doc: 'Requests allowed to wait for a slot.', default: (s) => 4 * num(s.concurrency), defaultText: '4 × concurrency', min: 0, max: 100_000 }),
  concurrencyPerOrg: int({ env: 'OBSCURA_PROCESS_CONCURRENCY_PER_ORG', doc: 'Slots one org may hold at once.', default: (s) => Math.max(1, Math.floor(num(s.concurrency) / 2)), defaultText: 'half the concurrency, at least 1', min: 1, max: 1024 }),
  maxQueuedPerOrg: int({ env: 'OBSCURA_PROCESS_MAX_QUEUED_PER_ORG', doc: 'Requests of one org allowed to wait.', default: (s) => Math.max(1, Math.floor(num(s.maxQueued) / 2)), defaultText: 'half the queue, at least 1', min: 0, max: 100_000 }),
  maxWaitMs: int({ env: 'OBSCURA_PROCESS_MAX_WAIT_MS', doc: 'Longest a request waits for a slot before 503.', default: 10_000, min: 100, max: 600_000 }),
  memoryBudgetBytes: int({ env: 'OBSCURA_PROCESS_MEMORY_BUDGET_BYTES', doc: 'Estimated decoded-image memory all running requests may hold together.', default: () => Math.max(256 * 1024 ** 2, Math.floor(totalmem() / 2)), defaultText: 'half the memory, at least 256 MiB', min: 16 * 1024 ** 2, max: 1024 ** 4 }),
  maxCost: int({ env: 'OBSCURA_PROCESS_MAX_COST', doc: 'Most work one request may ask for; over it 422 ERR_TOO_EXPENSIVE.', default: 1500, min: 1, max: 1_000_000 }),
  remoteTimeoutMs: int({ env: 'OBSCURA_REMOTE_TIMEOUT_MS', doc: 'Time limit of one remote fetch.', default: 15_000, min: 100, max: 600_000 }),
  remoteAllowedPorts: ports({ env: 'OBSCURA_REMOTE_ALLOWED_PORTS', doc: 'Ports remote inputs, presigned PUTs and webhooks may use.', default: [443, 80] }),
  // sharp's default keeps up to 50 MB of libvips results per process; every request here decodes a
  // fresh buffer, so it held nothing useful (0 bytes held after repeated transforms): off unless asked.
  imageCacheBytes: int({ env: 'OBSCURA_IMAGE_CACHE_BYTES', doc: "Bytes libvips' operation cache may hold (whole MiB; 0 = off).", default: 0, min: 0, max: 16 * 1024 ** 3 }),
});
