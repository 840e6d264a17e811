/** Members: invite by single-use link, change role, remove; require MFA for the org. */
import { useState } from 'preact/hooks';
import { call, type Member, type SessionInfo } from '../api.js';
import { CopyButton, Field, Notice, PageTitle, useAction, useLoad, when } from '../ui.js';

const ROLES = ['owner', 'admin', 'developer', 'viewer'] as const;
const ROLE_TEXT: Record<(typeof ROLES)[number], string> = {
  owner: 'Owner: everything, including the owner role and erasing the org',
  admin: 'Admin: everything but the owner role',
  developer: 'Developer: apps, keys, media, jobs, webhooks, usage (no audit log, no members)',
  viewer: 'Viewer: reads apps, media, jobs and usage',
};

export function Members(props: { session: SessionInfo; onPolicy: (requireMfa: boolean) => void }) {
  const me = props.session.user;
  const admin = me.role === 'owner' || me.role === 'admin';
  const members = useLoad(() => call<{ data: Member[] }>('GET', '/v1/console/members'));
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<Member['role']>('developer');
  const [invite, setInvite] = useState<{ url: string | null; email: string; expires: string } | null>(null);
  const [ok, setOk] = useState<string | null>(null);
  const send = useAction(async () => {
    const r = await call<{ member: Member; invite_url: string | null; expires_at: string }>('POST', '/v1/console/members', { email, role });
    setInvite({ url: r.invite_url, email: r.member.email, expires: r.expires_at });
    setEmail('');
    members.reload();
  });
  const change = useAction(async (m: Member, to: Member['role']) => {
    await call('PATCH', `/v1/console/members/${m.id}`, { role: to });
    setOk(`${m.email} is now ${to}.`);
    members.reload();
  });
  const remove = useAction(async (m: Member) => {
    if (!confirm(`Remove ${m.email}? Their sessions end at once.`)) return;
    await call('DELETE', `/v1/console/members/${m.id}`);
    setOk(`${m.email} was removed.`);
    members.reload();
  });
  const policy = useAction(async (on: boolean) => {
    await call('PUT', '/v1/console/org/mfa-policy', { require_mfa: on });
    props.onPolicy(on);
    setOk(on ? 'Two-factor authentication is now required for every member.' : 'Two-factor authentication is no longer required.');
  });
  const assignable = ROLES.filter((r) => me.role === 'owner' || r !== 'owner');

  return (
    <main id="main">
      <PageTitle>Members</PageTitle>
      <Notice error={members.error ?? change.error ?? remove.error ?? policy.error} ok={ok} />
      {members.data ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">Members of {props.session.org.name}</caption>
            <thead>
              <tr>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                <th scope="col">Two-factor</th>
                <th scope="col">Since</th>
                {admin ? <th scope="col">Actions</th> : null}
              </tr>
            </thead>
            <tbody>
              {members.data.data.map((m) => (
                <tr key={m.id} data-member={m.email}>
                  <td data-label="Email">
                    {m.email}
                    {m.id === me.id ? <span class="badge">you</span> : null}
                    {m.pending ? <span class="badge">invited</span> : null}
                  </td>
                  <td data-label="Role">
                    {admin && (me.role === 'owner' || m.role !== 'owner') ? (
                      <>
                        <label class="sr-only" for={`role-${m.id}`}>
                          Role of {m.email}
                        </label>
                        <select id={`role-${m.id}`} value={m.role} onChange={(e) => void change.run(m, e.currentTarget.value as Member['role'])} disabled={change.busy}>
                          {assignable.map((r) => (
                            <option value={r} key={r}>
                              {r}
                            </option>
                          ))}
                        </select>
                      </>
                    ) : (
                      m.role
                    )}
                  </td>
                  <td data-label="Two-factor">{m.mfa_enabled ? 'on' : 'off'}</td>
                  <td data-label="Since">{when(m.created_at)}</td>
                  {admin ? (
                    <td>
                      {m.id !== me.id && (me.role === 'owner' || m.role !== 'owner') ? (
                        <button type="button" class="danger" onClick={() => void remove.run(m)} disabled={remove.busy}>
                          Remove<span class="sr-only"> {m.email}</span>
                        </button>
                      ) : null}
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <p class="hint" role="status">Loading…</p>
      )}
      {admin ? (
        <>
          <form
            class="card"
            aria-labelledby="invite-title"
            onSubmit={(e) => {
              e.preventDefault();
              void send.run();
            }}
          >
            <h2 id="invite-title">Invite a member</h2>
            <Field id="invite-email" label="Email">
              <input id="invite-email" type="email" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
            </Field>
            <Field id="invite-role" label="Role" hint={ROLE_TEXT[role]}>
              <select id="invite-role" value={role} onChange={(e) => setRole(e.currentTarget.value as Member['role'])} aria-describedby="invite-role-hint">
                {assignable.map((r) => (
                  <option value={r} key={r}>
                    {r}
                  </option>
                ))}
              </select>
            </Field>
            <Notice error={send.error} />
            <button type="submit" class="primary" disabled={send.busy}>
              Invite
            </button>
          </form>
          {invite ? (
            <section class="card reveal" aria-labelledby="invite-link-title">
              <h2 id="invite-link-title">Invitation for {invite.email}</h2>
              {invite.url ? (
                <>
                  <p>No mailer is configured, so hand this single-use link to them yourself. It works until {when(invite.expires)}; you will not see it again.</p>
                  <p class="secret-line">
                    <code class="secret" data-testid="invite-url">
                      {invite.url}
                    </code>
                    <CopyButton text={invite.url} label="Copy link" />
                  </p>
                </>
              ) : (
                <p>The invitation was mailed. The link works until {when(invite.expires)}.</p>
              )}
            </section>
          ) : null}
          <section class="card" aria-labelledby="mfa-policy-title">
            <h2 id="mfa-policy-title">Two-factor authentication</h2>
            <p>{props.session.org.require_mfa ? 'Required for every member: those without it can only enrol until they do.' : 'Optional. Requiring it confines members without it to enrolment until they set it up.'}</p>
            <Notice />
            <button type="button" onClick={() => void policy.run(!props.session.org.require_mfa)} disabled={policy.busy}>
              {props.session.org.require_mfa ? 'Stop requiring two-factor' : 'Require two-factor for everyone'}
            </button>
          </section>
        </>
      ) : (
        <p class="empty">Only owners and admins manage members.</p>
      )}
    </main>
  );
}
