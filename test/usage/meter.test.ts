import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { DB_KINDS, openTestDb, superQuery, type TestDb } from '../support/db.js';
import { createTenant } from '../support/server.js';
import type { DatabaseHandle } from '../../src/db/database.js';
import { UsageMeter, recordUsage, resolutionBucket } from '../../src/usage/meter.js';
import { isMonth, monthEnd, monthOf, secondsUntilMonthEnd } from '../../src/usage/month.js';
import { exceededQuota, limitsFromSettings, quotaHeaders, type QuotaStatus } from '../../src/usage/quota.js';

test('months are UTC calendar months, and quotas reset at the first instant of the next one', () => {
  assert.equal(monthOf(Date.parse('2026-01-31T23:59:59.999Z')), '2026-01');
  assert.equal(monthOf(Date.parse('2026-02-01T00:00:00.000Z')), '2026-02');
  assert.equal(monthEnd('2026-12').toISOString(), '2027-01-01T00:00:00.000Z');
  assert.equal(secondsUntilMonthEnd(Date.parse('2026-02-28T23:59:59.000Z')), 1);
  assert.ok(isMonth('2026-11') && !isMonth('2026-13') && !isMonth('26-11'));
});

test('quota evaluation: used >= limit is exceeded, null is unlimited, headers list only set quotas', () => {
  const status: QuotaStatus = { month: '2026-11', resetsAt: monthEnd('2026-11'), limits: limitsFromSettings({ quota_requests_per_month: 10, quota_bytes_per_month: 0 }), used: { requests: 9, exports: 99, bytes: 0 } };
  assert.equal(exceededQuota(status, ['requests']), null);
  assert.equal(exceededQuota(status, ['requests', 'bytes']), 'bytes', 'a quota of 0 is exhausted, not unlimited');
  assert.equal(exceededQuota(status, ['exports']), null);
  assert.equal(exceededQuota({ ...status, used: { ...status.used, requests: 10 } }, ['requests']), 'requests');
  const h = quotaHeaders(status, Date.parse('2026-11-30T23:59:00Z'));
  assert.deepEqual(h, { 'Obscura-Quota-Limit': 'requests=10, bytes=0', 'Obscura-Quota-Remaining': 'requests=1, bytes=0', 'Obscura-Quota-Reset': '60' });
});

for (const kind of DB_KINDS) {
  describe(`usage meter (${kind})`, () => {
    let t: TestDb;
    const masterKey = randomBytes(32);
    before(async () => {
      t = await openTestDb(kind);
    });
    after(async () => {
      await t.close();
    });

    const totals = async (appId: string) =>
      Object.fromEntries(
        (await superQuery(t, 'select month, metric, sum(value)::text as v from usage_counters where app_id = $1 group by month, metric order by month, metric', [appId])).map((r) => [`${r.month} ${r.metric}`, Number(r.v)]),
      );

    test('two meters (two nodes) flushing at the same time add up exactly', async () => {
      const a = await createTenant(t.db, 'Concurrent');
      const m1 = new UsageMeter({ db: t.db, masterKey, flushIntervalMs: 0 });
      const m2 = new UsageMeter({ db: t.db, masterKey, flushIntervalMs: 0 });
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 200; i++) {
          recordUsage(m1, { orgId: a.orgId, appId: a.appId, keyId: a.keyId, requests: 1, bytesOut: 10 });
          recordUsage(m2, { orgId: a.orgId, appId: a.appId, keyId: a.keyId, requests: 1, bytesOut: 10 });
        }
        await Promise.all([m1.flush(), m2.flush()]);
      }
      const month = monthOf(Date.now());
      const got = await totals(a.appId);
      assert.equal(got[`${month} requests`], 1200);
      assert.equal(got[`${month} bytes_out`], 12_000);
      await Promise.all([m1.close(), m2.close()]);
    });

    test('files usage under the UTC month it happened in', async () => {
      const a = await createTenant(t.db, 'Boundary');
      const m = new UsageMeter({ db: t.db, masterKey, flushIntervalMs: 0 });
      recordUsage(m, { orgId: a.orgId, appId: a.appId, requests: 1, at: new Date('2026-01-31T23:59:59.999Z') });
      recordUsage(m, { orgId: a.orgId, appId: a.appId, requests: 2, at: Date.parse('2026-02-01T00:00:00.000Z') });
      await m.close();
      assert.deepEqual(await totals(a.appId), { '2026-01 requests': 1, '2026-02 requests': 2 });
    });

    test('keeps the counts through a failed flush and writes them on the next one', async () => {
      const a = await createTenant(t.db, 'Outage');
      let down = true;
      const flaky: DatabaseHandle = {
        ...t.db,
        withTenant: (orgId, fn) => (down ? Promise.reject(Object.assign(new Error('connection lost'), { code: '57P01' })) : t.db.withTenant(orgId, fn)),
      };
      const errors: unknown[] = [];
      const m = new UsageMeter({ db: flaky, masterKey, flushIntervalMs: 0, onError: (e) => errors.push(e) });
      recordUsage(m, { orgId: a.orgId, appId: a.appId, requests: 3, endUser: 'someone' });
      await m.flush();
      assert.equal(errors.length, 1);
      assert.equal(m.pending, 2, 'the counter and the end user are still buffered');
      assert.deepEqual(m.unflushed(a.orgId, a.appId, monthOf(Date.now())), { requests: 3, exports: 0, bytes: 0 });
      recordUsage(m, { orgId: a.orgId, appId: a.appId, requests: 1 });
      down = false;
      await m.flush();
      assert.equal(m.pending, 0);
      assert.deepEqual(m.unflushed(a.orgId, a.appId, monthOf(Date.now())), { requests: 0, exports: 0, bytes: 0 });
      assert.equal((await totals(a.appId))[`${monthOf(Date.now())} requests`], 4);
      const users = await superQuery(t, 'select count(*)::int as n from usage_end_users where app_id = $1', [a.appId]);
      assert.equal(users[0]!.n, 1);
      await m.close();
    });

    test('drops counts for an org that no longer exists instead of retrying them forever', async () => {
      const errors: unknown[] = [];
      const m = new UsageMeter({ db: t.db, masterKey, flushIntervalMs: 0, onError: (e) => errors.push(e) });
      recordUsage(m, { orgId: randomUUID(), appId: randomUUID(), requests: 1 });
      await m.flush();
      assert.equal(errors.length, 1);
      assert.equal((errors[0] as { code?: string }).code, '23503');
      assert.equal(m.pending, 0);
      await m.close();
    });

    test('counts an end user once per app and month however often they appear', async () => {
      const a = await createTenant(t.db, 'Repeat');
      const m = new UsageMeter({ db: t.db, masterKey, flushIntervalMs: 0 });
      for (let i = 0; i < 5; i++) {
        recordUsage(m, { orgId: a.orgId, appId: a.appId, endUser: 'u-1' });
        await m.flush();
      }
      recordUsage(m, { orgId: a.orgId, appId: a.appId, endUser: 'u-2' });
      recordUsage(m, { orgId: a.orgId, appId: a.appId, endUser: 'u-1', at: Date.parse('2001-05-05T00:00:00Z') });
      await m.close();
      const rows = await superQuery(t, 'select month, count(*)::int as n from usage_end_users where app_id = $1 group by month order by month', [a.appId]);
      assert.deepEqual(rows.map((r) => [r.month, r.n]), [['2001-05', 1], [monthOf(Date.now()), 2]]);
      // Unlinkable across months: the same id hashes differently.
      assert.notEqual(m.endUserHash(a.orgId, a.appId, '2001-05', 'u-1'), m.endUserHash(a.orgId, a.appId, monthOf(Date.now()), 'u-1'));
      assert.throws(() => recordUsage(m, { orgId: a.orgId, appId: a.appId, endUser: 'x'.repeat(201) }), RangeError);
    });
  });
}

test('resolution buckets go by the shorter side: 1920×1080 and a portrait 1080×1920 are 1080p, 3840×2160 is 2160p, 8000×6000 is above', () => {
  assert.equal(resolutionBucket(1920, 1080), '1080p');
  assert.equal(resolutionBucket(1080, 1920), '1080p');
  assert.equal(resolutionBucket(1280, 721), '1080p');
  assert.equal(resolutionBucket(200, 150), '240p');
  assert.equal(resolutionBucket(3840, 2160), '2160p');
  assert.equal(resolutionBucket(8000, 6000), 'above');
});
