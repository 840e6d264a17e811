/** Convolution filters: blur and sharpen. Sigma ranges are clamped to keep kernels (and time) small. */
import { Type } from 'typebox';
import { defineOperation } from './types.js';

/** Gaussian blur. */
export const blur = defineOperation({
  name: 'blur',
  device: true,
  description: 'Gaussian blur with sigma 0.3–100.',
  wholeFrame: () => true,
  schema: Type.Object({ sigma: Type.Number({ minimum: 0.3, maximum: 100 }) }, { additionalProperties: false }),
  primary: 'sigma',
  order: 60,
  // A separable Gaussian costs in proportion to its kernel width (about 6 sigma).
  cost: (args) => 1 + args.sigma / 2,
  apply(pipeline, args) {
    pipeline.blur(args.sigma);
  },
});

/** Unsharp-mask sharpening of the L channel. */
export const sharpen = defineOperation({
  name: 'sharpen',
  device: true,
  description: 'Sharpen with sigma 0.3–10 (default 1).',
  schema: Type.Object(
    { sigma: Type.Optional(Type.Number({ minimum: 0.3, maximum: 10, default: 1 })) },
    { additionalProperties: false },
  ),
  primary: 'sigma',
  order: 62,
  cost: (args) => 1 + (args.sigma ?? 1) / 2,
  apply(pipeline, args) {
    pipeline.sharpen({ sigma: args.sigma ?? 1 });
  },
});
