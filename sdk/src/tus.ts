/**
 * Resumable uploads over tus 1.0 (`/v1/uploads`) with the reference client, `tus-js-client`.
 *
 * The bundler picks tus-js-client's browser build (XHR, Blob/File) or its Node build (http, Buffer,
 * streams); this module itself stays platform-neutral.
 *
 * Security: the credential is attached per request in `onBeforeRequest` and only to the API's own
 * origin (an upload URL pointing elsewhere gets none). Resume state is not stored anywhere by default
 * (never in `localStorage`): an upload URL is a capability for an unfinished upload. One `upload()`
 * call resumes by itself after network failures; across calls or processes, pass the URL from
 * `onUploadUrl` back as `uploadUrl` (or opt in to tus-js-client's `urlStorage`).
 */
import { Upload, type DetailedError, type HttpRequest, type HttpResponse, type PreviousUpload, type UploadOptions } from 'tus-js-client';
import { ObscuraError, usageError, type Problem } from './errors.js';
import type { Transport } from './http.js';

/** What can be uploaded: a Blob/File (browsers), bytes, or (Node) a Buffer or readable stream. */
export type UploadSource = Blob | Uint8Array | ArrayBuffer | { read: () => Promise<{ done: boolean; value?: unknown }> } | NodeLikeReadable;

/** A Node.js readable stream (duck-typed so the browser build needs no Node types). */
export interface NodeLikeReadable {
  pipe: unknown;
  on: unknown;
  read: unknown;
}

/** Progress of a transfer. */
export interface TransferProgress {
  /** Bytes sent (uploads) or received (downloads) so far. */
  bytes: number;
  /** Total bytes, when known. */
  total: number | undefined;
}

/** Options of a resumable upload. */
export interface TusUploadOptions {
  /** Stored as the asset's filename (untrusted metadata; the type is sniffed from the bytes). */
  filename?: string | undefined;
  /** Size in bytes: required for streams; taken from Blob/bytes otherwise. */
  size?: number | undefined;
  /** Called as bytes are sent (several times per chunk). */
  onProgress?: ((p: TransferProgress) => void) | undefined;
  /** Called once the server has assigned the upload URL: persist it to resume after a crash. */
  onUploadUrl?: ((url: string) => void) | undefined;
  /**
   * Resume this upload (a URL from `onUploadUrl`) from the server's offset instead of creating a new
   * one. If the server no longer has it (terminated, expired: 404/410), a new upload starts.
   */
  uploadUrl?: string | undefined;
  /** Bytes per PATCH request (default 8 MiB; each chunk is encrypted and committed as one part). */
  chunkSize?: number | undefined;
  /** Delays between automatic resume attempts after a failure (default [0, 1000, 3000, 5000, 10000] ms). */
  retryDelays?: number[] | undefined;
  /** Opt-in persistent resume state (tus-js-client `UrlStorage`); default: none (resume explicitly with `uploadUrl`). */
  urlStorage?: UploadOptions['urlStorage'];
  /** Aborting keeps the server-side upload so it can be resumed with `uploadUrl`. */
  signal?: AbortSignal | undefined;
  /** Extra Upload-Metadata entries (strings; shown back, never trusted by the server). */
  metadata?: Record<string, string> | undefined;
}

/** A finished resumable upload. */
export interface TusUploadResult {
  /** The asset created from the upload. */
  assetId: string;
  /** The tus upload URL (no longer needed once the asset exists). */
  uploadUrl: string;
  /** Bytes uploaded. */
  size: number;
}

/** Header the server uses to name the asset a completed upload became. */
export const ASSET_ID_HEADER = 'Obscura-Asset-Id';

const DEFAULT_CHUNK = 8 * 1024 * 1024;

/**
 * Resume state that stores nothing. tus-js-client's browser default would write upload URLs to
 * `localStorage`, and its fingerprints (name/size/mtime, or the first 64 KiB of a buffer) can match a
 * different file, which would then be resumed into the wrong upload. Resuming is explicit instead:
 * keep the URL from `onUploadUrl` and pass it back as `uploadUrl`.
 */
const NO_STORAGE = {
  findAllUploads: async (): Promise<PreviousUpload[]> => [],
  findUploadsByFingerprint: async (): Promise<PreviousUpload[]> => [],
  removeUpload: async (): Promise<void> => undefined,
  addUpload: async (): Promise<string> => '',
};

function toTusInput(source: UploadSource): { file: unknown; size: number | undefined } {
  if (typeof Blob !== 'undefined' && source instanceof Blob) return { file: source, size: source.size };
  const NodeBuffer = (globalThis as { Buffer?: { isBuffer(x: unknown): boolean; from(a: ArrayBuffer, o?: number, l?: number): Uint8Array } }).Buffer;
  if (source instanceof ArrayBuffer) source = new Uint8Array(source);
  if (source instanceof Uint8Array) {
    // tus-js-client's Node reader wants a Buffer; its browser reader wants a Blob.
    if (NodeBuffer) return { file: NodeBuffer.isBuffer(source) ? source : NodeBuffer.from(source.buffer as ArrayBuffer, source.byteOffset, source.byteLength), size: source.byteLength };
    return { file: new Blob([source as Uint8Array<ArrayBuffer>]), size: source.byteLength };
  }
  return { file: source, size: undefined };
}

function problemOf(res: HttpResponse | null | undefined): Problem | undefined {
  if (!res) return undefined;
  try {
    const doc = JSON.parse(res.getBody()) as Problem;
    return typeof doc?.code === 'string' ? doc : undefined;
  } catch {
    return undefined;
  }
}

function uploadError(err: Error | DetailedError, endpoint: string): ObscuraError {
  const res = (err as DetailedError).originalResponse;
  const problem = problemOf(res);
  const status = res?.getStatus() ?? 0;
  const requestId = problem?.request_id ?? res?.getHeader('X-Request-Id') ?? undefined;
  if (problem) return new ObscuraError({ status, code: problem.code, detail: problem.detail, requestId, problem, cause: err });
  if (!status) return new ObscuraError({ code: 'ERR_NETWORK', detail: `Could not reach ${endpoint}: is the server running at that address?`, cause: err });
  return new ObscuraError({ status, code: 'ERR_UPLOAD_FAILED', detail: `The upload to ${endpoint} failed with HTTP ${status}.`, requestId, cause: err });
}

/** Runs one resumable upload to completion. */
export function tusUpload(transport: Transport, source: UploadSource, opts: TusUploadOptions = {}): Promise<TusUploadResult> {
  const { file, size: known } = toTusInput(source);
  const size = opts.size ?? known;
  if (size === undefined) return Promise.reject(usageError('Pass `size` when uploading a stream.'));
  if (opts.signal?.aborted) return Promise.reject(new ObscuraError({ code: 'ERR_ABORTED', detail: 'The upload was aborted.' }));
  return new Promise<TusUploadResult>((resolve, reject) => {
    let lastAssetId: string | undefined;
    const metadata: Record<string, string> = { ...(opts.metadata ?? {}) };
    if (opts.filename) metadata.filename = opts.filename;
    const upload = new Upload(file as Blob, {
      endpoint: transport.url('/v1/uploads').toString(),
      uploadUrl: opts.uploadUrl ?? null,
      uploadSize: size,
      metadata,
      chunkSize: opts.chunkSize ?? DEFAULT_CHUNK,
      retryDelays: opts.retryDelays ?? [0, 1000, 3000, 5000, 10000],
      urlStorage: opts.urlStorage ?? NO_STORAGE,
      storeFingerprintForResuming: opts.urlStorage !== undefined,
      removeFingerprintOnSuccess: true,
      // The protocol's own checksums and ids are ours to choose; no request id from the client.
      addRequestId: false,
      onBeforeRequest: async (req: HttpRequest) => {
        if (transport.sameOrigin(req.getURL())) {
          const auth = await transport.authorization();
          if (auth) req.setHeader('Authorization', auth);
        }
      },
      onAfterResponse: (_req: HttpRequest, res: HttpResponse) => {
        const id = res.getHeader(ASSET_ID_HEADER) ?? res.getHeader(ASSET_ID_HEADER.toLowerCase());
        if (id) lastAssetId = id;
      },
      onShouldRetry: (err: DetailedError, _attempt: number) => {
        const status = err.originalResponse?.getStatus() ?? 0;
        // Client errors (auth, type, size) do not heal by retrying; conflicts and overload do.
        return status === 0 || status === 409 || status === 423 || status === 429 || status >= 500;
      },
      onUploadUrlAvailable: () => {
        if (upload.url) opts.onUploadUrl?.(upload.url);
      },
      onProgress: (sent: number, total: number) => opts.onProgress?.({ bytes: sent, total }),
      onError: (err: Error | DetailedError) => {
        opts.signal?.removeEventListener('abort', onAbort);
        reject(uploadError(err, transport.url('/v1/uploads').toString()));
      },
      onSuccess: () => {
        opts.signal?.removeEventListener('abort', onAbort);
        const uploadUrl = upload.url ?? '';
        if (!lastAssetId) {
          reject(new ObscuraError({ code: 'ERR_INVALID_RESPONSE', detail: `The upload finished but the server did not name the asset (${ASSET_ID_HEADER}).` }));
          return;
        }
        resolve({ assetId: lastAssetId, uploadUrl, size });
      },
    });
    const onAbort = () => {
      void upload.abort(false).finally(() =>
        reject(new ObscuraError({ code: 'ERR_ABORTED', detail: `The upload was aborted; resume it with uploadUrl ${upload.url ?? '(not created yet)'}.`, cause: opts.signal?.reason })),
      );
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.uploadUrl || !opts.urlStorage) {
      upload.start();
    } else {
      // Opted-in persistent resume: continue a previous attempt of the same file.
      upload
        .findPreviousUploads()
        .then((previous) => {
          if (previous[0]) upload.resumeFromPreviousUpload(previous[0]);
          upload.start();
        })
        .catch(() => upload.start());
    }
  });
}
