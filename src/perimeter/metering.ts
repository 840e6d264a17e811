/**
 * Usage metering and process metrics: the `Obscura-End-User` header of authenticated requests
 * (validated, route-level), and on every response the process metrics and, for an authenticated
 * request, a usage event (requests, bytes on the wire, the end user) for the app and the credential.
 * `/metrics` on the main listener exists only behind `OBSCURA_METRICS_TOKEN`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../errors.js';
import { MAX_END_USER_ID_LENGTH, type UsageEvent, type UsageMeter } from '../usage/meter.js';
import { metricsTokenMatches, metricsText, bearerOf, METRICS_CONTENT_TYPE, type ProcessMetrics } from '../usage/metrics.js';
import { addAuthenticatedRouteHook, ROUTE_PHASE } from './route-hooks.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The process's usage meter (`recordUsage(app.usage, ...)`). */
    usage: UsageMeter;
  }
  interface FastifyRequest {
    /** The validated `Obscura-End-User` header of an authenticated request (raw; hashed by the meter, never logged). */
    endUser: string | null;
  }
}

/** The end-user id header: a caller's own user id, for monthly-active-end-user counts. */
export const END_USER_HEADER = 'obscura-end-user';

/** Where each connection's byte counters stood when its previous response finished. */
const socketMarks = new WeakMap<object, { read: number; written: number }>();

/**
 * Bytes this request and its response took on the wire (headers included): the connection's counters
 * now minus where they stood after the previous response on it (HTTP/1.1 answers in order). Falls back
 * to Content-Length where there is no real socket (`inject`).
 */
function wireBytes(req: FastifyRequest, reply: FastifyReply): { bytesIn: number; bytesOut: number } {
  const sock = req.raw.socket as { bytesRead?: unknown; bytesWritten?: unknown } | null | undefined;
  if (sock && typeof sock.bytesRead === 'number' && typeof sock.bytesWritten === 'number') {
    const prev = socketMarks.get(sock) ?? { read: 0, written: 0 };
    const now = { read: sock.bytesRead, written: sock.bytesWritten };
    socketMarks.set(sock, now);
    return { bytesIn: Math.max(0, now.read - prev.read), bytesOut: Math.max(0, now.written - prev.written) };
  }
  return { bytesIn: Number(req.headers['content-length'] ?? 0) || 0, bytesOut: Number(reply.getHeader('content-length') ?? 0) || 0 };
}

/** The metering plugin. */
export const metering = fp(
  async (app: FastifyInstance, opts: { meter: UsageMeter; metrics: ProcessMetrics; metricsToken?: string | undefined }) => {
    const { meter, metrics } = opts;
    app.decorate('usage', meter);
    app.decorateRequest('endUser', null);

    // Route phase `endUser`, on authenticated routes only; a callback hook (nothing to wait for).
    addAuthenticatedRouteHook(app, ROUTE_PHASE.endUser, () => (req: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
      const raw = req.headers[END_USER_HEADER];
      if (!req.principal || raw === undefined) return done();
      const v = Array.isArray(raw) ? raw[0]! : raw;
      if (Array.isArray(raw) || v.length === 0 || v.length > MAX_END_USER_ID_LENGTH) {
        return done(new AppError('ERR_VALIDATION', `The Obscura-End-User header must be one value of 1 to ${MAX_END_USER_ID_LENGTH} characters.`, { details: { errors: [{ path: 'headers/obscura-end-user', rule: 'maxLength' }] } }));
      }
      req.endUser = v;
      done();
    });

    app.addHook('onResponse', (req, reply, done) => {
      const route = req.routeOptions.url ?? 'unmatched';
      const status = reply.statusCode;
      const { bytesIn, bytesOut } = wireBytes(req, reply);
      metrics.httpRequests.inc({ method: req.method, route, status: String(status) });
      metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
      metrics.httpBytesIn.inc(bytesIn);
      metrics.httpBytesOut.inc(bytesOut);
      const principal = req.principal;
      if (!principal) return done();
      const event: UsageEvent = {
        orgId: principal.orgId,
        appId: principal.appId,
        keyId: principal.keyId,
        // Refused-for-limits requests do not count, or a throttled client would burn its quota.
        requests: status === 429 ? 0 : 1,
        bytesIn,
        bytesOut,
        ...(req.endUser && status < 400 ? { endUser: req.endUser } : {}),
      };
      meter.record(event);
      metrics.usagePending.set(meter.pending);
      done();
    });

    // Prometheus on the main listener only behind a token (constant-time compare).
    if (opts.metricsToken) {
      const token = opts.metricsToken;
      app.get('/metrics', {
        schema: { hide: true },
        handler: async (req, reply) => {
          if (!metricsTokenMatches(bearerOf(req.headers.authorization), token)) {
            throw new AppError(req.headers.authorization ? 'ERR_TOKEN_INVALID' : 'ERR_AUTH_MISSING', 'The metrics endpoint needs "Authorization: Bearer <OBSCURA_METRICS_TOKEN>".');
          }
          return reply.header('cache-control', 'no-store').type(METRICS_CONTENT_TYPE).send(await metricsText(metrics));
        },
      });
    }
  },
  { name: 'obscura-metering' },
);

/** Records usage for the principal of an authenticated request (fills org, app and key). */
export function recordRequestUsage(req: FastifyRequest, event: Omit<UsageEvent, 'orgId' | 'appId' | 'keyId'>): void {
  const p = req.principal;
  if (!p) throw new Error('recordRequestUsage: request is not authenticated');
  req.server.usage.record({ ...event, orgId: p.orgId, appId: p.appId, keyId: p.keyId });
}

