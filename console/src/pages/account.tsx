/** The member's own account: sessions (list, revoke), two-factor status, sign out. */
import { call, type SessionInfo } from '../api.js';
import { Link, Notice, PageTitle, useAction, useLoad, when } from '../ui.js';

interface SessionRow {
  id: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  ip: string | null;
  user_agent: string | null;
  current: boolean;
}

export function Account(props: { session: SessionInfo; onSignOut: () => void }) {
  const sessions = useLoad(() => call<{ data: SessionRow[] }>('GET', '/v1/console/sessions?limit=100'));
  const revoke = useAction(async (s: SessionRow) => {
    await call('DELETE', `/v1/console/sessions/${s.id}`);
    if (s.current) props.onSignOut();
    else sessions.reload();
  });
  const u = props.session.user;
  return (
    <main id="main">
      <PageTitle>Your account</PageTitle>
      <dl class="facts">
        <dt>Email</dt>
        <dd>{u.email}</dd>
        <dt>Role</dt>
        <dd>{u.role}</dd>
        <dt>Organisation</dt>
        <dd>{props.session.org.name}</dd>
        <dt>Two-factor</dt>
        <dd>{u.mfa_enabled ? 'enabled' : <Link to="/account/mfa">Not enabled: set it up</Link>}</dd>
      </dl>
      <h2>Sessions</h2>
      <Notice error={sessions.error ?? revoke.error} />
      {sessions.data ? (
        <ul class="list" aria-label="Your sessions">
          {sessions.data.data.map((s) => (
            <li key={s.id}>
              <span>
                {s.current ? <strong>This session</strong> : 'Session'} · {s.ip ?? 'unknown address'} · started {when(s.created_at)} · last seen {when(s.last_seen_at)}
                <br />
                <span class="hint">{s.user_agent ?? ''}</span>
              </span>
              <button type="button" class="danger" onClick={() => void revoke.run(s)} disabled={revoke.busy}>
                {s.current ? 'Sign out here' : 'Revoke'}
              </button>
            </li>
          ))}
        </ul>
      ) : (
        <p class="hint" role="status">Loading…</p>
      )}
    </main>
  );
}
