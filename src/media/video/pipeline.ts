/**
 * The video pipeline (issue 11): one ffmpeg run per output. The input is read through a loopback range
 * server (source.ts, never a decrypted copy); the plan becomes one filter graph and encoder settings
 * (operations.ts); the output is written to a run directory inside the owner-only temporary area (an
 * MP4's index is rewritten at the end, which needs a seekable file) and streamed from there to the
 * encrypted store by the caller, who then calls `cleanup()`. The directory is removed when the run
 * fails or is killed too, and `sweepVideoTemp` removes what a crashed process left.
 */
import { mkdir, mkdtemp, readdir, rm, stat, chmod, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { AppError } from '../../errors.js';
import { fontFile } from '../fonts.js';
import { leashTooTight, neverStarted, runTool, ToolFailed, ToolStopped, type Leash, type VideoTools } from './ffmpeg.js';
import { buildGraph, CONTAINERS, VIDEO_ENCODERS, AUDIO_ENCODERS, type Gravity, type Overlay, type VideoGraph, type VideoPlan } from './operations.js';
import { inputArgs, type VideoFacts } from './probe.js';
import { serveSource, type SourceBytes, type SourceServer } from './source.js';
import type { VideoSettings } from './settings.js';

/** Progress of a run, from ffmpeg's `-progress`. */
export interface VideoProgress {
  /** 0–100. */
  percent: number;
  frames: number;
  fps: number;
  /** Seconds left at the current speed (null until known). */
  eta_seconds: number | null;
}

/** A preview: a short excerpt, downscaled and visibly watermarked. */
export interface PreviewOptions {
  /** Where the excerpt starts, seconds (default: the trim start, else 0). */
  start?: number | undefined;
  /** Length, seconds (default 5). */
  seconds?: number | undefined;
}

/** Largest preview frame. */
export const PREVIEW_BOX = { width: 640, height: 360 } as const;
/** Default preview length, seconds. */
export const PREVIEW_SECONDS = 5;

/** Options of {@link processVideo}. */
export interface VideoRunOptions {
  tools: VideoTools;
  settings: VideoSettings;
  /** The owner-only temporary area (created 0700 if missing). */
  tempDir: string;
  /** The input's sniffed media type (decides the forced demuxer). */
  mime: string;
  source: SourceBytes;
  facts: VideoFacts;
  plan: VideoPlan;
  /** The operator's largest output side. */
  maxDimension: number;
  preview?: PreviewOptions | null | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((p: VideoProgress) => void) | undefined;
  onSpawn?: ((pid: number) => void) | undefined;
  /** Loads an image asset of the same org as PNG bytes (watermarks); absent = watermarks refused. */
  loadImage?: ((assetId: string) => Promise<Buffer>) | undefined;
}

/** The parts of an HLS package, on disk in the run directory. */
export interface HlsPackage {
  /** The master playlist (its variant URIs are the variant playlists' file names). */
  master: string;
  variants: Array<{ playlist: string; media: string; mediaMime: string; width: number; height: number }>;
}

/** A storyboard's files (the WebVTT cues name tiles of `sprite.jpg`). */
export interface Storyboard {
  vtt: string;
  sprite: string;
  /** The sprite sheet's size. */
  width: number;
  height: number;
}

/** A finished output, on disk in its run directory until `cleanup()`. */
export interface VideoOutput {
  path: string;
  mime: string;
  ext: string;
  width: number;
  height: number;
  /** Output duration, seconds (0 for a poster frame). */
  durationSeconds: number;
  fps: number;
  /** Set for an HLS package: `path` is then its master playlist. */
  hls?: HlsPackage;
  /** Set for a storyboard: `path` is then its WebVTT file, which names the sprite as `sprite.jpg`. */
  storyboard?: Storyboard;
  cleanup(): Promise<void>;
}

/** Media type of playlists. */
export const HLS_PLAYLIST_MIME = 'application/vnd.apple.mpegurl';

function encoderFor(tools: VideoTools, table: Readonly<Record<string, readonly string[]>>, codec: string): string {
  const encoder = (table[codec] ?? []).find((e) => tools.encoders.has(e));
  if (!encoder) {
    const available = Object.keys(table).filter((c) => (table[c] ?? []).some((e) => tools.encoders.has(e)));
    throw new AppError('ERR_VALIDATION', `Invalid operation "format": the codec ${codec} is not available on this server; use one of ${available.join(', ')}.`, { details: { operation: 'format', reason: 'codec_unavailable', allowed: available } });
  }
  return encoder;
}

/** The codecs this server can encode, by public name (for GET /v1/operations). */
export function availableCodecs(tools: VideoTools | null): { video: string[]; audio: string[] } {
  if (!tools) return { video: [], audio: [] };
  const pick = (table: Readonly<Record<string, readonly string[]>>) => Object.keys(table).filter((c) => (table[c] ?? []).some((e) => tools.encoders.has(e)));
  return { video: pick(VIDEO_ENCODERS), audio: pick(AUDIO_ENCODERS) };
}

const PRESET_INDEX = ['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow'];

function videoEncoderArgs(encoder: string, out: VideoGraph['output'], threads: number): string[] {
  const p = Math.max(0, PRESET_INDEX.indexOf(out.preset));
  const rate = (defaultCrf: number, crfOnly: string[] = []): string[] => (out.bitrateKbps !== null ? ['-b:v', `${out.bitrateKbps}k`] : ['-crf', String(out.crf ?? defaultCrf), ...crfOnly]);
  switch (encoder) {
    case 'libx264':
      return ['-c:v', 'libx264', '-preset', out.preset, ...rate(23), '-pix_fmt', 'yuv420p'];
    case 'libx265':
      return ['-c:v', 'libx265', '-preset', out.preset, ...rate(28), '-pix_fmt', 'yuv420p', '-x265-params', `log-level=error:pools=${threads}`, ...(out.container === 'mkv' ? [] : ['-tag:v', 'hvc1'])];
    case 'libvpx-vp9':
      return ['-c:v', 'libvpx-vp9', ...rate(32, ['-b:v', '0']), '-deadline', p <= 2 ? 'realtime' : 'good', '-cpu-used', String(Math.max(0, 8 - p)), '-row-mt', '1', '-pix_fmt', 'yuv420p'];
    case 'libsvtav1':
      return ['-c:v', 'libsvtav1', ...rate(35), '-preset', String(Math.max(2, 12 - p)), '-pix_fmt', 'yuv420p', '-svtav1-params', `lp=${threads}`];
    case 'libaom-av1':
      return ['-c:v', 'libaom-av1', ...rate(32, ['-b:v', '0']), '-cpu-used', String(Math.max(0, 8 - p)), '-row-mt', '1', '-pix_fmt', 'yuv420p'];
    default:
      return ['-c:v', encoder];
  }
}

/** Quotes a value for an ffmpeg filter-graph option (single quotes; a quote inside is refused). */
function filterQuote(value: string): string {
  if (/['\n\r]/.test(value)) throw new Error('a filter value may not contain quotes or newlines');
  return `'${value.replace(/\\/g, '\\\\').replace(/:/g, '\\:')}'`;
}

/** Creates the owner-only temporary area (or tightens it) and a fresh run directory inside it. */
async function runDir(tempDir: string): Promise<string> {
  await mkdir(tempDir, { recursive: true, mode: 0o700 });
  await chmod(tempDir, 0o700);
  // The pid in the name lets a sweep tell a dead process's directory from a live one's.
  return mkdtemp(join(tempDir, `run-${process.pid}-`));
}

/** Whether a process with this pid is alive on this machine. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes run directories a dead process left (its pid is in the name), and any older than
 * `olderThanMs` (a reused pid). Called when workers start; other live processes' runs are kept.
 */
export async function sweepVideoTemp(tempDir: string, olderThanMs: number, now = Date.now()): Promise<number> {
  let names: string[];
  try {
    names = await readdir(tempDir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    if (!name.startsWith('run-')) continue;
    const p = join(tempDir, name);
    try {
      const pid = Number(/^run-(\d+)-/.exec(name)?.[1] ?? 0);
      const mine = pid === process.pid;
      if (!mine && pid > 0 && alive(pid) && now - (await stat(p)).mtimeMs < olderThanMs) continue;
      if (mine && now - (await stat(p)).mtimeMs < olderThanMs) continue;
      await rm(p, { recursive: true, force: true });
      removed++;
    } catch {
      // gone already
    }
  }
  return removed;
}

/**
 * Runs one video output. Throws `ERR_VALIDATION` (an operation the input makes impossible, or a
 * codec this server lacks), `ERR_VIDEO_FAILED` (ffmpeg could not process the stream),
 * `ERR_VIDEO_UNAVAILABLE` (ffmpeg cannot even start under OBSCURA_VIDEO_MEMORY_BYTES), `ERR_JOB_TIMEOUT`
 * (the wall-clock or CPU limit), or rethrows the abort when `signal` fired. Nothing is left on disk
 * when it throws.
 */
export async function processVideo(o: VideoRunOptions): Promise<VideoOutput> {
  const { tools, settings, facts } = o;
  const hasAudio = facts.audio !== null;
  const g = buildGraph(o.plan, { width: facts.width, height: facts.height, rotation: facts.rotation, fps: facts.fps, durationSeconds: facts.duration_seconds, hasAudio }, o.maxDimension);
  let width = g.width;
  let height = g.height;
  let start = g.start;
  let duration = g.duration;
  // The operations' filters, then the overlays (drawn at the size they were asked for), then the
  // preview's downscale and watermark.
  const frameWidth = g.width;
  const video: string[] = [];
  const out = { ...g.output };
  if (o.preview) {
    if (o.preview.start !== undefined) start = Math.min(o.preview.start, Math.max(0, facts.duration_seconds - 0.1));
    const seconds = o.preview.seconds ?? PREVIEW_SECONDS;
    duration = Math.min(duration ?? Number.POSITIVE_INFINITY, seconds);
    const f = Math.min(1, PREVIEW_BOX.width / width, PREVIEW_BOX.height / height);
    if (f < 1) {
      width = Math.max(2, Math.floor((width * f) / 2) * 2);
      height = Math.max(2, Math.floor((height * f) / 2) * 2);
      video.push(`scale=${width}:${height}:flags=bilinear`, 'setsar=1');
    }
    video.push(`drawtext=fontfile=${filterQuote(fontFile())}:text='PREVIEW':fontcolor=white@0.75:fontsize=h/6:x=(w-text_w)/2:y=(h-text_h)/2:box=1:boxcolor=black@0.35:boxborderw=8`);
    out.preset = 'veryfast';
    out.crf = out.codec === 'h264' ? 28 : out.crf;
  }
  const remaining = Math.max(0, facts.duration_seconds - start);
  const expectedSeconds = Math.max(0.04, Math.min(remaining, duration ?? remaining) / g.speed);
  const threads = String(settings.threads);
  const poster = g.poster;
  if (o.preview && g.hls) throw new AppError('ERR_VALIDATION', 'Invalid operation "hls": a preview is one short file; ask for the HLS package without preview.', { details: { operation: 'hls', reason: 'hls_and_preview' } });

  const dir = await runDir(o.tempDir);
  const cleanup = () => rm(dir, { recursive: true, force: true });
  const server = await serveSource(o.source);
  const extra: SourceServer[] = [];
  try {
    // Overlays: text is read from files we write (never parsed as filter syntax); images are the
    // caller's PNG re-encodings, each fed through its own loopback source as a PNG stream.
    const chain = [...g.video];
    const watermarks: Array<Extract<Overlay, { kind: 'watermark' }>> = [];
    for (const [i, ov] of g.overlays.entries()) {
      if (ov.kind === 'text') {
        const file = join(dir, `text${i}.txt`);
        await writeFile(file, ov.text, { mode: 0o600 });
        const box = ov.box ? ':box=1:boxcolor=black@0.5:boxborderw=6' : '';
        chain.push(`drawtext=fontfile=${filterQuote(fontFile())}:textfile=${filterQuote(file)}:fontsize=${ov.size}:fontcolor=0x${ov.color.slice(1)}${box}:${textPosition(ov.gravity)}`);
      } else watermarks.push(ov);
    }
    const watermarkInputs: string[] = [];
    for (const wm of watermarks) {
      if (!o.loadImage) throw new AppError('ERR_VALIDATION', 'Invalid operation "watermark": images cannot be loaded here.', { details: { operation: 'watermark', reason: 'no_loader' } });
      const png = await o.loadImage(wm.assetId);
      const src = await serveSource({ size: png.length, open: async (r) => Readable.from([r ? png.subarray(r.start, r.end + 1) : png]) });
      extra.push(src);
      watermarkInputs.push('-protocol_whitelist', 'http,tcp', '-f', 'png_pipe', '-i', src.url);
    }
    let graph = `[0:v]${chain.length ? chain.join(',') : 'null'}[b0]`;
    let cur = 'b0';
    for (const [k, wm] of watermarks.entries()) {
      const w = Math.max(2, Math.round((frameWidth * wm.width) / 2) * 2);
      graph += `;[${k + 1}:v]scale=${w}:-2,format=rgba,colorchannelmixer=aa=${wm.opacity}[wm${k}];[${cur}][wm${k}]overlay=${overlayPosition(wm.gravity, frameWidth)}:format=auto[b${k + 1}]`;
      cur = `b${k + 1}`;
    }
    graph += `;[${cur}]${video.length ? video.join(',') : 'null'}[vout]`;

    const args = ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', '-threads', threads];
    const seek = start + (poster ? poster.at : 0) + (g.animate ? g.animate.start : 0);
    if (seek > 0) args.push('-ss', seek.toFixed(3));
    args.push(...inputArgs(o.mime, server.url, settings.maxStreams), ...watermarkInputs);
    let path: string;
    let mime: string;
    let ext: string;
    let hls: HlsPackage | undefined;
    let storyboard: Storyboard | undefined;
    const scaledHeight = (w: number) => Math.max(2, Math.round((w * height) / width / 2) * 2);
    if (g.animate) {
      const an = g.animate;
      ext = an.format;
      mime = `image/${an.format}`;
      path = join(dir, `animation.${ext}`);
      const tail = an.format === 'gif' ? `,split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer[anim]` : '[anim]';
      args.push('-t', an.duration.toFixed(3), '-filter_complex', `${graph};[vout]fps=${an.fps},scale=${an.width}:-2:flags=lanczos${tail}`, '-map', '[anim]');
      args.push(...(an.format === 'gif' ? ['-loop', '0', '-f', 'gif'] : ['-c:v', 'libwebp_anim', '-loop', '0', '-quality', '75', '-f', 'webp']));
      args.push('-an', '-sn', '-dn', '-map_metadata', '-1', '-filter_threads', threads, '-progress', 'pipe:1', '-nostats', path);
      width = an.width;
      height = scaledHeight(an.width);
    } else if (g.storyboard) {
      const sb = g.storyboard;
      const span = duration ?? remaining;
      const count = Math.max(1, Math.min(100, Math.ceil(span / sb.interval)));
      const columns = Math.min(sb.columns, count);
      const rows = Math.ceil(count / columns);
      const tileHeight = scaledHeight(sb.width);
      const sprite = join(dir, 'sprite.jpg');
      if (duration !== null) args.push('-t', duration.toFixed(3));
      args.push('-filter_complex', `${graph};[vout]fps=1/${sb.interval},scale=${sb.width}:${tileHeight}:flags=lanczos,setsar=1,tile=${columns}x${rows}[sb]`, '-map', '[sb]', '-frames:v', '1', '-c:v', 'mjpeg', '-q:v', '4', '-pix_fmt', 'yuvj420p');
      args.push('-an', '-sn', '-dn', '-map_metadata', '-1', '-filter_threads', threads, '-f', 'image2', '-update', '1', sprite);
      const stamp = (t: number) => new Date(Math.round(t * 1000)).toISOString().slice(11, 23);
      const cues = Array.from({ length: count }, (_, i) => `${stamp(i * sb.interval)} --> ${stamp(Math.min((i + 1) * sb.interval, span))}\nsprite.jpg#xywh=${(i % columns) * sb.width},${Math.floor(i / columns) * tileHeight},${sb.width},${tileHeight}`);
      path = join(dir, 'storyboard.vtt');
      await writeFile(path, `WEBVTT\n\n${cues.join('\n\n')}\n`, { mode: 0o600 });
      mime = 'text/vtt';
      ext = 'vtt';
      storyboard = { vtt: path, sprite, width: columns * sb.width, height: rows * tileHeight };
      width = sb.width;
      height = tileHeight;
    } else if (g.hls) {
      // One encode per rendition from one decode: the graph, then split and scaled down by halves.
      const n = g.hls.renditions;
      const sizes: Array<{ width: number; height: number }> = [];
      for (let i = 0; i < n; i++) {
        const h = i === 0 ? height : Math.max(2, Math.floor(sizes[i - 1]!.height / 4) * 2);
        const w = i === 0 ? width : Math.max(2, Math.round((width * h) / height / 2) * 2);
        sizes.push({ width: w, height: h });
      }
      const hlsGraph = `${graph};[vout]split=${n}${sizes.map((_, i) => `[s${i}]`).join('')};${sizes.map((z, i) => (i === 0 ? `[s0]null[v0]` : `[s${i}]scale=${z.width}:${z.height}:flags=lanczos,setsar=1[v${i}]`)).join(';')}`;
      const keepAudio = hasAudio && !g.stripAudio;
      if (duration !== null) args.push('-t', duration.toFixed(3));
      args.push('-filter_complex', hlsGraph);
      for (let i = 0; i < n; i++) args.push('-map', `[v${i}]`, ...(keepAudio ? ['-map', '0:a:0'] : []));
      const encoder = encoderFor(tools, VIDEO_ENCODERS, out.codec === 'h265' ? 'h265' : 'h264');
      args.push(...videoEncoderArgs(encoder, { ...out, container: 'mp4' }, settings.threads));
      // Segments cut on keyframes: force one at every segment boundary.
      args.push('-force_key_frames', `expr:gte(t,n_forced*${g.hls.segmentSeconds})`);
      if (keepAudio) {
        if (g.audio.length) args.push('-af', g.audio.join(','));
        args.push('-c:a', encoderFor(tools, AUDIO_ENCODERS, 'aac'), '-b:a', '128k');
      }
      const ext0 = g.hls.type === 'fmp4' ? 'mp4' : 'ts';
      args.push(
        '-sn', '-dn', '-map_metadata', '-1', '-filter_threads', threads, '-progress', 'pipe:1', '-nostats',
        '-f', 'hls', '-hls_time', String(g.hls.segmentSeconds), '-hls_playlist_type', 'vod', '-hls_segment_type', g.hls.type === 'fmp4' ? 'fmp4' : 'mpegts',
        '-hls_flags', 'single_file+independent_segments', '-var_stream_map', sizes.map((_, i) => (keepAudio ? `v:${i},a:${i}` : `v:${i}`)).join(' '),
        '-master_pl_name', 'master.m3u8', '-hls_segment_filename', join(dir, `v%v.${ext0}`), join(dir, 'v%v.m3u8'),
      );
      path = join(dir, 'master.m3u8');
      mime = HLS_PLAYLIST_MIME;
      ext = 'm3u8';
      hls = { master: path, variants: sizes.map((z, i) => ({ playlist: join(dir, `v${i}.m3u8`), media: join(dir, `v${i}.${ext0}`), mediaMime: g.hls!.type === 'fmp4' ? 'video/mp4' : 'video/mp2t', ...z })) };
    } else if (poster) {
      ext = poster.format === 'jpeg' ? 'jpg' : poster.format;
      mime = `image/${poster.format}`;
      path = join(dir, `poster.${ext}`);
      const codec = poster.format === 'jpeg' ? ['-c:v', 'mjpeg', '-q:v', '3', '-pix_fmt', 'yuvj420p'] : poster.format === 'png' ? ['-c:v', 'png'] : ['-c:v', 'libwebp', '-quality', '85'];
      args.push('-filter_complex', graph, '-map', '[vout]', '-frames:v', '1', ...codec, '-an', '-sn', '-dn', '-map_metadata', '-1', '-filter_threads', threads, '-f', 'image2', '-update', '1', path);
    } else {
      const container = CONTAINERS[out.container];
      ext = container.ext;
      mime = container.mime;
      path = join(dir, `output.${ext}`);
      const encoder = encoderFor(tools, VIDEO_ENCODERS, out.codec);
      if (duration !== null) args.push('-t', duration.toFixed(3));
      args.push('-filter_complex', graph, '-map', '[vout]');
      const keepAudio = hasAudio && !g.stripAudio;
      if (keepAudio) args.push('-map', '0:a:0');
      if (keepAudio && g.audio.length) args.push('-af', g.audio.join(','));
      args.push(...videoEncoderArgs(encoder, out, settings.threads));
      if (keepAudio) {
        const audioEncoder = encoderFor(tools, AUDIO_ENCODERS, out.audioCodec ?? container.audio[0]);
        args.push('-c:a', audioEncoder, '-b:a', audioEncoder === 'libopus' ? '96k' : '128k');
      } else args.push('-an');
      if (out.faststart && (out.container === 'mp4' || out.container === 'mov')) args.push('-movflags', '+faststart');
      args.push('-sn', '-dn', '-map_metadata', '-1', '-map_chapters', '-1', '-filter_threads', threads, '-progress', 'pipe:1', '-nostats', '-f', container.muxer, path);
    }
    const leash: Leash = { timeoutMs: settings.timeoutSeconds * 1000, cpuSeconds: settings.cpuSeconds, memoryBytes: settings.memoryBytes };
    let fields: Record<string, string> = {};
    const begun = performance.now();
    try {
      await runTool(tools, tools.ffmpeg, args, {
        leash,
        signal: o.signal,
        onSpawn: o.onSpawn,
        onLine(line) {
          const eq = line.indexOf('=');
          if (eq <= 0) return;
          const key = line.slice(0, eq);
          fields[key] = line.slice(eq + 1);
          if (key !== 'progress') return;
          const done = fields.progress === 'end';
          const outSeconds = Math.max(0, Number(fields.out_time_us ?? fields.out_time_ms ?? 0) / 1e6);
          const ratio = done ? 1 : Math.min(0.99, outSeconds / expectedSeconds);
          const elapsed = (performance.now() - begun) / 1000;
          o.onProgress?.({
            percent: Math.round(ratio * 1000) / 10,
            frames: Number(fields.frame ?? 0) || 0,
            fps: Number(fields.fps ?? 0) || 0,
            eta_seconds: done ? 0 : ratio > 0.01 ? Math.round((elapsed / ratio) * (1 - ratio)) : null,
          });
          fields = {};
        },
      });
    } catch (err) {
      if (err instanceof ToolStopped) {
        if (err.reason === 'aborted') throw o.signal?.reason instanceof Error ? o.signal.reason : new AppError('ERR_UNAVAILABLE', 'Processing was cancelled.');
        throw new AppError('ERR_JOB_TIMEOUT', `The video took longer than ${settings.timeoutSeconds} s to process (OBSCURA_VIDEO_TIMEOUT_SECONDS).`, { details: { limit: settings.timeoutSeconds, setting: 'OBSCURA_VIDEO_TIMEOUT_SECONDS' } });
      }
      if (err instanceof ToolFailed) {
        if (err.signalName === 'SIGXCPU' || err.signalName === 'SIGKILL') {
          throw new AppError('ERR_JOB_TIMEOUT', `The video used more than ${settings.cpuSeconds} s of CPU time (OBSCURA_VIDEO_CPU_SECONDS).`, { details: { limit: settings.cpuSeconds, setting: 'OBSCURA_VIDEO_CPU_SECONDS' } });
        }
        if (neverStarted(err)) throw leashTooTight(settings.memoryBytes);
        throw new AppError('ERR_VIDEO_FAILED', 'ffmpeg could not process this video with these operations (the stream may be damaged, or the settings do not fit it).', { cause: err, internal: { stderr: err.stderrTail.slice(-1000), exit: err.exitCode, signal: err.signalName } });
      }
      throw err;
    }
    const still = poster !== null || g.animate !== null || g.storyboard !== null;
    const durationSeconds = still ? 0 : Math.round(expectedSeconds * 1000) / 1000;
    return { path, mime, ext, width, height, durationSeconds, fps: still ? 0 : g.fps, ...(hls ? { hls } : {}), ...(storyboard ? { storyboard } : {}), cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  } finally {
    await server.close();
    for (const x of extra) await x.close();
  }
}

/** drawtext's x/y for a gravity, with a margin of 2 % of the frame. */
function textPosition(g: Gravity): string {
  const x = g.endsWith('west') ? 'w*0.02' : g.endsWith('east') ? 'w-text_w-w*0.02' : '(w-text_w)/2';
  const y = g.startsWith('north') ? 'h*0.02' : g.startsWith('south') ? 'h-text_h-h*0.02' : '(h-text_h)/2';
  return `x=${x}:y=${y}`;
}

/** overlay's x:y for a gravity, with a margin of 2 % of the frame width. */
function overlayPosition(g: Gravity, frameWidth: number): string {
  const m = Math.round(frameWidth * 0.02);
  const x = g.endsWith('west') ? `${m}` : g.endsWith('east') ? `W-w-${m}` : '(W-w)/2';
  const y = g.startsWith('north') ? `${m}` : g.startsWith('south') ? `H-h-${m}` : '(H-h)/2';
  return `${x}:${y}`;
}
