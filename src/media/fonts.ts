/** The bundled font every media kind draws text with (DejaVu Sans, npm `dejavu-fonts-ttf`), so output does not depend on the host's fonts. */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

let cachedFont: string | undefined;

/** Absolute path of the bundled DejaVu Sans TrueType file. */
export function fontFile(): string {
  cachedFont ??= join(dirname(createRequire(import.meta.url).resolve('dejavu-fonts-ttf/package.json')), 'ttf', 'DejaVuSans.ttf');
  return cachedFont;
}
