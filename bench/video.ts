/**
 * Video benchmark (issue 11). Prints, never asserts.
 *
 * In one run on this machine:
 * 1. Transcode throughput: a 10 s 1080p H.264 clip (lavfi testsrc2 + a sine tone) → 720p H.264 CRF 23,
 *    AAC, faststart, (a) by ffmpeg run directly on the plaintext file, with the arguments the product
 *    uses (same filter, preset, CRF, threads), vs (b) through the async API of a real `obscura serve`
 *    process (embedded database): POST /v1/jobs with `scale:height=720/format:mp4,codec=h264,crf=23`,
 *    polled with GET /v1/jobs/{id} until it succeeded, timed from job creation to success (the upload
 *    is not timed). Everything the product adds is in (b): the queue, the leash (prlimit), reading the
 *    encrypted asset through the loopback range server, encrypting the output into the store.
 *    Goal: >= 0.95× ffmpeg's own throughput.
 * 2. Preview latency: POST /v1/process with `preview: true` on a 60 s 1080p clip (a 5 s excerpt,
 *    downscaled and watermarked), timed to the last byte of the response. Goal: < 3 s.
 *
 * Rounds alternate (1a, 1b, 1a, 1b, …) and medians (and the best rounds) are printed, so other work on
 * the machine shifts both alike.
 *
 * Usage: npm run build && node dist/bench/video.js [--rounds 3] [--preset medium] [--preview-rounds 3] [--poll-ms 250]
 */
import { parseArgs } from 'node:util';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runCli, startServe } from '../test/support/cli.js';
import { tempDir } from '../test/support/db.js';
import { api } from '../test/support/server.js';
import { VIDEO_SETTINGS } from '../src/media/video/settings.js';
import { findVideoTools } from '../src/media/video/ffmpeg.js';

const run = promisify(execFile);
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, preset: { type: 'string', default: 'medium' }, 'preview-rounds': { type: 'string', default: '3' }, 'poll-ms': { type: 'string', default: '250' } } });
// Each poll is a request the server answers (auth, a database read) on the same cores as ffmpeg.
const pollMs = Number(values['poll-ms']);
const rounds = Number(values.rounds);
const preset = values.preset;
const previewRounds = Number(values['preview-rounds']);
// The product's own default thread budget per ffmpeg run (OBSCURA_VIDEO_THREADS); the direct run gets the same.
const threads = VIDEO_SETTINGS.read({}).threads;

const tools = findVideoTools(VIDEO_SETTINGS.read({}));
if (!tools) {
  console.log('ffmpeg/ffprobe not found: install ffmpeg (Debian: apt-get install ffmpeg). Nothing measured.');
  process.exit(0);
}

const work = tempDir('obscura-bench-video-');

/** A generated clip: testsrc2 (moving detail, like real footage for an encoder) and a tone. */
async function generate(name: string, seconds: number): Promise<string> {
  const path = join(work, name);
  await run(tools!.ffmpeg, [
    '-v', 'error', '-y',
    '-f', 'lavfi', '-i', `testsrc2=size=1920x1080:rate=25:duration=${seconds}`,
    '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${seconds}`,
    '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '20', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-movflags', '+faststart', '-shortest', path,
  ]);
  return path;
}

/** (a) ffmpeg on the plaintext file, with the arguments processVideo builds for the same operations. */
async function direct(input: string): Promise<number> {
  const out = join(work, 'direct-720p.mp4');
  const args = [
    '-nostdin', '-hide_banner', '-loglevel', 'error', '-y', '-threads', String(threads),
    '-i', input,
    '-map', '0:v:0', '-map', '0:a:0',
    '-vf', 'scale=1280:720:flags=lanczos,setsar=1',
    '-c:v', 'libx264', '-preset', preset!, '-crf', '23', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-b:a', '128k', '-movflags', '+faststart',
    '-sn', '-dn', '-map_metadata', '-1', '-map_chapters', '-1', '-filter_threads', String(threads), '-f', 'mp4', out,
  ];
  const started = performance.now();
  await run(tools!.ffmpeg, args);
  const seconds = (performance.now() - started) / 1000;
  rmSync(out, { force: true });
  return seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log(`machine: ${availableParallelism()} CPUs, node ${process.version}, ${tools.version}, ffmpeg threads per run: ${threads}, x264 preset: ${preset}`);
let began = performance.now();
const clip10 = await generate('clip-10s-1080p.mp4', 10);
const clip60 = await generate('clip-60s-1080p.mp4', 60);
console.log(`inputs: 10 s 1080p H.264/AAC (${(statSync(clip10).size / 1e6).toFixed(1)} MB), 60 s 1080p (${(statSync(clip60).size / 1e6).toFixed(1)} MB), generated in ${((performance.now() - began) / 1000).toFixed(1)} s`);

const dataDir = tempDir('obscura-bench-video-data-');
const env = {
  OBSCURA_DATA_DIR: dataDir,
  OBSCURA_LOG_LEVEL: 'warn',
  // The 60 s clip is larger than the default one-request upload; the upload is not what is measured.
  OBSCURA_MAX_SIMPLE_UPLOAD_BYTES: String(1024 ** 3),
  OBSCURA_RATE_LIMIT_IP_PER_MINUTE: '10000000',
  OBSCURA_RATE_LIMIT_PER_MINUTE: '10000000',
  OBSCURA_RATE_LIMIT_APP_PER_MINUTE: '100000000',
};
const init = JSON.parse((await runCli(['init', '--json'], env)).stdout);
const key = init.secret_key.key as string;
const server = await startServe(env);
try {
  const upload = async (path: string): Promise<string> => {
    const res = await fetch(`${server.url}/v1/assets`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'video/mp4' }, body: new Uint8Array(readFileSync(path)) });
    const body = (await res.json()) as { id: string };
    if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${JSON.stringify(body)}`);
    return body.id;
  };
  began = performance.now();
  const asset10 = await upload(clip10);
  const asset60 = await upload(clip60);
  console.log(`uploads (probed, encrypted; not timed below): ${((performance.now() - began) / 1000).toFixed(1)} s`);

  /** (b) the same transcode as a job: creation → succeeded; also the job's own started/finished stamps. */
  const viaJob = async (): Promise<{ seconds: number; server: number; queued: number; ran: number; output: { width: number; height: number } }> => {
    const started = performance.now();
    const created = await api(server.url, 'POST', '/v1/jobs', { key, body: { input: { asset_id: asset10 }, operations: `scale:height=720/format:mp4,codec=h264,crf=23,preset=${preset}` } });
    if (created.status !== 202) throw new Error(`job not created: ${created.status} ${JSON.stringify(created.body)}`);
    for (;;) {
      const j = await api(server.url, 'GET', `/v1/jobs/${created.body.id}`, { key });
      if (j.body.status === 'succeeded') {
        const seconds = (performance.now() - started) / 1000;
        const out = await api(server.url, 'GET', `/v1/assets/${j.body.output.asset_id}`, { key });
        const at = (s: string) => Date.parse(s) / 1000;
        return { seconds, server: at(j.body.finished_at) - at(j.body.created_at), queued: at(j.body.started_at) - at(j.body.created_at), ran: at(j.body.finished_at) - at(j.body.started_at), output: { width: out.body.width, height: out.body.height } };
      }
      if (j.body.status === 'failed' || j.body.status === 'cancelled') throw new Error(`job ${j.body.status}: ${JSON.stringify(j.body.error)}`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  };

  const directs: number[] = [];
  const jobs: Awaited<ReturnType<typeof viaJob>>[] = [];
  for (let round = 0; round < rounds; round++) {
    directs.push(await direct(clip10));
    jobs.push(await viaJob());
  }
  const d = median(directs);
  const j = median(jobs.map((x) => x.seconds));
  const last = jobs[jobs.length - 1]!;
  console.log('transcode 10 s 1080p → 720p H.264 CRF 23 (+ AAC, faststart):');
  console.log(`  ffmpeg directly on the plaintext file:  ${d.toFixed(2)} s  = ${(10 / d).toFixed(2)}x realtime  (rounds: ${directs.map((x) => x.toFixed(2)).join(', ')})`);
  console.log(`  POST /v1/jobs → succeeded:              ${j.toFixed(2)} s  = ${(10 / j).toFixed(2)}x realtime  (rounds: ${jobs.map((x) => x.seconds.toFixed(2)).join(', ')})`);
  console.log(`    server's created_at → finished_at:    ${jobs.map((x) => x.server.toFixed(2)).join(', ')} s (the client saw it within one ${pollMs} ms poll)`);
  console.log(`    of which waiting in the queue:        ${jobs.map((x) => x.queued.toFixed(2)).join(', ')} s; running (started → finished): ${jobs.map((x) => x.ran.toFixed(2)).join(', ')} s; output ${last.output.width}x${last.output.height}`);
  // Best of the rounds too: on a shared machine the fastest round is the one least disturbed.
  console.log(`  throughput ratio API/ffmpeg:            ${(d / j).toFixed(3)} of the medians, ${(Math.min(...directs) / Math.min(...jobs.map((x) => x.seconds))).toFixed(3)} of the best rounds  (goal >= 0.95)`);

  const previews: number[] = [];
  let shown = '';
  for (let round = 0; round < previewRounds; round++) {
    const started = performance.now();
    const res = await fetch(`${server.url}/v1/process`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input: { asset_id: asset60 }, operations: 'format:mp4', preview: true }) });
    const body = Buffer.from(await res.arrayBuffer());
    previews.push((performance.now() - started) / 1000);
    if (res.status !== 200) throw new Error(`preview failed: ${res.status} ${body.toString().slice(0, 500)}`);
    if (!shown) {
      const path = join(work, 'preview.mp4');
      writeFileSync(path, body);
      const { stdout } = await run(tools.ffprobe, ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=width,height:format=duration', '-of', 'csv=p=0', path]);
      shown = `${res.headers.get('content-type')}, ${body.length} bytes, ${stdout.trim().split('\n').join(' / ')} (w,h / s)`;
    }
  }
  console.log('preview of a 60 s 1080p clip (POST /v1/process, preview: true, 5 s excerpt):');
  console.log(`  time to the last byte:                  ${median(previews).toFixed(2)} s median  (rounds: ${previews.map((x) => x.toFixed(2)).join(', ')}; goal < 3 s)`);
  console.log(`  response: ${shown}`);
} finally {
  await server.stop();
  rmSync(work, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
}
