/**
 * `npm run bench`: every row of issue 12's table, each with its baseline measured in the same run,
 * repeated over rounds with the median quoted, plus the machine's noise (a fixed calibration
 * workload timed every round). Prints a table and writes a JSON result. Never fails on time: the exit
 * code is 0 unless a benchmark crashed.
 *
 * Usage: npm run bench -- [--rounds 3] [--quick | --smoke] [--only ROW[,ROW...]] [--out FILE]
 *   --quick  small sizes and short windows (~5 min on a 2-core machine)
 *   --smoke  one round, tiny sizes, seconds: checks that the runner works (test/bench), not speed
 *   --only   row ids (or suites: storage, keys, process, rss, mixed); see ROWS below
 *   --out    JSON result path (default bench/results/<timestamp>.json)
 *
 * Each round: calibration; one embedded server shared by the storage, key and transform suites
 * (its idle memory read first); then a fresh server per database mode for the mixed load.
 */
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { ROOT } from '../test/support/cli.js';
import { calibrate, median, spreadPct, startObscura, stopPostgres, treeMemory, type TreeMemory } from './lib.js';
import { run as runStorage, type StorageFigures, type StorageOptions } from './storage.js';
import { run as runKeys, type KeysFigures, type KeysOptions } from './keys.js';
import { run as runProcess, processEnv, type ProcessFigures, type ProcessOptions } from './process.js';
import { run as runMixed, print as printMixed, type MixedFigures, type MixedOptions } from './mixed.js';

type Suite = 'storage' | 'keys' | 'process' | 'rss' | 'mixed';

interface RoundFigures {
  calibrationMs: number;
  idle?: TreeMemory;
  storage?: StorageFigures;
  keys?: KeysFigures;
  process?: ProcessFigures;
  mixed?: { pglite: MixedFigures; postgres: MixedFigures };
}

interface RowDef {
  id: string;
  title: string;
  suite: Suite;
  unit: string;
  baselineTitle: string | undefined;
  /** 'ratio' rows: value / baseline, higher is better. 'absolute' rows: the goal is on the value. */
  kind: 'ratio' | 'absolute';
  goal: string;
  meets(value: number, ratio: number | undefined): boolean;
  pick(r: RoundFigures): { value: number | undefined; baseline: number | undefined };
}

const mixedPick = (f: (m: MixedFigures) => number | undefined) => (r: RoundFigures) => ({ value: r.mixed ? f(r.mixed.pglite) : undefined, baseline: r.mixed ? f(r.mixed.postgres) : undefined });
const totalPerS = (m: MixedFigures) => m.routes.upload.perS + m.routes.process.perS + m.routes.download.perS + m.routes.api.perS;

/** The rows of issue 12's table (and the figures behind its last row). */
export const ROWS: RowDef[] = [
  { id: 'tus_upload', title: 'tus upload (MiB/s)', suite: 'storage', unit: 'MiB/s', baselineTitle: 'bare @tus/server + @tus/file-store', kind: 'ratio', goal: '≥ 0.8×', meets: (_, q) => (q ?? 0) >= 0.8, pick: (r) => ({ value: r.storage?.upload.obscuraMibS, baseline: r.storage?.upload.bareMibS }) },
  { id: 'download_large', title: 'signed download, one large file (MiB/s)', suite: 'storage', unit: 'MiB/s', baselineTitle: 'static file server', kind: 'ratio', goal: '≥ 0.8×', meets: (_, q) => (q ?? 0) >= 0.8, pick: (r) => ({ value: r.storage?.download.obscuraMibS, baseline: r.storage?.download.staticMibS }) },
  { id: 'download_small', title: 'signed download, many small files (req/s)', suite: 'storage', unit: 'req/s', baselineTitle: 'static file server', kind: 'ratio', goal: '≥ 0.8×', meets: (_, q) => (q ?? 0) >= 0.8, pick: (r) => ({ value: r.storage?.small?.obscuraRps, baseline: r.storage?.small?.staticRps }) },
  { id: 'auth_noop', title: 'authenticated no-op GET /v1/whoami (req/s)', suite: 'keys', unit: 'req/s', baselineTitle: 'unauthenticated no-op GET /healthz', kind: 'ratio', goal: '≥ 0.85×', meets: (_, q) => (q ?? 0) >= 0.85, pick: (r) => ({ value: r.keys?.authRps, baseline: r.keys?.unauthRps }) },
  { id: 'transform', title: 'signed transform URL via obscura serve (req/s)', suite: 'process', unit: 'req/s', baselineTitle: 'raw sharp in its own process, the server\'s thread pool and cache settings (images/s)', kind: 'ratio', goal: '≥ 0.95×', meets: (_, q) => (q ?? 0) >= 0.95, pick: (r) => ({ value: r.process?.transformRps, baseline: r.process?.rawIps }) },
  { id: 'rss_idle', title: 'idle RSS, whole process tree (MB)', suite: 'rss', unit: 'MB', baselineTitle: undefined, kind: 'absolute', goal: '≤ 200 MB', meets: (v) => v <= 200, pick: (r) => ({ value: r.idle?.rssMb, baseline: undefined }) },
  { id: 'rss_peak_upload', title: 'peak RSS under the storage bench (MB)', suite: 'storage', unit: 'MB', baselineTitle: 'bare tus server peak', kind: 'absolute', goal: '≤ 300 MB', meets: (v) => v <= 300, pick: (r) => ({ value: r.storage?.peak.rssMb, baseline: r.storage?.barePeak.rssMb }) },
  { id: 'eventloop_p99', title: 'mixed load: event-loop delay p99 (ms)', suite: 'mixed', unit: 'ms', baselineTitle: 'PostgreSQL mode', kind: 'absolute', goal: '< 50 ms', meets: (v) => v < 50, pick: mixedPick((m) => m.eventLoop.p99Ms) },
  { id: 'healthz_p99', title: 'mixed load: /healthz p99 (ms)', suite: 'mixed', unit: 'ms', baselineTitle: 'PostgreSQL mode', kind: 'absolute', goal: '< 50 ms (PostgreSQL mode: 50–55 ms in the issue)', meets: (v) => v < 50, pick: mixedPick((m) => m.routes.healthz.p99Ms) },
  { id: 'mixed_uploads', title: 'mixed load: uploads/s', suite: 'mixed', unit: '/s', baselineTitle: 'PostgreSQL mode', kind: 'ratio', goal: 'equal to PostgreSQL mode (≥ 0.95×)', meets: (_, q) => (q ?? 0) >= 0.95, pick: mixedPick((m) => m.routes.upload.perS) },
  { id: 'mixed_throughput', title: 'mixed load: all routes, req/s', suite: 'mixed', unit: 'req/s', baselineTitle: 'PostgreSQL mode', kind: 'ratio', goal: 'equal to PostgreSQL mode (≥ 0.95×)', meets: (_, q) => (q ?? 0) >= 0.95, pick: mixedPick(totalPerS) },
];

type Mode = 'full' | 'quick' | 'smoke';

interface Plan {
  storage: StorageOptions;
  keys: KeysOptions;
  process: ProcessOptions;
  mixed: Omit<MixedOptions, 'db'>;
  idleSettleMs: number;
  calibrationScale: number;
}

const PLANS: Record<Mode, Plan> = {
  full: {
    storage: { mib: 1024, chunkMib: 50, small: 200, smallKib: 16, seconds: 5, connections: 8 },
    keys: { seconds: 5, connections: 16, verifyCalls: 300_000 },
    process: { seconds: 5, connections: 8, jobs: 100, rounds: 1, width: 1920, height: 1080 },
    mixed: { seconds: 30, uploads: 16, processes: 8, downloads: 4, apis: 4, uploadKib: 1024, downloadKib: 1024, processWidth: 1280 },
    idleSettleMs: 5000,
    calibrationScale: 1,
  },
  quick: {
    storage: { mib: 128, chunkMib: 32, small: 100, smallKib: 16, seconds: 3, connections: 8 },
    keys: { seconds: 3, connections: 16, verifyCalls: 0 },
    process: { seconds: 3, connections: 8, jobs: 20, rounds: 1, width: 1920, height: 1080 },
    mixed: { seconds: 10, uploads: 16, processes: 8, downloads: 4, apis: 4, uploadKib: 256, downloadKib: 256, processWidth: 1280 },
    idleSettleMs: 3000,
    calibrationScale: 1,
  },
  smoke: {
    storage: { mib: 2, chunkMib: 1, small: 4, smallKib: 4, seconds: 0.5, connections: 2 },
    keys: { seconds: 0.5, connections: 2, verifyCalls: 0 },
    process: { seconds: 0.5, connections: 2, jobs: 0, rounds: 1, width: 320, height: 180 },
    mixed: { seconds: 1.5, uploads: 1, processes: 1, downloads: 1, apis: 1, uploadKib: 16, downloadKib: 16, processWidth: 320 },
    idleSettleMs: 500,
    calibrationScale: 0.1,
  },
};

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

const fmt = (x: number | undefined, digits = 1) => (x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(digits));

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string' },
      quick: { type: 'boolean', default: false },
      smoke: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
    },
  });
  const mode: Mode = values.smoke ? 'smoke' : values.quick ? 'quick' : 'full';
  const plan = PLANS[mode];
  const rounds = values.rounds !== undefined ? Math.max(1, Number(values.rounds)) : mode === 'smoke' ? 1 : 3;
  const only = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
  if (only) {
    const known = new Set<string>([...ROWS.map((r) => r.id), ...ROWS.map((r) => r.suite)]);
    const unknown = only.filter((x) => !known.has(x));
    if (unknown.length) {
      console.error(`unknown --only ${unknown.join(', ')}; rows: ${ROWS.map((r) => r.id).join(', ')}; suites: storage, keys, process, rss, mixed`);
      return 2;
    }
  }
  const rows = ROWS.filter((r) => !only || only.includes(r.id) || only.includes(r.suite));
  const suites = new Set(rows.map((r) => r.suite));
  const startedAt = new Date();
  const out = resolve(values.out ?? join(ROOT, 'bench', 'results', `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`));
  const commit = git(['rev-parse', 'HEAD']);
  const dirty = (git(['status', '--porcelain', '--', 'src', 'bin']) ?? '') !== '';
  // The code under test: the last commit that changed the server (HEAD may add only bench changes).
  const srcCommit = git(['log', '-1', '--format=%H', '--', 'src', 'bin', 'package.json', 'package-lock.json']);

  console.log(`Obscura benchmarks (${mode}, ${rounds} round${rounds > 1 ? 's' : ''}) at ${commit?.slice(0, 12) ?? 'unknown commit'} (server code as of ${srcCommit?.slice(0, 12) ?? '?'})${dirty ? ' (src modified)' : ''}`);
  console.log(`machine: ${availableParallelism()} CPUs (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}, sharp ${sharp.versions.sharp}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`rows: ${rows.map((r) => r.id).join(', ')}`);

  const perRound: RoundFigures[] = [];
  const errors: { round: number; suite: string; error: string }[] = [];
  const attempt = async <T>(round: number, suite: string, f: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await f();
    } catch (err) {
      errors.push({ round, suite, error: String((err as Error)?.stack ?? err) });
      console.error(`  ${suite} crashed: ${String((err as Error)?.message ?? err)}`);
      return undefined;
    }
  };

  try {
    for (let round = 1; round <= rounds; round++) {
      const t0 = performance.now();
      const cal = await calibrate(plan.calibrationScale);
      const r: RoundFigures = { calibrationMs: cal.ms };
      console.log(`round ${round}/${rounds}: calibration ${cal.ms.toFixed(0)} ms (sha-256 ${cal.hashMs.toFixed(0)} ms, sharp ${cal.sharpMs.toFixed(0)} ms)`);
      const step = (name: string, since: number) => console.log(`  (${name}: ${((performance.now() - since) / 1000).toFixed(1)} s)`);
      // The smoke run shares one embedded server with the mixed load too (fewer starts); the other modes
      // give the mixed load fresh servers, so both database modes start from the same state.
      const shareMixed = mode === 'smoke' && suites.has('mixed');
      let shared: Awaited<ReturnType<typeof startObscura>> | undefined;
      try {
        if (suites.has('storage') || suites.has('keys') || suites.has('process') || suites.has('rss') || shareMixed) {
          const t = performance.now();
          shared = await attempt(round, 'server', () =>
            startObscura({ metrics: shareMixed, env: { OBSCURA_MAX_UPLOAD_BYTES: String(Math.round(plan.storage.mib * 1024 * 1024 * 2)), ...processEnv(plan.process.connections) } }),
          );
          step('init + serve', t);
        }
        if (shared) {
          await new Promise((res) => setTimeout(res, plan.idleSettleMs));
          r.idle = treeMemory(shared.pid);
          console.log(`  idle RSS ${r.idle.rssMb.toFixed(0)} MB (${r.idle.processes} processes, ${r.idle.threads} threads)`);
          if (suites.has('storage')) {
            const t = performance.now();
            r.storage = await attempt(round, 'storage', () => runStorage({ ...plan.storage, target: shared }));
            if (r.storage) {
              const s = r.storage;
              console.log(`  storage: upload ${s.upload.obscuraMibS.toFixed(0)} vs ${s.upload.bareMibS.toFixed(0)} MiB/s, download ${s.download.obscuraMibS.toFixed(0)} vs ${s.download.staticMibS.toFixed(0)} MiB/s, small ${fmt(s.small?.obscuraRps, 0)} vs ${fmt(s.small?.staticRps, 0)} req/s, peak ${s.peak.rssMb.toFixed(0)} MB`);
            }
            step('storage', t);
          }
          if (suites.has('keys')) {
            const t = performance.now();
            r.keys = await attempt(round, 'keys', () => runKeys({ ...plan.keys, verifyCalls: round === 1 ? plan.keys.verifyCalls : 0, target: shared }));
            if (r.keys) console.log(`  keys: authenticated ${r.keys.authRps.toFixed(0)} vs unauthenticated ${r.keys.unauthRps.toFixed(0)} req/s${r.keys.verifyPerS ? `, in-process verify ${r.keys.verifyPerS.toFixed(0)}/s` : ''}`);
            step('keys', t);
          }
          if (suites.has('process')) {
            const t = performance.now();
            r.process = await attempt(round, 'process', () => runProcess({ ...plan.process, target: shared }));
            if (r.process) console.log(`  process: transform ${r.process.transformRps.toFixed(1)} req/s vs raw sharp ${r.process.rawIps.toFixed(1)} images/s${r.process.jobsPerS !== undefined ? `, jobs ${r.process.jobsPerS.toFixed(1)}/s` : ''}`);
            step('process', t);
          }
        }
        if (suites.has('mixed')) {
          let t = performance.now();
          const pglite = await attempt(round, 'mixed (embedded)', () => runMixed({ ...plan.mixed, db: 'pglite', target: shareMixed ? shared : undefined }));
          if (pglite) printMixed(pglite);
          step('mixed, embedded', t);
          t = performance.now();
          const postgres = await attempt(round, 'mixed (PostgreSQL)', () => runMixed({ ...plan.mixed, db: 'postgres' }));
          if (postgres) printMixed(postgres);
          step('mixed, PostgreSQL', t);
          if (pglite && postgres) r.mixed = { pglite, postgres };
        }
      } finally {
        await shared?.stop();
      }
      perRound.push(r);
      console.log(`  (round took ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  } finally {
    await stopPostgres();
  }

  // Summary: medians over rounds; ratios are taken within each round (same conditions), then the median.
  const calibration = perRound.map((r) => r.calibrationMs);
  const summary = rows.map((row) => {
    const picks = perRound.map((r) => row.pick(r));
    const values = picks.map((p) => p.value).filter((x): x is number => x !== undefined && !Number.isNaN(x));
    const baselines = picks.map((p) => p.baseline).filter((x): x is number => x !== undefined && !Number.isNaN(x));
    const ratios = picks.filter((p) => p.value !== undefined && p.baseline !== undefined && p.baseline !== 0).map((p) => p.value! / p.baseline!);
    const med = values.length ? median(values) : undefined;
    const ratio = row.kind === 'ratio' && ratios.length ? median(ratios) : undefined;
    return {
      id: row.id,
      title: row.title,
      unit: row.unit,
      kind: row.kind,
      samples: values,
      median: med,
      spread_pct: values.length ? spreadPct(values) : undefined,
      baseline: row.baselineTitle === undefined ? undefined : { title: row.baselineTitle, samples: baselines, median: baselines.length ? median(baselines) : undefined },
      ratio: ratios.length ? { samples: ratios, median: median(ratios) } : undefined,
      goal: row.goal,
      meets_goal: med === undefined ? undefined : row.meets(med, ratio),
    };
  });

  console.log('');
  console.log(`calibration (fixed CPU work, machine noise): median ${median(calibration).toFixed(0)} ms, spread ${spreadPct(calibration).toFixed(0)} % over ${calibration.length} rounds (${calibration.map((x) => x.toFixed(0)).join(', ')})`);
  console.log('');
  console.log('| row | median | spread | baseline | ratio | goal | meets |');
  console.log('|---|---|---|---|---|---|---|');
  for (const s of summary) {
    const base = s.baseline ? `${fmt(s.baseline.median)} (${s.baseline.title})` : '—';
    console.log(`| ${s.title} | ${fmt(s.median)} | ${fmt(s.spread_pct, 0)} % | ${base} | ${s.kind === 'ratio' && s.ratio ? fmt(s.ratio.median, 2) + '×' : '—'} | ${s.goal} | ${s.meets_goal === undefined ? 'n/a' : s.meets_goal ? 'yes' : 'no'} |`);
  }

  const result = {
    schema: 1,
    started_at: startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    commit,
    src_commit: srcCommit,
    src_modified: dirty,
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    mode,
    rounds,
    machine: { cpus: availableParallelism(), cpu_model: cpus()[0]?.model, total_memory_gib: totalmem() / 2 ** 30, node: process.version, sharp: sharp.versions.sharp, libvips: sharp.versions.vips, load_average_end: loadavg() },
    plan,
    calibration: { unit: 'ms', samples: calibration, median: median(calibration), spread_pct: spreadPct(calibration) },
    rows: summary,
    per_round: perRound,
    errors,
  };
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nJSON: ${out}`);
  if (errors.length) {
    console.error(`${errors.length} benchmark(s) crashed:`);
    for (const e of errors) console.error(`round ${e.round} ${e.suite}: ${e.error}`);
    return 1;
  }
  return 0;
}

process.exitCode = await main();
