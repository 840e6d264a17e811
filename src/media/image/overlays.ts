/**
 * How the overlay entries (operations/overlay.ts: watermark, text) are drawn with sharp. The entries
 * only validate and ask `ctx.draw`; the pipeline hands them this drawing, so the registry itself
 * imports no engine and the browser SDK (packages/browser) can run its grammar and schemas.
 */
import sharp from 'sharp';
import { AppError, isAppError } from '../../errors.js';
import { inspect } from './inspect.js';
import { renderText } from './text.js';
import type { MediaLimits } from '../limits.js';
import type { Overlay, OverlayDrawing } from './operations/types.js';

/** Re-labels an input error of the watermark asset so the response names the operation. */
function asWatermarkError(err: unknown): unknown {
  if (!isAppError(err) || err.code === 'ERR_NOT_FOUND') return err;
  return new AppError(err.code, err.publicMessage, {
    cause: err,
    details: { ...err.details, operation: 'watermark' },
  });
}

/**
 * The sharp drawing of overlays for one run.
 * @param loadAsset loads another asset of the same org (watermarks); see `ProcessOptions.loadAsset`.
 */
export function sharpOverlayDrawing(limits: Readonly<MediaLimits>, loadAsset: (assetId: string) => Promise<Buffer>): OverlayDrawing {
  return {
    async watermark(args): Promise<Overlay> {
      let bytes: Buffer;
      let info: Awaited<ReturnType<typeof inspect>>;
      try {
        bytes = await loadAsset(args.assetId);
        info = await inspect(bytes, { ...limits, allowSvg: false });
      } catch (err) {
        throw asWatermarkError(err);
      }
      const opacity = args.opacity ?? 0.5;
      const scale = args.scale ?? 0.25;
      return async (base) => {
        const { data, info: out } = await sharp(info.bytes, {
          limitInputPixels: limits.maxInputPixels,
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
      };
    },
    text(args): Overlay {
      return async (base) => {
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
      };
    },
  };
}
