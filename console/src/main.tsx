/**
 * The Obscura web console: a Preact single-page app served at /console under a strict CSP. It is only a
 * client of the public API: the session cookie (HttpOnly) plus the session's CSRF token.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, call, setCsrf, type SessionInfo } from './api.js';
import { navigate, usePath } from './router.js';
import { Link, Notice } from './ui.js';
import { EnrolMfa, ResetPassword, SignIn } from './pages/auth.js';
import { AppKeys, Apps } from './pages/apps.js';
import { Members } from './pages/members.js';
import { Account } from './pages/account.js';
import { Media } from './pages/media.js';
import { AssetPage } from './pages/asset.js';
import { Audit, Usage } from './pages/insight.js';
import { Playground } from './pages/playground.js';
import { Webhooks } from './pages/webhooks.js';

type Boot = { state: 'loading' } | { state: 'out' } | { state: 'in'; session: SessionInfo; scopes: Set<string> } | { state: 'error'; error: unknown };

function Shell() {
  const path = usePath();
  const [boot, setBoot] = useState<Boot>({ state: 'loading' });

  const enter = async (s: SessionInfo) => {
    setCsrf(s.csrf_token);
    // What the member's role may do, from the server (the UI hides; the API enforces).
    const scopes = s.mfa_enrolment_required ? new Set<string>() : new Set((await call<{ scopes: string[] }>('GET', '/v1/whoami')).scopes);
    setBoot({ state: 'in', session: s, scopes });
  };
  const refresh = async () => {
    try {
      await enter(await call<SessionInfo>('GET', '/v1/console/session'));
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.code === 'ERR_MFA_ENROLMENT_REQUIRED')) {
        setCsrf(null);
        setBoot({ state: 'out' });
      } else setBoot({ state: 'error', error: err });
    }
  };
  useEffect(() => {
    void refresh();
  }, []);

  const signOut = async () => {
    try {
      await call('POST', '/v1/console/logout');
    } catch {
      /* the session may already be gone */
    }
    setCsrf(null);
    setBoot({ state: 'out' });
    navigate('/login', true);
  };

  // Pages that need no session.
  if (path === '/reset-password') return <Frame>{<ResetPassword />}</Frame>;
  if (path === '/accept-invite') return <Frame>{<ResetPassword invite />}</Frame>;

  if (boot.state === 'loading') return <Frame><p class="hint" role="status">Loading…</p></Frame>;
  if (boot.state === 'error') return <Frame><main id="main"><Notice error={boot.error} /></main></Frame>;
  if (boot.state === 'out') {
    return (
      <Frame>
        <SignIn
          onSession={(s) => {
            void enter(s).then(() => navigate('/', true));
          }}
        />
      </Frame>
    );
  }
  const { session, scopes } = boot;
  if (session.mfa_enrolment_required) {
    return (
      <Frame session={session} onSignOut={signOut} path={path}>
        <EnrolMfa required onDone={() => void refresh()} />
      </Frame>
    );
  }
  let page;
  const appMatch = /^\/apps\/([0-9a-f-]{36})$/.exec(path);
  if (appMatch) page = <AppKeys appId={appMatch[1]!} scopes={scopes} />;
  else if (path === '/members') page = <Members session={session} onPolicy={() => void refresh()} />;
  else if (path === '/media') page = <Media scopes={scopes} />;
  else if (/^\/media\/ast_[0-9A-Za-z]{22}$/.test(path)) page = <AssetPage assetId={path.slice('/media/'.length)} scopes={scopes} />;
  else if (path === '/playground') page = <Playground />;
  else if (path === '/usage') page = <Usage />;
  else if (path === '/webhooks') page = <Webhooks scopes={scopes} />;
  else if (path === '/audit') page = <Audit />;
  else if (path === '/account') page = <Account session={session} onSignOut={signOut} />;
  else if (path === '/account/mfa') page = <EnrolMfa required={false} onDone={() => void refresh().then(() => navigate('/account'))} />;
  else if (path === '/' || path === '/login') page = <Apps scopes={scopes} />;
  else
    page = (
      <main id="main">
        <h1>Not found</h1>
        <p>
          This console page does not exist. <Link to="/">Go to your apps</Link>.
        </p>
      </main>
    );
  return (
    <Frame session={session} scopes={scopes} onSignOut={signOut} path={path}>
      {page}
    </Frame>
  );
}

function Frame(props: { children: preact.ComponentChildren; session?: SessionInfo; scopes?: Set<string>; onSignOut?: () => void; path?: string }) {
  const s = props.session;
  const nav: Array<[string, string]> = [
    ['/', 'Apps'],
    ['/media', 'Media'],
    ...(props.scopes?.has('jobs:write') ? ([['/playground', 'Playground']] as Array<[string, string]>) : []),
    ['/usage', 'Usage'],
    ...(props.scopes?.has('webhooks:manage') ? ([['/webhooks', 'Webhooks']] as Array<[string, string]>) : []),
    ...(props.scopes?.has('audit:read') ? ([['/audit', 'Audit log']] as Array<[string, string]>) : []),
    ['/members', 'Members'],
    ['/account', 'Account'],
  ];
  return (
    <>
      <a href="#main" class="skip">
        Skip to content
      </a>
      <header class="top">
        <span class="brand" aria-label="Obscura console">
          <span aria-hidden="true" class="logo" />
          Obscura
        </span>
        {s ? (
          <nav aria-label="Console">
            {nav.map(([to, label]) => (
              <Link key={to} to={to} current={props.path === to || (to === '/' && props.path?.startsWith('/apps/')) || (to === '/media' && props.path?.startsWith('/media/'))}>
                {label}
              </Link>
            ))}
            <button type="button" class="link" onClick={props.onSignOut}>
              Sign out
            </button>
          </nav>
        ) : null}
        {s ? (
          <span class="who">
            {s.user.email} · {s.user.role} · {s.org.name}
          </span>
        ) : null}
      </header>
      {props.children}
    </>
  );
}

render(<Shell />, document.getElementById('app')!);
