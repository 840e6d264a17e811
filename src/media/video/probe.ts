/**
 * Probing a video (issue 11, item 2): ffprobe reads the container through the loopback source
 * (source.ts) with the demuxer forced from the sniffed type, and we keep the facts a user and the
 * pipeline need. A file that does not probe as its sniffed container, has no video stream, or is over
 * the operator's limits is refused before anything is stored or decoded.
 */
import { AppError } from '../../errors.js';
import { findVideoTools, leashTooTight, neverStarted, runTool, ToolFailed, ToolStopped, type Leash, type VideoTools } from './ffmpeg.js';
import { serveSource, type SourceBytes } from './source.js';
import type { VideoSettings } from './settings.js';

/**
 * Video containers we accept, by sniffed media type → the ffmpeg demuxer that must read them. The keys
 * are the names the sniffer (file-type) gives: Matroska is `video/matroska` (a `video/x-matroska` key
 * matched nothing, so an app that accepted Matroska stored it unprobed).
 */
export const VIDEO_DEMUXERS: Readonly<Record<string, string>> = Object.freeze({
  'video/mp4': 'mov',
  'video/quicktime': 'mov',
  'video/webm': 'matroska',
  'video/matroska': 'matroska',
});

/** Whether a media type is a video kind we handle. */
export function isVideoType(mime: string): boolean {
  return Object.hasOwn(VIDEO_DEMUXERS, mime);
}

/** What we know of a video after probing (stored with the asset, shown by GET /v1/assets/{id}). */
export interface VideoFacts {
  /** ffprobe's format name (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`). */
  container: string;
  duration_seconds: number;
  /** Coded frame size. */
  width: number;
  height: number;
  /** Display rotation in degrees (0, 90, 180, 270), from the display matrix or the `rotate` tag. */
  rotation: number;
  /** Average frame rate, frames per second. */
  fps: number;
  video_codec: string;
  pixel_format: string | null;
  /** Overall bit rate, bits per second (null when the container does not say). */
  bit_rate: number | null;
  video_bit_rate: number | null;
  audio: { codec: string; channels: number; sample_rate: number; bit_rate: number | null } | null;
  color: { primaries: string | null; transfer: string | null; space: string | null; range: string | null; hdr: boolean };
  /** Number of streams of every kind. */
  streams: number;
}

/** The input arguments every ffmpeg/ffprobe run uses: only http over tcp to our loopback source, the demuxer forced. */
export function inputArgs(mime: string, url: string, maxStreams: number): string[] {
  const demuxer = VIDEO_DEMUXERS[mime];
  if (!demuxer) throw new AppError('ERR_UNSUPPORTED_MEDIA_TYPE', `${mime} is not a video type this server processes.`, { details: { detected: mime, accepted: Object.keys(VIDEO_DEMUXERS) } });
  // mov: never follow data references to other files (drefs), never resolve paths the file names.
  const demuxerOptions = demuxer === 'mov' ? ['-enable_drefs', '0', '-use_absolute_path', '0'] : [];
  return ['-protocol_whitelist', 'http,tcp', '-max_streams', String(maxStreams + 1), '-f', demuxer, ...demuxerOptions, '-i', url];
}

const num = (v: unknown): number | null => {
  const n = typeof v === 'string' || typeof v === 'number' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : null;
};

function rate(r: unknown): number {
  if (typeof r !== 'string') return 0;
  const [a, b] = r.split('/').map(Number);
  if (!a || !b || !Number.isFinite(a / b)) return 0;
  return a / b;
}

interface ProbeStream {
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  pix_fmt?: string;
  bit_rate?: string;
  channels?: number;
  sample_rate?: string;
  color_primaries?: string;
  color_transfer?: string;
  color_space?: string;
  color_range?: string;
  tags?: Record<string, string>;
  side_data_list?: Array<{ side_data_type?: string; rotation?: number }>;
  disposition?: { attached_pic?: number };
}

function invalid(mime: string, reason: string): AppError {
  return new AppError('ERR_MEDIA_INVALID', `The content is not a valid ${mime} file (${reason}); upload the complete, undamaged file.`, { details: { detected: mime, reason } });
}

function tooLarge(what: string, value: number, limit: number, setting: string): AppError {
  return new AppError('ERR_VIDEO_TOO_LARGE', `The video's ${what} is ${value}; this server accepts at most ${limit} (${setting}).`, { details: { reason: what.replace(/ /g, '_'), value, limit, setting } });
}

/**
 * Probes the video at `url` (a loopback source) as `mime`.
 * @throws `ERR_MEDIA_INVALID` (not a playable file of that container), `ERR_VIDEO_TOO_LARGE` (over a limit,
 *   streams included), `ERR_VIDEO_UNAVAILABLE` (ffprobe cannot start under OBSCURA_VIDEO_MEMORY_BYTES).
 */
export async function probeVideo(tools: VideoTools, mime: string, url: string, settings: VideoSettings, size: number, signal?: AbortSignal): Promise<VideoFacts> {
  const leash: Leash = { timeoutMs: 30_000, cpuSeconds: 30, memoryBytes: Math.min(settings.memoryBytes, 2 * 1024 ** 3) };
  let stdout: string;
  try {
    ({ stdout } = await runTool(tools, tools.ffprobe, ['-v', 'error', '-probesize', '20000000', '-analyzeduration', '20000000', ...inputArgs(mime, url, settings.maxStreams), '-show_format', '-show_streams', '-of', 'json'], { leash, signal }));
  } catch (err) {
    if (err instanceof ToolStopped && err.reason === 'aborted') throw new AppError('ERR_UNAVAILABLE', 'The upload was cancelled.');
    if (err instanceof ToolFailed && neverStarted(err)) throw leashTooTight(leash.memoryBytes);
    // ffprobe stops creating streams at -max_streams (so 10 000 declared streams cost nothing): that is
    // the streams limit, not a damaged file, and the answer names the setting like the other limits.
    if (err instanceof ToolFailed && /exceeds max_streams/.test(err.stderrTail)) {
      throw new AppError('ERR_VIDEO_TOO_LARGE', `The video has more than ${settings.maxStreams} streams; this server accepts at most ${settings.maxStreams} (OBSCURA_VIDEO_MAX_STREAMS).`, {
        details: { reason: 'number_of_streams', limit: settings.maxStreams, setting: 'OBSCURA_VIDEO_MAX_STREAMS' },
      });
    }
    if (err instanceof ToolStopped || err instanceof ToolFailed) throw invalid(mime, err instanceof ToolStopped ? 'it could not be read in time' : 'ffprobe cannot read it as that container');
    throw err;
  }
  let parsed: { format?: { format_name?: string; duration?: string; bit_rate?: string; nb_streams?: number }; streams?: ProbeStream[] };
  try {
    parsed = JSON.parse(stdout) as typeof parsed;
  } catch {
    throw invalid(mime, 'ffprobe cannot read it as that container');
  }
  const format = parsed.format ?? {};
  const streams = parsed.streams ?? [];
  const container = String(format.format_name ?? '');
  const expected = VIDEO_DEMUXERS[mime] === 'mov' ? 'mov' : 'matroska';
  if (!container.split(',').includes(expected)) throw invalid(mime, `it probes as ${container || 'nothing'}`);
  const count = Math.max(streams.length, Number(format.nb_streams ?? 0));
  if (count > settings.maxStreams) throw tooLarge('number of streams', count, settings.maxStreams, 'OBSCURA_VIDEO_MAX_STREAMS');
  const video = streams.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
  if (!video || !video.width || !video.height) throw invalid(mime, 'it has no video stream');
  const duration = num(format.duration) ?? 0;
  if (!(duration > 0)) throw invalid(mime, 'it has no duration');
  if (duration > settings.maxDurationSeconds) throw tooLarge('duration in seconds', Math.round(duration), settings.maxDurationSeconds, 'OBSCURA_VIDEO_MAX_DURATION_SECONDS');
  if (video.width * video.height > settings.maxFramePixels) throw tooLarge('frame size in pixels', video.width * video.height, settings.maxFramePixels, 'OBSCURA_VIDEO_MAX_FRAME_PIXELS');
  const fps = rate(video.avg_frame_rate) || rate(video.r_frame_rate);
  if (fps > settings.maxFps) throw tooLarge('frame rate', Math.round(fps), settings.maxFps, 'OBSCURA_VIDEO_MAX_FPS');
  const bitRate = num(format.bit_rate) ?? (duration > 0 ? Math.round((size * 8) / duration) : null);
  if (bitRate !== null && bitRate > settings.maxBitrate) throw tooLarge('bit rate', bitRate, settings.maxBitrate, 'OBSCURA_VIDEO_MAX_BITRATE');
  const matrix = video.side_data_list?.find((d) => typeof d.rotation === 'number')?.rotation;
  const rotation = (((Math.round(-(matrix ?? -Number(video.tags?.rotate ?? 0)) / 90) * 90) % 360) + 360) % 360;
  const audio = streams.find((s) => s.codec_type === 'audio');
  const transfer = video.color_transfer ?? null;
  return {
    container,
    duration_seconds: Math.round(duration * 1000) / 1000,
    width: video.width,
    height: video.height,
    rotation,
    fps: Math.round(fps * 1000) / 1000,
    video_codec: String(video.codec_name ?? 'unknown'),
    pixel_format: video.pix_fmt ?? null,
    bit_rate: bitRate,
    video_bit_rate: num(video.bit_rate),
    audio: audio ? { codec: String(audio.codec_name ?? 'unknown'), channels: Number(audio.channels ?? 0), sample_rate: num(audio.sample_rate) ?? 0, bit_rate: num(audio.bit_rate) } : null,
    color: {
      primaries: video.color_primaries ?? null,
      transfer,
      space: video.color_space ?? null,
      range: video.color_range ?? null,
      hdr: transfer === 'smpte2084' || transfer === 'arib-std-b67',
    },
    streams: count,
  };
}

/**
 * The upload-time probe the composition root gives assets/: null when this server has no ffprobe
 * (the caller then stores the video after its structural check; processing refuses it with 503).
 */
export function videoProbeFor(settings: VideoSettings): (mime: string, source: SourceBytes) => Promise<VideoFacts | null> {
  return async (mime, source) => {
    const tools = findVideoTools(settings);
    if (!tools) return null;
    const server = await serveSource(source);
    try {
      return await probeVideo(tools, mime, server.url, settings, source.size);
    } finally {
      await server.close();
    }
  };
}
