/**
 * CPU per request in process (issue 12, items 3 and 4). Prints, never asserts.
 *
 * On 2 shared cores the HTTP ratios swing 0.4–1.7× between runs of the same code (docs/performance.md);
 * the CPU a request costs, measured in process, is steadier. This builds the app (`buildApp`, product
 * perimeter: shedding hooks, CORS, rate limits lifted as in every benchmark, metering, quotas; logger
 * on at `warn` into a sink, as `obscura serve` logs) and drives it with `app.inject` (no sockets: the
 * kernel's `writev` is left out on both sides), `--concurrency` requests in flight. Each round runs
 * every target once, in an order that rotates between rounds, and reports the process's CPU time
 * (`process.cpuUsage`: every thread, the database's and libuv's included) per request.
 *
 * Targets: `healthz` (GET /healthz), `whoami` (GET /v1/whoami with a secret key), `download` (signed
 * URLs of `--files` assets of 16 KiB, round robin, the `download_small` row), and `static` (the
 * benchmark's static file server handler, `statSync` + `createReadStream`, injected the same way:
 * light-my-request drives a plain `(req, res)` handler too).
 *
 * Usage: npm run build && node dist/bench/per-request.js [--rounds 7] [--requests 2000] [--concurrency 8] [--files 100]
 *   [--only download,whoami] (one route's load, e.g. under `node --cpu-prof`)
 */
import { parseArgs } from 'node:util';
import { createReadStream, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import inject from 'light-my-request';
import { loadConfig } from '../src/config/index.js';
import { buildApp } from '../src/app.js';
import { createFsStore } from '../src/assets/stores/fs.js';
import { openTestDb, tempDir } from '../test/support/db.js';
import { createTenant, masterKeysFor, TEST_SERVER_ENV } from '../test/support/server.js';
import { benchEnv, isMain, median, pngPadded } from './lib.js';

type Target = 'healthz' | 'whoami' | 'download' | 'static';
const TARGETS: Target[] = ['healthz', 'whoami', 'download', 'static'];

interface Options {
  rounds: number;
  requests: number;
  concurrency: number;
  files: number;
  /** Only these targets (a profile of one route). */
  only?: Target[] | undefined;
}

/** One target's figures over the rounds. */
export interface PerRequestFigures {
  cpuUs: Record<Target, number[]>;
  rps: Record<Target, number[]>;
}

async function drive(requests: number, concurrency: number, one: (i: number) => Promise<number>): Promise<{ cpuUs: number; rps: number }> {
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const worker = async () => {
    while (next < requests) {
      const status = await one(next++);
      if (status !== 200) throw new Error(`unexpected status ${status}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { cpuUs: (cpu.user + cpu.system) / requests, rps: requests / wall };
}

export async function run(o: Options): Promise<PerRequestFigures> {
  const t = await openTestDb('pglite');
  const work = tempDir('obscura-bench-per-request-');
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const config = loadConfig({ ...TEST_SERVER_ENV, ...benchEnv(), OBSCURA_PUBLIC_URL: 'http://127.0.0.1:1' });
  const store = await createFsStore({ root: join(work, 'blobs') });
  const { app } = await buildApp(config, { db: t.db, masterKeys: masterKeysFor(t.db), store, logger: { stream: sink, level: 'warn' } });
  await app.ready();
  try {
    const tenant = await createTenant(t.db, 'bench');
    const auth = { authorization: `Bearer ${tenant.key}` };
    const staticDir = join(work, 'static');
    mkdirSync(staticDir);
    const paths: string[] = [];
    const names: string[] = [];
    for (let i = 0; i < o.files; i++) {
      // A PNG head padded with ASCII: light-my-request decodes every payload as UTF-8 (res.payload),
      // which for random bytes cost ~20 % of a download's CPU here, on both sides, in the harness.
      const head = await pngPadded(0);
      const bytes = Buffer.concat([head, Buffer.alloc(16 * 1024 - head.length, 0x61)]);
      const up = await app.inject({ method: 'POST', url: '/v1/assets', headers: { ...auth, 'content-type': 'image/png' }, payload: bytes });
      if (up.statusCode !== 201) throw new Error(`upload failed: ${up.statusCode} ${up.body}`);
      const signed = await app.inject({ method: 'POST', url: `/v1/assets/${up.json().id}/url`, headers: { ...auth, 'content-type': 'application/json' }, payload: '{}' });
      const url = new URL(signed.json().url as string);
      paths.push(url.pathname + url.search);
      names.push(`f${i}.png`);
      writeFileSync(join(staticDir, `f${i}.png`), bytes);
    }
    // The static server of bench/storage.ts, as a plain handler.
    const staticHandler = (req: IncomingMessage, res: ServerResponse) => {
      const path = join(staticDir, req.url!.slice(1));
      let size;
      try {
        size = statSync(path).size;
      } catch {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
      createReadStream(path).pipe(res);
    };
    const requestOf: Record<Target, (i: number) => Promise<number>> = {
      healthz: async () => (await app.inject({ method: 'GET', url: '/healthz' })).statusCode,
      whoami: async () => (await app.inject({ method: 'GET', url: '/v1/whoami', headers: auth })).statusCode,
      download: async (i) => (await app.inject({ method: 'GET', url: paths[i % paths.length]! })).statusCode,
      static: async (i) => (await inject(staticHandler, { method: 'GET', url: `/${names[i % names.length]}` })).statusCode,
    };
    // Warm-up: JIT, the row and key caches.
    const targets = o.only ?? TARGETS;
    for (const target of targets) await drive(Math.min(o.requests, 500), o.concurrency, requestOf[target]);
    const figures: PerRequestFigures = { cpuUs: { healthz: [], whoami: [], download: [], static: [] }, rps: { healthz: [], whoami: [], download: [], static: [] } };
    for (let r = 0; r < o.rounds; r++) {
      const order = targets.map((_, k) => targets[(k + r) % targets.length]!);
      for (const target of order) {
        const f = await drive(o.requests, o.concurrency, requestOf[target]);
        figures.cpuUs[target].push(f.cpuUs);
        figures.rps[target].push(f.rps);
      }
    }
    return figures;
  } finally {
    await app.close();
    await t.close();
    rmSync(work, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '7' },
      requests: { type: 'string', default: '2000' },
      concurrency: { type: 'string', default: '8' },
      files: { type: 'string', default: '100' },
      only: { type: 'string' },
    },
  });
  const o = { rounds: Number(values.rounds), requests: Number(values.requests), concurrency: Number(values.concurrency), files: Number(values.files), only: values.only ? (values.only.split(',') as Target[]) : undefined };
  const before = loadavg();
  const f = await run(o);
  const after = loadavg();
  const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(' ');
  console.log(`In process (app.inject), ${o.rounds} rounds × ${o.requests} requests, ${o.concurrency} in flight; load average ${before[0]!.toFixed(1)} → ${after[0]!.toFixed(1)}`);
  // The minimum is the least disturbed round: on shared cores other work only ever adds CPU time
  // (cache misses, preemption inside a syscall), so it is the steadiest estimate of the route's own cost.
  console.log('CPU µs per request (median, minimum; every round):');
  for (const target of o.only ?? TARGETS) console.log(`  ${target.padEnd(8)} ${median(f.cpuUs[target]).toFixed(0).padStart(5)} ${Math.min(...f.cpuUs[target]).toFixed(0).padStart(5)}  (${fmt(f.cpuUs[target])})`);
  const ratios = (num: Target, den: Target) => f.cpuUs[num].map((x, i) => x / f.cpuUs[den][i]!);
  if (o.only) process.exit(0);
  const r1 = ratios('healthz', 'whoami');
  const r2 = ratios('static', 'download');
  const least = (num: Target, den: Target) => (Math.min(...f.cpuUs[num]) / Math.min(...f.cpuUs[den])).toFixed(2);
  console.log(`whoami vs healthz (CPU healthz / CPU whoami): median ${median(r1).toFixed(2)}, of minima ${least('healthz', 'whoami')}  (${r1.map((x) => x.toFixed(2)).join(' ')})  goal >= 0.85`);
  console.log(`download vs static (CPU static / CPU download): median ${median(r2).toFixed(2)}, of minima ${least('static', 'download')}  (${r2.map((x) => x.toFixed(2)).join(' ')})  goal >= 0.8`);
}
