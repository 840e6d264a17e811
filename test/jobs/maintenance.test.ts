/**
 * Maintenance on the queue (issue 14, items 5 and 8): retention and the other sweeps run as one
 * pg-boss job per interval for the whole fleet, and retention is per app for originals and outputs.
 *
 * - With a fake clock, the production maintenance job (`startHousekeeping`, what `obscura serve`
 *   starts) deletes what is past its app's retention and nothing under legal hold.
 * - Two `obscura serve` processes on one PostgreSQL run each occurrence of the schedule once.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createEmptyDatabase, openTestDb, tempDir, type TestDb } from '../support/db.js';
import { api, createTenant, masterKeysFor, startServer, TEST_SERVER_ENV, type Tenant, type TestServer } from '../support/server.js';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';
import { markedPng } from '../support/media.js';
import { loadConfig } from '../../src/config/index.js';
import { startHousekeeping } from '../../src/main.js';
import type { MaintenanceSchedule } from '../../src/jobs/schedules.js';

/** Polls `check` until it returns true, at most `ms`. */
async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('retention through the maintenance job, with a fake clock (embedded database)', () => {
  let t: TestDb;
  let s: TestServer;
  let a: Tenant;
  let housekeeping: MaintenanceSchedule | undefined;
  // The clock the maintenance job reads: real time plus a skip the test moves forward.
  let skipMs = 0;

  before(async () => {
    t = await openTestDb('pglite');
    s = await startServer(t.db);
    a = await createTenant(t.db, 'Keeper');
  });
  after(async () => {
    await housekeeping?.stop();
    await s?.close();
    await t?.close();
  });

  const upload = async (key: string, label: string) => {
    const r = await fetch(`${s.url}/v1/assets?filename=${label}.png`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: new Uint8Array(await markedPng(label, 24, 16)) });
    assert.equal(r.status, 201, await r.clone().text());
    return (await r.json()) as { id: string; created_at: string; expires_at: string | null };
  };
  const status = async (id: string) => (await api(s.url, 'GET', `/v1/assets/${id}`, { key: a.key })).status;

  test('per-app retention of originals and outputs is set and shown in the app, the data report and the assets; a shorter retention reaches stored originals', async () => {
    const app = await api(s.url, 'POST', '/v1/apps', { key: a.key, body: { name: 'short', settings: { retention_seconds: 600, output_retention_seconds: 120 } } });
    assert.equal(app.status, 201, JSON.stringify(app.body));
    // This server's OBSCURA_METADATA_POLICY is keep (test support): the operator's default shows through.
    assert.deepEqual(app.body.effective, { metadata_policy: 'keep', retention_seconds: 600, output_retention_seconds: 120 });
    const dflt = await api(s.url, 'GET', `/v1/apps/${a.appId}`, { key: a.key });
    assert.deepEqual(dflt.body.effective, { metadata_policy: 'keep', retention_seconds: null, output_retention_seconds: 86400 }, 'defaults are visible');
    // The app list (GET /v1/apps, the API's and the console's) carries the same effective policy.
    const listed = await api(s.url, 'GET', '/v1/apps', { key: a.key });
    assert.equal(listed.status, 200);
    const byId = new Map(listed.body.data.map((x: { id: string; effective: unknown }) => [x.id, x.effective]));
    assert.deepEqual(byId.get(app.body.id), app.body.effective);
    assert.deepEqual(byId.get(a.appId), dflt.body.effective);
    const bad = await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { output_retention_seconds: 30 } } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'ERR_VALIDATION');
    const report = await api(s.url, 'GET', `/v1/orgs/${a.orgId}/data-report`, { key: a.key });
    const line = report.body.retention.find((r: { app_id: string }) => r.app_id === app.body.id);
    assert.deepEqual({ o: line.originals_seconds, p: line.outputs_seconds, m: line.metadata_policy }, { o: 600, p: 120, m: 'keep' });

    // Originals of the default app (kept until deleted) get an expiry once the app sets a retention.
    const before = await upload(a.key, 'kept-then-short');
    assert.equal(before.expires_at, null);
    const patched = await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { retention_seconds: 3600 } } });
    assert.equal(patched.status, 200);
    const now = (await api(s.url, 'GET', `/v1/assets/${before.id}`, { key: a.key })).body;
    assert.equal(new Date(now.expires_at).getTime(), new Date(before.created_at).getTime() + 3600_000, 'the shorter retention reaches the stored original');
    // Lengthening never moves an expiry later.
    await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { retention_seconds: null } } });
    assert.equal((await api(s.url, 'GET', `/v1/assets/${before.id}`, { key: a.key })).body.expires_at, now.expires_at);
    const audit = await api(s.url, 'GET', '/v1/audit?limit=50', { key: a.key });
    assert.ok(audit.body.data.some((e: { action: string; data: { originals?: number } }) => e.action === 'app.retention_applied' && e.data.originals === 1));
  });

  test('the maintenance job deletes originals and outputs past their app retention and nothing under legal hold or not yet due', async () => {
    const app = await api(s.url, 'POST', '/v1/apps', { key: a.key, body: { name: 'sixty', settings: { retention_seconds: 60, output_retention_seconds: 180 } } });
    const k = await api(s.url, 'POST', `/v1/apps/${app.body.id}/keys`, { key: a.key, body: { kind: 'secret' } });
    const key = k.body.secret as string;
    const doomed = await upload(key, 'doomed');
    const held = await upload(key, 'held');
    assert.equal((await api(s.url, 'PATCH', `/v1/assets/${held.id}`, { key: a.key, body: { legal_hold: true } })).status, 200);
    const forever = await upload(a.key, 'forever-app');
    await api(s.url, 'PATCH', `/v1/apps/${a.appId}`, { key: a.key, body: { settings: { retention_seconds: null } } });
    const out = await api(s.url, 'POST', '/v1/process', { key, body: { input: { asset_id: doomed.id }, operations: 'resize:width=8/format:png', output: { store: true } } });
    assert.equal(out.status, 201, JSON.stringify(out.body));
    const output = out.body.asset ?? out.body;
    // expires_at is from the server's clock, created_at from the database's: equal to a second.
    assert.ok(Math.abs(new Date(output.expires_at).getTime() - new Date(output.created_at).getTime() - 180_000) < 2000, "the app's output retention applies");

    // The production maintenance (what `serve` starts), on the queue every 500 ms, 61 s in the future.
    skipMs = 61_000;
    const config = loadConfig({ ...TEST_SERVER_ENV, OBSCURA_MAINTENANCE_INTERVAL_MS: '500' });
    housekeeping = await startHousekeeping(config, { db: t.db, masterKeys: masterKeysFor(t.db) }, s.store, { now: () => Date.now() + skipMs });
    assert.equal(housekeeping.cron, null, 'under a minute: offered every interval, not a cron schedule');
    await until(async () => (await status(doomed.id)) === 404, 30_000, 'the expired original to be removed');
    assert.equal(await status(held.id), 200, 'a held asset is never expired');
    assert.equal(await status(output.id), 200, 'the output is not due yet (180 s)');
    assert.equal(await status(forever.id), 200, 'an app without retention keeps its originals');
    skipMs = 181_000;
    await until(async () => (await status(output.id)) === 404, 30_000, 'the expired output to be removed');
    assert.equal(await status(held.id), 200, 'still held, still kept');
    assert.equal(await status(forever.id), 200);
    const audit = await api(s.url, 'GET', '/v1/audit?limit=200', { key: a.key });
    const expired = audit.body.data.filter((e: { action: string }) => e.action === 'asset.expire').map((e: { target: { asset: string } }) => e.target.asset);
    assert.deepEqual(expired.sort(), [doomed.id, output.id].sort(), 'each expiry audited once, nothing else expired');
  });
});

describe('two serve processes on one PostgreSQL run each maintenance occurrence once', () => {
  const nodes: ServerProcess[] = [];
  let adminUrl: string;
  let startedAt = 0;

  before(async () => {
    const db = await createEmptyDatabase('postgres');
    adminUrl = db.adminUrl!;
    const env = { DATABASE_URL: db.url!, OBSCURA_MASTER_KEY: randomBytes(32).toString('hex'), OBSCURA_DATA_DIR: tempDir(), OBSCURA_JOB_MONITOR_INTERVAL_SECONDS: '5' };
    const init = await runCli(['init', '--json', '--email', 'owner@fleet.test', '--password-stdin'], env, { input: 'correct horse battery staple fleet\n' });
    assert.equal(init.code, 0, init.stderr);
    startedAt = Date.now();
    nodes.push(await startServe(env));
    nodes.push(await startServe(env));
  });
  after(async () => {
    for (const n of nodes) await n.stop('SIGKILL');
  });

  test('the default schedule (every minute) fires from one node: every run is its own job, run by one process, at most one per minute slot', async () => {
    const runs = () =>
      nodes.flatMap((n, i) =>
        n
          .output()
          .split('\n')
          .filter((l) => l.includes('"maintenance run"'))
          .map((l) => ({ node: i, job: (JSON.parse(l) as { job: string }).job })),
      );
    await until(async () => runs().length >= 1, 60_000, 'a maintenance run on either node');
    // Both nodes have had their own cron pass by now (each runs one at start, then every 5 s).
    await new Promise((r) => setTimeout(r, 6000));
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      const jobs = (await client.query("select id from pgboss.job where name = 'obscura_maintenance'")).rows as Array<{ id: string }>;
      // Each minute the test spanned may fire once; timers in every process would run two at start.
      const minutes = Math.floor(Date.now() / 60_000) - Math.floor(startedAt / 60_000) + 1;
      const seen = runs();
      assert.ok(seen.length >= 1);
      assert.equal(new Set(seen.map((r) => r.job)).size, seen.length, `no job ran twice: ${JSON.stringify(seen)}`);
      assert.deepEqual(new Set(seen.map((r) => r.job)), new Set(jobs.map((j) => j.id)), 'every run is a queued job and every job ran');
      assert.ok(jobs.length <= minutes, `at most one job per minute: ${jobs.length} jobs in ${minutes} minute(s)`);
      const schedules = (await client.query("select name, cron from pgboss.schedule where name = 'obscura_maintenance'")).rows;
      assert.deepEqual(schedules, [{ name: 'obscura_maintenance', cron: '* * * * *' }], 'one schedule row for the fleet');
    } finally {
      await client.end();
    }
  });
});
