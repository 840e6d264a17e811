/**
 * Colour and tone: background, flatten, gamma, grayscale, modulate, normalize, tint.
 * Orders follow libvips' fixed sequence in sharp (flatten → gamma → greyscale before resize;
 * modulate after blur; normalise and tint last).
 */
import { Type } from 'typebox';
import { Color } from '../../parameters.js';
import { parseColor } from './common.js';
import { defineOperation } from './types.js';

/** Sets the colour other operations use for new pixels (contain bars, rotated corners, flatten). */
export const background = defineOperation({
  name: 'background',
  device: true,
  description: 'Background colour for contain/rotate/flatten (default #ffffff).',
  // Sets the colour resize (contain), rotate and flatten use: replayed with the geometry.
  geometry: true,
  schema: Type.Object({ color: Color }, { additionalProperties: false }),
  primary: 'color',
  order: 0,
  cost: () => 0,
  // A setting read by the operations that fill (contain, rotate, flatten): where it is written does not matter.
  anyPosition: true,
  apply(_pipeline, args, ctx) {
    ctx.background = args.color;
  },
});

/** Composite onto a solid colour, removing transparency. */
export const flatten = defineOperation({
  name: 'flatten',
  device: true,
  description: 'Remove transparency by compositing onto a colour (default: the background colour).',
  removesAlpha: true,
  schema: Type.Object({ background: Type.Optional(Color) }, { additionalProperties: false }),
  primary: 'background',
  order: 40,
  apply(pipeline, args, ctx) {
    pipeline.flatten({ background: parseColor(args.background ?? ctx.background) });
  },
});

/**
 * Gamma: `value` darkens before resizing, `out` brightens after (sharp semantics). Equal values give
 * gamma-correct resampling; `out: 1` leaves the image darker.
 */
export const gamma = defineOperation({
  name: 'gamma',
  device: true,
  description: 'Gamma correction: encode with value (1–3, default 2.2), decode with out (default = value).',
  schema: Type.Object(
    {
      value: Type.Optional(Type.Number({ minimum: 1, maximum: 3, default: 2.2 })),
      out: Type.Optional(Type.Number({ minimum: 1, maximum: 3 })),
    },
    { additionalProperties: false },
  ),
  primary: 'value',
  order: 41,
  apply(pipeline, args) {
    const value = args.value ?? 2.2;
    pipeline.gamma(value, args.out ?? value);
  },
});

/** Convert to shades of grey. */
export const grayscale = defineOperation({
  name: 'grayscale',
  device: true,
  aliases: ['greyscale'],
  description: 'Convert to grayscale.',
  schema: Type.Object({}, { additionalProperties: false }),
  order: 42,
  apply(pipeline) {
    pipeline.grayscale();
  },
});

/** Brightness, saturation, hue and lightness. */
export const modulate = defineOperation({
  name: 'modulate',
  device: true,
  description: 'Adjust brightness and saturation (multipliers 0–10), hue (degrees) and lightness (−100–100).',
  schema: Type.Object(
    {
      brightness: Type.Optional(Type.Number({ minimum: 0, maximum: 10 })),
      saturation: Type.Optional(Type.Number({ minimum: 0, maximum: 10 })),
      hue: Type.Optional(Type.Integer({ minimum: -360, maximum: 360 })),
      lightness: Type.Optional(Type.Number({ minimum: -100, maximum: 100 })),
    },
    { additionalProperties: false },
  ),
  order: 61,
  check(args) {
    return Object.keys(args).length === 0 ? 'parameter_required' : undefined;
  },
  apply(pipeline, args) {
    pipeline.modulate({
      ...(args.brightness !== undefined ? { brightness: args.brightness } : {}),
      ...(args.saturation !== undefined ? { saturation: args.saturation } : {}),
      ...(args.hue !== undefined ? { hue: args.hue } : {}),
      ...(args.lightness !== undefined ? { lightness: args.lightness } : {}),
    });
  },
});

/** Stretch contrast to the full range. */
export const normalize = defineOperation({
  name: 'normalize',
  device: true,
  aliases: ['normalise'],
  description: 'Stretch luminance to the full range (lower/upper percentiles, default 1 and 99).',
  schema: Type.Object(
    {
      lower: Type.Optional(Type.Number({ minimum: 0, maximum: 99 })),
      upper: Type.Optional(Type.Number({ minimum: 1, maximum: 100 })),
    },
    { additionalProperties: false },
  ),
  order: 70,
  check(args) {
    return (args.lower ?? 1) >= (args.upper ?? 99) ? 'lower_must_be_below_upper' : undefined;
  },
  apply(pipeline, args) {
    pipeline.normalize({ lower: args.lower ?? 1, upper: args.upper ?? 99 });
  },
});

/** Tint towards a colour, keeping luminance. */
export const tint = defineOperation({
  name: 'tint',
  device: true,
  description: 'Tint with a colour, keeping luminance (alpha of the colour is ignored).',
  schema: Type.Object({ color: Color }, { additionalProperties: false }),
  primary: 'color',
  order: 71,
  apply(pipeline, args) {
    const { r, g, b } = parseColor(args.color);
    pipeline.tint({ r, g, b });
  },
});
