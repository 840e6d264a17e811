/**
 * The device engine: the server's image pipeline (src/media/image/pipeline.ts, sharp) re-stated on
 * wasm-vips, libvips compiled to WebAssembly, i.e. the same library sharp drives. The grammar, the
 * schemas, the order, the checks, the resize plan, the output choices and the cost limit are the
 * server's own modules, imported (not copied); only each operation's libvips calls are written here,
 * mirroring what sharp asks libvips for (its pipeline.cc and operations.cc), so the output has the
 * same size and format and pixels within the parity tolerance (docs/device.md).
 *
 * An operation whose registry entry does not say `device: true` is refused before anything is read
 * (`ERR_VALIDATION`, `reason: not_on_device`); `GET /v1/operations` publishes the same flag.
 */
import type VipsModule from 'wasm-vips';
import { AppError } from '../../../src/errors.js';
import type { MediaLimits } from '../../../src/media/limits.js';
import { sniff } from '../../../src/media/sniff.js';
import { buildPlan, parseOperations, type Plan } from '../../../src/media/image/operations/registry.js';
import { planResize } from '../../../src/media/image/operations/geometry.js';
import { invalidFor, parseColor } from '../../../src/media/image/operations/common.js';
import type { OutputFormat } from '../../../src/media/image/operations/types.js';
import { assertAffordable, DEFAULT_QUALITY, estimateCost, negotiateFormat, OUTPUT_MIME } from '../../../src/media/image/choices.js';

type Vips = Awaited<ReturnType<typeof VipsModule>>;
type Image = InstanceType<Vips['Image']>;
type Args = Record<string, unknown>;

/** Input formats the device decodes: the server's allowlist less AVIF (libheif is a separate 3.8 MB module) and SVG (never on the device). */
const DEVICE_INPUTS: ReadonlyMap<string, { format: OutputFormat; loader: string }> = new Map([
  ['image/jpeg', { format: 'jpeg', loader: 'jpegload' }],
  ['image/png', { format: 'png', loader: 'pngload' }],
  ['image/webp', { format: 'webp', loader: 'webpload' }],
  ['image/gif', { format: 'gif', loader: 'gifload' }],
  ['image/tiff', { format: 'tiff', loader: 'tiffload' }],
]);

/** Output formats the device encodes (the server's, less AVIF). */
const DEVICE_OUTPUTS: ReadonlySet<OutputFormat> = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff']);

/** What one device run produced (the same facts as the server's `OutputDescription`). */
export interface DeviceOutput {
  data: Uint8Array;
  info: { format: OutputFormat; mime: string; width: number; height: number; size: number; frames: number };
}

/** A progress report: the stage and, while encoding, libvips' own percentage. */
export interface DeviceProgress {
  stage: 'validated' | 'inspected' | 'processing' | 'encoding' | 'done';
  percent: number;
}

function notOnDevice(operation: string, details: Record<string, unknown> = {}): AppError {
  return new AppError('ERR_VALIDATION', `Operation "${operation}" does not run on the device; process this image on the server (GET /v1/operations lists "device": true for the operations that do).`, {
    details: { operation, reason: 'not_on_device', ...details },
  });
}

/**
 * Parses and plans `operations` with the server's registry and refuses what the device cannot do.
 * @throws AppError `ERR_VALIDATION` exactly as the server would, or with `reason: not_on_device`.
 */
export function devicePlan(operations: unknown): Plan {
  const plan = buildPlan(parseOperations(operations));
  for (const step of plan.steps) if (step.operation.device !== true) throw notOnDevice(step.operation.name);
  if (plan.format === 'avif') throw notOnDevice('format', { parameter: 'type', value: 'avif' });
  return plan;
}

/** Per-run state (the device's counterpart of the server's `OperationContext`). */
interface DeviceContext {
  readonly vips: Vips;
  readonly maxDimension: number;
  background: string;
  gammaOut: number | undefined;
  output: { format?: OutputFormat | 'auto'; quality?: number };
  premultiplied: boolean;
}

const rgb = (hex: string): number[] => {
  const { r, g, b } = parseColor(hex);
  return [r, g, b];
};

/** A colour for an image's bands (sharp's `ApplyAlpha`): grey for one band, alpha scaled to 255 when the image has one. */
function backgroundFor(image: Image, hex: string): number[] {
  const { r, g, b, alpha } = parseColor(hex);
  const colour = image.bands <= 2 ? [0.2126 * r + 0.7152 * g + 0.0722 * b] : [r, g, b];
  return image.hasAlpha() ? [...colour, alpha * 255] : colour;
}

function withoutAlpha(image: Image, fn: (opaque: Image) => Image): Image {
  if (!image.hasAlpha()) return fn(image);
  const alpha = image.extractBand(image.bands - 1);
  return fn(image.extractBand(0, { n: image.bands - 1 })).bandjoin(alpha);
}

function interpretationOf(image: Image): string {
  const space = image.interpretation;
  return space === 'rgb' ? 'srgb' : space;
}

// sharp's CalculateCrop / CalculateEmbedPosition (integer arithmetic as in C++).
const GRAVITY: Readonly<Record<string, [number, number]>> = {
  north: [0.5, 0], northeast: [1, 0], east: [1, 0.5], southeast: [1, 1], south: [0.5, 1],
  southwest: [0, 1], west: [0, 0.5], northwest: [0, 0], center: [0.5, 0.5], centre: [0.5, 0.5],
};
function cropOffset(free: number, weight: number): number {
  return weight === 0.5 ? Math.trunc((free + 1) / 2) : weight === 1 ? free : 0;
}
function embedOffset(free: number, weight: number): number {
  return weight === 0.5 ? Math.trunc(free / 2) : weight === 1 ? free : 0;
}

function premultiplyOnce(image: Image, ctx: DeviceContext): Image {
  if (!image.hasAlpha() || ctx.premultiplied) return image;
  ctx.premultiplied = true;
  return image.premultiply();
}

/** sharp's resize for a plan from the shared `planResize` (fit, position, enlargement, background). */
function resize(image: Image, args: Args, ctx: DeviceContext): Image {
  const fit = (args.fit as string | undefined) ?? 'cover';
  const enlarge = args.enlarge === true;
  const plan = planResize({ width: image.width, height: image.height }, { width: args.width as number | undefined, height: args.height as number | undefined, fit: fit as never, enlarge }, ctx.maxDimension);
  const src = { width: image.width, height: image.height };
  const w = plan.width;
  const h = plan.height;
  let hscale: number;
  let vscale: number;
  if (w !== undefined && h !== undefined) {
    const sx = w / src.width;
    const sy = h / src.height;
    if (plan.fit === 'fill') [hscale, vscale] = [sx, sy];
    else if (plan.fit === 'cover' || plan.fit === 'outside') hscale = vscale = Math.max(sx, sy);
    else hscale = vscale = Math.min(sx, sy);
  } else if (w !== undefined) {
    hscale = vscale = w / src.width;
  } else {
    hscale = vscale = (h ?? src.height) / src.height;
  }
  if (!enlarge) {
    hscale = Math.min(hscale, 1);
    vscale = Math.min(vscale, 1);
  }
  let out = image;
  if (hscale !== 1 || vscale !== 1) {
    out = premultiplyOnce(out, ctx);
    out = out.resize(hscale, { vscale, kernel: 'lanczos3' });
  }
  const position = (args.position as string | undefined) ?? 'centre';
  if (w !== undefined && h !== undefined && plan.fit === 'cover' && (out.width > w || out.height > h)) {
    const cw = Math.min(w, out.width);
    const ch = Math.min(h, out.height);
    if (position === 'entropy' || position === 'attention') {
      out = out.smartcrop(cw, ch, { interesting: position, premultiplied: ctx.premultiplied });
    } else {
      const [gx, gy] = GRAVITY[position] ?? [0.5, 0.5];
      out = out.extractArea(cropOffset(out.width - cw, gx), cropOffset(out.height - ch, gy), cw, ch);
    }
  } else if (w !== undefined && h !== undefined && plan.fit === 'contain' && (out.width < w || out.height < h)) {
    const [gx, gy] = GRAVITY[position] ?? [0.5, 0.5];
    const colour = (args.background as string | undefined) ?? ctx.background;
    const fill = ctx.premultiplied ? backgroundFor(out, colour).map((v, i, a) => (image.hasAlpha() && i < a.length - 1 ? (v * (a[a.length - 1]! / 255)) : v)) : backgroundFor(out, colour);
    out = out.embed(embedOffset(w - out.width, gx), embedOffset(h - out.height, gy), w, h, { extend: 'background', background: fill });
  }
  return out;
}

/** sharp's Tint: a LAB lookup table weighted by luminance, applied to the greyscale image. */
function tint(image: Image, hex: string, vips: Vips): Image {
  const tintLab = vips.Image.black(1, 1).add(rgb(hex)).colourspace('lab', { source_space: 'srgb' }).getpoint(0, 0);
  let identityLab = vips.Image.identity({ bands: 3 }).colourspace('lab', { source_space: 'srgb' });
  const l = identityLab.extractBand(0).linear(1 / 100, 0);
  const centred = l.linear(1, -0.5);
  const weightL = centred.multiply(centred).linear(-4, 1);
  const weightAB = weightL.multiply(tintLab).extractBand(1, { n: 2 });
  identityLab = identityLab.extractBand(0).bandjoin(weightAB);
  const lut = identityLab.colourspace('srgb', { source_space: 'lab' });
  const before = interpretationOf(image);
  return withoutAlpha(image, (opaque) => opaque.colourspace('b-w').maplut(lut).colourspace(before));
}

/** sharp's Normalise: stretch L* between two percentiles. */
function normalise(image: Image, lower: number, upper: number): Image {
  const before = interpretationOf(image);
  return withoutAlpha(image, (opaque) => {
    const lab = opaque.colourspace('lab');
    const luminance = lab.extractBand(0);
    const min = Math.trunc(luminance.percent(lower));
    const max = Math.trunc(luminance.percent(upper));
    if (Math.abs(max - min) <= 1) return opaque;
    const f = 100 / (max - min);
    return luminance.linear(f, -(min * f)).bandjoin(lab.extractBand(1, { n: 2 })).colourspace(before);
  });
}

/** sharp's Trim: the bounding box of what differs from the top-left pixel, alpha searched too. */
function trim(image: Image, threshold: number): Image {
  if (image.width < 3 && image.height < 3) throw invalidFor('trim', 'image_too_small');
  const point = image.getpoint(0, 0);
  const colourBands = image.hasAlpha() ? image.bands - 1 : image.bands;
  const found = image.findTrim({ threshold, background: point.slice(0, colourBands), line_art: false });
  let { left, top, width, height } = found;
  if (image.hasAlpha()) {
    const alpha = image.extractBand(image.bands - 1).findTrim({ threshold, background: [point[point.length - 1]!], line_art: false });
    if (alpha.width > 0 && alpha.height > 0) {
      if (width > 0 && height > 0) {
        const right = Math.max(left + width, alpha.left + alpha.width);
        const bottom = Math.max(top + height, alpha.top + alpha.height);
        left = Math.min(left, alpha.left);
        top = Math.min(top, alpha.top);
        width = right - left;
        height = bottom - top;
      } else ({ left, top, width, height } = alpha);
    }
  }
  if (width === 0 || height === 0) return image;
  return image.extractArea(left, top, width, height);
}

/**
 * Each device operation, by registry name: the libvips calls sharp makes for the same entry. A
 * registry entry marked `device: true` without an implementation here is a programming error that
 * the worker reports at start (and the Chromium parity test runs every one of them).
 */
export const DEVICE_OPERATIONS: Readonly<Record<string, (image: Image, args: Args, ctx: DeviceContext) => Image>> = Object.freeze({
  background: (image, args, ctx) => {
    ctx.background = args.color as string;
    return image;
  },
  // Right angles, then flip, then flop, then a free angle: sharp's "rotate before" order, which the
  // server forces (operations/common.ts orientFirst) so crops refer to the oriented image.
  flip: (image) => image,
  flop: (image) => image,
  rotate: (image) => image,
  trim: (image, args) => trim(image, (args.threshold as number | undefined) ?? 10),
  extract: (image, args) => {
    const { left, top, width, height } = args as { left: number; top: number; width: number; height: number };
    if (left + width > image.width || top + height > image.height) throw invalidFor('extract', 'outside_image');
    return image.extractArea(left, top, width, height);
  },
  flatten: (image, args, ctx) => (image.hasAlpha() ? image.flatten({ background: rgb((args.background as string | undefined) ?? ctx.background) }) : image),
  gamma: (image, args, ctx) => {
    const value = (args.value as number | undefined) ?? 2.2;
    ctx.gammaOut = (args.out as number | undefined) ?? value;
    return withoutAlpha(image, (opaque) => opaque.gamma({ exponent: 1 / value }));
  },
  grayscale: (image) => image.colourspace('b-w'),
  resize,
  blur: (image, args, ctx) => premultiplyOnce(image, ctx).gaussblur(args.sigma as number, { precision: 'integer', min_ampl: 0.2 }),
  modulate: (image, args) => {
    const before = interpretationOf(image);
    const a = args as { brightness?: number; saturation?: number; hue?: number; lightness?: number };
    return withoutAlpha(image, (opaque) => opaque.colourspace('lch').linear([a.brightness ?? 1, a.saturation ?? 1, 1], [a.lightness ?? 0, 0, a.hue ?? 0]).colourspace(before));
  },
  sharpen: (image, args, ctx) => {
    const before = interpretationOf(image);
    return premultiplyOnce(image, ctx).sharpen({ sigma: (args.sigma as number | undefined) ?? 1, m1: 1, m2: 2, x1: 2, y2: 10, y3: 20 }).colourspace(before);
  },
  normalize: (image, args) => normalise(image, (args.lower as number | undefined) ?? 1, (args.upper as number | undefined) ?? 99),
  tint: (image, args, ctx) => tint(image, args.color as string, ctx.vips),
  format: (image, args, ctx) => {
    ctx.output.format = args.type as OutputFormat | 'auto';
    if (args.quality !== undefined) ctx.output.quality = args.quality as number;
    return image;
  },
  quality: (image, args, ctx) => {
    ctx.output.quality = args.value as number;
    return image;
  },
});

function orient(image: Image, plan: Plan, ctx: DeviceContext): Image {
  const args = (name: string): Args | undefined => plan.steps.find((s) => s.operation.name === name)?.args as Args | undefined;
  let out = image.autorot();
  const rotate = args('rotate');
  const angle = rotate ? (rotate.angle as number) % 360 : 0;
  const rightAngle = Number.isInteger(angle) && angle % 90 === 0;
  if (angle !== 0 && rightAngle) out = out.rot(`d${(angle + 360) % 360}` as 'd90');
  if (args('flip')) out = out.flip('vertical');
  if (args('flop')) out = out.flip('horizontal');
  if (angle !== 0 && !rightAngle) {
    out = out.rotate(angle, { background: backgroundFor(out, (rotate!.background as string | undefined) ?? ctx.background) });
  }
  return out;
}

function tooLarge(reason: 'pixels' | 'frames', limits: Readonly<MediaLimits>): AppError {
  return new AppError('ERR_IMAGE_TOO_LARGE', 'The image is too large to process.', {
    details: reason === 'pixels' ? { reason, maxPixels: limits.maxInputPixels } : { reason, maxFrames: limits.maxFrames },
  });
}

function unsupported(): AppError {
  return new AppError('ERR_UNSUPPORTED_MEDIA_TYPE', 'This file type is not accepted on the device.', {
    details: { accepted: [...DEVICE_INPUTS.keys()] },
  });
}

/**
 * Runs `operations` on untrusted `bytes` under `limits`, as the server's `processImage` does: the
 * operations are validated first, the bytes sniffed (the decoder is chosen by content, never by
 * name or type), the header checked against the limits before any pixel is decoded, the cost
 * refused over the limit, then the operations, then the encoder (metadata stripped, ICC kept).
 * @throws AppError with the server's codes (`ERR_VALIDATION`, `ERR_PAYLOAD_TOO_LARGE`,
 *   `ERR_UNSUPPORTED_MEDIA_TYPE`, `ERR_IMAGE_TOO_LARGE`, `ERR_TOO_EXPENSIVE`, `ERR_UNPROCESSABLE`).
 */
export async function processOnDevice(vips: Vips, bytes: Uint8Array, operations: unknown, limits: Readonly<MediaLimits>, progress: (p: DeviceProgress) => void): Promise<DeviceOutput> {
  const plan = devicePlan(operations);
  progress({ stage: 'validated', percent: 0 });
  if (bytes.length > limits.maxInputBytes) {
    throw new AppError('ERR_PAYLOAD_TOO_LARGE', 'The file is too large.', { details: { maxBytes: limits.maxInputBytes } });
  }
  const type = await sniff(bytes);
  const entry = type ? DEVICE_INPUTS.get(type.mime) : undefined;
  if (!entry) throw unsupported();
  let image: Image;
  try {
    // Lazy: this reads the header only; pixels are decoded when the encoder pulls them.
    image = vips.Image.newFromBuffer(bytes, '', { fail_on: 'error' });
  } catch {
    throw new AppError('ERR_UNPROCESSABLE', 'The image could not be read.');
  }
  // The sniffed type and the loader libvips picked must agree (a polyglot is refused).
  const loader = image.getString('vips-loader').replace(/_buffer$|_source$/, '');
  if (loader !== entry.loader) throw unsupported();
  const frames = image.getTypeof('n-pages') !== 0 ? Math.max(1, image.getInt('n-pages')) : 1;
  const width = image.width;
  const height = image.pageHeight || image.height;
  if (!(width > 0 && height > 0)) throw new AppError('ERR_UNPROCESSABLE', 'The image could not be read.');
  if (frames > limits.maxFrames) throw tooLarge('frames', limits);
  if (width * height * frames > limits.maxInputPixels) throw tooLarge('pixels', limits);
  const hasAlpha = image.hasAlpha();
  progress({ stage: 'inspected', percent: 0 });

  const flattened = plan.steps.some((s) => s.operation.removesAlpha === true);
  // `auto` on the device: the browser shows WebP (and the device cannot encode AVIF).
  const requested = plan.format;
  const format: OutputFormat = requested === 'auto' ? negotiateFormat('image/webp', { hasAlpha: hasAlpha && !flattened, animated: frames > 1 }) : requested ?? entry.format;
  if (!DEVICE_OUTPUTS.has(format)) throw notOnDevice('format', { parameter: 'type', value: format });
  // Animations are kept by the server for GIF/WebP outputs; the device processes stills only.
  if (frames > 1 && (format === 'gif' || format === 'webp')) {
    throw new AppError('ERR_UNSUPPORTED_MEDIA_TYPE', 'Animated images are processed on the server, not on the device.', { details: { reason: 'animation_not_on_device', accepted: [...DEVICE_INPUTS.keys()] } });
  }

  const ctx: DeviceContext = { vips, maxDimension: limits.maxOutputDimension, background: '#ffffff', gammaOut: undefined, output: {}, premultiplied: false };
  const source = { width, height };
  try {
    // Settings first (they may be written anywhere); then orientation; then the pipeline order.
    for (const step of plan.steps) if (step.operation.name === 'background') DEVICE_OPERATIONS.background!(image, step.args as Args, ctx);
    let out = orient(image, plan, ctx);
    // Device-independent colour first, as sharp does before any pixel operation.
    if (!['srgb', 'b-w', 'rgb'].includes(out.interpretation)) out = out.colourspace('srgb');
    const steps = plan.steps.filter((s) => !['background', 'flip', 'flop', 'rotate'].includes(s.operation.name));
    const total = Math.max(1, steps.length);
    // After the pixel operations that work premultiplied (resize, blur, sharpen): un-premultiply and
    // decode gamma, before normalise and tint (sharp's post-resize order).
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      out = unpremultiply(out, ctx);
      const exponent = ctx.gammaOut;
      if (exponent !== undefined) out = withoutAlpha(out, (opaque) => opaque.gamma({ exponent }));
    };
    for (const [index, step] of steps.entries()) {
      const apply = DEVICE_OPERATIONS[step.operation.name];
      if (!apply) throw notOnDevice(step.operation.name);
      if (step.operation.order >= 70) settle();
      out = apply(out, step.args as Args, ctx);
      progress({ stage: 'processing', percent: Math.round(((index + 1) / total) * 50) });
    }
    settle();
    if (!plan.steps.some((s) => s.operation.sizesOutput === true) && (out.width > ctx.maxDimension || out.height > ctx.maxDimension)) {
      out = resize(out, { width: ctx.maxDimension, height: ctx.maxDimension, fit: 'inside' }, ctx);
      out = unpremultiply(out, ctx);
    }
    if (format === 'jpeg' && out.hasAlpha()) out = out.flatten({ background: rgb(ctx.background) });
    // Every size is known and no pixel has been decoded (libvips is lazy, like sharp): refuse too much work now.
    assertAffordable(estimateCost({ source, output: { width: out.width, height: out.height }, frames: 1, plan, format }), limits);
    progress({ stage: 'encoding', percent: 50 });
    out.onProgress = (percent: number) => progress({ stage: 'encoding', percent: 50 + Math.round(percent / 2) });
    const data = encode(out, format, ctx.output.quality);
    progress({ stage: 'done', percent: 100 });
    return { data, info: { format, mime: OUTPUT_MIME[format], width: out.width, height: out.height, size: data.length, frames: 1 } };
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw new AppError('ERR_UNPROCESSABLE', 'The image could not be processed.');
  }
}

function unpremultiply(image: Image, ctx: DeviceContext): Image {
  if (!ctx.premultiplied) return image;
  ctx.premultiplied = false;
  return image.unpremultiply().cast('uchar');
}

/** The server's encoder settings (pipeline.ts `encode`): its default qualities, metadata stripped, the ICC profile kept. */
function encode(image: Image, format: OutputFormat, quality: number | undefined): Uint8Array {
  const Q = quality ?? DEFAULT_QUALITY[format];
  const keep = 'icc';
  switch (format) {
    case 'jpeg':
      return image.writeToBuffer('.jpg', { Q, keep });
    case 'webp':
      return image.writeToBuffer('.webp', { Q, keep });
    case 'png':
      return image.writeToBuffer('.png', { keep });
    case 'gif':
      return image.writeToBuffer('.gif', { keep });
    case 'tiff':
      return image.writeToBuffer('.tif', { Q, compression: 'jpeg', keep });
    default:
      throw notOnDevice('format', { parameter: 'type', value: format });
  }
}
