/**
 * `POST /v1/process`: synchronous processing (small inputs), `Prefer: respond-async` for a job.
 *
 * Input is exactly one of:
 * - the raw request body (`Content-Type: image/*` or `application/octet-stream`, at most
 *   `OBSCURA_PROCESS_MAX_BODY_BYTES`), with `?operations=resize:width=400/format:webp` and the other
 *   options in the query string;
 * - a JSON body `{ input: { asset_id } | { url, headers? }, operations, preview?, keep_metadata?, output? }`.
 *
 * Operations are validated before anything is fetched or decoded. The answer is the output bytes
 * (`Content-Type` of the output, `Content-Security-Policy: default-src 'none'`, `nosniff`), or with
 * `output.store` a 201 and the stored output asset (encrypted, expiring after 24 h by default).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from 'typebox';
import { AppError } from '../../errors.js';
import type { ProcessResult } from '../../media/image/pipeline.js';
import type { ProcessingService } from '../../processing/service.js';
import type { JobRuntime } from '../../jobs/runtime.js';
import type { ProcessingInput } from '../../processing/processing.js';
import { principalOf, SERVER_CREDENTIALS } from '../auth.js';
import { AssetSchema, assetOut } from './assets.js';
import { bearer, ctxOf, errorResponses } from './common.js';
import { JobSchema, IdempotencyKeyHeader, ProcessBody, jobInputOf, requireInputScopes, type ProcessBodyT } from './jobs.js';
import { mediaHeaders } from './transform.js';
import { FILE_FIELD, installMultipart, readForm, refuseUnreadForm } from '../multipart.js';
import { toAppError } from '../problem.js';
import type { Readable } from 'node:stream';

const RawQuery = Type.Object(
  {
    operations: Type.Optional(Type.String({ maxLength: 4096, description: 'Raw-body form only: operations in the string form.' })),
    preview: Type.Optional(Type.Boolean()),
    keep_metadata: Type.Optional(Type.Boolean()),
    store: Type.Optional(Type.Boolean()),
    ttl_seconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 7 * 86400 })),
  },
  { additionalProperties: false },
);

/** The text fields a multipart request may send before its `file` part: the raw form's query options. */
const PROCESS_FORM_FIELDS = Object.keys(RawQuery.properties);
const ProcessForm = Type.Object(
  {
    [FILE_FIELD]: Type.String({ format: 'binary', description: 'The image (one part, after the text fields; ≤ OBSCURA_PROCESS_MAX_BODY_BYTES). Its type is sniffed from the bytes.' }),
    operations: Type.Optional(Type.String({ maxLength: 4096, description: 'Operations in the string form, e.g. `resize:width=400/format:webp`.' })),
    preview: Type.Optional(Type.Boolean()),
    keep_metadata: Type.Optional(Type.Boolean()),
    store: Type.Optional(Type.Boolean({ description: 'Store the output (201 + asset) instead of returning its bytes.' })),
    ttl_seconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 7 * 86400 })),
  },
  { additionalProperties: false },
);

/** Reads a stream into memory up to `max` bytes (413 beyond, naming the limit). */
async function readLimited(stream: Readable, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += (chunk as Buffer).length;
    if (total > max) {
      stream.destroy();
      throw new AppError('ERR_PAYLOAD_TOO_LARGE', `The image is larger than the ${max}-byte limit of POST /v1/process (OBSCURA_PROCESS_MAX_BODY_BYTES); upload it as an asset and process it by asset_id.`, {
        details: { limit: max },
      });
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}

/** Everything the processing routes need. */
/** One `POST /v1/process` request, whichever of its three forms it came in. */
interface ProcessRequest {
  input: ProcessingInput;
  operations: unknown;
  preview?: boolean | undefined;
  keepMetadata?: boolean | undefined;
  store?: boolean | undefined;
  ttlSeconds?: number | undefined;
  putUrl?: string | undefined;
}

/**
 * Reads the request's form: multipart (a `file` part after the text fields), a raw image body with
 * options in the query string, or JSON. Each form's options are validated by the same rules.
 */
async function readProcessRequest(req: FastifyRequest<{ Querystring: Static<typeof RawQuery> }>, reply: FastifyReply, maxBody: number): Promise<ProcessRequest> {
  let input: ProcessingInput;
  let operations: unknown;
  let preview: boolean | undefined;
  let keepMetadata: boolean | undefined;
  let store: boolean | undefined;
  let ttlSeconds: number | undefined;
  let putUrl: string | undefined;
  if (req.isMultipart()) {
    if (Object.keys(req.query).length > 0) throw new AppError('ERR_VALIDATION', 'With a form, send every option as a form field.', { details: { field: 'query' } });
    let form: Record<string, unknown>;
    try {
      const f = await readForm(req, { fields: PROCESS_FORM_FIELDS, maxFileBytes: maxBody });
      const bytes = await readLimited(f.file.stream, maxBody);
      await f.end();
      if (bytes.length === 0) throw new AppError('ERR_BAD_REQUEST', `The "${FILE_FIELD}" part is empty: choose a file.`, { details: { field: FILE_FIELD } });
      input = { kind: 'upload', bytes };
      form = f.fields;
    } catch (err) {
      refuseUnreadForm(req, reply);
      throw err;
    }
    // The same rules (and coercion of "true" / "600") as the raw form's query string.
    const check = req.compileValidationSchema(RawQuery);
    if (!check(form)) throw toAppError({ validation: check.errors ?? [], validationContext: 'form' }, req);
    const options = form as Static<typeof RawQuery>;
    operations = options.operations ?? '';
    ({ preview, keep_metadata: keepMetadata, store, ttl_seconds: ttlSeconds } = options);
  } else if (Buffer.isBuffer(req.body)) {
    if (req.body.length === 0) throw new AppError('ERR_BAD_REQUEST', 'Send the image as the request body.');
    input = { kind: 'upload', bytes: req.body };
    operations = req.query.operations ?? '';
    ({ preview, keep_metadata: keepMetadata, store, ttl_seconds: ttlSeconds } = req.query);
  } else {
    const body = req.body as ProcessBodyT | undefined;
    if (!body || typeof body !== 'object') throw new AppError('ERR_BAD_REQUEST', 'Send JSON or an image body.');
    if (Object.keys(req.query).length > 0) throw new AppError('ERR_VALIDATION', 'With a JSON body, put every option in the body.', { details: { field: 'query' } });
    input = jobInputOf(body.input);
    operations = body.operations;
    preview = body.preview;
    keepMetadata = body.keep_metadata;
    store = body.output?.store;
    ttlSeconds = body.output?.ttl_seconds;
    putUrl = body.output?.put_url;
  }
  return { input, operations, preview, keepMetadata, store, ttlSeconds, putUrl };
}

/** RFC 7240: does the request prefer an asynchronous answer? */
function prefersAsync(req: FastifyRequest): boolean {
  const prefer = req.headers.prefer;
  const values = Array.isArray(prefer) ? prefer : prefer ? [prefer] : [];
  return values.some((v) => v.split(',').some((p) => p.trim().split(';')[0]!.trim().toLowerCase() === 'respond-async'));
}

function idempotencyKeyOf(req: FastifyRequest): string | undefined {
  const k = req.headers['idempotency-key'];
  if (k === undefined) return undefined;
  if (typeof k !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(k)) {
    throw new AppError('ERR_VALIDATION', 'Idempotency-Key must be 1-255 visible ASCII characters.', { details: { field: 'Idempotency-Key' } });
  }
  return k;
}

/** Registers `POST /v1/process`. */
export function processRoutes(app: FastifyInstance, service: ProcessingService, runtime: JobRuntime): void {
  const maxBody = service.config.processing.maxBodyBytes;
  app.register(async (scope) => {
    // Raw image bodies are buffered up to the processing limit (small inputs by design); the
    // sniffed bytes decide the decoder, never this Content-Type.
    scope.addContentTypeParser(/^(?:image\/[a-z0-9.+-]+|application\/octet-stream)$/i, { parseAs: 'buffer', bodyLimit: maxBody }, (_req, body, done) => done(null, body));
    // `curl -F file=@photo.jpg -F operations=…` and HTML forms (src/http/multipart.ts).
    await installMultipart(scope);

    scope.post<{ Body: ProcessBodyT | Buffer; Querystring: Static<typeof RawQuery> }>('/v1/process', {
      config: { auth: true, scope: 'jobs:write', keyKinds: SERVER_CREDENTIALS, quota: { exports: true }, accepts: ['application/json', 'multipart/form-data', 'image/*', 'application/octet-stream'] },
      schema: {
        tags: ['processing'],
        summary: 'Process an image now (or as a job with Prefer: respond-async)',
        description:
          'Input: the raw body (`Content-Type: image/*` or `application/octet-stream`, operations in `?operations=`), a `multipart/form-data` form (the image in a part named `file`, ' +
          'the same options as text fields before it: `curl -F operations=resize:width=400 -F file=@photo.jpg`), or JSON (`input` = `{ asset_id }` (also needs the `assets:read` scope) or `{ url, headers? }`). ' +
          'Returns the output bytes, or 201 + the stored asset with `output.store`. With `Prefer: respond-async` (RFC 7240) answers 202 + a job (`Location: /v1/jobs/{id}`); `Idempotency-Key` is honoured then.',
        security: bearer,
        querystring: RawQuery,
        headers: Type.Object({ prefer: Type.Optional(Type.String({ description: '`respond-async` for a job.' })), 'idempotency-key': IdempotencyKeyHeader }),
        body: {
          content: {
            'application/json': { schema: ProcessBody },
            'multipart/form-data': { schema: ProcessForm },
            // Not a schema to validate (the bytes are sniffed and inspected by the pipeline); here for the docs.
            'image/*': { schema: { description: 'The image itself (≤ OBSCURA_PROCESS_MAX_BODY_BYTES); options in the query string.' } },
            'application/octet-stream': { schema: { description: 'The image itself, as for image/*.' } },
          },
        } as never,
        response: {
          200: { type: 'string', format: 'binary', description: 'The output image.' },
          201: AssetSchema,
          202: JobSchema,
          ...errorResponses({
            409: 'Idempotency-Key reused with another request (ERR_IDEMPOTENCY_MISMATCH).',
            400: 'Invalid request or form: bad operations, no file part, a second file, a field after the file, an unknown or oversized field, a malformed body (ERR_VALIDATION, ERR_BAD_REQUEST).',
            413: 'Input too large (ERR_PAYLOAD_TOO_LARGE).',
            415: 'Input type not accepted (ERR_UNSUPPORTED_MEDIA_TYPE).',
            422: 'Undecodable or over the pixel limit (ERR_UNPROCESSABLE, ERR_IMAGE_TOO_LARGE); more work than OBSCURA_PROCESS_MAX_COST allows, refused before any pixel is decoded (ERR_TOO_EXPENSIVE).',
            502: 'Remote input could not be fetched (ERR_REMOTE_FAILED).',
            503: 'Busy: the queue, or your org\'s share of it, is full, or the request waited longer than OBSCURA_PROCESS_MAX_WAIT_MS; retry after Retry-After (ERR_UNAVAILABLE, details.reason queue_full | org_queue_full | wait_timeout).',
          }),
        },
      },
      handler: async (req, reply) => {
        const p = principalOf(req);
        const { input, preview, keepMetadata, store, ttlSeconds, putUrl, ...written } = await readProcessRequest(req, reply, maxBody);
        // Presets work wherever operations do; their contents are checked like written operations.
        const operations = await service.expandPresets(p.orgId, p.appId, written.operations);
        requireInputScopes(p, input, operations);
        if (prefersAsync(req)) {
          const { job, replayed } = await runtime.jobs.create({
            orgId: p.orgId,
            appId: p.appId,
            input,
            operations,
            preview,
            keepMetadata,
            ttlSeconds,
            putUrl,
            idempotencyKey: idempotencyKeyOf(req),
            ctx: ctxOf(req),
          });
          reply.header('Preference-Applied', 'respond-async').header('Location', `/v1/jobs/${job.id}`);
          if (replayed) reply.header('Idempotent-Replayed', 'true');
          return reply.code(202).send(job);
        }
        if (putUrl !== undefined) {
          throw new AppError('ERR_VALIDATION', 'output.put_url needs an asynchronous job (send Prefer: respond-async or use POST /v1/jobs).', { details: { field: 'output.put_url' } });
        }
        const abort = new AbortController();
        // A client that goes away frees its queue slot instead of holding it until processing ends.
        const onClose = () => {
          if (!reply.raw.writableEnded) abort.abort();
        };
        reply.raw.once('close', onClose);
        let result: ProcessResult;
        try {
          result = await service.processSync({ orgId: p.orgId, appId: p.appId, keyId: p.keyId, input, operations, preview, keepMetadata, accept: req.headers.accept, signal: abort.signal });
        } finally {
          reply.raw.off('close', onClose);
        }
        if (store) {
          const asset = await service.storeOutput(p.orgId, p.appId, result, ttlSeconds, ctxOf(req));
          return reply.code(201).header('Location', `/v1/assets/${asset.id}`).send(assetOut(asset));
        }
        mediaHeaders(reply, result);
        reply.header('Cache-Control', 'no-store');
        return reply.code(200).send(result.data);
      },
    });
  });
}
