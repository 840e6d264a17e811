/** Sign-in, password reset, accepting an invitation and TOTP enrolment. */
import { useEffect, useRef, useState } from 'preact/hooks';
import QRCode from 'qrcode';
import { ApiError, call, setCsrf, type SessionInfo } from '../api.js';
import { fragmentToken, navigate } from '../router.js';
import { Field, Link, Notice, PageTitle, useAction, type Submit } from '../ui.js';

/** Email + password; asks for the TOTP code when the account has one (ERR_MFA_REQUIRED). */
export function SignIn(props: { onSession: (s: SessionInfo) => void }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [totp, setTotp] = useState('');
  const [needTotp, setNeedTotp] = useState(false);
  const totpRef = useRef<HTMLInputElement>(null);
  const { busy, error, run, setError } = useAction(async () => {
    try {
      const s = await call<SessionInfo>('POST', '/v1/console/login', { email, password, ...(needTotp ? { totp } : {}) });
      setCsrf(s.csrf_token);
      props.onSession(s);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'ERR_MFA_REQUIRED') {
        setNeedTotp(true);
        setError(null);
        return;
      }
      throw err;
    }
  });
  useEffect(() => {
    if (needTotp) totpRef.current?.focus();
  }, [needTotp]);
  const submit = (e: Submit) => {
    e.preventDefault();
    void run();
  };
  return (
    <main class="narrow" id="main">
      <PageTitle>Sign in to Obscura</PageTitle>
      <form onSubmit={submit} class="card">
        <Field id="email" label="Email">
          <input id="email" type="email" autoComplete="username" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} disabled={needTotp} />
        </Field>
        <Field id="password" label="Password">
          <input id="password" type="password" autoComplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} disabled={needTotp} />
        </Field>
        {needTotp ? (
          <Field id="totp" label="Authentication code" hint="The 6-digit code from your authenticator app.">
            <input id="totp" ref={totpRef} inputMode="numeric" autoComplete="one-time-code" pattern="[0-9]{6}" maxLength={6} required value={totp} onInput={(e) => setTotp(e.currentTarget.value)} aria-describedby="totp-hint" />
          </Field>
        ) : null}
        <Notice error={error} />
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Signing in…' : needTotp ? 'Verify and sign in' : 'Sign in'}
          </button>
          <Link to="/reset-password">Forgot your password?</Link>
        </div>
      </form>
      <p class="hint">First time? Sign in with the owner email and password that <code>obscura init</code> printed.</p>
    </main>
  );
}

/** Asks for a reset link (always the same answer), or sets a new password with the link's token. */
export function ResetPassword(props: { invite?: boolean }) {
  const token = fragmentToken();
  return token ? <SetPassword token={token} invite={props.invite ?? false} /> : <RequestReset />;
}

function RequestReset() {
  const [email, setEmail] = useState('');
  const [sent, setSent] = useState(false);
  const { busy, error, run } = useAction(async () => {
    await call('POST', '/v1/console/password-reset', { email });
    setSent(true);
  });
  return (
    <main class="narrow" id="main">
      <PageTitle>Reset your password</PageTitle>
      <form
        class="card"
        onSubmit={(e) => {
          e.preventDefault();
          void run();
        }}
      >
        <Field id="reset-email" label="Email">
          <input id="reset-email" type="email" autoComplete="username" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
        </Field>
        <Notice error={error} ok={sent ? 'If an account uses this address, a single-use link is on its way. It works for 30 minutes. (No mailer configured? Ask your operator: obscura users reset-link.)' : null} />
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            Send reset link
          </button>
          <Link to="/login">Back to sign in</Link>
        </div>
      </form>
    </main>
  );
}

function SetPassword(props: { token: string; invite: boolean }) {
  const [password, setPassword] = useState('');
  const [again, setAgain] = useState('');
  const [done, setDone] = useState(false);
  const { busy, error, run, setError } = useAction(async () => {
    if (password !== again) {
      setError(new ApiError(400, 'ERR_MISMATCH', 'The two passwords differ.', {}));
      return;
    }
    await call('POST', '/v1/console/password-reset/confirm', { token: props.token, password });
    // The token is spent: take it out of the address bar and history.
    history.replaceState(null, '', location.pathname);
    setDone(true);
  });
  return (
    <main class="narrow" id="main">
      <PageTitle>{props.invite ? 'Accept your invitation' : 'Choose a new password'}</PageTitle>
      {done ? (
        <div class="card">
          <Notice ok={props.invite ? 'Your account is ready.' : 'Your password is set. Every other session was signed out.'} />
          <Link to="/login" class="button primary">
            Sign in
          </Link>
        </div>
      ) : (
        <form
          class="card"
          onSubmit={(e) => {
            e.preventDefault();
            void run();
          }}
        >
          <Field id="new-password" label="New password" hint="At least 12 characters; not a common password, your email or the organisation's name.">
            <input id="new-password" type="password" autoComplete="new-password" required minLength={12} value={password} onInput={(e) => setPassword(e.currentTarget.value)} aria-describedby="new-password-hint" />
          </Field>
          <Field id="new-password-again" label="Repeat the password">
            <input id="new-password-again" type="password" autoComplete="new-password" required value={again} onInput={(e) => setAgain(e.currentTarget.value)} />
          </Field>
          <Notice error={error} />
          <div class="actions">
            <button type="submit" class="primary" disabled={busy}>
              {props.invite ? 'Set password and join' : 'Set password'}
            </button>
          </div>
        </form>
      )}
    </main>
  );
}

/** TOTP enrolment: the QR code is drawn here from the otpauth URI (nothing leaves the page). */
export function EnrolMfa(props: { required: boolean; onDone: () => void }) {
  const [secret, setSecret] = useState<{ secret: string; otpauth_uri: string } | null>(null);
  const [code, setCode] = useState('');
  const canvas = useRef<HTMLCanvasElement>(null);
  const start = useAction(async () => setSecret(await call('POST', '/v1/console/mfa/enroll')));
  const confirm = useAction(async () => {
    await call('POST', '/v1/console/mfa/confirm', { code });
    props.onDone();
  });
  useEffect(() => {
    if (secret && canvas.current) void QRCode.toCanvas(canvas.current, secret.otpauth_uri, { width: 200, margin: 2 });
  }, [secret]);
  return (
    <main class="narrow" id="main">
      <PageTitle>Two-factor authentication</PageTitle>
      {props.required ? <p class="notice info">Your organisation requires two-factor authentication. Enrol an authenticator app to continue.</p> : null}
      {!secret ? (
        <div class="card">
          <p>Use an authenticator app (any TOTP app). After enrolment, signing in needs a code from it.</p>
          <Notice error={start.error} />
          <button type="button" class="primary" onClick={() => void start.run()} disabled={start.busy}>
            Start enrolment
          </button>
        </div>
      ) : (
        <form
          class="card"
          onSubmit={(e) => {
            e.preventDefault();
            void confirm.run();
          }}
        >
          <p>Scan this code with your app, or type the key below.</p>
          <canvas ref={canvas} class="qr" role="img" aria-label="QR code of the authenticator key" />
          <p>
            Key: <code class="secret" data-testid="totp-secret">{secret.secret}</code>
          </p>
          <Field id="mfa-code" label="Code from the app">
            <input id="mfa-code" inputMode="numeric" autoComplete="one-time-code" pattern="[0-9]{6}" maxLength={6} required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
          </Field>
          <Notice error={confirm.error} />
          <button type="submit" class="primary" disabled={confirm.busy}>
            Confirm
          </button>
        </form>
      )}
      {!props.required ? <Link to="/account">Back to your account</Link> : null}
    </main>
  );
}

export const goHome = () => navigate('/', true);
