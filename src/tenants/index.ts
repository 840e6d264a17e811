/**
 * Tenants: orgs, their users (with roles) and their apps.
 *
 * Every function that touches tenant data takes a tenant transaction (`db.withTenant`) and still
 * filters by `org_id` itself: RLS is the second wall, not the first.
 */
import type { Tx } from '../db/database.js';
import type { AppSettings, UserRole } from '../db/schema.js';
import { AppError, notFound } from '../errors.js';
import { newId } from '../crypto/random.js';
import { appendAudit, type AuditActor } from '../audit/log.js';
import { hashPassword, verifyPassword, dummyHash } from '../crypto/passwords.js';
import { assertPasswordPolicy } from './password-policy.js';
import { ALL_ROWS, keysetPage, mapPage, type ListOrder, type Page, type PageRequest } from '../db/pagination.js';

export const ROLES: readonly UserRole[] = ['owner', 'admin', 'developer', 'viewer'];

export interface Org {
  id: string;
  name: string;
  createdAt: string;
}

export interface App {
  id: string;
  orgId: string;
  name: string;
  settings: AppSettings;
  createdAt: string;
}

export interface User {
  id: string;
  orgId: string;
  email: string;
  role: UserRole;
  createdAt: string;
}

export interface Ctx {
  actor: AuditActor;
  ip?: string | null;
  requestId?: string | null;
}

const iso = (d: Date | string) => new Date(d).toISOString();

/**
 * Creates an org. Run in a tenant transaction for the new id (`db.withTenant(id, ...)`): the insert
 * itself is owner-level because no tenant exists yet, so callers pass an owner transaction.
 */
export async function createOrg(trx: Tx, name: string, ctx: Ctx, id = newId()): Promise<Org> {
  const row = await trx.insertInto('orgs').values({ id, name }).returningAll().executeTakeFirstOrThrow();
  await appendAudit(trx, { orgId: id, actor: ctx.actor, action: 'org.create', target: { org: id }, data: { name }, ip: ctx.ip, requestId: ctx.requestId });
  return { id: row.id, name: row.name, createdAt: iso(row.created_at) };
}

function validateEmail(email: string): string {
  const e = email.trim();
  if (e.length > 254 || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(e)) {
    throw new AppError('ERR_VALIDATION', 'The email address is not valid.', { details: { field: 'email' } });
  }
  return e;
}

export async function createUser(trx: Tx, orgId: string, input: { email: string; password: string; role: UserRole }, ctx: Ctx): Promise<User> {
  const email = validateEmail(input.email);
  const org = await trx.selectFrom('orgs').select('name').where('id', '=', orgId).executeTakeFirst();
  assertPasswordPolicy(input.password, { email, orgName: org?.name });
  if (!ROLES.includes(input.role)) throw new AppError('ERR_VALIDATION', 'Unknown role.', { details: { field: 'role' } });
  const exists = await trx.selectFrom('users').select('id').where((eb) => eb(eb.fn('lower', ['email']), '=', email.toLowerCase())).executeTakeFirst();
  if (exists) throw new AppError('ERR_CONFLICT', 'A user with this email already exists.');
  // The unique index spans every org (email is the login name), but RLS hides other orgs' rows from
  // the check above, so a collision with another org surfaces as a unique violation here.
  const row = await trx
    .insertInto('users')
    .values({ id: newId(), org_id: orgId, email, password_hash: await hashPassword(input.password), role: input.role })
    .returningAll()
    .executeTakeFirstOrThrow()
    .catch((err: unknown) => {
      if ((err as { code?: string }).code === '23505') throw new AppError('ERR_CONFLICT', 'A user with this email already exists.');
      throw err;
    });
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'user.create', target: { user: row.id }, data: { email, role: input.role }, ip: ctx.ip, requestId: ctx.requestId });
  return { id: row.id, orgId, email: row.email, role: row.role, createdAt: iso(row.created_at) };
}

/** Changes a user's role; the last owner cannot be demoted (an org must keep an owner). Audited. */
export async function setUserRole(trx: Tx, orgId: string, email: string, role: UserRole, ctx: Ctx): Promise<User> {
  if (!ROLES.includes(role)) throw new AppError('ERR_VALIDATION', 'Unknown role.', { details: { field: 'role' } });
  const user = await trx
    .selectFrom('users')
    .selectAll()
    .where('org_id', '=', orgId)
    .where((eb) => eb(eb.fn('lower', ['email']), '=', email.trim().toLowerCase()))
    .forUpdate()
    .executeTakeFirst();
  if (!user) throw notFound('user');
  if (user.role === 'owner' && role !== 'owner') {
    const owners = await trx.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).where('org_id', '=', orgId).where('role', '=', 'owner').executeTakeFirstOrThrow();
    if (Number(owners.n) <= 1) throw new AppError('ERR_CONFLICT', 'The last owner of an org cannot be demoted.');
  }
  await trx.updateTable('users').set({ role }).where('id', '=', user.id).where('org_id', '=', orgId).execute();
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'user.role_change', target: { user: user.id }, data: { from: user.role, to: role }, ip: ctx.ip, requestId: ctx.requestId });
  return { id: user.id, orgId, email: user.email, role, createdAt: iso(user.created_at) };
}

/**
 * Checks an email + password. Owner-level (the org is not known before the user is found). Success and
 * failure are both audited to the user's org; an unknown email is audited to the system chain. The
 * unknown-email path still runs argon2 so response time does not reveal which accounts exist.
 */
export async function authenticateUser(trx: Tx, email: string, password: string, ctx: Omit<Ctx, 'actor'>): Promise<User> {
  const user = await trx.selectFrom('users').selectAll().where((eb) => eb(eb.fn('lower', ['email']), '=', email.trim().toLowerCase())).executeTakeFirst();
  const ok = await verifyPassword(user?.password_hash ?? (await dummyHash()), password);
  if (!user || !ok) {
    await appendAudit(trx, {
      orgId: user?.org_id ?? null,
      actor: { type: 'anonymous' },
      action: 'auth.login_failure',
      target: user ? { user: user.id } : {},
      data: { reason: user ? 'bad_password' : 'unknown_user' },
      ip: ctx.ip,
      requestId: ctx.requestId,
    });
    throw new AppError('ERR_LOGIN_FAILED', 'The email or password is wrong.');
  }
  await appendAudit(trx, { orgId: user.org_id, actor: { type: 'user', id: user.id }, action: 'auth.login_success', target: { user: user.id }, ip: ctx.ip, requestId: ctx.requestId });
  return { id: user.id, orgId: user.org_id, email: user.email, role: user.role, createdAt: iso(user.created_at) };
}

const toApp = (r: { id: string; org_id: string; name: string; settings: unknown; created_at: Date }): App => ({
  id: r.id,
  orgId: r.org_id,
  name: r.name,
  settings: (typeof r.settings === 'string' ? JSON.parse(r.settings) : r.settings) as AppSettings,
  createdAt: iso(r.created_at),
});

export async function createApp(trx: Tx, orgId: string, input: { name: string; settings?: AppSettings }, ctx: Ctx): Promise<App> {
  const row = await trx
    .insertInto('apps')
    .values({ id: newId(), org_id: orgId, name: input.name, settings: JSON.stringify(input.settings ?? {}) })
    .returningAll()
    .executeTakeFirstOrThrow();
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'app.create', target: { app: row.id }, data: { name: input.name }, ip: ctx.ip, requestId: ctx.requestId });
  return toApp(row);
}

/** App lists: oldest first, keyset on (created_at, id). */
export const APP_ORDER: ListOrder = { keys: [{ column: 'created_at', type: 'timestamptz' }, { column: 'id', type: 'uuid' }], direction: 'asc' };

/** One page of the org's apps (all of them by default), oldest first. */
export async function listApps(trx: Tx, orgId: string, page: PageRequest = ALL_ROWS): Promise<Page<App>> {
  return mapPage(await keysetPage(trx.selectFrom('apps').selectAll().where('org_id', '=', orgId), APP_ORDER, page), toApp);
}

/** The app, or `ERR_NOT_FOUND` when it does not exist or belongs to another org (same answer). */
export async function getApp(trx: Tx, orgId: string, appId: string): Promise<App> {
  const row = await trx.selectFrom('apps').selectAll().where('org_id', '=', orgId).where('id', '=', appId).executeTakeFirst();
  if (!row) throw notFound('app');
  return toApp(row);
}

/** Merges settings into an app's policy. Audited with the changed field names. */
export async function updateAppSettings(trx: Tx, orgId: string, appId: string, patch: { name?: string; settings?: AppSettings }, ctx: Ctx): Promise<App> {
  const app = await getApp(trx, orgId, appId);
  const settings = { ...app.settings, ...(patch.settings ?? {}) };
  const row = await trx
    .updateTable('apps')
    .set({ name: patch.name ?? app.name, settings: JSON.stringify(settings) })
    .where('org_id', '=', orgId)
    .where('id', '=', appId)
    .returningAll()
    .executeTakeFirstOrThrow();
  await appendAudit(trx, { orgId, actor: ctx.actor, action: 'app.update', target: { app: appId }, data: { fields: [...(patch.name ? ['name'] : []), ...Object.keys(patch.settings ?? {})] }, ip: ctx.ip, requestId: ctx.requestId });
  return toApp(row);
}
