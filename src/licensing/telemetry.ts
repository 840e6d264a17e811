/**
 * Device telemetry (issue 15, item 3): counted, not content. The schema admits exactly the fields
 * below, each a bounded number, an enumerated media type or a short label; anything else (a file
 * name, pixels, EXIF, an unknown field) is refused with ERR_VALIDATION before anything is counted.
 * A batch is counted whole or not at all.
 *
 * What is kept: exports by media type and resolution bucket (the shorter side: 240p … 2160p, above), output pixels and video time (the usage
 * meter's metrics), engine loads by platform, and monthly active end users as keyed hashes (the raw
 * `user_id` never leaves the meter's HMAC). `session_id` and `engine_version` are validated, never stored.
 */
import { Type, type Static } from 'typebox';
import { AppError } from '../errors.js';
import { resolutionBucket, type UsageEvent } from '../usage/meter.js';
import type { Licence } from '../../sdk/src/licence.js';
import { APP_ID_PATTERN } from './sign.js';

/** Output media types an export event may name (those the server's pipelines produce). */
export const TELEMETRY_MEDIA_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/avif', 'image/gif', 'image/tiff', 'image/jxl', 'video/mp4', 'video/webm'] as const;
/** Most events per batch. */
export const MAX_TELEMETRY_EVENTS = 100;
/** How far back an event's `at` may lie (a device offline for a while), and how far ahead (clock skew). */
export const TELEMETRY_MAX_AGE_MS = 7 * 86_400_000;
export const TELEMETRY_MAX_SKEW_MS = 5 * 60_000;

const SessionId = Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$', description: 'Random id of the engine session (not a user id).' });
const At = Type.String({ format: 'date-time', description: 'When it happened (at most 7 days ago); default: when received.' });

const EngineLoad = Type.Object(
  {
    type: Type.Literal('engine_load'),
    session_id: SessionId,
    platform: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,31}$', description: '`web`, `ios`, `android`, …' }),
    engine_version: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$' }),
    app_id: Type.Optional(Type.String({ pattern: APP_ID_PATTERN, description: "A native app's identifier; must be one the licence names." })),
    user_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Your end-user id; stored only as a keyed hash (monthly active end users).' })),
    at: Type.Optional(At),
  },
  { additionalProperties: false },
);

const Export = Type.Object(
  {
    type: Type.Literal('export'),
    session_id: SessionId,
    media_type: Type.Union(TELEMETRY_MEDIA_TYPES.map((t) => Type.Literal(t))),
    width: Type.Integer({ minimum: 1, maximum: 65_535 }),
    height: Type.Integer({ minimum: 1, maximum: 65_535 }),
    fps: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 240, description: 'Video only.' })),
    duration_ms: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000, description: 'Video only.' })),
    at: Type.Optional(At),
  },
  { additionalProperties: false },
);

/** The body of `POST /v1/telemetry`. */
export const TelemetryBody = Type.Object({ events: Type.Array(Type.Union([EngineLoad, Export]), { minItems: 1, maxItems: MAX_TELEMETRY_EVENTS }) }, { additionalProperties: false });
export type TelemetryEventInput = Static<typeof TelemetryBody>['events'][number];

const invalid = (index: number, message: string) => new AppError('ERR_VALIDATION', `events[${index}]: ${message}`, { details: { field: `events[${index}]` } });

/**
 * Turns a validated batch into usage-meter events under the licence's org and app (pure). Throws
 * ERR_VALIDATION for what the schema cannot express (video fields on an image, an app id the licence
 * does not name, a time outside the window), before anything is counted.
 */
export function telemetryUsage(licence: Licence, events: readonly TelemetryEventInput[], now: number): UsageEvent[] {
  const keyId = licence.kind === 'session' && licence.key_id ? licence.key_id : `license:${licence.jti}`.slice(0, 64);
  const base = { orgId: licence.org_id, appId: licence.app_id, keyId };
  return events.map((e, i) => {
    let at = now;
    if (e.at !== undefined) {
      at = Date.parse(e.at);
      if (!(at >= now - TELEMETRY_MAX_AGE_MS && at <= now + TELEMETRY_MAX_SKEW_MS)) throw invalid(i, 'at must lie within the last 7 days.');
    }
    if (e.type === 'engine_load') {
      if (e.app_id !== undefined && !licence.app_ids.includes(e.app_id)) throw invalid(i, 'app_id is not one the licence names.');
      return { ...base, at, deviceLoads: { [e.platform]: 1 }, ...(e.user_id !== undefined ? { endUser: e.user_id } : {}) };
    }
    const mediaType = e.media_type as string;
    const video = mediaType.startsWith('video/');
    if (!video && (e.fps !== undefined || e.duration_ms !== undefined)) throw invalid(i, 'fps and duration_ms are for video exports only.');
    if (video && (e.fps === undefined || e.duration_ms === undefined)) throw invalid(i, 'a video export needs fps and duration_ms.');
    const frames = video ? Math.max(1, Math.round((e.fps! * e.duration_ms!) / 1000)) : 1;
    return {
      ...base,
      at,
      exports: { [mediaType]: 1 },
      deviceExports: { [mediaType]: 1 },
      pixels: { [mediaType]: e.width * e.height * frames },
      resolutions: { [resolutionBucket(e.width, e.height)]: 1 },
      ...(video ? { videoMs: { [mediaType]: e.duration_ms! } } : {}),
    };
  });
}
