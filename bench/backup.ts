/**
 * Backup benchmark (issue 14). Prints, never asserts.
 *
 * An embedded deployment with N MiB of blobs (default 64 MiB: 64 assets of 1 MiB, uploaded through a
 * real `obscura serve`), then, with the server still running:
 * 1. `obscura backup create --to DIR` (the whole command: process start, dump through the server's
 *    socket, sealing, blob copies with fsync, manifest) vs `cp -r` of the same blobs and database files.
 *    Goal: >= 0.8x (cp time / backup time).
 * 2. A second, incremental backup (nothing new to copy).
 * 3. `obscura backup restore DIR --to-data-dir NEW` (digest checks, load, audit verify, decrypt sample)
 *    vs `cp -r` of the archive. Goal: >= 0.8x.
 *
 * Usage: npm run build && node dist/bench/backup.js [--mib 64] [--blob-mib 1] [--rounds 1]
 * (the figure is 1 GiB: --mib 1024; the default stays small enough to run in about a minute).
 * With --rounds N the data is uploaded once and steps 1-3 (each against its own `cp -r`, into fresh
 * directories) run N times; the medians are printed (the machine is shared: quote medians).
 */
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { median } from './lib.js';
import sharp from 'sharp';
import { runCli, startServe } from '../test/support/cli.js';
import { tempDir } from '../test/support/db.js';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '64' }, 'blob-mib': { type: 'string', default: '1' }, rounds: { type: 'string', default: '1' } } });
const total = Number(values.mib) * 1024 * 1024;
const blobSize = Number(values['blob-mib']) * 1024 * 1024;
const count = Math.max(1, Math.round(total / blobSize));

const work = tempDir('obscura-bench-backup-');
const dataDir = join(work, 'data');
const env = { OBSCURA_DATA_DIR: dataDir, OBSCURA_BACKUP_KEY: randomBytes(32).toString('hex'), OBSCURA_LOG_LEVEL: 'warn' };

const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;
const timed = async (fn: () => Promise<unknown> | unknown): Promise<number> => {
  const start = process.hrtime.bigint();
  await fn();
  return seconds(start);
};
const cp = (from: string[], to: string) => execFileSync('cp', ['-r', ...from, to]);
const sync = () => execFileSync('sync');

async function main(): Promise<void> {
  const init = await runCli(['init', '--json'], env, { timeoutMs: 300_000 });
  if (init.code !== 0) throw new Error(init.stderr);
  const key = JSON.parse(init.stdout).secret_key.key as string;
  const server = await startServe(env, 300_000);
  try {
    const head = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#3366aa' } }).png().toBuffer();
    const upStart = process.hrtime.bigint();
    for (let i = 0; i < count; i++) {
      const body = Buffer.concat([head, randomBytes(blobSize - head.length)]);
      // A loaded machine now and then drops an upload's connection (EPIPE): setup retries, timing is not measured here.
      for (let attempt = 1; ; attempt++) {
        try {
          const res = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' }, body: new Uint8Array(body) });
          if (res.status !== 201) throw new Error(`upload ${i}: ${res.status} ${await res.text()}`);
          break;
        } catch (err) {
          if (attempt === 3) throw err;
        }
      }
    }
    console.log(`setup: ${count} assets of ${values['blob-mib']} MiB uploaded in ${seconds(upStart).toFixed(1)} s`);

    const rows: { cpBackup: number; backup: number; incremental: number; cpRestore: number; restore: number }[] = [];
    let mib = 0;
    for (let round = 1; round <= Number(values.rounds); round++) {
      const dir = join(work, `round-${round}`);
      sync();
      const cpTarget = join(dir, 'cp-backup');
      const cpBackup = await timed(() => {
        execFileSync('mkdir', ['-p', cpTarget]);
        cp([join(dataDir, 'blobs'), join(dataDir, 'db')], cpTarget);
        sync();
      });
      const archive = join(dir, 'archive');
      let report: { blobs: { copied: number; bytes_copied: number }; database: { size: number }; phases_ms?: unknown } | undefined;
      let restored: { phases_ms?: unknown } | undefined;
      const backup = await timed(async () => {
        const r = await runCli(['backup', 'create', '--to', archive, '--json'], env, { timeoutMs: 600_000 });
        if (r.code !== 0) throw new Error(r.stderr);
        report = JSON.parse(r.stdout);
        sync();
      });
      const incremental = await timed(async () => {
        const r = await runCli(['backup', 'create', '--to', archive, '--json'], env, { timeoutMs: 600_000 });
        if (r.code !== 0) throw new Error(r.stderr);
      });
      const cpRestore = await timed(() => {
        cp([archive], join(dir, 'cp-restore'));
        sync();
      });
      const restore = await timed(async () => {
        const r = await runCli(['backup', 'restore', archive, '--to-data-dir', join(dir, 'restored'), '--json'], env, { timeoutMs: 600_000 });
        if (r.code !== 0) throw new Error(r.stderr);
        restored = JSON.parse(r.stdout);
        sync();
      });
      mib = (report!.blobs.bytes_copied + report!.database.size) / 1024 / 1024;
      rows.push({ cpBackup, backup, incremental, cpRestore, restore });
      console.log(`round ${round}: backup ${backup.toFixed(2)} s vs cp -r ${cpBackup.toFixed(2)} s (${(cpBackup / backup).toFixed(2)}x); incremental ${incremental.toFixed(2)} s; restore ${restore.toFixed(2)} s vs cp -r ${cpRestore.toFixed(2)} s (${(cpRestore / restore).toFixed(2)}x)`);
      // The commands' own account of where the time went (absent before phases_ms existed).
      if (report!.phases_ms) console.log(`  backup phases_ms ${JSON.stringify(report!.phases_ms)}; restore phases_ms ${JSON.stringify(restored?.phases_ms)}`);
      rmSync(dir, { recursive: true, force: true });
    }
    const med = (pick: (r: (typeof rows)[number]) => number) => median(rows.map(pick));
    const backup = med((r) => r.backup);
    console.log(`median of ${rows.length} round(s):`);
    console.log(`backup:      obscura ${backup.toFixed(2)} s (${mib.toFixed(1)} MiB, ${(mib / backup).toFixed(0)} MiB/s)  cp -r ${med((r) => r.cpBackup).toFixed(2)} s  ratio ${med((r) => r.cpBackup / r.backup).toFixed(2)}x (goal >= 0.8x)`);
    console.log(`incremental: obscura ${med((r) => r.incremental).toFixed(2)} s (nothing new to copy)`);
    console.log(`restore:     obscura ${med((r) => r.restore).toFixed(2)} s (with audit verify and decrypt check)  cp -r ${med((r) => r.cpRestore).toFixed(2)} s  ratio ${med((r) => r.cpRestore / r.restore).toFixed(2)}x (goal >= 0.8x)`);
    console.log('(each obscura figure includes starting the process and opening the database)');
  } finally {
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
