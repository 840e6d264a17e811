/**
 * Scopes: least privilege. A credential carries an explicit list; a route names the one it needs.
 */
export const SCOPES = [
  'apps:read',
  'apps:write',
  'keys:manage',
  'assets:read',
  'assets:write',
  'jobs:read',
  'jobs:write',
  'webhooks:manage',
  'audit:read',
  'usage:read',
] as const;
export type Scope = (typeof SCOPES)[number];

/**
 * What a publishable key may ever hold: it ships inside web pages, so it can only upload (and read
 * back what the page uploaded through signed URLs issued by the backend).
 */
export const PUBLISHABLE_SCOPES: readonly Scope[] = ['assets:write'];

export function isScope(s: string): s is Scope {
  return (SCOPES as readonly string[]).includes(s);
}
