/**
 * Geometry: mirror, rotate, trim, crop, resize.
 *
 * Order (whatever order the caller writes): flip → flop → rotate → trim → extract → resize. Crop
 * coordinates therefore refer to the auto-oriented, mirrored and rotated image, and resize applies to
 * the crop. Output size is always capped at the run's `maxDimension` per side (ipx
 * `maxOutputDimension`), so no request can allocate more than ~8192² pixels of output.
 */
import { Type } from 'typebox';
import type { Sharp } from 'sharp';
import { Color } from '../../parameters.js';
import { invalidFor, orientFirst, parseColor } from './common.js';
import { defineOperation, type OperationContext } from './types.js';

const NoParams = Type.Object({}, { additionalProperties: false });

/** Mirror top-bottom. */
export const flip = defineOperation({
  name: 'flip',
  device: true,
  description: 'Mirror vertically (top ↔ bottom).',
  geometry: true,
  schema: NoParams,
  order: 10,
  apply(pipeline) {
    pipeline.flip();
    orientFirst(pipeline);
  },
});

/** Mirror left-right. */
export const flop = defineOperation({
  name: 'flop',
  device: true,
  description: 'Mirror horizontally (left ↔ right).',
  geometry: true,
  schema: NoParams,
  order: 11,
  apply(pipeline) {
    pipeline.flop();
    orientFirst(pipeline);
  },
});

/** Rotate clockwise by any angle; the exposed corners take the `background` colour. */
export const rotate = defineOperation({
  name: 'rotate',
  device: true,
  description: 'Rotate clockwise by an angle in degrees (after EXIF auto-orientation).',
  geometry: true,
  // A free angle needs the whole frame (and a larger canvas); right angles are a relabelling.
  wholeFrame: (args) => args.angle % 90 !== 0,
  schema: Type.Object(
    {
      angle: Type.Number({ minimum: -360, maximum: 360, description: 'degrees, clockwise' }),
      background: Type.Optional(Color),
    },
    { additionalProperties: false },
  ),
  primary: 'angle',
  order: 12,
  apply(pipeline, args, ctx) {
    const angle = args.angle % 360;
    if (angle === 0) return;
    if (Number.isInteger(angle) && angle % 90 === 0) {
      pipeline.rotate(angle);
      if (Math.abs(angle) % 180 === 90) [ctx.width, ctx.height] = [ctx.height, ctx.width];
    } else {
      pipeline.rotate(angle, { background: parseColor(args.background ?? ctx.background) });
      const rad = (angle * Math.PI) / 180;
      const cos = Math.abs(Math.cos(rad));
      const sin = Math.abs(Math.sin(rad));
      // The bounding box of the rotated image (plus rounding slack); an upper bound for later checks.
      [ctx.width, ctx.height] = [
        Math.ceil(ctx.width * cos + ctx.height * sin) + 1,
        Math.ceil(ctx.width * sin + ctx.height * cos) + 1,
      ];
      ctx.exact = false;
    }
    orientFirst(pipeline);
  },
});

/** Remove a uniform border. */
export const trim = defineOperation({
  name: 'trim',
  device: true,
  description: 'Trim a border of (nearly) the top-left pixel colour.',
  geometry: true,
  wholeFrame: () => true,
  schema: Type.Object(
    { threshold: Type.Optional(Type.Number({ minimum: 0, maximum: 255, default: 10 })) },
    { additionalProperties: false },
  ),
  primary: 'threshold',
  order: 20,
  apply(pipeline, args, ctx) {
    pipeline.trim({ threshold: args.threshold ?? 10 });
    // The result depends on the pixels: sizes after this are upper bounds only.
    ctx.exact = false;
  },
});

/** Cut out a rectangle. */
export const extract = defineOperation({
  name: 'extract',
  device: true,
  aliases: ['crop'],
  description: 'Crop to a rectangle given in pixels of the oriented image.',
  geometry: true,
  schema: Type.Object(
    {
      left: Type.Integer({ minimum: 0, maximum: 100_000 }),
      top: Type.Integer({ minimum: 0, maximum: 100_000 }),
      width: Type.Integer({ minimum: 1, maximum: 100_000 }),
      height: Type.Integer({ minimum: 1, maximum: 100_000 }),
    },
    { additionalProperties: false },
  ),
  order: 30,
  apply(pipeline, args, ctx) {
    // Checked against header dimensions, so a bad rectangle is a 400 before any pixel is decoded.
    if (args.left + args.width > ctx.width || args.top + args.height > ctx.height) {
      throw invalidFor('extract', 'outside_image');
    }
    pipeline.extract({ left: args.left, top: args.top, width: args.width, height: args.height });
    ctx.width = args.width;
    ctx.height = args.height;
  },
});

const Fit = Type.Enum(['cover', 'contain', 'fill', 'inside', 'outside']);
const Position = Type.Enum([
  'north', 'northeast', 'east', 'southeast', 'south', 'southwest', 'west', 'northwest', 'center', 'centre',
  'entropy', 'attention',
]);

type FitMode = 'cover' | 'contain' | 'fill' | 'inside' | 'outside';

interface ResizeRequest {
  width?: number | undefined;
  height?: number | undefined;
  fit: FitMode;
  enlarge: boolean;
}

/**
 * The resize to perform and its predicted output size, with the output capped at `max` per side.
 * Exported for tests; the prediction is an upper bound (sharp may round one pixel down).
 */
export function planResize(
  src: { width: number; height: number },
  req: ResizeRequest,
  max: number,
): { width?: number; height?: number; fit: FitMode; out: { width: number; height: number } } {
  const { width, height, fit, enlarge } = req;
  const boxed = width !== undefined && height !== undefined;
  if (boxed && (fit === 'cover' || fit === 'contain' || fit === 'fill')) {
    // The output is the box (or smaller without enlargement): scale the box down to the cap.
    const f = Math.min(1, max / width, max / height);
    const w = Math.max(1, Math.floor(width * f));
    const h = Math.max(1, Math.floor(height * f));
    return { width: w, height: h, fit, out: { width: w, height: h } };
  }
  let scale: number;
  if (boxed) scale = fit === 'outside' ? Math.max(width / src.width, height / src.height) : Math.min(width / src.width, height / src.height);
  else if (width !== undefined) scale = width / src.width;
  else scale = (height ?? src.height) / src.height;
  if (!enlarge) scale = Math.min(scale, 1);
  const out = { width: Math.max(1, Math.round(src.width * scale)), height: Math.max(1, Math.round(src.height * scale)) };
  if (out.width <= max && out.height <= max) {
    return { ...(width !== undefined ? { width } : {}), ...(height !== undefined ? { height } : {}), fit, out };
  }
  // Aspect-preserving result over the cap: ask for the exact capped size (at most a rounding pixel of
  // distortion), so the output is predictable and never above the cap.
  const capped = Math.min(scale, max / src.width, max / src.height);
  const w = Math.max(1, Math.min(max, Math.round(src.width * capped)));
  const h = Math.max(1, Math.min(max, Math.round(src.height * capped)));
  return { width: w, height: h, fit: 'fill', out: { width: w, height: h } };
}

/** Applies a (capped) resize; also used by the pipeline for the implicit output cap. */
export function applyResize(pipeline: Sharp, ctx: OperationContext, req: ResizeRequest & { position?: string; background?: string }): void {
  const boxed = req.width !== undefined && req.height !== undefined;
  if (!ctx.exact && !(boxed && req.fit !== 'outside')) {
    // After trim the real aspect ratio is unknown, so a one-sided or `outside` resize could exceed the
    // cap: express it as an `inside` box bounded by the cap (same result whenever within the limit).
    if (req.fit === 'outside') throw invalidFor('resize', 'outside_after_trim');
    req = { ...req, width: req.width ?? ctx.maxDimension, height: req.height ?? ctx.maxDimension, fit: 'inside' };
  }
  const plan = planResize(ctx, req, ctx.maxDimension);
  pipeline.resize({
    ...(plan.width !== undefined ? { width: plan.width } : {}),
    ...(plan.height !== undefined ? { height: plan.height } : {}),
    fit: plan.fit,
    position: req.position ?? 'centre',
    background: parseColor(req.background ?? ctx.background),
    withoutEnlargement: !req.enlarge,
  });
  ctx.width = plan.out.width;
  ctx.height = plan.out.height;
}

/** Scale to a width and/or height. */
export const resize = defineOperation({
  name: 'resize',
  device: true,
  description: 'Resize to width and/or height; never enlarges unless enlarge=true; capped at the output limit.',
  geometry: true,
  sizesOutput: true,
  schema: Type.Object(
    {
      width: Type.Optional(Type.Integer({ minimum: 1, maximum: 16_383 })),
      height: Type.Optional(Type.Integer({ minimum: 1, maximum: 16_383 })),
      fit: Type.Optional(Fit),
      position: Type.Optional(Position),
      enlarge: Type.Optional(Type.Boolean()),
      background: Type.Optional(Color),
    },
    { additionalProperties: false },
  ),
  primary: 'width',
  order: 50,
  check(args) {
    if (args.width === undefined && args.height === undefined) return 'width_or_height_required';
    if ((args.position === 'entropy' || args.position === 'attention') && (args.fit ?? 'cover') !== 'cover') {
      return 'strategy_requires_cover';
    }
    return undefined;
  },
  apply(pipeline, args, ctx) {
    applyResize(pipeline, ctx, {
      width: args.width,
      height: args.height,
      fit: args.fit ?? 'cover',
      enlarge: args.enlarge === true,
      ...(args.position !== undefined ? { position: args.position } : {}),
      ...(args.background !== undefined ? { background: args.background } : {}),
    });
  },
});
