/**
 * Storage benchmark (issue: encrypted media storage). Prints, never asserts.
 *
 * In one run on this machine:
 * 1. tus upload of a large file (default 1 GiB) through Obscura (`obscura serve`, embedded default:
 *    auth, chunk encryption, completion re-encrypting into the asset store) vs the same upload through a
 *    bare `@tus/server` + `@tus/file-store` process. Goal: >= 0.7x.
 * 2. Signed download of that asset (decrypting) vs a plain static file server streaming the same bytes
 *    from disk. Goal: >= 0.7x.
 * 3. Peak RSS (VmHWM) of the Obscura server process during both. Goal: < 200 MB.
 *
 * Usage: npm run build && node dist/bench/storage.js [--mib 1024] [--chunk-mib 50]
 */
import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, createWriteStream, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import * as tus from 'tus-js-client';
import sharp from 'sharp';
import { runCli, startServe } from '../test/support/cli.js';
import { tempDir } from '../test/support/db.js';
import { freePort } from '../test/support/server.js';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '1024' }, 'chunk-mib': { type: 'string', default: '50' } } });
const size = Number(values.mib) * 1024 * 1024;
const chunkSize = Number(values['chunk-mib']) * 1024 * 1024;

const work = tempDir('obscura-bench-storage-');
const file = join(work, 'big.png');

/** A file that sniffs as PNG (a real small PNG) followed by incompressible bytes. */
async function makeFile(): Promise<void> {
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

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

async function tusUpload(endpoint: string, headers: Record<string, string>): Promise<{ seconds: number; url: string }> {
  const start = process.hrtime.bigint();
  const url = await new Promise<string>((resolve, reject) => {
    const up = new tus.Upload(createReadStream(file), {
      endpoint,
      headers,
      chunkSize,
      uploadSize: size,
      metadata: { filename: 'big.png', filetype: 'image/png' },
      retryDelays: [],
      onError: reject,
      onSuccess: () => resolve(up.url ?? ''),
    });
    up.start();
  });
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, url };
}

async function timedDownload(url: string, headers: Record<string, string> = {}): Promise<number> {
  const start = process.hrtime.bigint();
  const res = await fetch(url, { headers });
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

function startScript(source: string, env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const path = join(process.cwd(), `.bench-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(path, source);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /READY (\S+)/.exec(out);
      if (m) resolve({ child, url: m[1]! });
    });
    child.on('exit', (code) => reject(new Error(`baseline exited ${code}`)));
    child.on('spawn', () => setTimeout(() => import('node:fs').then((fs) => fs.rmSync(path, { force: true })), 2000));
  });
}

const BARE_TUS = `
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';
const server = new Server({ path: '/files', datastore: new FileStore({ directory: process.env.DIR }) });
const s = http.createServer((req, res) => server.handle(req, res));
s.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('READY http://127.0.0.1:' + process.env.PORT + '/files'));
`;

const STATIC = `
import http from 'node:http';
import { createReadStream, statSync } from 'node:fs';
const s = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': statSync(process.env.FILE).size });
  createReadStream(process.env.FILE).pipe(res);
});
s.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('READY http://127.0.0.1:' + process.env.PORT + '/'));
`;

await makeFile();
console.log(`Storage benchmark: ${(size / 1024 / 1024).toFixed(0)} MiB file, tus chunks of ${(chunkSize / 1024 / 1024).toFixed(0)} MiB`);

// Baselines.
const bare = await startScript(BARE_TUS, { DIR: join(work, 'bare'), PORT: String(await freePort()) });
const bareUp = await tusUpload(bare.url, {});
bare.child.kill();
const stat = await startScript(STATIC, { FILE: file, PORT: String(await freePort()) });
const staticDown = await timedDownload(stat.url);
stat.child.kill();

// Obscura.
const dataDir = join(work, 'obscura');
const env = { OBSCURA_DATA_DIR: dataDir, OBSCURA_LOG_LEVEL: 'warn', OBSCURA_MAX_UPLOAD_BYTES: String(size * 2) };
const init = JSON.parse((await runCli(['init', '--json'], env)).stdout);
const server = await startServe(env);
try {
  const auth = { authorization: `Bearer ${init.secret_key.key}` };
  const up = await tusUpload(`${server.url}/v1/uploads`, auth);
  const head = await fetch(up.url, { method: 'HEAD', headers: { ...auth, 'tus-resumable': '1.0.0' } });
  const assetId = head.headers.get('obscura-asset-id');
  if (!assetId) throw new Error('the finished upload did not name its asset');
  const link = (await (await fetch(`${server.url}/v1/assets/${assetId}/url`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' })).json()) as { url: string };
  const down = await timedDownload(link.url);
  const rss = peakRssMb(server.child.pid!);
  const mbps = (s: number) => (size / 1024 / 1024 / s).toFixed(0);
  console.log(`tus upload   bare @tus/server + file-store: ${bareUp.seconds.toFixed(2)} s (${mbps(bareUp.seconds)} MiB/s)`);
  console.log(`tus upload   Obscura (auth + encryption):   ${up.seconds.toFixed(2)} s (${mbps(up.seconds)} MiB/s)  ratio ${(bareUp.seconds / up.seconds).toFixed(2)}x  (goal >= 0.70x)`);
  console.log(`download     static file server:            ${staticDown.toFixed(2)} s (${mbps(staticDown)} MiB/s)`);
  console.log(`download     Obscura signed URL (decrypt):  ${down.toFixed(2)} s (${mbps(down)} MiB/s)  ratio ${(staticDown / down).toFixed(2)}x  (goal >= 0.70x)`);
  console.log(`peak RSS of the Obscura server process:    ${rss.toFixed(0)} MB  (goal < 200 MB)`);
  console.log(`(file on disk: ${(statSync(file).size / 1024 / 1024).toFixed(0)} MiB)`);
} finally {
  await server.stop();
}
