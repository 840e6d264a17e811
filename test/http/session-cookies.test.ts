/**
 * Console session cookies on /v1/* (issue 13, item A), against the real server over HTTP: the cookie
 * acts with the member's role, state-changing calls need the session's CSRF token and the console
 * origin, and API keys keep working as before.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openTestDb, superQuery, type TestDb } from '../support/db.js';
import { startServer, createTenant, api, type TestServer, type Tenant } from '../support/server.js';
import { createUser } from '../../src/tenants/index.js';
import type { UserRole } from '../../src/db/schema.js';
import { SESSION_COOKIE } from '../../src/auth/console.js';

const PASSWORD = 'correct horse battery staple';

describe('console session cookies on /v1', () => {
  let t: TestDb;
  let s: TestServer;
  let acme: Tenant;
  let other: Tenant;
  let ipSeq = 0;

  before(async () => {
    t = await openTestDb('pglite');
    s = await startServer(t.db, { env: { OBSCURA_TRUST_PROXY: '127.0.0.1' } });
    acme = await createTenant(t.db, 'Acme');
    other = await createTenant(t.db, 'Other');
  });
  after(async () => {
    await s?.close();
    await t?.close();
  });

  /** Creates a member and logs in from its own address; returns the cookie and the CSRF token. */
  const member = async (role: UserRole) => {
    const email = `${role}-${++ipSeq}@acme.test`;
    await t.db.withTenant(acme.orgId, (trx) => createUser(trx, acme.orgId, { email, password: PASSWORD, role }, { actor: { type: 'cli' } }));
    const ip = `198.51.100.${ipSeq}`;
    const r = await api(s.url, 'POST', '/v1/console/login', { body: { email, password: PASSWORD }, headers: { 'x-forwarded-for': ip } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const cookie = r.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`))!.split(';')[0]!;
    return { cookie, csrf: r.body.csrf_token as string, ip, userId: r.body.user.id as string };
  };
  const keyCount = async () => Number((await superQuery(t, 'select count(*)::int as n from api_keys where org_id = $1', [acme.orgId]))[0]!.n);
  const createKeyBody = { kind: 'restricted', name: 'from the console', scopes: ['assets:read'] };

  test('a session cookie reads /v1 routes with its role, without any API key', async () => {
    const m = await member('viewer');
    const r = await api(s.url, 'GET', '/v1/apps', { headers: { cookie: m.cookie, 'x-forwarded-for': m.ip } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.data.map((x: { id: string }) => x.id), [acme.appId]);
    const who = await api(s.url, 'GET', '/v1/whoami', { headers: { cookie: m.cookie, 'x-forwarded-for': m.ip } });
    assert.equal(who.body.kind, 'session');
    assert.deepEqual(who.body.scopes, ['apps:read', 'assets:read', 'jobs:read', 'usage:read']);
  });

  test('refuses a state-changing call with the cookie but without the CSRF token (403 ERR_CSRF, nothing created); the same call with the token succeeds', async () => {
    const m = await member('admin');
    const before = await keyCount();
    const forged = await api(s.url, 'POST', `/v1/apps/${acme.appId}/keys`, { body: createKeyBody, headers: { cookie: m.cookie, 'x-forwarded-for': m.ip } });
    assert.equal(forged.status, 403);
    assert.equal(forged.body.code, 'ERR_CSRF');
    const wrong = await api(s.url, 'POST', `/v1/apps/${acme.appId}/keys`, { body: createKeyBody, headers: { cookie: m.cookie, 'x-csrf-token': 'A'.repeat(43), 'x-forwarded-for': m.ip } });
    assert.equal(wrong.status, 403);
    assert.equal(wrong.body.code, 'ERR_CSRF');
    assert.equal(await keyCount(), before);

    const ok = await api(s.url, 'POST', `/v1/apps/${acme.appId}/keys`, { body: createKeyBody, headers: { cookie: m.cookie, 'x-csrf-token': m.csrf, origin: s.url, 'sec-fetch-site': 'same-origin', 'x-forwarded-for': m.ip } });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.match(ok.body.secret, /^obs_rk_/);
    assert.equal(await keyCount(), before + 1);
    // The audit trail names the member, not a key.
    const rows = await superQuery(t, "select actor from audit_log where org_id = $1 and action = 'key.create' order by id desc limit 1", [acme.orgId]);
    assert.equal((rows[0]!.actor as { type: string; id: string }).type, 'user');
    assert.equal((rows[0]!.actor as { id: string }).id, m.userId);
  });

  test('refuses a cross-origin form post and a cross-origin fetch carrying the cookie (same site, another port), even with a valid token', async () => {
    const m = await member('owner');
    const before = await keyCount();
    const evil = 'http://127.0.0.1:1';
    // An HTML form on another origin: urlencoded body, no custom header possible.
    const form = await fetch(`${s.url}/v1/apps/${acme.appId}/keys`, {
      method: 'POST',
      headers: { cookie: m.cookie, origin: evil, 'sec-fetch-site': 'same-site', 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': m.ip },
      body: 'kind=secret',
    });
    assert.equal(form.status, 403);
    assert.equal(((await form.json()) as { code: string }).code, 'ERR_CSRF');
    const xfetch = await api(s.url, 'POST', `/v1/apps/${acme.appId}/keys`, { body: createKeyBody, headers: { cookie: m.cookie, 'x-csrf-token': m.csrf, origin: evil, 'x-forwarded-for': m.ip } });
    assert.equal(xfetch.status, 403);
    assert.equal(xfetch.body.code, 'ERR_CSRF');
    const revoke = await api(s.url, 'DELETE', `/v1/keys/${acme.keyId}`, { headers: { cookie: m.cookie, 'x-csrf-token': m.csrf, 'sec-fetch-site': 'cross-site', 'x-forwarded-for': m.ip } });
    assert.equal(revoke.status, 403);
    assert.equal(revoke.body.code, 'ERR_CSRF');
    assert.equal(await keyCount(), before);
    assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: acme.key })).status, 200, 'the key survived');
  });

  test("a viewer's forced create-key call is refused with 403 ERR_ROLE_FORBIDDEN; an admin's succeeds; a developer cannot read the audit log", async () => {
    const viewer = await member('viewer');
    const admin = await member('admin');
    const developer = await member('developer');
    const before = await keyCount();
    const refused = await api(s.url, 'POST', `/v1/apps/${acme.appId}/keys`, { body: createKeyBody, headers: { cookie: viewer.cookie, 'x-csrf-token': viewer.csrf, 'x-forwarded-for': viewer.ip } });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, 'ERR_ROLE_FORBIDDEN');
    assert.equal(refused.body.role, 'viewer');
    assert.equal(await keyCount(), before);
    const ok = await api(s.url, 'POST', `/v1/apps/${acme.appId}/keys`, { body: createKeyBody, headers: { cookie: admin.cookie, 'x-csrf-token': admin.csrf, 'x-forwarded-for': admin.ip } });
    assert.equal(ok.status, 201);
    const audit = await api(s.url, 'GET', '/v1/audit', { headers: { cookie: developer.cookie, 'x-forwarded-for': developer.ip } });
    assert.equal(audit.status, 403);
    assert.equal(audit.body.code, 'ERR_ROLE_FORBIDDEN');
    assert.equal((await api(s.url, 'GET', '/v1/audit', { headers: { cookie: admin.cookie, 'x-forwarded-for': admin.ip } })).status, 200);
  });

  test('an Authorization header is judged alone: a bad key next to a good cookie is 401', async () => {
    const m = await member('owner');
    const r = await api(s.url, 'GET', '/v1/apps', { key: 'obs_sk_not-a-key', headers: { cookie: m.cookie, 'x-forwarded-for': m.ip } });
    assert.equal(r.status, 401);
    assert.equal((await api(s.url, 'GET', '/v1/apps', { key: acme.key })).status, 200);
  });

  test("X-Obscura-App picks one of the org's apps; another org's app is 404; a revoked session is 401", async () => {
    const m = await member('owner');
    const own = await api(s.url, 'GET', '/v1/whoami', { headers: { cookie: m.cookie, 'x-obscura-app': acme.appId, 'x-forwarded-for': m.ip } });
    assert.equal(own.body.app_id, acme.appId);
    const theirs = await api(s.url, 'GET', '/v1/whoami', { headers: { cookie: m.cookie, 'x-obscura-app': other.appId, 'x-forwarded-for': m.ip } });
    assert.equal(theirs.status, 404);
    assert.equal(theirs.body.code, 'ERR_NOT_FOUND');
    const out = await api(s.url, 'POST', '/v1/console/logout', { headers: { cookie: m.cookie, 'x-csrf-token': m.csrf, 'x-forwarded-for': m.ip } });
    assert.equal(out.status, 204);
    const after = await api(s.url, 'GET', '/v1/apps', { headers: { cookie: m.cookie, 'x-forwarded-for': m.ip } });
    assert.equal(after.status, 401);
    assert.equal(after.body.code, 'ERR_SESSION_INVALID');
  });

  test('members: a developer cannot invite (403), an admin cannot grant owner (403) but can invite a viewer and change and remove members; the last owner stays (409)', async () => {
    const developer = await member('developer');
    const admin = await member('admin');
    const send = (m: { cookie: string; csrf: string; ip: string }, method: string, path: string, body?: unknown) =>
      api(s.url, method, path, { body, headers: { cookie: m.cookie, 'x-csrf-token': m.csrf, 'x-forwarded-for': m.ip } });
    const refused = await send(developer, 'POST', '/v1/console/members', { email: 'x@acme.test', role: 'viewer' });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, 'ERR_ROLE_FORBIDDEN');
    const owner = await send(admin, 'POST', '/v1/console/members', { email: 'boss@acme.test', role: 'owner' });
    assert.equal(owner.status, 403);
    assert.equal(owner.body.code, 'ERR_ROLE_FORBIDDEN');
    const invited = await send(admin, 'POST', '/v1/console/members', { email: 'new.viewer@acme.test', role: 'viewer' });
    assert.equal(invited.status, 201, JSON.stringify(invited.body));
    assert.equal(invited.body.member.pending, true);
    assert.match(invited.body.invite_url, /\/console\/accept-invite#token=[A-Za-z0-9_-]{43}$/);
    // Not usable until the invitee sets a password: the random one is never shown.
    const id = invited.body.member.id as string;
    const promoted = await send(admin, 'PATCH', `/v1/console/members/${id}`, { role: 'developer' });
    assert.equal(promoted.status, 200);
    assert.equal(promoted.body.role, 'developer');
    assert.equal((await send(admin, 'DELETE', `/v1/console/members/${id}`)).status, 204);
    assert.equal((await send(admin, 'DELETE', `/v1/console/members/${id}`)).status, 404);
    const list = await api(s.url, 'GET', '/v1/console/members', { headers: { cookie: admin.cookie, 'x-forwarded-for': admin.ip } });
    assert.ok(!list.body.data.some((m: { id: string }) => m.id === id));
    // The only owner cannot be demoted or removed, even by themselves.
    const only = await member('owner');
    const owners = list.body.data.filter((m: { role: string }) => m.role === 'owner');
    for (const o of owners) if (o.id !== only.userId) await send(only, 'DELETE', `/v1/console/members/${o.id}`);
    const demote = await send(only, 'PATCH', `/v1/console/members/${only.userId}`, { role: 'admin' });
    assert.equal(demote.status, 409);
    assert.equal(demote.body.code, 'ERR_CONFLICT');
    const gone = await send(only, 'DELETE', `/v1/console/members/${only.userId}`);
    assert.equal(gone.status, 409);
  });
});
