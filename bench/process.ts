/**
 * Processing benchmark (issues 4 and 12: the transform path as fast as raw sharp). Prints, never asserts.
 *
 * In one run on this machine:
 * 1. Raw sharp, in a process of its own set up as the server's image work is: 1920×1080 JPEG → 400 px
 *    wide WebP q80, `connections` calls in flight, the same libuv thread-pool size as `obscura serve`
 *    gets (bin/obscura.js) and libvips' operation cache off (the server's default,
 *    `OBSCURA_IMAGE_CACHE_BYTES=0`): with its own defaults (4 pool threads, so 4 images at a time
 *    whatever the calls in flight, and a 50 MB cache that can answer a repeated decode of the same
 *    buffer) the baseline was not doing the server's work.
 * 2. The signed transform URL path over HTTP against a real `obscura serve` process (embedded
 *    database): the same bytes (stored encrypted) and the same operations, `connections` keep-alive
 *    connections. Everything a request costs is in: HMAC check, key/app lookup, asset row, decryption,
 *    inspection, processing in the bounded queue, HTTP. Goal: >= 0.95× raw sharp.
 * 3. Jobs/s through the async path: `jobs` jobs created at once with POST /v1/jobs, until all succeeded.
 *
 * Rounds alternate 1 and 2 and medians are printed, so other work on the machine shifts both alike.
 *
 * Usage: npm run build && node dist/bench/process.js [--seconds 5] [--rounds 3] [--connections 8] [--jobs 100]
 * (bench/run.ts runs it with the other rows, over its own rounds: it calls run() with rounds = 1.)
 */
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ROOT } from '../test/support/cli.js';
import { tempDir } from '../test/support/db.js';
import sharp from 'sharp';
import { api } from '../test/support/server.js';
import { signTransformPath } from '../src/processing/transform.js';
import { httpLoad, isMain, setupFetch, type LoadResult, jpegInput, median, startObscura, uploadAsset, type Obscura } from './lib.js';

export interface ProcessOptions {
  seconds: number;
  connections: number;
  /** Jobs for the async figure (0 = skip). */
  jobs: number;
  rounds: number;
  /** Input width × height (1920×1080 by default). */
  width: number;
  height: number;
  /** A running server to measure; it must run with OBSCURA_PROCESS_CONCURRENCY = connections. */
  target?: Obscura;
}

export interface ProcessFigures {
  rawIps: number;
  transformRps: number;
  ratio: number;
  rawRounds: number[];
  transformRounds: number[];
  outputBytes: number;
  failed: Record<string, number>;
  jobsPerS: number | undefined;
}

export const PROCESS_DEFAULTS: ProcessOptions = { seconds: 5, connections: 8, jobs: 100, rounds: 3, width: 1920, height: 1080 };

/**
 * The server settings this benchmark needs: `connections` images processed at once, all of them for
 * the benchmark's one org (the per-org share defaults to half the slots), as the raw measurement has.
 */
export function processEnv(connections: number): Record<string, string> {
  return { OBSCURA_PROCESS_CONCURRENCY: String(connections), OBSCURA_PROCESS_CONCURRENCY_PER_ORG: String(connections) };
}

/** The libuv thread-pool size bin/obscura.js gives `obscura serve` with {@link processEnv}(connections). */
export function serverThreadPool(connections: number): number {
  return Math.min(1024, Math.max(16, connections + availableParallelism() + 8));
}

// The raw baseline, run as its own process: argv = input file, calls in flight, seconds (after as
// long a warm-up, at most 2 s); prints {"ips": images per second}.
const RAW_SHARP = `
import sharp from 'sharp';
import { readFileSync } from 'node:fs';
const [file, inFlight, seconds] = process.argv.slice(2);
const bytes = readFileSync(file);
sharp.cache(false);
async function run(s) {
  let done = 0;
  const started = performance.now();
  const deadline = started + s * 1000;
  await Promise.all(Array.from({ length: Number(inFlight) }, async () => {
    while (performance.now() < deadline) {
      await sharp(bytes).resize({ width: 400 }).webp({ quality: 80 }).toBuffer();
      done++;
    }
  }));
  return done / ((performance.now() - started) / 1000);
}
await run(Math.min(2, Number(seconds)));
console.log(JSON.stringify({ ips: await run(Number(seconds)) }));
`;

let rawScript: string | undefined;

async function rawSharp(input: string, connections: number, seconds: number): Promise<number> {
  rawScript ??= join(ROOT, `.bench-raw-sharp-${process.pid}.mjs`);
  writeFileSync(rawScript, RAW_SHARP);
  const child = spawn(process.execPath, [rawScript, input, String(connections), String(seconds)], {
    env: { ...process.env, UV_THREADPOOL_SIZE: String(serverThreadPool(connections)) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  rmSync(rawScript, { force: true });
  if (code !== 0) throw new Error(`raw sharp exited with ${code}`);
  return (JSON.parse(out) as { ips: number }).ips;
}

/** Warm-up, then `rounds` alternating raw/transform measurements, then the jobs figure. */
export async function run(opts: Partial<ProcessOptions> = {}): Promise<ProcessFigures> {
  const o = { ...PROCESS_DEFAULTS, ...opts };
  const bytes = await jpegInput(o.width, o.height);
  const inputFile = join(tempDir('obscura-bench-raw-'), 'input.jpg');
  writeFileSync(inputFile, bytes);
  const own = o.target === undefined;
  const target = o.target ?? (await startObscura({ env: processEnv(o.connections) }));
  try {
    const asset = await uploadAsset(target, bytes, 'image/jpeg');
    const tk = await setupFetch(`${target.url}/v1/apps/${target.appId}/transform-keys`, { method: 'POST', headers: { authorization: `Bearer ${target.key}` } });
    if (tk.status !== 201 && tk.status !== 200) throw new Error(`creating a transform key failed: ${tk.status} ${await tk.text()}`);
    const k = { body: (await tk.json()) as { id: string; secret: string } };
    const path = signTransformPath(k.body.id, Buffer.from(k.body.secret, 'base64url'), 'resize:width=400/format:webp,quality=80', asset, Math.floor(Date.now() / 1000) + 3600);
    const load = (seconds: number) => httpLoad({ base: target.url, path: () => path, connections: o.connections, seconds });
    await load(Math.min(2, o.seconds)); // warm-up
    const raws: number[] = [];
    const transforms: number[] = [];
    let last: LoadResult | undefined;
    for (let round = 0; round < o.rounds; round++) {
      raws.push(await rawSharp(inputFile, o.connections, o.seconds));
      last = await load(o.seconds);
      transforms.push(last.rps);
    }
    let jobsPerS: number | undefined;
    if (o.jobs > 0) {
      const started = Date.now();
      const created = await Promise.all(
        Array.from({ length: o.jobs }, () => api(target.url, 'POST', '/v1/jobs', { key: target.key, body: { input: { asset_id: asset }, operations: 'resize:width=400/format:webp,quality=80' } })),
      );
      // A create refused under load (503) is not a job: only accepted ones are waited for and counted.
      const accepted = created.filter((r) => r.status === 202 || r.status === 201).map((r) => r.body.id as string);
      const pending = new Set(accepted);
      const deadline = Date.now() + 600_000;
      while (pending.size > 0 && Date.now() < deadline) {
        for (const id of [...pending]) {
          const j = await api(target.url, 'GET', `/v1/jobs/${id}`, { key: target.key });
          if (j.body.status === 'succeeded' || j.body.status === 'failed') pending.delete(id);
        }
        if (pending.size > 0) await new Promise((r) => setTimeout(r, 200));
      }
      jobsPerS = (accepted.length - pending.size) / ((Date.now() - started) / 1000);
    }
    const raw = median(raws);
    const t = median(transforms);
    return {
      rawIps: raw,
      transformRps: t,
      ratio: t / raw,
      rawRounds: raws,
      transformRounds: transforms,
      outputBytes: last ? last.bytes / Math.max(1, last.ok + last.failed) : 0,
      failed: last?.statuses ?? {},
      jobsPerS,
    };
  } finally {
    if (own) await target.stop();
    rmSync(dirname(inputFile), { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: String(PROCESS_DEFAULTS.seconds) },
      connections: { type: 'string', default: String(PROCESS_DEFAULTS.connections) },
      jobs: { type: 'string', default: String(PROCESS_DEFAULTS.jobs) },
      rounds: { type: 'string', default: String(PROCESS_DEFAULTS.rounds) },
    },
  });
  const o = { seconds: Number(values.seconds), connections: Number(values.connections), jobs: Number(values.jobs), rounds: Number(values.rounds) };
  console.log(`machine: ${availableParallelism()} CPUs, node ${process.version}, sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips}), sharp.concurrency()=${sharp.concurrency()}`);
  console.log(`input: 1920x1080 JPEG → 400 px WebP q80; ${o.connections} in flight; ${o.seconds}s per measurement, ${o.rounds} alternating rounds`);
  const f = await run(o);
  console.log(`  raw sharp (own process):         ${f.rawIps.toFixed(1)} images/s  (rounds: ${f.rawRounds.map((x) => x.toFixed(1)).join(', ')})`);
  console.log(`  signed transform URL over HTTP:  ${f.transformRps.toFixed(1)} req/s  (rounds: ${f.transformRounds.map((x) => x.toFixed(1)).join(', ')}; ~${f.outputBytes.toFixed(0)} bytes each)`);
  if (Object.keys(f.failed).length) console.log(`  (non-200 in the last round: ${JSON.stringify(f.failed)})`);
  console.log(`  ratio transform/raw sharp:       ${f.ratio.toFixed(3)}  (goal >= 0.95)`);
  if (f.jobsPerS !== undefined) console.log(`  async jobs (POST /v1/jobs → succeeded, ${o.jobs} jobs, embedded DB): ${f.jobsPerS.toFixed(1)} jobs/s`);
}
