/**
 * CPU profile of one route under load (issue 12: "profile with --cpu-prof"). Prints, never asserts.
 *
 * Starts a real `obscura serve` (embedded default, benchmark settings) with `--cpu-prof`, drives
 * `--path` with `--connections` keep-alive clients for `--seconds` (after a warm-up), stops the server
 * cleanly so V8 writes the profile, then prints where the main thread's time went: self time by
 * package (node_modules/<pkg>, node: internals, Obscura's own files, GC, idle) and the top functions.
 *
 * Usage: npm run build && node dist/bench/profile.js [--path /v1/whoami] [--auth] [--seconds 10] [--connections 16] [--top 25]
 *   --small-files N: instead of --path, signed downloads of N assets of 16 KiB, round robin (the
 *   `download_small` row).
 *   --transform: instead of --path, the `transform` row's signed transform URL, with the server's image
 *   concurrency set to --connections as that row does.
 *   --tus-mib N: instead of --path, one tus upload of N MiB (tus-js-client, 32 MiB chunks), the
 *   `tus_upload` row's work.
 * The .cpuprofile files stay in the printed directory (open them in Chrome DevTools for the tree).
 */
import { parseArgs } from 'node:util';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { BIN, cliEnv } from '../test/support/cli.js';
import { join } from 'node:path';
import { tempDir } from '../test/support/db.js';
import { benchEnv, httpLoad, isMain, jpegInput, pngPadded, setupFetch, signedUrl, startObscura, uploadAsset } from './lib.js';
import { processEnv } from './process.js';
import { makeFile, tusUpload } from './storage.js';
import { signTransformPath } from '../src/processing/transform.js';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  startTime: number;
  endTime: number;
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code lives: a package under node_modules, node internals, Obscura itself, or V8's pseudo-frames. */
export function bucketOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  const own = /\/dist\/(src\/[^/]+(?:\/[^/]+)?)/.exec(url);
  if (own) return own[1]!.replace(/\.js$/, '');
  return url;
}

/**
 * Self time (ms) by bucket and by function over one profile, counting only the samples taken within
 * `window` (ms before the profile's end: `from` > `to`), i.e. the load, not start-up or shutdown.
 */
export function summarise(p: Profile, window?: { from: number; to: number }): { totalMs: number; buckets: [string, number][]; functions: [string, number][]; inclusive: [string, number][] } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    const before = (p.endTime - t) / 1000;
    if (window && (before > window.from || before < window.to)) continue;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
  }
  const buckets = new Map<string, number>();
  const functions = new Map<string, number>();
  let totalMs = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id)!;
    const f = n.callFrame;
    const b = bucketOf(f.url, f.functionName);
    buckets.set(b, (buckets.get(b) ?? 0) + ms);
    const name = `${f.functionName || '(anonymous)'} ${b}:${f.lineNumber + 1}`;
    functions.set(name, (functions.get(name) ?? 0) + ms);
    totalMs += ms;
  }
  // Inclusive time per function (a function counted once per stack, however often it recurses).
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const nameOf = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} ${bucketOf(n.callFrame.url, n.callFrame.functionName)}:${n.callFrame.lineNumber + 1}`;
  const inclusive = new Map<string, number>();
  for (const [id, ms] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const name = nameOf(byId.get(cur)!);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + ms);
    }
  }
  const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]);
  return { totalMs, buckets: sorted(buckets), functions: sorted(functions), inclusive: sorted(inclusive).filter(([n]) => !n.startsWith('(')) };
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      path: { type: 'string', default: '/v1/whoami' },
      auth: { type: 'boolean', default: false },
      seconds: { type: 'string', default: '10' },
      connections: { type: 'string', default: '16' },
      top: { type: 'string', default: '25' },
      'small-files': { type: 'string', default: '0' },
      transform: { type: 'boolean', default: false },
      'tus-mib': { type: 'string', default: '0' },
    },
  });
  const dir = tempDir('obscura-cpuprof-');
  // Node 20 refuses --cpu-prof in NODE_OPTIONS: init with the usual helper, then restart the server on
  // the same data dir under `node --cpu-prof`.
  const first = await startObscura();
  await first.server.stop();
  const extra = values.transform ? processEnv(Number(values.connections)) : Number(values['tus-mib']) > 0 ? { OBSCURA_MAX_UPLOAD_BYTES: String(4 * Number(values['tus-mib']) * 1024 * 1024) } : {};
  const child = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, BIN, 'serve'], { env: cliEnv(benchEnv({ OBSCURA_DATA_DIR: first.dataDir, OBSCURA_PORT: '0', ...extra })), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d;
      const m = /OBSCURA_LISTENING (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${out}`)));
  });
  const target = { ...first, url };
  const headers: Record<string, string> = values.auth || values.path!.startsWith('/v1/') ? { authorization: `Bearer ${target.key}` } : {};
  const paths = [values.path!];
  const small = Number(values['small-files']);
  if (small > 0) {
    paths.length = 0;
    for (let i = 0; i < small; i++) {
      const u = new URL(await signedUrl(target, await uploadAsset(target, await pngPadded(16 * 1024))));
      paths.push(u.pathname + u.search);
    }
  }
  if (values.transform) {
    // The `transform` row: one 1920×1080 JPEG through a signed transform URL → 400 px WebP q80.
    const asset = await uploadAsset(target, await jpegInput(1920, 1080), 'image/jpeg');
    const tk = await setupFetch(`${target.url}/v1/apps/${target.appId}/transform-keys`, { method: 'POST', headers: { authorization: `Bearer ${target.key}` } });
    const k = (await tk.json()) as { id: string; secret: string };
    paths[0] = signTransformPath(k.id, Buffer.from(k.secret, 'base64url'), 'resize:width=400/format:webp,quality=80', asset, Math.floor(Date.now() / 1000) + 3600);
  }
  const load = (seconds: number) => httpLoad({ base: target.url, path: (i) => paths[i % paths.length]!, connections: Number(values.connections), seconds, headers: small > 0 ? {} : headers });
  const tusMib = Number(values['tus-mib']);
  let r: { rps: number; failed: number; statuses: Record<string, number> };
  let loadStarted: number;
  if (tusMib > 0) {
    // The `tus_upload` row: one file of --tus-mib MiB through tus-js-client in 32 MiB chunks (a 8 MiB warm-up first).
    const work = tempDir('obscura-profile-tus-');
    const endpoint = `${target.url}/v1/uploads`;
    await makeFile(join(work, 'warm.png'), 8 * 1024 * 1024);
    await tusUpload(join(work, 'warm.png'), 8 * 1024 * 1024, 32 * 1024 * 1024, endpoint, { authorization: `Bearer ${target.key}` });
    await makeFile(join(work, 'big.png'), tusMib * 1024 * 1024);
    loadStarted = Date.now();
    const up = await tusUpload(join(work, 'big.png'), tusMib * 1024 * 1024, 32 * 1024 * 1024, endpoint, { authorization: `Bearer ${target.key}` });
    r = { rps: tusMib / up.seconds, failed: 0, statuses: {} };
    rmSync(work, { recursive: true, force: true });
  } else {
    await load(2);
    loadStarted = Date.now();
    r = await load(Number(values.seconds));
  }
  const loadEnded = Date.now();
  child.kill('SIGTERM');
  await once(child, 'exit');
  // The load window, counted back from the end of the profile (written at exit).
  const shutdownMs = Date.now() - loadEnded;
  const window = { from: shutdownMs + (loadEnded - loadStarted), to: shutdownMs };
  rmSync(first.dataDir, { recursive: true, force: true });
  console.log(`${small > 0 ? `${small} small signed downloads` : values.transform ? 'signed transform URL (1920×1080 JPEG → 400 px WebP)' : tusMib > 0 ? `tus upload of ${tusMib} MiB` : values.path}: ${r.rps.toFixed(0)} ${tusMib > 0 ? 'MiB/s' : 'req/s'} (${r.failed} failed ${JSON.stringify(r.statuses)}); profiles in ${dir}`);
  // The main thread's profile is the largest (the database worker thread writes its own).
  // Only the server's (written when it stopped), not `obscura init`'s.
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f)).filter((f) => statSync(f).mtimeMs >= loadStarted);
  files.sort((a, b) => statSync(b).size - statSync(a).size);
  for (const file of files) {
    const s = summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile, window);
    console.log(`\n${file}: ${(s.totalMs / 1000).toFixed(1)} s sampled during the load`);
    const pct = (ms: number) => `${((ms / s.totalMs) * 100).toFixed(1).padStart(5)} %`;
    console.log('  self time by package:');
    for (const [b, ms] of s.buckets.slice(0, 20)) console.log(`    ${pct(ms)}  ${b}`);
    console.log('  top functions (self):');
    for (const [f, ms] of s.functions.slice(0, Number(values.top))) console.log(`    ${pct(ms)}  ${f}`);
    console.log('  top functions (inclusive):');
    for (const [f, ms] of s.inclusive.slice(0, Number(values.top) * 2)) console.log(`    ${pct(ms)}  ${f}`);
  }
}
