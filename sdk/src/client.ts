/**
 * `Obscura`: the typed client. One method per API operation, grouped by resource (`obscura.assets.get`,
 * `obscura.keys.roll`, ...). Browser-safe: `fetch`, `URL`, WebCrypto and tus-js-client only.
 */
import { LicensesResource } from './licenses.js';
import { Credentials, basicAuthorization, type ClientCredentials, type CredentialOptions, type TokenResponse } from './auth.js';
import { ObscuraError, usageError } from './errors.js';
import { DEFAULT_RETRY, Transport, type FetchLike, type RequestSpec, type RetryOptions } from './http.js';
import { tusUpload, type TransferProgress, type TusUploadOptions, type TusUploadResult, type UploadSource } from './tus.js';
import type {
  ApiKey,
  App,
  Asset,
  AssetListQuery,
  AssetLabelChange,
  BulkDeleteInput,
  BulkDeleteResult,
  AuditEntry,
  AuditPage,
  AuditQuery,
  CreateAppInput,
  CreatedKey,
  CreatedOAuthClient,
  CreateKeyInput,
  CreateUploadUrlInput,
  DateTime,
  OAuthClient,
  Page,
  RolledKey,
  Scope,
  SignedUrl,
  SignedUrlInput,
  UpdateAppInput,
  UploadIntent,
  WhoAmI,
} from './types.js';
import { JobsResource, ProcessResource, UsageResource, WebhooksResource, TransformResource, abortableSleep } from './processing.js';
import { MAX_PAGE_LIMIT, allItems, eachItem } from './pages.js';

/** Options of {@link Obscura}. */
export interface ObscuraOptions extends CredentialOptions {
  /** The API's base URL, e.g. `https://media.example.com` (no trailing `/v1`). */
  baseUrl: string;
  /** A `fetch` implementation (default: the global one). Used for every call except tus uploads. */
  fetch?: FetchLike | undefined;
  /** Extra attempts on 429/503/network errors for idempotent or keyed requests (default 2; 0 disables). */
  retries?: number | undefined;
  /** Fine-tune backoff (base/cap delays, longest Retry-After honoured). */
  retry?: Partial<Omit<RetryOptions, 'retries'>> | undefined;
  /** Per-attempt timeout in ms until the response starts (default 60000). */
  timeoutMs?: number | undefined;
  /**
   * Allow a secret (`obs_sk_`) or restricted (`obs_rk_`) key, or client credentials, in a browser.
   * Default false: the constructor refuses, because anything shipped to a browser is public. Use a
   * publishable key (`obs_pk_`) there.
   */
  dangerouslyAllowSecretInBrowser?: boolean | undefined;
  /** Sent as User-Agent outside browsers. */
  userAgent?: string | undefined;
  /** Clock for token expiry (ms since epoch); default `Date.now`. */
  now?: (() => number) | undefined;
}

/** Per-call options every method accepts. */
export interface CallOptions {
  signal?: AbortSignal | undefined;
  /** Use this Idempotency-Key instead of a random one (unsafe methods), e.g. to dedupe across process restarts. */
  idempotencyKey?: string | undefined;
  timeoutMs?: number | undefined;
}

/** A download in progress: headers known, body streaming. */
export interface Download {
  /** Sniffed media type of the asset. */
  contentType: string;
  /** Bytes to come (Content-Length), when known. */
  size: number | undefined;
  /** The body (with progress reported as it is read). */
  body: ReadableStream<Uint8Array>;
  /** Reads the whole body into memory. */
  bytes(): Promise<Uint8Array>;
}

/** Options of {@link AssetsResource.download}. */
export interface DownloadOptions extends CallOptions {
  onProgress?: ((p: TransferProgress) => void) | undefined;
  /** `bytes=start-end` style range (inclusive). */
  range?: { start: number; end?: number } | undefined;
}

const isBrowser = () => typeof window !== 'undefined' && typeof document !== 'undefined';

function spec(base: Omit<RequestSpec, 'signal' | 'timeoutMs'>, o?: CallOptions): RequestSpec {
  return { ...base, signal: o?.signal, timeoutMs: o?.timeoutMs, ...(o?.idempotencyKey ? { idempotencyKey: o.idempotencyKey } : {}) };
}

const enc = encodeURIComponent;

/** Wraps a body so reads report progress. */
export function withProgress(body: ReadableStream<Uint8Array>, total: number | undefined, onProgress?: (p: TransferProgress) => void): ReadableStream<Uint8Array> {
  if (!onProgress) return body;
  let bytes = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        bytes += chunk.byteLength;
        onProgress({ bytes, total });
        ctl.enqueue(chunk);
      },
    }),
  );
}

/** Reads a stream fully. */
export async function readAll(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    n += value.byteLength;
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}

function toBody(source: Blob | Uint8Array | ArrayBuffer | ReadableStream<Uint8Array> | string): BodyInit {
  return source as BodyInit;
}

/** `/v1/apps` */
export class AppsResource {
  constructor(private readonly t: Transport) {}
  /** `GET /v1/apps`: all the org's apps (every page). Scope `apps:read`. */
  async list(o?: CallOptions): Promise<App[]> {
    return allItems((cursor) => this.t.json<Page<App>>(spec({ method: 'GET', path: '/v1/apps', query: { limit: MAX_PAGE_LIMIT, cursor } }, o)));
  }
  /** `POST /v1/apps`. Scope `apps:write`. */
  create(input: CreateAppInput, o?: CallOptions): Promise<App> {
    return this.t.json(spec({ method: 'POST', path: '/v1/apps', json: input }, o));
  }
  /** `GET /v1/apps/{id}`. */
  get(id: string, o?: CallOptions): Promise<App> {
    return this.t.json(spec({ method: 'GET', path: `/v1/apps/${enc(id)}` }, o));
  }
  /** `PATCH /v1/apps/{id}`: rename or change policy. Scope `apps:write`. */
  update(id: string, input: UpdateAppInput, o?: CallOptions): Promise<App> {
    return this.t.json(spec({ method: 'PATCH', path: `/v1/apps/${enc(id)}`, json: input }, o));
  }
}

/** API keys: `/v1/apps/{id}/keys`, `/v1/keys/{id}`. Scope `keys:manage`. */
export class KeysResource {
  constructor(private readonly t: Transport) {}
  /** `GET /v1/apps/{appId}/keys`: all of them, every page (never the secrets). */
  async list(appId: string, o?: CallOptions): Promise<ApiKey[]> {
    return allItems((cursor) => this.t.json<Page<ApiKey>>(spec({ method: 'GET', path: `/v1/apps/${enc(appId)}/keys`, query: { limit: MAX_PAGE_LIMIT, cursor } }, o)));
  }
  /** `POST /v1/apps/{appId}/keys`: the returned `secret` is shown once. */
  create(appId: string, input: CreateKeyInput, o?: CallOptions): Promise<CreatedKey> {
    return this.t.json(spec({ method: 'POST', path: `/v1/apps/${enc(appId)}/keys`, json: input }, o));
  }
  /** `GET /v1/keys/{id}`. */
  get(id: string, o?: CallOptions): Promise<ApiKey> {
    return this.t.json(spec({ method: 'GET', path: `/v1/keys/${enc(id)}` }, o));
  }
  /**
   * `POST /v1/keys/{id}/roll`: a replacement now; the old key works for `grace_period_seconds`, or with
   * 0 (the default) until the replacement is first used. If the answer is lost, call `roll` again: the
   * unused replacement is revoked and a new one returned. To stop a leaked key at once: roll, then `revoke`.
   */
  roll(id: string, input: { grace_period_seconds?: number } = {}, o?: CallOptions): Promise<RolledKey> {
    return this.t.json(spec({ method: 'POST', path: `/v1/keys/${enc(id)}/roll`, json: input }, o));
  }
  /** `DELETE /v1/keys/{id}`: revoke immediately. */
  revoke(id: string, o?: CallOptions): Promise<ApiKey> {
    return this.t.json(spec({ method: 'DELETE', path: `/v1/keys/${enc(id)}` }, o));
  }
}

/** OAuth2 clients: `/v1/apps/{id}/oauth-clients`, `/v1/oauth-clients/{id}`, and the token endpoint. */
export class OAuthResource {
  constructor(private readonly t: Transport) {}
  /** `POST /v1/apps/{appId}/oauth-clients`: `client_secret` is shown once. */
  createClient(appId: string, input: { name?: string; scopes?: Scope[] } = {}, o?: CallOptions): Promise<CreatedOAuthClient> {
    return this.t.json(spec({ method: 'POST', path: `/v1/apps/${enc(appId)}/oauth-clients`, json: input }, o));
  }
  /** `GET /v1/apps/{appId}/oauth-clients`: all of them, every page. */
  async listClients(appId: string, o?: CallOptions): Promise<OAuthClient[]> {
    return allItems((cursor) => this.t.json<Page<OAuthClient>>(spec({ method: 'GET', path: `/v1/apps/${enc(appId)}/oauth-clients`, query: { limit: MAX_PAGE_LIMIT, cursor } }, o)));
  }
  /** `DELETE /v1/oauth-clients/{id}`: no new tokens from now. */
  revokeClient(id: string, o?: CallOptions): Promise<OAuthClient> {
    return this.t.json(spec({ method: 'DELETE', path: `/v1/oauth-clients/${enc(id)}` }, o));
  }
  /** `POST /v1/oauth/token` (client_secret_basic). The client calls this itself when built with `clientCredentials`. */
  token(cc: ClientCredentials, o?: CallOptions): Promise<TokenResponse> {
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (cc.scope !== undefined) form.set('scope', typeof cc.scope === 'string' ? cc.scope : cc.scope.join(' '));
    return this.t.json(
      spec(
        {
          method: 'POST',
          path: '/v1/oauth/token',
          auth: false,
          body: form.toString(),
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization(cc.clientId, cc.clientSecret) },
        },
        o,
      ),
    );
  }
  /** `GET /.well-known/oauth-authorization-server` (RFC 8414). */
  metadata(o?: CallOptions): Promise<Record<string, unknown>> {
    return this.t.json(spec({ method: 'GET', path: '/.well-known/oauth-authorization-server', auth: false }, o));
  }
  /** `GET /.well-known/jwks.json`. */
  jwks(o?: CallOptions): Promise<{ keys: Array<Record<string, string>> }> {
    return this.t.json(spec({ method: 'GET', path: '/.well-known/jwks.json', auth: false }, o));
  }
}

/** Assets: upload, presigned upload, metadata, delete, signed URLs, download. */
export class AssetsResource {
  constructor(private readonly t: Transport) {}

  /**
   * `POST /v1/assets`: a small file in one request (default server limit 25 MB). The type is sniffed
   * by the server from the bytes. Use {@link Obscura.uploads} for large files or flaky links.
   */
  upload(source: Blob | Uint8Array | ArrayBuffer | string, opts: CallOptions & { filename?: string | undefined } = {}): Promise<Asset> {
    const filename = opts.filename ?? (typeof File !== 'undefined' && source instanceof File ? source.name : undefined);
    return this.t.json(spec({ method: 'POST', path: '/v1/assets', query: { filename }, body: toBody(source), headers: { 'content-type': 'application/octet-stream' } }, opts));
  }

  /**
   * `GET /v1/assets`: one page of the org's assets, newest first, filtered by type, kind and creation
   * time. Pass `next_cursor` back as `cursor` (same filters) for the next page. Scope `assets:read`.
   */
  list(query: AssetListQuery = {}, o?: CallOptions): Promise<Page<Asset>> {
    return this.t.json(spec({ method: 'GET', path: '/v1/assets', query: { ...query } }, o));
  }

  /** Every asset matching `query`, newest first, page by page. */
  all(query: Omit<AssetListQuery, 'cursor'> = {}, o?: CallOptions): AsyncGenerator<Asset> {
    return eachItem((cursor) => this.list({ ...query, cursor }, o));
  }

  /** `POST /v1/assets/upload-url`: a presigned, single-use upload URL bound to size and type (15 min). */
  createUploadUrl(input: CreateUploadUrlInput, o?: CallOptions): Promise<UploadIntent> {
    return this.t.json(spec({ method: 'POST', path: '/v1/assets/upload-url', json: input }, o));
  }

  /**
   * Sends the bytes to a presigned upload URL (`PUT`, exactly the intent's headers, no credential),
   * then finalises it (`POST /v1/assets/upload-url/{id}/complete`) when the store needs that (S3).
   */
  async putToUploadUrl(intent: UploadIntent, source: Blob | Uint8Array | ArrayBuffer, o?: CallOptions): Promise<Asset> {
    // The URL is the capability (signed): no credential goes with it, wherever it points.
    const put = await this.t.external(intent.url, { method: 'PUT', body: toBody(source), headers: intent.headers, signal: o?.signal, timeoutMs: o?.timeoutMs });
    if (intent.complete_url) {
      await put.body?.cancel().catch(() => undefined);
      // Only the path is used: the credential goes to the configured API origin, not to a URL from a response.
      return this.t.json(spec({ method: 'POST', path: new URL(intent.complete_url).pathname }, o));
    }
    return (await put.json()) as Asset;
  }

  /** Presigned upload in one call: {@link createUploadUrl} then {@link putToUploadUrl}. */
  async uploadDirect(source: Blob | Uint8Array | ArrayBuffer, input: { content_type: string; filename?: string }, o?: CallOptions): Promise<Asset> {
    const size = source instanceof Blob ? source.size : source.byteLength;
    const intent = await this.createUploadUrl({ ...input, content_length: size }, o);
    return this.putToUploadUrl(intent, source, o);
  }

  /** `GET /v1/assets/{id}`: metadata. Scope `assets:read`. */
  get(id: string, o?: CallOptions): Promise<Asset> {
    return this.t.json(spec({ method: 'GET', path: `/v1/assets/${enc(id)}` }, o));
  }

  /** `PATCH /v1/assets/{id}`: replace the tags and/or merge-patch the metadata (audited). Scope `assets:write`. */
  update(id: string, change: AssetLabelChange, o?: CallOptions): Promise<Asset> {
    return this.t.json(spec({ method: 'PATCH', path: `/v1/assets/${enc(id)}`, json: change }, o));
  }

  /**
   * `POST /v1/assets/bulk-delete`: the assets matching the filters, oldest first, at most `limit` per
   * call. A dry run unless `dry_run: false`. Scope `assets:delete`.
   */
  bulkDelete(input: BulkDeleteInput, o?: CallOptions): Promise<BulkDeleteResult> {
    return this.t.json(spec({ method: 'POST', path: '/v1/assets/bulk-delete', json: input }, o));
  }

  /** `DELETE /v1/assets/{id}`: the encrypted blob and the record (audited). Scope `assets:delete`. */
  async delete(id: string, o?: CallOptions): Promise<void> {
    await this.t.json(spec({ method: 'DELETE', path: `/v1/assets/${enc(id)}` }, o));
  }

  /** `POST /v1/assets/{id}/url`: a signed, expiring download URL (default 24 h). */
  signedUrl(id: string, input: SignedUrlInput = {}, o?: CallOptions): Promise<SignedUrl> {
    return this.t.json(spec({ method: 'POST', path: `/v1/assets/${enc(id)}/url`, json: input }, o));
  }

  /**
   * Downloads an asset: a short-lived signed URL, then `GET` on it. The credential is sent along only
   * when the URL is on the API's origin (needed for apps with `require_authorized_urls`).
   */
  async download(id: string, opts: DownloadOptions = {}): Promise<Download> {
    const signed = await this.signedUrl(id, { ttl_seconds: 300 }, opts);
    return this.fetchSignedUrl(signed.url, opts);
  }

  /** `GET` on a signed URL (from {@link signedUrl}), with progress. */
  async fetchSignedUrl(url: string, opts: DownloadOptions = {}): Promise<Download> {
    const headers: Record<string, string> = {};
    if (opts.range) headers.range = `bytes=${opts.range.start}-${opts.range.end ?? ''}`;
    const res = this.t.sameOrigin(url)
      ? await this.t.send({ method: 'GET', path: url, headers, signal: opts.signal, timeoutMs: opts.timeoutMs })
      : await this.t.external(url, { method: 'GET', headers, signal: opts.signal, timeoutMs: opts.timeoutMs });
    const len = res.headers.get('content-length');
    const size = len !== null && /^\d+$/.test(len) ? Number(len) : undefined;
    if (!res.body) throw new ObscuraError({ status: res.status, code: 'ERR_INVALID_RESPONSE', detail: 'The download has no body.' });
    const body = withProgress(res.body, size, opts.onProgress);
    return { contentType: res.headers.get('content-type') ?? 'application/octet-stream', size, body, bytes: () => readAll(body) };
  }
}

/** Resumable uploads (tus 1.0 at `/v1/uploads`). */
export class UploadsResource {
  constructor(
    private readonly t: Transport,
    private readonly assets: AssetsResource,
  ) {}

  /**
   * Uploads with tus: chunked, resumable after network failures, with progress. Resolves once the
   * upload has become an asset. Works with publishable keys (browser uploads) when the app allows them.
   */
  upload(source: UploadSource, opts: TusUploadOptions = {}): Promise<TusUploadResult> {
    const filename = opts.filename ?? (typeof File !== 'undefined' && source instanceof File ? source.name : undefined);
    return tusUpload(this.t, source, { ...opts, filename });
  }

  /**
   * Terminates an unfinished upload (tus termination, `DELETE` on its URL) so the server discards
   * what it holds. The URL must be on the API's origin.
   */
  async cancel(uploadUrl: string, o?: CallOptions): Promise<void> {
    const res = await this.t.send({ method: 'DELETE', path: uploadUrl, headers: { 'tus-resumable': '1.0.0' }, signal: o?.signal, timeoutMs: o?.timeoutMs });
    await res.body?.cancel().catch(() => undefined);
  }

  /** {@link upload}, then the asset's metadata (needs `assets:read`, so not with publishable keys). */
  async uploadAndGet(source: UploadSource, opts: TusUploadOptions = {}): Promise<Asset> {
    const r = await this.upload(source, opts);
    return this.assets.get(r.assetId, { signal: opts.signal });
  }
}

/** `/v1/audit` */
export class AuditResource {
  constructor(private readonly t: Transport) {}
  /** `GET /v1/audit`: one page, newest first (pass `next_cursor` back as `cursor`). Scope `audit:read`. */
  list(query: AuditQuery = {}, o?: CallOptions): Promise<AuditPage> {
    return this.t.json(spec({ method: 'GET', path: '/v1/audit', query: { ...query } }, o));
  }
  /** Every entry, newest first, page by page. */
  all(query: Omit<AuditQuery, 'before' | 'cursor'> = {}, o?: CallOptions): AsyncGenerator<AuditEntry> {
    return eachItem((cursor) => this.list({ ...query, cursor }, o));
  }
  /**
   * `GET /v1/audit/verify`: recomputes the org's chain up to its keyed head. Record `head_hash`
   * elsewhere to detect a rollback later. Scope `audit:read`.
   */
  verify(o?: CallOptions): Promise<AuditVerification> {
    return this.t.json(spec({ method: 'GET', path: '/v1/audit/verify' }, o));
  }
}

// The org's tenant export (docs/export.md).

export type ExportStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'expired';

/** A tenant export, as `POST /v1/orgs/{id}/export` and `GET /v1/orgs/{id}/exports/{export_id}` answer. */
export interface OrgExport {
  /** `exp_…` */
  id: string;
  org_id: string;
  status: ExportStatus;
  requested_by: { type: string; id?: string };
  /** Bytes of the archive (a tar file), once written. */
  size: number | null;
  /** SHA-256 (hex) of the archive, once written: check the download against it. */
  sha256: string | null;
  /** Records per kind, and `media` files. */
  counts: Record<string, number> | null;
  attempts: number;
  error: { code: string; message: string } | null;
  created_at: DateTime;
  started_at: DateTime | null;
  finished_at: DateTime | null;
  expires_at: DateTime | null;
  /** A signed URL of the archive while it is ready (no credential needed); each poll mints a fresh one. */
  download_url: string | null;
  download_url_expires_at: DateTime | null;
}

/** Options of {@link OrgsResource.waitForExport}. */
export interface ExportWaitOptions {
  /** First polling interval (default 500 ms), growing to `maxIntervalMs` (default 5 s). */
  intervalMs?: number;
  maxIntervalMs?: number;
  /** Give up after this long (default 30 minutes). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * The org's export. Every call needs a credential holding `apps:read`, `keys:manage`, `assets:read`,
 * `jobs:read`, `webhooks:manage`, `audit:read` and `usage:read` (an owner's or admin's, or a key
 * granted all of them).
 */
export class OrgsResource {
  constructor(
    private readonly t: Transport,
    private readonly assets: AssetsResource,
  ) {}

  /**
   * `POST /v1/orgs/{orgId}/export`: queues an export of everything the org owns (one at a time per
   * org: a second call while one runs fails with `ERR_EXPORT_IN_PROGRESS`, whose problem names it).
   */
  export(orgId: string, o?: CallOptions): Promise<OrgExport> {
    return this.t.json(spec({ method: 'POST', path: `/v1/orgs/${enc(orgId)}/export` }, o));
  }

  /** `GET /v1/orgs/{orgId}/exports/{exportId}`: its status, and a fresh `download_url` once it succeeded. */
  getExport(orgId: string, exportId: string, o?: CallOptions): Promise<OrgExport> {
    return this.t.json(spec({ method: 'GET', path: `/v1/orgs/${enc(orgId)}/exports/${enc(exportId)}` }, o));
  }

  /** Polls an export until it is final; throws `ERR_EXPORT_FAILED` when it failed or expired. */
  async waitForExport(orgId: string, exportId: string, opts: ExportWaitOptions = {}): Promise<OrgExport> {
    const deadline = Date.now() + (opts.timeoutMs ?? 30 * 60_000);
    let delay = opts.intervalMs ?? 500;
    for (;;) {
      const e = await this.getExport(orgId, exportId, { signal: opts.signal });
      if (e.status === 'succeeded') return e;
      if (e.status === 'failed' || e.status === 'expired') {
        throw new ObscuraError({ code: 'ERR_EXPORT_FAILED', detail: e.error ? `${e.error.code}: ${e.error.message}` : `The export is ${e.status}.` });
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new ObscuraError({ code: 'ERR_EXPORT_TIMEOUT', detail: `Export ${exportId} is still ${e.status}.` });
      await abortableSleep(Math.min(delay, left), opts.signal);
      delay = Math.min(opts.maxIntervalMs ?? 5000, Math.ceil(delay * 1.5));
    }
  }

  /** `GET` on an export's `download_url`: the archive (a tar file), streamed, with progress. */
  downloadExport(downloadUrl: string, opts: DownloadOptions = {}): Promise<Download> {
    return this.assets.fetchSignedUrl(downloadUrl, opts);
  }
}

/** The answer of `GET /v1/audit/verify`. */
export interface AuditVerification {
  ok: boolean;
  entries: number;
  head_hash: string;
  /** The first failure, if any. */
  broken: { seq: number | null; reason: string } | null;
}

/**
 * The Obscura API client.
 *
 * ```ts
 * const obscura = new Obscura({ baseUrl: 'https://media.example.com', apiKey: process.env.OBSCURA_API_KEY });
 * const { assetId } = await obscura.uploads.upload(file, { onProgress: ({ bytes, total }) => ... });
 * ```
 *
 * Security: the credential is held in a private field in memory only, sent only to `baseUrl`'s
 * origin, and never persisted or logged by the SDK. Secret keys and client credentials are refused in
 * browsers unless `dangerouslyAllowSecretInBrowser` is set.
 */
export class Obscura {
  readonly baseUrl: string;
  readonly apps: AppsResource;
  readonly keys: KeysResource;
  readonly oauth: OAuthResource;
  readonly assets: AssetsResource;
  readonly uploads: UploadsResource;
  readonly processing: ProcessResource;
  readonly jobs: JobsResource;
  readonly webhooks: WebhooksResource;
  readonly usage: UsageResource;
  readonly audit: AuditResource;
  readonly transforms: TransformResource;
  /** On-device licences: sessions, offline licence files, public keys, telemetry (issue 15). */
  readonly licenses: LicensesResource;
  /** The org's tenant export (docs/export.md). */
  readonly orgs: OrgsResource;
  readonly #transport: Transport;

  constructor(options: ObscuraOptions) {
    if (!options || typeof options.baseUrl !== 'string') throw usageError('baseUrl is required.');
    let base: URL;
    try {
      base = new URL(options.baseUrl);
    } catch {
      throw usageError('baseUrl must be an absolute http(s) URL.');
    }
    if (base.protocol !== 'https:' && base.protocol !== 'http:') throw usageError('baseUrl must be an absolute http(s) URL.');
    if (base.username || base.password) throw usageError('baseUrl must not contain credentials.');
    const fetchImpl = options.fetch ?? (globalThis.fetch ? (globalThis.fetch.bind(globalThis) as FetchLike) : undefined);
    if (!fetchImpl) throw usageError('No fetch available: pass options.fetch.');
    const retries = options.retries ?? DEFAULT_RETRY.retries;
    if (!Number.isInteger(retries) || retries < 0 || retries > 10) throw usageError('retries must be an integer from 0 to 10.');

    let transport!: Transport;
    const tokenFetcher = (cc: ClientCredentials) => new OAuthResource(transport).token(cc);
    const creds = options.apiKey === undefined && options.accessToken === undefined && options.getAccessToken === undefined && options.clientCredentials === undefined ? undefined : new Credentials(options, tokenFetcher, options.now);
    if (creds && isBrowser() && !options.dangerouslyAllowSecretInBrowser && (creds.keyKind === 'sk' || creds.keyKind === 'rk' || creds.kind === 'clientCredentials')) {
      throw usageError('Refusing a secret credential in a browser: everything on a web page is public. Use a publishable key (obs_pk_…) or set dangerouslyAllowSecretInBrowser.');
    }
    transport = new Transport({
      baseUrl: base.toString(),
      fetch: fetchImpl,
      auth: creds,
      retry: { ...DEFAULT_RETRY, ...(options.retry ?? {}), retries },
      timeoutMs: options.timeoutMs ?? 60_000,
      userAgent: options.userAgent ?? 'obscura-sdk/0.1.0',
    });
    this.#transport = transport;
    this.baseUrl = transport.baseUrl;
    this.apps = new AppsResource(transport);
    this.keys = new KeysResource(transport);
    this.oauth = new OAuthResource(transport);
    this.assets = new AssetsResource(transport);
    this.uploads = new UploadsResource(transport, this.assets);
    this.jobs = new JobsResource(transport);
    this.processing = new ProcessResource(transport, this.jobs);
    this.webhooks = new WebhooksResource(transport);
    this.usage = new UsageResource(transport);
    this.audit = new AuditResource(transport);
    this.transforms = new TransformResource(transport);
    this.licenses = new LicensesResource(transport);
    this.orgs = new OrgsResource(transport, this.assets);
  }

  /** `GET /v1/whoami`: the calling credential's org, app, kind and scopes. */
  whoami(o?: CallOptions): Promise<WhoAmI> {
    return this.#transport.json(spec({ method: 'GET', path: '/v1/whoami' }, o));
  }

  /** `GET /healthz` (no credential). */
  health(o?: CallOptions): Promise<{ status: 'ok' }> {
    return this.#transport.json(spec({ method: 'GET', path: '/healthz', auth: false }, o));
  }

  /** `GET /readyz` (no credential): 503 ERR_UNAVAILABLE when the database does not answer. */
  ready(o?: CallOptions): Promise<{ status: 'ready' }> {
    return this.#transport.json(spec({ method: 'GET', path: '/readyz', auth: false }, o));
  }

  /**
   * `GET /v1/operations` (no credential): every processing operation with its parameters, types,
   * ranges, defaults and aliases, generated from the server's registry (cacheable).
   */
  operations(o?: CallOptions): Promise<{ operations: Array<{ name: string; aliases: string[]; description: string; parameters: Array<Record<string, unknown>> } & Record<string, unknown>>; pipeline_order: string[]; max_operations: number; max_length: number }> {
    return this.#transport.json(spec({ method: 'GET', path: '/v1/operations', auth: false }, o));
  }

  /** `GET /docs/json`: the OpenAPI 3.1 document (no credential). */
  openapi(o?: CallOptions): Promise<Record<string, unknown>> {
    return this.#transport.json(spec({ method: 'GET', path: '/docs/json', auth: false }, o));
  }

  /**
   * Low-level escape hatch for an endpoint this SDK version does not wrap yet: same credential,
   * retries, Idempotency-Key and typed errors. Returns the parsed JSON.
   */
  request<T = unknown>(method: string, path: string, init: { json?: unknown; query?: RequestSpec['query']; headers?: Record<string, string> } & CallOptions = {}): Promise<T> {
    return this.#transport.json(spec({ method, path, json: init.json, query: init.query, headers: init.headers }, init));
  }

  /** Never reveal the credential through logging or serialisation. */
  toJSON(): Record<string, string> {
    return { baseUrl: this.baseUrl };
  }
}

