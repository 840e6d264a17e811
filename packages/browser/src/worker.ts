/**
 * The Web Worker that holds the engine (wasm-vips), so decoding and encoding never block the page.
 * It loads libvips once, then answers `process` messages one at a time with progress, the encoded
 * bytes (transferred, not copied) or a stable error code. It has no network code of its own: the
 * only fetches are the engine's own files, from the SDK's origin.
 */
import type VipsFactory from 'wasm-vips';
import { isAppError } from '../../../src/errors.js';
import { mediaLimits } from '../../../src/media/limits.js';
import { OPERATION_LIST } from '../../../src/media/image/operations/registry.js';
import { DEVICE_OPERATIONS, processOnDevice } from './engine.js';
import type { FromWorker, ToWorker } from './protocol.js';

interface WorkerScope {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
}
const scope = self as unknown as WorkerScope;

// A registry entry that says it runs on the device must have a device implementation.
const missing = OPERATION_LIST.filter((op) => op.device === true && !DEVICE_OPERATIONS[op.name]).map((op) => op.name);

const started = performance.now();
/** Milliseconds since the Unix epoch, comparable with the page's clock (`performance.timeOrigin` differs per context). */
const epoch = (at: number) => performance.timeOrigin + at;
let compiledAt = 0;

// Compiling libvips (5 MiB of WebAssembly) is the longest step of a cold start, so it starts first:
// streaming (compiled while it downloads), while wasm-vips' JavaScript loads (a dynamic import, so
// the fetch does not wait for it) and while the page starts its licence session.
const wasmUrl = new URL('vips.wasm', import.meta.url);
const compiled = WebAssembly.compileStreaming(fetch(wasmUrl, { credentials: 'same-origin' }))
  // A server that does not send application/wasm: compile the bytes instead (slower, still correct).
  .catch(async () => WebAssembly.compile(await (await fetch(wasmUrl, { credentials: 'same-origin' })).arrayBuffer()))
  .then((module) => {
    compiledAt = performance.now();
    return module;
  });

// AVIF (libheif) and JPEG XL are separate modules (3.8 MB and 2.2 MB): not loaded, so not offered.
const engine = import('wasm-vips').then(({ default: Vips }: { default: typeof VipsFactory }) =>
  Vips({
    dynamicLibraries: [],
    // Emscripten's hook: instantiate the module compiled above (its own loader would fetch it again).
    // The same module goes to libvips' threads, which instantiate it on the shared memory.
    instantiateWasm(imports, done) {
      compiled.then(
        async (module) => done(await WebAssembly.instantiate(module, imports), module),
        () => scope.postMessage({ type: 'failed', message: 'The image engine (vips.wasm) could not be loaded.' }),
      );
      return {};
    },
  }),
);
engine.then(
  (vips) => {
    if (missing.length > 0) scope.postMessage({ type: 'failed', message: `device operations without an implementation: ${missing.join(', ')}` });
    else {
      const now = performance.now();
      scope.postMessage({ type: 'ready', version: String(vips.version()), loadMs: Math.round(now - started), timings: { startedAt: epoch(started), compiledAt: epoch(compiledAt || now), readyAt: epoch(now) } });
    }
  },
  () => scope.postMessage({ type: 'failed', message: 'The image engine could not start (is the page cross-origin isolated?).' }),
);

// One run at a time: libvips in one worker is single-threaded here, and order keeps progress readable.
let queue: Promise<void> = Promise.resolve();

scope.onmessage = (event) => {
  const msg = event.data;
  if (msg.type !== 'process') return;
  queue = queue.then(async () => {
    try {
      const vips = await engine;
      const limits = mediaLimits(msg.limits as never);
      const out = await processOnDevice(vips, new Uint8Array(msg.bytes), msg.operations, limits, (progress) => scope.postMessage({ type: 'progress', id: msg.id, progress }));
      const data = out.data.slice().buffer as ArrayBuffer;
      scope.postMessage({ type: 'done', id: msg.id, data, info: out.info }, [data]);
    } catch (err) {
      if (isAppError(err)) scope.postMessage({ type: 'error', id: msg.id, code: err.code, message: err.publicMessage, ...(err.details ? { details: err.details as Record<string, unknown> } : {}) });
      else scope.postMessage({ type: 'error', id: msg.id, code: 'ERR_UNPROCESSABLE', message: 'The image could not be processed.' });
    }
  });
};
