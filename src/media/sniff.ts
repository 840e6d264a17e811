/**
 * Content sniffing: what a file *is*, from its bytes alone.
 *
 * Decoders are chosen from the result of this module, never from a file name, an extension or a
 * client-supplied Content-Type (DESIGN.md, "Input"): a PNG named `photo.jpg` is a PNG, and a text file
 * named `photo.jpg` is refused. Binary formats are recognised by `file-type` (magic numbers); SVG, which
 * is text, by a small prolog scanner below. Pure (no Node built-in): the browser SDK (packages/browser)
 * sniffs with this same module; the stream variant is sniff-stream.ts.
 */
import { fileTypeFromBuffer } from 'file-type';

/** A sniffed type: IANA media type and the canonical extension `file-type` uses (e.g. `jpg`). */
export interface SniffResult {
  mime: string;
  ext: string;
}

/**
 * How many leading bytes are enough to recognise every format we accept. 4100 is `file-type`'s
 * documented sample size; an SVG root must also appear within it (see {@link looksLikeSvg}).
 */
export const SNIFF_SAMPLE_BYTES = 4100;

const SVG: SniffResult = Object.freeze({ mime: 'image/svg+xml', ext: 'svg' });

/**
 * Identifies a buffer by its leading bytes.
 *
 * @returns the type, or `null` when it is not recognised (treat as "not media").
 * Security: the result drives decoder choice, so a caller must never fall back to a name or header
 * when this returns `null`.
 */
export async function sniff(buf: Buffer | Uint8Array): Promise<SniffResult | null> {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  if (bytes.length === 0) return null;
  const found = await fileTypeFromBuffer(bytes);
  // file-type reports any XML document as application/xml; SVG is the one XML we may accept.
  if (found && found.mime !== 'application/xml') return { mime: found.mime, ext: found.ext };
  return looksLikeSvg(bytes) ? { ...SVG } : null;
}

/**
 * True when the bytes are text whose root element is `<svg`, after an optional UTF-8 BOM, XML
 * declaration, processing instructions, comments and DOCTYPE. Detection only: a DOCTYPE is tolerated
 * here so that the sanitiser can refuse it explicitly; nothing is parsed for meaning.
 */
export function looksLikeSvg(bytes: Uint8Array): boolean {
  const head = bytes.subarray(0, SNIFF_SAMPLE_BYTES);
  // A NUL byte never occurs in a UTF-8 XML document; it marks binary data (or UTF-16, which we refuse).
  if (head.includes(0)) return false;
  let text = new TextDecoder('utf-8').decode(head);
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let i = 0;
  for (;;) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (text.startsWith('<?', i)) {
      const end = text.indexOf('?>', i + 2);
      if (end < 0) return false;
      i = end + 2;
    } else if (text.startsWith('<!--', i)) {
      const end = text.indexOf('-->', i + 4);
      if (end < 0) return false;
      i = end + 3;
    } else if (text.startsWith('<!DOCTYPE', i)) {
      const bracket = text.indexOf('[', i);
      const close = text.indexOf('>', i);
      if (close < 0) return false;
      if (bracket >= 0 && bracket < close) {
        const end = text.indexOf(']>', bracket);
        if (end < 0) return false;
        i = end + 2;
      } else {
        i = close + 1;
      }
    } else {
      return /^<svg[\s>/]/.test(text.slice(i, i + 5));
    }
  }
}
