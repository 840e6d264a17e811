/**
 * Issue 14, item 6: asset organisation. Tags and a small metadata map on an asset
 * (`PATCH /v1/assets/{id}`), the list filtered by tag, size and filename, and bulk deletion by filter
 * with a dry run (`POST /v1/assets/bulk-delete`). Through the real HTTP server on PGlite and PostgreSQL.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DB_KINDS, openTestDb, type TestDb } from '../support/db.js';
import { api, createTenant, mintKey, startServer, type Tenant, type TestServer } from '../support/server.js';
import { markedPng } from '../support/media.js';
import { sweepAssets } from '../../src/assets/assets.js';

for (const kind of DB_KINDS) {
  describe(`asset labels and bulk deletion (${kind})`, () => {
    let t: TestDb;
    let s: TestServer;
    let a: Tenant;
    let b: Tenant;

    const upload = async (who: Tenant, label: string, filename: string, width = 24): Promise<{ id: string; size: number }> => {
      const r = await fetch(`${s.url}/v1/assets?filename=${encodeURIComponent(filename)}`, { method: 'POST', headers: { authorization: `Bearer ${who.key}` }, body: new Uint8Array(await markedPng(label, width, 16)) });
      assert.equal(r.status, 201);
      const body = (await r.json()) as { id: string; size: number; tags: string[]; metadata: object };
      assert.deepEqual(body.tags, [], 'a new asset has no tags');
      assert.deepEqual(body.metadata, {});
      return body;
    };
    const ids = async (key: string, query: string): Promise<string[]> => {
      const r = await api(s.url, 'GET', `/v1/assets?limit=100&${query}`, { key });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.data.map((x: { id: string }) => x.id).sort();
    };

    before(async () => {
      t = await openTestDb(kind);
      s = await startServer(t.db);
      a = await createTenant(t.db, 'A');
      b = await createTenant(t.db, 'B');
    });
    after(async () => {
      await s?.close();
      await t?.close();
    });

    test('PATCH /v1/assets/{id} replaces the tags and merge-patches the metadata; GET shows them; the change is audited without its values', async () => {
      const x = await upload(a, 'x', 'beach.png');
      const first = await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: a.key, body: { tags: ['summer', 'hero', 'summer', 'été'], metadata: { campaign: 'c-2026', width_hint: 400, approved: true } } });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.deepEqual(first.body.tags, ['summer', 'hero', 'été'], 'duplicates dropped, order kept, any script');
      assert.deepEqual(first.body.metadata, { campaign: 'c-2026', width_hint: 400, approved: true });
      // Merge patch: null removes a key, others are set; tags untouched when not sent.
      const second = await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: a.key, body: { metadata: { approved: null, owner: 'ana' } } });
      assert.equal(second.status, 200);
      assert.deepEqual(second.body.tags, ['summer', 'hero', 'été']);
      assert.deepEqual(second.body.metadata, { campaign: 'c-2026', width_hint: 400, owner: 'ana' });
      const got = await api(s.url, 'GET', `/v1/assets/${x.id}`, { key: a.key });
      assert.deepEqual(got.body.metadata, second.body.metadata);
      assert.deepEqual((await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: a.key, body: { tags: [] } })).body.tags, []);
      const audit = await api(s.url, 'GET', '/v1/audit?limit=100', { key: a.key });
      const entries = audit.body.data.filter((e: { action: string; target: { asset?: string } }) => e.action === 'asset.label' && e.target.asset === x.id);
      assert.equal(entries.length, 3);
      assert.ok(!JSON.stringify(entries).includes('ana'), 'metadata values are not copied into the audit log');
    });

    test('bad tags and metadata are 400 ERR_VALIDATION naming the rule, and change nothing', async () => {
      const x = await upload(a, 'y', 'bad.png');
      await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: a.key, body: { tags: ['keep'], metadata: { k: 'v' } } });
      const cases: Array<[unknown, RegExp]> = [
        [{ tags: ['has space'] }, /tag/i],
        [{ tags: ['a,b'] }, /tag/i],
        [{ tags: ['x'.repeat(65)] }, /tag/i],
        [{ tags: Array.from({ length: 33 }, (_, i) => `t${i}`) }, /32|tags/i],
        [{ metadata: { 'bad key': 'v' } }, /key|metadata/i],
        [{ metadata: { nested: { a: 1 } } }, /metadata|must/i],
        [{ metadata: { long: 'v'.repeat(1025) } }, /1024|metadata/i],
        [{ metadata: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i])) }, /50|keys/i],
        [{ metadata: Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, 'v'.repeat(1000)])) }, /8192|bytes/i],
        [{}, /./],
        [{ tags: ['ok'], extra: 1 }, /./],
      ];
      for (const [body, hint] of cases) {
        const r = await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: a.key, body });
        assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
        assert.equal(r.body.code, 'ERR_VALIDATION');
        assert.match(JSON.stringify(r.body), hint);
      }
      const after = await api(s.url, 'GET', `/v1/assets/${x.id}`, { key: a.key });
      assert.deepEqual(after.body.tags, ['keep']);
      assert.deepEqual(after.body.metadata, { k: 'v' });
    });

    test("labels are the org's own: another org's asset is 404, a key without assets:write is 403, a publishable key is refused", async () => {
      const x = await upload(a, 'z', 'mine.png');
      const foreign = await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: b.key, body: { tags: ['stolen'] } });
      assert.equal(foreign.status, 404);
      assert.equal(foreign.body.code, 'ERR_NOT_FOUND');
      const reader = await mintKey(t.db, a, { kind: 'secret', name: 'reader', scopes: ['assets:read'] });
      assert.equal((await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: reader.secret, body: { tags: ['x'] } })).status, 403);
      const pub = await mintKey(t.db, a, { kind: 'publishable', name: 'web', allowedOrigins: ['https://app.example'] });
      const byPub = await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: pub.secret, body: { tags: ['x'] }, headers: { origin: 'https://app.example' } });
      assert.ok(byPub.status === 403 || byPub.status === 401, String(byPub.status));
      assert.deepEqual((await api(s.url, 'GET', `/v1/assets/${x.id}`, { key: a.key })).body.tags, [], 'nothing changed');
      const own = await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: a.key, body: { tags: ['mine'] } });
      assert.equal(own.status, 200);
    });

    test('the list filters by tags (all of them), size and filename; a bad tag filter is 400', async () => {
      const small = await upload(a, 's1', 'Report_100%.png', 8);
      const big = await upload(a, 'b1', 'holiday-photo.png', 300);
      const mid = await upload(a, 'm1', 'report-final.png', 60);
      await api(s.url, 'PATCH', `/v1/assets/${small.id}`, { key: a.key, body: { tags: ['q3', 'finance'] } });
      await api(s.url, 'PATCH', `/v1/assets/${mid.id}`, { key: a.key, body: { tags: ['q3'] } });
      assert.deepEqual(await ids(a.key, 'tag=q3'), [small.id, mid.id].sort());
      assert.deepEqual(await ids(a.key, 'tag=q3,finance'), [small.id]);
      assert.deepEqual(await ids(a.key, 'tag=nothing'), []);
      assert.deepEqual(await ids(b.key, 'tag=q3'), [], "another org's tags are not visible");
      assert.ok((await ids(a.key, `min_size=${big.size}`)).includes(big.id));
      assert.ok(!(await ids(a.key, `max_size=${big.size - 1}`)).includes(big.id));
      assert.deepEqual(await ids(a.key, 'filename=REPORT'), [small.id, mid.id].sort(), 'case-insensitive substring');
      // LIKE wildcards in the search are literal characters, not patterns.
      assert.deepEqual(await ids(a.key, `filename=${encodeURIComponent('100%')}`), [small.id]);
      assert.deepEqual(await ids(a.key, `filename=${encodeURIComponent('_')}`), [small.id]);
      const bad = await api(s.url, 'GET', '/v1/assets?tag=has%20space', { key: a.key });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.code, 'ERR_VALIDATION');
    });

    test('bulk deletion by filter: a dry run by default, then only what matches in the own org is deleted (audited), in batches', async () => {
      const doomed: string[] = [];
      for (let i = 0; i < 3; i++) {
        const x = await upload(a, `d${i}`, `old-${i}.png`);
        await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: a.key, body: { tags: ['expired-campaign'] } });
        doomed.push(x.id);
      }
      const keep = await upload(a, 'k', 'keep.png');
      const other = await upload(b, 'o', 'other.png');
      await api(s.url, 'PATCH', `/v1/assets/${other.id}`, { key: b.key, body: { tags: ['expired-campaign'] } });

      const refusedEmpty = await api(s.url, 'POST', '/v1/assets/bulk-delete', { key: a.key, body: {} });
      assert.equal(refusedEmpty.status, 400);
      assert.match(refusedEmpty.body.detail, /all/);
      const uploader = await mintKey(t.db, a, { kind: 'secret', name: 'uploader', scopes: ['assets:read', 'assets:write'] });
      assert.equal((await api(s.url, 'POST', '/v1/assets/bulk-delete', { key: uploader.secret, body: { tag: 'expired-campaign', dry_run: false } })).status, 403);

      const dry = await api(s.url, 'POST', '/v1/assets/bulk-delete', { key: a.key, body: { tag: 'expired-campaign' } });
      assert.equal(dry.status, 200, JSON.stringify(dry.body));
      assert.equal(dry.body.dry_run, true);
      assert.equal(dry.body.matched, 3);
      assert.deepEqual([...dry.body.ids].sort(), [...doomed].sort());
      assert.deepEqual((await ids(a.key, 'tag=expired-campaign')).length, 3, 'a dry run changes nothing');

      const first = await api(s.url, 'POST', '/v1/assets/bulk-delete', { key: a.key, body: { tag: 'expired-campaign', dry_run: false, limit: 2 } });
      assert.equal(first.status, 200);
      assert.equal(first.body.ids.length, 2);
      assert.equal(first.body.has_more, true);
      const rest = await api(s.url, 'POST', '/v1/assets/bulk-delete', { key: a.key, body: { tag: 'expired-campaign', dry_run: false } });
      assert.equal(rest.body.ids.length, 1);
      assert.equal(rest.body.has_more, false);
      assert.deepEqual([...first.body.ids, ...rest.body.ids].sort(), [...doomed].sort());
      for (const id of doomed) assert.equal((await api(s.url, 'GET', `/v1/assets/${id}`, { key: a.key })).status, 404);
      assert.equal((await api(s.url, 'GET', `/v1/assets/${keep.id}`, { key: a.key })).status, 200, 'what does not match stays');
      assert.equal((await api(s.url, 'GET', `/v1/assets/${other.id}`, { key: b.key })).status, 200, "another org's matching asset stays");
      const audit = await api(s.url, 'GET', '/v1/audit?limit=200', { key: a.key });
      const deletions = audit.body.data.filter((e: { action: string; target: { asset?: string } }) => e.action === 'asset.delete' && doomed.includes(e.target.asset ?? ''));
      assert.equal(deletions.length, 3, 'each deletion audited');
    });

    test('legal hold: a held asset cannot be deleted singly or in bulk and retention skips it; changing a hold needs assets:delete; released, it is deletable and expires again', async () => {
      const app = await api(s.url, 'POST', '/v1/apps', { key: a.key, body: { name: 'held', settings: { retention_seconds: 60 } } });
      const k = await api(s.url, 'POST', `/v1/apps/${app.body.id}/keys`, { key: a.key, body: { kind: 'secret' } });
      const up = async (label: string) => {
        const r = await fetch(`${s.url}/v1/assets?filename=held.png`, { method: 'POST', headers: { authorization: `Bearer ${k.body.secret}` }, body: new Uint8Array(await markedPng(label, 24, 16)) });
        assert.equal(r.status, 201);
        return (await r.json()) as { id: string; expires_at: string | null };
      };
      const x = await up('held-x');
      const y = await up('held-y');
      assert.ok(x.expires_at, 'the app retention applies');
      const writer = await mintKey(t.db, a, { kind: 'secret', name: 'writer', scopes: ['assets:read', 'assets:write'] });
      const notAllowed = await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: writer.secret, body: { legal_hold: true } });
      assert.equal(notAllowed.status, 403);
      assert.equal(notAllowed.body.code, 'ERR_SCOPE_MISSING');
      assert.deepEqual(notAllowed.body.missing, ['assets:delete']);
      const hold = await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: a.key, body: { legal_hold: true } });
      assert.equal(hold.status, 200, JSON.stringify(hold.body));
      assert.equal(hold.body.legal_hold, true);
      assert.equal(hold.body.expires_at, null, 'no expiry while held');

      const del = await api(s.url, 'DELETE', `/v1/assets/${x.id}`, { key: a.key });
      assert.equal(del.status, 409);
      assert.equal(del.body.code, 'ERR_LEGAL_HOLD');
      assert.match(del.body.detail, /legal_hold/);
      const bulk = await api(s.url, 'POST', '/v1/assets/bulk-delete', { key: a.key, body: { filename: 'held.png', dry_run: false } });
      assert.equal(bulk.status, 200);
      assert.deepEqual(bulk.body.ids, [y.id], 'only the asset without a hold');
      assert.equal(bulk.body.held, 1);
      const z = await up('held-z');
      // Retention (the maintenance sweep, with the clock moved past the app's 60 s): z goes, x stays.
      await sweepAssets({ db: t.db, store: s.store, keyring: s.keyring, now: () => Date.now() + 61_000 });
      assert.equal((await api(s.url, 'GET', `/v1/assets/${z.id}`, { key: a.key })).status, 404);
      const still = await api(s.url, 'GET', `/v1/assets/${x.id}`, { key: a.key });
      assert.equal(still.status, 200);
      assert.equal(still.body.legal_hold, true);

      const release = await api(s.url, 'PATCH', `/v1/assets/${x.id}`, { key: a.key, body: { legal_hold: false } });
      assert.equal(release.status, 200);
      assert.equal(release.body.legal_hold, false);
      assert.equal(release.body.expires_at, x.expires_at, 'the retention date applies again');
      await sweepAssets({ db: t.db, store: s.store, keyring: s.keyring, now: () => Date.now() + 61_000 });
      assert.equal((await api(s.url, 'GET', `/v1/assets/${x.id}`, { key: a.key })).status, 404, 'expired once released');
      const audit = await api(s.url, 'GET', '/v1/audit?limit=200', { key: a.key });
      const actions = audit.body.data.filter((e: { target: { asset?: string } }) => e.target.asset === x.id).map((e: { action: string }) => e.action);
      for (const action of ['asset.hold', 'asset.release', 'asset.expire']) assert.ok(actions.includes(action), `${action} in ${actions.join(', ')}`);
    });

    test("GET /v1/orgs/{id}/data-report inventories the org's media, retention, uploads and records; another org's id is 404, and it needs apps:read and assets:read", async () => {
      const r = await api(s.url, 'GET', `/v1/orgs/${a.orgId}/data-report`, { key: a.key });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      // The same figures straight from the API's own list.
      const listed: Array<{ app_id: string; kind: string; size: number; created_at: string }> = [];
      for (let cursor: string | null = null; ; ) {
        const page = await api(s.url, 'GET', `/v1/assets?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { key: a.key });
        listed.push(...page.body.data);
        cursor = page.body.next_cursor;
        if (!cursor) break;
      }
      const total = (xs: Array<{ count: number; bytes: number }>) => xs.reduce((acc, x) => ({ count: acc.count + x.count, bytes: acc.bytes + x.bytes }), { count: 0, bytes: 0 });
      assert.deepEqual(total(r.body.media), { count: listed.length, bytes: listed.reduce((n, x) => n + x.size, 0) });
      const line = r.body.media.find((l: { app_id: string; kind: string }) => l.app_id === a.appId && l.kind === 'upload');
      const mine = listed.filter((x) => x.app_id === a.appId && x.kind === 'upload').map((x) => x.created_at).sort();
      assert.equal(line.oldest, mine[0]);
      assert.equal(line.newest, mine[mine.length - 1]);
      const held = r.body.retention.find((x: { name: string }) => x.name === 'held');
      assert.equal(held.originals_seconds, 60, "the app's retention is shown");
      assert.equal(r.body.records.apps >= 2, true);
      assert.ok(r.body.records.audit_log > 0);
      assert.ok(!JSON.stringify(r.body).includes('held.png'), 'no filenames or labels in the report');
      const foreign = await api(s.url, 'GET', `/v1/orgs/${b.orgId}/data-report`, { key: a.key });
      assert.equal(foreign.status, 404);
      const narrow = await mintKey(t.db, a, { kind: 'secret', name: 'narrow', scopes: ['assets:read'] });
      const refused = await api(s.url, 'GET', `/v1/orgs/${a.orgId}/data-report`, { key: narrow.secret });
      assert.equal(refused.status, 403);
      assert.deepEqual(refused.body.missing, ['apps:read']);
    });
  });
}
