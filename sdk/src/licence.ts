/**
 * Licences for on-device processing (issue 15): the isomorphic verifier, the file armour, and the two
 * client helpers the device SDK calls (start a licence session, send telemetry).
 *
 * A licence is a JWS in compact serialisation (RFC 7515 §7.1) whose payload is a JSON object of
 * claims (docs/licensing.md lists them). The server signs it with RS256 (RSASSA-PKCS1-v1_5 +
 * SHA-256, RFC 7518 §3.3) or EdDSA (Ed25519, RFC 8037). A session licence travels bare; an offline
 * licence file wraps the same compact JWS in an armour (`-----BEGIN OBSCURA LICENSE-----`).
 *
 * Self-contained on purpose: `jose` and WebCrypto only, no project imports, so the same file runs in
 * Node 22+, in a browser page and in a Web Worker, and the server verifies with exactly the code the
 * device runs (signer and verifier cannot drift).
 *
 * Security:
 * - the algorithm is pinned to the key: a key is a public JWK that names its `alg`, and a licence is
 *   accepted only when its header `alg` equals that key's `alg` and is RS256 or EdDSA (so `none`, the
 *   HS256-with-a-public-key confusion and an `alg` swapped between key types are refused before any
 *   signature check);
 * - the keys are the caller's: a page passes the public keys it ships with. A key fetched at run time
 *   (`fetchLicenceKeys`) is never trusted on its own;
 * - the signature is checked over the exact bytes received, before the payload is parsed: a changed
 *   byte of payload or signature is `ERR_LICENSE_SIGNATURE`.
 */
import { compactVerify, decodeProtectedHeader, importJWK, type JWK } from 'jose';

/** Stable codes of {@link LicenceError} (the server answers with the same codes). */
export type LicenceErrorCode = 'ERR_LICENSE_MALFORMED' | 'ERR_LICENSE_SIGNATURE' | 'ERR_LICENSE_EXPIRED' | 'ERR_LICENSE_ORIGIN' | 'ERR_LICENSE_FEATURE';

/**
 * Why a licence was refused:
 * - `ERR_LICENSE_MALFORMED`: not a licence (armour, JWS syntax, header or claims wrong, too long);
 * - `ERR_LICENSE_SIGNATURE`: the signature does not verify under any given key (a changed byte, a key
 *   not given, an `alg` other than the key's);
 * - `ERR_LICENSE_EXPIRED`: authentic but past `exp`, or not yet valid (`nbf`);
 * - `ERR_LICENSE_ORIGIN`: authentic, but not pinned to this origin or app id;
 * - `ERR_LICENSE_FEATURE`: authentic, but it lacks a feature the caller requires.
 */
export class LicenceError extends Error {
  readonly code: LicenceErrorCode;

  constructor(code: LicenceErrorCode, message: string) {
    super(message);
    this.name = 'LicenceError';
    this.code = code;
  }
}

/** The two signature algorithms a licence may use. */
export const LICENCE_ALGORITHMS = ['RS256', 'EdDSA'] as const;
export type LicenceAlgorithm = (typeof LICENCE_ALGORITHMS)[number];

/** The JWS `typ` header of every licence: a licence is never confused with another JWS of ours. */
export const LICENCE_TYP = 'obscura-license+jwt';

/** Armour lines of an offline licence file. */
export const LICENCE_ARMOUR_BEGIN = '-----BEGIN OBSCURA LICENSE-----';
export const LICENCE_ARMOUR_END = '-----END OBSCURA LICENSE-----';
/** Characters per armour body line. */
export const LICENCE_ARMOUR_WIDTH = 64;

/** Known features. `no_telemetry` (offline licences only) switches device telemetry off. */
export const LICENCE_FEATURES = ['image', 'video', 'no_telemetry'] as const;
export type LicenceFeature = (typeof LICENCE_FEATURES)[number];

/** Longest session licence lifetime a verifier accepts (`exp - iat`): one day. */
export const MAX_SESSION_LICENCE_SECONDS = 86_400;
/** Longest licence text parsed at all (a bound before any decoding). */
export const MAX_LICENCE_LENGTH = 16_384;
/** Clock skew tolerated on `exp` and `nbf` (seconds). */
export const LICENCE_CLOCK_TOLERANCE_SECONDS = 60;

/** The verified claims of a licence. */
export interface Licence {
  /** `session`: short-lived, from a publishable key; `offline`: an enterprise licence file. */
  kind: 'session' | 'offline';
  /** Who the licence is for (free text chosen by the issuer). */
  licensee: string;
  /** The Obscura org and app whose usage the licence counts into. */
  org_id: string;
  app_id: string;
  /** Web origins the licence is pinned to (`https://host[:port]`); may be empty for native-only licences. */
  origins: string[];
  /** Native application identifiers (e.g. `com.example.photos`) the licence is pinned to. */
  app_ids: string[];
  features: string[];
  /** Whether the device sends telemetry (false only with the `no_telemetry` feature). */
  telemetry: boolean;
  /** Issuer: the deployment's public URL. */
  iss: string;
  /** Issued at, not before, expires (seconds since the epoch). */
  iat: number;
  nbf: number;
  exp: number;
  /** The licence's unique id. */
  jti: string;
  /** For a session licence: the publishable key that started it. */
  key_id?: string;
  /** The signing key and algorithm (from the verified header). */
  kid: string;
  alg: LicenceAlgorithm;
}

/** Options of {@link verifyLicence}. */
export interface VerifyLicenceOptions {
  /** The trusted public keys (JWKs with `kid` and `alg`), e.g. those the page ships with. */
  keys: readonly JWK[];
  /** The page's origin (`location.origin`): the licence must be pinned to it. */
  origin?: string;
  /** The native app's identifier: the licence must be pinned to it. */
  appId?: string;
  /** Features that must all be present. */
  features?: readonly string[];
  /** The verifier's clock (default: now). */
  now?: Date;
}

// The signature part may be empty so that an unsigned (`alg: none`) token reaches the algorithm
// check and is refused as a signature failure, like any other algorithm swap.
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ARMOUR_LINE = /^[A-Za-z0-9_.-]{1,64}$/;

const malformed = (why: string) => new LicenceError('ERR_LICENSE_MALFORMED', `The licence is malformed: ${why}.`);

/** Wraps a compact JWS in the licence-file armour (64 characters per line, LF line ends, final LF). */
export function armourLicence(jws: string): string {
  if (!COMPACT_JWS.test(jws)) throw malformed('not a compact JWS');
  const lines: string[] = [];
  for (let i = 0; i < jws.length; i += LICENCE_ARMOUR_WIDTH) lines.push(jws.slice(i, i + LICENCE_ARMOUR_WIDTH));
  return `${LICENCE_ARMOUR_BEGIN}\n${lines.join('\n')}\n${LICENCE_ARMOUR_END}\n`;
}

/**
 * The compact JWS of a licence given as a file (armoured) or bare. The armour is strict: the BEGIN
 * line, body lines of at most 64 JWS characters, the END line, nothing else but surrounding blank
 * space (CRLF accepted). Throws `ERR_LICENSE_MALFORMED`.
 */
export function dearmourLicence(text: string): string {
  if (typeof text !== 'string') throw malformed('not text');
  if (text.length > MAX_LICENCE_LENGTH) throw malformed(`longer than ${MAX_LICENCE_LENGTH} characters`);
  const trimmed = text.trim();
  if (!trimmed.startsWith('-----')) {
    if (!COMPACT_JWS.test(trimmed)) throw malformed('not a compact JWS (three base64url parts separated by dots)');
    return trimmed;
  }
  const lines = trimmed.split(/\r?\n/);
  if (lines.length < 3 || lines[0] !== LICENCE_ARMOUR_BEGIN || lines[lines.length - 1] !== LICENCE_ARMOUR_END) throw malformed(`the armour must start with "${LICENCE_ARMOUR_BEGIN}" and end with "${LICENCE_ARMOUR_END}"`);
  const body = lines.slice(1, -1);
  if (!body.every((l) => ARMOUR_LINE.test(l))) throw malformed('an armour line holds something other than the licence');
  const jws = body.join('');
  if (!COMPACT_JWS.test(jws)) throw malformed('the armoured text is not a compact JWS');
  return jws;
}

/** A serialised web origin, or undefined when `value` is not an http(s) origin. */
export function normaliseLicenceOrigin(value: string): string | undefined {
  try {
    const u = new URL(value);
    if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) return undefined;
    return u.origin;
  } catch {
    return undefined;
  }
}

const importedKeys = new WeakMap<JWK, Promise<CryptoKey | Uint8Array>>();

/** The trusted key for a header: same `kid`, and its `alg` equals the header's (the pin). */
async function keyFor(keys: readonly JWK[], header: { alg?: unknown; kid?: unknown }): Promise<CryptoKey | Uint8Array> {
  const alg = header.alg;
  if (typeof alg !== 'string' || !(LICENCE_ALGORITHMS as readonly string[]).includes(alg)) throw new LicenceError('ERR_LICENSE_SIGNATURE', 'The licence is signed with an algorithm licences do not use.');
  if (typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > 128) throw malformed('the header has no key id (kid)');
  const jwk = keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new LicenceError('ERR_LICENSE_SIGNATURE', 'The licence is signed by a key this verifier does not trust.');
  // The key decides the algorithm, never the licence: an RSA key with alg RS256 verifies RS256 only.
  if (jwk.alg !== alg) throw new LicenceError('ERR_LICENSE_SIGNATURE', "The licence's algorithm is not its key's algorithm.");
  const expectedKty = alg === 'RS256' ? 'RSA' : 'OKP';
  if (jwk.kty !== expectedKty || (alg === 'EdDSA' && jwk.crv !== 'Ed25519') || 'd' in jwk) throw new LicenceError('ERR_LICENSE_SIGNATURE', 'A trusted licence key is not a public key of its algorithm.');
  let imported = importedKeys.get(jwk);
  if (!imported) {
    imported = importJWK(jwk, alg);
    importedKeys.set(jwk, imported);
  }
  try {
    return await imported;
  } catch {
    importedKeys.delete(jwk);
    throw new LicenceError('ERR_LICENSE_SIGNATURE', 'A trusted licence key could not be imported.');
  }
}

const isStringList = (v: unknown, max: number): v is string[] => Array.isArray(v) && v.length <= max && v.every((s) => typeof s === 'string' && s.length > 0 && s.length <= 253);
const isSeconds = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Checks the claims' shape (after the signature verified): anything unexpected is malformed. */
function parseClaims(payload: Uint8Array): Omit<Licence, 'kid' | 'alg'> {
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload)) as Record<string, unknown>;
  } catch {
    throw malformed('the payload is not JSON');
  }
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw malformed('the payload is not a JSON object');
  if (c.kind !== 'session' && c.kind !== 'offline') throw malformed('kind must be "session" or "offline"');
  if (typeof c.licensee !== 'string' || c.licensee.length > 200) throw malformed('licensee must be a string of at most 200 characters');
  if (typeof c.org_id !== 'string' || !UUID.test(c.org_id) || typeof c.app_id !== 'string' || !UUID.test(c.app_id)) throw malformed('org_id and app_id must be uuids');
  if (!isStringList(c.origins, 100) || !isStringList(c.app_ids, 100) || !isStringList(c.features, 32)) throw malformed('origins, app_ids and features must be lists of strings');
  if (c.origins.some((o) => normaliseLicenceOrigin(o) !== o)) throw malformed('an origin is not a serialised origin');
  if (typeof c.telemetry !== 'boolean' || c.telemetry === c.features.includes('no_telemetry')) throw malformed('telemetry must be false exactly when the no_telemetry feature is present');
  if (typeof c.iss !== 'string' || typeof c.jti !== 'string' || c.jti.length === 0 || c.jti.length > 64) throw malformed('iss and jti are required');
  if (!isSeconds(c.iat) || !isSeconds(c.nbf) || !isSeconds(c.exp) || c.exp <= c.iat || c.nbf > c.exp) throw malformed('iat, nbf and exp must be times with iat < exp');
  if (c.kind === 'session') {
    // A session licence is short-lived by definition: a long one is not a session licence.
    if (c.exp - c.iat > MAX_SESSION_LICENCE_SECONDS) throw malformed('a session licence lives at most one day');
    if (typeof c.key_id !== 'string' || !UUID.test(c.key_id)) throw malformed('a session licence names its publishable key');
    if (c.features.includes('no_telemetry')) throw malformed('a session licence always sends telemetry');
  }
  if (c.origins.length === 0 && c.app_ids.length === 0) throw malformed('a licence is pinned to at least one origin or app id');
  return c as unknown as Omit<Licence, 'kid' | 'alg'>;
}

/**
 * Verifies a licence (armoured file or bare compact JWS) against trusted public keys, then its time
 * window, then its pinning (`origin` / `appId`, when given) and required features. Returns the claims
 * or throws a {@link LicenceError}. Works in Node 22+, browsers and Workers (WebCrypto through jose).
 *
 * ```ts
 * const licence = await verifyLicence(fileText, { keys: [SHIPPED_PUBLIC_JWK], origin: location.origin });
 * ```
 */
export async function verifyLicence(text: string, opts: VerifyLicenceOptions): Promise<Licence> {
  const jws = dearmourLicence(text);
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(jws);
  } catch {
    throw malformed('the header is not a JWS header');
  }
  if (header.typ !== LICENCE_TYP) throw malformed(`the header's typ is not ${LICENCE_TYP}`);
  if (header.crit !== undefined || header.jku !== undefined || header.jwk !== undefined || header.x5u !== undefined || header.x5c !== undefined) throw malformed('the header names keys or extensions (only alg, kid and typ are allowed)');
  const key = await keyFor(opts.keys, header);
  const alg = header.alg as LicenceAlgorithm;
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(jws, key, { algorithms: [alg] }));
  } catch {
    throw new LicenceError('ERR_LICENSE_SIGNATURE', 'The licence signature does not verify: it was changed, or signed by another key.');
  }
  const claims = parseClaims(payload);
  const now = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  if (now >= claims.exp + LICENCE_CLOCK_TOLERANCE_SECONDS) throw new LicenceError('ERR_LICENSE_EXPIRED', `The licence expired at ${new Date(claims.exp * 1000).toISOString()}.`);
  if (now + LICENCE_CLOCK_TOLERANCE_SECONDS < claims.nbf) throw new LicenceError('ERR_LICENSE_EXPIRED', `The licence is not valid before ${new Date(claims.nbf * 1000).toISOString()}.`);
  if (opts.origin !== undefined) {
    const origin = normaliseLicenceOrigin(opts.origin);
    if (!origin || !claims.origins.includes(origin)) throw new LicenceError('ERR_LICENSE_ORIGIN', 'The licence is not valid on this origin.');
  }
  if (opts.appId !== undefined && !claims.app_ids.includes(opts.appId)) throw new LicenceError('ERR_LICENSE_ORIGIN', 'The licence is not valid for this app id.');
  const missing = (opts.features ?? []).filter((f) => !claims.features.includes(f));
  if (missing.length) throw new LicenceError('ERR_LICENSE_FEATURE', `The licence lacks the feature${missing.length > 1 ? 's' : ''} ${missing.join(', ')}.`);
  return { ...claims, kid: String(header.kid), alg };
}

// ---------------------------------------------------------------------------------------------------
// Client helpers: what the device SDK calls, so it never builds these requests by hand.

/** A `fetch` implementation (the global one by default). */
export type LicenceFetch = (input: string, init: { method: string; headers: Record<string, string>; body?: string; signal?: AbortSignal }) => Promise<Response>;

/** Thrown by the client helpers when the server refuses: `code` is the problem's stable code. */
export class LicenceRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = 'LicenceRequestError';
  }
}

export interface StartLicenceSessionOptions {
  /** The Obscura server, e.g. `https://media.example.com`. */
  baseUrl: string;
  /** A publishable key (`obs_pk_…`) holding `licenses:session`. Kept by the caller in memory only. */
  publishableKey: string;
  /**
   * Outside a browser only: the `Origin` header to send (a browser sets it itself and forbids
   * overriding it). The server checks it against the key's allowed origins.
   */
  origin?: string;
  /** A native app's identifier, sent as `Obscura-App-Id` instead of an origin (the key's allowed_app_ids must list it). */
  appId?: string;
  /** When given, the returned licence is verified against these pinned keys (and origin/appId). */
  keys?: readonly JWK[];
  fetch?: LicenceFetch;
  signal?: AbortSignal;
}

/** A session licence as `startLicenceSession` returns it. */
export interface LicenceSession {
  /** The compact JWS (pass it to `verifyLicence` and `sendTelemetry`). */
  licence: string;
  expiresAt: Date;
  /** Refresh (start a new session) from this moment on; well before `expiresAt`. */
  refreshAfter: Date;
  /** The verified claims, when `keys` were given. */
  claims?: Licence;
}

function fetchOf(f: LicenceFetch | undefined): LicenceFetch {
  if (f) return f;
  if (typeof globalThis.fetch !== 'function') throw new TypeError('No fetch available: pass options.fetch.');
  return globalThis.fetch.bind(globalThis) as unknown as LicenceFetch;
}

function endpoint(baseUrl: string, path: string): string {
  const base = new URL(baseUrl);
  if (base.protocol !== 'https:' && base.protocol !== 'http:') throw new TypeError('baseUrl must be an http(s) URL.');
  return new URL(path, base.origin + base.pathname.replace(/\/?$/, '/')).toString();
}

async function refusal(res: Response): Promise<LicenceRequestError> {
  let doc: Record<string, unknown> = {};
  try {
    doc = (await res.json()) as Record<string, unknown>;
  } catch {
    /* not a problem document */
  }
  return new LicenceRequestError(res.status, typeof doc.code === 'string' ? doc.code : 'ERR_INVALID_RESPONSE', typeof doc.detail === 'string' ? doc.detail : `HTTP ${res.status}`);
}

/**
 * `POST /v1/licenses/session`: exchanges a publishable key (and the page's origin, or a native app id)
 * for a short-lived signed session licence. Call it again after `refreshAfter`.
 */
export async function startLicenceSession(opts: StartLicenceSessionOptions): Promise<LicenceSession> {
  const headers: Record<string, string> = { authorization: `Bearer ${opts.publishableKey}`, 'content-type': 'application/json', accept: 'application/json' };
  // A browser sets Origin itself (and ignores an attempt to set it); Node and native clients name it.
  if (opts.origin !== undefined && opts.appId === undefined) headers.origin = opts.origin;
  if (opts.appId !== undefined) headers['obscura-app-id'] = opts.appId;
  const res = await fetchOf(opts.fetch)(endpoint(opts.baseUrl, 'v1/licenses/session'), {
    method: 'POST',
    headers,
    body: '{}',
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (res.status !== 201) throw await refusal(res);
  const body = (await res.json()) as { license?: unknown; expires_at?: unknown; refresh_after?: unknown };
  if (typeof body.license !== 'string' || typeof body.expires_at !== 'string' || typeof body.refresh_after !== 'string') throw new LicenceRequestError(res.status, 'ERR_INVALID_RESPONSE', 'The server answered without a licence.');
  const session: LicenceSession = { licence: body.license, expiresAt: new Date(body.expires_at), refreshAfter: new Date(body.refresh_after) };
  if (opts.keys) {
    const origin = opts.appId === undefined ? (opts.origin ?? (globalThis as { location?: { origin?: string } }).location?.origin) : undefined;
    session.claims = await verifyLicence(body.license, { keys: opts.keys, ...(origin !== undefined ? { origin } : {}), ...(opts.appId !== undefined ? { appId: opts.appId } : {}) });
  }
  return session;
}

/** One telemetry event: counts only (docs/licensing.md, "Telemetry"). */
export type TelemetryEvent =
  | {
      type: 'engine_load';
      /** Random id of this engine session (not a user id). */
      session_id: string;
      /** `web`, `ios`, `android`, … */
      platform: string;
      engine_version: string;
      /** A native app's identifier (must be one the licence is pinned to). */
      app_id?: string;
      /** The caller's own end-user id; the server stores only a keyed hash of it. */
      user_id?: string;
      /** When it happened (ISO 8601); default: when received. */
      at?: string;
    }
  | {
      type: 'export';
      session_id: string;
      /** The output's media type, e.g. `image/webp`. */
      media_type: string;
      width: number;
      height: number;
      /** Video only. */
      fps?: number;
      duration_ms?: number;
      at?: string;
    };

export interface SendTelemetryOptions {
  baseUrl: string;
  /** The licence (session JWS, or the offline licence file's text) the events are counted under. */
  licence: string;
  /** At most 100 events per call. */
  events: readonly TelemetryEvent[];
  fetch?: LicenceFetch;
  signal?: AbortSignal;
}

/** Most events in one telemetry batch. */
export const MAX_TELEMETRY_EVENTS = 100;

/** `POST /v1/telemetry`: sends a batch of counts, authenticated by the licence. Returns how many were counted. */
export async function sendTelemetry(opts: SendTelemetryOptions): Promise<{ accepted: number }> {
  const jws = dearmourLicence(opts.licence);
  const res = await fetchOf(opts.fetch)(endpoint(opts.baseUrl, 'v1/telemetry'), {
    method: 'POST',
    headers: { authorization: `Bearer ${jws}`, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ events: opts.events }),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (res.status !== 202) throw await refusal(res);
  const body = (await res.json()) as { accepted?: unknown };
  return { accepted: typeof body.accepted === 'number' ? body.accepted : 0 };
}

/**
 * `GET /v1/licenses/keys`: the deployment's licence public keys (JWKs). For tooling and key rotation
 * only: a verifier trusts the keys it ships with, never keys fetched at run time on their own.
 */
export async function fetchLicenceKeys(opts: { baseUrl: string; fetch?: LicenceFetch; signal?: AbortSignal }): Promise<JWK[]> {
  const res = await fetchOf(opts.fetch)(endpoint(opts.baseUrl, 'v1/licenses/keys'), { method: 'GET', headers: { accept: 'application/json' }, ...(opts.signal ? { signal: opts.signal } : {}) });
  if (res.status !== 200) throw await refusal(res);
  const body = (await res.json()) as { keys?: unknown };
  return Array.isArray(body.keys) ? (body.keys as JWK[]) : [];
}
