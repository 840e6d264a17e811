/** Output choices: format and quality. They configure the encoder at the end of the pipeline. */
import { Type } from 'typebox';
import { defineOperation } from './types.js';

/** Formats an output may be written in; `auto` picks AVIF/WebP from Accept, else JPEG/PNG by alpha. */
export const OUTPUT_FORMATS = ['jpeg', 'png', 'webp', 'avif', 'gif', 'tiff', 'auto'] as const;

/** Choose the output format (default: the input's format; SVG input becomes PNG). */
export const format = defineOperation({
  name: 'format',
  device: true,
  description: 'Output format: jpeg, png, webp, avif, gif, tiff or auto (negotiated from Accept).',
  outputFormat: (args) => args.type,
  schema: Type.Object(
    {
      type: Type.Enum([...OUTPUT_FORMATS]),
      quality: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    },
    { additionalProperties: false },
  ),
  primary: 'type',
  // The file extensions people type (Cloudinary f_jpg, imgproxy .jpg) mean the same formats.
  valueAliases: { type: { jpg: 'jpeg', tif: 'tiff' } },
  order: 90,
  anyPosition: true,
  // A setting: the encoder's own cost is counted by the pipeline (ENCODE_COST) for whatever format runs.
  cost: () => 0,
  apply(_pipeline, args, ctx) {
    ctx.output.format = args.type;
    if (args.quality !== undefined) ctx.output.quality = args.quality;
  },
});

/** Encoder quality for lossy formats (JPEG, WebP, AVIF, TIFF-JPEG); ignored by PNG and GIF. */
export const quality = defineOperation({
  name: 'quality',
  device: true,
  description: 'Quality 1–100 for lossy formats (defaults: jpeg/webp/tiff 80, avif 50).',
  schema: Type.Object({ value: Type.Integer({ minimum: 1, maximum: 100 }) }, { additionalProperties: false }),
  primary: 'value',
  order: 91,
  cost: () => 0,
  anyPosition: true,
  apply(_pipeline, args, ctx) {
    ctx.output.quality = args.value;
  },
});

/**
 * Relative encoding work per output pixel, for the cost estimate, from encoder speed measured with
 * sharp's default effort on a 4 MP photo-like image (2-core machine): JPEG 0.1 s, PNG 0.2 s, WebP
 * 0.45 s, AVIF 8 s.
 */
export const ENCODE_COST: Readonly<Record<Exclude<(typeof OUTPUT_FORMATS)[number], 'auto'>, number>> = Object.freeze({
  jpeg: 1,
  png: 2,
  webp: 4,
  avif: 60,
  gif: 3,
  tiff: 1,
});
