/**
 * The Web Worker that holds the engine (wasm-vips), so decoding and encoding never block the page.
 * This file is the worker's bootstrap and is kept small: the first thing it does is start compiling
 * libvips' WebAssembly (the longest step of a cold start), then it loads wasm-vips' JavaScript and
 * the engine half (worker-engine.ts: the registry, limits and libvips calls) in parallel with the
 * compile. It has no network code of its own: the only fetches are the engine's own files, from the
 * SDK's origin.
 */
import type VipsFactory from 'wasm-vips';
import type * as WorkerEngine from './worker-engine.js';
import type { FromWorker, ToWorker } from './protocol.js';

interface WorkerScope {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
}
const scope = self as unknown as WorkerScope;

const started = performance.now();
/** Milliseconds since the Unix epoch, comparable with the page's clock (`performance.timeOrigin` differs per context). */
const epoch = (at: number) => performance.timeOrigin + at;
let compiledAt = 0;

// Streaming: compiled while it downloads, while the page starts its licence session.
const wasmUrl = new URL('vips.wasm', import.meta.url);
const compiled = WebAssembly.compileStreaming(fetch(wasmUrl, { credentials: 'same-origin' }))
  // A server that does not send application/wasm: compile the bytes instead (slower, still correct).
  .catch(async () => WebAssembly.compile(await (await fetch(wasmUrl, { credentials: 'same-origin' })).arrayBuffer()))
  .then((module) => {
    compiledAt = performance.now();
    return module;
  });

// Runs that arrive before the engine half is loaded wait here, in order.
const early: ToWorker[] = [];
scope.onmessage = (event) => void early.push(event.data);

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
// Built as its own file (scripts/build-browser.js), so this bootstrap does not wait for it to parse.
const half = import('./worker-engine.js') as Promise<typeof WorkerEngine>;

half.then((mod) => {
  const handle = mod.serve(scope, engine);
  scope.onmessage = (event) => handle(event.data);
  for (const msg of early.splice(0)) handle(msg);
}, () => scope.postMessage({ type: 'failed', message: 'The image engine could not be loaded.' }));

Promise.all([engine, half]).then(
  ([vips, mod]) => {
    // A registry entry that says it runs on the device must have a device implementation.
    const missing = mod.missingOperations();
    if (missing.length > 0) scope.postMessage({ type: 'failed', message: `device operations without an implementation: ${missing.join(', ')}` });
    else {
      const now = performance.now();
      scope.postMessage({ type: 'ready', version: String(vips.version()), loadMs: Math.round(now - started), timings: { startedAt: epoch(started), compiledAt: epoch(compiledAt || now), readyAt: epoch(now) } });
    }
  },
  () => scope.postMessage({ type: 'failed', message: 'The image engine could not start (is the page cross-origin isolated?).' }),
);
