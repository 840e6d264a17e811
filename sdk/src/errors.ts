/**
 * Typed errors of the SDK.
 *
 * Every failure surfaces as one {@link ObscuraError}: API refusals carry the RFC 9457 problem
 * document's stable `code` (e.g. `ERR_KEY_REVOKED`), `status`, `detail` and `requestId`; failures on
 * the client side (network, timeout, abort, a failed job) use the `ERR_SDK_*` / `ERR_NETWORK` codes
 * below with `status` 0. Branch on `code`, never on `message`.
 *
 * Security: an error never contains the credential or the `Authorization` header; `problem` is the
 * server's public problem document only.
 */

/** Client-side codes (no HTTP response, or a failure the SDK detected itself). */
export type ClientErrorCode =
  /** The request never got an HTTP answer (DNS, refused, reset), after any retries. */
  | 'ERR_NETWORK'
  /** The SDK's own timeout fired (`timeoutMs`). */
  | 'ERR_TIMEOUT'
  /** The caller aborted through an `AbortSignal`. */
  | 'ERR_ABORTED'
  /** The server answered something that is not what the API documents. */
  | 'ERR_INVALID_RESPONSE'
  /** A job reached the `failed` state (`jobs.wait`); `detail` is the job's public error. */
  | 'ERR_JOB_FAILED'
  /** `jobs.wait` gave up before the job finished (`timeoutMs`). */
  | 'ERR_JOB_TIMEOUT'
  /** A resumable (tus) upload failed; `status` is the last HTTP status when there was one. */
  | 'ERR_UPLOAD_FAILED'
  /** The SDK was configured or called wrongly (thrown before any request is sent). */
  | 'ERR_SDK_USAGE';

/** RFC 9457 problem details as Obscura sends them (plus any extension members). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** The stable machine-readable code (closed list in the API reference). */
  code: string;
  request_id: string;
  [extension: string]: unknown;
}

/** Options of {@link ObscuraError}. */
export interface ObscuraErrorInit {
  status?: number;
  code: string;
  detail: string;
  requestId?: string | undefined;
  problem?: Problem | undefined;
  /** Seconds from `Retry-After`, when the server sent one. */
  retryAfter?: number | undefined;
  cause?: unknown;
}

/**
 * An API or client-side failure with a stable `code`.
 *
 * - `status`: HTTP status, or 0 when no response was received.
 * - `code`: the problem's `code` (`ERR_*` from the API reference) or a {@link ClientErrorCode}.
 * - `detail`: a human-readable, public explanation (safe to show).
 * - `requestId`: the server's request id (quote it when reporting a problem).
 * - `problem`: the whole problem document (validation `errors`, `operation`, ...).
 */
export class ObscuraError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly requestId: string | undefined;
  readonly problem: Problem | undefined;
  readonly retryAfter: number | undefined;

  constructor(init: ObscuraErrorInit) {
    super(`${init.code}: ${init.detail}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'ObscuraError';
    this.status = init.status ?? 0;
    this.code = init.code;
    this.detail = init.detail;
    this.requestId = init.requestId;
    this.problem = init.problem;
    this.retryAfter = init.retryAfter;
  }

  /** True for 401 answers (missing, unknown, expired, revoked or rolled credential). */
  get isAuthError(): boolean {
    return this.status === 401;
  }

  /** A JSON form for logs: no stack, no cause, nothing secret. */
  toJSON(): Record<string, unknown> {
    return { name: this.name, status: this.status, code: this.code, detail: this.detail, requestId: this.requestId };
  }
}

/** Type guard for {@link ObscuraError}, optionally for one `code`. */
export function isObscuraError(err: unknown, code?: string): err is ObscuraError {
  return err instanceof ObscuraError && (code === undefined || err.code === code);
}

/** A usage mistake (bad option, missing argument), thrown synchronously before any request. */
export function usageError(detail: string): ObscuraError {
  return new ObscuraError({ code: 'ERR_SDK_USAGE', detail });
}
