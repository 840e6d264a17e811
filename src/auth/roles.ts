/**
 * Console roles as API scopes: a console session cookie on `/v1/*` acts with the scopes of the
 * member's role, checked by the same route scopes as API keys (server-enforced; the console UI only
 * hides what the role cannot do). Managing members and the org's MFA policy is not a scope: the
 * console routes check `owner`/`admin` themselves (src/http/routes/console.ts).
 *
 * - owner, admin: every scope.
 * - developer: builds with the API (apps, keys, assets, jobs, webhooks, usage) but does not read the
 *   audit log, which records what members do (an administrator's tool).
 * - viewer: reads apps, assets, jobs and usage; changes nothing and mints no credential.
 */
import type { UserRole } from '../db/schema.js';
import { SCOPES, type Scope } from './scopes.js';

/** The scopes each console role holds on `/v1/*`. */
export const ROLE_SCOPES: Readonly<Record<UserRole, readonly Scope[]>> = {
  owner: SCOPES,
  admin: SCOPES,
  developer: SCOPES.filter((s) => s !== 'audit:read'),
  viewer: ['apps:read', 'assets:read', 'jobs:read', 'usage:read'],
};

/** Roles that manage members, invitations and the org's MFA policy. */
export const MEMBER_ADMIN_ROLES: readonly UserRole[] = ['owner', 'admin'];
