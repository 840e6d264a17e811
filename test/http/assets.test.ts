import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { DB_KINDS, openTestDb, superQuery, type TestDb } from '../support/db.js';
import { startServer, createTenant, mintKey, api, masterKeysFor, type TestServer, type Tenant } from '../support/server.js';
import { sweepAssets } from '../../src/assets/assets.js';
import { shredOrgKeys, rewrapAll } from '../../src/crypto/keyring.js';
import { WRAPPED_COLUMNS } from '../../src/main.js';
import { masterKeyId } from '../../src/crypto/keywrap.js';
import type { FsBlobStore } from '../../src/assets/stores/fs.js';
import { markedPng } from '../support/media.js';

function walkFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walkFiles(p));
    else out.push(p);
  }
  return out;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function upload(s: TestServer, key: string, body: Buffer, headers: Record<string, string> = {}, query = '') {
  const res = await fetch(`${s.url}/v1/assets${query}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream', ...headers }, body: new Uint8Array(body) });
  return { status: res.status, body: (await res.json()) as any, headers: res.headers };
}

async function signedUrl(s: TestServer, key: string, id: string, body: Record<string, unknown> = {}): Promise<string> {
  const r = await api(s.url, 'POST', `/v1/assets/${id}/url`, { key, body });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.url;
}

for (const kind of DB_KINDS) {
  describe(`assets: encrypted storage and signed downloads (${kind})`, () => {
    let t: TestDb;
    let s: TestServer;
    let a: Tenant;
    let b: Tenant;
    const marker = `OBSCURA-PLAINTEXT-MARKER-${randomBytes(8).toString('hex')}`;
    let png: Buffer;
    let assetId: string;

    before(async () => {
      t = await openTestDb(kind);
      s = await startServer(t.db, { env: { OBSCURA_MAX_SIMPLE_UPLOAD_BYTES: String(2 * 1024 * 1024) } });
      a = await createTenant(t.db, 'A');
      b = await createTenant(t.db, 'B');
      png = await markedPng(marker);
    });
    after(async () => {
      await s.close();
      await t.close();
    });

    test('a one-request upload is sniffed from its bytes, hashed and measured', async () => {
      // Declared as JPEG and named .jpg: it is a PNG, and is recorded as one.
      const r = await upload(s, a.key, png, { 'content-type': 'image/jpeg' }, '?filename=holiday.jpg');
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.equal(r.body.content_type, 'image/png');
      assert.equal(r.body.sha256, sha(png));
      assert.equal(r.body.size, png.length);
      assert.equal(r.body.width, 300);
      assert.equal(r.body.height, 225);
      assert.match(r.body.id, /^ast_[0-9A-Za-z]{22}$/);
      assetId = r.body.id;
    });

    test('no plaintext reaches the blob store: a scan for the marker finds nothing', async () => {
      const root = (s.store as FsBlobStore).root;
      const files = walkFiles(root);
      assert.ok(files.length >= 1);
      for (const f of files) assert.ok(!readFileSync(f).includes(marker), `plaintext marker found in ${f}`);
      // ...while the scan does find the marker in the plaintext itself (the scan works).
      assert.ok(png.includes(marker));
    });

    test('a text file is refused with 415 and nothing is stored', async () => {
      const before = await superQuery(t, 'select count(*)::int as n from assets');
      const r = await upload(s, a.key, Buffer.from('just some text, not an image\n'.repeat(50)), { 'content-type': 'image/jpeg' }, '?filename=x.jpg');
      assert.equal(r.status, 415);
      assert.equal(r.body.code, 'ERR_UNSUPPORTED_MEDIA_TYPE');
      assert.deepEqual(await superQuery(t, 'select count(*)::int as n from assets'), before);
    });

    test('a file over the one-request limit is refused with 413 and nothing is stored', async () => {
      const before = await superQuery(t, 'select count(*)::int as n from assets');
      const big = Buffer.concat([png, randomBytes(3 * 1024 * 1024)]);
      const r = await upload(s, a.key, big);
      assert.equal(r.status, 413);
      assert.equal(r.body.code, 'ERR_PAYLOAD_TOO_LARGE');
      assert.deepEqual(await superQuery(t, 'select count(*)::int as n from assets'), before);
    });

    test('a type outside the app allowlist is refused with 415', async () => {
      const other = await mintKey(t.db, a, { kind: 'secret' });
      await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { allowed_types: ['image/jpeg'] } } });
      try {
        const r = await upload(s, other.secret, png);
        assert.equal(r.status, 415);
        const jpeg = await sharp(png).jpeg().toBuffer();
        assert.equal((await upload(s, other.secret, jpeg)).status, 201);
      } finally {
        await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { allowed_types: [] } } });
      }
    });

    test('a signed URL streams the decrypted bytes with the protective headers', async () => {
      const url = await signedUrl(s, a.key, assetId);
      const res = await fetch(url);
      const body = Buffer.from(await res.arrayBuffer());
      assert.equal(res.status, 200);
      assert.equal(sha(body), sha(png));
      assert.equal(res.headers.get('content-type'), 'image/png');
      assert.equal(res.headers.get('x-robots-tag'), 'noindex, nofollow');
      assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
      assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.match(res.headers.get('content-disposition') ?? '', /^inline; filename="holiday\.jpg"/);
      assert.equal(res.headers.get('etag'), `"${sha(png)}"`);
      const maxAge = Number(/max-age=(\d+)/.exec(res.headers.get('cache-control') ?? '')?.[1]);
      const exp = Number(new URL(url).searchParams.get('exp'));
      assert.ok(maxAge > 0 && maxAge <= exp - Math.floor(Date.now() / 1000) + 1, `max-age ${maxAge}`);
      const again = await fetch(url, { headers: { 'if-none-match': `"${sha(png)}"` } });
      assert.equal(again.status, 304);
    });

    test('Range requests across segment boundaries return exactly those bytes', async () => {
      const big = await markedPng(marker, 700); // ~1.1 MB: many 64 KiB segments
      const up = await upload(s, a.key, big);
      assert.equal(up.status, 201);
      const url = await signedUrl(s, a.key, up.body.id);
      for (const [start, end] of [
        [0, 0],
        [65530, 65545],
        [65536, 65536 * 2 + 10],
        [big.length - 100, big.length - 1],
      ] as const) {
        const res = await fetch(url, { headers: { range: `bytes=${start}-${end}` } });
        assert.equal(res.status, 206, `${start}-${end}`);
        assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/${big.length}`);
        assert.ok(Buffer.from(await res.arrayBuffer()).equals(big.subarray(start, end + 1)), `${start}-${end}`);
      }
      const suffix = await fetch(url, { headers: { range: 'bytes=-10' } });
      assert.equal(suffix.status, 206);
      assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(big.subarray(big.length - 10)));
      const beyond = await fetch(url, { headers: { range: `bytes=${big.length}-` } });
      assert.equal(beyond.status, 416);
      assert.equal(((await beyond.json()) as { code: string }).code, 'ERR_RANGE_NOT_SATISFIABLE');
    });

    test('a tampered signed URL is 403, an expired one 410, and a genuine one works', async () => {
      // The genuine and tampered checks use a URL that cannot expire mid-test (a 1 s URL signed near
      // a second boundary expired before its first fetch under CI load); expiry has its own URL.
      const url = new URL(await signedUrl(s, a.key, assetId, { ttl_seconds: 600 }));
      assert.equal((await fetch(url)).status, 200);
      const short = new URL(await signedUrl(s, a.key, assetId, { ttl_seconds: 1 }));
      const sig = url.searchParams.get('sig')!;
      const tampered = new URL(url);
      tampered.searchParams.set('sig', (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1));
      assert.equal((await fetch(tampered)).status, 403);
      const longer = new URL(url);
      longer.searchParams.set('exp', String(Number(url.searchParams.get('exp')) + 3600));
      assert.equal((await fetch(longer)).status, 403);
      const otherAsset = new URL(url.toString().replace(assetId, 'ast_' + 'A'.repeat(22)));
      assert.equal((await fetch(otherAsset)).status, 403);
      const asAttachment = new URL(url);
      asAttachment.searchParams.set('dl', '1');
      assert.equal((await fetch(asAttachment)).status, 403);
      await new Promise((r) => setTimeout(r, 2100));
      const expired = await fetch(short);
      assert.equal(expired.status, 410);
      assert.equal(((await expired.json()) as { code: string }).code, 'ERR_URL_EXPIRED');
    });

    test('switching require_authorized_urls on applies at once on this node to a signed URL whose row was cached', async () => {
      const app3 = await api(s.url, 'POST', '/v1/apps', { key: a.key, body: { name: 'switch' } });
      const k = await api(s.url, 'POST', `/v1/apps/${app3.body.id}/keys`, { key: a.key, body: { kind: 'secret' } });
      const up = await upload(s, k.body.secret, png);
      const url = await signedUrl(s, k.body.secret, up.body.id);
      assert.equal((await fetch(url)).status, 200);
      assert.equal((await fetch(url)).status, 200, 'answered from the cached row');
      const patched = await api(s.url, 'PATCH', `/v1/apps/${app3.body.id}`, { key: a.key, body: { settings: { require_authorized_urls: true } } });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      assert.equal((await fetch(url)).status, 401, 'the link alone no longer works, without waiting for the cache');
      assert.equal((await fetch(url, { headers: { authorization: `Bearer ${a.key}` } })).status, 200);
    });

    test('an app can require authorized URLs: the link also needs a bearer credential of the org', async () => {
      const app2 = await api(s.url, 'POST', '/v1/apps', { key: a.key, body: { name: 'private', settings: { require_authorized_urls: true } } });
      const k = await api(s.url, 'POST', `/v1/apps/${app2.body.id}/keys`, { key: a.key, body: { kind: 'secret' } });
      const up = await upload(s, k.body.secret, png);
      const url = await signedUrl(s, k.body.secret, up.body.id);
      const anonymous = await fetch(url);
      assert.equal(anonymous.status, 401);
      const foreign = await fetch(url, { headers: { authorization: `Bearer ${b.key}` } });
      assert.equal(foreign.status, 404);
      const own = await fetch(url, { headers: { authorization: `Bearer ${a.key}` } });
      assert.equal(own.status, 200);
      assert.equal(sha(Buffer.from(await own.arrayBuffer())), sha(png));
    });

    test("org B gets 404 on every asset endpoint of org A's asset, and org A succeeds", async () => {
      const rows = [
        ['GET', `/v1/assets/${assetId}`, undefined],
        ['POST', `/v1/assets/${assetId}/url`, {}],
        ['DELETE', `/v1/assets/${assetId}`, undefined],
      ] as const;
      for (const [method, path, body] of rows) {
        const r = await api(s.url, method, path, { key: b.key, body });
        assert.equal(r.status, 404, `${method} ${path}`);
        assert.equal(r.body.code, 'ERR_NOT_FOUND');
      }
      assert.equal((await api(s.url, 'GET', `/v1/assets/${assetId}`, { key: a.key })).status, 200);
      assert.equal((await api(s.url, 'POST', `/v1/assets/${assetId}/url`, { key: a.key, body: {} })).status, 201);
    });

    test('a corrupted ciphertext on disk gives a clear integrity error, audited, never garbage bytes', async () => {
      const up = await upload(s, a.key, png);
      const url = await signedUrl(s, a.key, up.body.id);
      const row = (await superQuery(t, 'select blob_key from assets where id = $1', [up.body.id]))[0]!;
      const file = join((s.store as FsBlobStore).root, String(row.blob_key));
      const bytes = readFileSync(file);
      bytes[bytes.length - 40]! ^= 0x01;
      writeFileSync(file, bytes);
      const res = await fetch(url);
      if (res.status === 200) {
        // Headers may already be out for a later segment: then the transfer must break, not complete.
        await assert.rejects(res.arrayBuffer());
      } else {
        assert.equal(res.status, 500);
        assert.equal(((await res.json()) as { code: string }).code, 'ERR_INTEGRITY');
      }
      const audit = await superQuery(t, "select count(*)::int as n from audit_log where action = 'asset.integrity_failure' and target->>'asset' = $1", [up.body.id]);
      assert.equal(audit[0]!.n, 1);
    });

    test('deleting an asset removes its blob and record (audited); its signed URL then 404s at once, though its row was cached', async () => {
      const up = await upload(s, a.key, png);
      const url = await signedUrl(s, a.key, up.body.id);
      assert.equal((await fetch(url)).status, 200);
      assert.equal((await fetch(url)).status, 200, 'the second download is answered from the cached row');
      const row = (await superQuery(t, 'select blob_key from assets where id = $1', [up.body.id]))[0]!;
      assert.ok(await s.store.head(String(row.blob_key)));
      const del = await api(s.url, 'DELETE', `/v1/assets/${up.body.id}`, { key: a.key });
      assert.equal(del.status, 204);
      assert.equal(await s.store.head(String(row.blob_key)), null);
      assert.equal((await superQuery(t, 'select count(*)::int as n from assets where id = $1', [up.body.id]))[0]!.n, 0);
      const gone = await fetch(url);
      assert.equal(gone.status, 404);
      assert.equal(((await gone.json()) as { code: string }).code, 'ERR_NOT_FOUND');
      assert.equal((await api(s.url, 'GET', `/v1/assets/${up.body.id}`, { key: a.key })).status, 404);
      const audit = await superQuery(t, "select count(*)::int as n from audit_log where action = 'asset.delete' and target->>'asset' = $1", [up.body.id]);
      assert.equal(audit[0]!.n, 1);
    });

    test('retention: an asset past its app policy is swept with its blob', async () => {
      const app3 = await api(s.url, 'POST', '/v1/apps', { key: a.key, body: { name: 'short-lived', settings: { retention_seconds: 60 } } });
      const k = await api(s.url, 'POST', `/v1/apps/${app3.body.id}/keys`, { key: a.key, body: { kind: 'secret' } });
      const up = await upload(s, k.body.secret, png);
      assert.ok(up.body.expires_at);
      const keep = await upload(s, a.key, png);
      const deps = { db: t.db, store: s.store, keyring: s.keyring };
      assert.equal(await sweepAssets(deps), 0, 'nothing expired yet');
      const removed = await sweepAssets({ ...deps, now: () => Date.now() + 61_000 });
      assert.ok(removed >= 1);
      assert.equal((await api(s.url, 'GET', `/v1/assets/${up.body.id}`, { key: a.key })).status, 404);
      assert.equal((await api(s.url, 'GET', `/v1/assets/${keep.body.id}`, { key: a.key })).status, 200);
    });

    test('presigned local upload: single use, bound to size and type', async () => {
      const jpeg = await sharp(png).jpeg().toBuffer();
      const intent = await api(s.url, 'POST', '/v1/assets/upload-url', { key: a.key, body: { content_type: 'image/jpeg', content_length: jpeg.length, filename: 'direct.jpg' } });
      assert.equal(intent.status, 201, JSON.stringify(intent.body));
      assert.equal(intent.body.complete_url, null);
      const wrongSize = await fetch(intent.body.url, { method: 'PUT', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(jpeg.subarray(0, 100)) });
      assert.equal(wrongSize.status, 400);
      const wrongType = await fetch(intent.body.url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(jpeg) });
      assert.equal(wrongType.status, 415);
      const tampered = await fetch(intent.body.url.replace(/sig=(.)/, (_m: string, c: string) => `sig=${c === 'A' ? 'B' : 'A'}`), { method: 'PUT', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(jpeg) });
      assert.equal(tampered.status, 403);
      const ok = await fetch(intent.body.url, { method: 'PUT', headers: intent.body.headers, body: new Uint8Array(jpeg) });
      const asset = (await ok.json()) as { sha256: string; content_type: string };
      assert.equal(ok.status, 201);
      assert.equal(asset.sha256, sha(jpeg));
      assert.equal(asset.content_type, 'image/jpeg');
      const replay = await fetch(intent.body.url, { method: 'PUT', headers: intent.body.headers, body: new Uint8Array(jpeg) });
      assert.equal(replay.status, 409);
      // Declared JPEG but the bytes are a PNG: refused.
      const liar = await api(s.url, 'POST', '/v1/assets/upload-url', { key: a.key, body: { content_type: 'image/jpeg', content_length: png.length } });
      const lie = await fetch(liar.body.url, { method: 'PUT', headers: liar.body.headers, body: new Uint8Array(png) });
      assert.equal(lie.status, 415);
    });

    test('crypto-shredding: deleting the org key makes its blobs unreadable on a running server within the key-cache bound (no restart, no forget)', async () => {
      const c = await createTenant(t.db, 'C');
      const up = await upload(s, c.key, png);
      const url = await signedUrl(s, c.key, up.body.id);
      assert.equal((await fetch(url)).status, 200, 'the unwrapped key is now cached');
      // The shred step of org erasure (src/erasure/erasure.ts), alone.
      assert.ok((await t.db.withSystem((trx) => shredOrgKeys(trx, c.orgId))) >= 1);
      // The cache holds an unwrapped key for at most OBSCURA_KEY_CACHE_TTL_MS (2 s) before re-reading its row.
      await new Promise((r) => setTimeout(r, 2100));
      const res = await fetch(url);
      assert.equal(res.status, 500);
      assert.equal(((await res.json()) as { code: string }).code, 'ERR_INTEGRITY');
      // Org A is unaffected.
      assert.equal((await fetch(await signedUrl(s, a.key, assetId))).status, 200);
    });

    test('rotating the master key re-wraps tenant keys without touching blobs', async () => {
      const up = await upload(s, a.key, png);
      const row = (await superQuery(t, 'select blob_key from assets where id = $1', [up.body.id]))[0]!;
      const blobBefore = readFileSync(join((s.store as FsBlobStore).root, String(row.blob_key)));
      const old = masterKeysFor(t.db);
      const fresh = randomBytes(32);
      const next = { current: fresh, currentId: masterKeyId(fresh), all: new Map([[masterKeyId(fresh), fresh], ...old.all]), source: 'env' as const, file: undefined };
      const moved = await rewrapAll(t.db, next, WRAPPED_COLUMNS);
      assert.ok(moved.tenantKeys >= 1);
      const wraps = await superQuery(t, 'select master_key_id from tenant_keys');
      assert.ok(wraps.every((w) => w.master_key_id === next.currentId));
      // Nothing listed as master-wrapped is left under the old key.
      for (const col of WRAPPED_COLUMNS) {
        const exists = await superQuery(t, 'select to_regclass($1)::text as t', [col.table]);
        if (!exists[0]!.t) continue;
        const stale = await superQuery(t, `select count(*)::int as n from ${col.table} where ${col.column} like $1`, [`v1.${old.currentId}.%`]);
        assert.equal(stale[0]!.n, 0, `${col.table}.${col.column}`);
      }
      // And no column anywhere, listed or not, still holds a value wrapped by the old key (a capability
      // that stored a new wrapped secret without declaring its columns fails here).
      const textColumns = await superQuery(t, "select table_name as t, column_name as c from information_schema.columns where table_schema = 'public' and data_type = 'text'");
      for (const { t: table, c: column } of textColumns) {
        const stale = await superQuery(t, `select count(*)::int as n from ${String(table)} where ${String(column)} like $1`, [`v1.${old.currentId}.%`]);
        assert.equal(stale[0]!.n, 0, `${String(table)}.${String(column)} holds a value wrapped by the old master key and is not in WRAPPED_COLUMNS`);
      }
      // A node that only knows the new master key reads everything.
      const onlyNew = { ...next, all: new Map([[next.currentId, fresh]]) };
      const s2 = await startServer(t.db, { deps: { masterKeys: onlyNew, store: s.store } });
      try {
        const url = await signedUrl(s2, a.key, up.body.id);
        const res = await fetch(url);
        assert.equal(res.status, 200);
        assert.equal(sha(Buffer.from(await res.arrayBuffer())), sha(png));
      } finally {
        await s2.close();
      }
      assert.ok(readFileSync(join((s.store as FsBlobStore).root, String(row.blob_key))).equals(blobBefore), 'blob untouched');
    });
  });
}
