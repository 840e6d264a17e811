/**
 * The root error handler: every error leaves as RFC 9457 `application/problem+json` with a stable
 * `code`. AppErrors carry their own public message; schema validation errors are described by path
 * and rule (never Ajv's text); everything else is a generic 500 that names only the request id.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, ERROR_CODES, type ErrorCode } from '../errors.js';
import { isDatabaseUnavailable } from '../db/unavailable.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The request body types a route takes, named by its 415 answers (default `application/json`). */
    accepts?: readonly string[];
  }
}

const TITLES: Partial<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  410: 'Gone',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  416: 'Range Not Satisfiable',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** The RFC 9110 reason phrase used as a problem's `title`. */
export function titleOf(status: number): string {
  return TITLES[status] ?? 'Error';
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  request_id: string;
  [extension: string]: unknown;
}

export function problemFor(err: AppError, requestId: string): Problem {
  return {
    ...(err.details ?? {}),
    type: `urn:obscura:error:${err.code}`,
    title: titleOf(err.status),
    status: err.status,
    detail: err.publicMessage,
    code: err.code,
    request_id: requestId,
  };
}

export function sendProblem(reply: FastifyReply, err: AppError): FastifyReply {
  if (err.headers) for (const [k, v] of Object.entries(err.headers)) reply.header(k, v);
  if (err.status === 401) reply.header('WWW-Authenticate', 'Bearer realm="obscura"');
  return reply.code(err.status).type('application/problem+json; charset=utf-8').send(problemFor(err, String(reply.request.id)));
}

/**
 * What a route accepts as its request body, for 415 answers that say how to fix the request. Routes
 * with raw bodies declare `config: { accepts: [...] }`; everything else takes JSON.
 */
function acceptedTypes(req: FastifyRequest | undefined): string[] {
  const declared = (req?.routeOptions?.config as { accepts?: readonly string[] } | undefined)?.accepts;
  return declared?.length ? [...declared] : ['application/json'];
}

/**
 * The range a bounded number member of the route's schema accepts (`limit`: 1–500), so a validation
 * error on it can name the range instead of only the rule that failed. Top-level members only (query
 * parameters, path parameters, body fields); undefined for anything else.
 */
function numericRange(req: FastifyRequest | undefined, context: string, instancePath: string | undefined): { minimum?: number; maximum?: number; type: string } | undefined {
  const m = /^\/([^/]+)$/.exec(instancePath ?? '');
  if (!m) return undefined;
  const schema = (req?.routeOptions?.schema as Record<string, { properties?: Record<string, Record<string, unknown>> } | undefined> | undefined)?.[context];
  const prop = schema?.properties?.[m[1]!];
  if (!prop || (prop.type !== 'integer' && prop.type !== 'number')) return undefined;
  const out: { minimum?: number; maximum?: number; type: string } = { type: prop.type };
  if (typeof prop.minimum === 'number') out.minimum = prop.minimum;
  if (typeof prop.maximum === 'number') out.maximum = prop.maximum;
  return out.minimum === undefined && out.maximum === undefined ? undefined : out;
}

function rangeText(r: { minimum?: number; maximum?: number; type: string }): string {
  const what = r.type === 'integer' ? 'an integer' : 'a number';
  if (r.minimum !== undefined && r.maximum !== undefined) return `${what} from ${r.minimum} to ${r.maximum}`;
  return r.minimum !== undefined ? `${what} of at least ${r.minimum}` : `${what} of at most ${r.maximum}`;
}

/** Maps framework errors (body parsing, validation, limits) to our codes; never reuses their text. */
export function toAppError(err: unknown, req?: FastifyRequest): AppError {
  if (err instanceof AppError) return err;
  const fe = err as FastifyError & { validation?: Array<{ instancePath?: string; keyword?: string; params?: Record<string, unknown> }>; validationContext?: string };
  if (fe && Array.isArray(fe.validation)) {
    const errors = fe.validation.slice(0, 10).map((v) => {
      const path = `${fe.validationContext ?? 'body'}${v.instancePath ?? ''}`;
      const extra = v.keyword === 'additionalProperties' ? `/${String(v.params?.additionalProperty ?? '')}` : v.keyword === 'required' ? `/${String(v.params?.missingProperty ?? '')}` : '';
      // A bounded number (a list's `limit`, a TTL) names its whole range, whichever bound was crossed.
      const range = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'type', 'multipleOf'].includes(v.keyword ?? '') ? numericRange(req, fe.validationContext ?? 'body', v.instancePath) : undefined;
      return range ? { path: path + extra, rule: v.keyword ?? 'invalid', allowed: range } : { path: path + extra, rule: v.keyword ?? 'invalid' };
    });
    const first = errors[0];
    const msg = first
      ? first.rule === 'additionalProperties'
        ? `Unknown property ${first.path}.`
        : first.rule === 'required'
          ? `Missing required property ${first.path}.`
          : 'allowed' in first && first.allowed
            ? `${first.path} must be ${rangeText(first.allowed)}.`
            : `${first.path} is invalid (${first.rule}).`
      : 'The request is invalid.';
    return new AppError('ERR_VALIDATION', msg, { details: { errors } });
  }
  const code = fe?.code;
  const status = fe?.statusCode;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE' || status === 413) {
    const limit = req?.routeOptions?.bodyLimit;
    return new AppError(
      'ERR_PAYLOAD_TOO_LARGE',
      `The request body is larger than${limit ? ` the ${limit}-byte limit of` : ' the limit for'} this route. Send files as a resumable upload (tus at /v1/uploads) or through a presigned URL (POST /v1/assets/upload-url).`,
      { details: limit ? { limit } : undefined },
    );
  }
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || status === 415) {
    const accepted = acceptedTypes(req);
    // Echo the sent type only when it looks like one (the header is the client's free text).
    const sent = /^[\w.+-]{1,64}\/[\w.+-]{1,64}$/.test(String(req?.headers['content-type'] ?? '').split(';')[0]!.trim()) ? String(req!.headers['content-type']).split(';')[0]!.trim() : '';
    return new AppError('ERR_UNSUPPORTED_MEDIA_TYPE', `${sent ? `Content-Type ${sent} is` : 'This Content-Type is'} not accepted here; send ${accepted.join(' or ')}.`, { details: { accepted } });
  }
  if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (status === 400 && /JSON/i.test(String(fe?.message)))) {
    return new AppError('ERR_BAD_REQUEST', 'The request body is not valid JSON.');
  }
  if (code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') return new AppError('ERR_BAD_REQUEST', 'The Content-Length does not match the body.');
  if (status === 429) return new AppError('ERR_RATE_LIMITED', 'Too many requests.');
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const byStatus: Partial<Record<number, ErrorCode>> = { 404: 'ERR_NOT_FOUND', 405: 'ERR_METHOD_NOT_ALLOWED', 413: 'ERR_PAYLOAD_TOO_LARGE', 415: 'ERR_UNSUPPORTED_MEDIA_TYPE' };
    const mapped = byStatus[status];
    return mapped ? new AppError(mapped, 'The request cannot be served as sent.') : new AppError('ERR_BAD_REQUEST', 'The request is invalid.');
  }
  if (isDatabaseUnavailable(err)) {
    return new AppError('ERR_DEPENDENCY_UNAVAILABLE', 'The database did not answer in time; retry after the Retry-After delay.', {
      cause: err,
      details: { dependency: 'database' },
      headers: { 'Retry-After': '5' },
    });
  }
  return new AppError('ERR_INTERNAL', 'Something went wrong on our side; quote the request id when reporting it.', { cause: err });
}

/**
 * Fastify's `frameworkErrors` option: the errors its router raises before any route or hook runs (a
 * URL with malformed percent-encoding, a path parameter over the router's length limit) leave as
 * problem+json too, not as Fastify's own JSON shape.
 */
export function frameworkProblem(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const message =
    err.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? 'A path segment is longer than any identifier this API takes (100 characters).'
      : err.code === 'FST_ERR_BAD_URL'
        ? 'The URL is not valid: it contains malformed percent-encoding.'
        : 'The request is invalid.';
  return sendProblem(reply, new AppError('ERR_BAD_REQUEST', message));
}

/** Installs the one error handler and the not-found handler. */
export function installProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const appErr = toAppError(err, request);
    if (appErr.status >= 500) request.log.error({ err, code: appErr.code }, 'request failed');
    else request.log.info({ code: appErr.code, status: appErr.status }, 'request refused');
    return sendProblem(reply, appErr);
  });
  app.setNotFoundHandler((request, reply) => sendProblem(reply, new AppError('ERR_NOT_FOUND', 'No such route.')));
  // A plugin that answers a bad request itself (@fastify/cors's strict preflight check sends a
  // text/plain 400) still leaves as problem+json; no route of ours sends a text error.
  app.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode !== 400 || !String(reply.getHeader('content-type') ?? '').startsWith('text/plain')) return payload;
    const preflight = payload === 'Invalid Preflight Request';
    const err = new AppError('ERR_BAD_REQUEST', preflight ? 'A CORS preflight (OPTIONS with an Origin) must name its method in Access-Control-Request-Method.' : 'The request is invalid.');
    reply.type('application/problem+json; charset=utf-8');
    return JSON.stringify(problemFor(err, String(request.id)));
  });
}

/** The problem+json schema used in every route's error responses (OpenAPI). */
export const PROBLEM_SCHEMA = {
  $id: 'Problem',
  type: 'object',
  description: 'RFC 9457 problem details with a stable machine-readable `code`.',
  required: ['type', 'title', 'status', 'detail', 'code', 'request_id'],
  properties: {
    type: { type: 'string', examples: ['urn:obscura:error:ERR_KEY_REVOKED'] },
    title: { type: 'string', examples: ['Unauthorized'] },
    status: { type: 'integer', examples: [401] },
    detail: { type: 'string', examples: ['The API key has been revoked.'] },
    code: { type: 'string', enum: Object.keys(ERROR_CODES), examples: ['ERR_KEY_REVOKED'] },
    request_id: { type: 'string' },
  },
  additionalProperties: true,
} as const;
