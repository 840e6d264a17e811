/**
 * The worker's engine half: the server's registry, limits and the libvips calls per operation
 * (engine.ts). Loaded by the worker's bootstrap (worker.ts) while libvips' WebAssembly compiles, so
 * parsing this code does not delay the compile. Answers `process` messages one at a time with
 * progress, the encoded bytes (transferred, not copied) or a stable error code.
 */
import type VipsFactory from 'wasm-vips';
import { isAppError } from '../../../src/errors.js';
import { DEFAULT_MEDIA_LIMITS, mediaLimits } from '../../../src/media/limits.js';
import { OPERATION_LIST } from '../../../src/media/image/operations/registry.js';
import { DEVICE_OPERATIONS, processOnDevice } from './engine.js';
import type { FromWorker, ToWorker } from './protocol.js';

type Vips = Awaited<ReturnType<typeof VipsFactory>>;

/** The worker's side of the protocol (worker.ts passes its global scope). */
export interface WorkerPort {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
}

/** Device operations of the registry without a device implementation (must be none). */
export function missingOperations(): string[] {
  return OPERATION_LIST.filter((op) => op.device === true && !DEVICE_OPERATIONS[op.name]).map((op) => op.name);
}

/**
 * One tiny edit through the real path (sniff, plan, JPEG decoder, resize, WebP encoder), so the
 * first real edit does not pay the one-time costs (WebAssembly functions compiled on first call,
 * libvips' operation classes) — about 300 ms on this machine. It runs after the engine reports
 * ready, while the person picks a photo; a run that arrives meanwhile waits only for its rest.
 */
async function warmUp(vips: Vips): Promise<void> {
  const black = vips.Image.black(32, 24, { bands: 3 });
  let tiny: Uint8Array;
  try {
    tiny = black.jpegsaveBuffer();
  } finally {
    // embind objects live on libvips' heap until deleted.
    black.delete();
  }
  await processOnDevice(vips, tiny, 'resize:width=16/format:webp', mediaLimits(DEFAULT_MEDIA_LIMITS), () => undefined);
}

/** Returns the message handler: runs one at a time on `engine` (libvips in one worker is single-threaded here, and order keeps progress readable), after a warm-up. */
export function serve(port: WorkerPort, engine: Promise<Vips>): (msg: ToWorker) => void {
  // Nothing depends on the warm-up: a failure only means the first edit pays the one-time costs.
  let queue: Promise<void> = engine.then(warmUp).catch(() => undefined);
  return (msg) => {
    if (msg.type !== 'process') return;
    queue = queue.then(async () => {
      try {
        const vips = await engine;
        const limits = mediaLimits(msg.limits as never);
        const out = await processOnDevice(vips, new Uint8Array(msg.bytes), msg.operations, limits, (progress) => port.postMessage({ type: 'progress', id: msg.id, progress }));
        const data = out.data.slice().buffer as ArrayBuffer;
        port.postMessage({ type: 'done', id: msg.id, data, info: out.info }, [data]);
      } catch (err) {
        if (isAppError(err)) port.postMessage({ type: 'error', id: msg.id, code: err.code, message: err.publicMessage, ...(err.details ? { details: err.details as Record<string, unknown> } : {}) });
        else port.postMessage({ type: 'error', id: msg.id, code: 'ERR_UNPROCESSABLE', message: 'The image could not be processed.' });
      }
    });
  };
}
