/**
 * The members of an org (console users): list, change role, remove. Invitations are accounts created
 * with an unusable random password plus a single-use password-setting link (the password-reset token
 * of src/auth/console.ts), so accepting an invitation is setting one's own password.
 * Rules: an org always keeps an owner; only an owner grants, changes or removes the owner role.
 */
import { randomBytes } from 'node:crypto';
import type { Tx } from '../db/database.js';
import type { UserRole } from '../db/schema.js';
import { AppError, notFound } from '../errors.js';
import { appendAudit } from '../audit/log.js';
import { createUser, setUserRole, type Ctx, type User } from './index.js';

/** A member as the console lists it. */
export interface Member {
  id: string;
  email: string;
  role: UserRole;
  mfaEnabled: boolean;
  /** An unused, unexpired set-password link is outstanding (an invitation not yet accepted, or a reset). */
  pending: boolean;
  createdAt: string;
}

const iso = (d: Date | string) => new Date(d).toISOString();

/** Every member of the org, oldest first (orgs have tens of members, not thousands: no paging). */
export async function listMembers(trx: Tx, orgId: string): Promise<Member[]> {
  const rows = await trx
    .selectFrom('users as u')
    .leftJoin('user_mfa as m', 'm.user_id', 'u.id')
    .select(['u.id', 'u.email', 'u.role', 'u.created_at', 'm.confirmed_at'])
    .select((eb) =>
      eb
        .exists(eb.selectFrom('password_resets as r').select('r.id').whereRef('r.user_id', '=', 'u.id').where('r.used_at', 'is', null).where('r.expires_at', '>', new Date()))
        .as('link_outstanding'),
    )
    .where('u.org_id', '=', orgId)
    .orderBy('u.created_at')
    .orderBy('u.id')
    .execute();
  return rows.map((r) => ({ id: r.id, email: r.email, role: r.role, mfaEnabled: r.confirmed_at != null, pending: Boolean(r.link_outstanding), createdAt: iso(r.created_at) }));
}

async function memberById(trx: Tx, orgId: string, userId: string) {
  const row = await trx.selectFrom('users').select(['id', 'email', 'role']).where('org_id', '=', orgId).where('id', '=', userId).forUpdate().executeTakeFirst();
  if (!row) throw notFound('member');
  return row;
}

function assertMayTouch(actorRole: UserRole, from: UserRole | null, to: UserRole | null): void {
  if (actorRole !== 'owner' && actorRole !== 'admin') throw new AppError('ERR_ROLE_FORBIDDEN', 'Only an owner or admin manages members.');
  if (actorRole !== 'owner' && (from === 'owner' || to === 'owner')) throw new AppError('ERR_ROLE_FORBIDDEN', 'Only an owner grants, changes or removes the owner role.');
}

/**
 * Creates an invited member: an account with a random, never-shown password (so it cannot be used
 * until the invitee sets their own through the invitation link). Audited as `user.create` with `invited`.
 */
export async function inviteMember(trx: Tx, orgId: string, actorRole: UserRole, input: { email: string; role: UserRole }, ctx: Ctx): Promise<User> {
  assertMayTouch(actorRole, null, input.role);
  // 256 random bits: passes any policy, and nobody knows it.
  const password = `${randomBytes(32).toString('base64url')}-Inv1!`;
  const user = await createUser(trx, orgId, { email: input.email, password, role: input.role }, { ...ctx, actor: { ...ctx.actor, invited: true } });
  return user;
}

/** Changes a member's role (the last owner cannot be demoted). Audited as `user.role_change`. */
export async function changeMemberRole(trx: Tx, orgId: string, actorRole: UserRole, userId: string, role: UserRole, ctx: Ctx): Promise<User> {
  const m = await memberById(trx, orgId, userId);
  assertMayTouch(actorRole, m.role, role);
  return setUserRole(trx, orgId, m.email, role, ctx);
}

/**
 * Removes a member: their sessions, reset tokens and MFA go with the account. The last owner cannot
 * be removed. Audited as `user.remove`.
 */
export async function removeMember(trx: Tx, orgId: string, actorRole: UserRole, userId: string, ctx: Ctx): Promise<void> {
  const m = await memberById(trx, orgId, userId);
  assertMayTouch(actorRole, m.role, null);
  if (m.role === 'owner') {
    const owners = await trx.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).where('org_id', '=', orgId).where('role', '=', 'owner').executeTakeFirstOrThrow();
    if (Number(owners.n) <= 1) throw new AppError('ERR_CONFLICT', 'The last owner of an org cannot be removed.');
  }
  // Sessions, reset tokens and the TOTP secret go with the row (ON DELETE CASCADE, migration 0004).
  await trx.deleteFrom('users').where('org_id', '=', orgId).where('id', '=', userId).execute();
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'user.remove', target: { user: userId }, data: { email: m.email, role: m.role }, ip: ctx.ip, requestId: ctx.requestId });
}
