/**
 * Issue 11, item 6 ("ffmpeg on a short leash") and "Bad input", proved against the real ffmpeg/ffprobe
 * and the real server. Hostile files are generated here (lavfi clips, byte-patched MP4 boxes, a
 * hand-built Matroska, playlists and concat scripts dressed as .mp4): each is refused quickly with a
 * 4xx and a stable code and stores nothing, or is processed within the limits. The production probe
 * (probeVideo through serveSource) and processVideo run under strace to show that ffmpeg opens no path
 * and no socket beyond its own run, and a listener that the hostile files name counts connections (it
 * must see none). Timeouts, the memory limit, the temp-area sweep and the operator's video limits are
 * checked through the functions the server calls and through POST /v1/assets and POST /v1/jobs.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { once } from 'node:events';
import { superQuery, tempDir } from '../../support/db.js';
import { clip } from '../../support/video.js';
import { masterKeysFor, startServer, type TestServer } from '../../support/server.js';
import { api, raw, startHarness, startTestWorkers, upload, waitForJob, type Harness } from '../../jobs/support.js';
import { findVideoTools } from '../../../src/media/video/ffmpeg.js';
import { probeVideo, type VideoFacts } from '../../../src/media/video/probe.js';
import { serveSource } from '../../../src/media/video/source.js';
import { processVideo } from '../../../src/media/video/pipeline.js';
import { compileVideoOperations } from '../../../src/media/video/operations.js';
import type { VideoSettings } from '../../../src/media/video/settings.js';
import { VideoProcessing } from '../../../src/processing/video.js';
import { fontFile } from '../../../src/media/fonts.js';
import { startJobWorkers } from '../../../src/jobs/worker.js';
import { isAppError } from '../../../src/errors.js';

const run = promisify(execFile);
const work = tempDir('obscura-leash-');

// ---------------------------------------------------------------------------------------------------
// Fixture builders: ISO BMFF boxes, an H.264 SPS, a Matroska writer.

interface Box {
  type: string;
  /** Bytes of a container box before its child boxes (stsd, avc1, dref). */
  prefix?: Buffer;
  children?: Box[];
  body?: Buffer;
}
const CONTAINERS = new Set(['moov', 'trak', 'mdia', 'minf', 'stbl', 'dinf', 'edts']);
const PREFIXED: Record<string, number> = { stsd: 8, avc1: 78 };

function parseBoxes(b: Buffer): Box[] {
  const out: Box[] = [];
  for (let off = 0; off + 8 <= b.length; ) {
    const size = b.readUInt32BE(off);
    const type = b.toString('latin1', off + 4, off + 8);
    const body = b.subarray(off + 8, off + size);
    if (CONTAINERS.has(type)) out.push({ type, children: parseBoxes(body) });
    else if (PREFIXED[type] !== undefined) out.push({ type, prefix: body.subarray(0, PREFIXED[type]), children: parseBoxes(body.subarray(PREFIXED[type])) });
    else out.push({ type, body: Buffer.from(body) });
    off += size;
  }
  return out;
}

function box(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.write(type, 4, 'latin1');
  return Buffer.concat([head, body]);
}

function serialize(boxes: Box[]): Buffer {
  return Buffer.concat(boxes.map((x) => box(x.type, x.children ? Buffer.concat([x.prefix ?? Buffer.alloc(0), serialize(x.children)]) : x.body!)));
}

function* findBox(boxes: Box[], type: string): Generator<Box> {
  for (const x of boxes) {
    if (x.type === type) yield x;
    if (x.children) yield* findBox(x.children, type);
  }
}

function first(boxes: Box[], type: string): Box {
  const found = findBox(boxes, type).next();
  assert.ok(!found.done, `no ${type} box`);
  return found.value;
}

/** A baseline H.264 sequence parameter set for a frame of `mbW`×`mbH` macroblocks (16×16 px each). */
function sps(mbW: number, mbH: number): Buffer {
  const bits: number[] = [];
  const u = (v: number, n: number) => {
    for (let i = n - 1; i >= 0; i--) bits.push(Math.floor(v / 2 ** i) % 2);
  };
  const ue = (v: number) => {
    const n = (v + 1).toString(2).length;
    u(0, n - 1);
    u(v + 1, n);
  };
  u(66, 8); // profile_idc: baseline
  u(0xc0, 8);
  u(0x33, 8); // level 5.1
  ue(0); // seq_parameter_set_id
  ue(0); // log2_max_frame_num_minus4
  ue(2); // pic_order_cnt_type
  ue(1); // max_num_ref_frames
  u(0, 1);
  ue(mbW - 1);
  ue(mbH - 1);
  u(1, 1); // frame_mbs_only
  u(1, 1);
  u(0, 1); // no cropping
  u(0, 1); // no VUI
  bits.push(1);
  while (bits.length % 8) bits.push(0);
  const rbsp: number[] = [];
  for (let i = 0; i < bits.length; i += 8) rbsp.push(parseInt(bits.slice(i, i + 8).join(''), 2));
  // Emulation prevention: 00 00 0x (x ≤ 3) gets an 03.
  const nal = [0x67];
  let zeros = 0;
  for (const b of rbsp) {
    if (zeros >= 2 && b <= 3) {
      nal.push(3);
      zeros = 0;
    }
    nal.push(b);
    zeros = b === 0 ? zeros + 1 : 0;
  }
  return Buffer.from(nal);
}

/** A real MP4 (index at the end, so growing a box moves no sample) whose SPS claims `w`×`h` pixels. */
async function claimsFrame(w: number, h: number): Promise<Buffer> {
  const boxes = parseBoxes(await clip({ seconds: 1, audio: false, moovAtEnd: true }));
  const avcC = first(boxes, 'avcC');
  const b = avcC.body!;
  const spsLen = b.readUInt16BE(6);
  const next = sps(Math.ceil(w / 16), Math.ceil(h / 16));
  const len = Buffer.alloc(2);
  len.writeUInt16BE(next.length);
  avcC.body = Buffer.concat([b.subarray(0, 6), len, next, b.subarray(8 + spsLen)]);
  // The sample entry and the track header say the largest they can (16-bit and 16.16 fields).
  const avc1 = first(boxes, 'avc1');
  avc1.prefix = Buffer.from(avc1.prefix!);
  avc1.prefix.writeUInt16BE(Math.min(w, 65535), 24);
  avc1.prefix.writeUInt16BE(Math.min(h, 65535), 26);
  const tkhd = first(boxes, 'tkhd');
  tkhd.body!.writeUInt32BE(Math.min(w, 65535) * 65536, 76);
  tkhd.body!.writeUInt32BE(Math.min(h, 65535) * 65536, 80);
  return serialize(boxes);
}

/** A 1-second clip whose movie, track and media headers (and edit list) declare `seconds`. */
async function declaresDuration(seconds: number): Promise<Buffer> {
  const boxes = parseBoxes(Buffer.from(await clip({ seconds: 1, audio: false })));
  const mvhd = first(boxes, 'mvhd').body!;
  assert.equal(mvhd[0], 0, 'mvhd version 0');
  const movieScale = mvhd.readUInt32BE(12);
  mvhd.writeUInt32BE(seconds * movieScale, 16);
  first(boxes, 'tkhd').body!.writeUInt32BE(seconds * movieScale, 20);
  const mdhd = first(boxes, 'mdhd').body!;
  mdhd.writeUInt32BE(seconds * mdhd.readUInt32BE(12), 16);
  const elst = findBox(boxes, 'elst').next().value;
  if (elst) elst.body!.writeUInt32BE(seconds * movieScale, 8);
  return serialize(boxes);
}

/** A macOS alias data reference naming an absolute path (what QuickTime reference movies use). */
function aliasDref(path: string): Buffer {
  const rec = Buffer.alloc(150);
  rec[10] = 4;
  rec.write('Disk', 11, 'latin1');
  rec[50] = 6;
  rec.write('passwd', 51, 'latin1');
  rec.writeInt16BE(-1, 130); // no relative levels: only the absolute path locates it
  rec.writeInt16BE(-1, 132);
  const p = Buffer.from(path, 'latin1');
  const tlv = Buffer.alloc(4);
  tlv.writeUInt16BE(2, 0); // absolute path
  tlv.writeUInt16BE(p.length, 2);
  const end = Buffer.from([0xff, 0xff, 0, 0]);
  const alis = box('alis', Buffer.concat([Buffer.alloc(4), rec, tlv, p, Buffer.alloc(p.length % 2), end]));
  const head = Buffer.alloc(8);
  head.writeUInt32BE(1, 4);
  return Buffer.concat([head, alis]);
}

/** An MP4 with a subtitle (tx3g) track whose data lives, says its dref, in `path`. */
async function externalSubtitles(path: string): Promise<Buffer> {
  const srt = join(work, 'subs.srt');
  writeFileSync(srt, '1\n00:00:00,000 --> 00:00:00,800\nhello\n');
  const out = join(work, 'subs.mp4');
  await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=25:duration=1', '-i', srt, '-map', '0', '-map', '1', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:s', 'mov_text', out]);
  const boxes = parseBoxes(readFileSync(out));
  const traks = [...findBox(boxes, 'trak')];
  const subtitle = traks.find((t) => first([t], 'hdlr').body!.toString('latin1', 8, 12) === 'sbtl');
  assert.ok(subtitle, 'a subtitle track');
  first([subtitle], 'dref').body = aliasDref(path);
  return serialize(boxes);
}

/** EBML element: id (with its marker bits) and an 8-byte size. */
function el(id: number, body: Buffer | string | number): Buffer {
  let data: Buffer;
  if (typeof body === 'number') {
    const hex = body.toString(16);
    data = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  } else data = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  const idHex = id.toString(16);
  const size = Buffer.alloc(8);
  size[0] = 0x01;
  size.writeUIntBE(data.length, 2, 6);
  return Buffer.concat([Buffer.from(idHex.length % 2 ? `0${idHex}` : idHex, 'hex'), size, data]);
}

/** A WebM (or Matroska) file that declares `n` VP9 video tracks. */
function manyStreams(n: number, docType: 'webm' | 'matroska' = 'webm'): Buffer {
  const header = el(0x1a45dfa3, Buffer.concat([el(0x4286, 1), el(0x42f7, 1), el(0x42f2, 4), el(0x42f3, 8), el(0x4282, docType), el(0x4287, 4), el(0x4285, 2)]));
  const duration = Buffer.alloc(8);
  duration.writeDoubleBE(1000);
  const info = el(0x1549a966, Buffer.concat([el(0x2ad7b1, 1_000_000), el(0x4489, duration), el(0x4d80, 'leash'), el(0x5741, 'leash')]));
  const tracks: Buffer[] = [];
  for (let i = 1; i <= n; i++) tracks.push(el(0xae, Buffer.concat([el(0xd7, i), el(0x73c5, i), el(0x83, 1), el(0x86, 'V_VP9'), el(0xe0, Buffer.concat([el(0xb0, 160), el(0xba, 120)]))])));
  const segment = el(0x18538067, Buffer.concat([info, el(0x1654ae6b, Buffer.concat(tracks)), el(0x1f43b675, el(0xe7, 0))]));
  return Buffer.concat([header, segment]);
}

// ---------------------------------------------------------------------------------------------------
// Observation: a listener the hostile files name, strace, ffmpeg processes, the temp area.

/** A TCP listener on 127.0.0.1 that counts connections (the hostile files point at it). */
async function countingListener(): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let n = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    n++;
    sockets.add(s);
    s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => n,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Wrapper scripts that run the real tools under strace, each run logging to its own file in `logs`. */
function straced(logs: string): { ffmpegPath: string; ffprobePath: string } {
  mkdirSync(logs, { recursive: true });
  const wrap = (tool: string) => {
    const p = join(logs, `${tool}-straced`);
    writeFileSync(p, `#!/bin/sh\nexec /usr/bin/strace -f -qq -e trace=open,openat,creat,execve,connect,bind,sendto,sendmsg -v -s 512 -o "${logs}/trace-${tool}-$$.log" /usr/bin/${tool} "$@"\n`);
    chmodSync(p, 0o755);
    return p;
  };
  return { ffmpegPath: wrap('ffmpeg'), ffprobePath: wrap('ffprobe') };
}

/** What one traced process tree did (failed attempts included). */
interface Trace {
  /** The tool's own arguments (from its execve). */
  argv: string[];
  opened: string[];
  executed: string[];
  /** connect/bind addresses. */
  connected: string[];
  /** sendto/sendmsg addresses (none expected: a datagram needs no connect). */
  sent: string[];
}

/** Every traced run in `logs`, one per tool invocation. */
function readTraces(logs: string): Trace[] {
  const out: Trace[] = [];
  for (const f of readdirSync(logs).filter((n) => n.startsWith('trace-'))) {
    const t: Trace = { argv: [], opened: [], connected: [], executed: [], sent: [] };
    for (const line of readFileSync(join(logs, f), 'utf8').split('\n')) {
      let m = /\b(?:open|openat|creat)\((?:AT_FDCWD, |\d+, )?"([^"]*)"/.exec(line);
      if (m) t.opened.push(m[1]!);
      m = /\bexecve\("([^"]*)", \[(.*?)\]/.exec(line);
      if (m) {
        t.executed.push(m[1]!);
        if (t.argv.length === 0) t.argv = [...m[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => x[1]!);
      }
      m = /\b(?:connect|bind)\(\d+, \{(sa_family=[^}]*)\}/.exec(line);
      if (m) t.connected.push(m[1]!);
      m = /\b(?:sendto|sendmsg)\(\d+, .*?(sa_family=[^}]*)\}/.exec(line);
      if (m) t.sent.push(m[1]!);
    }
    out.push(t);
  }
  return out;
}

/** Pids of ffmpeg/ffprobe processes whose command line mentions `needle`. */
function toolPids(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const argv0 = cmd.split('\0')[0]!;
      if ((argv0.endsWith('ffmpeg') || argv0.endsWith('ffprobe') || argv0.endsWith('prlimit') || argv0.endsWith('setpriv')) && cmd.includes(needle)) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

function gone(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] === 'Z';
  } catch {
    return true;
  }
}

const runDirs = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith('run-')) : []);

/** The code of an AppError a promise rejects with. */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(isAppError(err), `not an AppError: ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a refusal');
}

// ---------------------------------------------------------------------------------------------------

describe('ffmpeg on a short leash', () => {
  let h: Harness;
  let workers: Awaited<ReturnType<typeof startTestWorkers>>;
  let listener: Awaited<ReturnType<typeof countingListener>>;
  const temp = tempDir('obscura-leash-temp-');

  before(async () => {
    listener = await countingListener();
    // Three seconds of wall clock per ffmpeg run on this server: enough for a 1-second 160x120 clip,
    // far too little for nlmeans over 10 s of 640x480 (ffprobe at upload has its own leash).
    h = await startHarness('pglite', { env: { OBSCURA_VIDEO_TEMP_DIR: temp, OBSCURA_VIDEO_TIMEOUT_SECONDS: '3' } });
    workers = await startTestWorkers(h);
  });
  after(async () => {
    await workers?.stop();
    await h?.close();
    await listener?.close();
  });

  const base = (): VideoSettings & { tempDir: string } => h.srv.config.video;
  const assetCount = async () => Number((await superQuery(h.t, 'SELECT count(*)::int AS n FROM assets'))[0]!.n);
  const blobCount = async () => {
    let n = 0;
    for await (const _ of h.srv.store.list(`orgs/${h.a.orgId}/`)) n++;
    return n;
  };
  const post = (bytes: Buffer, filename: string) => raw(h.srv.url, 'POST', `/v1/assets?filename=${encodeURIComponent(filename)}`, { key: h.a.key, body: bytes, headers: { 'content-type': 'application/octet-stream' } });

  test('hostile uploads are refused quickly with a 4xx and a stable code, store nothing and reach no address they name; a real clip is accepted', async () => {
    const target = `http://127.0.0.1:${listener.port}`;
    const good = await clip({ seconds: 1 });
    const ftyp = good.subarray(0, good.readUInt32BE(0));
    const playlist = `#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXTINF:10,\n${target}/seg.ts\n#EXT-X-ENDLIST\n`;
    const concat = `ffconcat version 1.0\nfile 'file:///etc/passwd'\nfile '${target}/clip.mp4'\n`;
    const cases: Array<[string, Buffer, number, string]> = [
      ['a truncated MP4', good.subarray(0, Math.floor(good.length * 0.6)), 422, 'ERR_MEDIA_INVALID'],
      ['an MP4 whose SPS and headers claim 100000x100000', await claimsFrame(100_000, 100_000), 422, 'ERR_MEDIA_INVALID'],
      ['an MP4 whose SPS claims 10000x8000 (over the 8K default)', await claimsFrame(10_000, 8000), 422, 'ERR_VIDEO_TOO_LARGE'],
      ['a WebM file with 10 000 streams', manyStreams(10_000), 422, 'ERR_VIDEO_TOO_LARGE'],
      ['a 1-second MP4 declaring 10 hours', await declaresDuration(36_000), 422, 'ERR_VIDEO_TOO_LARGE'],
      ['a zero-length file', Buffer.alloc(0), 415, 'ERR_UNSUPPORTED_MEDIA_TYPE'],
      ['garbage bytes', randomBytes(64 * 1024), 415, 'ERR_UNSUPPORTED_MEDIA_TYPE'],
      ['an HLS playlist named .mp4', Buffer.from(playlist), 415, 'ERR_UNSUPPORTED_MEDIA_TYPE'],
      ['an ffconcat script named .mp4', Buffer.from(concat), 415, 'ERR_UNSUPPORTED_MEDIA_TYPE'],
      ['an HLS playlist behind an ftyp box', Buffer.concat([ftyp, box('moov', Buffer.from(playlist)), box('mdat', Buffer.alloc(100))]), 422, 'ERR_MEDIA_INVALID'],
      ['an ffconcat script behind an ftyp box', Buffer.concat([ftyp, box('moov', Buffer.from(concat)), box('mdat', Buffer.alloc(100))]), 422, 'ERR_MEDIA_INVALID'],
    ];
    const assets = await assetCount();
    const blobs = await blobCount();
    for (const [name, bytes, status, code] of cases) {
      const t0 = performance.now();
      const r = await post(bytes, 'clip.mp4');
      const ms = performance.now() - t0;
      const body = JSON.parse(r.body.toString());
      assert.equal(r.status, status, `${name}: ${r.body.toString()}`);
      assert.equal(body.code, code, name);
      assert.ok(!/\bat \w+ \(|node_modules|\/src\//.test(r.body.toString()), `${name}: no stack or path in the answer`);
      // Quickly: ffprobe stops at the first impossible fact (10 s is generous for a shared 2-core box).
      assert.ok(ms < 10_000, `${name} took ${Math.round(ms)} ms`);
      if (code === 'ERR_VIDEO_TOO_LARGE') assert.match(body.setting, /^OBSCURA_VIDEO_MAX_/, name);
    }
    assert.equal(await assetCount(), assets, 'no asset row');
    assert.equal(await blobCount(), blobs, 'no blob');
    assert.equal(listener.connections(), 0, 'nothing connected to the address the files name');
    // The legitimate twin.
    assert.ok((await upload(h.srv, h.a.key, good)).startsWith('ast_'));
  });

  test('an app that accepts Matroska gets its uploads probed too: 10 000 streams are refused, a real MKV is accepted with its facts', async () => {
    const patched = await api(h.srv.url, 'PATCH', `/v1/apps/${h.b.appId}`, { key: h.b.key, body: { settings: { allowed_types: ['video/matroska', 'video/mp4'] } } });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    const r = await raw(h.srv.url, 'POST', '/v1/assets', { key: h.b.key, body: manyStreams(10_000, 'matroska'), headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(r.status, 422, r.body.toString());
    assert.equal(JSON.parse(r.body.toString()).code, 'ERR_VIDEO_TOO_LARGE');
    const mkv = join(work, 'real.mkv');
    await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=25:duration=1', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', mkv]);
    const id = await upload(h.srv, h.b.key, readFileSync(mkv));
    const asset = await api(h.srv.url, 'GET', `/v1/assets/${id}`, { key: h.b.key });
    assert.equal(asset.body.content_type, 'video/matroska');
    assert.equal(asset.body.video.video_codec, 'h264');
    assert.equal(asset.body.width, 160);
    // A Matroska output is stored as what its bytes are.
    const created = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.b.key, body: { input: { asset_id: id }, operations: 'format:mkv,codec=h264,preset=ultrafast' } });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const job = await waitForJob(h.srv, h.b.key, created.body.id, 45_000);
    assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
    const out = await api(h.srv.url, 'GET', `/v1/assets/${job.output.asset_id}`, { key: h.b.key });
    assert.equal(out.body.content_type, 'video/matroska');
  });

  test('an MP4 whose subtitle track points at /etc/passwd makes an unleashed ffprobe open it; the server stores it with its facts (the strace test shows the leashed runs never open it)', async () => {
    const bytes = await externalSubtitles('/etc/passwd');
    // Potency: ffprobe with data references enabled and absolute paths allowed does open the file.
    const logs = join(work, 'potency');
    const tools = straced(logs);
    const file = join(work, 'external-subs.mp4');
    writeFileSync(file, bytes);
    await run(tools.ffprobePath, ['-v', 'error', '-f', 'mov', '-enable_drefs', '1', '-use_absolute_path', '1', '-show_streams', file]);
    assert.ok(readTraces(logs).some((t) => t.opened.includes('/etc/passwd')), 'the unleashed ffprobe opens the path the file names');
    // Through the server: accepted (its video and subtitle streams probe), and the probe never opened it.
    const id = await upload(h.srv, h.a.key, bytes);
    const asset = await api(h.srv.url, 'GET', `/v1/assets/${id}`, { key: h.a.key });
    assert.equal(asset.body.video.streams, 2);
    assert.equal(asset.body.video.width, 160);
  });

  test('the production probe and transcode open no file and no socket beyond their own run (strace)', async () => {
    const logs = join(work, 'strace');
    const paths = straced(logs);
    const settings: VideoSettings = { ...base(), ...paths, timeoutSeconds: 120, cpuSeconds: 240 };
    const tools = findVideoTools(settings);
    assert.ok(tools, 'the straced tools run');
    const runTemp = join(work, 'strace-temp');
    const target = `http://127.0.0.1:${listener.port}`;
    const good = await clip({ seconds: 1 });
    const ftyp = good.subarray(0, good.readUInt32BE(0));
    const hostile: Array<[string, Buffer]> = [
      ['HLS playlist', Buffer.from(`#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n#EXTINF:10,\n${target}/seg.ts\n#EXT-X-ENDLIST\n`)],
      ['ffconcat script', Buffer.from(`ffconcat version 1.0\nfile 'file:///etc/passwd'\nfile '${target}/clip.mp4'\n`)],
      ['playlist behind ftyp', Buffer.concat([ftyp, box('moov', Buffer.from(`#EXTM3U\n#EXTINF:1,\n${target}/x.ts\n`)), box('mdat', Buffer.alloc(100))])],
    ];
    const ports: number[] = [];
    let refused = 0;
    // Hostile bytes reaching the probe as video/mp4 (as if the sniffer had been fooled) are refused.
    for (const [name, bytes] of hostile) {
      const server = await serveSource(VideoProcessing.sourceOfBuffer(bytes));
      ports.push(Number(new URL(server.url).port));
      try {
        assert.equal(await codeOf(probeVideo(tools, 'video/mp4', server.url, settings, bytes.length)), 'ERR_MEDIA_INVALID', name);
      } finally {
        refused += server.refused;
        await server.close();
      }
    }
    // A real clip and the one whose subtitle track names /etc/passwd are probed and transcoded.
    for (const bytes of [good, await externalSubtitles('/etc/passwd')]) {
      const source = VideoProcessing.sourceOfBuffer(bytes);
      const server = await serveSource(source);
      ports.push(Number(new URL(server.url).port));
      let facts: VideoFacts;
      try {
        facts = await probeVideo(tools, 'video/mp4', server.url, settings, bytes.length);
      } finally {
        refused += server.refused;
        await server.close();
      }
      const out = await processVideo({ tools, settings, tempDir: runTemp, mime: 'video/mp4', source, facts, plan: compileVideoOperations('scale:height=60/format:mp4,preset=ultrafast').plan, maxDimension: 8192, preview: {} });
      try {
        assert.ok(readFileSync(out.path).length > 1000, 'an output was written');
      } finally {
        await out.cleanup();
      }
    }
    assert.equal(refused, 0, 'ffmpeg asked the source for nothing but its one path');
    assert.equal(listener.connections(), 0);

    const traces = readTraces(logs);
    const runs = traces.filter((t) => t.argv.includes('-i'));
    // 3 hostile probes, 2 probes and 2 transcodes (the -version/-encoders runs of findVideoTools aside).
    assert.equal(runs.length, 7, 'every run was traced');
    const font = [fontFile(), realpathSync(fontFile())];
    // What the dynamic loader and linked libraries read at start (libgcrypt reads its own policy files).
    const LIBRARY_CONFIG = ['/etc/ld.so.cache', '/etc/ld.so.preload', '/etc/gcrypt'];
    const allowed = (p: string) =>
      /^\/(usr|lib|lib64|proc|sys|dev)\//.test(p) || LIBRARY_CONFIG.some((c) => p === c || p.startsWith(`${c}/`)) || p.startsWith(`${runTemp}/run-`) || font.includes(p);
    for (const t of traces) {
      const name = t.argv.slice(0, 1).concat(t.argv.includes('-i') ? [t.argv[t.argv.indexOf('-i') + 1]!] : []).join(' ');
      assert.deepEqual([...new Set(t.opened.filter((p) => !allowed(p)))], [], `${name}: only libraries, the run directory and the bundled font are opened`);
      assert.deepEqual([...new Set(t.executed)], [t.executed[0]], `${name}: ffmpeg starts no other program`);
      assert.ok(['/usr/bin/ffmpeg', '/usr/bin/ffprobe'].includes(t.executed[0]!), name);
      assert.deepEqual(t.sent, [], `${name}: no datagram to any address`);
      if (!t.argv.includes('-i')) {
        assert.deepEqual(t.connected, [], `${name}: no socket`);
        continue;
      }
      // The one input is the run's own loopback source, and every connection goes there.
      const input = new URL(t.argv[t.argv.indexOf('-i') + 1]!);
      assert.equal(input.hostname, '127.0.0.1');
      assert.notEqual(Number(input.port), listener.port);
      assert.ok(t.connected.length > 0, `${name}: it read its source`);
      for (const c of t.connected) assert.match(c, new RegExp(`^sa_family=AF_INET, sin_port=htons\\(${input.port}\\), sin_addr=inet_addr\\("127\\.0\\.0\\.1"\\)$`), `${name}: connected elsewhere`);
    }
    for (const port of ports) assert.ok(runs.some((t) => t.argv.some((a) => a.startsWith(`http://127.0.0.1:${port}/`))), 'each probe read the source it was given');
    assert.ok(!traces.some((t) => t.opened.some((p) => p.includes('passwd'))));
    assert.ok(runs.some((t) => t.opened.some((p) => p.startsWith(`${runTemp}/run-`))), 'the outputs were written in their run directory');
    assert.deepEqual(runDirs(runTemp), [], 'no run directory is left');
  });

  test('a run over OBSCURA_VIDEO_TIMEOUT_SECONDS is killed: ERR_JOB_TIMEOUT, no ffmpeg left, no run directory', async () => {
    const bytes = await clip({ width: 640, height: 480, seconds: 10, audio: false });
    const settings: VideoSettings = { ...base(), timeoutSeconds: 1, cpuSeconds: 60 };
    const tools = findVideoTools(settings)!;
    const source = VideoProcessing.sourceOfBuffer(bytes);
    const server = await serveSource(source);
    const facts = await probeVideo(tools, 'video/mp4', server.url, { ...settings, timeoutSeconds: 60 }, bytes.length).finally(() => server.close());
    const runTemp = join(work, 'timeout-temp');
    let pid = 0;
    const t0 = performance.now();
    const code = await codeOf(processVideo({ tools, settings, tempDir: runTemp, mime: 'video/mp4', source, facts, plan: compileVideoOperations('denoise:nlmeans,strength=8/format:mp4,preset=ultrafast').plan, maxDimension: 8192, onSpawn: (p) => (pid = p) }));
    assert.equal(code, 'ERR_JOB_TIMEOUT');
    assert.ok(performance.now() - t0 < 8000, 'killed near its limit');
    assert.ok(pid > 0 && gone(pid), 'the ffmpeg process is dead');
    assert.deepEqual(toolPids(runTemp), []);
    assert.deepEqual(runDirs(runTemp), []);
  });

  test('a video job over OBSCURA_VIDEO_TIMEOUT_SECONDS fails with ERR_JOB_TIMEOUT, keeps no output, and leaves no ffmpeg and no temp file', async () => {
    const id = await upload(h.srv, h.a.key, await clip({ width: 640, height: 480, seconds: 10, audio: false }));
    const assets = await assetCount();
    const created = await api(h.srv.url, 'POST', '/v1/jobs', { key: h.a.key, body: { input: { asset_id: id }, operations: 'denoise:nlmeans,strength=8/format:mp4,preset=ultrafast' } });
    assert.equal(created.status, 202, JSON.stringify(created.body));
    const job = await waitForJob(h.srv, h.a.key, created.body.id, 45_000);
    assert.equal(job.status, 'failed', JSON.stringify(job));
    assert.equal(job.error.code, 'ERR_JOB_TIMEOUT');
    assert.match(job.error.message, /OBSCURA_VIDEO_TIMEOUT_SECONDS/);
    assert.equal(job.output.asset_id, null);
    assert.equal(await assetCount(), assets, 'no output asset');
    assert.deepEqual(toolPids(temp), []);
    assert.deepEqual(runDirs(temp), []);
  });

  test('a memory limit too small for the frame fails cleanly (ERR_VIDEO_FAILED), one too small for ffmpeg to load is the operator\'s 503, and the same run with room succeeds', async () => {
    const bytes = await clip({ width: 1920, height: 1080, seconds: 1, audio: false });
    const tools = findVideoTools(base())!;
    const source = VideoProcessing.sourceOfBuffer(bytes);
    const server = await serveSource(source);
    const runTemp = join(work, 'memory-temp');
    const MiB = 1024 ** 2;
    try {
      const facts = await probeVideo(tools, 'video/mp4', server.url, base(), bytes.length);
      const plan = compileVideoOperations('scale:height=2160/format:mp4,preset=ultrafast').plan;
      const run = (memoryBytes: number, p = plan) => processVideo({ tools, settings: { ...base(), memoryBytes, timeoutSeconds: 60 }, tempDir: runTemp, mime: 'video/mp4', source, facts, plan: p, maxDimension: 8192 });
      // 384 MiB: ffmpeg loads, then cannot allocate a 4K pipeline.
      assert.equal(await codeOf(run(384 * MiB)), 'ERR_VIDEO_FAILED');
      assert.deepEqual(runDirs(runTemp), []);
      assert.deepEqual(toolPids(runTemp), []);
      // 256 MiB (the setting's minimum): ffmpeg and ffprobe cannot even map their libraries. That is the
      // server's configuration, not the user's file: 503 naming the setting, for processing and probing.
      const e = await run(256 * MiB).then(
        () => assert.fail('expected a refusal'),
        (err: unknown) => err,
      );
      assert.ok(isAppError(e) && e.code === 'ERR_VIDEO_UNAVAILABLE' && e.publicMessage.includes('OBSCURA_VIDEO_MEMORY_BYTES'), String(e));
      assert.equal(await codeOf(probeVideo(tools, 'video/mp4', server.url, { ...base(), memoryBytes: 256 * MiB }, bytes.length)), 'ERR_VIDEO_UNAVAILABLE');
      assert.deepEqual(runDirs(runTemp), []);
      // The twin with 2 GiB of address space produces the 4K frames.
      const out = await run(2048 * MiB, compileVideoOperations('trim:duration=0.2/scale:height=2160/format:mp4,preset=ultrafast').plan);
      try {
        assert.equal(out.height, 2160);
      } finally {
        await out.cleanup();
      }
      assert.deepEqual(runDirs(runTemp), []);
    } finally {
      await server.close();
    }
  });

  test("starting the workers sweeps a dead process's run directory from the temp area and keeps a live one's", async () => {
    const dead = spawnSync('true').pid!;
    const live = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      mkdirSync(temp, { recursive: true, mode: 0o700 });
      const deadDir = join(temp, `run-${dead}-abc123`);
      const liveDir = join(temp, `run-${live.pid}-def456`);
      for (const d of [deadDir, liveDir]) {
        mkdirSync(d);
        writeFileSync(join(d, 'output.mp4'), 'plaintext left by a crash');
      }
      // The production start of a worker process (what `obscura serve --role worker` calls).
      const started = await startJobWorkers({ config: h.srv.config, db: h.t.db, masterKeys: masterKeysFor(h.t.db), store: h.srv.store });
      await started.stop();
      assert.equal(existsSync(deadDir), false, "the dead process's directory is removed");
      assert.equal(existsSync(liveDir), true, "the live process's directory is kept");
    } finally {
      live.kill('SIGKILL');
    }
  });

  test('an ffmpeg dies with the process that started it, however that process ends (setpriv --pdeathsig); without the death signal it outlives a SIGKILLed parent', async () => {
    const tools = findVideoTools(base())!;
    assert.ok(tools.setpriv, 'setpriv (util-linux) is installed here');
    // A process that starts a 10-minute ffmpeg (-re: at the clip's own pace) through the production
    // runTool and prints its pid.
    const script = join(work, 'pdeathsig.mjs');
    const ffmpegModule = new URL('../../../src/media/video/ffmpeg.js', import.meta.url).href;
    writeFileSync(
      script,
      `import { findVideoTools, runTool } from ${JSON.stringify(ffmpegModule)};
const t = findVideoTools({ ffmpegPath: ${JSON.stringify(tools.ffmpeg)}, ffprobePath: ${JSON.stringify(tools.ffprobe)} });
const tools = process.argv[2] === 'no-setpriv' ? { ...t, setpriv: null } : t;
// It writes nothing (no stats, no progress), as a run does while a slow filter works between two
// progress lines or a probe reads: a write to the dead parent's pipe cannot end it.
runTool(tools, tools.ffmpeg, ['-nostdin', '-loglevel', 'error', '-nostats', '-re', '-f', 'lavfi', '-i', 'testsrc=size=64x64:rate=5', '-t', '600', '-f', 'null', '-'], {
  leash: { timeoutMs: 600_000, cpuSeconds: 600, memoryBytes: 1024 * 1024 * 1024 },
  onLine: () => {},
  onSpawn: (pid) => console.log(pid),
}).catch(() => {});
`,
    );
    const running = (pid: number) => {
      try {
        return !gone(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!.endsWith('ffmpeg');
      } catch {
        return false; // gone between the two reads
      }
    };
    const startAndKill = async (mode: string): Promise<number> => {
      const parent = spawn(process.execPath, [script, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
      const [line] = (await once(parent.stdout!, 'data')) as [Buffer];
      const pid = Number(line.toString().trim());
      // setpriv and prlimit exec the next program in the same process: wait until it is ffmpeg.
      const until = Date.now() + 30_000;
      while (!running(pid)) {
        assert.ok(Date.now() < until, 'ffmpeg started');
        await new Promise((r) => setTimeout(r, 50));
      }
      parent.kill('SIGKILL');
      await once(parent, 'exit');
      return pid;
    };
    const dies = await startAndKill('setpriv');
    const deadline = Date.now() + 5_000;
    while (!gone(dies)) {
      assert.ok(Date.now() < deadline, 'the ffmpeg of a SIGKILLed parent is gone within 5 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    // The same start without the death signal: the orphan keeps running.
    const orphan = await startAndKill('no-setpriv');
    try {
      await new Promise((r) => setTimeout(r, 1_000));
      assert.ok(running(orphan), 'without setpriv the orphaned ffmpeg is still running a second later');
    } finally {
      try {
        process.kill(orphan, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });

  test("the operator's video limits refuse an upload over each with 422 ERR_VIDEO_TOO_LARGE naming the setting; a clip within them is accepted", async () => {
    const limited: TestServer = await startServer(h.t.db, {
      env: { OBSCURA_VIDEO_MAX_DURATION_SECONDS: '2', OBSCURA_VIDEO_MAX_FRAME_PIXELS: String(160 * 120), OBSCURA_VIDEO_MAX_FPS: '25', OBSCURA_VIDEO_MAX_STREAMS: '1', OBSCURA_VIDEO_TEMP_DIR: temp },
    });
    try {
      const cases: Array<[string, Buffer]> = [
        ['OBSCURA_VIDEO_MAX_DURATION_SECONDS', await clip({ seconds: 3, audio: false })],
        ['OBSCURA_VIDEO_MAX_FRAME_PIXELS', await clip({ width: 176, height: 144, seconds: 1, audio: false })],
        ['OBSCURA_VIDEO_MAX_FPS', await clip({ fps: 30, seconds: 1, audio: false })],
        ['OBSCURA_VIDEO_MAX_STREAMS', await clip({ seconds: 1, audio: true })],
      ];
      for (const [setting, bytes] of cases) {
        const r = await raw(limited.url, 'POST', '/v1/assets', { key: h.a.key, body: bytes, headers: { 'content-type': 'application/octet-stream' } });
        assert.equal(r.status, 422, `${setting}: ${r.body.toString()}`);
        const body = JSON.parse(r.body.toString());
        assert.equal(body.code, 'ERR_VIDEO_TOO_LARGE', setting);
        assert.equal(body.setting, setting);
        assert.ok(body.detail.includes(setting), body.detail);
      }
      // More streams than ffprobe is allowed to create is the same refusal, not "invalid".
      const many = await raw(limited.url, 'POST', '/v1/assets', { key: h.a.key, body: manyStreams(3), headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(many.status, 422, many.body.toString());
      assert.equal(JSON.parse(many.body.toString()).setting, 'OBSCURA_VIDEO_MAX_STREAMS');
      const ok = await upload(limited, h.a.key, await clip({ seconds: 1, audio: false }));
      const asset = await api(limited.url, 'GET', `/v1/assets/${ok}`, { key: h.a.key });
      assert.equal(asset.body.video.streams, 1);
      assert.equal(asset.body.video.fps, 25);
    } finally {
      await limited.close();
    }
  });
});

describe('finding ffmpeg', () => {
  test('a missing ffmpeg is looked for again after the recheck window, so installing it needs no restart', () => {
    const dir = tempDir('obscura-ffmpeg-late-');
    const paths = { ffmpegPath: join(dir, 'ffmpeg'), ffprobePath: join(dir, 'ffprobe') };
    const t0 = Date.now();
    assert.equal(findVideoTools(paths, { now: t0 }), null);
    // The operator installs the tools (here: links to the real ones) while the server runs.
    const real = findVideoTools({ ffmpegPath: 'ffmpeg', ffprobePath: 'ffprobe' });
    assert.ok(real, 'ffmpeg is installed by scripts/ensure-system-deps.sh');
    symlinkSync(real.ffmpeg, paths.ffmpegPath);
    symlinkSync(real.ffprobe, paths.ffprobePath);
    // Within the window the miss is remembered (no filesystem probe per request)…
    assert.equal(findVideoTools(paths, { now: t0 + 1000, recheckMs: 30_000 }), null);
    // …after it the tools are found, and then kept.
    const late = findVideoTools(paths, { now: t0 + 31_000, recheckMs: 30_000 });
    assert.ok(late && late.ffmpeg === paths.ffmpegPath && late.encoders.has('libx264'), String(late?.ffmpeg));
    assert.equal(findVideoTools(paths, { now: t0 + 10 * 60_000 }), late);
  });
});
