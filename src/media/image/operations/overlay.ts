/**
 * Overlays: watermark (another asset) and text. Both are composited last, on the processed image,
 * so tint/normalize never alter them, and both are sized relative to that image. The drawing itself
 * (sharp, the font) is the pipeline's (`ctx.draw`, image/overlays.ts): these entries hold no engine,
 * so the registry stays importable where sharp is not (the browser SDK, packages/browser).
 */
import { Type } from 'typebox';
import { Color } from '../../parameters.js';
import { Gravity } from './common.js';
import { defineOperation } from './types.js';

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
    // Loaded and inspected now (by the pipeline's drawing), before the base image is decoded: a
    // missing or hostile watermark fails the request early and cheaply.
    ctx.overlays.push(await ctx.draw.watermark(args));
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
    ctx.overlays.push(ctx.draw.text(args));
  },
});
