/**
 * The console's only backend: the public API, with the session cookie (sent by the browser, HttpOnly)
 * and the session's CSRF token on every state-changing call. Every function here is one curl-able call.
 */

/** A problem+json answer (RFC 9457) with its stable code. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown>,
  ) {
    super(message);
  }
}

let csrfToken: string | null = null;
/** The session's CSRF token (from login or GET /v1/console/session). */
export function setCsrf(token: string | null): void {
  csrfToken = token;
}

/** The CSRF token, for clients other than `call` (tus uploads). */
export function csrf(): string | null {
  return csrfToken;
}

const SAFE = new Set(['GET', 'HEAD']);

/** Calls the API; returns the parsed JSON body (undefined for 204); throws ApiError for problems. */
export async function call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const h: Record<string, string> = { accept: 'application/json', ...headers };
  if (body !== undefined) h['content-type'] = 'application/json';
  if (!SAFE.has(method) && csrfToken) h['x-csrf-token'] = csrfToken;
  let res: Response;
  try {
    res = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'ERR_NETWORK', 'The server could not be reached. Check your connection and try again.', {});
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let parsed: any = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = { detail: text };
  }
  if (!res.ok) {
    const p = (parsed ?? {}) as Record<string, unknown>;
    throw new ApiError(res.status, String(p.code ?? 'ERR_HTTP'), String(p.detail ?? p.title ?? `The server answered ${res.status}.`), p);
  }
  return parsed as T;
}

/** A call whose success answer is bytes (processing): returns the Blob and its content type. */
export async function callBytes(method: string, path: string, body: unknown): Promise<{ blob: Blob; type: string }> {
  const h: Record<string, string> = { 'content-type': 'application/json', accept: 'image/*' };
  if (csrfToken) h['x-csrf-token'] = csrfToken;
  const res = await fetch(path, { method, headers: h, body: JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
  if (!res.ok) {
    const p = ((await res.json().catch(() => ({}))) ?? {}) as Record<string, unknown>;
    throw new ApiError(res.status, String(p.code ?? 'ERR_HTTP'), String(p.detail ?? `The server answered ${res.status}.`), p);
  }
  return { blob: await res.blob(), type: res.headers.get('content-type') ?? 'application/octet-stream' };
}

export interface SessionInfo {
  user: { id: string; email: string; role: 'owner' | 'admin' | 'developer' | 'viewer'; mfa_enabled: boolean };
  org: { id: string; name: string; require_mfa: boolean };
  session: { id: string; created_at: string; expires_at: string };
  csrf_token: string;
  mfa_enrolment_required: boolean;
}

/** What an app's uploaded images keep of their metadata (GET/PATCH /v1/apps/{id}, `settings.metadata_policy`). */
export type MetadataPolicy = 'keep' | 'strip_location' | 'strip_all';

export interface App {
  id: string;
  name: string;
  created_at: string;
  settings?: { metadata_policy?: MetadataPolicy } & Record<string, unknown>;
  /** The policy in force, defaults resolved (single-app answers only). */
  effective?: { metadata_policy: MetadataPolicy; retention_seconds: number | null; output_retention_seconds: number };
}

export interface Key {
  id: string;
  app_id: string;
  kind: 'secret' | 'publishable' | 'restricted';
  name: string;
  display: string;
  scopes: string[];
  allowed_ips: string[];
  allowed_origins: string[];
  expires_at: string | null;
  revoked_at: string | null;
  rolled_to: string | null;
  grace_ends_at: string | null;
  first_used_at: string | null;
  created_at: string;
}

export interface Member {
  id: string;
  email: string;
  role: SessionInfo['user']['role'];
  mfa_enabled: boolean;
  pending: boolean;
  created_at: string;
}

/** The scopes the API knows (GET /v1/whoami tells which ones the member's role holds). */
export const SCOPES = ['apps:read', 'apps:write', 'keys:manage', 'assets:read', 'assets:write', 'assets:delete', 'jobs:read', 'jobs:write', 'webhooks:manage', 'audit:read', 'usage:read'] as const;

/** A sentence for a problem, for people (the code stays visible for support). */
export function explain(err: unknown): string {
  if (!(err instanceof ApiError)) return err instanceof Error ? err.message : 'Something went wrong. Try again.';
  switch (err.code) {
    case 'ERR_LOGIN_FAILED':
      return 'That email and password do not match an account. Check both and try again.';
    case 'ERR_LOGIN_THROTTLED': {
      const secs = Number(err.body.retry_after ?? 0);
      return `Too many sign-in attempts. For your security, wait ${secs > 60 ? `${Math.ceil(secs / 60)} minutes` : `${secs || 'a few'} seconds`} before trying again.`;
    }
    case 'ERR_MFA_INVALID':
      return 'The authentication code is wrong. Enter the current 6-digit code from your app.';
    case 'ERR_MFA_CODE_REUSED':
      return 'That code was already used. Wait for the next one (codes change every 30 seconds).';
    case 'ERR_SESSION_INVALID':
    case 'ERR_AUTH_MISSING':
      return 'Your session has ended. Sign in again.';
    case 'ERR_ROLE_FORBIDDEN':
      return `Your role does not allow this. Ask an owner or admin. (${err.message})`;
    case 'ERR_CSRF':
      return 'The request was refused as cross-site. Reload the console and try again.';
    default:
      return `${err.message} (${err.code})`;
  }
}
