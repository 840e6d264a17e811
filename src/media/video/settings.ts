/**
 * The video section of the configuration (issue 11): where ffmpeg and ffprobe are, the operator's
 * limits on what a video may be (checked on ffprobe's facts at upload, before any frame is decoded),
 * and the leash every ffmpeg run is on (wall-clock and CPU time, address space, threads).
 */
import { defineSection, int, str } from '../../settings.js';

export interface VideoSettings {
  /** ffmpeg binary: an absolute path, or a name looked up on PATH. */
  readonly ffmpegPath: string;
  /** ffprobe binary: an absolute path, or a name looked up on PATH. */
  readonly ffprobePath: string;
  /** Longest accepted video, seconds. */
  readonly maxDurationSeconds: number;
  /** Largest accepted frame, pixels (width × height). */
  readonly maxFramePixels: number;
  /** Highest accepted frame rate, frames per second. */
  readonly maxFps: number;
  /** Most streams (video, audio, subtitles, data) in one file. */
  readonly maxStreams: number;
  /** Highest accepted overall bit rate, bits per second. */
  readonly maxBitrate: number;
  /** Wall-clock limit of one ffmpeg run, seconds (the process is killed). */
  readonly timeoutSeconds: number;
  /** CPU-time limit of one ffmpeg run, seconds (RLIMIT_CPU through prlimit). */
  readonly cpuSeconds: number;
  /** Address-space limit of one ffmpeg run, bytes (RLIMIT_AS through prlimit). */
  readonly memoryBytes: number;
  /** Threads one ffmpeg run may use (decoder, filters and encoder). */
  readonly threads: number;
  /** Video jobs run at once per worker process, on their own queue (image jobs are never behind them). */
  readonly workerConcurrency: number;
  /** Seconds between two `job.progress` webhooks of one job (progress in GET /v1/jobs/{id} is fresher). */
  readonly progressWebhookSeconds: number;
  /** Owner-only temporary area for ffmpeg's output before it is encrypted; default `<data dir>/tmp/video`. */
  readonly tempDir: string | undefined;
}

export const VIDEO_SETTINGS = defineSection<VideoSettings>({
  ffmpegPath: str({ env: 'OBSCURA_FFMPEG_PATH', doc: 'The ffmpeg binary (absolute path or a name on PATH); without it video work answers 503 ERR_VIDEO_UNAVAILABLE and images keep working.', default: 'ffmpeg' }),
  ffprobePath: str({ env: 'OBSCURA_FFPROBE_PATH', doc: 'The ffprobe binary (absolute path or a name on PATH).', default: 'ffprobe' }),
  maxDurationSeconds: int({ env: 'OBSCURA_VIDEO_MAX_DURATION_SECONDS', doc: 'Longest accepted video, seconds (longer uploads get 422 ERR_VIDEO_TOO_LARGE).', default: 4 * 3600, min: 1, max: 7 * 24 * 3600 }),
  maxFramePixels: int({ env: 'OBSCURA_VIDEO_MAX_FRAME_PIXELS', doc: 'Largest accepted video frame, pixels (width × height; default 8K UHD).', default: 7680 * 4320, min: 1, max: 1_000_000_000 }),
  maxFps: int({ env: 'OBSCURA_VIDEO_MAX_FPS', doc: 'Highest accepted video frame rate.', default: 240, min: 1, max: 10_000 }),
  maxStreams: int({ env: 'OBSCURA_VIDEO_MAX_STREAMS', doc: 'Most streams in one video file.', default: 16, min: 1, max: 1000 }),
  maxBitrate: int({ env: 'OBSCURA_VIDEO_MAX_BITRATE', doc: 'Highest accepted overall video bit rate, bits per second.', default: 400_000_000, min: 1000, max: 100_000_000_000 }),
  timeoutSeconds: int({ env: 'OBSCURA_VIDEO_TIMEOUT_SECONDS', doc: 'Wall-clock limit of one ffmpeg run, seconds (then it is killed).', default: 3600, min: 1, max: 7 * 24 * 3600 }),
  cpuSeconds: int({ env: 'OBSCURA_VIDEO_CPU_SECONDS', doc: 'CPU-time limit of one ffmpeg run, seconds (RLIMIT_CPU).', default: (s) => (s.timeoutSeconds as number) * 4, defaultText: '4 × OBSCURA_VIDEO_TIMEOUT_SECONDS', min: 1, max: 100 * 24 * 3600 }),
  memoryBytes: int({ env: 'OBSCURA_VIDEO_MEMORY_BYTES', doc: 'Address-space limit of one ffmpeg run, bytes (RLIMIT_AS).', default: 8 * 1024 ** 3, min: 256 * 1024 ** 2, max: 1024 ** 4 }),
  threads: int({ env: 'OBSCURA_VIDEO_THREADS', doc: 'Threads one ffmpeg run may use.', default: 2, min: 1, max: 64 }),
  workerConcurrency: int({ env: 'OBSCURA_VIDEO_WORKER_CONCURRENCY', doc: 'Video jobs run at once per worker process (their own queue).', default: 1, min: 1, max: 64 }),
  progressWebhookSeconds: int({ env: 'OBSCURA_VIDEO_PROGRESS_WEBHOOK_SECONDS', doc: 'Seconds between two job.progress webhooks of one job.', default: 10, min: 1, max: 3600 }),
  tempDir: str({ env: 'OBSCURA_VIDEO_TEMP_DIR', doc: 'Owner-only area where ffmpeg writes an output before it is encrypted (removed when the run ends, swept at start).', defaultText: '<data dir>/tmp/video' }),
});
