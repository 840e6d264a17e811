/** The messages between the page's SDK (index.ts) and its Web Worker (worker.ts). */
import type { DeviceProgress } from './engine.js';
import type { OutputFormat } from '../../../src/media/image/operations/types.js';

/** Facts about an export, handed to `onExport` with the blob (never a file name, never pixels). */
export interface ExportInfo {
  format: OutputFormat;
  mime: string;
  width: number;
  height: number;
  /** Bytes of the exported file. */
  size: number;
  frames: number;
  /** Milliseconds from the call to the export. */
  elapsedMs: number;
}

/**
 * When the engine's start-up steps ended, in milliseconds since the Unix epoch (comparable across the
 * page and its worker): the worker's script ran, libvips' WebAssembly was compiled, libvips (and its
 * thread pool) was ready.
 */
export interface EngineTimings {
  startedAt: number;
  compiledAt: number;
  readyAt: number;
}

/** Page → worker. */
export type ToWorker =
  | { type: 'process'; id: number; bytes: ArrayBuffer; operations: unknown; limits: Record<string, unknown> };

/** Worker → page. */
export type FromWorker =
  | { type: 'ready'; version: string; loadMs: number; timings?: EngineTimings }
  | { type: 'failed'; message: string }
  | { type: 'progress'; id: number; progress: DeviceProgress }
  | { type: 'done'; id: number; data: ArrayBuffer; info: Omit<ExportInfo, 'elapsedMs'> }
  | { type: 'error'; id: number; code: string; message: string; details?: Record<string, unknown> };
