/**
 * Licences for on-device processing (issue 15; docs/licensing.md):
 * - `POST /v1/licenses/session`: a publishable key (Origin checked against its allowed origins, or a
 *   native app naming its allowed app id in `Obscura-App-Id`) gets a short-lived signed licence;
 * - `POST /v1/licenses`: an offline licence file (server credentials with `licenses:issue`);
 * - `GET /v1/licenses/keys`: the public keys licences verify with (no credential);
 * - `POST /v1/telemetry`: counts from the device, authenticated by the licence itself.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { LicensingService } from '../../licensing/service.js';
import type { UsageMeter } from '../../usage/meter.js';
import { TelemetryBody } from '../../licensing/telemetry.js';
import { LICENCE_ALGORITHMS, LICENCE_FEATURES } from '../../../sdk/src/licence.js';
import { AppError } from '../../errors.js';
import { appIdOf, bearerToken, principalOf, SERVER_CREDENTIALS } from '../auth.js';
import { DateTime, bearer, ctxOf, errorResponses } from './common.js';
import { normaliseAppIds } from '../../auth/network.js';

const LICENCE_ERRORS = {
  401: 'Missing or invalid licence (ERR_AUTH_MISSING, ERR_LICENSE_MALFORMED, ERR_LICENSE_SIGNATURE, ERR_LICENSE_EXPIRED).',
  403: 'The licence is not valid here (ERR_LICENSE_ORIGIN) or has telemetry switched off (ERR_LICENSE_FEATURE).',
};

const SessionBody = Type.Object(
  {
    origin: Type.Optional(Type.String({ maxLength: 300, description: 'Server credentials only: the web origin to pin the licence to (a publishable key is pinned to its verified Origin).' })),
    app_id: Type.Optional(Type.String({ maxLength: 200, description: 'Server credentials only: the native app id to pin the licence to (a publishable key uses the Obscura-App-Id header).' })),
  },
  { additionalProperties: false },
);

const SessionReply = Type.Object(
  {
    license: Type.String({ description: 'The session licence: a compact JWS (docs/licensing.md). Keep it in memory.' }),
    kind: Type.Literal('session'),
    alg: Type.String(),
    kid: Type.String(),
    origins: Type.Array(Type.String()),
    app_ids: Type.Array(Type.String()),
    features: Type.Array(Type.String()),
    telemetry: Type.Boolean(),
    expires_at: DateTime,
    refresh_after: DateTime,
  },
  { additionalProperties: false },
);

const IssueBody = Type.Object(
  {
    licensee: Type.String({ minLength: 1, maxLength: 200 }),
    domains: Type.Optional(Type.Array(Type.String({ maxLength: 300 }), { maxItems: 100, description: 'Hosts (app.example.com, meaning https) or origins the licence is valid on.' })),
    app_ids: Type.Optional(Type.Array(Type.String({ maxLength: 200 }), { maxItems: 100, description: 'Native app identifiers (com.example.photos).' })),
    features: Type.Optional(Type.Array(Type.Union(LICENCE_FEATURES.map((f) => Type.Literal(f))), { maxItems: LICENCE_FEATURES.length, description: 'Default [image]. `no_telemetry` switches device telemetry off.' })),
    expires_at: DateTime,
    alg: Type.Optional(Type.Union(LICENCE_ALGORITHMS.map((a) => Type.Literal(a)), { description: 'RS256 (default, RSASSA-PKCS1-v1_5 + SHA-256) or EdDSA (Ed25519).' })),
  },
  { additionalProperties: false, examples: [{ licensee: 'Example Corp', domains: ['photos.example.com'], app_ids: ['com.example.photos'], features: ['image', 'no_telemetry'], expires_at: '2027-12-31T23:59:59Z' }] },
);

const IssueReply = Type.Object(
  {
    license: Type.String({ description: 'The licence file (armoured JWS): save it as is.' }),
    jti: Type.String(),
    kid: Type.String(),
    alg: Type.String(),
    expires_at: DateTime,
  },
  { additionalProperties: false },
);

const Jwk = Type.Object({ kty: Type.String(), kid: Type.String(), alg: Type.String(), use: Type.String(), n: Type.Optional(Type.String()), e: Type.Optional(Type.String()), crv: Type.Optional(Type.String()), x: Type.Optional(Type.String()) }, { additionalProperties: false });

/** The licensing routes. */
export function licensingRoutes(app: FastifyInstance, deps: { licensing: LicensingService; meter: UsageMeter }): void {
  const { licensing } = deps;

  app.post<{ Body: Static<typeof SessionBody> | undefined }>('/v1/licenses/session', {
    // The export quota applies: an app that used up its exports gets no new on-device session.
    config: { auth: true, scope: 'licenses:session', quota: { exports: true } },
    schema: {
      tags: ['licenses'],
      summary: 'Start an on-device licence session (short-lived signed licence)',
      description:
        'With a publishable key: the licence is pinned to the request Origin (checked against the key’s allowed origins) or, for a native app sending no Origin, to the app id in `Obscura-App-Id` (checked against the key’s allowed_app_ids). With a server credential: to the `origin` or `app_id` in the body. Refresh after `refresh_after`.',
      security: bearer,
      body: SessionBody,
      response: { 201: SessionReply, ...errorResponses() },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const body = req.body ?? {};
      let pin: { origin: string } | { appId: string };
      if (p.kind === 'publishable') {
        // The key verifier has already checked the Origin (or the app id) against the key's lists.
        if (body.origin !== undefined || body.app_id !== undefined) throw new AppError('ERR_VALIDATION', 'A publishable key is pinned by its request (Origin or Obscura-App-Id), not by the body: send an empty body.', { details: { field: 'origin' } });
        const origin = req.headers.origin;
        const appId = appIdOf(req);
        pin = typeof origin === 'string' && origin.length > 0 ? { origin } : { appId: appId! };
      } else {
        if ((body.origin === undefined) === (body.app_id === undefined)) throw new AppError('ERR_VALIDATION', 'Name exactly one of origin or app_id to pin the licence to.', { details: { field: 'origin' } });
        pin = body.origin !== undefined ? { origin: normaliseOriginOrThrow(body.origin) } : { appId: normaliseAppIdOrThrow(body.app_id!) };
      }
      const s = await licensing.startSession(p, pin);
      const c = s.claims;
      return reply
        .code(201)
        .header('Cache-Control', 'no-store')
        .send({ license: s.licence, kind: 'session', alg: c.alg, kid: c.kid, origins: c.origins, app_ids: c.app_ids, features: c.features, telemetry: c.telemetry, expires_at: s.expiresAt.toISOString(), refresh_after: s.refreshAfter.toISOString() });
    },
  });

  app.post<{ Body: Static<typeof IssueBody> }>('/v1/licenses', {
    config: { auth: true, scope: 'licenses:issue', keyKinds: SERVER_CREDENTIALS },
    schema: {
      tags: ['licenses'],
      summary: 'Issue an offline licence file (enterprise, verified on the device without network)',
      security: bearer,
      body: IssueBody,
      response: { 201: IssueReply, ...errorResponses() },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const b = req.body;
      const ctx = ctxOf(req);
      const { file, claims } = await licensing.issueOffline(
        p.orgId,
        p.appId,
        { licensee: b.licensee, domains: b.domains ?? [], appIds: b.app_ids ?? [], features: b.features ?? [], expiresAt: new Date(b.expires_at), ...(b.alg ? { alg: b.alg } : {}) },
        ctx.actor,
        { ip: req.ip, requestId: String(req.id) },
      );
      return reply.code(201).header('Cache-Control', 'no-store').send({ license: file, jti: claims.jti, kid: claims.kid, alg: claims.alg, expires_at: new Date(claims.exp * 1000).toISOString() });
    },
  });

  app.get('/v1/licenses/keys', {
    schema: {
      tags: ['licenses'],
      summary: 'Public keys that verify licences (current and rotated, until removed)',
      description: 'For tooling and rotation: a device trusts the keys it ships with, never a key fetched at run time on its own.',
      // No credential, so only the perimeter's answers (rate limit, load shedding) can refuse it.
      response: { 200: Type.Object({ keys: Type.Array(Jwk) }, { additionalProperties: false }), ...Object.fromEntries(Object.entries(errorResponses()).filter(([c]) => ['429', '500', '503'].includes(c))) },
    },
    handler: async (_req, reply) => reply.header('Cache-Control', 'public, max-age=300').send({ keys: await licensing.publicKeys() }),
  });

  app.post<{ Body: Static<typeof TelemetryBody> }>('/v1/telemetry', {
    // Authenticated by the licence (Authorization: Bearer <licence>), not by an API key: an offline
    // licence has no key. Checked in the handler, after the schema refused anything but counts.
    schema: {
      tags: ['licenses'],
      summary: 'Device telemetry: engine loads and exports, counted into usage (counts only)',
      description: 'Send the licence as `Authorization: Bearer <licence>`. Only the documented fields are accepted (no file names, pixels or metadata); a batch is counted whole or refused.',
      body: TelemetryBody,
      response: { 202: Type.Object({ accepted: Type.Integer() }, { additionalProperties: false }), ...errorResponses(LICENCE_ERRORS) },
    },
    handler: async (req, reply) => {
      const origin = typeof req.headers.origin === 'string' ? req.headers.origin : undefined;
      const accepted = await licensing.acceptTelemetry(deps.meter, bearerToken(req), origin, req.body.events);
      return reply.code(202).send({ accepted });
    },
  });
}

function normaliseOriginOrThrow(value: string): string {
  try {
    const u = new URL(value);
    if ((u.protocol === 'https:' || u.protocol === 'http:') && (u.pathname === '/' || u.pathname === '') && !u.search && !u.hash && !u.username) return u.origin;
  } catch {
    /* refused below */
  }
  throw new AppError('ERR_VALIDATION', 'origin must be an origin such as https://app.example.com.', { details: { field: 'origin' } });
}

function normaliseAppIdOrThrow(value: string): string {
  return normaliseAppIds([value])[0]!;
}

