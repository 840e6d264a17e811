import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';
import { DB_KINDS, openTestDb, superQuery, type TestDb } from '../support/db.js';
import { startServer, createTenant, api, type TestServer, type Tenant } from '../support/server.js';
import { createUser } from '../../src/tenants/index.js';
import type { UserRole } from '../../src/db/schema.js';
import { SESSION_COOKIE, createPasswordResetLink, csrfTokenFor, csrfTokenValid, logOnlyResetMailer, type PasswordResetMessage } from '../../src/auth/console.js';
import { newTotpSecret, verifyTotp } from '../../src/auth/totp.js';

/** The code an authenticator app shows at `ms` (RFC 6238 with otpauth, independent of the server's code path). */
const totpCode = (secret: Buffer, ms: number) => new TOTP({ secret: new Secret({ buffer: Uint8Array.from(secret).buffer }), digits: 6, period: 30, algorithm: 'SHA1' }).generate({ timestamp: ms });
import { ACCOUNT_POLICY, accountKey, backoffMs, chargeAttempt, ipKey } from '../../src/auth/throttle.js';

const PASSWORD = 'correct horse battery staple';
const NEW_PASSWORD = 'violet-kettle-orbit-93';

describe('console building blocks (pure)', () => {
  test('verifyTotp accepts ±1 step, refuses other steps, and refuses a step at or before the last one used', () => {
    const secret = newTotpSecret();
    const now = 1_800_000_000_000;
    const step = Math.floor(now / 30_000);
    assert.deepEqual(verifyTotp(secret, totpCode(secret, now), now, null), { ok: true, step });
    assert.deepEqual(verifyTotp(secret, totpCode(secret, now - 30_000), now, null), { ok: true, step: step - 1 });
    assert.deepEqual(verifyTotp(secret, totpCode(secret, now + 30_000), now, null), { ok: true, step: step + 1 });
    assert.deepEqual(verifyTotp(secret, totpCode(secret, now + 90_000), now, null), { ok: false, reason: 'invalid' });
    assert.deepEqual(verifyTotp(secret, totpCode(secret, now), now, step), { ok: false, reason: 'reused' });
    assert.deepEqual(verifyTotp(secret, totpCode(secret, now - 30_000), now, step), { ok: false, reason: 'reused' });
    assert.deepEqual(verifyTotp(secret, totpCode(secret, now + 30_000), now, step), { ok: true, step: step + 1 });
    assert.deepEqual(verifyTotp(secret, '12345', now, null), { ok: false, reason: 'invalid' });
    assert.deepEqual(verifyTotp(secret, totpCode(newTotpSecret(), now), now, null).ok, false);
  });

  test('backoff starts at the threshold, doubles, is capped at 15 minutes, and forgets after an hour of quiet', () => {
    assert.equal(backoffMs(4, ACCOUNT_POLICY), 0);
    assert.equal(backoffMs(5, ACCOUNT_POLICY), 1000);
    assert.equal(backoffMs(6, ACCOUNT_POLICY), 2000);
    assert.equal(backoffMs(9, ACCOUNT_POLICY), 16_000);
    assert.equal(backoffMs(50, ACCOUNT_POLICY), 15 * 60_000);
    const s = chargeAttempt({ failures: 9, lockedUntil: null, lastAttemptAt: 0 }, 3_600_000, ACCOUNT_POLICY);
    assert.deepEqual(s, { failures: 1, lockedUntil: null, lastAttemptAt: 3_600_000 });
  });

  test('throttle keys hash the email case-insensitively and group IPv6 by /64', () => {
    assert.equal(accountKey(' Alice@Example.com '), accountKey('alice@example.com'));
    assert.ok(!accountKey('alice@example.com').includes('alice'));
    assert.equal(ipKey('2001:db8:1:2:aaaa::1'), ipKey('2001:db8:1:2:bbbb::2'));
    assert.notEqual(ipKey('2001:db8:1:2::1'), ipKey('2001:db8:1:3::1'));
    assert.equal(ipKey('::ffff:192.0.2.7'), ipKey('192.0.2.7'));
  });

  test('the CSRF token is bound to its session and compared in full', () => {
    const a = 'A'.repeat(43);
    const b = 'B'.repeat(43);
    assert.ok(csrfTokenValid(a, csrfTokenFor(a)));
    assert.ok(!csrfTokenValid(a, csrfTokenFor(b)));
    assert.ok(!csrfTokenValid(a, csrfTokenFor(a).slice(0, -1)));
    assert.ok(!csrfTokenValid(a, undefined));
  });
});

for (const kind of DB_KINDS) {
  describe(`console accounts (${kind})`, () => {
    let t: TestDb;
    let s: TestServer;
    let acme: Tenant;
    // An injectable clock: throttle windows, session timeouts, reset expiry and TOTP steps all follow it.
    let clock = Date.now();
    const mail: PasswordResetMessage[] = [];
    let mailWaiters: Array<() => void> = [];
    let ipSeq = 0;
    // Each test speaks from its own address (X-Forwarded-For from a trusted proxy), so per-IP
    // throttling in one test cannot leak into another.
    const newIp = () => `198.51.100.${++ipSeq}`;

    before(async () => {
      t = await openTestDb(kind);
      s = await startServer(t.db, {
        env: { OBSCURA_TRUST_PROXY: '127.0.0.1' },
        deps: {
          now: () => clock,
          resetMailer: {
            async sendPasswordReset(m) {
              mail.push(m);
              for (const w of mailWaiters) w();
              mailWaiters = [];
            },
          },
        },
      });
      acme = await createTenant(t.db, 'Acme');
    });
    after(async () => {
      await s.close();
      await t.close();
    });

    const addUser = async (email: string, role: UserRole = 'owner', orgId = acme.orgId) =>
      (await t.db.withTenant(orgId, (trx) => createUser(trx, orgId, { email, password: PASSWORD, role }, { actor: { type: 'cli' } }))).id;

    const sessionCookie = (headers: Headers) => headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`));

    interface Call {
      cookie?: string | undefined;
      csrf?: string | undefined;
      body?: unknown;
      ip: string;
      headers?: Record<string, string>;
    }
    const call = (method: string, path: string, c: Call) =>
      api(s.url, method, path, {
        body: c.body,
        headers: {
          'x-forwarded-for': c.ip,
          ...(c.cookie ? { cookie: c.cookie } : {}),
          ...(c.csrf ? { 'x-csrf-token': c.csrf } : {}),
          ...(c.headers ?? {}),
        },
      });

    const login = async (email: string, password: string, ip: string, totp?: string) => {
      const r = await call('POST', '/v1/console/login', { ip, body: { email, password, ...(totp ? { totp } : {}) } });
      const set = sessionCookie(r.headers);
      return { ...r, cookie: set?.split(';')[0], setCookie: set, csrf: r.body?.csrf_token as string | undefined };
    };

    const audit = async (orgId: string | null) =>
      (await superQuery(t, orgId ? 'select action, data, target from audit_log where org_id = $1 order by id' : "select action, data, target from audit_log where chain = 'system' order by id", orgId ? [orgId] : [])) as {
        action: string;
        data: Record<string, unknown>;
        target: Record<string, unknown>;
      }[];

    const totpAt = (secret: string, ms: number) => new TOTP({ secret: Secret.fromBase32(secret), digits: 6, period: 30, algorithm: 'SHA1' }).generate({ timestamp: ms });

    test('logs in with the right password, sets an HttpOnly, Secure, SameSite=Strict __Host- cookie holding a hashed-at-rest token, and audits it', async () => {
      const id = await addUser('owner@acme.test');
      const ip = newIp();
      const r = await login('Owner@Acme.test', PASSWORD, ip);
      assert.equal(r.status, 200);
      assert.equal(r.body.user.id, id);
      assert.equal(r.body.user.role, 'owner');
      assert.equal(r.body.org.id, acme.orgId);
      assert.equal(r.headers.get('cache-control'), 'no-store');
      const attrs = r.setCookie!.split(';').map((a) => a.trim().toLowerCase());
      assert.ok(attrs.includes('httponly'), r.setCookie);
      assert.ok(attrs.includes('secure'), r.setCookie);
      assert.ok(attrs.includes('samesite=strict'), r.setCookie);
      assert.ok(attrs.includes('path=/'), r.setCookie);
      assert.ok(!attrs.some((a) => a.startsWith('domain=')), '__Host- cookies carry no Domain');
      const token = r.cookie!.slice(SESSION_COOKIE.length + 1);
      assert.match(token, /^[A-Za-z0-9_-]{43}$/, '256 random bits, base64url');
      const rows = await superQuery(t, 'select token_hash, ip, user_agent from console_sessions where user_id = $1', [id]);
      assert.equal(rows.length, 1);
      assert.equal(rows[0]!.token_hash, createHash('sha256').update(token).digest('hex'));
      assert.equal(rows[0]!.ip, ip);
      assert.ok(!JSON.stringify(await superQuery(t, 'select * from console_sessions')).includes(token), 'the token itself is never stored');

      const me = await call('GET', '/v1/console/session', { ip, cookie: r.cookie });
      assert.equal(me.status, 200);
      assert.deepEqual(me.body.user, { id, email: 'owner@acme.test', role: 'owner', mfa_enabled: false });
      assert.equal(me.body.org.name, 'Acme');
      assert.equal(me.body.csrf_token, r.csrf);
      const actions = (await audit(acme.orgId)).map((e) => e.action);
      assert.ok(actions.includes('auth.login_success'));
      assert.ok(actions.includes('session.create'));
    });

    test('refuses a wrong password and an unknown email alike with 401 ERR_LOGIN_FAILED, sets no cookie and audits both', async () => {
      const id = await addUser('wrong@acme.test');
      const ip = newIp();
      const bad = await login('wrong@acme.test', 'not the password at all', ip);
      assert.equal(bad.status, 401);
      assert.equal(bad.body.code, 'ERR_LOGIN_FAILED');
      assert.equal(bad.cookie, undefined);
      const unknown = await login('nobody@acme.test', PASSWORD, ip);
      assert.equal(unknown.status, 401);
      assert.equal(unknown.body.code, 'ERR_LOGIN_FAILED');
      assert.equal(unknown.body.detail, bad.body.detail);
      assert.equal((await superQuery(t, 'select count(*)::int as n from console_sessions where user_id = $1', [id]))[0]!.n, 0);
      assert.ok((await audit(acme.orgId)).some((e) => e.action === 'auth.login_failure' && e.target.user === id && e.data.reason === 'bad_password'));
      assert.ok((await audit(null)).some((e) => e.action === 'auth.login_failure' && e.data.reason === 'unknown_user'));
      const ok = await login('wrong@acme.test', PASSWORD, ip);
      assert.equal(ok.status, 200);
    });

    test('refuses console routes without a session cookie (401) and with a forged one (401 ERR_SESSION_INVALID)', async () => {
      const ip = newIp();
      const none = await call('GET', '/v1/console/session', { ip });
      assert.equal(none.status, 401);
      assert.equal(none.body.code, 'ERR_AUTH_MISSING');
      const forged = await call('GET', '/v1/console/session', { ip, cookie: `${SESSION_COOKIE}=${'A'.repeat(43)}` });
      assert.equal(forged.status, 401);
      assert.equal(forged.body.code, 'ERR_SESSION_INVALID');
    });

    test('throttles an account after 5 failures: the 6th attempt gets 429 with Retry-After, even with the right password, without running argon2; it works after the window', async () => {
      const id = await addUser('throttled@acme.test');
      const ip = newIp();
      for (let i = 0; i < 5; i++) {
        const r = await login('throttled@acme.test', `wrong password ${i}!`, ip);
        assert.equal(r.status, 401, `attempt ${i + 1}`);
      }
      const failuresBefore = (await audit(acme.orgId)).filter((e) => e.action === 'auth.login_failure' && e.target.user === id).length;
      const sixth = await login('throttled@acme.test', 'wrong password 6!', ip);
      assert.equal(sixth.status, 429);
      assert.equal(sixth.body.code, 'ERR_LOGIN_THROTTLED');
      const retry = Number(sixth.headers.get('retry-after'));
      assert.ok(retry >= 1 && retry <= 900, `Retry-After ${retry}`);
      // The right password is refused too while the lock holds: the lock does not depend on guessing.
      const right = await login('throttled@acme.test', PASSWORD, ip);
      assert.equal(right.status, 429);
      assert.equal(right.cookie, undefined);
      // From another address the account is locked just the same (per-account backoff).
      const elsewhere = await login('THROTTLED@acme.test', PASSWORD, newIp());
      assert.equal(elsewhere.status, 429);
      const entries = await audit(acme.orgId);
      assert.equal(entries.filter((e) => e.action === 'auth.login_failure' && e.target.user === id).length, failuresBefore, 'throttled attempts never reached the password check');
      assert.equal(entries.filter((e) => e.action === 'auth.login_throttled' && e.target.user === id).length, 1, 'one audit entry per lock');

      clock += retry * 1000;
      const after = await login('throttled@acme.test', PASSWORD, ip);
      assert.equal(after.status, 200);
      // A success clears the account's record: the next mistake is an ordinary 401 again.
      const next = await login('throttled@acme.test', 'one more typo!', ip);
      assert.equal(next.status, 401);
    });

    test('backs off exponentially: each failure after the threshold doubles the lock', async () => {
      await addUser('backoff@acme.test');
      const ip = newIp();
      for (let i = 0; i < 5; i++) await login('backoff@acme.test', `bad-${i}-password`, ip);
      const first = Number((await login('backoff@acme.test', 'x-bad-password', ip)).headers.get('retry-after'));
      clock += first * 1000;
      assert.equal((await login('backoff@acme.test', 'y-bad-password', ip)).status, 401);
      const second = Number((await login('backoff@acme.test', 'z-bad-password', ip)).headers.get('retry-after'));
      assert.equal(second, first * 2);
    });

    test('throttles a source address after 20 failures across accounts, then lets it through after the window', async () => {
      await addUser('fresh@acme.test');
      const ip = newIp();
      for (let i = 0; i < 20; i++) {
        const r = await login(`spray${i}@acme.test`, PASSWORD, ip);
        assert.equal(r.status, 401);
      }
      const blocked = await login('fresh@acme.test', PASSWORD, ip);
      assert.equal(blocked.status, 429);
      assert.equal(blocked.body.code, 'ERR_LOGIN_THROTTLED');
      assert.ok((await audit(null)).some((e) => e.action === 'auth.login_throttled' && e.data.scope === 'ip'));
      // Another address is unaffected.
      assert.equal((await login('fresh@acme.test', PASSWORD, newIp())).status, 200);
      clock += Number(blocked.headers.get('retry-after')) * 1000;
      assert.equal((await login('fresh@acme.test', PASSWORD, ip)).status, 200);
    });

    test('refuses a state-changing request with the cookie but without or with a wrong CSRF token, or from another site (403 ERR_CSRF), and changes nothing; the token works', async () => {
      const id = await addUser('csrf@acme.test');
      const ip = newIp();
      const a = await login('csrf@acme.test', PASSWORD, ip);
      const b = await login('csrf@acme.test', PASSWORD, ip);
      const bId = b.body.session.id as string;
      const target = `/v1/console/sessions/${bId}`;

      const attempts: Call[] = [
        { ip, cookie: a.cookie },
        { ip, cookie: a.cookie, csrf: 'x'.repeat(43) },
        { ip, cookie: a.cookie, csrf: b.csrf }, // another session's token is not this session's
        { ip, cookie: a.cookie, csrf: a.csrf, headers: { origin: 'https://evil.example' } },
        { ip, cookie: a.cookie, csrf: a.csrf, headers: { 'sec-fetch-site': 'cross-site' } },
        { ip, cookie: a.cookie, csrf: a.csrf, headers: { 'sec-fetch-site': 'same-site' } },
      ];
      for (const c of attempts) {
        const r = await call('DELETE', target, c);
        assert.equal(r.status, 403, JSON.stringify(c.headers ?? c.csrf ?? 'none'));
        assert.equal(r.body.code, 'ERR_CSRF');
      }
      assert.equal((await superQuery(t, 'select count(*)::int as n from console_sessions where user_id = $1', [id]))[0]!.n, 2, 'nothing was revoked');
      assert.equal((await call('GET', '/v1/console/session', { ip, cookie: b.cookie })).status, 200);

      const ok = await call('DELETE', target, { ip, cookie: a.cookie, csrf: a.csrf, headers: { origin: s.url, 'sec-fetch-site': 'same-origin' } });
      assert.equal(ok.status, 204);
      const revoked = await call('GET', '/v1/console/session', { ip, cookie: b.cookie });
      assert.equal(revoked.status, 401);
      assert.equal(revoked.body.code, 'ERR_SESSION_INVALID');
    });

    test('refuses a cross-site login (login CSRF) and creates no session', async () => {
      const id = await addUser('logincsrf@acme.test');
      const ip = newIp();
      const r = await call('POST', '/v1/console/login', { ip, body: { email: 'logincsrf@acme.test', password: PASSWORD }, headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'ERR_CSRF');
      assert.equal(sessionCookie(r.headers), undefined);
      assert.equal((await superQuery(t, 'select count(*)::int as n from console_sessions where user_id = $1', [id]))[0]!.n, 0);
      const same = await call('POST', '/v1/console/login', { ip, body: { email: 'logincsrf@acme.test', password: PASSWORD }, headers: { origin: s.url, 'sec-fetch-site': 'same-origin' } });
      assert.equal(same.status, 200);
    });

    test('lists the user\'s own sessions with the current one flagged, revokes one, and logs out', async () => {
      await addUser('sessions@acme.test');
      const other = await addUser('other@acme.test');
      const ip = newIp();
      const a = await login('sessions@acme.test', PASSWORD, ip);
      const b = await login('sessions@acme.test', PASSWORD, ip);
      const o = await login('other@acme.test', PASSWORD, ip);
      const list = await call('GET', '/v1/console/sessions', { ip, cookie: a.cookie });
      assert.equal(list.status, 200);
      assert.deepEqual(list.body.data.map((x: { id: string }) => x.id).sort(), [a.body.session.id, b.body.session.id].sort());
      assert.deepEqual(list.body.data.filter((x: { current: boolean }) => x.current).map((x: { id: string }) => x.id), [a.body.session.id]);

      // Another user's session id is "not found", and stays alive.
      const foreign = await call('DELETE', `/v1/console/sessions/${o.body.session.id}`, { ip, cookie: a.cookie, csrf: a.csrf });
      assert.equal(foreign.status, 404);
      assert.equal((await call('GET', '/v1/console/session', { ip, cookie: o.cookie })).status, 200);
      assert.ok(other);

      assert.equal((await call('DELETE', `/v1/console/sessions/${b.body.session.id}`, { ip, cookie: a.cookie, csrf: a.csrf })).status, 204);
      assert.equal((await call('GET', '/v1/console/sessions', { ip, cookie: b.cookie })).status, 401);

      const out = await call('POST', '/v1/console/logout', { ip, cookie: a.cookie, csrf: a.csrf });
      assert.equal(out.status, 204);
      assert.match(sessionCookie(out.headers) ?? '', /Max-Age=0|Expires=Thu, 01 Jan 1970/i);
      assert.equal((await call('GET', '/v1/console/session', { ip, cookie: a.cookie })).status, 401);
      const actions = (await audit(acme.orgId)).map((e) => e.action);
      assert.ok(actions.includes('session.revoke'));
      assert.ok(actions.includes('session.logout'));
    });

    test('ends a session after 30 idle minutes, and an active one after 12 hours', async () => {
      await addUser('timeout@acme.test');
      const ip = newIp();
      const idle = await login('timeout@acme.test', PASSWORD, ip);
      clock += 29 * 60_000;
      assert.equal((await call('GET', '/v1/console/session', { ip, cookie: idle.cookie })).status, 200);
      clock += 29 * 60_000; // 29 minutes after the last request: still alive
      assert.equal((await call('GET', '/v1/console/session', { ip, cookie: idle.cookie })).status, 200);
      clock += 31 * 60_000;
      assert.equal((await call('GET', '/v1/console/session', { ip, cookie: idle.cookie })).body.code, 'ERR_SESSION_INVALID');

      const busy = await login('timeout@acme.test', PASSWORD, ip);
      const start = clock;
      while (clock < start + 12 * 3_600_000 - 20 * 60_000) {
        clock += 20 * 60_000;
        assert.equal((await call('GET', '/v1/console/session', { ip, cookie: busy.cookie })).status, 200);
      }
      clock = start + 12 * 3_600_000;
      assert.equal((await call('GET', '/v1/console/session', { ip, cookie: busy.cookie })).status, 401);
    });

    test('enrols TOTP, then requires a computed code at login and refuses a missing, wrong or reused one', async () => {
      const id = await addUser('mfa@acme.test');
      const ip = newIp();
      const s1 = await login('mfa@acme.test', PASSWORD, ip);
      const noCsrf = await call('POST', '/v1/console/mfa/enroll', { ip, cookie: s1.cookie });
      assert.equal(noCsrf.status, 403);
      const en = await call('POST', '/v1/console/mfa/enroll', { ip, cookie: s1.cookie, csrf: s1.csrf });
      assert.equal(en.status, 200);
      assert.match(en.body.otpauth_uri, /^otpauth:\/\/totp\//);
      assert.equal(en.headers.get('cache-control'), 'no-store');
      const secret = en.body.secret as string;
      const stored = await superQuery(t, 'select secret_wrapped, confirmed_at from user_mfa where user_id = $1', [id]);
      assert.equal(stored[0]!.confirmed_at, null);
      assert.ok(!String(stored[0]!.secret_wrapped).includes(secret), 'the secret is stored wrapped');
      // Not active until confirmed: login still works with the password alone.
      assert.equal((await login('mfa@acme.test', PASSWORD, ip)).status, 200);

      const wrongConfirm = await call('POST', '/v1/console/mfa/confirm', { ip, cookie: s1.cookie, csrf: s1.csrf, body: { code: totpAt(secret, clock + 10 * 60_000) } });
      assert.equal(wrongConfirm.status, 400);
      assert.equal(wrongConfirm.body.code, 'ERR_MFA_CONFIRM_FAILED');
      const confirmCode = totpAt(secret, clock);
      const ok = await call('POST', '/v1/console/mfa/confirm', { ip, cookie: s1.cookie, csrf: s1.csrf, body: { code: confirmCode } });
      assert.equal(ok.status, 200);

      const missing = await login('mfa@acme.test', PASSWORD, ip);
      assert.equal(missing.status, 401);
      assert.equal(missing.body.code, 'ERR_MFA_REQUIRED');
      assert.equal(missing.cookie, undefined);
      const wrong = await login('mfa@acme.test', PASSWORD, ip, totpAt(secret, clock + 10 * 60_000));
      assert.equal(wrong.body.code, 'ERR_MFA_INVALID');
      // The code spent on confirmation cannot be replayed to log in.
      const replayConfirm = await login('mfa@acme.test', PASSWORD, ip, confirmCode);
      assert.equal(replayConfirm.status, 401);
      assert.equal(replayConfirm.body.code, 'ERR_MFA_CODE_REUSED');

      clock += 30_000;
      const code = totpAt(secret, clock);
      const good = await login('mfa@acme.test', PASSWORD, ip, code);
      assert.equal(good.status, 200);
      assert.equal(good.body.user.mfa_enabled, true);
      const reused = await login('mfa@acme.test', PASSWORD, ip, code);
      assert.equal(reused.status, 401);
      assert.equal(reused.body.code, 'ERR_MFA_CODE_REUSED');
      // One step of clock drift is tolerated, but never a step at or before the last one used.
      clock += 30_000;
      assert.equal((await login('mfa@acme.test', PASSWORD, ip, totpAt(secret, clock - 30_000))).body.code, 'ERR_MFA_CODE_REUSED');
      assert.equal((await login('mfa@acme.test', PASSWORD, ip, totpAt(secret, clock + 30_000))).status, 200);

      const entries = await audit(acme.orgId);
      const mine = entries.filter((e) => e.target.user === id);
      assert.ok(mine.some((e) => e.action === 'mfa.enroll'));
      assert.ok(mine.some((e) => e.action === 'mfa.confirm'));
      assert.ok(mine.some((e) => e.action === 'mfa.confirm_failure'));
      for (const reason of ['mfa_required', 'mfa_invalid', 'mfa_reused']) {
        assert.ok(mine.some((e) => e.action === 'auth.login_failure' && e.data.reason === reason), reason);
      }
      // A refused second factor is not recorded as a successful login.
      const successes = mine.filter((e) => e.action === 'auth.login_success').length;
      const sessions = mine.filter((e) => e.action === 'session.create').length;
      assert.equal(successes, sessions);
      assert.equal((await call('POST', '/v1/console/mfa/enroll', { ip, cookie: good.cookie, csrf: good.csrf })).body.code, 'ERR_CONFLICT');
    });

    test('an org requiring MFA confines un-enrolled users to enrolment; only an owner or admin sets the policy', async () => {
      const org = await createTenant(t.db, 'Strict Org');
      await addUser('boss@strict.test', 'owner', org.orgId);
      await addUser('dev@strict.test', 'developer', org.orgId);
      const ip = newIp();
      const dev = await login('dev@strict.test', PASSWORD, ip);
      const forbidden = await call('PUT', '/v1/console/org/mfa-policy', { ip, cookie: dev.cookie, csrf: dev.csrf, body: { require_mfa: true } });
      assert.equal(forbidden.status, 403);
      assert.equal(forbidden.body.code, 'ERR_ROLE_FORBIDDEN');
      assert.equal((await superQuery(t, 'select require_mfa from orgs where id = $1', [org.orgId]))[0]!.require_mfa, false);

      const boss = await login('boss@strict.test', PASSWORD, ip);
      const set = await call('PUT', '/v1/console/org/mfa-policy', { ip, cookie: boss.cookie, csrf: boss.csrf, body: { require_mfa: true } });
      assert.equal(set.status, 200);
      assert.ok((await audit(org.orgId)).some((e) => e.action === 'org.mfa_policy' && e.data.require_mfa === true));

      const me = await call('GET', '/v1/console/session', { ip, cookie: dev.cookie });
      assert.equal(me.body.mfa_enrolment_required, true);
      const blocked = await call('GET', '/v1/console/sessions', { ip, cookie: dev.cookie });
      assert.equal(blocked.status, 403);
      assert.equal(blocked.body.code, 'ERR_MFA_ENROLMENT_REQUIRED');
      const en = await call('POST', '/v1/console/mfa/enroll', { ip, cookie: dev.cookie, csrf: dev.csrf });
      assert.equal(en.status, 200);
      assert.equal((await call('POST', '/v1/console/mfa/confirm', { ip, cookie: dev.cookie, csrf: dev.csrf, body: { code: totpAt(en.body.secret, clock) } })).status, 200);
      assert.equal((await call('GET', '/v1/console/sessions', { ip, cookie: dev.cookie })).status, 200);
    });

    test('password reset: always 202, a single-use hashed token, a policy-checked password, and every session revoked', async () => {
      const id = await addUser('reset@acme.test');
      const ip = newIp();
      const session = await login('reset@acme.test', PASSWORD, ip);

      const before = mail.length;
      const unknown = await call('POST', '/v1/console/password-reset', { ip, body: { email: 'ghost@acme.test' } });
      assert.equal(unknown.status, 202);
      const delivered = new Promise<void>((resolve) => mailWaiters.push(resolve));
      const known = await call('POST', '/v1/console/password-reset', { ip, body: { email: 'reset@acme.test' } });
      assert.equal(known.status, 202);
      assert.deepEqual(known.body, unknown.body);
      await delivered;
      assert.equal(mail.length, before + 1, 'only the real account got a message');
      const msg = mail[mail.length - 1]!;
      assert.equal(msg.userId, id);
      assert.match(msg.token, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(Date.parse(msg.expiresAt) - clock, 30 * 60_000);
      const stored = await superQuery(t, 'select token_hash from password_resets where user_id = $1', [id]);
      assert.equal(stored[0]!.token_hash, createHash('sha256').update(msg.token).digest('hex'));

      const weak = await call('POST', '/v1/console/password-reset/confirm', { ip, body: { token: msg.token, password: 'Password2024!' } });
      assert.equal(weak.status, 400);
      assert.equal(weak.body.code, 'ERR_VALIDATION');
      assert.equal(weak.body.reason, 'common_password');
      const ok = await call('POST', '/v1/console/password-reset/confirm', { ip, body: { token: msg.token, password: NEW_PASSWORD } });
      assert.equal(ok.status, 204, 'a refused password did not spend the token');

      assert.equal((await call('GET', '/v1/console/session', { ip, cookie: session.cookie })).status, 401, 'existing sessions are revoked');
      assert.equal((await login('reset@acme.test', PASSWORD, ip)).status, 401);
      assert.equal((await login('reset@acme.test', NEW_PASSWORD, ip)).status, 200);

      const replay = await call('POST', '/v1/console/password-reset/confirm', { ip, body: { token: msg.token, password: 'another-fine-passphrase-7' } });
      assert.equal(replay.status, 400);
      assert.equal(replay.body.code, 'ERR_RESET_TOKEN_INVALID');
      assert.equal((await login('reset@acme.test', NEW_PASSWORD, ip)).status, 200, 'the replay changed nothing');
      const entries = await audit(acme.orgId);
      assert.ok(entries.some((e) => e.action === 'auth.password_reset_request' && e.target.user === id));
      assert.ok(entries.some((e) => e.action === 'auth.password_reset' && e.target.user === id && e.data.sessions_revoked === 1));
      assert.ok(entries.some((e) => e.action === 'auth.password_reset_failure' && e.data.reason === 'used'));
    });

    test('refuses an expired reset token with ERR_RESET_TOKEN_INVALID and keeps the password', async () => {
      await addUser('expired@acme.test');
      const ip = newIp();
      const link = await createPasswordResetLink(t.db, 'expired@acme.test', { now: () => clock, baseUrl: s.url });
      assert.ok(link.url?.startsWith(`${s.url}/`));
      clock += 30 * 60_000 + 1;
      const r = await call('POST', '/v1/console/password-reset/confirm', { ip, body: { token: link.token, password: NEW_PASSWORD } });
      assert.equal(r.status, 400);
      assert.equal(r.body.code, 'ERR_RESET_TOKEN_INVALID');
      assert.equal((await login('expired@acme.test', PASSWORD, ip)).status, 200);
      assert.ok((await audit(acme.orgId)).some((e) => e.action === 'auth.password_reset_failure' && e.data.reason === 'expired'));

      const fresh = await createPasswordResetLink(t.db, 'expired@acme.test', { now: () => clock });
      assert.equal((await call('POST', '/v1/console/password-reset/confirm', { ip, body: { token: fresh.token, password: NEW_PASSWORD } })).status, 204);
      assert.equal((await login('expired@acme.test', NEW_PASSWORD, ip)).status, 200);
      await assert.rejects(createPasswordResetLink(t.db, 'ghost@acme.test'), (err: { code?: string }) => err.code === 'ERR_NOT_FOUND');
    });

    test('keeps login_attempts out of reach of tenant transactions and console sessions inside their org (RLS)', async () => {
      const other = await createTenant(t.db, 'Other Org');
      await addUser('rls@acme.test');
      await login('rls@acme.test', PASSWORD, newIp());
      await assert.rejects(t.db.withTenant(acme.orgId, (trx) => trx.selectFrom('login_attempts').selectAll().execute()));
      const seenByOther = await t.db.withTenant(other.orgId, (trx) => trx.selectFrom('console_sessions').select('id').execute());
      assert.equal(seenByOther.length, 0);
      const seenByAcme = await t.db.withTenant(acme.orgId, (trx) => trx.selectFrom('console_sessions').select('id').execute());
      assert.ok(seenByAcme.length > 0);
    });

    test('the default reset mailer logs that a reset was requested but never the token or the address', async () => {
      const lines: string[] = [];
      const mailer = logOnlyResetMailer((obj, msg) => lines.push(JSON.stringify({ ...obj, msg })));
      await mailer.sendPasswordReset({ email: 'who@acme.test', token: 'T'.repeat(43), expiresAt: new Date().toISOString(), orgId: acme.orgId, userId: 'u1' });
      assert.equal(lines.length, 1);
      assert.ok(!lines[0]!.includes('T'.repeat(43)));
      assert.ok(!lines[0]!.includes('who@acme.test'));
    });
  });
}
