/**
 * The benchmark runner (`npm run bench`, bench/run.ts) works end to end: a smoke run starts the real
 * servers (embedded default and PostgreSQL mode), measures every row of issue 12 once with tiny sizes
 * and writes a JSON result. Shape only: a benchmark never fails on time, so no figure is compared
 * with a goal here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../support/cli.js';
import { tempDir } from '../support/db.js';

const RUN = join(ROOT, 'dist', 'bench', 'run.js');
const ROW_IDS = ['tus_upload', 'download_large', 'download_small', 'auth_noop', 'transform', 'rss_idle', 'rss_peak_upload', 'eventloop_p99', 'healthz_p99', 'mixed_uploads', 'mixed_throughput'];

function runBench(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // The suite's PostgreSQL (OBSCURA_TEST_PG_ADMIN_URL) is passed on: PostgreSQL mode reuses it.
    const child = spawn(process.execPath, [RUN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('a smoke run of npm run bench measures every row of the issue once and writes a JSON result with each', { timeout: 600_000 }, async () => {
  const dir = tempDir('obscura-bench-test-');
  const out = join(dir, 'result.json');
  try {
    // Generous: on 2 shared cores a single `obscura init` of the embedded database can take a minute.
    const r = await runBench(['--smoke', '--out', out], 540_000);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const result = JSON.parse(readFileSync(out, 'utf8'));
    assert.equal(result.mode, 'smoke');
    assert.equal(result.rounds, 1);
    assert.match(result.commit, /^[0-9a-f]{40}$/);
    assert.deepEqual(result.errors, []);
    assert.equal(result.calibration.samples.length, 1);
    assert.ok(result.calibration.median > 0);
    assert.deepEqual(result.rows.map((row: { id: string }) => row.id), ROW_IDS);
    for (const row of result.rows) {
      assert.equal(row.samples.length, 1, `${row.id} has one sample`);
      assert.ok(Number.isFinite(row.median), `${row.id} has a median`);
      assert.equal(typeof row.goal, 'string');
      assert.equal(typeof row.meets_goal, 'boolean', `${row.id} says whether it meets its goal`);
      if (row.kind === 'ratio') assert.ok(Number.isFinite(row.ratio?.median), `${row.id} has a ratio to its baseline`);
    }
    const mixed = result.per_round[0].mixed;
    for (const db of ['pglite', 'postgres']) {
      for (const route of ['upload', 'process', 'download', 'api', 'healthz']) assert.ok(mixed[db].routes[route].count > 0, `${db} ${route} was exercised`);
    }
    // The printed table names every row too.
    for (const row of result.rows) assert.ok(r.stdout.includes(row.title), `the table prints ${row.id}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('npm run bench refuses an unknown --only row with exit code 2 and lists the rows', async () => {
  const r = await runBench(['--only', 'no_such_row'], 60_000);
  assert.equal(r.code, 2);
  for (const id of ROW_IDS) assert.ok(r.stderr.includes(id), `names ${id}`);
});
