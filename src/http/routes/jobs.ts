/** `POST /v1/jobs` (with `Idempotency-Key`) and `GET /v1/jobs/{id}`. */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import { AppError } from '../../errors.js';
import type { ProcessingService } from '../../processing/service.js';
import type { JobRuntime } from '../../jobs/runtime.js';
import { principalOf, SERVER_CREDENTIALS } from '../auth.js';
import { DateTime, bearer, ctxOf, errorResponses } from './common.js';
import type { ProcessingInput } from '../../processing/processing.js';
import { requireScope, type Principal } from '../../auth/keys.js';
import { OPERATIONS } from '../../media/image/operations/registry.js';
import { OPERATION_STEP_TITLE } from '../openapi-operations.js';
import { JOB_ORDER } from '../../jobs/jobs.js';
import { listErrorResponses, pageQuery, pageReply, pageRequest, pageSchema } from '../pagination.js';

const JobStatus = Type.Union([Type.Literal('queued'), Type.Literal('running'), Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('cancelled')]);
const ListQuery = pageQuery({
  status: Type.Optional(JobStatus),
  created_after: Type.Optional(Type.String({ format: 'date-time', description: 'Created at or after this instant.' })),
  created_before: Type.Optional(Type.String({ format: 'date-time', description: 'Created before this instant.' })),
});

export const JobId = Type.String({ pattern: '^job_[0-9A-Za-z]{22}$', description: 'A job id.', examples: ['job_7bQ1mZk9TtP1vYc8LrA4Xg'] });
const JobParams = Type.Object({ id: JobId }, { additionalProperties: false });

/** Forwarded request headers for a remote input: at most 20, values are never stored or logged. */
export const ForwardHeaders = Type.Record(Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]{1,64}$' }), Type.String({ maxLength: 8192 }), {
  maxProperties: 20,
  description: "The customer's temporary credentials for their storage (e.g. Authorization). Forwarded on this fetch only (same origin, redirects excluded); never stored or logged.",
});

/** The input: exactly one of an asset id or a remote URL. */
export const ProcessInput = Type.Union(
  [
    Type.Object({ asset_id: Type.String({ pattern: '^ast_[0-9A-Za-z]{22}$', description: 'An asset of your org.' }) }, { additionalProperties: false }),
    Type.Object(
      {
        url: Type.String({ maxLength: 8192, description: 'https URL fetched through the SSRF-safe fetcher (public addresses only, redirects re-checked, size and time bounded).' }),
        headers: Type.Optional(ForwardHeaders),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'Exactly one of `asset_id` or `url`.' },
);

/** Operations in either spelling. */
// The array branch comes first: with Ajv's `coerceTypes: 'array'` a failing scalar branch would
// otherwise unwrap a one-element array before the array branch sees it.
export const Operations = Type.Union(
  [
    Type.Array(Type.Union([Type.Object({ op: Type.String() }, { additionalProperties: true, title: OPERATION_STEP_TITLE }), Type.String({ maxLength: 4096 })]), { maxItems: 20, description: 'JSON form: `[{ "op": "resize", "width": 400 }]`.' }),
    Type.String({ maxLength: 4096, description: 'String form: `resize:width=400,fit=cover/format:webp`.' }),
  ],
  { description: 'Validated against the operation registry before any fetch or decode (400 naming the operation).' },
);

export const OutputOptions = Type.Object(
  {
    store: Type.Optional(Type.Boolean({ description: 'Store the output as an encrypted asset (201 + asset) instead of returning its bytes. Jobs always store.' })),
    ttl_seconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 7 * 86400, description: 'Output retention (default 86400 = 24 h).' })),
    put_url: Type.Optional(Type.String({ maxLength: 8192, description: 'Async only: also PUT the output to this presigned https URL (checked like remote inputs).' })),
  },
  { additionalProperties: false },
);

/** The JSON request of `POST /v1/process` and `POST /v1/jobs`. */
export const ProcessBody = Type.Object(
  {
    input: ProcessInput,
    operations: Operations,
    preview: Type.Optional(Type.Boolean({ description: 'Fast, downscaled (≤ 512 px), visibly watermarked preview.' })),
    keep_metadata: Type.Optional(Type.Boolean({ description: 'Keep EXIF/XMP/IPTC (including GPS). Default false: stripped.' })),
    output: Type.Optional(OutputOptions),
  },
  {
    additionalProperties: false,
    examples: [{ input: { asset_id: 'ast_4Xg0bQ2mZk9TtP1vYc8LrA' }, operations: 'resize:width=400/format:webp', output: { store: true } }],
  },
);
export type ProcessBodyT = Static<typeof ProcessBody>;

/**
 * Processing an asset reads its content (the output is returned, stored or PUT to `output.put_url`),
 * so an `asset_id` input, or an operation that names another asset (a watermark), needs `assets:read`
 * besides `jobs:write`; an uploaded or remote input brings its own bytes. Call it with the final input
 * and operations, before the service (docs/security-model.md, "Scopes").
 */
export function requireInputScopes(p: Principal, input: ProcessingInput, operations: unknown): void {
  if (input.kind === 'asset' || namesAssetReader(operations)) requireScope(p, 'assets:read');
}

/**
 * Operations stored for later use (presets) that name another asset need `assets:read` too: a preset
 * would otherwise launder a watermark read for any caller who may apply presets.
 */
export function requireOperationScopes(p: Principal, operations: unknown): void {
  if (namesAssetReader(operations)) requireScope(p, 'assets:read');
}

/**
 * Whether the operations as written name an operation that reads another asset. A lenient scan of
 * names only (validation is the service's job): an unknown or malformed entry is not a reader.
 * Presets expand server-side to operations saved by a credential that held assets:read for them.
 */
function namesAssetReader(operations: unknown): boolean {
  const reads = (name: unknown) => typeof name === 'string' && OPERATIONS.get(name)?.readsAssets === true;
  const inString = (s: string) => s.split('/').some((segment) => reads(segment.split(':', 1)[0]));
  if (typeof operations === 'string') return inString(operations);
  if (!Array.isArray(operations)) return false;
  return operations.some((item) => (typeof item === 'string' ? inString(item) : item !== null && typeof item === 'object' && reads((item as { op?: unknown }).op)));
}

/** Converts the JSON input to the service's form. */
export function jobInputOf(input: Static<typeof ProcessInput>): ProcessingInput {
  return 'asset_id' in input ? { kind: 'asset', assetId: input.asset_id } : { kind: 'url', url: input.url, headers: input.headers };
}


export const IdempotencyKeyHeader = Type.Optional(
  Type.String({ maxLength: 255, description: 'Same key + same request within 24 h → the same job; same key + a different request → 409 ERR_IDEMPOTENCY_MISMATCH. Keys are per org.' }),
);

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const JobSchema = Type.Object(
  {
    id: JobId,
    status: JobStatus,
    created_at: DateTime,
    started_at: Nullable(DateTime),
    finished_at: Nullable(DateTime),
    attempts: Type.Integer({ description: 'Attempts started so far (retries after failures or a lost worker).' }),
    input: Type.Object(
      {
        source: Type.Union([Type.Literal('asset'), Type.Literal('url'), Type.Literal('upload')]),
        asset_id: Type.String({ description: 'The input asset (remote and raw inputs are copied, encrypted, when the job is created).' }),
        url: Nullable(Type.String({ description: 'Remote inputs: the URL with its query redacted.' })),
      },
      { additionalProperties: false },
    ),
    operations: Type.String({ description: 'Canonical string form of the operations.' }),
    preview: Type.Boolean(),
    keep_metadata: Type.Boolean(),
    output: Type.Object(
      {
        asset_id: Nullable(Type.String({ description: 'The output asset (encrypted; expires after ttl_seconds).' })),
        ttl_seconds: Type.Integer(),
        put_url: Nullable(Type.String({ description: '"[redacted]" when a presigned PUT target was given.' })),
        put_status: Nullable(Type.Integer({ description: 'HTTP status of the PUT to put_url.' })),
      },
      { additionalProperties: false },
    ),
    error: Nullable(Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false })),
    media: Type.Union([Type.Literal('image'), Type.Literal('video')], { description: 'The input\'s media kind; video jobs run on their own queue.' }),
    progress: Nullable(
      Type.Object(
        {
          percent: Type.Number({ minimum: 0, maximum: 100 }),
          frames: Type.Integer({ description: 'Frames written so far.' }),
          fps: Type.Number({ description: 'Frames per second being processed.' }),
          eta_seconds: Nullable(Type.Integer({ description: 'Seconds left at the current speed.' })),
        },
        { additionalProperties: false, description: 'Video jobs: updated about every second while running; 100 when succeeded.' },
      ),
    ),
  },
  { additionalProperties: false },
);

/** Registers the job routes. */
export function jobRoutes(app: FastifyInstance, service: ProcessingService, runtime: JobRuntime): void {
  app.post<{ Body: ProcessBodyT }>('/v1/jobs', {
    config: { auth: true, scope: 'jobs:write', keyKinds: SERVER_CREDENTIALS, quota: { exports: true } },
    schema: {
      tags: ['processing'],
      summary: 'Create a processing job (asynchronous; outputs are stored as encrypted assets)',
      description: 'The same body as POST /v1/process (an `asset_id` input also needs the `assets:read` scope). Answers 202 with the job and `Location: /v1/jobs/{id}`. Remote inputs are fetched now, so forwarded headers are used once and never stored.',
      security: bearer,
      headers: Type.Object({ 'idempotency-key': IdempotencyKeyHeader }),
      body: ProcessBody,
      response: {
        202: JobSchema,
        ...errorResponses({
          409: 'Idempotency-Key reused with another request (ERR_IDEMPOTENCY_MISMATCH).',
          413: 'Input too large (ERR_PAYLOAD_TOO_LARGE).',
          502: 'Remote input could not be fetched (ERR_REMOTE_FAILED).',
        }),
      },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const key = req.headers['idempotency-key'];
      if (key !== undefined && (typeof key !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(key))) {
        throw new AppError('ERR_VALIDATION', 'Idempotency-Key must be 1-255 visible ASCII characters.', { details: { field: 'Idempotency-Key' } });
      }
      const b = req.body;
      const input = jobInputOf(b.input);
      // Presets work wherever operations do; their contents are checked like written operations.
      const operations = await service.expandPresets(p.orgId, p.appId, b.operations);
      requireInputScopes(p, input, operations);
      const { job, replayed } = await runtime.jobs.create({
        orgId: p.orgId,
        appId: p.appId,
        input,
        operations,
        preview: b.preview,
        keepMetadata: b.keep_metadata,
        ttlSeconds: b.output?.ttl_seconds,
        putUrl: b.output?.put_url,
        idempotencyKey: key,
        ctx: ctxOf(req),
      });
      reply.header('Location', `/v1/jobs/${job.id}`);
      if (replayed) reply.header('Idempotent-Replayed', 'true');
      return reply.code(202).send(job);
    },
  });

  app.get<{ Querystring: Static<typeof ListQuery> }>('/v1/jobs', {
    config: { auth: true, scope: 'jobs:read' },
    schema: {
      tags: ['processing'],
      summary: "List the org's jobs, newest first (cursor-paginated; filter by status and creation time)",
      security: bearer,
      querystring: ListQuery,
      response: { 200: pageSchema(JobSchema), ...listErrorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      const q = req.query;
      const filter = { status: q.status, createdAfter: q.created_after, createdBefore: q.created_before };
      const scope = { list: 'jobs', orgId: p.orgId, filter };
      const result = await runtime.jobs.list(p.orgId, filter, pageRequest(req, q, scope, JOB_ORDER));
      return pageReply(req, result, scope, (j) => j);
    },
  });

  app.post<{ Params: Static<typeof JobParams> }>('/v1/jobs/:id/cancel', {
    config: { auth: true, scope: 'jobs:write', keyKinds: SERVER_CREDENTIALS },
    schema: {
      tags: ['processing'],
      summary: 'Cancel a queued or running job (a running ffmpeg is killed within about a second; no output is kept)',
      security: bearer,
      params: JobParams,
      response: { 200: JobSchema, ...errorResponses({ 409: 'The job already ended (ERR_CONFLICT).' }) },
    },
    handler: async (req) => {
      const p = principalOf(req);
      return runtime.jobs.cancel(p.orgId, req.params.id, ctxOf(req));
    },
  });

  app.get<{ Params: Static<typeof JobParams> }>('/v1/jobs/:id', {
    config: { auth: true, scope: 'jobs:read' },
    schema: { tags: ['processing'], summary: 'Read a job: status, output asset, error code', security: bearer, params: JobParams, response: { 200: JobSchema, ...errorResponses() } },
    handler: async (req) => {
      const p = principalOf(req);
      return runtime.jobs.get(p.orgId, req.params.id);
    },
  });
}
