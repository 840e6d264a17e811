/**
 * Embedded-database event-loop benchmark (issue 12, item 1). Prints, never asserts.
 *
 * Starts a real `obscura serve` (embedded PGlite by default, or PostgreSQL with --database-url) and
 * drives a fixed mixed load for --seconds: `uploads` concurrent tus uploads of a small PNG-sniffing
 * file (each loop: create, PATCH, complete) plus `process` concurrent POST /v1/process (a JPEG
 * resized to WebP), while a probe asks /healthz every 25 ms. Reported per round: /healthz latency
 * p50/p99, the server's own event-loop delay p50/p99 (prom-client's `obscura_nodejs_eventloop_lag_*`
 * from the metrics listener, reset just before the load), uploads/s, process/s, idle RSS (before the
 * load) and peak RSS (VmHWM) of the server process (PGlite's worker thread included: same process).
 * Each figure is the median over --rounds, each round on a fresh data dir.
 *
 * Usage: npm run build && node dist/bench/db-worker.js [--seconds 30] [--rounds 3] [--uploads 16] [--process 8] [--kib 1024]
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import * as tus from 'tus-js-client';
import sharp from 'sharp';
import { runCli, startServe } from '../test/support/cli.js';
import { tempDir } from '../test/support/db.js';
import { freePort } from '../test/support/server.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' },
    rounds: { type: 'string', default: '3' },
    uploads: { type: 'string', default: '16' },
    process: { type: 'string', default: '8' },
    kib: { type: 'string', default: '64' },
    'database-url': { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);

const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#3366aa' } }).png().toBuffer();
const uploadBody = Buffer.concat([png, randomBytes(Number(values.kib) * 1024 - png.length)]);
const jpeg = await sharp({ create: { width: 800, height: 600, channels: 3, background: '#aa6633' } }).jpeg({ quality: 85 }).toBuffer();

function rssMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) / 1024;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}


function upload(endpoint: string, headers: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const up = new tus.Upload(uploadBody, {
      endpoint,
      headers,
      uploadSize: uploadBody.length,
      metadata: { filename: 'b.png', filetype: 'image/png' },
      retryDelays: [],
      onError: reject,
      onSuccess: () => resolve(),
    });
    up.start();
  });
}

interface Round {
  healthP50: number;
  healthP99: number;
  loopP50: number;
  loopP99: number;
  uploadsPerS: number;
  processPerS: number;
  failed: number;
  idleRss: number;
  peakRss: number;
}

async function round(): Promise<Round> {
  const dataDir = join(tempDir('obscura-bench-dbw-'), 'data');
  const metricsPort = await freePort();
  const env: Record<string, string> = { OBSCURA_DATA_DIR: dataDir, OBSCURA_LOG_LEVEL: 'warn', OBSCURA_METRICS_PORT: String(metricsPort) };
  if (values['database-url']) env.DATABASE_URL = values['database-url'];
  const init = JSON.parse((await runCli(['init', '--json'], env, { timeoutMs: 600_000 })).stdout);
  // The production default: shedding left as configured by the server (not the tests' 0).
  const server = await startServe({ ...env, OBSCURA_SHED_EVENT_LOOP_DELAY_MS: process.env.OBSCURA_SHED_EVENT_LOOP_DELAY_MS ?? '0' }, 300_000);
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  try {
    const auth = { authorization: `Bearer ${init.secret_key.key}` };
    await new Promise((r) => setTimeout(r, 3000));
    const idleRss = rssMb(server.child.pid!, 'VmRSS');
    await (await fetch(metricsUrl)).text(); // resets the event-loop histogram
    const deadline = Date.now() + seconds * 1000;
    let uploads = 0;
    let processed = 0;
    let failed = 0;
    const reasons = new Map<string, number>();
    const why = (r: string) => reasons.set(r, (reasons.get(r) ?? 0) + 1);
    const health: number[] = [];
    const probe = (async () => {
      while (Date.now() < deadline) {
        const t = performance.now();
        const r = await fetch(`${server.url}/healthz`);
        await r.arrayBuffer();
        health.push(performance.now() - t);
        await new Promise((res) => setTimeout(res, 25));
      }
    })();
    const uploaders = Array.from({ length: Number(values.uploads) }, async () => {
      while (Date.now() < deadline) {
        try {
          await upload(`${server.url}/v1/uploads`, auth);
          uploads++;
        } catch (err) {
          failed++;
          why(`upload: ${String((err as Error).message).slice(0, 120)}`);
        }
      }
    });
    const processors = Array.from({ length: Number(values.process) }, async () => {
      while (Date.now() < deadline) {
        const r = await fetch(`${server.url}/v1/process?operations=${encodeURIComponent('resize:width=200/format:webp')}`, { method: 'POST', headers: { ...auth, 'content-type': 'image/jpeg' }, body: jpeg });
        await r.arrayBuffer();
        if (r.status === 200) processed++;
        else {
          failed++;
          why(`process: ${r.status}`);
        }
      }
    });
    await Promise.all([probe, ...uploaders, ...processors]);
    if (reasons.size) console.log('failures:', Object.fromEntries(reasons));
    // One scrape: prom-client resets the histogram on every scrape.
    const text = await (await fetch(metricsUrl)).text();
    const lag = (p: string) => Number(new RegExp(`^obscura_nodejs_eventloop_lag_${p}_seconds ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN) * 1000;
    const loopP50 = lag('p50');
    const loopP99 = lag('p99');
    health.sort((a, b) => a - b);
    return {
      healthP50: pct(health, 50),
      healthP99: pct(health, 99),
      loopP50,
      loopP99,
      uploadsPerS: uploads / seconds,
      processPerS: processed / seconds,
      failed,
      idleRss,
      peakRss: rssMb(server.child.pid!, 'VmHWM'),
    };
  } finally {
    await server.stop();
  }
}

const results: Round[] = [];
for (let i = 0; i < rounds; i++) {
  const r = await round();
  results.push(r);
  console.log(`round ${i + 1}: ${JSON.stringify(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v * 10) / 10])))}`);
}
const keys = Object.keys(results[0]!) as (keyof Round)[];
console.log(`median of ${rounds} rounds, ${seconds} s, ${values.uploads} uploads + ${values.process} process, ${values['database-url'] ? 'postgres' : 'pglite'}:`);
for (const k of keys) console.log(`  ${k.padEnd(12)} ${median(results.map((r) => r[k])).toFixed(1)}`);
