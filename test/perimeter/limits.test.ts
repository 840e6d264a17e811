import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { DB_KINDS, createEmptyDatabase, openTestDb, tempDir, type TestDb } from '../support/db.js';
import { createTenant, mintKey, api, type Tenant } from '../support/server.js';
import { cliEnv } from '../support/cli.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { startPerimeterServer, type PerimeterServer } from '../usage/support.js';
import { openDatabase } from '../../src/db/database.js';

/** A distinct client address per test (the server trusts X-Forwarded-For from 127.0.0.1 here). */
const from = (ip: string) => ({ 'x-forwarded-for': ip });

async function times(n: number, fn: () => Promise<{ status: number; headers: Headers; body: any }>) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await fn());
  return out;
}

for (const kind of DB_KINDS) {
  describe(`rate limits (${kind})`, () => {
    let t: TestDb;
    let s: PerimeterServer;

    before(async () => {
      t = await openTestDb(kind);
      s = await startPerimeterServer(t.db, {
        env: {
          OBSCURA_RATE_LIMIT_PER_MINUTE: '5',
          OBSCURA_RATE_LIMIT_APP_PER_MINUTE: '8',
          OBSCURA_RATE_LIMIT_IP_PER_MINUTE: '4',
          OBSCURA_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE: '3',
          OBSCURA_TRUST_PROXY: '127.0.0.1',
        },
        routes: (app) => {
          app.get('/test/strict', { config: { rateLimit: { max: 2, timeWindow: 60_000 } } }, async () => ({ ok: true }));
        },
      });
    });
    after(async () => {
      await s.close();
      await t.close();
    });

    test('limits each key to its per-minute budget with RateLimit headers, then answers 429 ERR_RATE_LIMITED with Retry-After', async () => {
      const a = await createTenant(t.db, 'Keyed');
      const ok = await times(5, () => api(s.url, 'GET', '/v1/apps', { key: a.key, headers: from('192.0.2.1') }));
      assert.deepEqual(ok.map((r) => r.status), [200, 200, 200, 200, 200]);
      assert.deepEqual(ok.map((r) => r.headers.get('ratelimit-limit')), ['5', '5', '5', '5', '5']);
      assert.deepEqual(ok.map((r) => r.headers.get('ratelimit-remaining')), ['4', '3', '2', '1', '0']);
      const reset = Number(ok[0]!.headers.get('ratelimit-reset'));
      assert.ok(reset >= 1 && reset <= 60, `reset ${reset}`);

      const refused = await api(s.url, 'GET', '/v1/apps', { key: a.key, headers: from('192.0.2.1') });
      assert.equal(refused.status, 429);
      assert.match(refused.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(refused.body.code, 'ERR_RATE_LIMITED');
      assert.equal(refused.body.limit_scope, 'key');
      const retry = Number(refused.headers.get('retry-after'));
      assert.ok(retry >= 1 && retry <= 60, `retry-after ${retry}`);
      assert.equal(refused.headers.get('ratelimit-remaining'), '0');

      // Per key: another key of the same app still has its own budget.
      const other = await mintKey(t.db, a, { kind: 'secret' });
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: other.secret, headers: from('192.0.2.1') })).status, 200);
    });

    test('limits an app across all of its keys, and reports the tighter of the two limits', async () => {
      const b = await createTenant(t.db, 'Busy');
      const k2 = await mintKey(t.db, b, { kind: 'secret' });
      const k3 = await mintKey(t.db, b, { kind: 'secret' });
      const first = await times(5, () => api(s.url, 'GET', '/v1/apps', { key: b.key }));
      assert.ok(first.every((r) => r.status === 200));
      const second = await times(3, () => api(s.url, 'GET', '/v1/apps', { key: k2.secret }));
      assert.ok(second.every((r) => r.status === 200));
      // k2 has 2 of its own 5 left, but the app only 0 of 8: the headers name the app's.
      assert.equal(second[2]!.headers.get('ratelimit-limit'), '8');
      assert.equal(second[2]!.headers.get('ratelimit-remaining'), '0');

      const over = await api(s.url, 'GET', '/v1/apps', { key: k2.secret });
      assert.equal(over.status, 429);
      assert.equal(over.body.code, 'ERR_RATE_LIMITED');
      assert.equal(over.body.limit_scope, 'app');
      assert.ok(Number(over.headers.get('retry-after')) >= 1);
      const fresh = await api(s.url, 'GET', '/v1/apps', { key: k3.secret });
      assert.equal(fresh.status, 429, 'a key never used is still inside its app budget');
      assert.equal(fresh.body.limit_scope, 'app');

      const c = await createTenant(t.db, 'Neighbour');
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: c.key })).status, 200, 'another app is not affected');
    });

    test('limits unauthenticated routes per client IP, and one address does not exhaust another', async () => {
      const ok = await times(4, () => api(s.url, 'GET', '/healthz', { headers: from('203.0.113.10') }));
      assert.deepEqual(ok.map((r) => r.status), [200, 200, 200, 200]);
      assert.equal(ok[0]!.headers.get('ratelimit-limit'), '4');
      const refused = await api(s.url, 'GET', '/healthz', { headers: from('203.0.113.10') });
      assert.equal(refused.status, 429);
      assert.equal(refused.body.code, 'ERR_RATE_LIMITED');
      assert.equal(refused.body.limit_scope, 'ip');
      assert.ok(Number(refused.headers.get('retry-after')) >= 1);
      assert.equal((await api(s.url, 'GET', '/healthz', { headers: from('203.0.113.11') })).status, 200);
    });

    test('honours a per-route override (config.rateLimit) with its own budget', async () => {
      const ok = await times(2, () => api(s.url, 'GET', '/test/strict', { headers: from('203.0.113.20') }));
      assert.deepEqual(ok.map((r) => [r.status, r.headers.get('ratelimit-limit')]), [[200, '2'], [200, '2']]);
      const refused = await api(s.url, 'GET', '/test/strict', { headers: from('203.0.113.20') });
      assert.equal(refused.status, 429);
      assert.equal(refused.body.code, 'ERR_RATE_LIMITED');
      assert.equal((await api(s.url, 'GET', '/healthz', { headers: from('203.0.113.20') })).status, 200, 'the global budget is separate');
    });

    test('throttles an address after repeated failed authentications, even for a valid key, but not other addresses', async () => {
      const d = await createTenant(t.db, 'Victim');
      const { generateApiKey } = await import('../../src/crypto/apikey.js');
      const guesses = await times(4, () => api(s.url, 'GET', '/v1/apps', { key: generateApiKey('secret'), headers: from('198.51.100.1') }));
      assert.deepEqual(guesses.map((r) => r.body.code), ['ERR_KEY_UNKNOWN', 'ERR_KEY_UNKNOWN', 'ERR_KEY_UNKNOWN', 'ERR_KEY_UNKNOWN']);
      const blocked = await api(s.url, 'GET', '/v1/apps', { key: generateApiKey('secret'), headers: from('198.51.100.1') });
      assert.equal(blocked.status, 429);
      assert.equal(blocked.body.code, 'ERR_RATE_LIMITED');
      assert.equal(blocked.body.limit_scope, 'auth_failures');
      const sameIp = await api(s.url, 'GET', '/v1/apps', { key: d.key, headers: from('198.51.100.1') });
      assert.equal(sameIp.status, 429, 'the address is throttled for the rest of the window');
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: d.key, headers: from('198.51.100.2') })).status, 200);
    });

    test('refuses an oversized JSON body with 413 ERR_PAYLOAD_TOO_LARGE and creates nothing', async () => {
      const e = await createTenant(t.db, 'Bodies');
      const big = await api(s.url, 'POST', '/v1/apps', { key: e.key, body: { name: 'x'.repeat(2 * 1024 * 1024) } });
      assert.equal(big.status, 413);
      assert.equal(big.body.code, 'ERR_PAYLOAD_TOO_LARGE');
      const list = await api(s.url, 'GET', '/v1/apps', { key: e.key });
      assert.equal(list.body.data.length, 1);
      const small = await api(s.url, 'POST', '/v1/apps', { key: e.key, body: { name: 'fine' } });
      assert.equal(small.status, 201);
    });
  });

  describe(`strict CORS (${kind})`, () => {
    let t: TestDb;
    let s: PerimeterServer;
    let a: Tenant;
    let pk: { id: string; secret: string };

    before(async () => {
      t = await openTestDb(kind);
      // Key cache TTL 0: a revoked key's origin stops being reflected at once.
      s = await startPerimeterServer(t.db, { env: { OBSCURA_KEY_CACHE_TTL_MS: '0' } });
      a = await createTenant(t.db, 'Shop');
      pk = await mintKey(t.db, a, { kind: 'publishable', allowedOrigins: ['https://shop.example'] });
      await mintKey(t.db, a, { kind: 'secret', allowedOrigins: ['https://backend.example'] });
    });
    after(async () => {
      await s.close();
      await t.close();
    });

    const preflight = (origin: string) =>
      fetch(`${s.url}/v1/assets`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,tus-resumable,upload-length' } });

    test('answers a preflight from an origin a publishable key allows by reflecting exactly that origin', async () => {
      const r = await preflight('https://shop.example');
      assert.equal(r.status, 204);
      assert.equal(r.headers.get('access-control-allow-origin'), 'https://shop.example');
      assert.equal(r.headers.get('access-control-allow-credentials'), null, 'never with credentials');
      assert.match(r.headers.get('vary') ?? '', /origin/i);
      const allowed = (r.headers.get('access-control-allow-headers') ?? '').toLowerCase();
      for (const h of ['authorization', 'tus-resumable', 'upload-length', 'upload-offset']) assert.ok(allowed.includes(h), h);
      assert.match(r.headers.get('access-control-allow-methods') ?? '', /PATCH/);
    });

    test('gives no Access-Control-Allow-Origin to any other origin, including one only a secret key names', async () => {
      for (const origin of ['https://evil.example', 'https://backend.example', 'null', 'https://shop.example.evil.example']) {
        const r = await preflight(origin);
        assert.equal(r.headers.get('access-control-allow-origin'), null, origin);
        assert.notEqual(r.status, 204, origin);
      }
    });

    test('exposes the rate-limit and tus headers to the allowed origin, and the key check is still the wall', async () => {
      const r = await fetch(`${s.url}/v1/apps`, { headers: { origin: 'https://shop.example', authorization: `Bearer ${a.key}` } });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('access-control-allow-origin'), 'https://shop.example');
      const exposed = (r.headers.get('access-control-expose-headers') ?? '').toLowerCase();
      for (const h of ['ratelimit-remaining', 'retry-after', 'location', 'upload-offset', 'tus-resumable', 'x-request-id']) assert.ok(exposed.includes(h), h);
      // A browser on another origin gets no CORS grant, and the publishable key itself refuses it.
      const evil = await api(s.url, 'POST', '/v1/assets', { key: pk.secret, headers: { origin: 'https://evil.example' }, body: {} });
      assert.equal(evil.headers.get('access-control-allow-origin'), null);
      assert.equal(evil.status, 403);
      assert.equal(evil.body.code, 'ERR_ORIGIN_NOT_ALLOWED');
    });

    test('stops allowing an origin once the only publishable key naming it is revoked', async () => {
      assert.equal((await preflight('https://shop.example')).headers.get('access-control-allow-origin'), 'https://shop.example');
      const del = await api(s.url, 'DELETE', `/v1/keys/${pk.id}`, { key: a.key });
      assert.ok(del.status === 200 || del.status === 204, `revoke answered ${del.status}`);
      assert.equal((await preflight('https://shop.example')).headers.get('access-control-allow-origin'), null);
    });
  });
}

/** One embedded database shared by the suites below, where the database kind does not matter. */
let shared: Promise<TestDb> | undefined;
const sharedDb = () => (shared ??= openTestDb('pglite'));
after(async () => {
  if (shared) await (await shared).close();
});

describe('rate-limit defaults per key kind (issue 9, item 22)', () => {
  let t: TestDb;
  let s: PerimeterServer;

  before(async () => {
    t = await openTestDb('postgres');
    // The shipped defaults: nothing but what every test server sets.
    s = await startPerimeterServer(t.db, { env: { OBSCURA_TRUST_PROXY: '127.0.0.1' } });
  });
  after(async () => {
    await s?.close();
    await t?.close();
  });

  test('with the default limits, a backend sending more than a minute of 50 requests/s with one secret key inside one minute is never limited', async () => {
    assert.equal(s.config.perimeter.perKeyPerMinute, 60_000);
    assert.equal(s.config.perimeter.perAppPerMinute, 120_000);
    const a = await createTenant(t.db, 'Backend');
    // 3 100 requests (> 60 s × 50/s) as fast as 8 connections go: stricter than the same spread over a minute.
    const total = 3100;
    const statuses = new Map<number, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < total) {
          next++;
          const res = await fetch(`${s.url}/v1/whoami`, { headers: { authorization: `Bearer ${a.key}` } });
          await res.arrayBuffer();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }
      }),
    );
    assert.deepEqual([...statuses], [[200, total]]);
    // The legitimate twin of "never limited": the same key is limited once past its (configurable) budget.
    const last = await fetch(`${s.url}/v1/whoami`, { headers: { authorization: `Bearer ${a.key}` } });
    assert.equal(last.headers.get('ratelimit-limit'), '60000');
    assert.equal(Number(last.headers.get('ratelimit-remaining')), 60_000 - total - 1);
  });

  test('a publishable key is limited per visitor address, so one browser cannot use up the budget of the others', async () => {
    const small = await startPerimeterServer(t.db, { env: { OBSCURA_TRUST_PROXY: '127.0.0.1', OBSCURA_RATE_LIMIT_PUBLISHABLE_PER_MINUTE: '3' } });
    try {
      const a = await createTenant(t.db, 'Shop');
      const pk = await mintKey(t.db, a, { kind: 'publishable', allowedOrigins: ['https://shop.example.com'] });
      const visitor = (ip: string) => api(small.url, 'GET', '/v1/whoami', { key: pk.secret, headers: { origin: 'https://shop.example.com', ...from(ip) } });
      const first = await times(3, () => visitor('198.51.100.7'));
      assert.deepEqual(first.map((r) => r.status), [200, 200, 200]);
      assert.equal(first[0]!.headers.get('ratelimit-limit'), '3');
      const over = await visitor('198.51.100.7');
      assert.equal(over.status, 429);
      assert.equal(over.body.code, 'ERR_RATE_LIMITED');
      assert.equal(over.body.limit_scope, 'key');
      assert.equal((await visitor('198.51.100.8')).status, 200, 'another visitor of the same site keeps its budget');
      // The secret key of the same app is not held to the browser budget.
      const backend = await times(5, () => api(small.url, 'GET', '/v1/whoami', { key: a.key, headers: from('198.51.100.7') }));
      assert.ok(backend.every((r) => r.status === 200));
    } finally {
      await small.close();
    }
  });
});

describe('load shedding', () => {
  let t: TestDb;
  before(async () => {
    t = await sharedDb();
  });

  test('answers 503 ERR_UNAVAILABLE with Retry-After while the event loop stays overloaded, then recovers', async () => {
    const s = await startPerimeterServer(t.db, { env: { OBSCURA_SHED_EVENT_LOOP_DELAY_MS: '40', OBSCURA_SHED_SAMPLE_INTERVAL_MS: '100', OBSCURA_SHED_RETRY_AFTER_SECONDS: '7' } });
    // Sustained CPU-bound load in this process (the server shares its event loop): 80 ms slices.
    const busy = () => {
      const until = Date.now() + 80;
      while (Date.now() < until) {
        /* busy */
      }
    };
    let hog: NodeJS.Timeout | undefined;
    try {
      assert.equal((await api(s.url, 'GET', '/healthz')).status, 200);
      // One long stall alone is not overload: the loop is free again afterwards.
      busy();
      busy();
      busy();
      await new Promise((res) => setTimeout(res, 150));
      assert.equal((await api(s.url, 'GET', '/healthz')).status, 200, 'a single stall does not shed');

      hog = setInterval(busy, 1);
      const seen: number[] = [];
      let shed: Awaited<ReturnType<typeof api>> | undefined;
      for (const deadline = Date.now() + 5000; !shed && Date.now() < deadline; ) {
        const r = await api(s.url, 'GET', '/healthz');
        seen.push(r.status);
        if (r.status === 503) shed = r;
      }
      clearInterval(hog);
      hog = undefined;
      assert.ok(shed, `no 503 seen: ${seen.join(',')}`);
      assert.equal(shed.body.code, 'ERR_UNAVAILABLE');
      assert.match(shed.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(shed.headers.get('retry-after'), '7');

      let recovered = false;
      for (const deadline = Date.now() + 5000; !recovered && Date.now() < deadline; ) {
        recovered = (await api(s.url, 'GET', '/healthz')).status === 200;
        if (!recovered) await new Promise((res) => setTimeout(res, 50));
      }
      assert.ok(recovered, 'serves again once the load is gone');
      assert.match(await s.perimeter.metrics.registry.getSingleMetricAsString('obscura_load_shed_total'), /reason="event_loop_delay"\} [1-9]/);
    } finally {
      if (hog) clearInterval(hog);
      await s.close();
    }
  });

  test('sheds load when heap use is above the threshold', async () => {
    const s = await startPerimeterServer(t.db, { env: { OBSCURA_SHED_HEAP_USED_BYTES: '1', OBSCURA_SHED_SAMPLE_INTERVAL_MS: '20' } });
    try {
      await new Promise((res) => setTimeout(res, 100));
      const r = await api(s.url, 'GET', '/healthz');
      assert.equal(r.status, 503);
      assert.equal(r.body.code, 'ERR_UNAVAILABLE');
      assert.equal(r.headers.get('retry-after'), '10');
    } finally {
      await s.close();
    }
  });
});

describe('rate limits shared through Redis', () => {
  let redis: TestRedis;
  let t: TestDb;
  before(async () => {
    // No skip: if redis-server is missing this fails (scripts/ensure-system-deps.sh redis-server).
    redis = await startRedis();
    t = await sharedDb();
  });
  after(async () => {
    await redis?.stop();
  });

  test('two servers on one Redis share a key budget; without Redis each counts alone', async () => {
    const a = await createTenant(t.db, 'Shared');
    const env = { OBSCURA_RATE_LIMIT_PER_MINUTE: '6', OBSCURA_REDIS_URL: redis.url, OBSCURA_REDIS_COMMAND_TIMEOUT_MS: '5000' };
    const s1 = await startPerimeterServer(t.db, { env });
    const s2 = await startPerimeterServer(t.db, { env });
    try {
      const servers = [s1, s2, s1, s2, s1, s2];
      const rs = [];
      for (const s of servers) rs.push(await api(s.url, 'GET', '/v1/apps', { key: a.key }));
      assert.deepEqual(rs.map((r) => r.status), [200, 200, 200, 200, 200, 200]);
      assert.deepEqual(rs.map((r) => r.headers.get('ratelimit-remaining')), ['5', '4', '3', '2', '1', '0'], 'one budget across both nodes');
      const r1 = await api(s1.url, 'GET', '/v1/apps', { key: a.key });
      const r2 = await api(s2.url, 'GET', '/v1/apps', { key: a.key });
      assert.deepEqual([r1.status, r2.status], [429, 429]);
      assert.equal(r2.body.code, 'ERR_RATE_LIMITED');
    } finally {
      await s1.close();
      await s2.close();
    }

    // Control: the same split without Redis gives each node its own budget (so Redis is what shared it).
    const b = await createTenant(t.db, 'Unshared');
    const l1 = await startPerimeterServer(t.db, { env: { OBSCURA_RATE_LIMIT_PER_MINUTE: '6' } });
    const l2 = await startPerimeterServer(t.db, { env: { OBSCURA_RATE_LIMIT_PER_MINUTE: '6' } });
    try {
      const statuses = [];
      for (let i = 0; i < 8; i++) statuses.push((await api((i % 2 ? l2 : l1).url, 'GET', '/v1/apps', { key: b.key })).status);
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 200, 200]);
    } finally {
      await l1.close();
      await l2.close();
    }
  });

  test('keeps limiting per node when Redis goes away, instead of failing open or failing requests', async () => {
    const own = await startRedis();
    const a = await createTenant(t.db, 'Outage');
    const s = await startPerimeterServer(t.db, { env: { OBSCURA_RATE_LIMIT_PER_MINUTE: '3', OBSCURA_REDIS_URL: own.url } });
    try {
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: a.key })).status, 200);
      await own.stop();
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await api(s.url, 'GET', '/v1/apps', { key: a.key })).status);
      assert.deepEqual(statuses, [200, 200, 200, 429]);
    } finally {
      await s.close();
      await own.stop();
    }
  });

  test('an authenticated request costs one Redis round trip for its key, app and failed-auth windows, and an address over its failed-auth budget is still refused with a valid key', async () => {
    const a = await createTenant(t.db, 'OneTrip');
    const s = await startPerimeterServer(t.db, {
      env: { OBSCURA_RATE_LIMIT_PER_MINUTE: '50', OBSCURA_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE: '2', OBSCURA_REDIS_URL: redis.url, OBSCURA_TRUST_PROXY: '127.0.0.1' },
    });
    const { Redis } = await import('ioredis');
    const probe = new Redis(redis.url);
    // Script calls as Redis counts them (EVALSHA, or EVAL the first time a node runs the script).
    const scriptCalls = async () => {
      const info = await probe.info('commandstats');
      return [...info.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    };
    try {
      assert.equal((await api(s.url, 'GET', '/v1/apps', { key: a.key, headers: from('192.0.2.60') })).status, 200); // the key is now cached
      const before = await scriptCalls();
      const ok = await times(5, () => api(s.url, 'GET', '/v1/apps', { key: a.key, headers: from('192.0.2.60') }));
      assert.deepEqual(ok.map((r) => r.status), [200, 200, 200, 200, 200]);
      assert.deepEqual(ok.map((r) => r.headers.get('ratelimit-remaining')), ['48', '47', '46', '45', '44']);
      assert.equal((await scriptCalls()) - before, 5, 'one round trip per request');

      // The failed-auth throttle rides in the same script: after 3 refused guesses from one address,
      // the cached valid key is refused from it too (and spends none of its budget); not elsewhere.
      const { generateApiKey } = await import('../../src/crypto/apikey.js');
      const guesses = await times(3, () => api(s.url, 'GET', '/v1/apps', { key: generateApiKey('secret'), headers: from('198.51.100.60') }));
      assert.deepEqual(guesses.map((r) => r.status), [401, 401, 401]);
      const blocked = await api(s.url, 'GET', '/v1/apps', { key: a.key, headers: from('198.51.100.60') });
      assert.equal(blocked.status, 429);
      assert.equal(blocked.body.code, 'ERR_RATE_LIMITED');
      assert.equal(blocked.body.limit_scope, 'auth_failures');
      const elsewhere = await api(s.url, 'GET', '/v1/apps', { key: a.key, headers: from('192.0.2.60') });
      assert.equal(elsewhere.status, 200);
      assert.equal(elsewhere.headers.get('ratelimit-remaining'), '43', 'the refused request did not count against the key');
    } finally {
      probe.disconnect();
      await s.close();
    }
  });

  test('refuses to start when the configured Redis is unreachable', async () => {
    await assert.rejects(startPerimeterServer(t.db, { env: { OBSCURA_REDIS_URL: 'redis://127.0.0.1:1' } }), /REDIS_URL/);
  });

  test('two `obscura serve` processes share one limit through Redis', async () => {
    const { url } = await createEmptyDatabase('postgres');
    const db = await openDatabase({ kind: 'postgres', url: url!, poolSize: 2 });
    const procs: ServeProcess[] = [];
    try {
      const a = await createTenant(db, 'Fleet');
      const env = {
        DATABASE_URL: url!,
        OBSCURA_MASTER_KEY: randomBytes(32).toString('hex'),
        OBSCURA_REDIS_URL: redis.url,
        OBSCURA_RATE_LIMIT_PER_MINUTE: '6',
        OBSCURA_ROLE: 'api',
        // A cold child on a loaded CI machine can take longer than the default 250 ms for its first
        // commands; a timeout makes it count locally (tested separately), which is not this test's subject.
        OBSCURA_REDIS_COMMAND_TIMEOUT_MS: '5000',
      };
      procs.push(...(await Promise.all([spawnServe({ ...env, OBSCURA_DATA_DIR: join(tempDir(), 'a') }), spawnServe({ ...env, OBSCURA_DATA_DIR: join(tempDir(), 'b') })])));
      const [p1, p2] = procs as [ServeProcess, ServeProcess];
      assert.notEqual(p1.url, p2.url);
      const statuses = [];
      for (let i = 0; i < 8; i++) statuses.push((await api((i % 2 ? p2 : p1).url, 'GET', '/v1/apps', { key: a.key })).status);
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 429, 429]);
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      await db.close();
    }
  });
});

interface ServeProcess {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

const ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../../' : '../../', import.meta.url));

/**
 * Starts the real `obscura serve` in a child process: the compiled CLI when this test runs from
 * dist/ (npm test), the TypeScript source through tsx otherwise (iterating without a build).
 */
function spawnServe(env: Record<string, string>): Promise<ServeProcess> {
  const compiled = import.meta.url.includes('/dist/');
  const args = compiled
    ? [join(ROOT, 'bin', 'obscura.js'), 'serve']
    : ['--import', 'tsx', '--input-type=module', '-e', `const { run } = await import(${JSON.stringify(new URL('src/cli/main.ts', `file://${ROOT}`).href)}); process.exitCode = await run(['serve']);`];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, env: cliEnv({ OBSCURA_PORT: '0', ...env }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not start: ${out}`));
    }, 60_000);
    const onData = (d: Buffer) => {
      out += d;
      const m = /OBSCURA_LISTENING (\S+)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        child,
        url: m[1]!,
        stop: () =>
          new Promise<void>((res) => {
            if (child.exitCode !== null || child.signalCode !== null) return res();
            child.once('exit', () => res());
            child.kill('SIGTERM');
          }),
      });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}: ${out}`));
    });
  });
}
