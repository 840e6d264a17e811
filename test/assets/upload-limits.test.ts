/**
 * Bounds on unfinished uploads per app and per org (issue 9, item 6: 200 tus uploads declaring 5 GiB
 * each used to be accepted). Driven through the production routes — tus creation at /v1/uploads
 * (raw HTTP and the real tus-js-client) and presigned URLs at /v1/assets/upload-url — on a listening
 * server with small limits, on PGlite and on PostgreSQL.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tus from 'tus-js-client';
import { DB_KINDS, openTestDb, type TestDb } from '../support/db.js';
import { startServer, createTenant, api, type TestServer, type Tenant } from '../support/server.js';
import { createApp } from '../../src/tenants/index.js';
import { createKey } from '../../src/auth/keys.js';
import { pngOfSize } from '../support/media.js';

const MiB = 1024 * 1024;
const LIMITS = {
  OBSCURA_MAX_OPEN_UPLOADS_PER_APP: '3',
  OBSCURA_MAX_OPEN_UPLOADS_PER_ORG: '5',
  OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_APP: String(10 * MiB),
  OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_ORG: String(16 * MiB),
};

for (const kind of DB_KINDS) {
  describe(`unfinished-upload limits (${kind})`, () => {
    let t: TestDb;
    let s: TestServer;
    let clockOffset = 0;

    before(async () => {
      t = await openTestDb(kind);
      s = await startServer(t.db, { env: LIMITS, deps: { now: () => Date.now() + clockOffset } });
    });
    after(async () => {
      await s?.close();
      await t?.close();
    });

    /** A second app (with a full key) in the tenant's org. */
    async function secondApp(x: Tenant): Promise<{ appId: string; key: string }> {
      const ctx = { actor: { type: 'cli' as const, id: 'test' } };
      return t.db.withTenant(x.orgId, async (trx) => {
        const app = await createApp(trx, x.orgId, { name: 'second app' }, ctx);
        const k = await createKey(trx, x.orgId, app.id, { kind: 'secret', name: 'full' }, { ...ctx, granter: null });
        return { appId: app.id, key: k.secret };
      });
    }

    async function createUpload(key: string, length: number): Promise<{ status: number; body: any; url: string | null }> {
      const res = await fetch(`${s.url}/v1/uploads`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'tus-resumable': '1.0.0', 'upload-length': String(length) } });
      const text = await res.text();
      const location = res.headers.get('location');
      return { status: res.status, body: text ? JSON.parse(text) : undefined, url: location ? new URL(location, s.url).toString() : null };
    }

    const presign = (key: string, length: number) => api(s.url, 'POST', '/v1/assets/upload-url', { key, body: { content_type: 'image/png', content_length: length } });

    function assertLimit(r: { status: number; body: any }, limit: string, setting: string): void {
      assert.equal(r.status, 429, JSON.stringify(r.body));
      assert.equal(r.body.code, 'ERR_UPLOAD_LIMIT');
      assert.equal(r.body.limit, limit);
      assert.equal(r.body.setting, setting);
      assert.match(r.body.detail, new RegExp(setting));
    }

    test('the upload beyond an app’s open-upload limit is refused with 429 ERR_UPLOAD_LIMIT naming the limit; another org is unaffected; terminating one lets the next in', async () => {
      const a = await createTenant(t.db, 'Open');
      const other = await createTenant(t.db, 'Other');
      const urls: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await createUpload(a.key, 1000);
        assert.equal(r.status, 201, JSON.stringify(r.body));
        urls.push(r.url!);
      }
      const refused = await createUpload(a.key, 1000);
      assertLimit(refused, 'open_uploads_per_app', 'OBSCURA_MAX_OPEN_UPLOADS_PER_APP');
      assert.equal(refused.body.max, 3);
      assert.equal(refused.body.current, 3);
      assert.equal(refused.url, null, 'nothing was created');
      // The real client sees the 429 and gives up rather than retrying into the limit.
      const clientErr = await new Promise<tus.DetailedError>((resolve, reject) => {
        new tus.Upload(Buffer.alloc(1000), {
          endpoint: `${s.url}/v1/uploads`,
          headers: { authorization: `Bearer ${a.key}` },
          retryDelays: [0, 10],
          onError: (err) => resolve(err as tus.DetailedError),
          onSuccess: () => reject(new Error('the upload beyond the limit was accepted')),
        }).start();
      });
      assert.equal(clientErr.originalResponse?.getStatus(), 429);
      assert.equal(JSON.parse(clientErr.originalResponse!.getBody()).code, 'ERR_UPLOAD_LIMIT');
      // Legitimate twin: another org has its own allowance.
      assert.equal((await createUpload(other.key, 1000)).status, 201);
      const del = await fetch(urls[0]!, { method: 'DELETE', headers: { authorization: `Bearer ${a.key}`, 'tus-resumable': '1.0.0' } });
      assert.equal(del.status, 204);
      assert.equal((await createUpload(a.key, 1000)).status, 201, 'a terminated upload releases its slot');
    });

    test('the org bound counts every app of the org: a second app is refused with open_uploads_per_org once the org holds five', async () => {
      const a = await createTenant(t.db, 'OrgOpen');
      const second = await secondApp(a);
      for (let i = 0; i < 3; i++) assert.equal((await createUpload(a.key, 1000)).status, 201);
      for (let i = 0; i < 2; i++) assert.equal((await createUpload(second.key, 1000)).status, 201);
      assertLimit(await createUpload(second.key, 1000), 'open_uploads_per_org', 'OBSCURA_MAX_OPEN_UPLOADS_PER_ORG');
    });

    test('declared bytes are bounded per app and per org: a creation that would exceed either is refused with its limit named, one that fits is accepted', async () => {
      const a = await createTenant(t.db, 'Bytes');
      const second = await secondApp(a);
      assert.equal((await createUpload(a.key, 6 * MiB)).status, 201);
      assertLimit(await createUpload(a.key, 5 * MiB), 'reserved_upload_bytes_per_app', 'OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_APP');
      assert.equal((await createUpload(a.key, 4 * MiB)).status, 201, 'exactly up to the limit is allowed');
      const orgRefused = await createUpload(second.key, 7 * MiB);
      assertLimit(orgRefused, 'reserved_upload_bytes_per_org', 'OBSCURA_MAX_RESERVED_UPLOAD_BYTES_PER_ORG');
      assert.equal(orgRefused.body.current, 10 * MiB);
      assert.equal((await createUpload(second.key, 6 * MiB)).status, 201);
    });

    test('finished uploads release their reservation: after three uploads complete, three more may be opened', async () => {
      const a = await createTenant(t.db, 'Finish');
      for (let i = 0; i < 3; i++) {
        const data = await pngOfSize(20_000, `finish-${kind}-${i}`);
        const assetId = await new Promise<string | null>((resolve, reject) => {
          let id: string | null = null;
          new tus.Upload(data, {
            endpoint: `${s.url}/v1/uploads`,
            headers: { authorization: `Bearer ${a.key}` },
            retryDelays: [],
            onAfterResponse: (_req, res) => {
              id = res.getHeader('Obscura-Asset-Id') ?? id;
            },
            onSuccess: () => resolve(id),
            onError: reject,
          }).start();
        });
        assert.ok(assetId, 'the upload became an asset');
      }
      for (let i = 0; i < 3; i++) assert.equal((await createUpload(a.key, 1000)).status, 201);
      assertLimit(await createUpload(a.key, 1000), 'open_uploads_per_app', 'OBSCURA_MAX_OPEN_UPLOADS_PER_APP');
    });

    test('unused presigned upload URLs count toward the same limits, and using one releases it', async () => {
      const a = await createTenant(t.db, 'Presign');
      const png = await pngOfSize(20_000, `presign-${kind}`);
      const first = await presign(a.key, png.length);
      assert.equal(first.status, 201, JSON.stringify(first.body));
      assert.equal((await presign(a.key, 1000)).status, 201);
      assert.equal((await createUpload(a.key, 1000)).status, 201);
      assertLimit(await presign(a.key, 1000), 'open_uploads_per_app', 'OBSCURA_MAX_OPEN_UPLOADS_PER_APP');
      assertLimit(await createUpload(a.key, 1000), 'open_uploads_per_app', 'OBSCURA_MAX_OPEN_UPLOADS_PER_APP');
      const put = await fetch(first.body.url, { method: 'PUT', headers: first.body.headers, body: new Uint8Array(png) });
      assert.equal(put.status, 201);
      assert.equal((await createUpload(a.key, 1000)).status, 201, 'the used URL no longer holds a slot');
    });

    test('concurrent creations cannot slip past the limit together: of ten at once, exactly three are accepted', async () => {
      const a = await createTenant(t.db, 'Race');
      const results = await Promise.all(Array.from({ length: 10 }, () => createUpload(a.key, 1000)));
      assert.equal(results.filter((r) => r.status === 201).length, 3, JSON.stringify(results.map((r) => r.status)));
      for (const r of results.filter((x) => x.status !== 201)) assert.equal(r.body.code, 'ERR_UPLOAD_LIMIT');
    });

    // Last: it moves the server's clock.
    test('expired uploads and presigned URLs release their reservation even before the sweeper removes them', async () => {
      const a = await createTenant(t.db, 'Expire');
      for (let i = 0; i < 2; i++) assert.equal((await createUpload(a.key, 1000)).status, 201);
      assert.equal((await presign(a.key, 1000)).status, 201);
      assertLimit(await createUpload(a.key, 1000), 'open_uploads_per_app', 'OBSCURA_MAX_OPEN_UPLOADS_PER_APP');
      clockOffset = 24 * 3600_000 + 1000;
      try {
        for (let i = 0; i < 3; i++) assert.equal((await createUpload(a.key, 1000)).status, 201);
        assertLimit(await createUpload(a.key, 1000), 'open_uploads_per_app', 'OBSCURA_MAX_OPEN_UPLOADS_PER_APP');
      } finally {
        clockOffset = 0;
      }
    });
  });
}
