/**
 * Assets over HTTP: one-request upload, presigned direct upload, metadata, delete, signed download
 * URLs and the download itself. Registered as an encapsulated plugin so that the raw-body parser
 * (uploads stream straight into the encrypting ingest, never buffered) applies only here.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from 'typebox';
import type { DownloadSettings, UploadSettings } from '../../assets/settings.js';
import { PassThrough, type Readable } from 'node:stream';
import { AppError } from '../../errors.js';
import { ingest, getAsset, deleteAsset, listAssets, ASSET_ORDER, type Asset, type AssetDeps, type AssetFilter } from '../../assets/assets.js';
import { deleteMatching, normaliseTags, updateLabels, MAX_BULK_DELETE, MAX_METADATA_BYTES, MAX_METADATA_KEYS, MAX_METADATA_VALUE_LENGTH, MAX_TAG_LENGTH, MAX_TAGS, METADATA_KEY_PATTERN, TAG_PATTERN } from '../../assets/labels.js';
import { listErrorResponses, pageQuery, pageReply, pageRequest, pageSchema } from '../pagination.js';
import type { UrlSigner, Disposition } from '../../assets/signing.js';
import { createUploadIntent, completeUploadIntent, receiveDirectUpload, type UploadIntentDeps } from '../../assets/direct.js';
import { openAssetStream, parseRange, readWholeAsset, SMALL_ASSET_BYTES } from '../../assets/read.js';
import { auditIntegrityFailure, createDownloadUrl, isPackagePlaylist, resolveSignedDownload, signPlaylist, type DownloadDeps, type ResolvedDownloads } from '../../assets/downloads.js';
import { getApp } from '../../tenants/index.js';
import { requireScopes, type Principal } from '../../auth/keys.js';
import { authorizeRead, principalOf, SERVER_CREDENTIALS, type AuthDeps } from '../auth.js';
import { DateTime, Uuid, bearer, ctxOf, errorResponses } from './common.js';
import { FILE_FIELD, MULTIPART_OVERHEAD_BYTES, installMultipart, readForm, refuseUnreadForm } from '../multipart.js';

export const AssetId = Type.String({ pattern: '^ast_[0-9A-Za-z]{22}$', description: 'An asset id (≥ 128 random bits).', examples: ['ast_4Xg0bQ2mZk9TtP1vYc8LrA'] });
const AssetParams = Type.Object({ id: AssetId }, { additionalProperties: false });

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** What ffprobe said of an uploaded video (issue 11, item 2). */
export const VideoFactsSchema = Type.Object(
  {
    container: Type.String({ examples: ['mov,mp4,m4a,3gp,3g2,mj2'] }),
    duration_seconds: Type.Number(),
    width: Type.Integer({ description: 'Coded frame width (before display rotation).' }),
    height: Type.Integer(),
    rotation: Type.Integer({ description: 'Display rotation, degrees clockwise (0, 90, 180, 270).' }),
    fps: Type.Number(),
    video_codec: Type.String({ examples: ['h264'] }),
    pixel_format: Nullable(Type.String()),
    bit_rate: Nullable(Type.Integer({ description: 'Overall, bits per second.' })),
    video_bit_rate: Nullable(Type.Integer()),
    audio: Nullable(Type.Object({ codec: Type.String(), channels: Type.Integer(), sample_rate: Type.Integer(), bit_rate: Nullable(Type.Integer()) }, { additionalProperties: false })),
    color: Type.Object({ primaries: Nullable(Type.String()), transfer: Nullable(Type.String()), space: Nullable(Type.String()), range: Nullable(Type.String()), hdr: Type.Boolean() }, { additionalProperties: false }),
    streams: Type.Integer(),
  },
  { additionalProperties: false, description: 'Probed at upload; null for images, and for videos stored while the server had no ffprobe.' },
);

export const AssetSchema = Type.Object(
  {
    id: AssetId,
    app_id: Uuid,
    kind: Type.Union([Type.Literal('upload'), Type.Literal('output')]),
    content_type: Type.String({ description: 'Sniffed from the bytes, never taken from the client.', examples: ['image/png'] }),
    size: Type.Integer(),
    sha256: Type.String({ description: 'SHA-256 of the plaintext, hex.' }),
    width: Type.Union([Type.Integer(), Type.Null()]),
    height: Type.Union([Type.Integer(), Type.Null()]),
    video: Type.Union([VideoFactsSchema, Type.Null()]),
    filename: Type.Union([Type.String(), Type.Null()]),
    tags: Type.Array(Type.String(), { description: 'Labels set with PATCH /v1/assets/{id}; filter with ?tag=.' }),
    metadata: Type.Record(Type.String(), Type.Unsafe<string | number | boolean>({ type: ['string', 'number', 'boolean'] }), { description: 'A small map set with PATCH /v1/assets/{id} (JSON merge patch).' }),
    legal_hold: Type.Boolean({ description: 'Under legal hold: cannot be deleted, and does not expire while held.' }),
    created_at: DateTime,
    expires_at: Type.Union([DateTime, Type.Null()], { description: 'When retention removes it; null when kept forever or while under legal hold.' }),
  },
  { additionalProperties: false },
);

export const assetOut = (a: Asset) => ({
  id: a.id,
  app_id: a.appId,
  kind: a.kind,
  content_type: a.mime,
  size: a.size,
  sha256: a.sha256,
  width: a.width,
  height: a.height,
  video: a.video,
  filename: a.filename,
  tags: a.tags,
  metadata: a.metadata,
  legal_hold: a.legalHold,
  created_at: a.createdAt,
  expires_at: a.expiresAt,
});

export interface AssetRouteDeps extends AssetDeps, UploadIntentDeps {
  signer: UrlSigner;
  auth: AuthDeps;
  /** The slice of the configuration these routes read. */
  config: { readonly publicUrl: string; readonly uploads: UploadSettings; readonly downloads: DownloadSettings };
  /** This node's resolved signed downloads (issue 12, item 3). */
  downloadCache?: ResolvedDownloads | undefined;
}

/** Publishable keys upload only when their app allows browser uploads (origin already checked). */
export async function assertUploadAllowed(deps: AssetRouteDeps, p: Principal): Promise<void> {
  if (p.kind !== 'publishable') return;
  const { settings } = await deps.db.withTenant(p.orgId, (trx) => getApp(trx, p.orgId, p.appId));
  if (!settings.allow_browser_uploads) {
    throw new AppError('ERR_ROLE_FORBIDDEN', 'This app does not accept uploads with publishable keys (enable allow_browser_uploads).');
  }
}

/** The filters of the asset list, shared by bulk deletion. */
const AssetFilterProps = {
  type: Type.Optional(Type.String({ pattern: '^[a-z]+(/([a-z0-9.+-]+|\\*))?$', maxLength: 100, description: 'A media type (`image/png`) or a family (`image`, `image/*`, `video`).' })),
  kind: Type.Optional(Type.Union([Type.Literal('upload'), Type.Literal('original'), Type.Literal('output')], { description: '`upload` (alias `original`): what clients uploaded; `output`: processing results.' })),
  created_after: Type.Optional(Type.String({ format: 'date-time', description: 'Created at or after this instant.' })),
  created_before: Type.Optional(Type.String({ format: 'date-time', description: 'Created before this instant.' })),
  tag: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_TAGS * (MAX_TAG_LENGTH + 1), description: 'Carries every one of these tags (comma-separated).', examples: ['summer,hero'] })),
  min_size: Type.Optional(Type.Integer({ minimum: 0, description: 'At least this many bytes.' })),
  max_size: Type.Optional(Type.Integer({ minimum: 0, description: 'At most this many bytes.' })),
  filename: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'The filename contains this text (case-insensitive).' })),
};
const ListQuery = pageQuery(AssetFilterProps);

/** The filter as the core takes it; a bad tag in `tag` is ERR_VALIDATION naming it. */
function filterOf(q: { type?: string | undefined; kind?: 'upload' | 'original' | 'output' | undefined; created_after?: string | undefined; created_before?: string | undefined; tag?: string | undefined; min_size?: number | undefined; max_size?: number | undefined; filename?: string | undefined }): AssetFilter {
  return {
    type: q.type,
    kind: q.kind === 'original' ? 'upload' : q.kind,
    createdAfter: q.created_after,
    createdBefore: q.created_before,
    tags: q.tag === undefined ? undefined : normaliseTags(q.tag.split(',').map((t) => t.trim()).filter(Boolean)),
    minSize: q.min_size,
    maxSize: q.max_size,
    filename: q.filename,
  };
}

const LabelBody = Type.Object(
  {
    tags: Type.Optional(Type.Array(Type.String({ pattern: TAG_PATTERN, maxLength: MAX_TAG_LENGTH }), { maxItems: MAX_TAGS, description: `Replaces the tags (at most ${MAX_TAGS}; letters and digits, then also _ . : / -).` })),
    metadata: Type.Optional(
      // A list of types, not a union: the body validator coerces types, and with a union it would turn
      // 400 and true into "400" and "true"; with a type list it keeps any value whose type is listed.
      Type.Record(Type.String({ pattern: METADATA_KEY_PATTERN }), Type.Unsafe<string | number | boolean | null>({ type: ['string', 'number', 'boolean', 'null'], maxLength: MAX_METADATA_VALUE_LENGTH }), {
        description: `A JSON merge patch of the metadata: a key set to null is removed, others are set (at most ${MAX_METADATA_KEYS} keys, ${MAX_METADATA_BYTES} bytes).`,
      }),
    ),
    legal_hold: Type.Optional(Type.Boolean({ description: 'Place (true) or release (false) a legal hold; needs the assets:delete scope as well. A held asset cannot be deleted and does not expire.' })),
  },
  { additionalProperties: false, minProperties: 1 },
);
const BulkDeleteBody = Type.Object(
  {
    ...AssetFilterProps,
    all: Type.Optional(Type.Boolean({ description: 'Required (true) when no filter is named: deletes every asset of the org.' })),
    dry_run: Type.Optional(Type.Boolean({ default: true, description: 'Default true: answer what would be deleted and change nothing. Send false to delete.' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_BULK_DELETE, default: 100, description: 'At most this many per call, oldest first; `has_more` says to call again.' })),
  },
  { additionalProperties: false },
);
const BulkDeleteResponse = Type.Object(
  {
    dry_run: Type.Boolean(),
    matched: Type.Integer({ description: 'Live assets matching the filter (all of them, not only this call).' }),
    ids: Type.Array(AssetId, { description: 'Deleted by this call (dry run: that this call would delete).' }),
    has_more: Type.Boolean(),
    held: Type.Integer({ description: 'Matching assets under legal hold: never deleted, not counted in `matched`.' }),
  },
  { additionalProperties: false },
);

const UploadQuery = Type.Object({ filename: Type.Optional(Type.String({ maxLength: 255 })) }, { additionalProperties: false });
/** The text fields a multipart upload may send before its `file` part. */
const UPLOAD_FORM_FIELDS = ['filename'] as const;
const UploadForm = Type.Object(
  {
    [FILE_FIELD]: Type.String({ format: 'binary', description: 'The file (one part, after the text fields). Its type is sniffed from the bytes; the part\'s Content-Type is ignored.' }),
    filename: Type.Optional(Type.String({ maxLength: 255, description: 'Display name; default the file part\'s filename (or ?filename=).' })),
  },
  { additionalProperties: false },
);
const RAW_FILE = { description: 'The file itself as the body; its type is sniffed from the bytes, never taken from Content-Type.' };
const UrlBody = Type.Object(
  {
    ttl_seconds: Type.Optional(Type.Integer({ minimum: 1, description: 'Lifetime; default 24 h, capped by OBSCURA_URL_MAX_TTL_SECONDS.' })),
    disposition: Type.Optional(Type.Union([Type.Literal('inline'), Type.Literal('attachment')], { default: 'inline' })),
  },
  { additionalProperties: false },
);
const UrlResponse = Type.Object({ url: Type.String(), expires_at: DateTime }, { additionalProperties: false });
const IntentBody = Type.Object(
  {
    content_type: Type.String({ pattern: '^[a-z]+/[a-z0-9.+-]+$', maxLength: 100 }),
    content_length: Type.Integer({ minimum: 1 }),
    filename: Type.Optional(Type.String({ maxLength: 255 })),
  },
  { additionalProperties: false },
);
const IntentResponse = Type.Object(
  {
    id: Type.String(),
    method: Type.Literal('PUT'),
    url: Type.String({ description: 'Send the bytes here with exactly `headers`. Single use.' }),
    headers: Type.Record(Type.String(), Type.String()),
    expires_at: DateTime,
    complete_url: Type.Union([Type.String(), Type.Null()], { description: 'POST here after the PUT (S3 only); null when the PUT itself completes the upload.' }),
  },
  { additionalProperties: false },
);
const IntentParams = Type.Object({ id: Type.String({ pattern: '^upl_[0-9A-Za-z]{22}$' }) }, { additionalProperties: false });
const SignedQuery = Type.Object(
  { exp: Type.Optional(Type.String()), kid: Type.Optional(Type.String()), sig: Type.Optional(Type.String()), dl: Type.Optional(Type.Literal('1')) },
  { additionalProperties: false },
);

/**
 * A refused upload's body may still be arriving. Reading up to a small amount lets well-behaved
 * clients see our answer instead of a reset; beyond that, the connection is closed after the reply.
 */
export function refuseUnreadBody(req: FastifyRequest, reply: FastifyReply): void {
  const body = req.body as Readable | undefined;
  if (!body || typeof body.resume !== 'function') return;
  reply.header('Connection', 'close');
  // Already being read (ingest sniffed it and is discarding the rest), or finished.
  if (body.readableEnded || body.listenerCount('readable') > 0 || body.listenerCount('data') > 0) return;
  let drained = 0;
  body.on('data', (c: Buffer) => {
    drained += c.length;
    if (drained > 1024 * 1024) body.destroy();
  });
  body.on('error', () => undefined);
  body.resume();
}

function mediaHeaders(reply: FastifyReply): void {
  reply.header('X-Robots-Tag', 'noindex, nofollow');
  reply.header('Referrer-Policy', 'no-referrer');
  reply.header('Content-Security-Policy', "default-src 'none'; sandbox");
  reply.header('X-Content-Type-Options', 'nosniff');
  reply.header('Cross-Origin-Resource-Policy', 'cross-origin');
}

function contentDisposition(disposition: Disposition, a: Asset): string {
  const name = a.filename ?? `${a.id}.${a.ext}`;
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/["\\%]/g, '_');
  return `${disposition}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

export function assetRoutes(app: FastifyInstance, deps: AssetRouteDeps): void {
  const downloadDeps = downloadDepsOf(deps);
  app.register(async (scope) => {
    // Raw bodies for uploads: handed to ingest as a stream (sniffed, limited, hashed, encrypted on the fly).
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    // `curl -F file=@photo.jpg` and HTML forms: the file part streams into the same ingest. A scope
    // of its own, so that only this route takes forms (the presigned PUT takes the file's bytes).
    scope.register(async (formScope) => {
      await installMultipart(formScope);

      formScope.post<{ Querystring: Static<typeof UploadQuery> }>('/v1/assets', {
        config: { auth: true, scope: 'assets:write' },
        schema: {
          tags: ['assets'],
          summary: 'Upload a small file in one request (raw body or multipart form; the type is sniffed from the bytes)',
          description:
            'Send the file as the raw body (`curl --data-binary @photo.jpg -H "Content-Type: application/octet-stream"`), or as `multipart/form-data` with the file in a part named `file` ' +
            '(`curl -F file=@photo.jpg`; text fields such as `filename` before it, one file per request, nothing after it). Either way the bytes are sniffed, checked against the app\'s ' +
            'allowed types, checked to be a valid file of that type, limited to OBSCURA_MAX_SIMPLE_UPLOAD_BYTES, hashed and encrypted as they stream in. Larger files: tus at /v1/uploads or POST /v1/assets/upload-url.',
          security: bearer,
          querystring: UploadQuery,
          body: {
            content: {
              'multipart/form-data': { schema: UploadForm },
              'application/octet-stream': { schema: RAW_FILE },
              'image/*': { schema: RAW_FILE },
              'video/*': { schema: RAW_FILE },
            },
          } as never,
          response: {
            201: AssetSchema,
            ...errorResponses({
              400: 'Invalid request or form: no file part, a second file, a field after the file, an unknown or oversized field, a malformed body (ERR_VALIDATION, ERR_BAD_REQUEST).',
              413: 'Too large (ERR_PAYLOAD_TOO_LARGE).',
              415: 'Type not accepted (ERR_UNSUPPORTED_MEDIA_TYPE).',
              422: 'Not a valid file of its type: truncated, corrupt or disguised (ERR_MEDIA_INVALID), or over the pixel limit (ERR_IMAGE_TOO_LARGE).',
            }),
          },
        },
        handler: async (req, reply) => {
          const p = principalOf(req);
          await assertUploadAllowed(deps, p);
          const maxBytes = Math.min(deps.config.uploads.maxSimpleBytes, deps.config.uploads.maxBytes);
          const form = req.isMultipart();
          const declared = Number(req.headers['content-length']);
          if (Number.isFinite(declared) && declared > deps.config.uploads.maxSimpleBytes + (form ? MULTIPART_OVERHEAD_BYTES : 0)) {
            throw new AppError('ERR_PAYLOAD_TOO_LARGE', `One-request uploads are limited to ${deps.config.uploads.maxSimpleBytes} bytes; use tus or a presigned upload.`);
          }
          try {
            let body: Readable;
            let filename = req.query.filename;
            let beforeCommit: (() => Promise<void>) | undefined;
            if (form) {
              const f = await readForm(req, { fields: UPLOAD_FORM_FIELDS, maxFileBytes: maxBytes });
              if (f.fields.filename !== undefined && f.fields.filename.length > 255) {
                throw new AppError('ERR_VALIDATION', 'The form field "filename" is longer than 255 characters.', { details: { field: 'filename' } });
              }
              body = f.file.stream;
              filename = f.fields.filename ?? filename ?? f.file.filename;
              // The asset is committed only once the form has ended with nothing after its file.
              beforeCommit = f.end;
            } else {
              if (!req.body) throw new AppError('ERR_BAD_REQUEST', 'Send the file as the request body.');
              body = req.body as Readable;
            }
            const asset = await ingest(deps, { orgId: p.orgId, appId: p.appId, kind: 'upload', body, maxBytes, filename, ctx: ctxOf(req), beforeCommit });
            return reply.code(201).send(assetOut(asset));
          } catch (err) {
            if (form) refuseUnreadForm(req, reply);
            else refuseUnreadBody(req, reply);
            throw err;
          }
        },
      });
    });

    scope.put<{ Params: Static<typeof IntentParams>; Querystring: Static<typeof SignedQuery> }>('/v1/uploads/direct/:id', {
      schema: {
        tags: ['assets'],
        summary: 'Presigned direct upload target (local store): PUT the bytes with the signed URL',
        params: IntentParams,
        querystring: SignedQuery,
        response: { 201: AssetSchema, ...errorResponses({ 410: 'Expired (ERR_URL_EXPIRED).', 409: 'Already used (ERR_CONFLICT).' }) },
      },
      handler: async (req, reply) => {
        try {
          const asset = await receiveDirectUpload(deps, req.params.id, req.query, {
            body: req.body as Readable,
            contentType: String(req.headers['content-type'] ?? ''),
            contentLength: Number(req.headers['content-length']),
            ip: req.ip,
            requestId: String(req.id),
          });
          return reply.code(201).send(assetOut(asset));
        } catch (err) {
          refuseUnreadBody(req, reply);
          throw err;
        }
      },
    });
  });

  app.post<{ Body: Static<typeof IntentBody> }>('/v1/assets/upload-url', {
    config: { auth: true, scope: 'assets:write' },
    schema: {
      tags: ['assets'],
      summary: 'Get a presigned, single-use direct upload URL bound to size and type (15 min)',
      security: bearer,
      body: IntentBody,
      response: { 201: IntentResponse, ...errorResponses({ 413: 'Larger than the app or server limit (ERR_PAYLOAD_TOO_LARGE).', 415: 'Type not accepted by this app (ERR_UNSUPPORTED_MEDIA_TYPE).', 429: 'Rate limited (ERR_RATE_LIMITED), or the app or org already holds its limit of unfinished uploads or of bytes they declare (ERR_UPLOAD_LIMIT; `limit` and `setting` name which).' }) },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      await assertUploadAllowed(deps, p);
      const intent = await createUploadIntent(deps, p, req.body, ctxOf(req));
      return reply.code(201).header('Cache-Control', 'no-store').send(intent);
    },
  });

  app.post<{ Params: Static<typeof IntentParams> }>('/v1/assets/upload-url/:id/complete', {
    config: { auth: true, scope: 'assets:write' },
    schema: {
      tags: ['assets'],
      summary: 'Finalise a presigned S3 upload: sniff, validate, encrypt into the store, remove the staged object',
      security: bearer,
      params: IntentParams,
      response: { 201: AssetSchema, ...errorResponses({ 409: 'Already used (ERR_CONFLICT).', 410: 'The upload URL expired (ERR_URL_EXPIRED).', 415: 'Type not accepted (ERR_UNSUPPORTED_MEDIA_TYPE).' }) },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      // Finalising is uploading: a publishable key needs the app's allow_browser_uploads here too.
      await assertUploadAllowed(deps, p);
      const asset = await completeUploadIntent(deps, p, req.params.id, ctxOf(req));
      return reply.code(201).send(assetOut(asset));
    },
  });

  app.get<{ Querystring: Static<typeof ListQuery> }>('/v1/assets', {
    config: { auth: true, scope: 'assets:read' },
    schema: {
      tags: ['assets'],
      summary: "List the org's assets, newest first (cursor-paginated; filter by type, kind, creation time, tags, size, filename)",
      description: 'Deleted and expired assets are not listed. Pages with `limit` and `cursor`; pass `next_cursor` back as `cursor` with the same filters.',
      security: bearer,
      querystring: ListQuery,
      response: { 200: pageSchema(AssetSchema), ...listErrorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      const q = req.query;
      const filter = filterOf(q);
      const scope = { list: 'assets', orgId: p.orgId, filter: { ...filter } as Record<string, unknown> };
      const page = pageRequest(req, q, scope, ASSET_ORDER);
      const result = await deps.db.withTenant(p.orgId, (trx) => listAssets(trx, p.orgId, filter, page, deps.now?.() ?? Date.now()));
      return pageReply(req, result, scope, assetOut);
    },
  });

  app.get<{ Params: Static<typeof AssetParams> }>('/v1/assets/:id', {
    config: { auth: true, scope: 'assets:read' },
    schema: { tags: ['assets'], summary: "Read an asset's metadata", security: bearer, params: AssetParams, response: { 200: AssetSchema, ...errorResponses() } },
    handler: async (req) => {
      const p = principalOf(req);
      return assetOut(await deps.db.withTenant(p.orgId, (trx) => getAsset(trx, p.orgId, req.params.id)));
    },
  });

  app.patch<{ Params: Static<typeof AssetParams>; Body: Static<typeof LabelBody> }>('/v1/assets/:id', {
    config: { auth: true, scope: 'assets:write', keyKinds: SERVER_CREDENTIALS },
    schema: {
      tags: ['assets'],
      summary: "Change an asset's tags (replaced), metadata (JSON merge patch) or legal hold; audited",
      security: bearer,
      params: AssetParams,
      body: LabelBody,
      response: { 200: AssetSchema, ...errorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      // A hold decides whether the asset can be deleted, so changing one takes the delete scope too.
      if (req.body.legal_hold !== undefined) requireScopes(p, ['assets:delete']);
      return assetOut(await updateLabels(deps, p.orgId, req.params.id, { tags: req.body.tags, metadata: req.body.metadata, legalHold: req.body.legal_hold }, ctxOf(req)));
    },
  });

  app.post<{ Body: Static<typeof BulkDeleteBody> }>('/v1/assets/bulk-delete', {
    // Destructive like DELETE /v1/assets/{id}: the same scope, server credentials only.
    config: { auth: true, scope: 'assets:delete', keyKinds: SERVER_CREDENTIALS },
    schema: {
      tags: ['assets'],
      summary: 'Delete the assets matching a filter, oldest first, with a dry run (the default)',
      description: 'Takes the list filters. `dry_run` defaults to true: send `"dry_run": false` to delete. Each deletion is audited like DELETE /v1/assets/{id}. An empty filter needs `"all": true`.',
      security: bearer,
      body: BulkDeleteBody,
      response: { 200: BulkDeleteResponse, ...errorResponses() },
    },
    handler: async (req) => {
      const p = principalOf(req);
      const b = req.body;
      const r = await deleteMatching(deps, p.orgId, filterOf(b), { dryRun: b.dry_run ?? true, limit: b.limit ?? 100, all: b.all === true }, ctxOf(req));
      return { dry_run: r.dryRun, matched: r.matched, ids: r.ids, has_more: r.hasMore, held: r.held };
    },
  });

  app.delete<{ Params: Static<typeof AssetParams> }>('/v1/assets/:id', {
    // Destructive: its own scope, never implied by assets:write (an uploader key must not erase).
    config: { auth: true, scope: 'assets:delete', keyKinds: SERVER_CREDENTIALS },
    schema: { tags: ['assets'], summary: 'Delete an asset: its encrypted blob and its record (audited)', security: bearer, params: AssetParams, response: { 204: Type.Null(), ...errorResponses({ 409: 'Under legal hold (ERR_LEGAL_HOLD): release it first.' }) } },
    handler: async (req, reply) => {
      const p = principalOf(req);
      await deleteAsset(deps, p.orgId, req.params.id, ctxOf(req));
      return reply.code(204).send();
    },
  });

  app.post<{ Params: Static<typeof AssetParams>; Body: Static<typeof UrlBody> | undefined }>('/v1/assets/:id/url', {
    config: { auth: true, scope: 'assets:read' },
    schema: {
      tags: ['assets'],
      summary: 'Create a signed, expiring download URL',
      security: bearer,
      params: AssetParams,
      body: UrlBody,
      response: { 201: UrlResponse, ...errorResponses() },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const signed = await createDownloadUrl(downloadDeps, p.orgId, req.params.id, { ttlSeconds: req.body?.ttl_seconds, disposition: req.body?.disposition });
      return reply.code(201).header('Cache-Control', 'no-store').send({ url: signed.url, expires_at: signed.expiresAt });
    },
  });

  app.get<{ Params: Static<typeof AssetParams>; Querystring: Static<typeof SignedQuery> }>('/v1/files/:id', {
    schema: {
      tags: ['assets'],
      summary: 'Download through a signed URL (Range supported)',
      params: AssetParams,
      querystring: SignedQuery,
      response: {
        200: { type: 'string', format: 'binary', description: 'The decrypted bytes.' },
        206: { type: 'string', format: 'binary', description: 'The requested byte range.' },
        304: Type.Null(),
        ...errorResponses({ 403: 'Bad signature (ERR_SIGNATURE_INVALID) or missing bearer for authorized URLs.', 410: 'Expired (ERR_URL_EXPIRED).', 416: 'Range not satisfiable (ERR_RANGE_NOT_SATISFIABLE).' }),
      },
    },
    handler: async (req, reply) => download(req, reply, deps),
  });
}

async function download(req: FastifyRequest<{ Params: Static<typeof AssetParams>; Querystring: Static<typeof SignedQuery> }>, reply: FastifyReply, deps: AssetRouteDeps) {
  const disposition: Disposition = req.query.dl === '1' ? 'attachment' : 'inline';
  const nowMs = deps.now?.() ?? Date.now();
  const nowS = Math.floor(nowMs / 1000);
  const signed = { assetId: req.params.id, exp: req.query.exp, kid: req.query.kid, sig: req.query.sig, disposition };
  const { asset, requiresCredential, cached } = await resolveSignedDownload(downloadDepsOf(deps), signed, nowMs);
  if (requiresCredential) {
    // "Authorized" URLs: the link alone is not enough; the caller must also hold a credential of the org.
    await authorizeRead(req, deps.auth, asset.orgId);
  }

  const remaining = Math.max(0, Number(req.query.exp) - nowS);
  if (isPackagePlaylist(asset)) {
    // An HLS playlist of a package: its parts' signed URLs expire with this one (issue 11).
    const chunks: Buffer[] = [];
    for await (const c of await openAssetStream(deps, asset)) chunks.push(c as Buffer);
    const text = await signPlaylist(downloadDepsOf(deps), asset, Buffer.concat(chunks).toString('utf8'), Number(req.query.exp));
    mediaHeaders(reply);
    reply.header('Cache-Control', `private, max-age=${remaining}`);
    reply.raw.once('finish', () => req.server.usage?.record({ orgId: asset.orgId, appId: asset.appId, bytesOut: Buffer.byteLength(text) }));
    return reply.code(200).type(asset.mime).send(text);
  }
  const etag = `"${asset.sha256}"`;
  mediaHeaders(reply);
  reply.header('ETag', etag);
  reply.header('Accept-Ranges', 'bytes');
  reply.header('Cache-Control', `private, max-age=${remaining}`);
  reply.header('Content-Disposition', contentDisposition(disposition, asset));
  if (req.headers['if-none-match'] === etag) return reply.code(304).send();

  const range = parseRange(req.headers.range, asset.size);
  if (range === 'unsatisfiable') {
    throw new AppError('ERR_RANGE_NOT_SATISFIABLE', 'The requested range is outside the file.', { headers: { 'Content-Range': `bytes */${asset.size}` } });
  }
  // Signed links carry no credential, so the perimeter does not meter them: count the bytes of every
  // completed download against the asset's app here (issue 9, item 7).
  const bytesOut = range ? range.end - range.start + 1 : asset.size;
  if (!range && asset.size <= SMALL_ASSET_BYTES) {
    // A small file: one store read and one decryption into memory, then one write (issue 12, item 3).
    let body: Buffer | null;
    try {
      body = await readWholeAsset(deps, asset);
    } catch (err) {
      throw await readFailure(deps, req, asset, cached, signed, err);
    }
    if (body) {
      reply.raw.once('finish', () => req.server.usage?.record({ orgId: asset.orgId, appId: asset.appId, bytesOut }));
      return reply.type(asset.mime).header('Content-Length', String(asset.size)).send(body);
    }
  }
  let stream: Readable;
  try {
    stream = await openAssetStream(deps, asset, range ?? undefined);
  } catch (err) {
    throw await readFailure(deps, req, asset, cached, signed, err);
  }
  // The response streams from `guarded`, which `pipe` feeds but does not pass errors to: Fastify cuts
  // the connection when the stream it was given fails, so the failure reaches it only after the audit
  // entry is committed, and whoever sees the broken transfer also finds the record (a race once the
  // embedded database moved to its own thread). A client that goes away stops the decryption.
  const guarded = new PassThrough();
  guarded.once('close', () => {
    if (!stream.destroyed) stream.destroy();
  });
  stream.on('error', (err) => {
    // Headers are gone: cut the connection so the client sees a broken transfer, never bad bytes.
    req.log.error({ err, asset: asset.id }, 'integrity failure while streaming');
    stream.unpipe(guarded);
    void auditIntegrity(deps, asset, req).finally(() => guarded.destroy(err));
  });
  stream.pipe(guarded);
  reply.type(asset.mime);
  reply.raw.once('finish', () => req.server.usage?.record({ orgId: asset.orgId, appId: asset.appId, bytesOut }));
  if (range) {
    reply.code(206).header('Content-Range', `bytes ${range.start}-${range.end}/${asset.size}`).header('Content-Length', String(range.end - range.start + 1));
  } else {
    reply.header('Content-Length', String(asset.size));
  }
  return reply.send(guarded);
}

/**
 * The error to answer when an asset's stored bytes could not be opened. A row from this node's cache
 * may be stale: the asset may have been deleted or its org erased on another node since, and those
 * remove the blobs before they answer, so a missing or unreadable blob is checked against the
 * database (cache dropped) before it is called damage: gone there means 404 at once, on every node.
 */
async function readFailure(deps: AssetRouteDeps, req: FastifyRequest, asset: Asset, cached: boolean, signed: Parameters<typeof resolveSignedDownload>[1], err: unknown): Promise<unknown> {
  if (!(err instanceof AppError) || (err.code !== 'ERR_NOT_FOUND' && err.code !== 'ERR_INTEGRITY')) return err;
  if (cached) {
    deps.downloadCache?.forget(asset.id);
    try {
      await resolveSignedDownload(downloadDepsOf(deps), signed, deps.now?.() ?? Date.now());
    } catch (again) {
      if (again instanceof AppError && again.code === 'ERR_NOT_FOUND') return again;
      throw again;
    }
  }
  if (err.code === 'ERR_INTEGRITY') await auditIntegrity(deps, asset, req);
  return err;
}

async function auditIntegrity(deps: AssetRouteDeps, asset: Asset, req: FastifyRequest): Promise<void> {
  try {
    await auditIntegrityFailure(deps, asset, { ip: req.ip, requestId: String(req.id) });
  } catch (err) {
    req.log.error({ err }, 'could not audit an integrity failure');
  }
}

function downloadDepsOf(deps: AssetRouteDeps): DownloadDeps {
  return { db: deps.db, now: deps.now, signer: deps.signer, publicUrl: deps.config.publicUrl, downloads: deps.config.downloads, cache: deps.downloadCache };
}
