/**
 * Scopes: least privilege. A credential carries an explicit list; a route names the ones it needs
 * (`config: { auth: true, scope: 'x' }` or `scopes: ['x', 'y']`, all required; see src/http/auth.ts).
 * The table of route → scopes, and why, is in docs/security-model.md ("Scopes").
 *
 * Rules the table follows:
 * - every way of reading an asset's content needs `assets:read` (signed download URLs, `/v1/process`
 *   and jobs with an `asset_id` input, minting a transform-URL key);
 * - destroying data has its own scope (`assets:delete`), never implied by `assets:write`;
 * - minting or revoking a secret (API key, OAuth client, transform key, webhook secret) needs every
 *   scope that secret grants or stands for.
 */
export const SCOPES = [
  'apps:read',
  'apps:write',
  'keys:manage',
  'assets:read',
  'assets:write',
  /** Delete assets (destructive: an uploader key must not be able to erase what others stored). */
  'assets:delete',
  'jobs:read',
  'jobs:write',
  'webhooks:manage',
  'audit:read',
  'usage:read',
  /** Start an on-device licence session (publishable keys, opt-in; issue 15). */
  'licenses:session',
  /** Issue offline licence files for on-device processing (issue 15). */
  'licenses:issue',
] as const;
export type Scope = (typeof SCOPES)[number];

/**
 * What a publishable key may ever hold: it ships inside web pages, so it can only upload (and read
 * back what the page uploaded through signed URLs issued by the backend).
 */
export const PUBLISHABLE_SCOPES: readonly Scope[] = ['assets:write', 'licenses:session'];

/**
 * What a publishable key holds when none are requested. On-device licence sessions are opt-in: a key
 * minted for uploads does not also unlock licences (request `licenses:session`).
 */
export const PUBLISHABLE_DEFAULT_SCOPES: readonly Scope[] = ['assets:write'];

export function isScope(s: string): s is Scope {
  return (SCOPES as readonly string[]).includes(s);
}

/** The scopes a route requires: the union of `config.scope` and `config.scopes`. */
export function routeScopes(cfg: { scope?: Scope; scopes?: readonly Scope[] } | undefined): Scope[] {
  if (!cfg) return [];
  return [...new Set([...(cfg.scope ? [cfg.scope] : []), ...(cfg.scopes ?? [])])];
}
