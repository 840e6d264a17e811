/**
 * tus 1.0 resumable uploads at `/v1/uploads` (see `src/assets/tus.ts` for what happens to the bytes).
 *
 * Fastify authenticates (`onRequest`, before any body byte is read) and checks the browser-upload
 * policy; then the reply is hijacked and the request handed to `@tus/server` with the principal in an
 * AsyncLocalStorage context. An encapsulated content-type parser leaves `application/offset+octet-stream`
 * bodies unread, so tus streams them straight into the encrypting store.
 *
 * Responses keep tus's status codes (404, 409, 410, 413, 460 Checksum Mismatch) and carry an RFC 9457
 * problem+json body with our stable `code` (tus clients read only the status). The asset an upload
 * became is returned in `Obscura-Asset-Id` on the completing PATCH (or creation-with-upload POST) and
 * on every later HEAD of the upload, until it expires (24 h after creation).
 */
import { finished } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { AppError } from '../../errors.js';
import { ASSET_ID_HEADER, CHECKSUM_ALGORITHMS, createTusUploads, parseUploadChecksum, toUploadError, type TusRequestContext, type TusUploads } from '../../assets/tus.js';
import { problemFor } from '../problem.js';
import { assertUploadAllowed, type AssetRouteDeps } from './assets.js';
import { bearer, ctxOf, errorResponses } from './common.js';

const TusHeaders = Type.Object(
  {
    'tus-resumable': Type.Optional(Type.String({ description: 'Must be `1.0.0` (except on OPTIONS).' })),
    'upload-checksum': Type.Optional(Type.String({ description: '`sha1 <base64>` or `sha256 <base64>` of this request body (checksum extension).' })),
  },
  { additionalProperties: true },
);
const UploadParams = Type.Object({ id: Type.String({ maxLength: 64, description: 'Upload id (`tus_` + 22 base62 characters, ≥ 128 random bits).' }) }, { additionalProperties: false });
const empty = (description: string) => Type.Null({ description });

/**
 * The request body as a web stream for `handleWeb`, like Node's `Readable.toWeb(raw)` (pause when the
 * queue is full, resume on pull, close/error with the request, destroy it on cancel) but without the
 * copy `toWeb` makes of every chunk (Node 20 copies each Buffer "to detach it from the pool"; HTTP
 * body chunks are slices of per-read socket buffers, never of the shared pool). That copy doubled
 * the bytes allocated per upload, and V8 answers external allocations with full GCs.
 */
function bodyStream(raw: FastifyRequest['raw']): ReadableStream<Uint8Array> {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let canceled = false;
  raw.pause();
  const onData = (chunk: Buffer) => {
    controller.enqueue(chunk);
    if ((controller.desiredSize ?? 0) <= 0) raw.pause();
  };
  const cleanup = finished(raw, (error) => {
    cleanup();
    // A legacy stream may emit `error` again after finishing.
    raw.on('error', () => undefined);
    raw.off('data', onData);
    if (error) {
      controller.error(error.code === 'ERR_STREAM_PREMATURE_CLOSE' ? Object.assign(new Error('The request was aborted.', { cause: error }), { name: 'AbortError' }) : error);
      return;
    }
    if (!canceled) controller.close();
  });
  raw.on('data', onData);
  return new ReadableStream<Uint8Array>(
    {
      start: (c) => {
        controller = c;
      },
      pull: () => {
        raw.resume();
      },
      cancel: (reason) => {
        canceled = true;
        raw.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    // Same bound as toWeb: the request's own highWaterMark, in bytes.
    new ByteLengthQueuingStrategy({ highWaterMark: raw.readableHighWaterMark }),
  );
}

/** The status a tus error answer had, as our error (for answers tus produced without an exception). */
function statusError(status: number): AppError {
  if (status === 412) return new AppError('ERR_TUS_VERSION', 'Send Tus-Resumable: 1.0.0.');
  return toUploadError({ status_code: status, body: '' });
}

async function handle(tus: TusUploads, deps: AssetRouteDeps, req: FastifyRequest, reply: FastifyReply): Promise<void> {
  const principal = req.principal ?? undefined;
  const rc: TusRequestContext = {
    principal,
    ctx: principal ? ctxOf(req) : { actor: { type: 'anonymous' }, ip: req.ip, requestId: String(req.id) },
    raw: req.raw,
  };
  if (principal) {
    await assertUploadAllowed(deps, principal);
    const checksum = req.headers['upload-checksum'];
    rc.checksum = parseUploadChecksum(Array.isArray(checksum) ? checksum.join(',') : checksum);
  }

  reply.hijack();
  const raw = req.raw;
  const res = reply.raw;
  const headers = new Headers();
  for (let i = 0; i + 1 < raw.rawHeaders.length; i += 2) headers.append(raw.rawHeaders[i]!, raw.rawHeaders[i + 1]!);
  const method = raw.method ?? 'GET';
  const hasBody = method === 'POST' || method === 'PATCH';
  const request = new Request(new URL(req.url, 'http://obscura.invalid'), {
    method,
    headers,
    body: hasBody ? bodyStream(raw) : null,
    // @ts-expect-error -- undici requires `duplex` for streamed request bodies; lib.dom lacks it.
    duplex: 'half',
  });
  // tus-node-server reads `runtime.node.req` to end the body gracefully when the client disconnects
  // (what arrived is kept, so the client resumes from there) instead of failing the whole chunk.
  Object.defineProperty(request, 'runtime', { value: { name: 'node', node: { req: raw, res } } });

  let response: Response;
  try {
    response = await tus.run(rc, () => tus.server.handleWeb(request));
  } catch (err) {
    rc.error = toUploadError(err);
    req.log.error({ err }, 'tus handler failed');
    response = new Response(null, { status: rc.error.status });
  }

  const status = response.status;
  const out: Record<string, string | number | string[]> = {};
  for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) out[k.toLowerCase()] = v as string | number | string[];
  response.headers.forEach((v, k) => {
    // CORS is the perimeter's (one policy for the whole API, src/perimeter/cors.ts), not tus's.
    if (!k.toLowerCase().startsWith('access-control-')) out[k.toLowerCase()] = v;
  });
  const exposed = out['access-control-expose-headers'];
  if (typeof exposed === 'string' && !exposed.toLowerCase().includes(ASSET_ID_HEADER.toLowerCase())) out['access-control-expose-headers'] = `${exposed}, ${ASSET_ID_HEADER}`;
  delete out['content-length'];
  delete out['content-type'];
  out['x-request-id'] = String(req.id);
  if (rc.assetId) out[ASSET_ID_HEADER.toLowerCase()] = rc.assetId;
  if (method === 'OPTIONS') out['tus-checksum-algorithm'] = CHECKSUM_ALGORITHMS.join(',');
  let body = '';
  if (status >= 400) {
    const err = rc.error ?? statusError(status);
    for (const [k, v] of Object.entries(err.headers ?? {})) out[k.toLowerCase()] = v;
    body = JSON.stringify(problemFor(err, String(req.id)));
    out['content-type'] = 'application/problem+json; charset=utf-8';
    if (err.status >= 500) req.log.error({ err: err.cause ?? err, code: err.code }, 'upload request failed');
    else req.log.info({ code: err.code, status }, 'upload request refused');
  } else if (response.body) {
    await response.body.cancel().catch(() => undefined);
  }
  if (method !== 'HEAD' && status !== 204 && status !== 304) out['content-length'] = Buffer.byteLength(body);
  if (method === 'HEAD') body = '';
  try {
    if (status === 460) res.writeHead(status, 'Checksum Mismatch', out);
    else res.writeHead(status, out);
    res.end(body || undefined);
  } catch (err) {
    // The client is gone; nothing left to tell it.
    req.log.info({ err }, 'could not send the upload response');
    res.destroy();
  }
}

/**
 * Mounts the tus endpoint: `OPTIONS|POST /v1/uploads`, `OPTIONS|HEAD|PATCH|DELETE /v1/uploads/{id}`.
 * Every request but OPTIONS needs a credential with `assets:write` (publishable keys only when the
 * app allows browser uploads; auth has already pinned them to their origins). Returns the tus
 * capability (for `sweepExpiredUploads` wiring and tests).
 */
export function uploadRoutes(app: FastifyInstance, deps: AssetRouteDeps): TusUploads {
  // The same checks as every other upload path: the pixel limit, and the probe of a video (a tus upload
  // of a video used to be stored without its ffprobe facts: no dimensions, duration or codecs).
  const tus = createTusUploads({ db: deps.db, store: deps.store, keyring: deps.keyring, config: deps.config, now: deps.now, log: app.log, maxInputPixels: deps.maxInputPixels, videoProbe: deps.videoProbe, metadataPolicy: deps.metadataPolicy });
  const handler = (req: FastifyRequest, reply: FastifyReply) => handle(tus, deps, req, reply);
  const auth = { auth: true, scope: 'assets:write' } as const;

  app.register(async (scope) => {
    // Bodies stay unread for tus: it streams them into the encrypting store chunk by chunk.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));

    for (const url of ['/v1/uploads', '/v1/uploads/:id']) {
      scope.route({
        method: 'OPTIONS',
        url,
        schema: {
          tags: ['uploads'],
          summary: 'tus discovery: Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm (no credential needed)',
          response: { 204: empty('Capabilities in the headers.') },
        },
        handler,
      });
    }
    scope.route({
      method: 'POST',
      url: '/v1/uploads',
      config: auth,
      schema: {
        tags: ['uploads'],
        summary: 'Create a resumable upload (tus creation; with a body: creation-with-upload). Upload-Length is required.',
        security: bearer,
        headers: TusHeaders,
        response: {
          201: empty('Created; `Location` is the upload URL, `Upload-Expires` its deadline, `Obscura-Asset-Id` the asset when the body completed it.'),
          ...errorResponses({
            413: 'Larger than the app allows (ERR_PAYLOAD_TOO_LARGE).',
            415: 'Completed with a type the app does not accept (ERR_UNSUPPORTED_MEDIA_TYPE).',
            429: 'Rate limited (ERR_RATE_LIMITED), or the app or org already holds its limit of unfinished uploads or of bytes they declare (ERR_UPLOAD_LIMIT; `limit` and `setting` name which).',
            460: 'Body does not match Upload-Checksum (ERR_CHECKSUM_MISMATCH).',
          }),
        },
      },
      handler,
    });
    scope.route({
      method: ['HEAD', 'PATCH', 'DELETE'],
      url: '/v1/uploads/:id',
      config: auth,
      schema: {
        tags: ['uploads'],
        summary: 'HEAD: current Upload-Offset (and Obscura-Asset-Id once complete). PATCH: append a chunk at Upload-Offset. DELETE: terminate.',
        security: bearer,
        params: UploadParams,
        headers: TusHeaders,
        response: {
          200: empty('HEAD: Upload-Offset, Upload-Length, Upload-Metadata, and Obscura-Asset-Id once the upload became an asset.'),
          204: empty('PATCH: accepted, new Upload-Offset (Obscura-Asset-Id when this chunk completed the upload). DELETE: terminated.'),
          ...errorResponses({
            409: 'Upload-Offset does not match (ERR_UPLOAD_OFFSET_MISMATCH).',
            410: 'Expired (ERR_UPLOAD_EXPIRED).',
            413: 'More bytes than Upload-Length (ERR_PAYLOAD_TOO_LARGE).',
            415: 'Completed with a type the app does not accept; the upload is discarded (ERR_UNSUPPORTED_MEDIA_TYPE).',
            460: 'Chunk does not match Upload-Checksum; discarded, offset unchanged (ERR_CHECKSUM_MISMATCH).',
          }),
        },
      },
      handler,
    });
  });
  return tus;
}
