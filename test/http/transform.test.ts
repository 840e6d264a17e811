import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import sharp from 'sharp';
import { DB_KINDS, superQuery } from '../support/db.js';
import { quadrants } from '../fixtures/make.js';
import { parseTransformUrl, signTransformPath, transformSigningString } from '../../src/processing/transform.js';
import { api, raw, startHarness, upload, type Harness } from '../jobs/support.js';

const HOUR = 3600;
const nowS = () => Math.floor(Date.now() / 1000);

describe('transform URL grammar', () => {
  test('signs HMAC-SHA256 over "/{operations}/{asset id}?exp=" as documented', () => {
    const secret = Buffer.alloc(32, 7);
    const path = signTransformPath('tfk_AAAAAAAAAAAAAAAAAAAAAA', secret, 'resize:width=400/format:webp', 'ast_BBBBBBBBBBBBBBBBBBBBBB', 1893456000);
    const expected = createHmac('sha256', secret).update('/resize:width=400/format:webp/ast_BBBBBBBBBBBBBBBBBBBBBB?exp=1893456000').digest('base64url');
    assert.equal(path, `/t/tfk_AAAAAAAAAAAAAAAAAAAAAA.${expected}/resize:width=400/format:webp/ast_BBBBBBBBBBBBBBBBBBBBBB?exp=1893456000`);
    const parsed = parseTransformUrl(path);
    assert.equal(parsed.signingString, transformSigningString('resize:width=400/format:webp', 'ast_BBBBBBBBBBBBBBBBBBBBBB', 1893456000));
    assert.equal(parsed.operations, 'resize:width=400/format:webp');
  });

  test('refuses other shapes and extra query parameters (400)', () => {
    const good = signTransformPath('tfk_AAAAAAAAAAAAAAAAAAAAAA', Buffer.alloc(32, 1), 'format:png', 'ast_BBBBBBBBBBBBBBBBBBBBBB', 1893456000);
    for (const bad of [good + '&w=1', good.replace('?exp=', '?e='), good.split('?')[0]!, good.replace('ast_', 'xyz_'), '/t/nope/format:png/ast_BBBBBBBBBBBBBBBBBBBBBB?exp=1']) {
      assert.throws(() => parseTransformUrl(bad), (e: any) => e.code === 'ERR_VALIDATION', bad);
    }
  });
});

for (const kind of DB_KINDS) {
  describe(`signed transform URLs on ${kind}`, () => {
    let h: Harness;
    let assetA: string;
    let assetB: string;
    let keyA: { id: string; secret: Buffer };
    let keyB: { id: string; secret: Buffer };

    async function newKey(key: string, appId: string): Promise<{ id: string; secret: Buffer }> {
      const r = await api(h.srv.url, 'POST', `/v1/apps/${appId}/transform-keys`, { key });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.equal(r.headers.get('cache-control'), 'no-store');
      return { id: r.body.id, secret: Buffer.from(r.body.secret, 'base64url') };
    }
    const url = (k: { id: string; secret: Buffer }, ops: string, asset: string, exp = nowS() + HOUR) => signTransformPath(k.id, k.secret, ops, asset, exp);

    before(async () => {
      h = await startHarness(kind);
      const jpeg = await quadrants(1920, 1080, 'jpeg');
      assetA = await upload(h.srv, h.a.key, jpeg);
      assetB = await upload(h.srv, h.b.key, await quadrants(64, 64, 'png'));
      keyA = await newKey(h.a.key, h.a.appId);
      keyB = await newKey(h.b.key, h.b.appId);
    });
    after(async () => h?.close());

    test('serves the transformed image with CDN cache headers, an ETag and inert-media headers', async () => {
      const exp = nowS() + 2 * HOUR;
      const r = await raw(h.srv.url, 'GET', url(keyA, 'resize:width=400/format:webp,quality=80', assetA, exp));
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(r.headers.get('content-type'), 'image/webp');
      const m = await sharp(r.body).metadata();
      assert.deepEqual([m.format, m.width, m.height], ['webp', 400, 225]);
      const cc = r.headers.get('cache-control') ?? '';
      const maxAge = Number(/max-age=(\d+)/.exec(cc)?.[1]);
      assert.match(cc, /^public, max-age=\d+, immutable$/);
      assert.ok(maxAge > 2 * HOUR - 60 && maxAge <= 2 * HOUR, cc);
      assert.match(r.headers.get('etag') ?? '', /^"[A-Za-z0-9_-]{32}"$/);
      assert.match(r.headers.get('content-security-policy') ?? '', /default-src 'none'/);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
      assert.ok(!/accept/i.test(r.headers.get('vary') ?? ''), 'no Vary: Accept without format:auto');
      const again = await raw(h.srv.url, 'GET', url(keyA, 'resize:width=400/format:webp,quality=80', assetA, exp), { headers: { 'if-none-match': r.headers.get('etag')! } });
      assert.equal(again.status, 304);
      assert.equal(again.body.length, 0);
    });

    test('format:auto negotiates from Accept and sends Vary: Accept', async () => {
      const u = url(keyA, 'resize:width=100/format:auto', assetA);
      const avif = await raw(h.srv.url, 'GET', u, { headers: { accept: 'image/avif,image/webp,*/*' } });
      assert.equal(avif.status, 200);
      assert.equal(avif.headers.get('content-type'), 'image/avif');
      assert.match(avif.headers.get('vary') ?? '', /\bAccept\b/);
      const plain = await raw(h.srv.url, 'GET', u, { headers: { accept: '*/*' } });
      assert.equal(plain.headers.get('content-type'), 'image/jpeg');
      assert.match(plain.headers.get('vary') ?? '', /\bAccept\b/);
      assert.notEqual(avif.headers.get('etag'), plain.headers.get('etag'));
    });

    test('a tampered operation, expiry or key id is 403; a valid but expired URL is 410', async () => {
      const good = url(keyA, 'resize:width=100/format:png', assetA);
      assert.equal((await raw(h.srv.url, 'GET', good)).status, 200);
      const tampered = [
        good.replace('width=100', 'width=101'),
        good.replace(/exp=(\d+)/, (_m, e) => `exp=${Number(e) + 1}`),
        good.replace(keyA.id, keyB.id),
        good.replace(/\.([A-Za-z0-9_-])/, (_m, c) => `.${c === 'A' ? 'B' : 'A'}`),
      ];
      for (const t of tampered) {
        const r = await raw(h.srv.url, 'GET', t);
        assert.equal(r.status, 403, t);
        assert.equal(JSON.parse(r.body.toString()).code, 'ERR_SIGNATURE_INVALID');
        assert.equal(r.headers.get('cache-control'), 'no-store', 'errors are never cached by a CDN');
      }
      const expired = await raw(h.srv.url, 'GET', url(keyA, 'format:png', assetA, nowS() - 5));
      assert.equal(expired.status, 410);
      assert.equal(JSON.parse(expired.body.toString()).code, 'ERR_URL_EXPIRED');
    });

    test('an invalid operation in a validly signed URL is a 400 naming it', async () => {
      const r = await raw(h.srv.url, 'GET', url(keyA, 'resize:width=0', assetA));
      assert.equal(r.status, 400);
      assert.equal(JSON.parse(r.body.toString()).operation, 'resize');
    });

    test('key rotation: old and new keys both verify until the old one is deleted', async () => {
      const second = await newKey(h.a.key, h.a.appId);
      const byOld = url(keyA, 'resize:width=64/format:png', assetA);
      const byNew = url(second, 'resize:width=64/format:png', assetA);
      assert.equal((await raw(h.srv.url, 'GET', byOld)).status, 200);
      assert.equal((await raw(h.srv.url, 'GET', byNew)).status, 200);
      const listed = await api(h.srv.url, 'GET', `/v1/apps/${h.a.appId}/transform-keys`, { key: h.a.key });
      assert.deepEqual(listed.body.data.map((k: any) => k.id).sort(), [keyA.id, second.id].sort());
      assert.ok(!JSON.stringify(listed.body).includes('secret'));
      assert.equal((await api(h.srv.url, 'DELETE', `/v1/apps/${h.a.appId}/transform-keys/${keyA.id}`, { key: h.a.key })).status, 204);
      assert.equal((await raw(h.srv.url, 'GET', byOld)).status, 403);
      assert.equal((await raw(h.srv.url, 'GET', byNew)).status, 200);
      keyA = second;
    });

    test('strict mode accepts only named presets', async () => {
      const put = await api(h.srv.url, 'PUT', `/v1/apps/${h.a.appId}/transform-presets/thumb`, { key: h.a.key, body: { operations: [{ op: 'resize', width: 80 }, { op: 'format', type: 'webp' }] } });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.equal(put.body.operations, 'resize:width=80/format:type=webp');
      const bad = await api(h.srv.url, 'PUT', `/v1/apps/${h.a.appId}/transform-presets/broken`, { key: h.a.key, body: { operations: 'resize:width=-1' } });
      assert.equal(bad.status, 400);
      assert.equal((await api(h.srv.url, 'PATCH', `/v1/apps/${h.a.appId}`, { key: h.a.key, body: { settings: { strict_transforms: true } } })).status, 200);
      try {
        await new Promise((r) => setTimeout(r, 2100)); // the per-node app cache (2 s)
        const raw1 = await raw(h.srv.url, 'GET', url(keyA, 'resize:width=80/format:webp', assetA));
        assert.equal(raw1.status, 403);
        assert.equal(JSON.parse(raw1.body.toString()).code, 'ERR_PRESET_REQUIRED');
        const preset = await raw(h.srv.url, 'GET', url(keyA, 'preset:thumb', assetA));
        assert.equal(preset.status, 200);
        assert.equal(preset.headers.get('content-type'), 'image/webp');
        assert.equal((await sharp(preset.body).metadata()).width, 80);
        const unknown = await raw(h.srv.url, 'GET', url(keyA, 'preset:nope', assetA));
        assert.equal(unknown.status, 400);
      } finally {
        await api(h.srv.url, 'PATCH', `/v1/apps/${h.a.appId}`, { key: h.a.key, body: { settings: { strict_transforms: false } } });
        await new Promise((r) => setTimeout(r, 2100));
      }
    });

    test("cross-tenant: a URL signed with org B's key never serves org A's asset (404); A's key does", async () => {
      const r = await raw(h.srv.url, 'GET', url(keyB, 'format:png', assetA));
      assert.equal(r.status, 404);
      assert.equal(JSON.parse(r.body.toString()).code, 'ERR_NOT_FOUND');
      assert.equal((await raw(h.srv.url, 'GET', url(keyA, 'format:png', assetA))).status, 200);
      assert.equal((await raw(h.srv.url, 'GET', url(keyA, 'format:png', assetB))).status, 404);
      assert.equal((await raw(h.srv.url, 'GET', url(keyB, 'format:png', assetB))).status, 200);
      // A's key and preset management is invisible to B.
      for (const [method, path] of [
        ['GET', `/v1/apps/${h.a.appId}/transform-keys`],
        ['POST', `/v1/apps/${h.a.appId}/transform-keys`],
        ['DELETE', `/v1/apps/${h.a.appId}/transform-keys/${keyA.id}`],
        ['GET', `/v1/apps/${h.a.appId}/transform-presets`],
        ['DELETE', `/v1/apps/${h.a.appId}/transform-presets/thumb`],
      ] as const) {
        const x = await api(h.srv.url, method, path, { key: h.b.key });
        assert.equal(x.status, 404, `${method} ${path}`);
      }
      const put = await api(h.srv.url, 'PUT', `/v1/apps/${h.a.appId}/transform-presets/evil`, { key: h.b.key, body: { operations: 'blur:5' } });
      assert.equal(put.status, 404);
      const keys = await superQuery(h.t, 'select count(*)::int as n from transform_keys where app_id = $1', [h.a.appId]);
      assert.equal(Number(keys[0]!.n), 1, 'nothing was created or deleted by B');
      assert.equal((await raw(h.srv.url, 'GET', url(keyA, 'format:png', assetA))).status, 200);
    });

    test('a deleted asset stops being served at once by the node that deleted it, though its row and decrypted source were cached', async () => {
      const doomed = await upload(h.srv, h.a.key, await quadrants(32, 32, 'png'));
      const u = url(keyA, 'format:png', doomed);
      assert.equal((await raw(h.srv.url, 'GET', u)).status, 200);
      assert.equal((await raw(h.srv.url, 'GET', url(keyA, 'format:webp', doomed))).status, 200, 'served again from the caches');
      assert.equal((await api(h.srv.url, 'DELETE', `/v1/assets/${doomed}`, { key: h.a.key })).status, 204);
      const gone = await raw(h.srv.url, 'GET', url(keyA, 'format:jpeg', doomed));
      assert.equal(gone.status, 404);
      assert.equal(gone.headers.get('cache-control'), 'no-store');
    });

    test('transform keys are stored only wrapped by the master key', async () => {
      const rows = await superQuery(h.t, 'select wrapped from transform_keys where id = $1', [keyA.id]);
      assert.ok(!String(rows[0]!.wrapped).includes(keyA.secret.toString('base64url')));
      assert.match(String(rows[0]!.wrapped), /^v1\./);
    });
  });
}
