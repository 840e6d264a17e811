/** Output choices: format and quality. They configure the encoder at the end of the pipeline. */
import { Type } from 'typebox';
import { defineOperation } from './types.js';

/** Formats an output may be written in; `auto` picks AVIF/WebP from Accept, else JPEG/PNG by alpha. */
export const OUTPUT_FORMATS = ['jpeg', 'png', 'webp', 'avif', 'gif', 'tiff', 'auto'] as const;

/** Choose the output format (default: the input's format; SVG input becomes PNG). */
export const format = defineOperation({
  name: 'format',
  description: 'Output format: jpeg, png, webp, avif, gif, tiff or auto (negotiated from Accept).',
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
  apply(_pipeline, args, ctx) {
    ctx.output.format = args.type;
    if (args.quality !== undefined) ctx.output.quality = args.quality;
  },
});

/** Encoder quality for lossy formats (JPEG, WebP, AVIF, TIFF-JPEG); ignored by PNG and GIF. */
export const quality = defineOperation({
  name: 'quality',
  description: 'Quality 1–100 for lossy formats (defaults: jpeg/webp/tiff 80, avif 50).',
  schema: Type.Object({ value: Type.Integer({ minimum: 1, maximum: 100 }) }, { additionalProperties: false }),
  primary: 'value',
  order: 91,
  anyPosition: true,
  apply(_pipeline, args, ctx) {
    ctx.output.quality = args.value;
  },
});
