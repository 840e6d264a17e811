/**
 * The one error type that crosses capability boundaries.
 *
 * Every failure a client may see is an `AppError` with a stable `code` (a closed union below), an
 * HTTP `status` and a `publicMessage` that is safe to send. The root error handler in `http/` turns
 * it into RFC 9457 problem+json; anything that is not an `AppError` becomes a generic 500 so that a
 * library's message or a stack trace never reaches a client (STYLE.md, "Errors").
 */
export const ERROR_CODES = {
  // generic
  ERR_VALIDATION: 400,
  ERR_BAD_REQUEST: 400,
  ERR_RESET_TOKEN_INVALID: 400,
  /** A list cursor that was changed, forged, or issued for another list, org or filters. */
  ERR_CURSOR_INVALID: 400,
  ERR_NOT_FOUND: 404,
  ERR_METHOD_NOT_ALLOWED: 405,
  ERR_CONFLICT: 409,
  /** The asset is under legal hold: it cannot be deleted until the hold is released. */
  ERR_LEGAL_HOLD: 409,
  ERR_IDEMPOTENCY_MISMATCH: 409,
  /** An export of the org is already queued or running (one at a time per org); the details name it. */
  ERR_EXPORT_IN_PROGRESS: 409,
  ERR_PAYLOAD_TOO_LARGE: 413,
  ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  ERR_RANGE_NOT_SATISFIABLE: 416,
  ERR_UNPROCESSABLE: 422,
  ERR_IMAGE_TOO_LARGE: 422,
  ERR_TOO_EXPENSIVE: 422,
  /** The upload's bytes are not a valid file of the type they were sniffed as (truncated, corrupt, a disguise). */
  ERR_MEDIA_INVALID: 422,
  /** A video beyond the operator's limits (duration, resolution, frame rate, streams, bit rate); the details name the limit and its setting. */
  ERR_VIDEO_TOO_LARGE: 422,
  /** ffmpeg could not process the video (damaged stream, or an operation its encoder refuses). */
  ERR_VIDEO_FAILED: 422,
  /** The job was cancelled by its owner (its final error code; never an HTTP answer). */
  ERR_JOB_CANCELLED: 409,
  /** A job's input asset was deleted (or expired) before the job finished; nothing was produced (its final error code). */
  ERR_INPUT_DELETED: 410,
  ERR_RATE_LIMITED: 429,
  ERR_QUOTA_EXCEEDED: 429,
  ERR_LOGIN_THROTTLED: 429,
  ERR_INTERNAL: 500,
  ERR_UNAVAILABLE: 503,
  /** A dependency (database, blob store, Redis) is down or too slow; retry after `Retry-After`. */
  ERR_DEPENDENCY_UNAVAILABLE: 503,
  /** ffmpeg/ffprobe are not installed (or not where OBSCURA_FFMPEG_PATH/OBSCURA_FFPROBE_PATH say): video work is refused, images keep working. */
  ERR_VIDEO_UNAVAILABLE: 503,
  ERR_JOB_TIMEOUT: 504,
  // authentication (401)
  ERR_AUTH_MISSING: 401,
  ERR_AUTH_SCHEME: 401,
  ERR_KEY_MALFORMED: 401,
  ERR_KEY_CHECKSUM: 401,
  ERR_KEY_UNKNOWN: 401,
  ERR_KEY_EXPIRED: 401,
  ERR_KEY_REVOKED: 401,
  ERR_KEY_ROLLED: 401,
  ERR_TOKEN_INVALID: 401,
  ERR_TOKEN_EXPIRED: 401,
  // OAuth2 token endpoint (RFC 6749 §5.2 error names are mapped in src/auth/oauth.ts)
  ERR_OAUTH_INVALID_REQUEST: 400,
  ERR_OAUTH_INVALID_CLIENT: 401,
  ERR_OAUTH_CLIENT_REVOKED: 401,
  ERR_OAUTH_UNSUPPORTED_GRANT_TYPE: 400,
  ERR_OAUTH_INVALID_SCOPE: 400,
  ERR_LOGIN_FAILED: 401,
  ERR_SESSION_INVALID: 401,
  ERR_MFA_REQUIRED: 401,
  ERR_MFA_INVALID: 401,
  /** A wrong code while confirming a new TOTP enrolment (the session is fine: not a 401). */
  ERR_MFA_CONFIRM_FAILED: 400,
  ERR_MFA_CODE_REUSED: 401,
  // authorisation (403)
  ERR_SCOPE_MISSING: 403,
  ERR_IP_NOT_ALLOWED: 403,
  ERR_ORIGIN_NOT_ALLOWED: 403,
  ERR_ROLE_FORBIDDEN: 403,
  ERR_CSRF: 403,
  ERR_MFA_ENROLMENT_REQUIRED: 403,
  ERR_SIGNATURE_INVALID: 403,
  ERR_PRESET_REQUIRED: 403,
  ERR_HTTPS_REQUIRED: 403,
  ERR_URL_EXPIRED: 410,
  // resumable uploads (tus 1.0 status codes)
  ERR_UPLOAD_OFFSET_MISMATCH: 409,
  ERR_UPLOAD_EXPIRED: 410,
  ERR_CHECKSUM_MISMATCH: 460,
  /** A tus request without `Tus-Resumable: 1.0.0` (tus 1.0 §Tus-Resumable). */
  ERR_TUS_VERSION: 412,
  /** A protocol feature this server does not implement (e.g. a tus extension). */
  ERR_NOT_IMPLEMENTED: 501,
  /** Too many unfinished uploads, or too many bytes declared by them, for an app or org; the details name the limit and its setting. */
  ERR_UPLOAD_LIMIT: 429,
  // remote fetches (SSRF-safe fetcher)
  ERR_REMOTE_FORBIDDEN: 400,
  ERR_REMOTE_FAILED: 502,
  /** The customer's own endpoint refused what we sent (a 4xx from a presigned PUT URL): retrying will not help. */
  ERR_REMOTE_REJECTED: 400,
  // data integrity
  ERR_INTEGRITY: 500,
  /** A backup archive failed verification (a file missing, changed or not authentic under the backup key); the message names the file. */
  ERR_BACKUP_INVALID: 422,
  /** `obscura backup restore` into a data dir, database or store that is not empty (nothing was changed). */
  ERR_BACKUP_TARGET_NOT_EMPTY: 409,
  // licences for on-device processing (issue 15; the same codes as sdk/src/licence.ts LicenceError)
  /** Not a licence: armour, JWS syntax, header or claims wrong. */
  ERR_LICENSE_MALFORMED: 401,
  /** The licence's signature does not verify under a published key (changed, foreign key, `alg` swapped). */
  ERR_LICENSE_SIGNATURE: 401,
  /** The licence has expired (or is not valid yet): start a new session, or renew the file. */
  ERR_LICENSE_EXPIRED: 401,
  /** The licence is not pinned to this origin or app id. */
  ERR_LICENSE_ORIGIN: 403,
  /** The licence lacks the feature (e.g. telemetry is switched off by `no_telemetry`). */
  ERR_LICENSE_FEATURE: 403,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface AppErrorOptions {
  /** Underlying error, logged server-side only, never sent. */
  cause?: unknown;
  /** Extra, non-secret members added to the problem document (RFC 9457 extension members). */
  details?: Record<string, unknown>;
  /** Response headers that belong to this error (e.g. Retry-After). */
  headers?: Record<string, string>;
  /** Server-side facts (e.g. which key failed, for the audit trail); never sent to the client. */
  internal?: Record<string, unknown>;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly publicMessage: string;
  readonly details: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;
  readonly internal: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, publicMessage: string, options: AppErrorOptions = {}) {
    super(publicMessage, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    // One status per code, always: clients may branch on either and must never see them disagree.
    this.status = ERROR_CODES[code];
    this.publicMessage = publicMessage;
    this.details = options.details;
    this.headers = options.headers;
    this.internal = options.internal;
  }
}

/** The single "does not exist or is not yours" error: the same answer for both (no existence oracle). */
export function notFound(what = 'resource'): AppError {
  return new AppError('ERR_NOT_FOUND', `The ${what} does not exist.`);
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** A configuration mistake: the message names the setting, and the process refuses to start. */
export class ConfigError extends Error {
  constructor(readonly setting: string, message: string) {
    super(`${setting}: ${message}`);
    this.name = 'ConfigError';
  }
}
