/**
 * Text rendering for overlays: user text is drawn as text, never interpreted.
 *
 * sharp renders text with Pango, whose input is *markup*: `<span foreground=...>`, `<b>` and entities
 * would be honoured if passed through (and a crafted span can request huge fonts or other fonts). We
 * escape every markup-significant character and wrap the result in one span whose attributes we write
 * from validated values. The font is the bundled DejaVu Sans (npm `dejavu-fonts-ttf`), so output does
 * not depend on the host's fonts.
 */
import sharp from 'sharp';
import { parseColor } from './operations/common.js';
import { fontFile } from '../fonts.js';

export { fontFile };

/** The font family inside {@link fontFile}, as Pango names it. */
export const FONT_FAMILY = 'DejaVu Sans';

/** Escapes text for Pango markup so that it renders literally (`<b>` shows as `<b>`). */
export function escapeMarkup(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** What to draw and the box it must fit in. */
export interface TextRequest {
  text: string;
  /** Font size in pixels (shrunk if the text would not fit the box). */
  size: number;
  /** Validated `#rgb`/`#rrggbb`/`#rrggbbaa`. */
  color: string;
  /** Optional validated background colour behind the glyphs. */
  background?: string;
  maxWidth: number;
  maxHeight: number;
  /** Clockwise rotation in degrees (transparent corners). */
  angle?: number;
}

/** A rendered RGBA bitmap, ready for sharp's `composite({ input, raw })`. */
export interface RenderedText {
  data: Buffer;
  width: number;
  height: number;
}

function spanAttributes(attr: 'foreground' | 'background', hex: string): string {
  const { r, g, b, alpha } = parseColor(hex);
  const rgb = `#${[r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
  const alphaAttr = attr === 'foreground' ? 'alpha' : 'bgalpha';
  // Pango alpha is 1..65535 (0 is "unset"); fully transparent text is drawn at the minimum.
  const a = alpha >= 1 ? '' : ` ${alphaAttr}="${Math.max(1, Math.round(alpha * 65535))}"`;
  return ` ${attr}="${rgb}"${a}`;
}

/**
 * Pessimistic height of `text` wrapped at `width` px with a font of `size` px: every glyph counted as
 * 1 em wide (DejaVu averages ~0.6 em), lines 1.25 em tall. Used to bound memory before rendering.
 */
function estimateHeight(text: string, size: number, width: number): number {
  const perLine = Math.max(1, Math.floor(width / size));
  let lines = 0;
  for (const line of text.split('\n')) lines += Math.max(1, Math.ceil([...line].length / perLine));
  return lines * size * 1.25;
}

/**
 * Renders text into an RGBA bitmap no larger than the box. Memory is bounded by the box: the font size
 * is reduced until a pessimistic estimate fits, then the bitmap is scaled down if it still does not.
 */
export async function renderText(req: TextRequest): Promise<RenderedText> {
  const maxWidth = Math.max(1, Math.floor(req.maxWidth));
  const maxHeight = Math.max(1, Math.floor(req.maxHeight));
  let size = Math.max(1, Math.min(req.size, maxHeight));
  for (let i = 0; i < 8 && size > 4; i++) {
    const estimate = estimateHeight(req.text, size, maxWidth);
    if (estimate <= maxHeight) break;
    size = Math.max(4, Math.floor(size * Math.sqrt(maxHeight / estimate)));
  }
  const markup =
    `<span${spanAttributes('foreground', req.color)}` +
    `${req.background ? spanAttributes('background', req.background) : ''}>${escapeMarkup(req.text)}</span>`;
  let image = sharp({
    text: {
      text: markup,
      font: `${FONT_FAMILY} ${size}`,
      fontfile: fontFile(),
      width: maxWidth,
      dpi: 72,
      rgba: true,
      wrap: 'word-char',
    },
  });
  if (req.angle) image = image.rotate(req.angle, { background: { r: 0, g: 0, b: 0, alpha: 0 } });
  const { data, info } = await image
    .resize({ width: maxWidth, height: maxHeight, fit: 'inside', withoutEnlargement: true })
    .ensureAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}
