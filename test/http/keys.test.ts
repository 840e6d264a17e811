import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { DB_KINDS, openTestDb, superQuery, type TestDb } from '../support/db.js';
import { startServer, createTenant, mintKey, api, type TestServer, type Tenant } from '../support/server.js';

for (const kind of DB_KINDS) {
  describe(`API keys over HTTP (${kind})`, () => {
    let t: TestDb;
    let s: TestServer;
    let a: Tenant;

    before(async () => {
      t = await openTestDb(kind);
      s = await startServer(t.db);
      a = await createTenant(t.db, 'Acme');
    });
    after(async () => {
      await s.close();
      await t.close();
    });

    const auditActions = async (orgId: string) =>
      (await superQuery(t, 'select action, data from audit_log where org_id = $1 order by id', [orgId])) as { action: string; data: Record<string, unknown> }[];

    test('accepts a valid secret key and lists the org apps', async () => {
      const r = await api(s.url, 'GET', '/v1/apps', { key: a.key });
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.data.map((x: { id: string }) => x.id), [a.appId]);
      assert.match(r.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    });

    test('refuses a request without credentials with 401 ERR_AUTH_MISSING and a Bearer challenge', async () => {
      const r = await api(s.url, 'GET', '/v1/apps');
      assert.equal(r.status, 401);
      assert.equal(r.body.code, 'ERR_AUTH_MISSING');
      assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
    });

    test('refuses malformed keys and wrong checksums without touching the database', async () => {
      const malformed = await api(s.url, 'GET', '/v1/apps', { key: 'obs_sk_short' });
      assert.equal(malformed.status, 401);
      assert.equal(malformed.body.code, 'ERR_KEY_MALFORMED');
      // Flip one character of the random part: the CRC32 tail no longer matches.
      const i = 10;
      const flipped = a.key.slice(0, i) + (a.key[i] === 'A' ? 'B' : 'A') + a.key.slice(i + 1);
      const bad = await api(s.url, 'GET', '/v1/apps', { key: flipped });
      assert.equal(bad.status, 401);
      assert.equal(bad.body.code, 'ERR_KEY_CHECKSUM');
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: a.key })).status, 200);
    });

    test('refuses an unknown but well-formed key with ERR_KEY_UNKNOWN', async () => {
      const { generateApiKey } = await import('../../src/crypto/apikey.js');
      const r = await api(s.url, 'GET', '/v1/apps', { key: generateApiKey('secret') });
      assert.equal(r.status, 401);
      assert.equal(r.body.code, 'ERR_KEY_UNKNOWN');
    });

    test('creates a key over the API, shows the secret once, and the new key works', async () => {
      const r = await api(s.url, 'POST', `/v1/apps/${a.appId}/keys`, { key: a.key, body: { kind: 'restricted', name: 'reader', scopes: ['apps:read'] } });
      assert.equal(r.status, 201);
      assert.match(r.body.secret, /^obs_rk_[0-9A-Za-z]{38}$/);
      assert.equal(r.headers.get('cache-control'), 'no-store');
      assert.equal(r.body.key.hash, undefined);
      const list = await api(s.url, 'GET', `/v1/apps/${a.appId}/keys`, { key: a.key });
      assert.equal(list.status, 200);
      assert.ok(!JSON.stringify(list.body).includes(r.body.secret), 'listing never contains a secret');
      const stored = await superQuery(t, 'select hash from api_keys where id = $1', [r.body.key.id]);
      assert.notEqual(stored[0]!.hash, r.body.secret);
      assert.equal((stored[0]!.hash as string).length, 64);
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: r.body.secret })).status, 200);
    });

    test('refuses a key without the needed scope with 403 ERR_SCOPE_MISSING and audits it', async () => {
      const ro = await mintKey(t.db, a, { kind: 'restricted', scopes: ['apps:read'] });
      const r = await api(s.url, 'POST', '/v1/apps', { key: ro.secret, body: { name: 'x' } });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'ERR_SCOPE_MISSING');
      const ok = await api(s.url, 'GET', '/v1/apps', { key: ro.secret });
      assert.equal(ok.status, 200);
      const names = (await superQuery(t, 'select name from apps where org_id = $1', [a.orgId])).map((x) => x.name);
      assert.ok(!names.includes('x'), 'nothing was created');
      const events = await auditActions(a.orgId);
      assert.ok(events.some((e) => e.action === 'auth.failure' && e.data.code === 'ERR_SCOPE_MISSING'));
    });

    test('a key cannot mint a key with scopes it does not hold', async () => {
      const km = await mintKey(t.db, a, { kind: 'restricted', scopes: ['keys:manage', 'apps:read'] });
      const r = await api(s.url, 'POST', `/v1/apps/${a.appId}/keys`, { key: km.secret, body: { kind: 'secret' } });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'ERR_SCOPE_MISSING');
      const narrower = await api(s.url, 'POST', `/v1/apps/${a.appId}/keys`, { key: km.secret, body: { kind: 'restricted', scopes: ['apps:read'] } });
      assert.equal(narrower.status, 201);
    });

    test('a key cannot roll a more powerful key to obtain its replacement', async () => {
      const km = await mintKey(t.db, a, { kind: 'restricted', scopes: ['keys:manage'] });
      const victim = await mintKey(t.db, a, { kind: 'secret' });
      const r = await api(s.url, 'POST', `/v1/keys/${victim.id}/roll`, { key: km.secret, body: { grace_period_seconds: 60 } });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'ERR_SCOPE_MISSING');
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: victim.secret })).status, 200, 'victim unaffected');
      const ok = await api(s.url, 'POST', `/v1/keys/${victim.id}/roll`, { key: a.key, body: { grace_period_seconds: 60 } });
      assert.equal(ok.status, 200);
    });

    test('refuses an expired key with ERR_KEY_EXPIRED while an unexpired one works', async () => {
      const soon = await mintKey(t.db, a, { kind: 'secret', expiresAt: new Date(Date.now() + 1500).toISOString() });
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: soon.secret })).status, 200);
      await new Promise((r) => setTimeout(r, 1600));
      const r = await api(s.url, 'GET', '/v1/apps', { key: soon.secret });
      assert.equal(r.status, 401);
      assert.equal(r.body.code, 'ERR_KEY_EXPIRED');
    });

    test('revocation takes effect at once on this node and is audited', async () => {
      const k = await mintKey(t.db, a, { kind: 'secret' });
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: k.secret })).status, 200); // now cached
      const del = await api(s.url, 'DELETE', `/v1/keys/${k.id}`, { key: a.key });
      assert.equal(del.status, 200);
      assert.ok(del.body.revoked_at);
      const r = await api(s.url, 'GET', '/v1/apps', { key: k.secret });
      assert.equal(r.status, 401);
      assert.equal(r.body.code, 'ERR_KEY_REVOKED');
      assert.ok((await auditActions(a.orgId)).some((e) => e.action === 'key.revoke'));
    });

    test('revocation reaches another node sharing the database within 5 seconds', async () => {
      const other = await startServer(t.db);
      try {
        const k = await mintKey(t.db, a, { kind: 'secret' });
        assert.equal((await api(other.url, 'GET', '/v1/apps', { key: k.secret })).status, 200); // cached on the other node
        const revokedAt = Date.now();
        assert.equal((await api(s.url, 'DELETE', `/v1/keys/${k.id}`, { key: a.key })).status, 200);
        let refusedAfter = -1;
        while (Date.now() - revokedAt < 6000) {
          const r = await api(other.url, 'GET', '/v1/apps', { key: k.secret });
          if (r.status === 401) {
            assert.equal(r.body.code, 'ERR_KEY_REVOKED');
            refusedAfter = Date.now() - revokedAt;
            break;
          }
          await new Promise((res) => setTimeout(res, 100));
        }
        assert.ok(refusedAfter >= 0 && refusedAfter <= 5000, `refused after ${refusedAfter} ms`);
      } finally {
        await other.close();
      }
    });

    test('a rolled key works during its grace period and fails with ERR_KEY_ROLLED after it', async () => {
      const k = await mintKey(t.db, a, { kind: 'restricted', scopes: ['apps:read'] });
      const roll = await api(s.url, 'POST', `/v1/keys/${k.id}/roll`, { key: a.key, body: { grace_period_seconds: 2 } });
      assert.equal(roll.status, 200);
      assert.deepEqual(roll.body.key.scopes, ['apps:read']);
      assert.equal(roll.body.previous.rolled_to, roll.body.key.id);
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: k.secret })).status, 200, 'old key inside grace');
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: roll.body.secret })).status, 200, 'new key');
      await new Promise((r) => setTimeout(r, 2100));
      const after = await api(s.url, 'GET', '/v1/apps', { key: k.secret });
      assert.equal(after.status, 401);
      assert.equal(after.body.code, 'ERR_KEY_ROLLED');
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: roll.body.secret })).status, 200);
      const again = await api(s.url, 'POST', `/v1/keys/${k.id}/roll`, { key: a.key, body: {} });
      assert.equal(again.status, 409);
      assert.equal(again.body.code, 'ERR_CONFLICT');
    });

    test('a roll with no grace keeps the old key until the replacement is first used, then stops it at once with ERR_KEY_ROLLED', async () => {
      const k = await mintKey(t.db, a, { kind: 'secret' });
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: k.secret })).status, 200);
      const roll = await api(s.url, 'POST', `/v1/keys/${k.id}/roll`, { key: a.key, body: { grace_period_seconds: 0 } });
      assert.equal(roll.status, 200);
      assert.equal(roll.body.previous.grace_ends_at, null);
      assert.equal(roll.body.key.first_used_at, null);
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: k.secret })).status, 200, 'old key until the replacement is used');
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: roll.body.secret })).status, 200, 'first use of the replacement');
      const old = await api(s.url, 'GET', '/v1/apps', { key: k.secret });
      assert.equal(old.status, 401);
      assert.equal(old.body.code, 'ERR_KEY_ROLLED');
      const info = await api(s.url, 'GET', `/v1/keys/${roll.body.key.id}`, { key: a.key });
      assert.ok(info.body.first_used_at);
    });

    test('a roll with no grace whose answer is lost locks nobody out: the old key still works and rolling again revokes the unused replacement (issue 9 item 21)', async () => {
      const k = await mintKey(t.db, a, { kind: 'secret' });
      // The first answer is lost (connection dropped, process killed after the commit): its secret is never seen.
      const lost = await api(s.url, 'POST', `/v1/keys/${k.id}/roll`, { key: k.secret, body: { grace_period_seconds: 0 } });
      assert.equal(lost.status, 200);
      assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: k.secret })).status, 200, 'the old key was not locked out');
      const again = await api(s.url, 'POST', `/v1/keys/${k.id}/roll`, { key: k.secret, body: { grace_period_seconds: 0 } });
      assert.equal(again.status, 200);
      assert.notEqual(again.body.key.id, lost.body.key.id);
      const superseded = await api(s.url, 'GET', '/v1/whoami', { key: lost.body.secret });
      assert.equal(superseded.status, 401);
      assert.equal(superseded.body.code, 'ERR_KEY_REVOKED');
      assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: again.body.secret })).status, 200);
      assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: k.secret })).body.code, 'ERR_KEY_ROLLED');
      // Once the replacement has been used, rolling the old key again is a conflict (roll the replacement).
      const late = await api(s.url, 'POST', `/v1/keys/${k.id}/roll`, { key: a.key, body: {} });
      assert.equal(late.status, 409);
      assert.equal(late.body.code, 'ERR_CONFLICT');
    });

    test('roll then revoke stops a leaked key at once, and revoking an unused replacement stops the old key too', async () => {
      const leaked = await mintKey(t.db, a, { kind: 'secret' });
      const roll = await api(s.url, 'POST', `/v1/keys/${leaked.id}/roll`, { key: a.key, body: {} });
      assert.equal((await api(s.url, 'DELETE', `/v1/keys/${leaked.id}`, { key: a.key })).status, 200);
      assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: leaked.secret })).body.code, 'ERR_KEY_REVOKED');
      assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: roll.body.secret })).status, 200, 'the replacement works');

      const k = await mintKey(t.db, a, { kind: 'secret' });
      const roll2 = await api(s.url, 'POST', `/v1/keys/${k.id}/roll`, { key: a.key, body: {} });
      assert.equal((await api(s.url, 'DELETE', `/v1/keys/${roll2.body.key.id}`, { key: a.key })).status, 200);
      assert.equal((await api(s.url, 'GET', '/v1/whoami', { key: k.secret })).body.code, 'ERR_KEY_ROLLED', 'revoking the replacement never revives the old key');
    });

    test('refuses a grace period over 30 days with ERR_VALIDATION and changes nothing', async () => {
      const k = await mintKey(t.db, a, { kind: 'secret' });
      const r = await api(s.url, 'POST', `/v1/keys/${k.id}/roll`, { key: a.key, body: { grace_period_seconds: 30 * 86400 + 1 } });
      assert.equal(r.status, 400);
      assert.equal(r.body.code, 'ERR_VALIDATION');
      const row = await superQuery(t, 'select rolled_to from api_keys where id = $1', [k.id]);
      assert.equal(row[0]!.rolled_to, null);
    });

    test('an IP allowlist admits listed addresses and refuses others with ERR_IP_NOT_ALLOWED', async () => {
      const allowed = await mintKey(t.db, a, { kind: 'secret', allowedIps: ['127.0.0.0/8', '::1'] });
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: allowed.secret })).status, 200);
      const elsewhere = await mintKey(t.db, a, { kind: 'secret', allowedIps: ['203.0.113.0/24', '2001:db8::/32'] });
      const r = await api(s.url, 'GET', '/v1/apps', { key: elsewhere.secret });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'ERR_IP_NOT_ALLOWED');
    });

    test('a client cannot spoof its IP with X-Forwarded-For when no proxy is trusted', async () => {
      const elsewhere = await mintKey(t.db, a, { kind: 'secret', allowedIps: ['203.0.113.7'] });
      const r = await api(s.url, 'GET', '/v1/apps', { key: elsewhere.secret, headers: { 'x-forwarded-for': '203.0.113.7' } });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'ERR_IP_NOT_ALLOWED');
    });

    test('a publishable key works only from its allowed origins and only for its scopes', async () => {
      const pk = await mintKey(t.db, a, { kind: 'publishable', allowedOrigins: ['https://shop.example.com'] });
      const wrong = await api(s.url, 'POST', '/v1/apps', { key: pk.secret, headers: { origin: 'https://evil.example.net' }, body: { name: 'x' } });
      assert.equal(wrong.status, 403);
      assert.equal(wrong.body.code, 'ERR_ORIGIN_NOT_ALLOWED');
      const none = await api(s.url, 'GET', '/v1/apps', { key: pk.secret });
      assert.equal(none.body.code, 'ERR_ORIGIN_NOT_ALLOWED');
      const rightOriginWrongScope = await api(s.url, 'GET', '/v1/apps', { key: pk.secret, headers: { origin: 'https://shop.example.com' } });
      assert.equal(rightOriginWrongScope.status, 403);
      assert.equal(rightOriginWrongScope.body.code, 'ERR_SCOPE_MISSING');
      // The legitimate use: an upload from the allowed origin, once the app accepts browser uploads.
      await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { allow_browser_uploads: true } } });
      const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#123456' } }).png().toBuffer();
      const up = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${pk.secret}`, origin: 'https://shop.example.com' }, body: new Uint8Array(png) });
      assert.equal(up.status, 201);
      const elsewhere = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${pk.secret}`, origin: 'https://evil.example.net' }, body: new Uint8Array(png) });
      assert.equal(elsewhere.status, 403);
    });

    test('a publishable key cannot be created without origins or with broader scopes', async () => {
      const noOrigins = await api(s.url, 'POST', `/v1/apps/${a.appId}/keys`, { key: a.key, body: { kind: 'publishable' } });
      assert.equal(noOrigins.status, 400);
      assert.equal(noOrigins.body.code, 'ERR_VALIDATION');
      const broad = await api(s.url, 'POST', `/v1/apps/${a.appId}/keys`, { key: a.key, body: { kind: 'publishable', allowed_origins: ['https://a.example.com'], scopes: ['keys:manage'] } });
      assert.equal(broad.status, 400);
      const ok = await api(s.url, 'POST', `/v1/apps/${a.appId}/keys`, { key: a.key, body: { kind: 'publishable', allowed_origins: ['https://a.example.com'] } });
      assert.equal(ok.status, 201);
      assert.match(ok.body.secret, /^obs_pk_/);
      assert.deepEqual(ok.body.key.scopes, ['assets:write']);
    });

    test('unknown JSON properties are refused, not dropped (no mass assignment)', async () => {
      const before = (await superQuery(t, 'select count(*)::int as n from apps')).at(0)!.n;
      const r = await api(s.url, 'POST', '/v1/apps', { key: a.key, body: { name: 'sneaky', org_id: '00000000-0000-0000-0000-000000000000' } });
      assert.equal(r.status, 400);
      assert.equal(r.body.code, 'ERR_VALIDATION');
      assert.match(r.body.detail, /org_id/);
      const after = (await superQuery(t, 'select count(*)::int as n from apps')).at(0)!.n;
      assert.equal(after, before);
      const ok = await api(s.url, 'POST', '/v1/apps', { key: a.key, body: { name: 'legit' } });
      assert.equal(ok.status, 201);
    });

    test('invalid JSON gets a problem document without library text or a stack', async () => {
      const res = await fetch(`${s.url}/v1/apps`, { method: 'POST', headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json' }, body: '{"name": ' });
      const body = (await res.json()) as Record<string, unknown>;
      assert.equal(res.status, 400);
      assert.equal(body.code, 'ERR_BAD_REQUEST');
      assert.ok(!JSON.stringify(body).includes('at '), 'no stack');
      assert.ok(!/Unexpected|position/i.test(String(body.detail)), 'no parser message');
    });

    test('audit trail records key creation, roll and revocation, readable with audit:read', async () => {
      const r = await api(s.url, 'GET', '/v1/audit?limit=500', { key: a.key });
      assert.equal(r.status, 200);
      const actions = new Set(r.body.data.map((e: { action: string }) => e.action));
      for (const act of ['org.create', 'app.create', 'key.create', 'key.roll', 'key.revoke']) assert.ok(actions.has(act), act);
      const noAudit = await mintKey(t.db, a, { kind: 'restricted', scopes: ['apps:read'] });
      assert.equal((await api(s.url, 'GET', '/v1/audit', { key: noAudit.secret })).status, 403);
    });

    test('a burst of failed authentications from one IP is audited once', async () => {
      const burst = await startServer(t.db, { env: { OBSCURA_AUTH_BURST_THRESHOLD: '5' } });
      try {
        const { generateApiKey } = await import('../../src/crypto/apikey.js');
        const before = await superQuery(t, "select count(*)::int as n from audit_log where action = 'auth.failure_burst'");
        for (let i = 0; i < 8; i++) await api(burst.url, 'GET', '/v1/apps', { key: generateApiKey('secret') });
        const after = await superQuery(t, "select count(*)::int as n from audit_log where action = 'auth.failure_burst'");
        assert.equal(Number(after[0]!.n) - Number(before[0]!.n), 1);
      } finally {
        await burst.close();
      }
    });
  });
}
