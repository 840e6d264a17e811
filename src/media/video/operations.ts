/**
 * The video operation registry (issue 11, item 3): the same mechanism and string grammar as images
 * (media/registry.ts), each entry a schema with clamped ranges and an `apply` that adds to one ffmpeg
 * filter graph and encoder settings ({@link VideoGraph}). Nothing here runs ffmpeg; pipeline.ts turns
 * the graph into arguments.
 *
 * Order (whatever order is written, an order the graph would change is refused): trim → deinterlace →
 * denoise → crop → scale → rotate → flip → sharpen → color → fps → speed → audio → text → watermark;
 * `format` and the derived outputs (`poster`, `animate`, `storyboard`, `hls`; one per request) may be
 * written anywhere.
 */
import { Type, type Static, type TSchema } from 'typebox';
import { AppError } from '../../errors.js';
import { createRegistry, serializeOperations, type ParsedOperation, type Plan as BasePlan } from '../registry.js';
import type { OperationDef } from '../operation.js';
import type { OperationReference } from '../describe.js';

/** Output containers and what they may carry. */
export const CONTAINERS = {
  mp4: { mime: 'video/mp4', ext: 'mp4', muxer: 'mp4', codecs: ['h264', 'h265', 'av1'], audio: ['aac', 'opus'] },
  mov: { mime: 'video/quicktime', ext: 'mov', muxer: 'mov', codecs: ['h264', 'h265'], audio: ['aac'] },
  webm: { mime: 'video/webm', ext: 'webm', muxer: 'webm', codecs: ['vp9', 'av1'], audio: ['opus'] },
  mkv: { mime: 'video/matroska', ext: 'mkv', muxer: 'matroska', codecs: ['h264', 'h265', 'vp9', 'av1'], audio: ['aac', 'opus'] },
} as const;
export type Container = keyof typeof CONTAINERS;
/** Media types a video output may have. */
export const VIDEO_OUTPUT_MIME: readonly string[] = Object.freeze(Object.values(CONTAINERS).map((c) => c.mime));

/** Codecs by public name → the ffmpeg encoders that provide them (first installed one wins). */
export const VIDEO_ENCODERS: Readonly<Record<string, readonly string[]>> = { h264: ['libx264'], h265: ['libx265'], vp9: ['libvpx-vp9'], av1: ['libsvtav1', 'libaom-av1'] };
export const AUDIO_ENCODERS: Readonly<Record<string, readonly string[]>> = { aac: ['aac'], opus: ['libopus'] };
export type VideoCodec = 'h264' | 'h265' | 'vp9' | 'av1';
export type AudioCodec = 'aac' | 'opus';

/** What the input is, as far as operations need to know (from the probe). */
export interface VideoInput {
  width: number;
  height: number;
  /** Display rotation (90/270 swap the displayed sides). */
  rotation: number;
  fps: number;
  durationSeconds: number;
  hasAudio: boolean;
}

/** The filter graph and encoder settings the operations build. */
export interface VideoGraph {
  readonly input: VideoInput;
  /** Input seek and length (trim), seconds. */
  start: number;
  duration: number | null;
  /** Video filters, in order. */
  readonly video: string[];
  /** Audio filters, in order. */
  readonly audio: string[];
  stripAudio: boolean;
  /** The displayed frame size after the filters so far. */
  width: number;
  height: number;
  fps: number;
  /** Playback speed factor (output duration = input duration / speed). */
  speed: number;
  output: { container: Container; codec: VideoCodec; crf: number | null; bitrateKbps: number | null; preset: string; audioCodec: AudioCodec | null; faststart: boolean };
  /** A poster frame instead of a video (derived output). */
  poster: { at: number; format: 'jpeg' | 'png' | 'webp' } | null;
  /** An animated image instead of a video (derived output). */
  animate: { start: number; duration: number; fps: number; width: number; format: 'gif' | 'webp' } | null;
  /** A storyboard instead of a video: a sprite sheet of thumbnails every `interval` seconds and a WebVTT file. */
  storyboard: { interval: number; width: number; columns: number } | null;
  /** Text and image overlays, drawn after the other filters in the order written. */
  readonly overlays: Overlay[];
  /** An HLS package instead of one file (derived output): segment length, renditions, segment type. */
  hls: { segmentSeconds: number; renditions: number; type: 'fmp4' | 'ts' } | null;
  /** Largest output side (the operator's limit). */
  readonly maxDimension: number;
}

/** Where an overlay sits. */
export type Gravity = 'north' | 'northeast' | 'east' | 'southeast' | 'south' | 'southwest' | 'west' | 'northwest' | 'center';

/** An overlay the pipeline draws (text from a file it writes; an image from an asset of the same org, re-encoded as PNG first). */
export type Overlay =
  | { kind: 'text'; text: string; size: number; color: string; gravity: Gravity; box: boolean }
  | { kind: 'watermark'; assetId: string; gravity: Gravity; opacity: number; width: number };

type VideoOperation<S extends TSchema = TSchema> = OperationDef<S, VideoGraph, undefined>;

function define<S extends TSchema>(def: VideoOperation<S>): VideoOperation<S> {
  return Object.freeze(def);
}

const even = (n: number): number => Math.max(2, Math.round(n / 2) * 2);
const evenDown = (n: number): number => Math.max(2, Math.floor(n / 2) * 2);

function refuse(operation: string, reason: string, message: string): AppError {
  return new AppError('ERR_VALIDATION', `Invalid operation "${operation}": ${message}`, { details: { operation, reason } });
}

export const trim = define({
  name: 'trim',
  description: 'Keep part of the video: from `start` seconds, for `duration` seconds (default to the end).',
  schema: Type.Object({ start: Type.Optional(Type.Number({ minimum: 0, maximum: 7 * 24 * 3600, description: 'seconds from the beginning' })), duration: Type.Optional(Type.Number({ minimum: 0.04, maximum: 7 * 24 * 3600, description: 'seconds' })) }, { additionalProperties: false }),
  order: 10,
  cost: () => 0,
  apply(g, a) {
    const start = a.start ?? 0;
    if (start >= g.input.durationSeconds) throw refuse('trim', 'start_after_end', `start (${start} s) is at or after the end of the video (${g.input.durationSeconds} s).`);
    g.start = start;
    g.duration = a.duration ?? null;
  },
});

export const deinterlace = define({
  name: 'deinterlace',
  description: 'Remove interlacing combs: bwdif (better) or yadif (faster).',
  schema: Type.Object({ method: Type.Optional(Type.Union([Type.Literal('bwdif'), Type.Literal('yadif')], { default: 'bwdif' })) }, { additionalProperties: false }),
  primary: 'method',
  order: 20,
  apply(g, a) {
    g.video.push(a.method === 'yadif' ? 'yadif=mode=send_frame:deint=interlaced' : 'bwdif=mode=send_frame:deint=interlaced');
  },
});

export const denoise = define({
  name: 'denoise',
  description: 'Reduce noise: hqdn3d (fast, temporal) or nlmeans (slow, stronger), strength 1–10.',
  schema: Type.Object({ method: Type.Optional(Type.Union([Type.Literal('hqdn3d'), Type.Literal('nlmeans')], { default: 'hqdn3d' })), strength: Type.Optional(Type.Number({ minimum: 1, maximum: 10, default: 4 })) }, { additionalProperties: false }),
  primary: 'method',
  order: 30,
  cost: (a) => (a.method === 'nlmeans' ? 8 : 1),
  apply(g, a) {
    const s = a.strength ?? 4;
    g.video.push(a.method === 'nlmeans' ? `nlmeans=s=${(s * 1.5).toFixed(2)}:p=5:r=9` : `hqdn3d=${s.toFixed(2)}:${(s * 0.75).toFixed(2)}:${(s * 1.5).toFixed(2)}:${(s * 1.125).toFixed(2)}`);
  },
});

export const crop = define({
  name: 'crop',
  description: 'Cut a rectangle (in displayed pixels) out of every frame.',
  schema: Type.Object({ x: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, default: 0 })), y: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, default: 0 })), width: Type.Integer({ minimum: 2, maximum: 65535 }), height: Type.Integer({ minimum: 2, maximum: 65535 }) }, { additionalProperties: false }),
  order: 40,
  apply(g, a) {
    const x = a.x ?? 0;
    const y = a.y ?? 0;
    if (x + a.width > g.width || y + a.height > g.height) throw refuse('crop', 'outside_frame', `the rectangle ${a.width}×${a.height} at ${x},${y} does not fit the ${g.width}×${g.height} frame.`);
    const w = evenDown(a.width);
    const h = evenDown(a.height);
    g.video.push(`crop=${w}:${h}:${x}:${y}`);
    g.width = w;
    g.height = h;
  },
});

export const scale = define({
  name: 'scale',
  aliases: ['resize'],
  description: 'Resize (lanczos): fit inside width × height (contain), fill it and crop (cover), or stretch (fill). One side keeps the aspect ratio. Enlarging (upscale to a target height) is allowed up to the server limit.',
  schema: Type.Object(
    {
      width: Type.Optional(Type.Integer({ minimum: 2, maximum: 16384 })),
      height: Type.Optional(Type.Integer({ minimum: 2, maximum: 16384 })),
      fit: Type.Optional(Type.Union([Type.Literal('contain'), Type.Literal('cover'), Type.Literal('fill')], { default: 'contain' })),
    },
    { additionalProperties: false },
  ),
  primary: 'height',
  order: 50,
  check: (a) => (a.width === undefined && a.height === undefined ? 'width_or_height_required' : undefined),
  apply(g, a) {
    const ratio = g.width / g.height;
    let w = a.width ?? (a.height! * ratio);
    let h = a.height ?? (a.width! / ratio);
    const fit = a.fit ?? 'contain';
    if (a.width !== undefined && a.height !== undefined && fit !== 'fill') {
      const box = a.width / a.height;
      const wider = ratio > box;
      if ((fit === 'contain') === wider) h = a.width / ratio;
      else w = a.height * ratio;
    }
    const shrink = Math.min(1, g.maxDimension / Math.max(w, h));
    w = even(w * shrink);
    h = even(h * shrink);
    g.video.push(`scale=${w}:${h}:flags=lanczos`);
    if (fit === 'cover' && a.width !== undefined && a.height !== undefined) {
      const cw = evenDown(Math.min(w, a.width * shrink));
      const ch = evenDown(Math.min(h, a.height * shrink));
      g.video.push(`crop=${cw}:${ch}`);
      w = cw;
      h = ch;
    }
    g.video.push('setsar=1');
    g.width = w;
    g.height = h;
  },
});

export const rotate = define({
  name: 'rotate',
  description: 'Rotate clockwise by 90, 180 or 270 degrees.',
  schema: Type.Object({ angle: Type.Union([Type.Literal(90), Type.Literal(180), Type.Literal(270)]) }, { additionalProperties: false }),
  primary: 'angle',
  order: 60,
  apply(g, a) {
    if (a.angle === 90) g.video.push('transpose=clock');
    else if (a.angle === 270) g.video.push('transpose=cclock');
    else g.video.push('hflip', 'vflip');
    if (a.angle !== 180) [g.width, g.height] = [g.height, g.width];
  },
});

export const flip = define({
  name: 'flip',
  description: 'Mirror horizontally (left ↔ right) or vertically (top ↔ bottom).',
  schema: Type.Object({ direction: Type.Optional(Type.Union([Type.Literal('horizontal'), Type.Literal('vertical')], { default: 'horizontal' })) }, { additionalProperties: false }),
  primary: 'direction',
  order: 65,
  apply(g, a) {
    g.video.push(a.direction === 'vertical' ? 'vflip' : 'hflip');
  },
});

export const sharpen = define({
  name: 'sharpen',
  description: 'Sharpen (unsharp mask), amount 0.1–3.',
  schema: Type.Object({ amount: Type.Optional(Type.Number({ minimum: 0.1, maximum: 3, default: 1 })) }, { additionalProperties: false }),
  primary: 'amount',
  order: 70,
  apply(g, a) {
    g.video.push(`unsharp=5:5:${(a.amount ?? 1).toFixed(2)}:5:5:0`);
  },
});

export const color = define({
  name: 'color',
  aliases: ['colour'],
  description: 'Adjust brightness (-1–1, 0 = unchanged), contrast (0–3), saturation (0–3) and gamma (0.1–10); 1 = unchanged for the others.',
  schema: Type.Object(
    {
      brightness: Type.Optional(Type.Number({ minimum: -1, maximum: 1, default: 0 })),
      contrast: Type.Optional(Type.Number({ minimum: 0, maximum: 3, default: 1 })),
      saturation: Type.Optional(Type.Number({ minimum: 0, maximum: 3, default: 1 })),
      gamma: Type.Optional(Type.Number({ minimum: 0.1, maximum: 10, default: 1 })),
    },
    { additionalProperties: false },
  ),
  order: 75,
  apply(g, a) {
    g.video.push(`eq=brightness=${a.brightness ?? 0}:contrast=${a.contrast ?? 1}:saturation=${a.saturation ?? 1}:gamma=${a.gamma ?? 1}`);
  },
});

export const fps = define({
  name: 'fps',
  description: 'Change the frame rate: drop/duplicate frames, or interpolate motion (minterpolate, slow).',
  schema: Type.Object({ rate: Type.Number({ minimum: 1, maximum: 120 }), method: Type.Optional(Type.Union([Type.Literal('drop'), Type.Literal('interpolate')], { default: 'drop' })) }, { additionalProperties: false }),
  primary: 'rate',
  order: 80,
  cost: (a) => (a.method === 'interpolate' ? 10 : 0),
  apply(g, a) {
    g.video.push(a.method === 'interpolate' ? `minterpolate=fps=${a.rate}:mi_mode=mci:mc_mode=aobmc:vsbmc=1` : `fps=${a.rate}`);
    g.fps = a.rate;
  },
});

export const speed = define({
  name: 'speed',
  description: 'Play faster or slower (0.25–4; audio keeps its pitch).',
  schema: Type.Object({ factor: Type.Number({ minimum: 0.25, maximum: 4 }) }, { additionalProperties: false }),
  primary: 'factor',
  order: 85,
  apply(g, a) {
    g.video.push(`setpts=PTS/${a.factor}`);
    // atempo takes 0.5–2 per stage: chain stages for the rest.
    let f = a.factor;
    while (f > 2) {
      g.audio.push('atempo=2');
      f /= 2;
    }
    while (f < 0.5) {
      g.audio.push('atempo=0.5');
      f /= 0.5;
    }
    g.audio.push(`atempo=${f.toFixed(4)}`);
    g.speed = a.factor;
  },
});

export const audio = define({
  name: 'audio',
  description: 'Audio: keep it (re-encoded), strip it, or normalise its loudness (EBU R128, -16 LUFS).',
  schema: Type.Object({ mode: Type.Union([Type.Literal('keep'), Type.Literal('strip'), Type.Literal('normalize')]) }, { additionalProperties: false }),
  primary: 'mode',
  order: 90,
  cost: () => 0,
  apply(g, a) {
    if (a.mode === 'strip') g.stripAudio = true;
    // loudnorm resamples to 192 kHz to find true peaks; come back to 48 kHz (else AAC is written at 96 kHz).
    if (a.mode === 'normalize') g.audio.push('loudnorm=I=-16:TP=-1.5:LRA=11', 'aformat=sample_rates=48000');
  },
});

const GravitySchema = Type.Union(['north', 'northeast', 'east', 'southeast', 'south', 'southwest', 'west', 'northwest', 'center'].map((g) => Type.Literal(g)), { default: 'southeast' });
/** A colour as #rrggbb (ffmpeg's own colour names are not accepted). */
const Rgb = Type.String({ pattern: '^#[0-9a-fA-F]{6}$', description: '#rrggbb (write # as %23 in URLs)' });

export const text = define({
  name: 'text',
  description: 'Draw text (the bundled DejaVu Sans; drawn as text, never interpreted) on every frame.',
  schema: Type.Object(
    {
      text: Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\u0000-\\u001F\\u007F]*$' }),
      size: Type.Optional(Type.Integer({ minimum: 6, maximum: 300, default: 32, description: 'pixels' })),
      color: Type.Optional(Rgb),
      gravity: Type.Optional(GravitySchema),
      box: Type.Optional(Type.Boolean({ default: false, description: 'a translucent box behind the text' })),
    },
    { additionalProperties: false },
  ),
  primary: 'text',
  order: 95,
  repeatable: true,
  apply(g, a) {
    g.overlays.push({ kind: 'text', text: a.text, size: a.size ?? 32, color: a.color ?? '#ffffff', gravity: (a.gravity ?? 'southeast') as Gravity, box: a.box ?? false });
  },
});

export const watermark = define({
  name: 'watermark',
  description: 'Overlay an image asset of the same org (re-encoded as PNG by the image pipeline first) on every frame; `width` is its share of the frame width.',
  schema: Type.Object(
    {
      asset: Type.String({ pattern: '^ast_[0-9A-Za-z]{22}$', description: 'an image asset of your org' }),
      gravity: Type.Optional(GravitySchema),
      opacity: Type.Optional(Type.Number({ minimum: 0.05, maximum: 1, default: 0.8 })),
      width: Type.Optional(Type.Number({ minimum: 0.02, maximum: 1, default: 0.2, description: 'fraction of the frame width' })),
    },
    { additionalProperties: false },
  ),
  primary: 'asset',
  order: 96,
  repeatable: true,
  readsAssets: true,
  apply(g, a) {
    if (g.overlays.filter((o) => o.kind === 'watermark').length >= 4) throw refuse('watermark', 'too_many_watermarks', 'at most 4 watermarks per video.');
    g.overlays.push({ kind: 'watermark', assetId: a.asset, gravity: (a.gravity ?? 'southeast') as Gravity, opacity: a.opacity ?? 0.8, width: a.width ?? 0.2 });
  },
});

const PRESETS = ['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow'] as const;

export const format = define({
  name: 'format',
  description: 'Output: container (mp4, webm, mov, mkv), video codec (h264, h265, vp9, av1; GET /v1/operations lists what this server has), quality (crf) or bitrate (kbit/s), encoder preset, audio codec (aac, opus) and faststart (mp4/mov: index first, plays while downloading).',
  schema: Type.Object(
    {
      container: Type.Optional(Type.Union([Type.Literal('mp4'), Type.Literal('webm'), Type.Literal('mov'), Type.Literal('mkv')], { default: 'mp4' })),
      codec: Type.Optional(Type.Union([Type.Literal('h264'), Type.Literal('h265'), Type.Literal('vp9'), Type.Literal('av1')])),
      crf: Type.Optional(Type.Integer({ minimum: 0, maximum: 63 })),
      bitrate: Type.Optional(Type.Integer({ minimum: 50, maximum: 200_000, description: 'kbit/s' })),
      preset: Type.Optional(Type.Union(PRESETS.map((p) => Type.Literal(p)), { default: 'medium' })),
      audio_codec: Type.Optional(Type.Union([Type.Literal('aac'), Type.Literal('opus')])),
      faststart: Type.Optional(Type.Boolean({ default: true })),
    },
    { additionalProperties: false },
  ),
  primary: 'container',
  valueAliases: { container: { matroska: 'mkv', quicktime: 'mov' }, codec: { avc: 'h264', hevc: 'h265' } },
  order: 100,
  anyPosition: true,
  cost: () => 0,
  check(a) {
    const c = CONTAINERS[a.container ?? 'mp4'];
    if (a.codec !== undefined && !(c.codecs as readonly string[]).includes(a.codec)) return `codec_not_in_container`;
    if (a.audio_codec !== undefined && !(c.audio as readonly string[]).includes(a.audio_codec)) return 'audio_codec_not_in_container';
    if (a.crf !== undefined && a.bitrate !== undefined) return 'crf_or_bitrate_not_both';
    if (a.crf !== undefined && (a.codec ?? c.codecs[0]) !== 'av1' && (a.codec ?? c.codecs[0]) !== 'vp9' && a.crf > 51) return 'crf_above_51_for_this_codec';
    return undefined;
  },
  apply(g, a) {
    const container = a.container ?? 'mp4';
    const c = CONTAINERS[container];
    g.output = {
      container,
      codec: (a.codec ?? c.codecs[0]) as VideoCodec,
      crf: a.crf ?? null,
      bitrateKbps: a.bitrate ?? null,
      preset: a.preset ?? 'medium',
      audioCodec: (a.audio_codec ?? c.audio[0]) as AudioCodec,
      faststart: a.faststart ?? true,
    };
  },
});

export const poster = define({
  name: 'poster',
  aliases: ['thumbnail'],
  description: 'Instead of a video, output one frame at `at` seconds as an image (jpeg, png or webp), after the other operations.',
  schema: Type.Object({ at: Type.Optional(Type.Number({ minimum: 0, maximum: 7 * 24 * 3600, default: 0 })), format: Type.Optional(Type.Union([Type.Literal('jpeg'), Type.Literal('png'), Type.Literal('webp')], { default: 'jpeg' })) }, { additionalProperties: false }),
  primary: 'at',
  order: 110,
  anyPosition: true,
  cost: () => 0,
  valueAliases: { format: { jpg: 'jpeg' } },
  apply(g, a) {
    oneDerived(g, 'poster');
    g.poster = { at: a.at ?? 0, format: a.format ?? 'jpeg' };
  },
});

export const hls = define({
  name: 'hls',
  description: 'Instead of one file, an HLS package (H.264/AAC): a master playlist and 1–4 renditions (the output size, then halving), each one media file with byte-range segments of `segment` seconds (fmp4 or ts). Download the master playlist through a signed URL: the playlists served carry signed URLs of their parts that expire with it.',
  schema: Type.Object(
    {
      segment: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, default: 4, description: 'seconds' })),
      renditions: Type.Optional(Type.Integer({ minimum: 1, maximum: 4, default: 1 })),
      type: Type.Optional(Type.Union([Type.Literal('fmp4'), Type.Literal('ts')], { default: 'fmp4' })),
    },
    { additionalProperties: false },
  ),
  order: 120,
  anyPosition: true,
  cost: () => 0,
  apply(g, a) {
    oneDerived(g, 'hls');
    g.hls = { segmentSeconds: a.segment ?? 4, renditions: a.renditions ?? 1, type: a.type ?? 'fmp4' };
  },
});

/** Refuses a second derived output in one request. */
function oneDerived(g: VideoGraph, name: string): void {
  const taken = [g.poster && 'poster', g.hls && 'hls', g.animate && 'animate', g.storyboard && 'storyboard'].filter(Boolean);
  if (taken.length) throw refuse(name, 'one_derived_output', `${name} and ${taken[0]} are two outputs: ask for them in two requests.`);
}

export const animate = define({
  name: 'animate',
  description: 'Instead of a video, an animated GIF or WebP of a few seconds (from `start`, after the other operations), `width` pixels wide at `fps` frames per second.',
  schema: Type.Object(
    {
      start: Type.Optional(Type.Number({ minimum: 0, maximum: 7 * 24 * 3600, default: 0, description: 'seconds' })),
      duration: Type.Optional(Type.Number({ minimum: 0.2, maximum: 10, default: 3, description: 'seconds' })),
      fps: Type.Optional(Type.Integer({ minimum: 1, maximum: 30, default: 10 })),
      width: Type.Optional(Type.Integer({ minimum: 16, maximum: 1280, default: 320 })),
      format: Type.Optional(Type.Union([Type.Literal('gif'), Type.Literal('webp')], { default: 'gif' })),
    },
    { additionalProperties: false },
  ),
  primary: 'format',
  order: 112,
  anyPosition: true,
  cost: () => 0,
  apply(g, a) {
    oneDerived(g, 'animate');
    g.animate = { start: a.start ?? 0, duration: a.duration ?? 3, fps: a.fps ?? 10, width: a.width ?? 320, format: a.format ?? 'gif' };
  },
});

export const storyboard = define({
  name: 'storyboard',
  aliases: ['thumbnails'],
  description: 'Instead of a video, a storyboard: a JPEG sprite sheet of a thumbnail every `interval` seconds (at most 100), `columns` per row, and a WebVTT file whose cues name each tile (`#xywh=`), as players show on the seek bar. The WebVTT file, served through its signed URL, names the sprite by a signed URL that expires with it.',
  schema: Type.Object(
    {
      interval: Type.Optional(Type.Number({ minimum: 0.5, maximum: 3600, default: 5, description: 'seconds' })),
      width: Type.Optional(Type.Integer({ minimum: 16, maximum: 640, default: 160, description: 'tile width, pixels' })),
      columns: Type.Optional(Type.Integer({ minimum: 1, maximum: 20, default: 5 })),
    },
    { additionalProperties: false },
  ),
  order: 114,
  anyPosition: true,
  cost: () => 0,
  apply(g, a) {
    oneDerived(g, 'storyboard');
    g.storyboard = { interval: a.interval ?? 5, width: a.width ?? 160, columns: a.columns ?? 5 };
  },
});

/** At most this many operations per request (as for images). */
export const MAX_VIDEO_OPERATIONS = 20;

const VIDEO_OPERATIONS = createRegistry<VideoOperation>([trim, deinterlace, denoise, crop, scale, rotate, flip, sharpen, color, fps, speed, audio, text, watermark, format, poster, animate, storyboard, hls] as VideoOperation[], {
  maxOperations: MAX_VIDEO_OPERATIONS,
  maxLength: 4096,
});

/** Every video operation, in graph order. */
export const VIDEO_OPERATION_LIST: readonly VideoOperation[] = VIDEO_OPERATIONS.list;

/** Every video operation name and alias. */
export const VIDEO_OPERATION_NAMES: ReadonlySet<string> = new Set(VIDEO_OPERATIONS.byName.keys());

/** A video plan: validated steps in graph order. */
export type VideoPlan = BasePlan<VideoOperation>;

/** Parses and plans video operations (either spelling). @throws AppError `ERR_VALIDATION`. */
export function compileVideoOperations(input: unknown): { ops: ParsedOperation[]; plan: VideoPlan; canonical: string } {
  const ops = VIDEO_OPERATIONS.parse(input);
  return { ops, plan: VIDEO_OPERATIONS.plan(ops), canonical: serializeOperations(ops) };
}

/** The published reference of the video registry (`GET /v1/operations`, docs/operations.md). */
export const VIDEO_OPERATION_REFERENCE: OperationReference = VIDEO_OPERATIONS.reference;

/** The default output when no `format` is written: H.264 + AAC in MP4, CRF 23, faststart. */
export function defaultOutput(): VideoGraph['output'] {
  return { container: 'mp4', codec: 'h264', crf: null, bitrateKbps: null, preset: 'medium', audioCodec: 'aac', faststart: true };
}

/** Builds the graph of a plan for an input; entries may refuse (`ERR_VALIDATION`) what the input makes impossible. */
export function buildGraph(plan: VideoPlan, input: VideoInput, maxDimension: number): VideoGraph {
  const rotated = input.rotation === 90 || input.rotation === 270;
  const g: VideoGraph = {
    input,
    start: 0,
    duration: null,
    video: [],
    audio: [],
    stripAudio: !input.hasAudio,
    width: rotated ? input.height : input.width,
    height: rotated ? input.width : input.height,
    fps: input.fps,
    speed: 1,
    output: defaultOutput(),
    poster: null,
    hls: null,
    animate: null,
    storyboard: null,
    overlays: [],
    maxDimension,
  };
  for (const step of plan.steps) step.operation.apply(g, step.args as Static<TSchema>, undefined);
  // Encoders want even sides (4:2:0): a source with odd sides is padded by one pixel at most.
  if (g.width % 2 !== 0 || g.height % 2 !== 0) {
    g.width += g.width % 2;
    g.height += g.height % 2;
    g.video.push(`scale=${g.width}:${g.height}:flags=lanczos`);
  }
  return g;
}
