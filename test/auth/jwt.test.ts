import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT, generateKeyPair, exportJWK, base64url } from 'jose';
import { DB_KINDS, openTestDb, superQuery, type TestDb } from '../support/db.js';
import { SigningKeyStore, accessTokenVerifier, signAccessToken, RETIRE_MARGIN_SECONDS, type AccessTokenSubject } from '../../src/auth/jwt.js';
import { masterKeyId, unwrapKey } from '../../src/crypto/keywrap.js';
import type { MasterKeys } from '../../src/crypto/master.js';
import { AppError } from '../../src/errors.js';

const ISS = 'https://media.example.test';
const TTL = 900;

/** Runs `fn` and returns the AppError it throws (fails the test if it resolves). */
async function refusal(fn: () => Promise<unknown>): Promise<AppError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof AppError, `expected an AppError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

/** Random master keys, as OBSCURA_MASTER_KEY would provide (kept local: no HTTP stack needed here). */
function testMasterKeys(): MasterKeys {
  const current = randomBytes(32);
  const currentId = masterKeyId(current);
  return { current, currentId, all: new Map([[currentId, current]]), source: 'env', file: undefined };
}

const b64json = (v: unknown) => base64url.encode(JSON.stringify(v));

for (const kind of DB_KINDS) {
  describe(`JWT signing keys and access token verification (${kind})`, () => {
    let t: TestDb;
    let clock = Date.now();
    const now = () => clock;
    const master = testMasterKeys();
    let store: SigningKeyStore;
    let verify: (token: string) => Promise<unknown>;
    const subject: AccessTokenSubject = { clientId: `obs_client_${'A'.repeat(22)}`, clientRef: randomUUID(), orgId: randomUUID(), appId: randomUUID(), scopes: ['apps:read', 'assets:write'] };

    before(async () => {
      t = await openTestDb(kind);
      store = new SigningKeyStore(t.db, master, { tokenTtlSeconds: TTL, rotationDays: 30, now, unknownKidRefreshMs: 100 });
      verify = accessTokenVerifier({ issuer: ISS, audience: ISS, keys: store, now });
    });
    after(async () => {
      await t.close();
    });

    const sign = async (over: Partial<{ now: number; ttlSeconds: number }> = {}) => (await signAccessToken(await store.signingKey(), subject, { issuer: ISS, audience: ISS, ttlSeconds: TTL, now: clock, ...over })).token;
    const keyRows = async () => (await superQuery(t, 'select kid, private_wrapped, public_jwk, rotated_at, retire_at from signing_keys order by created_at')) as { kid: string; private_wrapped: string; rotated_at: Date | null; retire_at: Date | null }[];

    test('creates the first signing key on first use and stores its private JWK only wrapped by the master key', async () => {
      assert.equal((await keyRows()).length, 0);
      const key = await store.signingKey();
      const rows = await keyRows();
      assert.equal(rows.length, 1);
      assert.equal(rows[0]!.kid, key.kid);
      const jwk = JSON.parse(unwrapKey(master.all, rows[0]!.private_wrapped, `signing_key:${key.kid}`).toString('utf8')) as { d: string; x: string };
      assert.equal(typeof jwk.d, 'string');
      assert.ok(jwk.d.length >= 40);
      assert.ok(!JSON.stringify(rows[0]).includes(jwk.d), 'the stored row never contains the private scalar d');
      // Bound to the master key and to the kid: another master key, or another row's context, fails.
      assert.equal((await refusal(async () => unwrapKey(testMasterKeys().all, rows[0]!.private_wrapped, `signing_key:${key.kid}`))).code, 'ERR_INTEGRITY');
      assert.equal((await refusal(async () => unwrapKey(master.all, rows[0]!.private_wrapped, 'signing_key:other'))).code, 'ERR_INTEGRITY');
    });

    test('keeps signing keys out of reach of tenant transactions', async () => {
      await assert.rejects(t.db.withTenant(randomUUID(), (trx) => trx.selectFrom('signing_keys').selectAll().execute()));
      assert.equal((await keyRows()).length, 1);
    });

    test('verifies a token it signed and yields a token principal with the granted scopes', async () => {
      const p = (await verify(await sign())) as { orgId: string; appId: string; keyId: string; kind: string; scopes: Set<string> };
      assert.equal(p.kind, 'token');
      assert.equal(p.orgId, subject.orgId);
      assert.equal(p.appId, subject.appId);
      assert.equal(p.keyId, subject.clientRef);
      assert.deepEqual([...p.scopes].sort(), ['apps:read', 'assets:write']);
    });

    test('refuses tokens signed by our key but with the wrong typ, issuer or audience with ERR_TOKEN_INVALID', async () => {
      const key = await store.signingKey();
      const craft = (header: Record<string, unknown>, iss: string, aud: string) =>
        new SignJWT({ client_id: subject.clientId, scope: 'apps:read', org_id: subject.orgId, app_id: subject.appId, obs_cid: subject.clientRef })
          .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, ...header })
          .setIssuer(iss)
          .setSubject(subject.clientId)
          .setAudience(aud)
          .setJti(randomUUID())
          .setIssuedAt(Math.floor(clock / 1000))
          .setExpirationTime(Math.floor(clock / 1000) + 60)
          .sign(key.privateKey);
      // The same construction with the right values is accepted: each refusal below is about one field.
      await verify(await craft({ typ: 'at+jwt' }, ISS, ISS));
      for (const [header, iss, aud] of [
        [{ typ: 'JWT' }, ISS, ISS],
        [{}, ISS, ISS],
        [{ typ: 'at+jwt' }, 'https://evil.example', ISS],
        [{ typ: 'at+jwt' }, ISS, 'https://other-api.example'],
      ] as const) {
        assert.equal((await refusal(async () => verify(await craft(header, iss, aud)))).code, 'ERR_TOKEN_INVALID');
      }
    });

    test('reports a genuine expired token as ERR_TOKEN_EXPIRED naming its org; a forged one names no org', async () => {
      const expired = await sign({ now: clock - (TTL + 60) * 1000 });
      const e = await refusal(() => verify(expired));
      assert.equal(e.code, 'ERR_TOKEN_EXPIRED');
      assert.deepEqual(e.internal?.failure, { code: 'ERR_TOKEN_EXPIRED', orgId: subject.orgId, keyId: subject.clientRef });
      // An attacker's key under our kid, with the same claims: the claims must not be trusted.
      const { privateKey } = await generateKeyPair('EdDSA');
      const kid = (await store.signingKey()).kid;
      const forged = await signAccessToken({ kid, privateKey }, subject, { issuer: ISS, audience: ISS, ttlSeconds: TTL, now: clock - (TTL + 60) * 1000 });
      const f = await refusal(() => verify(forged.token));
      assert.equal(f.code, 'ERR_TOKEN_INVALID');
      assert.equal((f.internal?.failure as { orgId: unknown }).orgId, null);
    });

    test('refuses alg none, HS256 keyed with the public key, and malformed tokens with ERR_TOKEN_INVALID', async () => {
      const good = await sign();
      const [h, p] = good.split('.') as [string, string, string];
      const header = JSON.parse(new TextDecoder().decode(base64url.decode(h))) as { kid: string };
      await verify(good);
      const none = `${b64json({ alg: 'none', typ: 'at+jwt', kid: header.kid })}.${p}.`;
      assert.equal((await refusal(() => verify(none))).code, 'ERR_TOKEN_INVALID');
      const pub = (await store.jwks()).keys[0]!;
      for (const secret of [base64url.decode(pub.x), new TextEncoder().encode(JSON.stringify(pub))]) {
        const hs = await new SignJWT(JSON.parse(new TextDecoder().decode(base64url.decode(p)))).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: header.kid }).sign(secret);
        assert.equal((await refusal(() => verify(hs))).code, 'ERR_TOKEN_INVALID');
      }
      for (const junk of ['', 'abc', 'a.b.c', `${h}.${p}`, `${h}.${p}.${'A'.repeat(86)}`, 'x'.repeat(10_000)]) {
        assert.equal((await refusal(() => verify(junk))).code, 'ERR_TOKEN_INVALID');
      }
    });

    test('rotates on demand: the new key signs, the previous stays published and verifies until it retires', async () => {
      const oldKey = await store.signingKey();
      const before = await sign();
      const r = await store.rotate({ type: 'cli', id: 'test' });
      assert.equal(r.previousKid, oldKey.kid);
      assert.notEqual(r.kid, oldKey.kid);
      assert.equal(new Date(r.previousRetireAt!).getTime(), clock + (TTL + RETIRE_MARGIN_SECONDS) * 1000);
      assert.equal((await store.signingKey()).kid, r.kid);
      assert.deepEqual((await store.jwks()).keys.map((k) => k.kid).sort(), [oldKey.kid, r.kid].sort());
      const after = await sign();
      await verify(after);
      // Still valid just before its own expiry, which comes before the old key retires.
      clock += (TTL - 1) * 1000;
      await verify(before);
      // Past retirement the old key is gone: even a fresh token signed with it is refused.
      clock += (RETIRE_MARGIN_SECONDS + 2) * 1000;
      assert.deepEqual((await store.jwks()).keys.map((k) => k.kid), [r.kid]);
      const late = await signAccessToken(oldKey, subject, { issuer: ISS, audience: ISS, ttlSeconds: TTL, now: clock });
      assert.equal((await refusal(() => verify(late.token))).code, 'ERR_TOKEN_INVALID');
      await verify(await sign());
      for (const row of await keyRows()) {
        const jwk = JSON.parse(unwrapKey(master.all, row.private_wrapped, `signing_key:${row.kid}`).toString('utf8')) as { d: string };
        assert.ok(!row.private_wrapped.includes(jwk.d));
      }
      const audit = await superQuery(t, `select data from audit_log where chain = 'system' and action = 'signing_key.rotate'`);
      assert.equal(audit.length, 1);
      assert.equal((audit[0]!.data as { reason: string }).reason, 'on_demand');
    });

    test('rotates on schedule once the key is older than the period, exactly once across nodes', async () => {
      const node2 = new SigningKeyStore(t.db, master, { tokenTtlSeconds: TTL, rotationDays: 30, now });
      const current = (await store.signingKey()).kid;
      assert.equal((await node2.signingKey()).kid, current);
      clock += 29 * 86_400_000;
      assert.equal((await store.signingKey()).kid, current, 'not rotated before the period ends');
      clock += 1 * 86_400_000 + 1000;
      const [k1, k2] = await Promise.all([store.signingKey(), node2.signingKey()]);
      assert.equal(k1.kid, k2.kid);
      assert.notEqual(k1.kid, current);
      const rows = await keyRows();
      assert.equal(rows.filter((r) => r.rotated_at === null).length, 1);
      const scheduled = await superQuery(t, `select 1 from audit_log where chain = 'system' and action = 'signing_key.rotate' and data->>'reason' = 'scheduled'`);
      assert.equal(scheduled.length, 1);
    });

    test('accepts a token signed after a rotation on another node, after one refresh of the key set', async () => {
      await verify(await sign());
      const node2 = new SigningKeyStore(t.db, master, { tokenTtlSeconds: TTL, rotationDays: 30, now });
      const r = await node2.rotate();
      const token = (await signAccessToken(await node2.signingKey(), subject, { issuer: ISS, audience: ISS, ttlSeconds: TTL, now: clock })).token;
      assert.equal(JSON.parse(new TextDecoder().decode(base64url.decode(token.split('.')[0]!))).kid, r.kid);
      await verify(token);
      // A kid nobody published is refused after that refresh.
      const { privateKey } = await generateKeyPair('EdDSA');
      const stranger = await signAccessToken({ kid: 'unknown-kid', privateKey }, subject, { issuer: ISS, audience: ISS, ttlSeconds: TTL, now: clock });
      assert.equal((await refusal(() => verify(stranger.token))).code, 'ERR_TOKEN_INVALID');
      // The JWKS never carries private material.
      const jwks = await store.jwks();
      for (const k of jwks.keys) {
        assert.deepEqual(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
        assert.equal(k.alg, 'EdDSA');
        assert.equal(k.use, 'sig');
      }
      const exported = await exportJWK((await generateKeyPair('EdDSA', { extractable: true })).privateKey);
      assert.ok('d' in exported, 'sanity: a private JWK has d, which the JWKS entries above lack');
    });
  });
}
