/**
 * Video processing (issue 11): the one place a video output is produced, for sync previews and poster
 * frames and for video jobs alike, and so the one place each is metered (media type, frame size, fps,
 * duration, processing time). Inputs are read from the encrypted store through the loopback source
 * (media/video/source.ts), never copied to disk in clear.
 */
import { Readable } from 'node:stream';
import type { Asset } from '../assets/assets.js';
import { openAssetStream } from '../assets/read.js';
import { AppError } from '../errors.js';
import { requireVideoTools, type VideoTools } from '../media/video/ffmpeg.js';
import type { VideoPlan } from '../media/video/operations.js';
import { processVideo, type PreviewOptions, type VideoOutput, type VideoProgress } from '../media/video/pipeline.js';
import { probeVideo, type VideoFacts } from '../media/video/probe.js';
import type { VideoSettings } from '../media/video/settings.js';
import { serveSource, type SourceBytes } from '../media/video/source.js';
import { createWorkQueue, type WorkQueue } from '../media/queue.js';
import sharp from 'sharp';
import { readAsset, type ProcessingDeps } from './processing.js';
import { resolutionBucket } from '../usage/meter.js';

/** The video settings with the temporary area resolved (Config.video). */
export type ResolvedVideoSettings = VideoSettings & { readonly tempDir: string };

/** Sync previews and poster frames running at once per process (long work goes to the video job queue). */
export const VIDEO_SYNC_CONCURRENCY = 2;

/** Options of {@link VideoProcessing.run}. */
export interface VideoRun {
  orgId: string;
  /** The input's sniffed type. */
  mime: string;
  source: SourceBytes;
  /** The facts stored with the asset; probed now when absent (a video stored without ffprobe). */
  known: VideoFacts | null;
  plan: VideoPlan;
  preview?: PreviewOptions | null | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((p: VideoProgress) => void) | undefined;
  onSpawn?: ((pid: number) => void) | undefined;
  billTo: { appId: string; keyId?: string | null | undefined };
}

/** See the module comment. One per process, owned by the processing service. */
export class VideoProcessing {
  /** Bounds sync previews and poster frames (fair between orgs, like image work). */
  readonly queue: WorkQueue;

  constructor(
    private readonly deps: ProcessingDeps,
    readonly settings: ResolvedVideoSettings,
    private readonly maxDimension: number,
  ) {
    this.queue = createWorkQueue({ concurrency: VIDEO_SYNC_CONCURRENCY, maxQueued: 16, perKeyConcurrency: 1, perKeyQueued: 4, maxWaitMs: 30_000 });
  }

  /** The installed ffmpeg, or 503 `ERR_VIDEO_UNAVAILABLE`. */
  tools(): VideoTools {
    return requireVideoTools(this.settings);
  }

  /** An asset's plaintext as a source: each range ffmpeg asks for is decrypted on demand. */
  sourceOfAsset(asset: Asset): SourceBytes {
    return { size: asset.size, open: (range) => openAssetStream(this.deps, asset, range) };
  }

  /** Sent bytes as a source. */
  static sourceOfBuffer(bytes: Buffer): SourceBytes {
    return { size: bytes.length, open: async (range) => Readable.from([range ? bytes.subarray(range.start, range.end + 1) : bytes]) };
  }

  /** The stored facts, or a probe now (refusing what is not a valid video within the limits). */
  async facts(tools: VideoTools, mime: string, source: SourceBytes, known: VideoFacts | null, signal?: AbortSignal): Promise<VideoFacts> {
    if (known) return known;
    const server = await serveSource(source);
    try {
      return await probeVideo(tools, mime, server.url, this.settings, source.size, signal);
    } finally {
      await server.close();
    }
  }

  /**
   * A watermark: an image asset of the same org (another org's is "not found"), decoded by the image
   * pipeline's libvips under a pixel limit and re-encoded as PNG, so ffmpeg only ever sees a PNG we wrote.
   */
  private async watermarkPng(orgId: string, assetId: string): Promise<Buffer> {
    const { asset, bytes } = await readAsset(this.deps, orgId, assetId, WATERMARK_MAX_BYTES);
    if (!asset.mime.startsWith('image/')) throw new AppError('ERR_VALIDATION', 'Invalid operation "watermark": the asset must be an image.', { details: { operation: 'watermark', reason: 'not_an_image' } });
    try {
      return await sharp(bytes, { limitInputPixels: WATERMARK_MAX_PIXELS, failOn: 'error' }).png().toBuffer();
    } catch {
      throw new AppError('ERR_VALIDATION', `Invalid operation "watermark": the image could not be decoded (at most ${WATERMARK_MAX_PIXELS} pixels).`, { details: { operation: 'watermark', reason: 'watermark_undecodable' } });
    }
  }

  /**
   * Runs one video output and meters it. The caller streams `path` to the store and then calls
   * `cleanup()` (also when storing fails).
   */
  async run(o: VideoRun): Promise<VideoOutput> {
    const tools = this.tools();
    const facts = await this.facts(tools, o.mime, o.source, o.known, o.signal);
    const started = performance.now();
    const out = await processVideo({
      tools,
      settings: this.settings,
      tempDir: this.settings.tempDir,
      mime: o.mime,
      source: o.source,
      facts,
      plan: o.plan,
      maxDimension: this.maxDimension,
      preview: o.preview,
      signal: o.signal,
      onProgress: o.onProgress,
      onSpawn: o.onSpawn,
      loadImage: (assetId) => this.watermarkPng(o.orgId, assetId),
    });
    const frames = out.durationSeconds > 0 ? Math.max(1, Math.round(out.durationSeconds * out.fps)) : 1;
    this.deps.meter?.record({
      orgId: o.orgId,
      appId: o.billTo.appId,
      keyId: o.billTo.keyId ?? null,
      exports: { [out.mime]: 1 },
      pixels: { [out.mime]: out.width * out.height * frames },
      resolutions: { [resolutionBucket(out.width, out.height)]: 1 },
      ...(out.durationSeconds > 0 ? { videoMs: { [out.mime]: Math.round(out.durationSeconds * 1000) } } : {}),
      processingMs: performance.now() - started,
    });
    return out;
  }
}

/** Most bytes and pixels a watermark image may have. */
const WATERMARK_MAX_BYTES = 20 * 1024 * 1024;
const WATERMARK_MAX_PIXELS = 16_000_000;

/** Refusal of a whole-video transcode in a request: it belongs in a job. */
export function videoNeedsJob(): AppError {
  return new AppError('ERR_UNPROCESSABLE', 'Processing a whole video takes longer than a request: create a job (POST /v1/jobs, or send Prefer: respond-async), or ask here for a preview (preview: true), a poster frame (poster:at=SECONDS) or an animation (animate:format=gif).', {
    details: { reason: 'video_needs_job' },
  });
}
