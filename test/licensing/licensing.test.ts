/**
 * Licences for on-device processing (issue 15, items 2 and 3, and the server's part of "Bad input"),
 * through the real server on 127.0.0.1 (real PostgreSQL), the SDK's own helpers and verifier (the code
 * the device runs), and the real `obscura` command as a process. Every attack is shown failing next
 * to its legitimate twin succeeding.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, createHmac, createPrivateKey, randomBytes } from 'node:crypto';
import { rewrapAll } from '../../src/crypto/keyring.js';
import { masterKeyId, unwrapKey } from '../../src/crypto/keywrap.js';
import type { MasterKeys } from '../../src/crypto/master.js';
import { WRAPPED_COLUMNS } from '../../src/main.js';
import { licenceKeyContext } from '../../src/licensing/keys.js';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactSign, base64url, exportJWK, type JWK } from 'jose';
import { openTestDb, type TestDb } from '../support/db.js';
import { startServer, createTenant, mintKey, masterKeysFor, api, type TestServer, type Tenant } from '../support/server.js';
import { runCli, ROOT } from '../support/cli.js';
import {
  verifyLicence,
  dearmourLicence,
  armourLicence,
  startLicenceSession,
  sendTelemetry,
  fetchLicenceKeys,
  LicenceError,
  LicenceRequestError,
  type TelemetryEvent,
} from '../../sdk/src/licence.js';

const SITE = 'https://photos.example.com';
const OTHER_SITE = 'https://evil.example.net';
const NATIVE = 'com.example.photos';

/** Flips one base64url character of part `part` (0 header, 1 payload, 2 signature) of a compact JWS. */
function flip(jws: string, part: 0 | 1 | 2): string {
  const parts = jws.split('.');
  const p = parts[part]!;
  const i = Math.floor(p.length / 2);
  parts[part] = p.slice(0, i) + (p[i] === 'A' ? 'B' : 'A') + p.slice(i + 1);
  return parts.join('.');
}

/** Re-signs `claims` under a header of our choosing with `key` (an attacker's own key, or an HMAC secret). */
async function forge(claims: Record<string, unknown>, header: Record<string, unknown>, sign: 'rsa' | 'ed25519' | 'hmac' | 'none', secret?: Buffer): Promise<string> {
  const payload = new TextEncoder().encode(JSON.stringify(claims));
  if (sign === 'rsa' || sign === 'ed25519') {
    const { privateKey } = sign === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
    return new CompactSign(payload).setProtectedHeader(header as { alg: string }).sign(privateKey);
  }
  const h = base64url.encode(JSON.stringify(header));
  const p = base64url.encode(payload);
  if (sign === 'none') return `${h}.${p}.`;
  return `${h}.${p}.${base64url.encode(createHmac('sha256', secret!).update(`${h}.${p}`).digest())}`;
}

const decodeClaims = (jws: string) => JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
const decodeHeader = (jws: string) => JSON.parse(Buffer.from(jws.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;

/** The code a verifier throws, or 'ok'. */
async function verdict(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (err instanceof LicenceError || err instanceof LicenceRequestError) return err.code;
    throw err;
  }
}

describe('licences for on-device processing (real server, PostgreSQL)', () => {
  let t: TestDb;
  let s: TestServer;
  let a: Tenant;
  let pk: { id: string; secret: string };
  let keys: JWK[];
  // The server's clock: crosses a licence's expiry without waiting.
  let skewMs = 0;
  const session = (over: Partial<Parameters<typeof startLicenceSession>[0]> = {}) => startLicenceSession({ baseUrl: s.url, publishableKey: pk.secret, origin: SITE, ...over });
  const telemetry = (licence: string, events: TelemetryEvent[], origin?: string) =>
    sendTelemetry({ baseUrl: s.url, licence, events, ...(origin ? { fetch: (u, init) => fetch(u, { ...init, headers: { ...init.headers, origin } }) } : {}) });
  const load = (user: string): TelemetryEvent => ({ type: 'engine_load', session_id: 'sess-0001abcd', platform: 'web', engine_version: '0.1.0', user_id: user });
  const exportOf = (w: number, h: number, media_type = 'image/webp'): TelemetryEvent => ({ type: 'export', session_id: 'sess-0001abcd', media_type, width: w, height: h });

  before(async () => {
    t = await openTestDb('postgres');
    s = await startServer(t.db, { deps: { now: () => Date.now() + skewMs } });
    a = await createTenant(t.db, 'Licensee');
    pk = await mintKey(t.db, a, { kind: 'publishable', name: 'device', scopes: ['licenses:session'], allowedOrigins: [SITE], allowedAppIds: [NATIVE] });
    keys = await fetchLicenceKeys({ baseUrl: s.url });
  });
  after(async () => {
    await s?.close();
    await t?.close();
  });

  test('a publishable key on an allowed origin gets a short-lived RS256 session licence pinned to that origin, which the SDK verifier accepts there', async () => {
    const started = Date.now();
    const got = await session({ keys });
    assert.ok(got.claims);
    assert.equal(got.claims.kind, 'session');
    assert.equal(got.claims.alg, 'RS256');
    assert.deepEqual(got.claims.origins, [SITE]);
    assert.equal(got.claims.app_id, a.appId);
    assert.equal(got.claims.key_id, pk.id);
    assert.equal(got.claims.telemetry, true);
    // Hours, not days; refreshed well before expiry.
    const ttl = got.expiresAt.getTime() - started;
    assert.ok(ttl > 3_600_000 && ttl <= 4 * 3_600_000 + 60_000, `ttl ${ttl}`);
    assert.ok(got.refreshAfter.getTime() < got.expiresAt.getTime() - 1_800_000);
    assert.equal(await verdict(verifyLicence(got.licence, { keys, origin: SITE })), 'ok');
    // The same licence on another page is refused by the device.
    assert.equal(await verdict(verifyLicence(got.licence, { keys, origin: OTHER_SITE })), 'ERR_LICENSE_ORIGIN');
  });

  test('a page on a non-allowed origin gets no session (403 ERR_ORIGIN_NOT_ALLOWED); the allowed origin does', async () => {
    assert.equal(await verdict(session({ origin: OTHER_SITE })), 'ERR_ORIGIN_NOT_ALLOWED');
    assert.equal(await verdict(session({ origin: SITE })), 'ok');
    const raw = await api(s.url, 'POST', '/v1/licenses/session', { key: pk.secret, body: {}, headers: { origin: OTHER_SITE } });
    assert.equal(raw.status, 403);
    assert.equal(raw.body.code, 'ERR_ORIGIN_NOT_ALLOWED');
  });

  test('a native app gets a licence pinned to its allowed app id (Obscura-App-Id); another app id is refused', async () => {
    const native = await startLicenceSession({ baseUrl: s.url, publishableKey: pk.secret, appId: NATIVE, keys });
    assert.deepEqual(native.claims?.app_ids, [NATIVE]);
    assert.deepEqual(native.claims?.origins, []);
    assert.equal(await verdict(verifyLicence(native.licence, { keys, appId: 'com.evil.clone' })), 'ERR_LICENSE_ORIGIN');
    assert.equal(await verdict(startLicenceSession({ baseUrl: s.url, publishableKey: pk.secret, appId: 'com.evil.clone' })), 'ERR_ORIGIN_NOT_ALLOWED');
    // A backend minting for its native app names the pin in the body (a publishable key may not).
    const minted = await api(s.url, 'POST', '/v1/licenses/session', { key: a.key, body: { app_id: NATIVE } });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    assert.deepEqual((await verifyLicence(minted.body.license, { keys, appId: NATIVE })).app_ids, [NATIVE]);
    for (const [key, body, headers] of [[a.key, {}, {}], [pk.secret, { origin: OTHER_SITE }, { origin: SITE }]] as const) {
      const r = await api(s.url, 'POST', '/v1/licenses/session', { key, body, headers });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.code, 'ERR_VALIDATION');
    }
  });

  test('a publishable key without licenses:session is refused (403 ERR_SCOPE_MISSING); a key holding it is not', async () => {
    const uploadOnly = await mintKey(t.db, a, { kind: 'publishable', name: 'uploads', allowedOrigins: [SITE] });
    assert.equal(await verdict(session({ publishableKey: uploadOnly.secret })), 'ERR_SCOPE_MISSING');
    assert.equal(await verdict(session()), 'ok');
  });

  test('a revoked publishable key gets no new session (401 ERR_KEY_REVOKED); its live twin still does', async () => {
    const doomed = await mintKey(t.db, a, { kind: 'publishable', name: 'doomed', scopes: ['licenses:session'], allowedOrigins: [SITE] });
    assert.equal(await verdict(session({ publishableKey: doomed.secret })), 'ok');
    const revoked = await api(s.url, 'DELETE', `/v1/keys/${doomed.id}`, { key: a.key });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    assert.equal(await verdict(session({ publishableKey: doomed.secret })), 'ERR_KEY_REVOKED');
    assert.equal(await verdict(session()), 'ok');
  });

  test('the verifier refuses a licence with one byte of payload or signature changed, or a changed header (ERR_LICENSE_SIGNATURE), and the server refuses it too', async () => {
    const { licence } = await session();
    assert.equal(await verdict(verifyLicence(licence, { keys, origin: SITE })), 'ok');
    for (const part of [0, 1, 2] as const) {
      const bad = flip(licence, part);
      const code = await verdict(verifyLicence(bad, { keys, origin: SITE }));
      assert.ok(code === 'ERR_LICENSE_SIGNATURE' || (part === 0 && code === 'ERR_LICENSE_MALFORMED'), `part ${part}: ${code}`);
      assert.equal(await verdict(telemetry(bad, [load('u1')])), code, `server, part ${part}`);
    }
    assert.equal(await verdict(telemetry(licence, [load('u1')])), 'ok');
  });

  test('a licence signed by another key, or with alg swapped (none, HS256 keyed with the public key, EdDSA on an RSA kid), is refused with ERR_LICENSE_SIGNATURE', async () => {
    const { licence } = await session();
    const claims = decodeClaims(licence);
    const header = decodeHeader(licence);
    const rsaJwk = keys.find((k) => k.kid === header.kid)!;
    const forged = {
      otherKey: await forge(claims, header, 'rsa'),
      none: await forge(claims, { ...header, alg: 'none' }, 'none'),
      hs256: await forge(claims, { ...header, alg: 'HS256' }, 'hmac', Buffer.from(JSON.stringify(rsaJwk))),
      edOnRsa: await forge(claims, { ...header, alg: 'EdDSA' }, 'ed25519'),
      unknownKid: await forge(claims, { ...header, kid: 'not-a-published-kid' }, 'rsa'),
    };
    for (const [name, jws] of Object.entries(forged)) {
      assert.equal(await verdict(verifyLicence(jws, { keys, origin: SITE })), 'ERR_LICENSE_SIGNATURE', `device: ${name}`);
      assert.equal(await verdict(telemetry(jws, [load('u1')])), 'ERR_LICENSE_SIGNATURE', `server: ${name}`);
    }
    // A verifier given an attacker's key next to ours still pins by kid and alg: the forgery under our kid fails.
    const attacker = generateKeyPairSync('ed25519');
    const attackerJwk = { ...(await exportJWK(attacker.publicKey)), kid: 'attacker', alg: 'EdDSA' };
    assert.equal(await verdict(verifyLicence(forged.otherKey, { keys: [...keys, attackerJwk], origin: SITE })), 'ERR_LICENSE_SIGNATURE');
    assert.equal(await verdict(verifyLicence(licence, { keys: [...keys, attackerJwk], origin: SITE })), 'ok');
  });

  test('an expired session licence is refused by the device and the server (ERR_LICENSE_EXPIRED); a fresh one is accepted', async () => {
    const { licence, expiresAt } = await session();
    const late = new Date(expiresAt.getTime() + 120_000);
    assert.equal(await verdict(verifyLicence(licence, { keys, origin: SITE, now: late })), 'ERR_LICENSE_EXPIRED');
    skewMs = late.getTime() - Date.now();
    try {
      assert.equal(await verdict(telemetry(licence, [load('u1')])), 'ERR_LICENSE_EXPIRED');
    } finally {
      skewMs = 0;
    }
    assert.equal(await verdict(telemetry(licence, [load('u1')])), 'ok');
  });

  test('telemetry from a page on another origin than the licence names is refused (403 ERR_LICENSE_ORIGIN); from its own origin it is counted', async () => {
    const { licence } = await session();
    assert.equal(await verdict(telemetry(licence, [load('u1')], OTHER_SITE)), 'ERR_LICENSE_ORIGIN');
    assert.equal(await verdict(telemetry(licence, [load('u1')], SITE)), 'ok');
  });

  test('telemetry accepts counts only: a file name, EXIF, pixels or any unknown field refuses the whole batch with ERR_VALIDATION and counts nothing', async () => {
    const { licence } = await session();
    const before = await usage();
    const smuggled: Array<Record<string, unknown>> = [
      { ...exportOf(640, 480), file_name: 'holiday.jpg' },
      { ...exportOf(640, 480), exif: { GPSLatitude: 48.1 } },
      { ...exportOf(640, 480), pixels: 'iVBORw0KGgo=' },
      { ...load('u1'), url: 'https://example.com/photo.jpg' },
      { type: 'upload', session_id: 'sess-0001abcd' },
      { ...exportOf(640, 480), media_type: 'text/html' },
      { ...exportOf(640, 480), fps: 30, duration_ms: 1000 },
    ];
    for (const bad of smuggled) {
      const res = await api(s.url, 'POST', '/v1/telemetry', { key: licence, body: { events: [exportOf(100, 100), bad] } });
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.equal(res.body.code, 'ERR_VALIDATION');
    }
    const tooMany = await api(s.url, 'POST', '/v1/telemetry', { key: licence, body: { events: Array.from({ length: 101 }, () => exportOf(1, 1)) } });
    assert.equal(tooMany.status, 400);
    const after = await usage();
    assert.equal(after.exports.total, before.exports.total, 'nothing counted from refused batches');
    assert.equal((await api(s.url, 'POST', '/v1/telemetry', { key: licence, body: { events: [exportOf(100, 100)] } })).status, 202);
  });

  /** This app's usage this month, as GET /v1/usage reports it. */
  async function usage(): Promise<any> {
    const r = await api(s.url, 'GET', `/v1/usage?app_id=${a.appId}`, { key: a.key });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.apps[0];
  }

  test('telemetry counts reach GET /v1/usage: exports by type and resolution, pixels, video time, engine loads and monthly active end users as keyed hashes', async () => {
    const before = await usage();
    const { licence } = await session();
    const events: TelemetryEvent[] = [
      load('alice@example.com'),
      load('alice@example.com'),
      load('bob@example.com'),
      exportOf(1920, 1080),
      exportOf(400, 300),
      exportOf(3840, 2160, 'image/jpeg'),
      { type: 'export', session_id: 'sess-0001abcd', media_type: 'video/mp4', width: 1280, height: 720, fps: 30, duration_ms: 2000 },
    ];
    const sent = await telemetry(licence, events, SITE);
    assert.equal(sent.accepted, events.length);
    const after = await usage();
    assert.equal(after.exports.total - before.exports.total, 4);
    assert.equal((after.exports.by_type['image/webp'] ?? 0) - (before.exports.by_type['image/webp'] ?? 0), 2);
    // By the output's shorter side (the meter's buckets, shared with server-side exports).
    const res = (bucket: string, u: any) => u.exports.by_resolution[bucket] ?? 0;
    assert.equal(res('1080p', after) - res('1080p', before), 1);
    assert.equal(res('480p', after) - res('480p', before), 1);
    assert.equal(res('2160p', after) - res('2160p', before), 1);
    assert.equal(res('720p', after) - res('720p', before), 1);
    assert.equal((after.pixels.by_type['video/mp4'] ?? 0) - (before.pixels.by_type['video/mp4'] ?? 0), 1280 * 720 * 60);
    assert.equal(after.video_seconds.by_type['video/mp4'] - (before.video_seconds.by_type['video/mp4'] ?? 0), 2);
    assert.equal(after.device.loads.by_platform.web - (before.device.loads.by_platform.web ?? 0), 3);
    assert.equal(after.device.exports.total - before.device.exports.total, 4);
    assert.ok(after.monthly_active_end_users - before.monthly_active_end_users === 2, 'two distinct end users');
    // Counted under the publishable key that started the session.
    assert.ok(after.keys.some((k: any) => k.key_id === pk.id && k.device.exports.total >= 4));
    // Stored as keyed hashes only: the raw id is nowhere in the table.
    const rows = await t.db.system.selectFrom('usage_end_users').select('user_hash').where('app_id', '=', a.appId).execute();
    assert.ok(rows.every((r) => /^[0-9a-f]{64}$/.test(r.user_hash) && !r.user_hash.includes('alice')));
  });

  test('an app whose monthly export quota is used up gets no new on-device session (429 ERR_QUOTA_EXCEEDED); an app with room does', async () => {
    const b = await createTenant(t.db, 'Quota');
    const bpk = await mintKey(t.db, b, { kind: 'publishable', name: 'device', scopes: ['licenses:session'], allowedOrigins: [SITE] });
    const set = await api(s.url, 'PATCH', `/v1/apps/${b.appId}`, { key: b.key, body: { settings: { quota_exports_per_month: 2 } } });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    const first = await session({ publishableKey: bpk.secret });
    await telemetry(first.licence, [exportOf(10, 10), exportOf(10, 10)]);
    // The quota guard re-reads totals after the key-cache TTL; poll with a bound rather than sleep.
    let code = 'ok';
    for (let i = 0; i < 40 && code === 'ok'; i++) {
      code = await verdict(session({ publishableKey: bpk.secret }));
      if (code === 'ok') await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(code, 'ERR_QUOTA_EXCEEDED');
    assert.equal(await verdict(session()), 'ok');
  });

  test('POST /v1/licenses issues an offline EdDSA licence file a device verifies with its shipped key; with no_telemetry its telemetry is refused (403 ERR_LICENSE_FEATURE), its telemetry-on twin is counted', async () => {
    const expires_at = new Date(Date.now() + 30 * 86_400_000).toISOString();
    const quiet = await api(s.url, 'POST', '/v1/licenses', { key: a.key, body: { licensee: 'Example Corp', domains: ['photos.example.com'], app_ids: [NATIVE], features: ['image', 'no_telemetry'], expires_at, alg: 'EdDSA' } });
    assert.equal(quiet.status, 201, JSON.stringify(quiet.body));
    assert.match(quiet.body.license, /^-----BEGIN OBSCURA LICENSE-----\n[A-Za-z0-9_.\n-]+\n-----END OBSCURA LICENSE-----\n$/);
    assert.equal(quiet.body.alg, 'EdDSA');
    // The device ships the public keys; no network is involved in verifying.
    const shipped = (await fetchLicenceKeys({ baseUrl: s.url })).filter((k) => k.alg === 'EdDSA');
    const claims = await verifyLicence(quiet.body.license, { keys: shipped, origin: SITE });
    assert.equal(claims.kind, 'offline');
    assert.equal(claims.telemetry, false);
    assert.equal(await verdict(verifyLicence(quiet.body.license, { keys: shipped, appId: NATIVE })), 'ok');
    assert.equal(await verdict(verifyLicence(quiet.body.license, { keys: shipped, origin: OTHER_SITE })), 'ERR_LICENSE_ORIGIN');
    assert.equal(await verdict(verifyLicence(quiet.body.license, { keys: shipped, origin: SITE, features: ['video'] })), 'ERR_LICENSE_FEATURE');
    assert.equal(await verdict(telemetry(quiet.body.license, [exportOf(10, 10)])), 'ERR_LICENSE_FEATURE');
    const loud = await api(s.url, 'POST', '/v1/licenses', { key: a.key, body: { licensee: 'Example Corp', domains: ['photos.example.com'], expires_at } });
    assert.equal(loud.status, 201);
    assert.equal(loud.body.alg, 'RS256');
    assert.equal((await telemetry(loud.body.license, [exportOf(10, 10)])).accepted, 1);
    // A publishable key cannot mint licence files; an unknown feature or a past expiry is refused.
    const fromPage = await api(s.url, 'POST', '/v1/licenses', { key: pk.secret, headers: { origin: SITE }, body: { licensee: 'x', domains: ['photos.example.com'], expires_at } });
    assert.equal(fromPage.status, 403);
    assert.equal(fromPage.body.code, 'ERR_SCOPE_MISSING');
    for (const body of [{ features: ['everything'] }, { expires_at: new Date(Date.now() - 1000).toISOString() }, { domains: ['*.example.com'] }, { domains: [] }]) {
      const r = await api(s.url, 'POST', '/v1/licenses', { key: a.key, body: { licensee: 'x', domains: ['photos.example.com'], expires_at, ...body } });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.code, 'ERR_VALIDATION');
    }
  });

  test('the licence signing keys are stored only wrapped by the master key', async () => {
    const rows = await t.db.system.selectFrom('license_signing_keys').selectAll().execute();
    assert.ok(rows.length >= 2, 'an RS256 and an EdDSA key');
    for (const r of rows) {
      const pub = typeof r.public_jwk === 'string' ? JSON.parse(r.public_jwk) : r.public_jwk;
      assert.equal('d' in pub, false, 'no private member in the public JWK');
      assert.doesNotMatch(r.private_wrapped, /"d"|"kty"/);
      assert.equal(r.master_key_id, masterKeysFor(t.db).currentId);
    }
  });

  test('`obscura licenses issue` writes an offline licence file; `obscura licenses verify` exits 0 on it and 1 on a changed byte or an expired licence', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'obscura-licences-'));
    const env = { DATABASE_URL: t.url!, OBSCURA_MASTER_KEY: masterKeysFor(t.db).current.toString('hex'), OBSCURA_DATA_DIR: dir };
    // The keys a device ships with (the CLI's public-key prints the same set: the rotation test checks it).
    const shipped = { keys: await fetchLicenceKeys({ baseUrl: s.url }) };
    const keysFile = join(dir, 'keys.json');
    writeFileSync(keysFile, JSON.stringify(shipped));
    const file = join(dir, 'example.lic');
    const issued = await runCli(['licenses', 'issue', '--licensee', 'Example Corp', '--domain', 'photos.example.com', '--app-id', NATIVE, '--features', 'image,video', '--expires', '2031-12-31', '--app', a.appId, '-o', file], env);
    assert.equal(issued.code, 0, issued.stderr);
    const text = readFileSync(file, 'utf8');
    const claims = await verifyLicence(text, { keys: shipped.keys, origin: SITE });
    assert.equal(claims.exp, Date.parse('2031-12-31T23:59:59Z') / 1000);
    assert.deepEqual(claims.features, ['image', 'video']);
    // Defective copies: one byte of the signed payload; an expired licence (issued while the server's clock was two days behind).
    const tampered = join(dir, 'tampered.lic');
    writeFileSync(tampered, armourLicence(flip(dearmourLicence(text), 1)));
    skewMs = -2 * 86_400_000;
    let expiredText: string;
    try {
      const r = await api(s.url, 'POST', '/v1/licenses', { key: a.key, body: { licensee: 'Lapsed', domains: ['photos.example.com'], expires_at: new Date(Date.now() - 86_400_000).toISOString() } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      expiredText = r.body.license;
    } finally {
      skewMs = 0;
    }
    const expired = join(dir, 'expired.lic');
    writeFileSync(expired, expiredText);
    // Lean on purpose (each process costs seconds on a busy machine): the verifier's other refusals are
    // the SDK's, tested above; here the command's exit codes, offline (--keys) and with the deployment's keys.
    const [ok, changed, lapsed] = await Promise.all([
      runCli(['licenses', 'verify', file, '--origin', SITE], env),
      runCli(['licenses', 'verify', tampered, '--keys', keysFile], env),
      runCli(['licenses', 'verify', expired, '--keys', keysFile, '--json'], env),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /valid offline licence for "Example Corp"/);
    for (const [r, code] of [[changed, 'ERR_LICENSE_SIGNATURE'], [lapsed, 'ERR_LICENSE_EXPIRED']] as const) {
      assert.equal(r.code, 1, `${code}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, new RegExp(code));
    }
  });

  test('rotating the licence key: new licences are signed by the new key, old licences keep verifying until the old key is removed, and the signing key cannot be removed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'obscura-licences-'));
    const env = { DATABASE_URL: t.url!, OBSCURA_MASTER_KEY: masterKeysFor(t.db).current.toString('hex'), OBSCURA_DATA_DIR: dir };
    const old = await session();
    const oldKid = decodeHeader(old.licence).kid as string;
    const rotated = await runCli(['licenses', 'rotate-key', '--json'], env);
    assert.equal(rotated.code, 0, rotated.stderr);
    const { kid: newKid, previousKid } = JSON.parse(rotated.stdout);
    assert.equal(previousKid, oldKid);
    const fresh = await session();
    assert.equal(decodeHeader(fresh.licence).kid, newKid);
    const published = (await fetchLicenceKeys({ baseUrl: s.url })).map((k) => k.kid);
    assert.ok(published.includes(oldKid) && published.includes(newKid), 'both keys published');
    assert.equal(await verdict(telemetry(old.licence, [load('u1')])), 'ok');
    const [refused, pub] = await Promise.all([runCli(['licenses', 'remove-key', newKid], env), runCli(['licenses', 'public-key', '--alg', 'RS256'], env)]);
    assert.equal(pub.code, 0, pub.stderr);
    assert.deepEqual(JSON.parse(pub.stdout).keys.map((k: JWK) => k.kid).sort(), [newKid, oldKid].sort(), 'public-key prints what a device ships: both RS256 keys');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /ERR_CONFLICT/);
    const removed = await runCli(['licenses', 'remove-key', oldKid], env);
    assert.equal(removed.code, 0, removed.stderr);
    // Every node stops trusting a removed key within the key-cache TTL (2 s): poll with a bound.
    let code = 'ok';
    for (let i = 0; i < 40 && code === 'ok'; i++) {
      code = await verdict(telemetry(old.licence, [load('u1')]));
      if (code === 'ok') await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(code, 'ERR_LICENSE_SIGNATURE');
    assert.equal(await verdict(telemetry(fresh.licence, [load('u1')])), 'ok');
  });

  // Last: it moves the keys to a master key the CLI of the tests above does not have.
  test('`keys rotate-master` re-wraps the licence signing keys: afterwards only the new master key unwraps them', async () => {
    const old = masterKeysFor(t.db);
    const current = randomBytes(32);
    const next: MasterKeys = { ...old, current, currentId: masterKeyId(current), all: new Map([[masterKeyId(current), current], ...old.all]) };
    const rows = await t.db.system.selectFrom('license_signing_keys').select(['kid']).execute();
    const moved = await rewrapAll(t.db, next, WRAPPED_COLUMNS);
    assert.equal(moved.byTable['license_signing_keys.private_wrapped'], rows.length);
    const onlyNew = new Map([[masterKeyId(current), current]]);
    for (const r of await t.db.system.selectFrom('license_signing_keys').select(['kid', 'private_wrapped', 'master_key_id']).execute()) {
      assert.equal(r.master_key_id, masterKeyId(current));
      const jwk = JSON.parse(unwrapKey(onlyNew, r.private_wrapped, licenceKeyContext(r.kid)).toString('utf8'));
      assert.ok(typeof jwk.d === 'string', 'the private key comes back under the new master key');
      assert.throws(() => unwrapKey(old.all, r.private_wrapped, licenceKeyContext(r.kid)));
    }
  });
});

describe('docs/licensing.md test vectors', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'licensing.md'), 'utf8');
  /** The fenced block after `<!-- vector: NAME -->`. */
  const vector = (name: string): string => {
    const m = new RegExp(`<!-- vector: ${name.replace('.', '\\.')} -->\\n\`\`\`[a-z]*\\n([\\s\\S]*?)\`\`\``).exec(doc);
    assert.ok(m, `vector ${name} is in the document`);
    return m[1]!;
  };
  const inside = new Date('2027-01-01T00:00:00Z');

  for (const name of ['eddsa', 'rs256']) {
    test(`the ${name} vector verifies as documented, and re-signing its header and payload reproduces the file byte for byte`, async () => {
      const pub = JSON.parse(vector(`${name}.public`)) as JWK;
      const other = JSON.parse(vector(`${name === 'eddsa' ? 'rs256' : 'eddsa'}.public`)) as JWK;
      const file = vector(`${name}.file`);
      const claims = await verifyLicence(file, { keys: [pub], origin: SITE, appId: NATIVE, now: inside });
      assert.equal(claims.licensee, 'Example Corp');
      assert.equal(await verdict(verifyLicence(file, { keys: [pub], origin: OTHER_SITE, now: inside })), 'ERR_LICENSE_ORIGIN');
      assert.equal(await verdict(verifyLicence(file, { keys: [pub], now: new Date('2036-12-01T00:00:00Z') })), 'ERR_LICENSE_EXPIRED');
      assert.equal(await verdict(verifyLicence(file, { keys: [other], now: inside })), 'ERR_LICENSE_SIGNATURE');
      const jws = dearmourLicence(file);
      assert.equal(await verdict(verifyLicence(flip(jws, 1), { keys: [pub], now: inside })), 'ERR_LICENSE_SIGNATURE');
      const [, payload, signature] = jws.split('.');
      const swapped = `${base64url.encode(JSON.stringify({ ...JSON.parse(vector(`${name}.header`)), alg: name === 'eddsa' ? 'RS256' : 'EdDSA' }))}.${payload}.${signature}`;
      assert.equal(await verdict(verifyLicence(swapped, { keys: [pub], now: inside })), 'ERR_LICENSE_SIGNATURE');
      // Deterministic signatures (PKCS#1 v1.5, Ed25519): the documented bytes are reproducible.
      const header = vector(`${name}.header`).trim();
      const body = vector(`${name}.payload`).trim();
      assert.equal(jws.split('.')[0], base64url.encode(header));
      assert.equal(payload, base64url.encode(body));
      const key = createPrivateKey({ key: JSON.parse(vector(`${name}.private`)), format: 'jwk' });
      const resigned = await new CompactSign(new TextEncoder().encode(body)).setProtectedHeader(JSON.parse(header)).sign(key);
      assert.equal(armourLicence(resigned), file);
    });
  }
});
