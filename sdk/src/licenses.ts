/**
 * `client.licenses`: on-device licences through the typed client (issue 15). The device SDK uses the
 * standalone helpers in `licence.ts` (no client object, the publishable key in memory only); this
 * resource is for backends and tools: issue offline licence files, start a session for a native app,
 * read the public keys, send telemetry.
 */
import type { Transport, RequestSpec } from './http.js';
import type { DateTime } from './types.js';
import { dearmourLicence, type TelemetryEvent } from './licence.js';

interface CallOpts {
  signal?: AbortSignal;
  timeoutMs?: number;
  idempotencyKey?: string;
}

function spec(base: Omit<RequestSpec, 'signal' | 'timeoutMs'>, o?: CallOpts): RequestSpec {
  return { ...base, signal: o?.signal, timeoutMs: o?.timeoutMs, ...(o?.idempotencyKey ? { idempotencyKey: o.idempotencyKey } : {}) };
}

/** `POST /v1/licenses/session` answer. */
export interface SessionLicenceReply {
  license: string;
  kind: 'session';
  alg: string;
  kid: string;
  origins: string[];
  app_ids: string[];
  features: string[];
  telemetry: boolean;
  expires_at: DateTime;
  refresh_after: DateTime;
}

/** `POST /v1/licenses` input. */
export interface OfflineLicenceInput {
  licensee: string;
  /** Hosts (`app.example.com`, meaning https) or origins. */
  domains?: string[];
  /** Native app identifiers (`com.example.photos`). */
  app_ids?: string[];
  /** Default `['image']`; `no_telemetry` switches device telemetry off. */
  features?: Array<'image' | 'video' | 'no_telemetry'>;
  expires_at: DateTime;
  alg?: 'RS256' | 'EdDSA';
}

/** `POST /v1/licenses` answer: the armoured licence file. */
export interface OfflineLicenceReply {
  license: string;
  jti: string;
  kid: string;
  alg: string;
  expires_at: DateTime;
}

/** A published licence key (public JWK). */
export interface LicenceJwk {
  kty: string;
  kid: string;
  alg: string;
  use: string;
  n?: string;
  e?: string;
  crv?: string;
  x?: string;
}

/** Licences for on-device processing. */
export class LicensesResource {
  constructor(private readonly t: Transport) {}

  /**
   * `POST /v1/licenses/session`: a short-lived session licence. A publishable key is pinned by its
   * request (browser Origin); a server credential names `origin` or `app_id`. Scope `licenses:session`.
   */
  startSession(pin: { origin?: string; app_id?: string } = {}, o?: CallOpts): Promise<SessionLicenceReply> {
    return this.t.json(spec({ method: 'POST', path: '/v1/licenses/session', json: pin }, o));
  }

  /** `POST /v1/licenses`: an offline licence file. Scope `licenses:issue`, server credentials only. */
  issue(input: OfflineLicenceInput, o?: CallOpts): Promise<OfflineLicenceReply> {
    return this.t.json(spec({ method: 'POST', path: '/v1/licenses', json: input }, o));
  }

  /** `GET /v1/licenses/keys` (no credential): the public keys licences verify with. */
  keys(o?: CallOpts): Promise<{ keys: LicenceJwk[] }> {
    return this.t.json(spec({ method: 'GET', path: '/v1/licenses/keys', auth: false }, o));
  }

  /** `POST /v1/telemetry`: counts under `licence` (sent as the bearer instead of the client's credential). */
  sendTelemetry(licence: string, events: TelemetryEvent[], o?: CallOpts): Promise<{ accepted: number }> {
    return this.t.json(spec({ method: 'POST', path: '/v1/telemetry', auth: false, headers: { authorization: `Bearer ${dearmourLicence(licence)}` }, json: { events } }, o));
  }
}
