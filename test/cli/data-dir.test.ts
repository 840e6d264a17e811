/**
 * Issue 9, item 6 (first half): a pre-created data dir that other local users can read is refused,
 * naming the directory and the fix, and `obscura doctor` reports it; once tightened, it is used.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/db.js';
import { runCli, startServe, type ServerProcess } from '../support/cli.js';

describe('a data dir other users can read', () => {
  const dataDir = join(tempDir(), 'data');
  mkdirSync(dataDir, { mode: 0o755 });
  chmodSync(dataDir, 0o755); // whatever the umask
  const env = { OBSCURA_DATA_DIR: dataDir };
  let server: ServerProcess | undefined;
  after(async () => {
    await server?.stop('SIGKILL');
  });

  test('serve and init refuse a 0755 data dir, naming it and the chmod that fixes it, and write nothing into it', async () => {
    for (const args of [['serve'], ['init', '--json']]) {
      const r = await runCli(args, env);
      assert.equal(r.code, 1, `${args[0]}: ${r.stderr}`);
      assert.ok(r.stderr.includes(dataDir), r.stderr);
      assert.match(r.stderr, /chmod 700/);
      assert.match(r.stderr, /0755/);
    }
    const { readdirSync } = await import('node:fs');
    assert.deepEqual(readdirSync(dataDir), [], 'no database, key or lock file was created');
  });

  test('doctor reports the data dir as unsafe (exit 1)', async () => {
    const r = await runCli(['doctor', '--json'], env);
    assert.equal(r.code, 1);
    const findings = JSON.parse(r.stdout).findings as Array<{ level: string; setting: string }>;
    assert.ok(findings.some((f) => f.setting === 'OBSCURA_DATA_DIR' && f.level === 'unsafe'), r.stdout);
  });

  test('after chmod 700 the same data dir is used, and doctor no longer reports it', async () => {
    chmodSync(dataDir, 0o700);
    server = await startServe(env, 120_000); // an empty data dir: PGlite's first initdb is slow on a busy 2-core machine
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
    const r = await runCli(['doctor', '--json'], env);
    const findings = JSON.parse(r.stdout).findings as Array<{ setting: string }>;
    assert.ok(!findings.some((f) => f.setting === 'OBSCURA_DATA_DIR'), r.stdout);
  });
});
