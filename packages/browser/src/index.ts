/**
 * Obscura on the device: edits images in the browser, in a Web Worker running libvips (wasm-vips),
 * with the server's operation grammar, schemas, order and limits. Media never leaves the device: the
 * only requests are the licence session (`POST /v1/licenses/session`) and batched counts
 * (`POST /v1/telemetry`), and results go only to the caller's `onExport(blob, info)`.
 *
 * ```ts
 * const device = await ObscuraDevice.start({ baseUrl, publishableKey, keys: [PINNED_JWK], onExport });
 * await device.process(file, 'resize:width=1200/format:webp');
 * ```
 *
 * Security: the publishable key is held in this object's memory only (never written to storage);
 * every run first re-verifies the licence against the pinned keys and `location.origin`; the SDK
 * never fetches a URL named by content, and decoders are chosen by sniffed bytes (docs/device.md).
 */
import type { JWK } from 'jose';
import { LicenceError, LicenceRequestError, sendTelemetry, startLicenceSession, verifyLicence, type Licence, type TelemetryEvent } from '../../../sdk/src/licence.js';
import { DEFAULT_MEDIA_LIMITS, mediaLimits, type MediaLimits } from '../../../src/media/limits.js';
import type { DeviceProgress } from './engine.js';
import type { EngineTimings, ExportInfo, FromWorker, ToWorker } from './protocol.js';

export type { ExportInfo, DeviceProgress };

/**
 * Where a cold start spent its time, in milliseconds after the page's navigation started
 * (`performance.now()`): `start()` was called, the licence was verified, the engine's worker ran its
 * script, libvips' WebAssembly was compiled, libvips and its threads were ready, `start()` resolved.
 */
export interface DeviceStartup {
  startMs: number;
  licenceMs: number;
  workerStartedMs: number;
  wasmCompiledMs: number;
  engineReadyMs: number;
  readyMs: number;
}

type EngineReady = { version: string; loadMs: number; timings?: EngineTimings };

/** Starts the engine's worker; `ready` settles when libvips is loaded (or could not be). */
function spawnEngine(engineUrl: URL): { href: string; worker: Worker; ready: Promise<EngineReady> } {
  const worker = new Worker(new URL('obscura-device-worker.js', engineUrl), { type: 'module', name: 'obscura-device' });
  const ready = new Promise<EngineReady>((resolve, reject) => {
    worker.addEventListener('message', (event: MessageEvent<FromWorker>) => {
      const msg = event.data;
      if (msg.type === 'ready') resolve({ version: msg.version, loadMs: msg.loadMs, ...(msg.timings ? { timings: msg.timings } : {}) });
      else if (msg.type === 'failed') reject(new DeviceError('ERR_UNAVAILABLE', msg.message));
    });
    worker.addEventListener('error', () => reject(new DeviceError('ERR_UNAVAILABLE', 'The image engine could not start (the page must be cross-origin isolated: COOP same-origin, COEP require-corp).')));
  });
  ready.catch(() => undefined);
  return { href: engineUrl.href, worker, ready };
}

// An engine started by `ObscuraDevice.preload()`, adopted by the next `start()` for the same URL.
let preloaded: ReturnType<typeof spawnEngine> | undefined;

/** A refusal, with the same stable `code` the server uses (`ERR_VALIDATION`, `ERR_IMAGE_TOO_LARGE`, `ERR_LICENSE_*`, …). */
export class DeviceError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'DeviceError';
  }
}

/** Options of {@link ObscuraDevice.start}. Give `publishableKey` (a session) or `licence` (an offline file). */
export interface DeviceOptions {
  /** The Obscura server: licence sessions and telemetry only. Needed with `publishableKey`, and for telemetry. */
  baseUrl?: string;
  /** A publishable key (`obs_pk_…`) pinned to this page's origin. Held in memory only. */
  publishableKey?: string;
  /** An offline licence file's text (enterprise): verified here, no network needed. */
  licence?: string;
  /** The licence public keys this page ships with (JWKs with `kid` and `alg`). A key fetched at run time is never trusted. */
  keys: readonly JWK[];
  /** Receives every result. The SDK writes nowhere itself. */
  onExport: (blob: Blob, info: ExportInfo) => void | Promise<void>;
  /** Progress of each run (stage and percent). */
  onProgress?: (progress: DeviceProgress) => void;
  /** Your own end-user id, counted as a keyed hash for monthly active users (never sent otherwise). */
  userId?: string;
  /** Limits (default: the server's defaults). */
  limits?: Partial<MediaLimits>;
  /** Where `obscura-device-worker.js`, `vips-es6.js` and `vips.wasm` are served (default: beside this module). */
  engineUrl?: string | URL;
}

const SESSION_RETRY_MS = 30_000;
const TELEMETRY_DELAY_MS = 1_000;

function asDeviceError(err: unknown): DeviceError {
  if (err instanceof DeviceError) return err;
  if (err instanceof LicenceError) return new DeviceError(err.code, err.message);
  if (err instanceof LicenceRequestError) return new DeviceError(err.code, err.detail, { status: err.status });
  // A network failure, or an answer the browser withheld: the server's CORS answers only origins a
  // publishable key allows, so a page on another origin cannot read its 403 either.
  return new DeviceError('ERR_UNAVAILABLE', 'The licence service could not be reached, or did not let this origin read its answer (is this origin one the publishable key allows?).');
}

/** Bytes of a File, Blob or ImageBitmap (a bitmap is encoded losslessly as PNG first). */
async function bytesOf(input: Blob | ImageBitmap, maxBytes: number): Promise<ArrayBuffer> {
  if (typeof ImageBitmap !== 'undefined' && input instanceof ImageBitmap) {
    const canvas = new OffscreenCanvas(input.width, input.height);
    const context = canvas.getContext('2d');
    if (!context) throw new DeviceError('ERR_UNPROCESSABLE', 'The bitmap could not be read.');
    context.drawImage(input, 0, 0);
    return bytesOf(await canvas.convertToBlob({ type: 'image/png' }), maxBytes);
  }
  if (!(input instanceof Blob)) throw new DeviceError('ERR_VALIDATION', 'Give a File, a Blob or an ImageBitmap.');
  // Refused before a byte is read (the server's 413 for the same size).
  if (input.size > maxBytes) throw new DeviceError('ERR_PAYLOAD_TOO_LARGE', 'The file is too large.', { maxBytes });
  return input.arrayBuffer();
}

/** The on-device processor. Start it with {@link ObscuraDevice.start}; `close()` when done. */
export class ObscuraDevice {
  readonly #options: DeviceOptions;
  readonly #limits: Readonly<MediaLimits>;
  readonly #engineUrl: URL;
  readonly #sessionId = crypto.randomUUID();
  #publishableKey: string | undefined;
  #licence = '';
  // Set by start() before the device is handed out; until then telemetry is off.
  #claims: Licence = { telemetry: false } as Licence;
  #worker: Worker | undefined;
  #ready: Promise<EngineReady> | undefined;
  #startup: DeviceStartup | undefined;
  #next = 1;
  readonly #pending = new Map<number, { resolve: (m: FromWorker) => void; progress?: (p: DeviceProgress) => void }>();
  #refresh: ReturnType<typeof setTimeout> | undefined;
  #events: TelemetryEvent[] = [];
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  private constructor(options: DeviceOptions) {
    this.#options = options;
    this.#limits = mediaLimits({ ...DEFAULT_MEDIA_LIMITS, ...options.limits, allowSvg: false });
    this.#engineUrl = new URL(options.engineUrl ?? new URL('./', import.meta.url));
    this.#publishableKey = options.publishableKey;
  }

  /**
   * Validates the licence (a new session from the publishable key, or the offline file) while the
   * engine loads, and resolves once both are done. Refuses (rejects with `DeviceError`, the engine
   * stopped) on any licence defect: `ERR_LICENSE_MALFORMED`, `ERR_LICENSE_SIGNATURE`,
   * `ERR_LICENSE_EXPIRED`, `ERR_LICENSE_ORIGIN`, `ERR_LICENSE_FEATURE`, or the server's refusal
   * (`ERR_ORIGIN_NOT_ALLOWED`, `ERR_KEY_REVOKED`, …); nothing is processed without a licence.
   */
  /**
   * Starts loading the engine now (libvips' WebAssembly is the longest part of a cold start), so a
   * page can call this first and `start()` once it has its key or licence: `start()` adopts the
   * engine. Loading processes nothing and sends nothing but the engine's own files' requests.
   * @param engineUrl where the engine's files are served (default: beside this module), as `DeviceOptions.engineUrl`.
   */
  static preload(engineUrl?: string | URL): void {
    const url = new URL(engineUrl ?? new URL('./', import.meta.url));
    if (preloaded?.href === url.href) return;
    preloaded?.worker.terminate();
    preloaded = spawnEngine(url);
  }

  static async start(options: DeviceOptions): Promise<ObscuraDevice> {
    const startMs = performance.now();
    if (typeof options.onExport !== 'function') throw new DeviceError('ERR_VALIDATION', 'onExport(blob, info) is required: results are only handed to it.');
    if (!options.keys?.length) throw new DeviceError('ERR_VALIDATION', 'keys: give the licence public keys this page ships with.');
    if (options.publishableKey === undefined && options.licence === undefined) throw new DeviceError('ERR_VALIDATION', 'Give publishableKey (with baseUrl) or an offline licence.');
    if (options.publishableKey !== undefined && !options.baseUrl) throw new DeviceError('ERR_VALIDATION', 'baseUrl is required with a publishable key.');
    const device = new ObscuraDevice(options);
    // The engine loads (a second or so) while the licence is checked: loading processes nothing.
    const engine = device.#engine();
    engine.catch(() => undefined);
    let refreshAfter: Date | undefined;
    try {
      if (options.publishableKey !== undefined) {
        const session = await startLicenceSession({ baseUrl: options.baseUrl!, publishableKey: options.publishableKey, keys: options.keys });
        device.#licence = session.licence;
        device.#claims = session.claims!;
        refreshAfter = session.refreshAfter;
      } else {
        device.#licence = options.licence!;
        device.#claims = await verifyLicence(device.#licence, { keys: options.keys, origin: location.origin, features: ['image'] });
      }
    } catch (err) {
      await device.close();
      throw asDeviceError(err);
    }
    const licenceMs = performance.now();
    if (refreshAfter) device.#scheduleRefresh(refreshAfter.getTime() - Date.now());
    let ready: EngineReady;
    try {
      ready = await engine;
    } catch (err) {
      await device.close();
      throw err;
    }
    const page = (epochMs: number | undefined) => (epochMs === undefined ? NaN : Math.round(epochMs - performance.timeOrigin));
    device.#startup = {
      startMs: Math.round(startMs),
      licenceMs: Math.round(licenceMs),
      workerStartedMs: page(ready.timings?.startedAt),
      wasmCompiledMs: page(ready.timings?.compiledAt),
      engineReadyMs: page(ready.timings?.readyAt),
      readyMs: Math.round(performance.now()),
    };
    device.#record({ type: 'engine_load', session_id: device.#sessionId, platform: 'web', engine_version: `libvips-${ready.version}`, ...(options.userId !== undefined ? { user_id: options.userId } : {}) });
    return device;
  }

  /** Where the start-up spent its time (see {@link DeviceStartup}). */
  get startup(): Readonly<DeviceStartup> | undefined {
    return this.#startup;
  }

  /** The verified licence this device runs under. */
  get licence(): Readonly<Licence> {
    return this.#claims;
  }

  /**
   * Processes one image on the device and hands the result to `onExport`.
   * @param operations the server's operations, either spelling (`resize:width=400/format:webp`).
   * @returns the export's facts (also given to `onExport`).
   * @throws DeviceError with the server's codes; operations the device cannot run are refused
   *   with `ERR_VALIDATION` and `details.reason: not_on_device`.
   */
  async process(input: File | Blob | ImageBitmap, operations: string | readonly unknown[]): Promise<ExportInfo> {
    if (this.#closed) throw new DeviceError('ERR_VALIDATION', 'This device processor is closed.');
    const started = performance.now();
    try {
      // Every run: the licence's signature, expiry and origin, against the pinned keys.
      this.#claims = await verifyLicence(this.#licence, { keys: this.#options.keys, origin: location.origin, features: ['image'] });
    } catch (err) {
      throw asDeviceError(err);
    }
    const bytes = await bytesOf(input, this.#limits.maxInputBytes);
    await this.#engine();
    const id = this.#next++;
    const reply = await this.#run({ type: 'process', id, bytes, operations, limits: { ...this.#limits } }, [bytes]);
    if (reply.type === 'error') throw new DeviceError(reply.code, reply.message, reply.details);
    if (reply.type !== 'done') throw new DeviceError('ERR_UNPROCESSABLE', 'The image could not be processed.');
    const info: ExportInfo = { ...reply.info, elapsedMs: Math.round(performance.now() - started) };
    this.#record({ type: 'export', session_id: this.#sessionId, media_type: info.mime, width: info.width, height: info.height });
    await this.#options.onExport(new Blob([reply.data], { type: info.mime }), info);
    return info;
  }

  /** Sends the counted events now (also done a second after each export, and by `close()`). */
  async flushTelemetry(): Promise<void> {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (!this.#claims.telemetry || !this.#options.baseUrl || this.#events.length === 0) {
      this.#events = [];
      return;
    }
    const events = this.#events.splice(0, 100);
    try {
      await sendTelemetry({ baseUrl: this.#options.baseUrl, licence: this.#licence, events });
    } catch {
      // Counts are best effort: processing never depends on the network (offline licences).
    }
    if (this.#events.length) await this.flushTelemetry();
  }

  /** Flushes telemetry, stops the engine and the licence refresh, and forgets the key. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flushTelemetry();
    this.#closed = true;
    clearTimeout(this.#refresh);
    this.#publishableKey = undefined;
    this.#worker?.terminate();
    this.#worker = undefined;
    for (const [, p] of this.#pending) p.resolve({ type: 'error', id: 0, code: 'ERR_UNAVAILABLE', message: 'The device processor was closed.' });
    this.#pending.clear();
  }

  #record(event: TelemetryEvent): void {
    if (!this.#claims.telemetry || !this.#options.baseUrl) return;
    this.#events.push(event);
    this.#flushTimer ??= setTimeout(() => void this.flushTelemetry(), TELEMETRY_DELAY_MS);
  }

  /** Starts a new session after `refreshAfter` (publishable keys only), retrying until the licence expires. */
  #scheduleRefresh(delayMs: number): void {
    if (this.#publishableKey === undefined || this.#closed) return;
    this.#refresh = setTimeout(async () => {
      if (this.#publishableKey === undefined || this.#closed) return;
      try {
        const session = await startLicenceSession({ baseUrl: this.#options.baseUrl!, publishableKey: this.#publishableKey, keys: this.#options.keys });
        this.#licence = session.licence;
        this.#claims = session.claims!;
        this.#scheduleRefresh(session.refreshAfter.getTime() - Date.now());
      } catch {
        // The current licence stays valid until it expires; then runs are refused (ERR_LICENSE_EXPIRED).
        this.#scheduleRefresh(SESSION_RETRY_MS);
      }
    }, Math.max(1_000, delayMs));
  }

  /** The worker, started once (again after a run timed out). */
  #engine(): Promise<EngineReady> {
    if (this.#worker && this.#ready) return this.#ready;
    let engine = preloaded;
    if (engine?.href === this.#engineUrl.href) preloaded = undefined;
    else engine = spawnEngine(this.#engineUrl);
    const worker = engine.worker;
    this.#worker = worker;
    this.#ready = engine.ready;
    // `ready` and `failed` settle engine.ready (spawnEngine); the rest are answers to runs.
    worker.onmessage = (event: MessageEvent<FromWorker>) => {
      const msg = event.data;
      if (msg.type === 'ready' || msg.type === 'failed') return;
      if (msg.type === 'progress') this.#pending.get(msg.id)?.progress?.(msg.progress);
      else {
        const pending = this.#pending.get(msg.id);
        this.#pending.delete(msg.id);
        pending?.resolve(msg);
      }
    };
    return this.#ready;
  }

  /** One run, bounded by the time limit: a run over it terminates the worker (the page never hangs). */
  #run(message: ToWorker, transfer: Transferable[]): Promise<FromWorker> {
    const worker = this.#worker!;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(message.id);
        worker.terminate();
        if (this.#worker === worker) {
          this.#worker = undefined;
          this.#ready = undefined;
        }
        resolve({ type: 'error', id: message.id, code: 'ERR_UNPROCESSABLE', message: 'The image took too long to process.', details: { reason: 'timeout' } });
      }, this.#limits.timeoutMs);
      this.#pending.set(message.id, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        ...(this.#options.onProgress ? { progress: this.#options.onProgress } : {}),
      });
      worker.postMessage(message, transfer);
    });
  }
}
