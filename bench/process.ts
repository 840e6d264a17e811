/**
 * Processing benchmark (issue 4). Prints, never asserts.
 *
 * In one run on this machine:
 * 1. Raw sharp, in this process: 1920×1080 JPEG → 400 px wide WebP q80, `connections` calls in flight.
 * 2. The signed transform URL path over HTTP against a real `obscura serve` process (embedded
 *    database): the same bytes (stored encrypted) and the same operations, `connections` keep-alive
 *    connections. Everything a request costs is in: HMAC check, key/app lookup, asset row, decryption,
 *    inspection, processing in the bounded queue, HTTP. Goal: >= 0.95× raw sharp.
 * 3. Jobs/s through the async path: `jobs` jobs created at once with POST /v1/jobs, until all succeeded.
 *
 * Usage: npm run build && node dist/bench/process.js [--seconds 5] [--rounds 3] [--connections 8] [--jobs 100]
 */
import { parseArgs } from 'node:util';
import { Agent, request } from 'node:http';
import { availableParallelism } from 'node:os';
import sharp from 'sharp';
import { runCli, startServe } from '../test/support/cli.js';
import { tempDir } from '../test/support/db.js';
import { api } from '../test/support/server.js';
import { signTransformPath } from '../src/processing/transform.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, connections: { type: 'string', default: '8' }, jobs: { type: 'string', default: '100' }, rounds: { type: 'string', default: '3' } } });
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const jobCount = Number(values.jobs);

/** A 1920×1080 JPEG with some structure (gradients and noise), as a camera-like input. */
async function input(): Promise<Buffer> {
  const w = 1920;
  const h = 1080;
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      px[i] = (x * 255) / w;
      px[i + 1] = (y * 255) / h;
      px[i + 2] = ((x ^ y) & 0xff) / 2 + ((x * 7 + y * 13) % 64);
    }
  }
  return sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 85 }).toBuffer();
}

async function rawSharp(bytes: Buffer): Promise<number> {
  let done = 0;
  const deadline = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (Date.now() < deadline) {
        await sharp(bytes).resize({ width: 400 }).webp({ quality: 80 }).toBuffer();
        done++;
      }
    }),
  );
  return done / seconds;
}

async function load(url: string): Promise<{ rps: number; failed: number; bytes: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const u = new URL(url);
  let done = 0;
  let failed = 0;
  let bytes = 0;
  const statuses = new Map<number, number>();
  const deadline = Date.now() + seconds * 1000;
  const one = () =>
    new Promise<void>((resolve) => {
      const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, agent }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => {
          if (res.statusCode === 200) {
            done++;
            bytes = n;
          } else {
            failed++;
            statuses.set(res.statusCode ?? 0, (statuses.get(res.statusCode ?? 0) ?? 0) + 1);
          }
          resolve();
        });
      });
      req.on('error', () => {
        failed++;
        resolve();
      });
      req.end();
    });
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (Date.now() < deadline) await one();
    }),
  );
  agent.destroy();
  if (failed) console.log(`  (non-200: ${JSON.stringify(Object.fromEntries(statuses))})`);
  return { rps: done / seconds, failed, bytes };
}

const bytes = await input();
console.log(`machine: ${availableParallelism()} CPUs, node ${process.version}, sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips}), sharp.concurrency()=${sharp.concurrency()}`);
console.log(`input: 1920x1080 JPEG, ${bytes.length} bytes → 400 px WebP q80; ${connections} in flight; ${seconds}s per measurement, ${rounds} alternating rounds`);

await rawSharp(bytes); // warm-up (libvips caches, JIT)

const dataDir = tempDir('obscura-bench-process-');
// Rate limits off the table: this measures throughput, not the perimeter's per-IP/per-key budgets.
const env = {
  OBSCURA_DATA_DIR: dataDir,
  OBSCURA_LOG_LEVEL: 'warn',
  OBSCURA_RATE_LIMIT_IP_PER_MINUTE: '10000000',
  OBSCURA_RATE_LIMIT_PER_MINUTE: '10000000',
  OBSCURA_RATE_LIMIT_APP_PER_MINUTE: '100000000',
  // The same concurrency as the raw measurement: `connections` images in flight.
  OBSCURA_PROCESS_CONCURRENCY: String(connections),
};
const init = JSON.parse((await runCli(['init', '--json'], env)).stdout);
const key = init.secret_key.key as string;
const server = await startServe(env);
try {
  const up = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'image/jpeg' }, body: new Uint8Array(bytes) });
  const asset = ((await up.json()) as { id: string }).id;
  const k = await api(server.url, 'POST', `/v1/apps/${init.app.id}/transform-keys`, { key });
  const path = signTransformPath(k.body.id, Buffer.from(k.body.secret, 'base64url'), 'resize:width=400/format:webp,quality=80', asset, Math.floor(Date.now() / 1000) + 3600);
  await load(server.url + path); // warm-up
  // Alternate the two measurements and take medians: other work on the machine then shifts both alike.
  const raws: number[] = [];
  const transforms: number[] = [];
  let last = { rps: 0, failed: 0, bytes: 0 };
  for (let round = 0; round < rounds; round++) {
    raws.push(await rawSharp(bytes));
    last = await load(server.url + path);
    transforms.push(last.rps);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const raw = median(raws);
  const t = median(transforms);
  console.log(`  raw sharp in-process:            ${raw.toFixed(1)} images/s  (rounds: ${raws.map((x) => x.toFixed(1)).join(', ')})`);
  console.log(`  signed transform URL over HTTP:  ${t.toFixed(1)} req/s  (rounds: ${transforms.map((x) => x.toFixed(1)).join(', ')}; ${last.bytes} bytes each${last.failed ? `, ${last.failed} non-200` : ''})`);
  console.log(`  ratio transform/raw sharp:       ${(t / raw).toFixed(3)}  (goal >= 0.95; a plain image server such as IPX measures ~0.85-0.9 here)`);

  const started = Date.now();
  const created = await Promise.all(
    Array.from({ length: jobCount }, () => api(server.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: asset }, operations: 'resize:width=400/format:webp,quality=80' } })),
  );
  const ids = created.map((r) => r.body.id as string);
  const pending = new Set(ids);
  while (pending.size > 0) {
    for (const id of [...pending]) {
      const j = await api(server.url, 'GET', `/v1/jobs/${id}`, { key });
      if (j.body.status === 'succeeded' || j.body.status === 'failed') pending.delete(id);
    }
    if (pending.size > 0) await new Promise((r) => setTimeout(r, 200));
  }
  const secs = (Date.now() - started) / 1000;
  console.log(`  async jobs (POST /v1/jobs → succeeded, ${jobCount} jobs, embedded DB): ${(jobCount / secs).toFixed(1)} jobs/s`);
} finally {
  await server.stop();
}
