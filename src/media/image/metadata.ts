/**
 * Metadata policy at ingest (issue 14, item 5): removes EXIF, GPS, XMP, IPTC, comments and other
 * metadata blocks from an uploaded image by editing its container, never by decoding and
 * re-encoding its pixels (the compressed image data is copied byte for byte, so quality, size and
 * colour stay exactly what the user uploaded).
 *
 * Policies:
 * - `strip_all`: only what displaying the image needs stays: the orientation (as a one-entry EXIF
 *   block where the format uses EXIF for it), the colour profile and the other rendering chunks
 *   (gamma, chromaticities, transparency, animation). Everything else goes: EXIF (camera, serial
 *   numbers, owner, times, GPS, the embedded thumbnail, which can show the picture before a crop),
 *   XMP, IPTC/Photoshop blocks, comments, text chunks, unknown chunks and bytes after the image's end
 *   (secondary images of MPF JPEGs, vendor trailers).
 * - `strip_location`: the EXIF GPS directory is removed (its entries and values are zeroed where
 *   they were), and so are the blocks that can repeat a place in free text (XMP, IPTC/Photoshop, PNG
 *   text chunks, trailing data); the rest of EXIF stays.
 * - `keep`: nothing is changed.
 *
 * Formats: JPEG (segments), PNG (chunks), WebP (RIFF chunks), GIF (extension blocks), TIFF (tags of
 * every directory edited in place, the image data untouched), AVIF/HEIC/HEIF (the Exif and XMP items
 * of the `meta` box overwritten in place, same length, so no offset in the file moves). Anything
 * else (SVG, video) is returned unchanged. A file whose metadata cannot be walked safely (a
 * malformed directory, BigTIFF, an item stored in a way this code does not follow) throws
 * {@link MetadataUnreadable}: the caller refuses the upload rather than store metadata the policy
 * says must go.
 *
 * Pure: bytes in, bytes out. When nothing had to be removed the input Buffer itself is returned.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { crc32 } from 'node:zlib';

/** What an app's uploaded images keep (the app setting `metadata_policy`). */
export type MetadataPolicy = 'keep' | 'strip_location' | 'strip_all';

/** The image types whose metadata this module edits. */
export const STRIPPABLE_TYPES: ReadonlySet<string> = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/tiff', 'image/avif', 'image/heic', 'image/heif']);

/** The result of {@link stripMetadata}: the bytes to store and the kinds of blocks removed. */
export interface Stripped {
  bytes: Buffer;
  /** Short names of what was removed (`exif`, `gps`, `xmp`, `iptc`, `comment`, `text`, `trailer`, …); empty when nothing. */
  removed: string[];
}

/** The metadata of a file could not be walked safely (see the module comment). */
export class MetadataUnreadable extends Error {
  constructor(readonly reason: string) {
    super(`metadata unreadable: ${reason}`);
  }
}

const fail = (reason: string): never => {
  throw new MetadataUnreadable(reason);
};

/** Applies `policy` to an image of type `mime`. */
export function stripMetadata(mime: string, bytes: Buffer, policy: MetadataPolicy): Stripped {
  if (policy === 'keep' || !STRIPPABLE_TYPES.has(mime)) return { bytes, removed: [] };
  switch (mime) {
    case 'image/jpeg':
      return stripJpeg(bytes, policy);
    case 'image/png':
      return stripPng(bytes, policy);
    case 'image/webp':
      return stripWebp(bytes, policy);
    case 'image/gif':
      return stripGif(bytes, policy);
    case 'image/tiff':
      return stripTiffFile(bytes, policy);
    default:
      return stripHeif(bytes, policy);
  }
}

// ---------------------------------------------------------------------------------------------
// TIFF structures (TIFF files, and the EXIF block every other format embeds, which is a TIFF).

const TYPE_BYTES: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4 };
const TAG = { exif: 0x8769, gps: 0x8825, interop: 0xa005, subIfds: 330, orientation: 274, xmp: 700, iptc: 33723, photoshop: 34377 } as const;
/** Tags that point at another directory. */
const POINTERS = new Set<number>([TAG.exif, TAG.gps, TAG.interop]);
/** Tags that can name a place in free text (removed with the location). */
const LOCATION_BLOCKS = new Set<number>([TAG.gps, TAG.xmp, TAG.iptc, TAG.photoshop]);
/**
 * What a TIFF file's directories keep under `strip_all`: the tags a reader needs to decode and
 * display the image (TIFF 6.0 baseline and extensions), the orientation and the colour profile.
 */
const TIFF_RENDERING_TAGS = new Set<number>([
  254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 274, 277, 278, 279, 280, 281, 282, 283, 284, 290, 291, 292, 293, 296, 297, 301, 317, 318, 319, 320, 321, 322, 323, 324, 325, 330, 332, 333,
  334, 336, 337, 338, 339, 340, 341, 347, 512, 513, 514, 515, 517, 518, 519, 520, 521, 529, 530, 531, 532, 34675,
]);

interface Entry {
  tag: number;
  type: number;
  count: number;
  /** Absolute offset of the entry (12 bytes). */
  at: number;
  /** Absolute offset and length of the value when it lives outside the entry; else null. */
  data: { at: number; len: number } | null;
}

/** A TIFF structure inside `b` starting at `base` (offsets in it are relative to `base`), `end` exclusive. */
class TiffView {
  readonly le: boolean;
  constructor(
    readonly b: Buffer,
    readonly base: number,
    readonly end: number,
  ) {
    if (end - base < 8) fail('tiff header');
    const order = b.toString('latin1', base, base + 2);
    if (order !== 'II' && order !== 'MM') fail('tiff byte order');
    this.le = order === 'II';
    const magic = this.u16(base + 2);
    if (magic === 43) fail('BigTIFF');
    if (magic !== 42) fail('tiff magic');
  }
  u16(at: number): number {
    if (at + 2 > this.end) fail('tiff bounds');
    return this.le ? this.b.readUInt16LE(at) : this.b.readUInt16BE(at);
  }
  u32(at: number): number {
    if (at + 4 > this.end) fail('tiff bounds');
    return this.le ? this.b.readUInt32LE(at) : this.b.readUInt32BE(at);
  }
  w16(at: number, v: number): void {
    if (this.le) this.b.writeUInt16LE(v, at);
    else this.b.writeUInt16BE(v, at);
  }
  w32(at: number, v: number): void {
    if (this.le) this.b.writeUInt32LE(v, at);
    else this.b.writeUInt32BE(v, at);
  }
  /** Absolute offset of a TIFF offset, checked to lie inside the structure. */
  abs(offset: number, len = 1): number {
    const at = this.base + offset;
    if (offset < 8 || at + len > this.end) fail('tiff offset');
    return at;
  }
  firstIfd(): number {
    return this.u32(this.base + 4);
  }
  /** The entries of the directory at TIFF offset `ifd`, and where its next-directory link is. */
  read(ifd: number): { entries: Entry[]; countAt: number; nextAt: number } {
    const countAt = this.abs(ifd, 2);
    const n = this.u16(countAt);
    if (n > 4096) fail('tiff directory size');
    const entries: Entry[] = [];
    for (let i = 0; i < n; i++) {
      const at = countAt + 2 + i * 12;
      const tag = this.u16(at);
      const type = this.u16(at + 2);
      const count = this.u32(at + 4);
      const len = (TYPE_BYTES[type] ?? 1) * count;
      entries.push({ tag, type, count, at, data: len > 4 ? { at: this.abs(this.u32(at + 8), len), len } : null });
    }
    const nextAt = countAt + 2 + n * 12;
    this.u32(nextAt);
    return { entries, countAt, nextAt };
  }
  /** The directories a pointer entry (or SubIFDs) names, as TIFF offsets. */
  targets(e: Entry): number[] {
    if (e.data) return Array.from({ length: e.count }, (_, i) => this.u32(e.data!.at + i * 4));
    return e.count >= 1 ? [this.u32(e.at + 8)] : [];
  }
  /** Zeroes a directory and everything its entries point at (values and sub-directories). */
  erase(ifd: number, seen: Set<number>): void {
    if (ifd === 0 || seen.has(ifd)) return;
    seen.add(ifd);
    const { entries, countAt, nextAt } = this.read(ifd);
    for (const e of entries) {
      if (POINTERS.has(e.tag)) for (const t of this.targets(e)) this.erase(t, seen);
      if (e.data) this.b.fill(0, e.data.at, e.data.at + e.data.len);
    }
    this.b.fill(0, countAt, nextAt + 4);
  }
  /**
   * Removes the entries `drop` selects from the directory at `ifd` (in place: the kept entries move
   * up, the freed tail is zeroed), zeroing their values and the directories they point at. Returns
   * the removed tags.
   */
  remove(ifd: number, drop: (tag: number) => boolean, seen: Set<number>): number[] {
    const { entries, countAt, nextAt } = this.read(ifd);
    const gone = entries.filter((e) => drop(e.tag));
    if (gone.length === 0) return [];
    const kept = entries.filter((e) => !drop(e.tag)).map((e) => Buffer.from(this.b.subarray(e.at, e.at + 12)));
    const next = this.u32(nextAt);
    for (const e of gone) {
      if (POINTERS.has(e.tag)) for (const t of this.targets(e)) this.erase(t, seen);
      if (e.data) this.b.fill(0, e.data.at, e.data.at + e.data.len);
    }
    this.b.fill(0, countAt, nextAt + 4);
    this.w16(countAt, kept.length);
    kept.forEach((k, i) => k.copy(this.b, countAt + 2 + i * 12));
    this.w32(countAt + 2 + kept.length * 12, next);
    return gone.map((e) => e.tag);
  }
  /** The chain of main directories (IFD0, IFD1, …), loop-safe. */
  chain(): number[] {
    const out: number[] = [];
    for (let ifd = this.firstIfd(); ifd !== 0; ) {
      if (out.includes(ifd) || out.length > 1024) fail('tiff directory loop');
      out.push(ifd);
      ifd = this.u32(this.read(ifd).nextAt);
    }
    return out;
  }
  /** The orientation of IFD0 (1 when absent or unreadable). */
  orientation(): number {
    try {
      const e = this.read(this.firstIfd()).entries.find((x) => x.tag === TAG.orientation && x.type === 3);
      const v = e ? this.u16(e.at + 8) : 1;
      return v >= 1 && v <= 8 ? v : 1;
    } catch {
      return 1;
    }
  }
}

/** Removes the GPS directory (and, for a TIFF file, the free-text blocks) from every main directory of `t`. */
function removeLocation(t: TiffView, blocks: ReadonlySet<number>): boolean {
  const seen = new Set<number>();
  let removed = false;
  for (const ifd of t.chain()) if (t.remove(ifd, (tag) => blocks.has(tag), seen).length) removed = true;
  return removed;
}

/** A minimal EXIF (TIFF) block holding only an orientation, or null for the default orientation. */
function orientationExif(orientation: number): Buffer | null {
  if (orientation === 1) return null;
  const b = Buffer.alloc(26);
  b.write('MM', 0, 'latin1');
  b.writeUInt16BE(42, 2);
  b.writeUInt32BE(8, 4);
  b.writeUInt16BE(1, 8);
  b.writeUInt16BE(TAG.orientation, 10);
  b.writeUInt16BE(3, 12);
  b.writeUInt32BE(1, 14);
  b.writeUInt16BE(orientation, 18);
  b.writeUInt32BE(0, 22);
  return b;
}

/**
 * Applies the policy to an embedded EXIF block (a TIFF structure): `strip_all` gives an
 * orientation-only block or null; `strip_location` removes GPS in place. An unreadable block goes
 * whole (stripping more than asked is the safe side). `changed` is false when nothing had to go.
 */
function editExif(tiff: Buffer, policy: Exclude<MetadataPolicy, 'keep'>): { exif: Buffer | null; changed: boolean } {
  let view: TiffView;
  try {
    view = new TiffView(Buffer.from(tiff), 0, tiff.length);
  } catch {
    return { exif: null, changed: true };
  }
  if (policy === 'strip_all') return { exif: orientationExif(view.orientation()), changed: true };
  try {
    return removeLocation(view, new Set([TAG.gps])) ? { exif: view.b, changed: true } : { exif: tiff, changed: false };
  } catch {
    return { exif: null, changed: true };
  }
}

function stripTiffFile(bytes: Buffer, policy: Exclude<MetadataPolicy, 'keep'>): Stripped {
  const out = Buffer.from(bytes);
  const t = new TiffView(out, 0, out.length);
  const seen = new Set<number>();
  const removed = new Set<string>();
  const visit = (ifd: number, depth: number): void => {
    if (depth > 4) fail('tiff sub-directory depth');
    const drop = policy === 'strip_all' ? (tag: number) => !TIFF_RENDERING_TAGS.has(tag) : (tag: number) => LOCATION_BLOCKS.has(tag);
    for (const tag of t.remove(ifd, drop, seen)) removed.add(tag === TAG.gps ? 'gps' : tag === TAG.exif ? 'exif' : tag === TAG.xmp ? 'xmp' : tag === TAG.iptc || tag === TAG.photoshop ? 'iptc' : 'tags');
    // Sub-images (reduced resolutions) carry directories of their own.
    const sub = t.read(ifd).entries.find((e) => e.tag === TAG.subIfds);
    if (sub) for (const s of t.targets(sub)) visit(s, depth + 1);
  };
  for (const ifd of t.chain()) visit(ifd, 0);
  return removed.size ? { bytes: out, removed: [...removed] } : { bytes, removed: [] };
}

// ---------------------------------------------------------------------------------------------
// JPEG

const EXIF_ID = Buffer.from('Exif\0\0', 'latin1');
const ICC_ID = Buffer.from('ICC_PROFILE\0', 'latin1');

function segment(marker: number, payload: Buffer): Buffer {
  if (payload.length + 2 > 0xffff) fail('jpeg segment size');
  const head = Buffer.alloc(4);
  head[0] = 0xff;
  head[1] = marker;
  head.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([head, payload]);
}

function stripJpeg(bytes: Buffer, policy: Exclude<MetadataPolicy, 'keep'>): Stripped {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) fail('jpeg start');
  const out: Buffer[] = [bytes.subarray(0, 2)];
  const removed = new Set<string>();
  let i = 2;
  let inScan = false;
  let sawExif = false;
  while (i < bytes.length) {
    if (inScan) {
      // Entropy-coded data: copy up to the next marker (0xFF followed by neither 0x00, a restart
      // marker, nor fill).
      const start = i;
      while (i < bytes.length - 1 && !(bytes[i] === 0xff && bytes[i + 1] !== 0x00 && !(bytes[i + 1]! >= 0xd0 && bytes[i + 1]! <= 0xd7) && bytes[i + 1] !== 0xff)) i++;
      if (i >= bytes.length - 1) fail('jpeg without end');
      out.push(bytes.subarray(start, i));
      inScan = false;
      continue;
    }
    if (bytes[i] !== 0xff) fail('jpeg marker');
    const marker = bytes[i + 1]!;
    if (marker === 0xff) {
      i++;
      continue;
    }
    if (marker === 0xd9) {
      out.push(bytes.subarray(i, i + 2));
      // Whatever follows the image's end (MPF secondary images with their own EXIF, vendor trailers).
      if (i + 2 < bytes.length) removed.add('trailer');
      i = bytes.length;
      break;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      out.push(bytes.subarray(i, i + 2));
      i += 2;
      continue;
    }
    if (i + 4 > bytes.length) fail('jpeg segment');
    const len = bytes.readUInt16BE(i + 2);
    if (len < 2 || i + 2 + len > bytes.length) fail('jpeg segment length');
    const whole = bytes.subarray(i, i + 2 + len);
    const payload = bytes.subarray(i + 4, i + 2 + len);
    i += 2 + len;
    if (marker === 0xe1 && payload.subarray(0, 6).equals(EXIF_ID) && !sawExif) {
      sawExif = true;
      const { exif, changed } = editExif(payload.subarray(6), policy);
      if (!changed) out.push(whole);
      else {
        removed.add(policy === 'strip_all' ? 'exif' : 'gps');
        if (exif) out.push(segment(0xe1, Buffer.concat([EXIF_ID, exif])));
      }
      continue;
    }
    const keep =
      (marker < 0xe0 || marker > 0xef) && marker !== 0xfe // not APPn or a comment: image structure
        ? true
        : marker === 0xe0 || marker === 0xee || (marker === 0xe2 && payload.subarray(0, ICC_ID.length).equals(ICC_ID)) || (marker === 0xfe && policy === 'strip_location');
    if (keep) out.push(whole);
    else removed.add(marker === 0xfe ? 'comment' : marker === 0xe1 ? (payload.subarray(0, 6).equals(EXIF_ID) ? 'exif' : 'xmp') : marker === 0xed ? 'iptc' : `app${marker - 0xe0}`);
    if (marker === 0xda) inScan = true;
  }
  if (removed.size === 0) return { bytes, removed: [] };
  return { bytes: Buffer.concat(out), removed: [...removed] };
}

// ---------------------------------------------------------------------------------------------
// PNG

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Chunks `strip_all` keeps: image data and what rendering needs (colour, transparency, animation, HDR). */
const PNG_RENDERING = new Set(['IHDR', 'PLTE', 'IDAT', 'IEND', 'tRNS', 'gAMA', 'cHRM', 'sRGB', 'iCCP', 'sBIT', 'bKGD', 'pHYs', 'acTL', 'fcTL', 'fdAT', 'cICP', 'mDCV', 'cLLI']);
const PNG_TEXT = new Set(['tEXt', 'zTXt', 'iTXt']);

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

function stripPng(bytes: Buffer, policy: Exclude<MetadataPolicy, 'keep'>): Stripped {
  if (!bytes.subarray(0, 8).equals(PNG_SIGNATURE)) fail('png signature');
  const out: Buffer[] = [bytes.subarray(0, 8)];
  const removed = new Set<string>();
  let i = 8;
  let ended = false;
  while (i < bytes.length && !ended) {
    if (i + 12 > bytes.length) fail('png chunk');
    const len = bytes.readUInt32BE(i);
    const type = bytes.toString('latin1', i + 4, i + 8);
    if (i + 12 + len > bytes.length) fail('png chunk length');
    const whole = bytes.subarray(i, i + 12 + len);
    const data = bytes.subarray(i + 8, i + 8 + len);
    i += 12 + len;
    if (type === 'IEND') ended = true;
    if (type === 'eXIf') {
      const { exif, changed } = editExif(data, policy);
      if (!changed) out.push(whole);
      else {
        removed.add(policy === 'strip_all' ? 'exif' : 'gps');
        if (exif) out.push(pngChunk('eXIf', exif));
      }
      continue;
    }
    const keep = policy === 'strip_all' ? PNG_RENDERING.has(type) : !PNG_TEXT.has(type);
    if (keep) out.push(whole);
    else removed.add(PNG_TEXT.has(type) ? 'text' : type);
  }
  if (i < bytes.length) removed.add('trailer');
  if (removed.size === 0) return { bytes, removed: [] };
  return { bytes: Buffer.concat(out), removed: [...removed] };
}

// ---------------------------------------------------------------------------------------------
// WebP

/** Chunks `strip_all` keeps (image data, alpha, animation, colour profile). */
const WEBP_RENDERING = new Set(['VP8 ', 'VP8L', 'VP8X', 'ALPH', 'ANIM', 'ANMF', 'ICCP']);
const VP8X_EXIF = 0x08;
const VP8X_XMP = 0x04;

function riffChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.write(type, 0, 'latin1');
  head.writeUInt32LE(data.length, 4);
  return Buffer.concat([head, data, data.length % 2 ? Buffer.alloc(1) : Buffer.alloc(0)]);
}

function stripWebp(bytes: Buffer, policy: Exclude<MetadataPolicy, 'keep'>): Stripped {
  if (bytes.length < 12 || bytes.toString('latin1', 0, 4) !== 'RIFF' || bytes.toString('latin1', 8, 12) !== 'WEBP') fail('webp header');
  const end = Math.min(bytes.length, 8 + bytes.readUInt32LE(4));
  const chunks: Array<{ type: string; whole: Buffer; data: Buffer }> = [];
  for (let i = 12; i < end; ) {
    if (i + 8 > end) fail('webp chunk');
    const type = bytes.toString('latin1', i, i + 4);
    const len = bytes.readUInt32LE(i + 4);
    const padded = len + (len % 2);
    if (i + 8 + len > end) fail('webp chunk length');
    chunks.push({ type, whole: bytes.subarray(i, Math.min(end, i + 8 + padded)), data: bytes.subarray(i + 8, i + 8 + len) });
    i += 8 + padded;
  }
  const removed = new Set<string>();
  const out: Buffer[] = [];
  let exifKept = false;
  for (const c of chunks) {
    if (c.type === 'EXIF') {
      // Some writers prefix the TIFF with "Exif\0\0" as in JPEG.
      const prefixed = c.data.subarray(0, 6).equals(EXIF_ID);
      const { exif, changed } = editExif(prefixed ? c.data.subarray(6) : c.data, policy);
      if (!changed) {
        out.push(c.whole);
        exifKept = true;
      } else {
        removed.add(policy === 'strip_all' ? 'exif' : 'gps');
        if (exif) {
          out.push(riffChunk('EXIF', exif));
          exifKept = true;
        }
      }
      continue;
    }
    const keep = policy === 'strip_all' ? WEBP_RENDERING.has(c.type) : c.type !== 'XMP ';
    if (keep) out.push(c.whole);
    else removed.add(c.type === 'XMP ' ? 'xmp' : c.type.trim());
  }
  if (end < bytes.length) removed.add('trailer');
  if (removed.size === 0) return { bytes, removed: [] };
  // The VP8X flags say which metadata chunks follow: keep them true.
  const vp8x = out.findIndex((b) => b.toString('latin1', 0, 4) === 'VP8X');
  if (vp8x >= 0) {
    const x = Buffer.from(out[vp8x]!);
    x[8] = (x[8]! & ~(VP8X_EXIF | VP8X_XMP)) | (exifKept ? VP8X_EXIF : 0);
    out[vp8x] = x;
  }
  const body = Buffer.concat(out);
  const head = Buffer.alloc(12);
  head.write('RIFF', 0, 'latin1');
  head.writeUInt32LE(body.length + 4, 4);
  head.write('WEBP', 8, 'latin1');
  return { bytes: Buffer.concat([head, body]), removed: [...removed] };
}

// ---------------------------------------------------------------------------------------------
// GIF

/** Application extensions that are rendering data (looping, the colour profile). */
const GIF_RENDERING_APPS = new Set(['NETSCAPE2.0', 'ANIMEXTS1.0', 'ICCRGBG1012']);

function stripGif(bytes: Buffer, policy: Exclude<MetadataPolicy, 'keep'>): Stripped {
  const sig = bytes.toString('latin1', 0, 6);
  if (sig !== 'GIF87a' && sig !== 'GIF89a') fail('gif header');
  if (bytes.length < 13) fail('gif screen descriptor');
  const packed = bytes[10]!;
  let i = 13 + (packed & 0x80 ? 3 * 2 ** ((packed & 7) + 1) : 0);
  const out: Buffer[] = [bytes.subarray(0, i)];
  const removed = new Set<string>();
  /** Offset just past a chain of data sub-blocks starting at `at`. */
  const subBlocks = (at: number): number => {
    for (;;) {
      if (at >= bytes.length) fail('gif sub-blocks');
      const n = bytes[at]!;
      at += 1 + n;
      if (n === 0) return at;
    }
  };
  let trailer = false;
  while (i < bytes.length) {
    const start = i;
    const kind = bytes[i]!;
    if (kind === 0x3b) {
      out.push(bytes.subarray(i, i + 1));
      trailer = true;
      i += 1;
      break;
    }
    if (kind === 0x2c) {
      if (i + 10 > bytes.length) fail('gif image descriptor');
      const p = bytes[i + 9]!;
      i += 10 + (p & 0x80 ? 3 * 2 ** ((p & 7) + 1) : 0) + 1;
      i = subBlocks(i);
      out.push(bytes.subarray(start, i));
      continue;
    }
    if (kind !== 0x21 || i + 2 > bytes.length) fail('gif block');
    const label = bytes[i + 1]!;
    const end = subBlocks(i + 2);
    let keep = true;
    if (label === 0xfe) keep = policy === 'strip_location';
    else if (label === 0xff) {
      const id = bytes[i + 2] === 11 ? bytes.toString('latin1', i + 3, i + 14) : '';
      keep = id === 'XMP DataXMP' ? false : policy === 'strip_location' || GIF_RENDERING_APPS.has(id);
      if (!keep) removed.add(id === 'XMP DataXMP' ? 'xmp' : 'application');
    } else if (label === 0x01) keep = policy === 'strip_location';
    if (keep) out.push(bytes.subarray(start, end));
    else if (label === 0xfe || label === 0x01) removed.add(label === 0xfe ? 'comment' : 'text');
    i = end;
  }
  if (!trailer) fail('gif without trailer');
  if (i < bytes.length) removed.add('trailer');
  if (removed.size === 0) return { bytes, removed: [] };
  return { bytes: Buffer.concat(out), removed: [...removed] };
}

// ---------------------------------------------------------------------------------------------
// HEIF (AVIF, HEIC): the Exif and XMP items are overwritten in place, same length.

interface Box {
  type: string;
  /** Absolute offsets of the box's payload (after the header). */
  start: number;
  end: number;
}

function boxes(b: Buffer, from: number, to: number): Box[] {
  const out: Box[] = [];
  for (let i = from; i < to; ) {
    if (i + 8 > to) fail('heif box');
    let size = b.readUInt32BE(i);
    const type = b.toString('latin1', i + 4, i + 8);
    let header = 8;
    if (size === 1) {
      if (i + 16 > to) fail('heif large box');
      const big = b.readBigUInt64BE(i + 8);
      if (big > BigInt(to - i)) fail('heif box size');
      size = Number(big);
      header = 16;
    } else if (size === 0) size = to - i;
    if (size < header || i + size > to) fail('heif box size');
    out.push({ type, start: i + header, end: i + size });
    i += size;
  }
  return out;
}

/** A minimal XMP packet (an empty `x:xmpmeta`) padded with spaces to `len` bytes. */
function emptyXmp(len: number): Buffer {
  const packet = Buffer.from('<x:xmpmeta xmlns:x="adobe:ns:meta/"/>', 'utf8');
  const out = Buffer.alloc(len, 0x20);
  if (packet.length <= len) packet.copy(out);
  return out;
}

function stripHeif(bytes: Buffer, policy: Exclude<MetadataPolicy, 'keep'>): Stripped {
  const top = boxes(bytes, 0, bytes.length);
  const meta = top.find((x) => x.type === 'meta');
  if (!meta) return { bytes, removed: [] };
  // `meta` is a FullBox: 4 bytes of version and flags before its children.
  const children = boxes(bytes, meta.start + 4, meta.end);
  const iinf = children.find((x) => x.type === 'iinf');
  const iloc = children.find((x) => x.type === 'iloc');
  const idat = children.find((x) => x.type === 'idat');
  if (!iinf) return { bytes, removed: [] };
  // Items by kind.
  const kinds = new Map<number, 'exif' | 'xmp'>();
  const iv = bytes[iinf.start]!;
  const first = iinf.start + 4 + (iv === 0 ? 2 : 4);
  for (const infe of boxes(bytes, first, iinf.end).filter((x) => x.type === 'infe')) {
    const v = bytes[infe.start]!;
    if (v < 2) continue;
    let p = infe.start + 4;
    const id = v === 2 ? bytes.readUInt16BE(p) : bytes.readUInt32BE(p);
    p += (v === 2 ? 2 : 4) + 2;
    const type = bytes.toString('latin1', p, p + 4);
    p += 4;
    const nameEnd = bytes.indexOf(0, p);
    if (nameEnd < 0 || nameEnd >= infe.end) fail('heif item name');
    if (type === 'Exif') kinds.set(id, 'exif');
    else if (type === 'mime') {
      const ctEnd = bytes.indexOf(0, nameEnd + 1);
      const contentType = bytes.toString('latin1', nameEnd + 1, ctEnd < 0 ? infe.end : ctEnd);
      if (contentType.trim() === 'application/rdf+xml') kinds.set(id, 'xmp');
    }
  }
  if (kinds.size === 0) return { bytes, removed: [] };
  if (!iloc) fail('heif without iloc');
  // Where each item's bytes are (iloc).
  const lv = bytes[iloc!.start]!;
  let p = iloc!.start + 4;
  const sizes1 = bytes[p]!;
  const sizes2 = bytes[p + 1]!;
  p += 2;
  const offsetSize = sizes1 >> 4;
  const lengthSize = sizes1 & 15;
  const baseSize = sizes2 >> 4;
  const indexSize = lv === 1 || lv === 2 ? sizes2 & 15 : 0;
  const readN = (n: number): number => {
    if (n === 0) return 0;
    if (p + n > iloc!.end) fail('heif iloc');
    const v = n === 8 ? Number(bytes.readBigUInt64BE(p)) : n === 4 ? bytes.readUInt32BE(p) : n === 2 ? bytes.readUInt16BE(p) : fail('heif iloc field size');
    p += n;
    return v;
  };
  const count = lv < 2 ? readN(2) : readN(4);
  const out = Buffer.from(bytes);
  const removed = new Set<string>();
  for (let k = 0; k < count; k++) {
    const id = lv < 2 ? readN(2) : readN(4);
    const method = lv === 1 || lv === 2 ? readN(2) & 15 : 0;
    readN(2); // data_reference_index
    const base = readN(baseSize);
    const extents: Array<{ at: number; len: number }> = [];
    const n = readN(2);
    for (let e = 0; e < n; e++) {
      readN(indexSize);
      const off = readN(offsetSize);
      const len = readN(lengthSize);
      extents.push({ at: off, len });
    }
    const kind = kinds.get(id);
    if (!kind) continue;
    if (method === 2) fail('heif item stored by reference');
    const origin = method === 1 ? (idat ?? fail('heif idat')).start : 0;
    const limit = method === 1 ? idat!.end : bytes.length;
    const spans = extents.map((x) => ({ at: origin + base + x.at, len: x.len === 0 && extents.length === 1 ? limit - (origin + base + x.at) : x.len }));
    for (const s of spans) if (s.at < 0 || s.at + s.len > limit) fail('heif item extent');
    const data = Buffer.concat(spans.map((s) => bytes.subarray(s.at, s.at + s.len)));
    let next: Buffer;
    if (kind === 'xmp') {
      next = emptyXmp(data.length);
      removed.add('xmp');
    } else {
      // 4 bytes: the offset of the TIFF header after them (usually past "Exif\0\0").
      if (data.length < 4) fail('heif exif item');
      const skip = 4 + data.readUInt32BE(0);
      if (skip > data.length) fail('heif exif offset');
      const tiff = data.subarray(skip);
      if (policy === 'strip_all') {
        // HEIF orientation lives in the irot/imir properties, never in EXIF: nothing of it is needed.
        next = Buffer.alloc(data.length);
        removed.add('exif');
      } else {
        const { exif, changed } = editExif(tiff, policy);
        if (!changed) continue;
        removed.add('gps');
        next = Buffer.alloc(data.length);
        data.copy(next, 0, 0, skip);
        if (exif && exif.length === tiff.length) exif.copy(next, skip);
      }
    }
    let at = 0;
    for (const s of spans) {
      next.copy(out, s.at, at, at + s.len);
      at += s.len;
    }
  }
  if (removed.size === 0) return { bytes, removed: [] };
  return { bytes: out, removed: [...removed] };
}

// ---------------------------------------------------------------------------------------------

/**
 * A stream stage applying {@link stripMetadata}: it collects the file (at most `maxBytes`, else
 * `onTooLarge()` is thrown), then emits the stripped bytes at the end. `removed` and `bytesOut` are
 * set once it has flushed.
 */
export class MetadataStripper extends Transform {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  removed: string[] = [];
  bytesOut = 0;

  constructor(
    private readonly mime: string,
    private readonly policy: MetadataPolicy,
    private readonly maxBytes: number,
    private readonly onTooLarge: () => Error,
    private readonly onUnreadable: (err: MetadataUnreadable) => Error,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.size += chunk.length;
    if (this.size > this.maxBytes) {
      cb(this.onTooLarge());
      return;
    }
    this.chunks.push(chunk);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    try {
      const { bytes, removed } = stripMetadata(this.mime, Buffer.concat(this.chunks, this.size), this.policy);
      this.chunks.length = 0;
      this.removed = removed;
      this.bytesOut = bytes.length;
      cb(null, bytes);
    } catch (err) {
      cb(err instanceof MetadataUnreadable ? this.onUnreadable(err) : (err as Error));
    }
  }
}
