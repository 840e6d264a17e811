/**
 * Storage benchmark (issue 12: one-pass uploads, downloads near a static file server). Prints, never asserts.
 *
 * In one run on this machine:
 * 1. tus upload of a large file (default 1 GiB) through Obscura (`obscura serve`, embedded default:
 *    auth, chunk encryption, completion into the asset store) vs the same upload through a bare
 *    `@tus/server` + `@tus/file-store` process. Goal: >= 0.8x.
 * 2. Signed download of that asset (decrypting) vs a plain static file server streaming the same bytes
 *    from disk. Goal: >= 0.8x.
 * 3. Many small files: `--small` assets of `--small-kib` KiB, downloaded over signed URLs with
 *    `--connections` keep-alive connections for `--seconds`, vs the static server serving the same
 *    files from a directory. Goal: >= 0.8x.
 * 4. Memory of the whole Obscura process tree (all processes, threads included), sampled every 100 ms:
 *    the peak during 1-3. Goal: <= 300 MB.
 *
 * Usage: npm run build && node dist/bench/storage.js [--mib 1024] [--chunk-mib 50] [--small 200] [--small-kib 16] [--seconds 5] [--connections 8]
 * (bench/run.ts runs it with the other rows, over rounds.)
 */
import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, createWriteStream, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import * as tus from 'tus-js-client';
import sharp from 'sharp';
import { tempDir } from '../test/support/db.js';
import { freePort } from '../test/support/server.js';
import { ROOT } from '../test/support/cli.js';
import { httpLoad, isMain, setupFetch, pngPadded, sampleTreePeak, signedUrl, startObscura, uploadAsset, type Obscura, type TreeMemory } from './lib.js';

export interface StorageOptions {
  /** Size of the large file, MiB. */
  mib: number;
  /** tus chunk size, MiB. */
  chunkMib: number;
  /** How many small files (0 = skip the small-file row). */
  small: number;
  smallKib: number;
  /** Seconds per small-file measurement. */
  seconds: number;
  connections: number;
  /** A running server to measure (run.ts shares one); else one is started and stopped here. */
  target?: Obscura;
}

export interface StorageFigures {
  upload: { bareMibS: number; obscuraMibS: number; ratio: number };
  download: { staticMibS: number; obscuraMibS: number; ratio: number };
  small: { staticRps: number; obscuraRps: number; ratio: number; obscuraFailed: number; files: number; kib: number } | undefined;
  /** Peak memory of the Obscura process tree during this suite. */
  peak: TreeMemory;
  /** Peak memory of the bare tus server during its upload (a reference point). */
  barePeak: TreeMemory;
}

export const STORAGE_DEFAULTS: StorageOptions = { mib: 1024, chunkMib: 50, small: 200, smallKib: 16, seconds: 5, connections: 8 };

/** A file that sniffs as PNG (a real small PNG) followed by incompressible bytes. */
export async function makeFile(file: string, size: number): Promise<void> {
  const head = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#3366aa' } }).png().toBuffer();
  const out = createWriteStream(file);
  out.write(head);
  let written = head.length;
  const block = randomBytes(8 * 1024 * 1024);
  while (written < size) {
    const n = Math.min(block.length, size - written);
    if (!out.write(n === block.length ? block : block.subarray(0, n))) await once(out, 'drain');
    written += n;
  }
  out.end();
  await once(out, 'finish');
}

export async function tusUpload(file: string, size: number, chunkSize: number, endpoint: string, headers: Record<string, string>): Promise<{ seconds: number; url: string }> {
  const start = process.hrtime.bigint();
  const url = await new Promise<string>((resolve, reject) => {
    const up = new tus.Upload(createReadStream(file), {
      endpoint,
      headers,
      chunkSize,
      uploadSize: size,
      metadata: { filename: 'big.png', filetype: 'image/png' },
      // A real client's retries: the server may shed load (503) under this machine's load.
      retryDelays: [500, 1000, 2000, 4000, 8000],
      onError: reject,
      onSuccess: () => resolve(up.url ?? ''),
    });
    up.start();
  });
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, url };
}

async function timedDownload(url: string, size: number): Promise<number> {
  const start = process.hrtime.bigint();
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`download failed: ${res.status}`);
  let n = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
  }
  if (n !== size) throw new Error(`downloaded ${n} of ${size} bytes`);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Runs a baseline server from source text (written next to node_modules so its imports resolve). */
function startScript(source: string, env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const path = join(ROOT, `.bench-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(path, source);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /READY (\S+)/.exec(out);
      if (m) {
        rmSync(path, { force: true });
        resolve({ child, url: m[1]! });
      }
    });
    child.on('exit', (code) => {
      rmSync(path, { force: true });
      reject(new Error(`baseline exited ${code}`));
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.removeAllListeners('exit');
  const gone = once(child, 'exit');
  child.kill();
  await gone;
}

const BARE_TUS = `
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';
const server = new Server({ path: '/files', datastore: new FileStore({ directory: process.env.DIR }) });
const s = http.createServer((req, res) => server.handle(req, res));
s.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('READY http://127.0.0.1:' + process.env.PORT + '/files'));
`;

// GET / streams FILE; GET /<name> streams DIR/<name> (names are generated here, never user input).
const STATIC = `
import http from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { join } from 'node:path';
const s = http.createServer((req, res) => {
  const path = req.url === '/' ? process.env.FILE : join(process.env.DIR, req.url.slice(1));
  let size;
  try { size = statSync(path).size; } catch { res.writeHead(404).end(); return; }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  createReadStream(path).pipe(res);
});
s.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('READY http://127.0.0.1:' + process.env.PORT + '/'));
`;

/** One measurement of every storage figure (baselines first, then Obscura). */
export async function run(opts: Partial<StorageOptions> = {}): Promise<StorageFigures> {
  const o = { ...STORAGE_DEFAULTS, ...opts };
  const size = Math.round(o.mib * 1024 * 1024);
  const chunkSize = Math.round(o.chunkMib * 1024 * 1024);
  const work = tempDir('obscura-bench-storage-');
  const file = join(work, 'big.png');
  const smallDir = join(work, 'small');
  mkdirSync(smallDir);
  const children: ChildProcess[] = [];
  const own = o.target === undefined;
  const target = o.target ?? (await startObscura({ env: { OBSCURA_MAX_UPLOAD_BYTES: String(size * 2) } }));
  try {
    await makeFile(file, size);
    const smallNames: string[] = [];
    for (let i = 0; i < o.small; i++) {
      const name = `s${i}.png`;
      writeFileSync(join(smallDir, name), await pngPadded(o.smallKib * 1024));
      smallNames.push(name);
    }

    // Baselines.
    const bare = await startScript(BARE_TUS, { DIR: join(work, 'bare'), PORT: String(await freePort()) });
    children.push(bare.child);
    const bareSampler = sampleTreePeak(bare.child.pid!);
    const bareUp = await tusUpload(file, size, chunkSize, bare.url, {});
    const barePeak = bareSampler.stop();
    await stopChild(bare.child);
    rmSync(join(work, 'bare'), { recursive: true, force: true });
    const stat = await startScript(STATIC, { FILE: file, DIR: smallDir, PORT: String(await freePort()) });
    children.push(stat.child);
    const staticDown = await timedDownload(stat.url, size);
    const staticSmall = o.small > 0 ? await httpLoad({ base: stat.url, path: (i) => `/${smallNames[i % smallNames.length]}`, connections: o.connections, seconds: o.seconds }) : undefined;
    await stopChild(stat.child);

    // Obscura.
    const sampler = sampleTreePeak(target.pid);
    const auth = { authorization: `Bearer ${target.key}` };
    const up = await tusUpload(file, size, chunkSize, `${target.url}/v1/uploads`, auth);
    const head = await setupFetch(up.url, { method: 'HEAD', headers: { ...auth, 'tus-resumable': '1.0.0' } });
    const assetId = head.headers.get('obscura-asset-id');
    if (!assetId) throw new Error('the finished upload did not name its asset');
    const down = await timedDownload(await signedUrl(target, assetId), size);
    let small: StorageFigures['small'];
    if (o.small > 0) {
      const paths: string[] = [];
      for (let i = 0; i < smallNames.length; i++) {
        const id = await uploadAsset(target, await pngPadded(o.smallKib * 1024));
        const u = new URL(await signedUrl(target, id));
        paths.push(u.pathname + u.search);
      }
      const r = await httpLoad({ base: target.url, path: (i) => paths[i % paths.length]!, connections: o.connections, seconds: o.seconds });
      small = { staticRps: staticSmall!.rps, obscuraRps: r.rps, ratio: r.rps / staticSmall!.rps, obscuraFailed: r.failed, files: o.small, kib: o.smallKib };
    }
    const peak = sampler.stop();
    const mibs = (s: number) => size / 1024 / 1024 / s;
    return {
      upload: { bareMibS: mibs(bareUp.seconds), obscuraMibS: mibs(up.seconds), ratio: bareUp.seconds / up.seconds },
      download: { staticMibS: mibs(staticDown), obscuraMibS: mibs(down), ratio: staticDown / down },
      small,
      peak,
      barePeak,
    };
  } finally {
    for (const c of children) await stopChild(c);
    if (own) await target.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      mib: { type: 'string', default: '1024' },
      'chunk-mib': { type: 'string', default: '50' },
      small: { type: 'string', default: String(STORAGE_DEFAULTS.small) },
      'small-kib': { type: 'string', default: String(STORAGE_DEFAULTS.smallKib) },
      seconds: { type: 'string', default: String(STORAGE_DEFAULTS.seconds) },
      connections: { type: 'string', default: String(STORAGE_DEFAULTS.connections) },
    },
  });
  const o = { mib: Number(values.mib), chunkMib: Number(values['chunk-mib']), small: Number(values.small), smallKib: Number(values['small-kib']), seconds: Number(values.seconds), connections: Number(values.connections) };
  console.log(`Storage benchmark: ${o.mib} MiB file, tus chunks of ${o.chunkMib} MiB; ${o.small} small files of ${o.smallKib} KiB`);
  const f = await run(o);
  console.log(`tus upload   bare @tus/server + file-store: ${f.upload.bareMibS.toFixed(0)} MiB/s`);
  console.log(`tus upload   Obscura (auth + encryption):   ${f.upload.obscuraMibS.toFixed(0)} MiB/s  ratio ${f.upload.ratio.toFixed(2)}x  (goal >= 0.80x)`);
  console.log(`download     static file server:            ${f.download.staticMibS.toFixed(0)} MiB/s`);
  console.log(`download     Obscura signed URL (decrypt):  ${f.download.obscuraMibS.toFixed(0)} MiB/s  ratio ${f.download.ratio.toFixed(2)}x  (goal >= 0.80x)`);
  if (f.small) {
    console.log(`small files  static file server:            ${f.small.staticRps.toFixed(0)} req/s`);
    console.log(`small files  Obscura signed URLs:           ${f.small.obscuraRps.toFixed(0)} req/s  ratio ${f.small.ratio.toFixed(2)}x  (goal >= 0.80x)${f.small.obscuraFailed ? `  (${f.small.obscuraFailed} failed)` : ''}`);
  }
  console.log(`peak RSS of the Obscura process tree: ${f.peak.rssMb.toFixed(0)} MB (${f.peak.processes} processes, ${f.peak.threads} threads)  (goal <= 300 MB); bare tus server: ${f.barePeak.rssMb.toFixed(0)} MB`);
}
