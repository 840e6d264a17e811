/**
 * The SDK's transport: one `fetch` call per attempt, with the credential, retries, timeouts and
 * problem+json errors. Browser-safe: only `fetch`, `URL`, `AbortController` and WebCrypto's
 * `crypto.randomUUID`.
 *
 * Retry policy (why): a 429 or a 503 is the server shedding load before doing the work, and a network
 * error may or may not have reached it. Replaying is only safe when the method is idempotent
 * (RFC 9110 §9.2.2) or the request carries an `Idempotency-Key` the server deduplicates on, so the
 * SDK puts a random key on every POST/PATCH/DELETE and reuses the same key for every attempt.
 * Delays are exponential with full jitter (so many clients do not retry in lockstep) and never
 * shorter than the server's `Retry-After`.
 */
import { ObscuraError, type Problem } from './errors.js';

/** The subset of `fetch` the SDK needs (the global one, undici's, or a test double). */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/** Supplies the `Authorization` header value; see `credentials.ts`. */
export interface AuthorizationSource {
  /** `Bearer <credential>`. */
  authorization(): Promise<string>;
  /** Drops a cached access token after a 401; true when a fresh one can be fetched (worth one retry). */
  invalidate(): boolean;
}

/** Retry tuning. Defaults: 2 retries, 250 ms base, 8 s cap, honour Retry-After up to 60 s. */
export interface RetryOptions {
  /** Extra attempts after the first (default 2; 0 disables retries). */
  retries: number;
  /** First backoff ceiling in ms (default 250); doubles per attempt. */
  baseDelayMs: number;
  /** Largest backoff in ms (default 8000). */
  maxDelayMs: number;
  /** A `Retry-After` longer than this is not waited for: the error is thrown with `retryAfter` set (default 60000). */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryOptions = Object.freeze({ retries: 2, baseDelayMs: 250, maxDelayMs: 8000, maxRetryAfterMs: 60_000 });

/** One API call. */
export interface RequestSpec {
  method: string;
  /** Path below the base URL (`/v1/...`), or an absolute URL on the same origin. */
  path: string;
  query?: Record<string, string | number | boolean | undefined | null>;
  /** JSON body (serialised, `Content-Type: application/json`). */
  json?: unknown;
  /** Raw body (uploads, forms); set `Content-Type` in `headers`. */
  body?: BodyInit | null;
  headers?: Record<string, string>;
  /** An explicit key, or `false` to send none (then unsafe methods are not retried). Default: random for POST/PATCH/DELETE. */
  idempotencyKey?: string | false;
  /** Send the credential (default true). */
  auth?: boolean;
  signal?: AbortSignal | undefined;
  /** Per-attempt timeout until the response headers (and a JSON body) arrive; default from the client. */
  timeoutMs?: number | undefined;
}

const UNSAFE = new Set(['POST', 'PATCH', 'DELETE']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/**
 * A random Idempotency-Key: a UUID v4 (122 random bits from the platform CSPRNG). Built from
 * `getRandomValues` because `randomUUID` exists only in secure contexts (a page on plain http on a
 * LAN address has no `crypto.randomUUID`).
 */
export function newIdempotencyKey(): string {
  const b = globalThis.crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** `Retry-After` in seconds (delta-seconds or an HTTP-date, RFC 9110 §10.2.3); undefined when absent or unparsable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  const v = value.trim();
  if (/^\d{1,9}$/.test(v)) return Number(v);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** Full-jitter exponential backoff (AWS architecture blog): uniform in [0, min(cap, base * 2^attempt)]. */
export function backoffDelay(attempt: number, retry: RetryOptions, random = Math.random): number {
  const ceiling = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function abortError(signal: AbortSignal): ObscuraError {
  return new ObscuraError({ code: 'ERR_ABORTED', detail: 'The request was aborted.', cause: signal.reason });
}

function isReplayable(body: unknown): boolean {
  if (body === undefined || body === null) return true;
  if (typeof body === 'string' || body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return true;
  if (typeof Blob !== 'undefined' && body instanceof Blob) return true;
  if (typeof URLSearchParams !== 'undefined' && body instanceof URLSearchParams) return true;
  if (typeof FormData !== 'undefined' && body instanceof FormData) return true;
  // Streams and async iterables are consumed by the first attempt.
  return false;
}

/** Reads a problem+json (or OAuth2 §5.2) error body into an ObscuraError. */
export async function errorFromResponse(res: Response): Promise<ObscuraError> {
  const retryAfter = parseRetryAfter(res.headers.get('retry-after'));
  const headerId = res.headers.get('x-request-id') ?? undefined;
  const type = res.headers.get('content-type') ?? '';
  let parsed: unknown;
  if (/json/i.test(type)) {
    try {
      parsed = await res.json();
    } catch {
      parsed = undefined;
    }
  } else {
    await res.body?.cancel().catch(() => undefined);
  }
  const doc = (parsed && typeof parsed === 'object' ? parsed : {}) as Record<string, unknown>;
  if (typeof doc.code === 'string') {
    const detail = typeof doc.detail === 'string' ? doc.detail : typeof doc.error_description === 'string' ? doc.error_description : `HTTP ${res.status}`;
    const requestId = typeof doc.request_id === 'string' ? doc.request_id : headerId;
    const problem = (typeof doc.type === 'string' ? doc : { ...doc, status: res.status, detail, title: String(doc.error ?? res.statusText), type: `urn:obscura:error:${doc.code}` }) as Problem;
    return new ObscuraError({ status: res.status, code: doc.code, detail, requestId, problem, retryAfter });
  }
  if (res.status >= 300 && res.status < 400) {
    // Redirects are not followed (a credential must not travel to wherever a Location points).
    return new ObscuraError({ status: res.status, code: 'ERR_INVALID_RESPONSE', detail: `The server redirected (HTTP ${res.status}) to ${res.headers.get('location') ?? 'elsewhere'}; use that as the base URL.`, requestId: headerId });
  }
  return new ObscuraError({
    status: res.status,
    code: 'ERR_INVALID_RESPONSE',
    detail: `The server answered HTTP ${res.status} without a problem document (a proxy in between?).`,
    requestId: headerId,
    retryAfter,
  });
}

/** Transport settings shared by every request of one client. */
export interface TransportInit {
  baseUrl: string;
  fetch: FetchLike;
  auth: AuthorizationSource | undefined;
  retry: RetryOptions;
  timeoutMs: number;
  userAgent?: string | undefined;
}

/** Sends requests; see the module comment for the retry policy. */
export class Transport {
  readonly baseUrl: string;
  readonly origin: string;
  readonly #fetch: FetchLike;
  readonly #auth: AuthorizationSource | undefined;
  readonly retry: RetryOptions;
  readonly timeoutMs: number;
  readonly #userAgent: string | undefined;

  constructor(init: TransportInit) {
    this.baseUrl = init.baseUrl.replace(/\/+$/, '');
    this.origin = new URL(this.baseUrl).origin;
    this.#fetch = init.fetch;
    this.#auth = init.auth;
    this.retry = init.retry;
    this.timeoutMs = init.timeoutMs;
    this.#userAgent = init.userAgent;
  }

  /** Absolute URL for a path; absolute URLs are accepted only on the API's own origin. */
  url(path: string, query?: RequestSpec['query']): URL {
    const u = /^https?:\/\//i.test(path) ? new URL(path) : new URL(this.baseUrl + path);
    if (u.origin !== this.origin) {
      // The credential must never follow a server-supplied URL to another host.
      throw new ObscuraError({ code: 'ERR_SDK_USAGE', detail: `Refusing to send a credential to ${u.origin} (the client talks to ${this.origin}).` });
    }
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null) u.searchParams.set(k, String(v));
    return u;
  }

  /** True when `url` is on the API's origin (so the credential may be attached). */
  sameOrigin(url: string): boolean {
    try {
      return new URL(url, this.baseUrl).origin === this.origin;
    } catch {
      return false;
    }
  }

  /** The `Authorization` value, or undefined when the client has no credential. */
  async authorization(): Promise<string | undefined> {
    return this.#auth?.authorization();
  }

  /** Sends the request and returns the successful Response (body unread); throws ObscuraError otherwise. */
  async send(spec: RequestSpec): Promise<Response> {
    const method = spec.method.toUpperCase();
    const url = this.url(spec.path, spec.query);
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json;q=0.9, */*;q=0.1', ...lower(spec.headers) };
    if (this.#userAgent && typeof window === 'undefined') headers['user-agent'] = this.#userAgent;
    let body: BodyInit | null | undefined = spec.body;
    if (spec.json !== undefined) {
      body = JSON.stringify(spec.json);
      headers['content-type'] = 'application/json';
    }
    if (spec.idempotencyKey !== false && UNSAFE.has(method) && headers['idempotency-key'] === undefined) {
      headers['idempotency-key'] = spec.idempotencyKey ?? newIdempotencyKey();
    }
    const retryable = (IDEMPOTENT.has(method) || headers['idempotency-key'] !== undefined) && isReplayable(body);
    const streaming = body !== undefined && body !== null && !isReplayable(body);
    let refreshed = false;

    for (let attempt = 0; ; attempt++) {
      if (spec.auth !== false && this.#auth) headers.authorization = await this.#auth.authorization();
      let res: Response;
      const ctl = new AbortController();
      const timeoutMs = spec.timeoutMs ?? this.timeoutMs;
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        ctl.abort();
      }, timeoutMs);
      const onAbort = () => ctl.abort(spec.signal?.reason);
      if (spec.signal?.aborted) {
        clearTimeout(timer);
        throw abortError(spec.signal);
      }
      spec.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        const init: RequestInit & { duplex?: 'half' } = { method, headers, body: body ?? null, signal: ctl.signal, redirect: 'manual' };
        if (streaming) init.duplex = 'half';
        res = await this.#fetch(url.toString(), init);
      } catch (cause) {
        clearTimeout(timer);
        spec.signal?.removeEventListener('abort', onAbort);
        if (spec.signal?.aborted) throw abortError(spec.signal);
        const err = timedOut
          ? new ObscuraError({ code: 'ERR_TIMEOUT', detail: `No response within ${timeoutMs} ms.`, cause })
          : new ObscuraError({ code: 'ERR_NETWORK', detail: `Could not reach ${this.origin}: is the server running at that address?`, cause });
        if (retryable && attempt < this.retry.retries) {
          await sleep(backoffDelay(attempt, this.retry), spec.signal);
          continue;
        }
        throw err;
      }
      clearTimeout(timer);
      spec.signal?.removeEventListener('abort', onAbort);

      if (res.ok) return res;
      if ((res.status === 429 || res.status === 503) && retryable && attempt < this.retry.retries) {
        const ra = parseRetryAfter(res.headers.get('retry-after'));
        if (ra === undefined || ra * 1000 <= this.retry.maxRetryAfterMs) {
          await res.body?.cancel().catch(() => undefined);
          await sleep(Math.max((ra ?? 0) * 1000, backoffDelay(attempt, this.retry)), spec.signal);
          continue;
        }
      }
      const err = await errorFromResponse(res);
      // An expired access token is replaced once; a bad API key is not worth a second try.
      if (res.status === 401 && !refreshed && isReplayable(body) && this.#auth?.invalidate()) {
        refreshed = true;
        attempt--;
        continue;
      }
      throw err;
    }
  }

  /**
   * A request to a URL outside the API (a presigned S3 PUT, a signed URL on a CDN): the configured
   * fetch, never the credential, redirects refused, no retries.
   */
  async external(url: string, init: { method: string; headers?: Record<string, string>; body?: BodyInit | null; signal?: AbortSignal | undefined; timeoutMs?: number | undefined }): Promise<Response> {
    const ctl = new AbortController();
    const timeoutMs = init.timeoutMs ?? this.timeoutMs;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ctl.abort();
    }, timeoutMs);
    const onAbort = () => ctl.abort(init.signal?.reason);
    init.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const req: RequestInit & { duplex?: 'half' } = { method: init.method, headers: init.headers ?? {}, body: init.body ?? null, signal: ctl.signal, redirect: 'error' };
      if (init.body !== undefined && init.body !== null && !isReplayable(init.body)) req.duplex = 'half';
      const res = await this.#fetch(url, req);
      if (!res.ok) throw await errorFromResponse(res);
      return res;
    } catch (cause) {
      if (cause instanceof ObscuraError) throw cause;
      if (init.signal?.aborted) throw abortError(init.signal);
      throw timedOut
        ? new ObscuraError({ code: 'ERR_TIMEOUT', detail: `No response within ${timeoutMs} ms.`, cause })
        : new ObscuraError({ code: 'ERR_NETWORK', detail: `Could not reach ${new URL(url).origin}.`, cause });
    } finally {
      clearTimeout(timer);
      init.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Sends the request and parses a JSON answer (undefined for 204). */
  async json<T>(spec: RequestSpec): Promise<T> {
    const res = await this.send(spec);
    if (res.status === 204) {
      await res.body?.cancel().catch(() => undefined);
      return undefined as T;
    }
    try {
      return (await res.json()) as T;
    } catch (cause) {
      throw new ObscuraError({ status: res.status, code: 'ERR_INVALID_RESPONSE', detail: 'Expected a JSON response.', requestId: res.headers.get('x-request-id') ?? undefined, cause });
    }
  }
}

function lower(h: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h ?? {})) out[k.toLowerCase()] = v;
  return out;
}
