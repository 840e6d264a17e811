/** Shared route helpers: schemas, audit context, error responses for OpenAPI. */
import type { FastifyRequest } from 'fastify';
import { Type, type TSchema } from 'typebox';
import type { Ctx } from '../../tenants/index.js';
import { principalOf } from '../auth.js';

export const Uuid = Type.String({ format: 'uuid', description: 'An identifier (UUID).', examples: ['3f0c2a8e-6f5e-4b8a-9c55-0d3a1f6a9b10'] });
export const IdParams = Type.Object({ id: Uuid }, { additionalProperties: false });
export const DateTime = Type.String({ format: 'date-time' });

/** The audit context of an authenticated request. */
export function ctxOf(req: FastifyRequest): Ctx {
  const p = principalOf(req);
  if (p.user) return { actor: { type: 'user', id: p.user.id, via: 'session', session: p.keyId }, ip: req.ip, requestId: String(req.id) };
  return { actor: { type: p.kind === 'token' ? 'key' : 'key', id: p.keyId, via: p.kind }, ip: req.ip, requestId: String(req.id) };
}

const problem = (description: string) => ({ $ref: 'Problem#', description }) as unknown as TSchema;

/** Error responses every authenticated route can produce. */
export function errorResponses(extra: Record<number, string> = {}): Record<number, TSchema> {
  const base: Record<number, string> = {
    400: 'Invalid request (ERR_VALIDATION, ERR_BAD_REQUEST).',
    401: 'Missing or invalid credential (ERR_AUTH_MISSING, ERR_KEY_MALFORMED, ERR_KEY_CHECKSUM, ERR_KEY_UNKNOWN, ERR_KEY_EXPIRED, ERR_KEY_REVOKED, ERR_KEY_ROLLED, ERR_TOKEN_INVALID).',
    403: 'Credential not allowed here (ERR_SCOPE_MISSING, ERR_IP_NOT_ALLOWED, ERR_ORIGIN_NOT_ALLOWED).',
    404: 'Not found, or not yours (ERR_NOT_FOUND).',
    429: 'Rate limited (ERR_RATE_LIMITED).',
    500: 'Internal error (ERR_INTERNAL).',
    503: 'Shedding load or a dependency (database, blob store) did not answer in time; retry after Retry-After (ERR_UNAVAILABLE, ERR_DEPENDENCY_UNAVAILABLE).',
    ...extra,
  };
  return Object.fromEntries(Object.entries(base).map(([k, v]) => [Number(k), problem(v)]));
}

export const bearer = [{ bearerAuth: [] }];
