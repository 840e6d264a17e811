/**
 * Overlays: watermark (another asset) and text. Both are composited last, on the processed image,
 * so tint/normalize never alter them, and both are sized relative to that image.
 */
import sharp from 'sharp';
import { Type } from 'typebox';
import { AppError, isAppError } from '../../../errors.js';
import { inspect } from '../inspect.js';
import { renderText } from '../text.js';
import { Color } from '../../parameters.js';
import { Gravity } from './common.js';
import { defineOperation } from './types.js';

/** Re-labels an input error of the watermark asset so the response names the operation. */
function asWatermarkError(err: unknown): unknown {
  if (!isAppError(err) || err.code === 'ERR_NOT_FOUND') return err;
  return new AppError(err.code, err.publicMessage, {
    cause: err,
    details: { ...err.details, operation: 'watermark' },
  });
}

/** Another image of the same org, scaled relative to the base width, with opacity. */
export const watermark = defineOperation({
  name: 'watermark',
  description: 'Overlay another asset of the same org (scale of base width 0–1, opacity 0–1, gravity).',
  overlay: true,
  wholeFrame: () => true,
  schema: Type.Object(
    {
      assetId: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_-]+$' }),
      gravity: Type.Optional(Gravity),
      opacity: Type.Optional(Type.Number({ minimum: 0, maximum: 1, default: 0.5 })),
      scale: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.25 })),
    },
    { additionalProperties: false },
  ),
  primary: 'assetId',
  order: 80,
  repeatable: true,
  readsAssets: true,
  async apply(_pipeline, args, ctx) {
    // Loaded and inspected now, before the base image is decoded: a missing or hostile watermark
    // fails the request early and cheaply.
    let bytes: Buffer;
    let info: Awaited<ReturnType<typeof inspect>>;
    try {
      bytes = await ctx.loadAsset(args.assetId);
      info = await inspect(bytes, { ...ctx.limits, allowSvg: false });
    } catch (err) {
      throw asWatermarkError(err);
    }
    const opacity = args.opacity ?? 0.5;
    const scale = args.scale ?? 0.25;
    ctx.overlays.push(async (base) => {
      const { data, info: out } = await sharp(info.bytes, {
        limitInputPixels: ctx.limits.maxInputPixels,
        failOn: 'error',
        autoOrient: true,
        pages: 1,
      })
        .resize({
          width: Math.max(1, Math.round(base.width * scale)),
          height: base.height,
          fit: 'inside',
          withoutEnlargement: false,
        })
        .toColourspace('srgb')
        .ensureAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      if (opacity < 1) for (let i = 3; i < data.length; i += 4) data[i] = Math.round(data[i]! * opacity);
      return {
        input: data,
        raw: { width: out.width, height: out.height, channels: 4 },
        gravity: args.gravity ?? 'southeast',
      };
    });
  },
});

/** User text, rendered literally with the bundled font. */
export const text = defineOperation({
  name: 'text',
  description: 'Overlay text (≤ 200 characters, rendered literally with DejaVu Sans): size px, color, gravity.',
  overlay: true,
  wholeFrame: () => true,
  schema: Type.Object(
    {
      // C0 controls other than newline are refused: they have no glyphs and can confuse Pango.
      text: Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\u0000-\\u0009\\u000B-\\u001F\\u007F]*$' }),
      size: Type.Optional(Type.Integer({ minimum: 4, maximum: 512, default: 32 })),
      color: Type.Optional(Color),
      background: Type.Optional(Color),
      gravity: Type.Optional(Gravity),
    },
    { additionalProperties: false },
  ),
  primary: 'text',
  order: 81,
  repeatable: true,
  apply(_pipeline, args, ctx) {
    ctx.overlays.push(async (base) => {
      const rendered = await renderText({
        text: args.text,
        size: args.size ?? 32,
        color: args.color ?? '#ffffff',
        ...(args.background !== undefined ? { background: args.background } : {}),
        maxWidth: base.width,
        maxHeight: base.height,
      });
      return {
        input: rendered.data,
        raw: { width: rendered.width, height: rendered.height, channels: 4 },
        gravity: args.gravity ?? 'south',
      };
    });
  },
});
