import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { SignJWT, base64url, decodeJwt, decodeProtectedHeader, generateKeyPair } from 'jose';
import * as client from 'openid-client';
import { DB_KINDS, openTestDb, superQuery, type TestDb } from '../support/db.js';
import { startServer, createTenant, mintKey, masterKeysFor, api, type TestServer, type Tenant } from '../support/server.js';
import { SigningKeyStore, signAccessToken, RETIRE_MARGIN_SECONDS } from '../../src/auth/jwt.js';
import { unwrapKey } from '../../src/crypto/keywrap.js';
import { oauthCommand } from '../../src/cli/oauth.js';
import type { Runtime } from '../../src/main.js';

const TTL = 900;

interface Created {
  id: string;
  clientId: string;
  secret: string;
}

for (const kind of DB_KINDS) {
  describe(`OAuth2 client credentials and JWT access tokens (${kind})`, () => {
    let t: TestDb;
    let s: TestServer;
    let a: Tenant;
    let b: Tenant;
    // The server's clock: lets the tests cross token expiry and key retirement without waiting.
    let clock = Date.now();

    before(async () => {
      t = await openTestDb(kind);
      s = await startServer(t.db, { deps: { now: () => clock } });
      a = await createTenant(t.db, 'Acme');
      b = await createTenant(t.db, 'Beta');
    });
    after(async () => {
      await s.close();
      await t.close();
    });

    const createClient = async (tenant: Tenant, body: Record<string, unknown> = {}): Promise<Created> => {
      const r = await api(s.url, 'POST', `/v1/apps/${tenant.appId}/oauth-clients`, { key: tenant.key, body });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return { id: r.body.client.id, clientId: r.body.client_id, secret: r.body.client_secret };
    };

    /** A raw token request, as any HTTP client would send it. */
    const tokenRequest = async (form: Record<string, string> | string, headers: Record<string, string> = {}) => {
      const res = await fetch(`${s.url}/v1/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: typeof form === 'string' ? form : new URLSearchParams(form).toString(),
      });
      const text = await res.text();
      return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
    };
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
    const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

    /** The standard client, unmodified: discovery from our RFC 8414 metadata, then the grant. */
    const discover = (c: Created, auth: 'basic' | 'post' = 'basic') =>
      client.discovery(new URL(s.url), c.clientId, undefined, auth === 'basic' ? client.ClientSecretBasic(c.secret) : client.ClientSecretPost(c.secret), {
        algorithm: 'oauth2',
        // openid-client refuses plain http by default (tokens must not cross the network in clear).
        // The test server listens on 127.0.0.1 only, without TLS; this documented opt-in lifts that
        // check for this loopback test and changes nothing else in the protocol.
        execute: [client.allowInsecureRequests],
      });

    const auditRows = async (orgId: string, action: string) =>
      (await superQuery(t, 'select action, actor, target, data from audit_log where org_id = $1 and action = $2 order by id', [orgId, action])) as { actor: Record<string, unknown>; target: Record<string, unknown>; data: Record<string, unknown> }[];

    test('publishes RFC 8414 metadata and a JWKS of public keys only', async () => {
      const meta = await api(s.url, 'GET', '/.well-known/oauth-authorization-server');
      assert.equal(meta.status, 200);
      assert.equal(meta.body.issuer, s.url);
      assert.equal(meta.body.token_endpoint, `${s.url}/v1/oauth/token`);
      assert.equal(meta.body.jwks_uri, `${s.url}/.well-known/jwks.json`);
      assert.deepEqual(meta.body.grant_types_supported, ['client_credentials']);
      assert.deepEqual(meta.body.token_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post']);
      assert.ok(meta.body.scopes_supported.includes('apps:read'));
      const jwks = await api(s.url, 'GET', '/.well-known/jwks.json');
      assert.equal(jwks.status, 200);
      assert.equal(jwks.body.keys.length, 1);
      assert.deepEqual(Object.keys(jwks.body.keys[0]).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
      assert.equal(jwks.body.keys[0].alg, 'EdDSA');
    });

    test('creates a client over the API, shows the secret once, stores only its hash, and audits it', async () => {
      const r = await api(s.url, 'POST', `/v1/apps/${a.appId}/oauth-clients`, { key: a.key, body: { name: 'billing', scopes: ['apps:read', 'assets:read'] } });
      assert.equal(r.status, 201);
      assert.equal(r.headers.get('cache-control'), 'no-store');
      assert.match(r.body.client_id, /^obs_client_[0-9A-Za-z]{22}$/);
      assert.match(r.body.client_secret, /^obs_cs_[0-9A-Za-z]{49}$/);
      assert.equal(r.body.client.client_id, r.body.client_id);
      assert.deepEqual(r.body.client.scopes, ['apps:read', 'assets:read']);
      const list = await api(s.url, 'GET', `/v1/apps/${a.appId}/oauth-clients`, { key: a.key });
      assert.equal(list.status, 200);
      assert.ok(list.body.data.some((c: { id: string }) => c.id === r.body.client.id));
      assert.ok(!JSON.stringify(list.body).includes(r.body.client_secret));
      const row = (await superQuery(t, 'select secret_hash from oauth_clients where id = $1', [r.body.client.id]))[0]!;
      assert.equal(row.secret_hash, createHash('sha256').update(r.body.client_secret).digest('hex'));
      const audit = await auditRows(a.orgId, 'oauth_client.create');
      assert.equal(audit.length, 1);
      assert.equal(audit[0]!.target.oauth_client, r.body.client.id);
      assert.ok(!JSON.stringify(audit).includes(r.body.client_secret));
    });

    test('refuses to create clients without keys:manage, or with scopes the caller lacks, and creates nothing', async () => {
      const before = await superQuery(t, 'select count(*)::int as n from oauth_clients');
      const ro = await mintKey(t.db, a, { kind: 'restricted', scopes: ['apps:read'] });
      const noScope = await api(s.url, 'POST', `/v1/apps/${a.appId}/oauth-clients`, { key: ro.secret, body: {} });
      assert.equal(noScope.status, 403);
      assert.equal(noScope.body.code, 'ERR_SCOPE_MISSING');
      const manager = await mintKey(t.db, a, { kind: 'restricted', scopes: ['keys:manage', 'apps:read'] });
      const wider = await api(s.url, 'POST', `/v1/apps/${a.appId}/oauth-clients`, { key: manager.secret, body: { scopes: ['apps:read', 'assets:write'] } });
      assert.equal(wider.status, 403);
      assert.equal(wider.body.code, 'ERR_SCOPE_MISSING');
      const otherOrg = await api(s.url, 'POST', `/v1/apps/${b.appId}/oauth-clients`, { key: a.key, body: {} });
      assert.equal(otherOrg.status, 404);
      assert.deepEqual(await superQuery(t, 'select count(*)::int as n from oauth_clients'), before);
      // The legitimate request, for contrast: defaults to the caller's own scopes.
      const ok = await api(s.url, 'POST', `/v1/apps/${a.appId}/oauth-clients`, { key: manager.secret, body: {} });
      assert.equal(ok.status, 201);
      assert.deepEqual(ok.body.client.scopes, ['apps:read', 'keys:manage']);
    });

    test('issues a token to openid-client (Basic and post) and the token works wherever a key does', async () => {
      const c = await createClient(a);
      for (const auth of ['basic', 'post'] as const) {
        const config = await discover(c, auth);
        const tokens = await client.clientCredentialsGrant(config);
        assert.equal(tokens.token_type.toLowerCase(), 'bearer');
        assert.equal(tokens.expires_in, TTL);
        const header = decodeProtectedHeader(tokens.access_token);
        assert.equal(header.alg, 'EdDSA');
        assert.equal(header.typ, 'at+jwt');
        const jwks = (await api(s.url, 'GET', '/.well-known/jwks.json')).body;
        assert.ok(jwks.keys.some((k: { kid: string }) => k.kid === header.kid));
        const claims = decodeJwt(tokens.access_token);
        assert.equal(claims.iss, s.url);
        assert.equal(claims.aud, s.url);
        assert.equal(claims.sub, c.clientId);
        assert.equal(claims.client_id, c.clientId);
        assert.equal(claims.org_id, a.orgId);
        assert.equal(claims.app_id, a.appId);
        assert.equal(claims.exp! - claims.iat!, TTL);
        assert.equal(typeof claims.jti, 'string');
        const apps = await api(s.url, 'GET', '/v1/apps', { key: tokens.access_token });
        assert.equal(apps.status, 200);
        assert.deepEqual(apps.body.data.map((x: { id: string }) => x.id), [a.appId]);
        const who = await api(s.url, 'GET', '/v1/whoami', { key: tokens.access_token });
        assert.equal(who.body.kind, 'token');
        assert.equal(who.body.credential_id, c.id);
      }
      const raw = await tokenRequest({ grant_type: 'client_credentials' }, { authorization: basic(c.clientId, c.secret) });
      assert.equal(raw.status, 200);
      assert.equal(raw.headers.get('cache-control'), 'no-store');
      assert.equal(raw.headers.get('pragma'), 'no-cache');
    });

    test('narrows scopes on request and refuses widening with invalid_scope', async () => {
      const c = await createClient(a, { scopes: ['apps:read', 'keys:manage'] });
      const config = await discover(c);
      const narrow = await client.clientCredentialsGrant(config, { scope: 'apps:read' });
      assert.equal(narrow.scope, 'apps:read');
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: narrow.access_token })).status, 200);
      const denied = await api(s.url, 'GET', `/v1/apps/${a.appId}/keys`, { key: narrow.access_token });
      assert.equal(denied.status, 403);
      assert.equal(denied.body.code, 'ERR_SCOPE_MISSING');
      const full = await client.clientCredentialsGrant(config);
      assert.equal(full.scope, 'apps:read keys:manage');
      assert.equal((await api(s.url, 'GET', `/v1/apps/${a.appId}/keys`, { key: full.access_token })).status, 200);
      await assert.rejects(client.clientCredentialsGrant(config, { scope: 'apps:read assets:write' }), (err: client.ResponseBodyError) => err.error === 'invalid_scope' && err.status === 400);
      for (const scope of ['apps:read assets:write', 'admin', '']) {
        const r = await tokenRequest({ grant_type: 'client_credentials', scope }, { authorization: basic(c.clientId, c.secret) });
        assert.equal(r.status, 400);
        assert.equal(r.body.error, 'invalid_scope');
        assert.equal(r.body.code, 'ERR_OAUTH_INVALID_SCOPE');
        assert.equal(r.body.access_token, undefined);
      }
      const audit = await auditRows(a.orgId, 'oauth_token.failure');
      assert.ok(audit.some((e) => e.target.oauth_client === c.id && e.data.error === 'invalid_scope'));
    });

    test('refuses a wrong client secret with 401 invalid_client and a Basic challenge, audits it, and issues nothing', async () => {
      const c = await createClient(a);
      const wrong = `obs_cs_${'x'.repeat(49)}`;
      const r = await tokenRequest({ grant_type: 'client_credentials' }, { authorization: basic(c.clientId, wrong) });
      assert.equal(r.status, 401);
      assert.equal(r.body.error, 'invalid_client');
      assert.equal(r.body.code, 'ERR_OAUTH_INVALID_CLIENT');
      assert.equal(r.body.access_token, undefined);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Basic /);
      assert.equal(r.headers.get('cache-control'), 'no-store');
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
      const post = await tokenRequest({ grant_type: 'client_credentials', client_id: c.clientId, client_secret: c.secret.slice(0, -1) + (c.secret.endsWith('A') ? 'B' : 'A') });
      assert.equal(post.status, 401);
      assert.equal(post.body.error, 'invalid_client');
      const unknown = await tokenRequest({ grant_type: 'client_credentials' }, { authorization: basic(`obs_client_${'Z'.repeat(22)}`, c.secret) });
      assert.equal(unknown.status, 401);
      assert.equal(unknown.body.error, 'invalid_client');
      // The standard client surfaces the server's challenge.
      await assert.rejects(client.clientCredentialsGrant(await discover({ ...c, secret: wrong })), (err: Error & { status?: number; code?: string }) => err.code === 'OAUTH_WWW_AUTHENTICATE_CHALLENGE' && err.status === 401);
      const audit = await auditRows(a.orgId, 'oauth_token.failure');
      const mine = audit.filter((e) => e.target.oauth_client === c.id);
      assert.equal(mine.length, 1, 'audited once per client and reason per minute');
      assert.equal(mine[0]!.data.code, 'ERR_OAUTH_INVALID_CLIENT');
      assert.equal(mine[0]!.actor.type, 'anonymous');
      // The right secret still works.
      assert.equal((await tokenRequest({ grant_type: 'client_credentials' }, { authorization: basic(c.clientId, c.secret) })).status, 200);
    });

    test('answers malformed token requests with RFC 6749 errors and our codes', async () => {
      const c = await createClient(a);
      const auth = { authorization: basic(c.clientId, c.secret) };
      const cases: Array<[string, Record<string, string> | string, Record<string, string>, number, string, string]> = [
        ['no grant_type', {}, auth, 400, 'invalid_request', 'ERR_OAUTH_INVALID_REQUEST'],
        ['password grant', { grant_type: 'password', username: 'u', password: 'p' }, auth, 400, 'unsupported_grant_type', 'ERR_OAUTH_UNSUPPORTED_GRANT_TYPE'],
        ['repeated parameter', 'grant_type=client_credentials&grant_type=client_credentials', auth, 400, 'invalid_request', 'ERR_OAUTH_INVALID_REQUEST'],
        ['two auth methods', { grant_type: 'client_credentials', client_secret: c.secret }, auth, 400, 'invalid_request', 'ERR_OAUTH_INVALID_REQUEST'],
        ['no client auth', { grant_type: 'client_credentials', client_id: c.clientId }, {}, 401, 'invalid_client', 'ERR_OAUTH_INVALID_CLIENT'],
        ['bearer instead of basic', { grant_type: 'client_credentials' }, { authorization: `Bearer ${a.key}` }, 401, 'invalid_client', 'ERR_OAUTH_INVALID_CLIENT'],
        ['oversized body', `grant_type=client_credentials&pad=${'x'.repeat(10_000)}`, auth, 400, 'invalid_request', 'ERR_PAYLOAD_TOO_LARGE'],
      ];
      for (const [name, form, headers, status, error, code] of cases) {
        const r = await tokenRequest(form, headers);
        assert.equal(r.status, status, name);
        assert.equal(r.body.error, error, name);
        assert.equal(r.body.code, code, name);
        assert.equal(r.body.access_token, undefined, name);
      }
      const json = await fetch(`${s.url}/v1/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ grant_type: 'client_credentials' }) });
      assert.equal(json.status, 400);
      assert.equal(((await json.json()) as { error: string }).error, 'invalid_request');
      // RFC 6749 §2.3.1 encoding is decoded: `_` sent as %5F is the same client id. Unknown parameters are ignored (§3.2).
      const encoded = `Basic ${Buffer.from(`${c.clientId.replace(/_/g, '%5F')}:${c.secret.replace(/_/g, '%5F')}`).toString('base64')}`;
      const ok = await tokenRequest({ grant_type: 'client_credentials', resource_hint: 'ignored' }, { authorization: encoded });
      assert.equal(ok.status, 200);
      assert.equal(typeof ok.body.access_token, 'string');
    });

    test('revoking a client stops new tokens at once while issued tokens work until they expire', async () => {
      const c = await createClient(a);
      const config = await discover(c);
      const issued = await client.clientCredentialsGrant(config);
      const crossTenant = await api(s.url, 'DELETE', `/v1/oauth-clients/${c.id}`, { key: b.key });
      assert.equal(crossTenant.status, 404);
      assert.equal((await client.clientCredentialsGrant(config)).token_type.toLowerCase(), 'bearer', 'another org cannot revoke it');
      const del = await api(s.url, 'DELETE', `/v1/oauth-clients/${c.id}`, { key: a.key });
      assert.equal(del.status, 200);
      assert.ok(del.body.revoked_at);
      const refused = await tokenRequest({ grant_type: 'client_credentials' }, { authorization: basic(c.clientId, c.secret) });
      assert.equal(refused.status, 401);
      assert.equal(refused.body.error, 'invalid_client');
      assert.equal(refused.body.code, 'ERR_OAUTH_CLIENT_REVOKED');
      await assert.rejects(client.clientCredentialsGrant(config));
      // The trade-off of self-contained tokens: the one already issued lives out its short TTL...
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: issued.access_token })).status, 200);
      clock += (TTL - 10) * 1000;
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: issued.access_token })).status, 200);
      // ...and no longer.
      clock += 20 * 1000;
      const expired = await api(s.url, 'GET', '/v1/apps', { key: issued.access_token });
      assert.equal(expired.status, 401);
      assert.equal(expired.body.code, 'ERR_TOKEN_EXPIRED');
      assert.equal((await auditRows(a.orgId, 'oauth_client.revoke')).length, 1);
      const failures = await auditRows(a.orgId, 'auth.failure');
      assert.ok(failures.some((e) => e.target.key === c.id && e.data.code === 'ERR_TOKEN_EXPIRED'), 'a genuine expired token is audited to its org');
    });

    test('refuses forged access tokens each with its code and audits none of them into the claimed org', async () => {
      const c = await createClient(a);
      const real = (await client.clientCredentialsGrant(await discover(c))).access_token;
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: real })).status, 200);
      const header = decodeProtectedHeader(real);
      const claims = decodeJwt(real);
      const [h, p] = real.split('.') as [string, string];
      const pub = (await api(s.url, 'GET', '/.well-known/jwks.json')).body.keys.find((k: { kid: string }) => k.kid === header.kid);
      const before = (await auditRows(a.orgId, 'auth.failure')).length;

      const attacker = await generateKeyPair('EdDSA');
      const sameKid = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: header.kid! }).sign(attacker.privateKey);
      const none = `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'at+jwt', kid: header.kid }))}.${p}.`;
      const hsRaw = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: header.kid! }).sign(base64url.decode(pub.x));
      const hsJwk = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: header.kid! }).sign(new TextEncoder().encode(JSON.stringify(pub)));
      const tampered = `${h}.${base64url.encode(JSON.stringify({ ...claims, scope: 'apps:read keys:manage audit:read', org_id: b.orgId }))}.${real.split('.')[2]}`;
      // A genuine signature with exp in the past, made with the real key through the internal signer.
      const store = new SigningKeyStore(t.db, masterKeysFor(t.db), { now: () => clock });
      const expired = (
        await signAccessToken(await store.signingKey(), { clientId: c.clientId, clientRef: c.id, orgId: a.orgId, appId: a.appId, scopes: ['apps:read'] }, { issuer: s.url, audience: s.url, ttlSeconds: TTL, now: clock - (TTL + 60) * 1000 })
      ).token;

      const cases: Array<[string, string, string]> = [
        ['another key with the same kid', sameKid, 'ERR_TOKEN_INVALID'],
        ['alg none', none, 'ERR_TOKEN_INVALID'],
        ['HS256 keyed with the raw public key', hsRaw, 'ERR_TOKEN_INVALID'],
        ['HS256 keyed with the public JWK', hsJwk, 'ERR_TOKEN_INVALID'],
        ['claims edited after signing', tampered, 'ERR_TOKEN_INVALID'],
        ['malformed', 'eyJhbGciOiJFZERTQSJ9.e30', 'ERR_TOKEN_INVALID'],
        ['expired', expired, 'ERR_TOKEN_EXPIRED'],
      ];
      for (const [name, token, code] of cases) {
        const r = await api(s.url, 'GET', '/v1/apps', { key: token });
        assert.equal(r.status, 401, name);
        assert.equal(r.body.code, code, name);
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/, name);
      }
      const after = await auditRows(a.orgId, 'auth.failure');
      assert.equal(after.length, before + 1, 'only the genuine expired token is audited to org A');
      assert.equal(after.at(-1)!.data.code, 'ERR_TOKEN_EXPIRED');
      assert.equal((await auditRows(b.orgId, 'auth.failure')).length, 0, 'never into an org named by forged claims');
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: real })).status, 200);
    });

    test("a token from another org cannot reach org A's resources (404)", async () => {
      const cb = await createClient(b);
      const tokenB = (await client.clientCredentialsGrant(await discover(cb))).access_token;
      const own = await api(s.url, 'GET', '/v1/apps', { key: tokenB });
      assert.equal(own.status, 200);
      assert.deepEqual(own.body.data.map((x: { id: string }) => x.id), [b.appId]);
      for (const path of [`/v1/apps/${a.appId}`, `/v1/apps/${a.appId}/oauth-clients`, `/v1/apps/${a.appId}/keys`, `/v1/keys/${a.keyId}`]) {
        const r = await api(s.url, 'GET', path, { key: tokenB });
        assert.equal(r.status, 404, path);
        assert.equal(r.body.code, 'ERR_NOT_FOUND', path);
      }
      const ca = (await superQuery(t, 'select id from oauth_clients where org_id = $1 and revoked_at is null limit 1', [a.orgId]))[0]!.id as string;
      const del = await api(s.url, 'DELETE', `/v1/oauth-clients/${ca}`, { key: tokenB });
      assert.equal(del.status, 404);
      assert.equal((await superQuery(t, 'select revoked_at from oauth_clients where id = $1', [ca]))[0]!.revoked_at, null);
      assert.equal((await api(s.url, 'GET', `/v1/apps/${b.appId}/oauth-clients`, { key: tokenB })).status, 200);
    });

    test('after rotation the JWKS has current and previous keys, old tokens verify until retirement, private keys stay encrypted', async () => {
      const c = await createClient(a);
      const config = await discover(c);
      const oldToken = (await client.clientCredentialsGrant(config)).access_token;
      const oldKid = decodeProtectedHeader(oldToken).kid!;
      // Rotate as `obscura oauth rotate-signing-key` does: another process on the same database.
      const rt = { db: t.db, masterKeys: masterKeysFor(t.db), config: s.config } as unknown as Runtime;
      const out: string[] = [];
      const write = process.stdout.write;
      process.stdout.write = ((chunk: string) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
      let code: number;
      try {
        code = await oauthCommand(['rotate-signing-key', '--json'], rt);
      } finally {
        process.stdout.write = write;
      }
      assert.equal(code, 0);
      const rotated = JSON.parse(out.join('')) as { kid: string; previousKid: string; previousRetireAt: string };
      assert.equal(rotated.previousKid, oldKid);
      const prev = (await superQuery(t, 'select rotated_at, retire_at from signing_keys where kid = $1', [oldKid]))[0] as { rotated_at: Date; retire_at: Date };
      assert.equal(new Date(prev.retire_at).getTime() - new Date(prev.rotated_at).getTime(), (TTL + RETIRE_MARGIN_SECONDS) * 1000, 'kept until every token it signed has expired');
      assert.equal(new Date(prev.retire_at).toISOString(), rotated.previousRetireAt);
      const jwks = (await api(s.url, 'GET', '/.well-known/jwks.json')).body;
      assert.deepEqual(jwks.keys.map((k: { kid: string }) => k.kid).sort(), [oldKid, rotated.kid].sort());
      assert.ok(jwks.keys.every((k: Record<string, unknown>) => k.d === undefined));
      const newToken = (await client.clientCredentialsGrant(config)).access_token;
      assert.equal(decodeProtectedHeader(newToken).kid, rotated.kid, 'the server signs with the new key at once');
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: oldToken })).status, 200);
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: newToken })).status, 200);
      for (const row of (await superQuery(t, 'select kid, private_wrapped from signing_keys')) as { kid: string; private_wrapped: string }[]) {
        const d = (JSON.parse(unwrapKey(masterKeysFor(t.db).all, row.private_wrapped, `signing_key:${row.kid}`).toString('utf8')) as { d: string }).d;
        assert.ok(d.length > 0 && !row.private_wrapped.includes(d), 'the stored column does not contain d');
      }
      // Past retirement the previous key leaves the JWKS; the current one stays.
      clock = new Date(rotated.previousRetireAt).getTime() + 1000;
      const later = (await api(s.url, 'GET', '/.well-known/jwks.json')).body;
      assert.deepEqual(later.keys.map((k: { kid: string }) => k.kid), [rotated.kid]);
      const fresh = (await client.clientCredentialsGrant(config)).access_token;
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: fresh })).status, 200);
    });
  });
}
