/**
 * The playground's "on this device" engine (issue 15, item 5): the same operation string runs in this
 * browser through the on-device SDK (packages/browser, served by the server at /console/device/),
 * licensed by the real `POST /v1/licenses/session` with a publishable key of the app.
 *
 * The key: the console is signed in by its session cookie, and a secret key never reaches the page.
 * A publishable key cannot be read back (only its hash is stored), so on first use the console mints
 * one for the app through the same API a person would use (`POST /v1/apps/{id}/keys`: kind
 * publishable, scope `licenses:session` only, pinned to this origin, expiring after an hour). It is
 * kept in this module's memory only (never in storage), reused while it lives, and handed to the
 * SDK, which keeps it in memory too. Minting needs `keys:manage` (owner, admin, developer).
 *
 * The licence keys: the SDK verifies licences against public keys the page ships with. The console
 * is served by the same server that signs the licences, so the keys it reads from that server
 * (`GET /v1/licenses/keys`, same origin) are exactly as trustworthy as the console's own code: a
 * party that could change one could change the other. A page on another origin still pins its keys.
 */
import { ApiError, call } from './api.js';

/** What the SDK hands to `onExport` (packages/browser/src/protocol.ts). */
export interface DeviceExport {
  format: string;
  mime: string;
  width: number;
  height: number;
  size: number;
  elapsedMs: number;
}
interface DeviceProcessor {
  process(input: Blob, operations: string): Promise<DeviceExport>;
  close(): Promise<void>;
}
interface DeviceModule {
  ObscuraDevice: {
    start(options: {
      baseUrl: string;
      publishableKey: string;
      keys: unknown[];
      onExport: (blob: Blob, info: DeviceExport) => void;
      onProgress?: (p: { stage: string; percent: number }) => void;
    }): Promise<DeviceProcessor>;
  };
}

/** Where the server serves the SDK (src/http/routes/console-ui.ts). */
const SDK_URL = '/console/device/obscura-device.js';
const KEY_LIFETIME_MS = 60 * 60 * 1000;
// A key about to expire is replaced rather than used for a licence that would outlive it.
const KEY_MARGIN_MS = 5 * 60 * 1000;

const keys = new Map<string, { secret: string; expiresAt: number }>();
let current: { appId: string; started: Promise<DeviceProcessor>; exported?: Blob; progress?: (percent: number) => void } | null = null;

/** A refusal of the SDK (`DeviceError`) as the console shows problems: the same stable code. */
function asApiError(err: unknown): unknown {
  const e = err as { code?: unknown; message?: unknown; details?: unknown };
  if (err instanceof ApiError || typeof e?.code !== 'string') return err;
  return new ApiError(0, e.code, String(e.message ?? 'Refused on the device.'), (e.details as Record<string, unknown>) ?? {});
}

/** Why this page cannot run the engine, or null when it can. */
export function deviceUnavailable(): string | null {
  // libvips' threads need SharedArrayBuffer: only a cross-origin-isolated page has it.
  if (!globalThis.crossOriginIsolated) return 'This page is not cross-origin isolated (COOP/COEP), so the on-device engine cannot start.';
  if (typeof Worker === 'undefined' || typeof WebAssembly === 'undefined') return 'This browser has no Web Workers or WebAssembly.';
  return null;
}

async function publishableKey(appId: string): Promise<string> {
  const held = keys.get(appId);
  if (held && held.expiresAt - KEY_MARGIN_MS > Date.now()) return held.secret;
  const expiresAt = Date.now() + KEY_LIFETIME_MS;
  const created = await call<{ secret: string }>('POST', `/v1/apps/${appId}/keys`, {
    kind: 'publishable',
    name: 'Console playground (on this device)',
    scopes: ['licenses:session'],
    allowed_origins: [location.origin],
    expires_at: new Date(expiresAt).toISOString(),
  });
  keys.set(appId, { secret: created.secret, expiresAt });
  return created.secret;
}

/**
 * Starts (or reuses) the on-device processor for `appId`: the engine loads while the licence session
 * is started. Rejects with the SDK's or the API's stable code.
 */
export function startDevice(appId: string): Promise<DeviceProcessor> {
  if (current?.appId === appId) return current.started;
  void stopDevice();
  const session: NonNullable<typeof current> = { appId, started: Promise.resolve(null as never) };
  session.started = (async () => {
    try {
      const [mod, licenceKeys, key] = await Promise.all([
        import(/* the SDK's own URL at run time, not bundled */ new URL(SDK_URL, location.href).href) as Promise<DeviceModule>,
        call<{ keys: unknown[] }>('GET', '/v1/licenses/keys'),
        publishableKey(appId),
      ]);
      return await mod.ObscuraDevice.start({
        baseUrl: location.origin,
        publishableKey: key,
        keys: licenceKeys.keys,
        onExport: (blob) => {
          session.exported = blob;
        },
        onProgress: (p) => session.progress?.(p.percent),
      });
    } catch (err) {
      if (current === session) current = null;
      throw asApiError(err);
    }
  })();
  current = session;
  return session.started;
}

/** Stops the engine and forgets the licence (the minted key stays in memory until it expires). */
export async function stopDevice(): Promise<void> {
  const was = current;
  current = null;
  if (was) await was.started.then((d) => d.close()).catch(() => undefined);
}

/** Runs `operations` on `input` in this browser; the result never leaves it. */
export async function processOnDevice(appId: string, input: Blob, operations: string, onProgress: (percent: number) => void): Promise<{ blob: Blob; info: DeviceExport }> {
  const device = await startDevice(appId);
  const session = current;
  if (!session || session.appId !== appId) throw new ApiError(0, 'ERR_UNAVAILABLE', 'The on-device engine was stopped. Switch “On this device” on again.', {});
  session.exported = undefined;
  session.progress = onProgress;
  try {
    const info = await device.process(input, operations);
    const blob = session.exported ?? new Blob([], { type: info.mime });
    return { blob, info };
  } catch (err) {
    throw asApiError(err);
  } finally {
    session.progress = undefined;
  }
}
