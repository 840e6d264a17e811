/**
 * Issue 9, item 10: a lost id is never lost for good. `GET /v1/assets` and `GET /v1/jobs` list what
 * the caller's org has, cursor-paginated with filters, and every list of the API pages the same way
 * (`limit`, `cursor` → `{ data, next_cursor }`). Cursors are opaque and bound to the list, the org and
 * the filters: another org's cursor, an edited one or one reused with other filters is a 400, never
 * another org's rows. Through the real HTTP server on PGlite and PostgreSQL.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DB_KINDS, openTestDb, superQuery, type TestDb } from '../support/db.js';
import { api, createTenant, mintKey, startServer, type Tenant, type TestServer } from '../support/server.js';
import { markedPng } from '../support/media.js';

for (const kind of DB_KINDS) {
  describe(`listing (${kind})`, () => {
    let t: TestDb;
    let s: TestServer;
    let a: Tenant;
    let b: Tenant;
    const uploads: string[] = [];
    const outputs: string[] = [];
    let bAsset: string;

    const upload = async (who: Tenant, label: string): Promise<string> => {
      const r = await fetch(`${s.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${who.key}` }, body: new Uint8Array(await markedPng(label, 24, 16)) });
      assert.equal(r.status, 201);
      return ((await r.json()) as { id: string }).id;
    };

    /** Every id of a list, page by page, checking the convention on the way. */
    const pageAll = async (key: string, path: string, limit: number): Promise<{ ids: string[]; pages: number }> => {
      const ids: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const sep = path.includes('?') ? '&' : '?';
        const r = await api(s.url, 'GET', `${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { key });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.ok(Array.isArray(r.body.data));
        assert.ok(r.body.data.length <= limit);
        assert.ok('next_cursor' in r.body);
        ids.push(...r.body.data.map((x: { id: string }) => x.id));
        cursor = r.body.next_cursor;
        pages++;
        assert.ok(pages < 50, 'paging ends');
      } while (cursor);
      return { ids, pages };
    };

    before(async () => {
      t = await openTestDb(kind);
      s = await startServer(t.db);
      a = await createTenant(t.db, 'A');
      b = await createTenant(t.db, 'B');
      for (let i = 0; i < 7; i++) uploads.push(await upload(a, `a${i}`));
      for (let i = 0; i < 2; i++) {
        const r = await api(s.url, 'POST', '/v1/process', { key: a.key, body: { input: { asset_id: uploads[i] }, operations: 'resize:width=8/format:webp', output: { store: true } } });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        outputs.push(r.body.id);
      }
      bAsset = await upload(b, 'b0');
    });
    after(async () => {
      await s?.close();
      await t?.close();
    });

    test('GET /v1/assets pages through every asset of the org exactly once, newest first, even while new ones arrive', async () => {
      const first = await api(s.url, 'GET', '/v1/assets?limit=4', { key: a.key });
      assert.equal(first.status, 200);
      assert.equal(first.body.data.length, 4);
      assert.equal(typeof first.body.next_cursor, 'string');
      const created = first.body.data.map((x: { created_at: string }) => Date.parse(x.created_at));
      assert.deepEqual(created, [...created].sort((x, y) => y - x), 'newest first');
      // New assets arrive between pages: they sort before the cursor and never shift later pages.
      const late = await upload(a, 'late');
      const seen: string[] = first.body.data.map((x: { id: string }) => x.id);
      let cursor: string | null = first.body.next_cursor;
      while (cursor) {
        const r = await api(s.url, 'GET', `/v1/assets?limit=4&cursor=${encodeURIComponent(cursor)}`, { key: a.key });
        assert.equal(r.status, 200);
        seen.push(...r.body.data.map((x: { id: string }) => x.id));
        cursor = r.body.next_cursor;
      }
      assert.equal(new Set(seen).size, seen.length, 'no duplicates');
      assert.deepEqual([...seen].sort(), [...uploads, ...outputs].sort(), 'every asset that existed, and nothing of org B');
      assert.ok(!seen.includes(late));
      assert.ok(!seen.includes(bAsset));
      // A fresh listing includes it.
      assert.ok((await pageAll(a.key, '/v1/assets', 100)).ids.includes(late));
      uploads.push(late);
    });

    test('filters: kind (original/upload, output), type (exact or family) and creation range; deleted assets are not listed', async () => {
      assert.deepEqual((await pageAll(a.key, '/v1/assets?kind=output', 2)).ids.sort(), [...outputs].sort());
      assert.deepEqual((await pageAll(a.key, '/v1/assets?kind=original', 3)).ids.sort(), [...uploads].sort());
      assert.equal((await pageAll(a.key, '/v1/assets?type=image/webp', 10)).ids.length, outputs.length);
      assert.equal((await pageAll(a.key, '/v1/assets?type=image', 10)).ids.length, uploads.length + outputs.length);
      assert.equal((await pageAll(a.key, '/v1/assets?type=video', 10)).ids.length, 0);
      const future = new Date(Date.now() + 3600_000).toISOString();
      assert.equal((await pageAll(a.key, `/v1/assets?created_after=${encodeURIComponent(future)}`, 10)).ids.length, 0);
      assert.equal((await pageAll(a.key, `/v1/assets?created_before=${encodeURIComponent(future)}`, 10)).ids.length, uploads.length + outputs.length);
      const gone = uploads.pop()!;
      assert.equal((await api(s.url, 'DELETE', `/v1/assets/${gone}`, { key: a.key })).status, 204);
      assert.ok(!(await pageAll(a.key, '/v1/assets', 100)).ids.includes(gone));
    });

    test("a cursor is bound to its list, org and filters: another org's, an edited or a refiltered one is 400 ERR_CURSOR_INVALID; bad limits name the range", async () => {
      const first = await api(s.url, 'GET', '/v1/assets?limit=2', { key: a.key });
      const cursor: string = first.body.next_cursor;
      const other = await api(s.url, 'GET', `/v1/assets?limit=2&cursor=${encodeURIComponent(cursor)}`, { key: b.key });
      assert.equal(other.status, 400);
      assert.equal(other.body.code, 'ERR_CURSOR_INVALID');
      const flipped = cursor.slice(0, 5) + (cursor[5] === 'A' ? 'B' : 'A') + cursor.slice(6);
      assert.equal((await api(s.url, 'GET', `/v1/assets?cursor=${encodeURIComponent(flipped)}`, { key: a.key })).body.code, 'ERR_CURSOR_INVALID');
      assert.equal((await api(s.url, 'GET', `/v1/assets?kind=output&cursor=${encodeURIComponent(cursor)}`, { key: a.key })).body.code, 'ERR_CURSOR_INVALID');
      assert.equal((await api(s.url, 'GET', `/v1/jobs?cursor=${encodeURIComponent(cursor)}`, { key: a.key })).body.code, 'ERR_CURSOR_INVALID');
      assert.equal((await api(s.url, 'GET', '/v1/assets?cursor=not-a-cursor', { key: a.key })).body.code, 'ERR_CURSOR_INVALID');
      for (const limit of ['0', '501', 'ten']) {
        const r = await api(s.url, 'GET', `/v1/assets?limit=${limit}`, { key: a.key });
        assert.equal(r.status, 400, limit);
        assert.equal(r.body.code, 'ERR_VALIDATION');
        assert.match(JSON.stringify(r.body), /500|limit/);
      }
      // The legitimate twin: the same cursor, by its org, with its filters.
      const next = await api(s.url, 'GET', `/v1/assets?limit=2&cursor=${encodeURIComponent(cursor)}`, { key: a.key });
      assert.equal(next.status, 200);
      assert.equal(next.body.data.length, 2);
    });

    test('an expired asset is not listed even before the sweeper removed it; the live ones still are', async () => {
      const doomed = await upload(a, 'expiring');
      const kept = await upload(a, 'kept');
      assert.ok((await pageAll(a.key, '/v1/assets', 100)).ids.includes(doomed), 'listed while live');
      // Time passes for this one asset only: its retention ended a minute ago, no sweep has run yet.
      await superQuery(t, "UPDATE assets SET expires_at = now() - interval '1 minute' WHERE id = $1", [doomed]);
      const ids = (await pageAll(a.key, '/v1/assets', 2)).ids;
      assert.ok(!ids.includes(doomed));
      assert.ok(ids.includes(kept));
      uploads.push(kept);
    });

    test('limit and the filters are checked: an out-of-range or fractional limit is 400 ERR_VALIDATION naming 1 to 500, a non-date, unknown kind or odd type is 400; the largest page is fine', async () => {
      for (const limit of ['0', '501', '-1', '2.5']) {
        const r = await api(s.url, 'GET', `/v1/assets?limit=${limit}`, { key: a.key });
        assert.equal(r.status, 400, limit);
        assert.equal(r.body.code, 'ERR_VALIDATION');
        assert.equal(r.body.detail, 'querystring/limit must be an integer from 1 to 500.', limit);
        assert.deepEqual(r.body.errors[0].allowed, { type: 'integer', minimum: 1, maximum: 500 });
      }
      for (const path of ['/v1/assets?created_after=yesterday', '/v1/jobs?created_before=2026-13-45', '/v1/assets?kind=deleted', '/v1/assets?type=../etc']) {
        const r = await api(s.url, 'GET', path, { key: a.key });
        assert.equal(r.status, 400, path);
        assert.equal(r.body.code, 'ERR_VALIDATION', path);
      }
      const ok = await api(s.url, 'GET', `/v1/jobs?limit=500&created_before=${encodeURIComponent(new Date().toISOString())}`, { key: a.key });
      assert.equal(ok.status, 200);
    });

    test('listing needs assets:read (assets) and jobs:read (jobs)', async () => {
      const writer = (await mintKey(t.db, a, { kind: 'restricted', scopes: ['assets:write'] })).secret;
      const r = await api(s.url, 'GET', '/v1/assets', { key: writer });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'ERR_SCOPE_MISSING');
      assert.equal((await api(s.url, 'GET', '/v1/jobs', { key: writer })).status, 403);
      const reader = (await mintKey(t.db, a, { kind: 'restricted', scopes: ['assets:read', 'jobs:read'] })).secret;
      assert.equal((await api(s.url, 'GET', '/v1/assets', { key: reader })).status, 200);
      assert.equal((await api(s.url, 'GET', '/v1/jobs', { key: reader })).status, 200);
    });

    test('GET /v1/jobs pages through the org’s jobs and filters by status and creation time', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await api(s.url, 'POST', '/v1/jobs', { key: a.key, body: { input: { asset_id: uploads[0] }, operations: `resize:width=${10 + i}/format:png` } });
        assert.equal(r.status, 202, JSON.stringify(r.body));
        ids.push(r.body.id);
      }
      const all = await pageAll(a.key, '/v1/jobs', 2);
      assert.equal(all.pages, 3);
      assert.deepEqual([...all.ids].sort(), [...ids].sort());
      assert.deepEqual((await pageAll(a.key, '/v1/jobs?status=queued', 10)).ids.sort(), [...ids].sort());
      assert.equal((await pageAll(a.key, '/v1/jobs?status=succeeded', 10)).ids.length, 0);
      assert.equal((await pageAll(b.key, '/v1/jobs', 10)).ids.length, 0, "org B sees none of A's jobs");
      const bad = await api(s.url, 'GET', '/v1/jobs?status=done', { key: a.key });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.code, 'ERR_VALIDATION');
    });

    test('every list of the API follows the same convention (keys, apps, webhooks, audit)', async () => {
      for (let i = 0; i < 2; i++) await mintKey(t.db, a, { kind: 'restricted', scopes: ['assets:read'] });
      for (const path of [`/v1/apps/${a.appId}/keys`, '/v1/apps', '/v1/audit', '/v1/webhooks']) {
        const r = await api(s.url, 'GET', `${path}?limit=1`, { key: a.key });
        assert.equal(r.status, 200, `${path}: ${JSON.stringify(r.body)}`);
        assert.ok(Array.isArray(r.body.data), path);
        assert.ok('next_cursor' in r.body, path);
        assert.ok(r.body.data.length <= 1, path);
      }
      const keys = await pageAll(a.key, `/v1/apps/${a.appId}/keys`, 1);
      assert.ok(keys.ids.length >= 3);
      assert.equal(new Set(keys.ids).size, keys.ids.length);
    });
  });
}
