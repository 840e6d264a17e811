/**
 * Members of the org, inside the console plugin (session cookie + CSRF, see `console.ts`):
 * `GET /v1/console/members`, `POST /v1/console/members` (invite), `PATCH|DELETE /v1/console/members/{id}`.
 *
 * An invitation creates the account with an unusable password and issues a single-use link to set
 * one (the password-reset token, 30 minutes; `POST /v1/console/password-reset/confirm` accepts it).
 * With a configured mailer the link is mailed; without one (development, the default) it is returned
 * to the inviting owner or admin to hand over, once.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static, type TSchema } from 'typebox';
import type { DatabaseHandle } from '../../db/database.js';
import type { ConsoleSession, RequestCtx, ResetMailer } from '../../auth/console.js';
import { createPasswordResetLink } from '../../auth/console.js';
import { changeMemberRole, inviteMember, listMembers, removeMember, type Member } from '../../tenants/members.js';
import { DateTime, IdParams, Uuid } from './common.js';

const Role = Type.Union([Type.Literal('owner'), Type.Literal('admin'), Type.Literal('developer'), Type.Literal('viewer')]);
const MemberOut = Type.Object(
  {
    id: Uuid,
    email: Type.String(),
    role: Role,
    mfa_enabled: Type.Boolean(),
    pending: Type.Boolean({ description: 'An unused set-password link (invitation or reset) is outstanding.' }),
    created_at: DateTime,
  },
  { additionalProperties: false },
);
const InviteBody = Type.Object({ email: Type.String({ minLength: 3, maxLength: 254 }), role: Role }, { additionalProperties: false, examples: [{ email: 'dev@example.com', role: 'developer' }] });
const RoleBody = Type.Object({ role: Role }, { additionalProperties: false });
const InviteOut = Type.Object(
  {
    member: MemberOut,
    invite_url: Type.Union([Type.String(), Type.Null()], { description: 'The single-use link, when no mailer is configured (development): hand it to the invitee. Null when it was mailed.' }),
    expires_at: DateTime,
  },
  { additionalProperties: false },
);

/** A member as the API shows it (also the tenant export's records). */
export const out = (m: Member) => ({ id: m.id, email: m.email, role: m.role, mfa_enabled: m.mfaEnabled, pending: m.pending, created_at: m.createdAt });

/** What the console plugin hands to the member routes. */
export interface MemberRouteDeps {
  db: DatabaseHandle;
  publicUrl: string;
  /** The operator's mailer, if one is configured (then links are mailed, not returned). */
  mailer: ResetMailer | undefined;
  current(req: FastifyRequest): { session: ConsoleSession };
  rcOf(req: FastifyRequest): RequestCtx;
  errors(extra?: Record<number, string>): Record<number, TSchema>;
}

export function memberRoutes(app: FastifyInstance, deps: MemberRouteDeps): void {
  const tags = ['console'];
  const ctx = (req: FastifyRequest) => {
    const { session } = deps.current(req);
    const rc = deps.rcOf(req);
    return { session, ctx: { actor: { type: 'user' as const, id: session.userId }, ip: rc.ip, requestId: rc.requestId } };
  };
  const forbidden = 'Not an owner or admin, or an admin touching the owner role (ERR_ROLE_FORBIDDEN); cross-site (ERR_CSRF).';
  const memberOf = async (orgId: string, id: string) => (await deps.db.withTenant(orgId, (trx) => listMembers(trx, orgId))).find((m) => m.id === id)!;

  app.get('/v1/console/members', {
    config: { console: 'session' },
    schema: { tags, summary: "List the org's members and their roles", response: { 200: Type.Object({ data: Type.Array(MemberOut) }, { additionalProperties: false }), ...deps.errors() } },
    handler: async (req) => {
      const { session } = deps.current(req);
      return { data: (await deps.db.withTenant(session.orgId, (trx) => listMembers(trx, session.orgId))).map(out) };
    },
  });

  app.post<{ Body: Static<typeof InviteBody> }>('/v1/console/members', {
    config: { console: 'session' },
    schema: {
      tags,
      summary: 'Invite a member with a role: a single-use link to set their password (owner or admin)',
      body: InviteBody,
      response: { 201: InviteOut, ...deps.errors({ 400: 'Invalid email or role (ERR_VALIDATION).', 403: forbidden, 409: 'The email already has an account (ERR_CONFLICT).' }) },
    },
    handler: async (req, reply) => {
      const { session, ctx: c } = ctx(req);
      const user = await deps.db.withTenant(session.orgId, (trx) => inviteMember(trx, session.orgId, session.role, req.body, c));
      const link = await createPasswordResetLink(deps.db, user.email, { actor: c.actor, baseUrl: deps.publicUrl });
      const url = link.url!.replace('/console/reset-password#', '/console/accept-invite#');
      if (deps.mailer) await deps.mailer.sendPasswordReset({ email: link.email, token: link.token, expiresAt: link.expiresAt, orgId: link.orgId, userId: link.userId });
      return reply
        .code(201)
        .header('Cache-Control', 'no-store')
        .send({ member: out(await memberOf(session.orgId, user.id)), invite_url: deps.mailer ? null : url, expires_at: link.expiresAt });
    },
  });

  app.patch<{ Params: Static<typeof IdParams>; Body: Static<typeof RoleBody> }>('/v1/console/members/:id', {
    config: { console: 'session' },
    schema: {
      tags,
      summary: "Change a member's role (owner or admin; only an owner touches the owner role; the last owner stays)",
      params: IdParams,
      body: RoleBody,
      response: { 200: MemberOut, ...deps.errors({ 403: forbidden, 404: 'No such member in your org (ERR_NOT_FOUND).', 409: 'The last owner cannot be demoted (ERR_CONFLICT).' }) },
    },
    handler: async (req) => {
      const { session, ctx: c } = ctx(req);
      await deps.db.withTenant(session.orgId, (trx) => changeMemberRole(trx, session.orgId, session.role, req.params.id, req.body.role, c));
      return out(await memberOf(session.orgId, req.params.id));
    },
  });

  app.delete<{ Params: Static<typeof IdParams> }>('/v1/console/members/:id', {
    config: { console: 'session' },
    schema: {
      tags,
      summary: 'Remove a member: their account, sessions and MFA end at once (owner or admin; the last owner stays)',
      params: IdParams,
      response: { 204: Type.Null(), ...deps.errors({ 403: forbidden, 404: 'No such member in your org (ERR_NOT_FOUND).', 409: 'The last owner cannot be removed (ERR_CONFLICT).' }) },
    },
    handler: async (req, reply) => {
      const { session, ctx: c } = ctx(req);
      await deps.db.withTenant(session.orgId, (trx) => removeMember(trx, session.orgId, session.role, req.params.id, c));
      return reply.code(204).send();
    },
  });
}
