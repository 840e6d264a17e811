/**
 * Is an upload really what its first bytes claim? Sniffing reads a few magic bytes; a text file
 * starting with `GIF89a`, a JPEG cut off half-way, or an `ftyp` box followed by zeros all pass it.
 * This check runs on every uploaded byte as it streams to the store (issue 9, item 5):
 *
 * - images (JPEG, PNG, WebP, AVIF, GIF, TIFF): fully decoded (first frame) by libvips with
 *   `failOn: 'truncated'` from memory, up to {@link FULL_DECODE_MAX_BYTES}; larger images get a
 *   header check only. The pixel limit applies either way (decompression bombs);
 * - MP4 / QuickTime (ISO BMFF): every top-level box header is walked as the bytes pass (sizes,
 *   printable types), the boxes must tile the file exactly (no truncation, no trailing garbage) and
 *   a `moov` box must be present. Full probing (ffprobe) arrives with video processing;
 * - WebM / Matroska: the EBML header must parse with a `webm`/`matroska` DocType, be followed by a
 *   Segment whose declared size fits the file, and a known first child element.
 *
 * Failures are `ERR_MEDIA_INVALID` (422) with a `reason` of our own words; nothing is stored.
 */
import { Transform, type TransformCallback } from 'node:stream';
import sharp, { type Metadata } from 'sharp';
import { AppError } from '../../errors.js';

/** Images up to this size are decoded in full at upload; larger ones get a header check. */
export const FULL_DECODE_MAX_BYTES = 64 * 1024 * 1024;

const DECODABLE_IMAGES = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/avif', 'image/gif', 'image/tiff']);
const BMFF = new Set(['video/mp4', 'video/quicktime']);
const EBML = new Set(['video/webm', 'video/matroska']);

/** What the check learnt about a valid file. */
export interface ContentFacts {
  width: number | null;
  height: number | null;
}

function invalid(mime: string, reason: string): AppError {
  return new AppError('ERR_MEDIA_INVALID', `The content is not a valid ${mime} file (${reason}); upload the complete, undamaged file.`, { details: { detected: mime, reason } });
}

/**
 * A pass-through stream that inspects what flows through it; call {@link ContentCheck.verify} once
 * the stream has ended.
 */
export class ContentCheck extends Transform {
  private readonly kept: Buffer[] = [];
  private keptBytes = 0;
  private total = 0;
  private readonly walker: BmffWalker | null;

  constructor(
    private readonly mime: string,
    private readonly opts: { maxPixels: number },
  ) {
    super();
    this.walker = BMFF.has(mime) ? new BmffWalker() : null;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.total += chunk.length;
    this.walker?.push(chunk);
    // Images are kept for the decode (up to the cap); containers only need their head.
    const cap = DECODABLE_IMAGES.has(this.mime) ? FULL_DECODE_MAX_BYTES + 1 : EBML.has(this.mime) ? 64 * 1024 : 0;
    if (this.keptBytes < cap) {
      const part = chunk.subarray(0, cap - this.keptBytes);
      this.kept.push(Buffer.from(part));
      this.keptBytes += part.length;
    }
    cb(null, chunk);
  }

  /** Resolves with the facts of a valid file; rejects with `ERR_MEDIA_INVALID` / `ERR_IMAGE_TOO_LARGE`. */
  async verify(): Promise<ContentFacts> {
    const bytes = Buffer.concat(this.kept, this.keptBytes);
    this.kept.length = 0;
    if (DECODABLE_IMAGES.has(this.mime)) return verifyImage(this.mime, bytes, this.total, this.opts.maxPixels);
    if (this.walker) {
      const reason = this.walker.finish(this.total);
      if (reason) throw invalid(this.mime, reason);
    } else if (EBML.has(this.mime)) {
      const reason = checkEbml(bytes, this.total);
      if (reason) throw invalid(this.mime, reason);
    }
    return { width: null, height: null };
  }
}

/** Reads plaintext bytes `[start, end]` (inclusive) of a stored file. */
export type ReadAt = (start: number, end: number) => Promise<Buffer>;

/** How much of a large image's head the header check reads first (metadata sits near the start). */
const HEAD_CHECK_BYTES = 1024 * 1024;

/**
 * The same verdicts as {@link ContentCheck}, for a file already stored (a tus upload whose parts are
 * the asset): reads only what the check needs instead of the whole file. Images up to
 * {@link FULL_DECODE_MAX_BYTES} are read whole (they are decoded); larger images read their first
 * MiB (all of the checked head only when the header lies further in); MP4/QuickTime read only the
 * 8–16-byte header of each top-level box; WebM/Matroska read their first 64 KiB.
 */
export async function verifyStoredContent(mime: string, size: number, read: ReadAt, opts: { maxPixels: number }): Promise<ContentFacts> {
  if (DECODABLE_IMAGES.has(mime)) {
    if (size <= FULL_DECODE_MAX_BYTES) return verifyImage(mime, await read(0, size - 1), size, opts.maxPixels);
    try {
      return await verifyImage(mime, await read(0, HEAD_CHECK_BYTES - 1), size, opts.maxPixels);
    } catch (err) {
      if (!(err instanceof AppError && err.code === 'ERR_MEDIA_INVALID')) throw err;
      // The streaming check keeps FULL_DECODE_MAX_BYTES + 1 bytes for the header: give it the same.
      return verifyImage(mime, await read(0, FULL_DECODE_MAX_BYTES), size, opts.maxPixels);
    }
  }
  if (BMFF.has(mime)) {
    const walker = new BmffWalker();
    for (let at = walker.wants; at !== null && at < size; at = walker.wants) {
      walker.seek(at);
      walker.push(await read(at, Math.min(size, at + 16) - 1));
    }
    const reason = walker.finish(size);
    if (reason) throw invalid(mime, reason);
  } else if (EBML.has(mime)) {
    const reason = checkEbml(await read(0, Math.min(size, 64 * 1024) - 1), size);
    if (reason) throw invalid(mime, reason);
  }
  return { width: null, height: null };
}

async function verifyImage(mime: string, bytes: Buffer, total: number, maxPixels: number): Promise<ContentFacts> {
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { failOn: 'none', limitInputPixels: false }).metadata();
  } catch {
    throw invalid(mime, 'its header cannot be read');
  }
  const width = meta.width ?? 0;
  const height = meta.pageHeight ?? meta.height ?? 0;
  if (!width || !height) throw invalid(mime, 'it has no image dimensions');
  if (width * height > maxPixels) {
    throw new AppError('ERR_IMAGE_TOO_LARGE', `The image is ${width}×${height} pixels; the limit is ${maxPixels} pixels.`, { details: { width, height, maxPixels } });
  }
  if (total <= FULL_DECODE_MAX_BYTES) {
    try {
      // Decoding to a thumbnail still reads every compressed byte of the first frame; libvips
      // shrinks on load, so memory stays small whatever the image size.
      await sharp(bytes, { failOn: 'truncated', limitInputPixels: maxPixels }).resize(16, 16, { fit: 'inside' }).raw().toBuffer();
    } catch {
      throw invalid(mime, 'it is truncated or its image data is corrupt');
    }
  }
  return { width: meta.width ?? null, height: meta.height ?? null };
}

/**
 * Streams over ISO BMFF (MP4, MOV) top-level boxes: reads each 8- or 16-byte header as it passes and
 * skips the body, so a multi-gigabyte file costs a few bytes of memory.
 */
class BmffWalker {
  private pos = 0;
  private boxStart = 0;
  private header: Buffer[] = [];
  private headerBytes = 0;
  private toEnd = false;
  private error: string | null = null;
  readonly types: string[] = [];

  /** Where the next byte the walker needs lies (the next box header), or null when it needs no more. */
  get wants(): number | null {
    return this.error || this.toEnd ? null : this.boxStart + this.headerBytes;
  }

  /** Continues at `position` (at most {@link wants}): the bytes before it are box bodies, never read. */
  seek(position: number): void {
    this.pos = position;
  }

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && !this.error && !this.toEnd) {
      const at = this.pos + off;
      if (at < this.boxStart) {
        off += Math.min(this.boxStart - at, chunk.length - off);
        continue;
      }
      const need = this.needHeaderBytes();
      const take = Math.min(need - this.headerBytes, chunk.length - off);
      this.header.push(chunk.subarray(off, off + take));
      this.headerBytes += take;
      off += take;
      if (this.headerBytes === this.needHeaderBytes()) this.parseHeader();
    }
    this.pos += chunk.length;
  }

  private needHeaderBytes(): number {
    if (this.headerBytes < 8) return 8;
    const h = Buffer.concat(this.header, this.headerBytes);
    return h.readUInt32BE(0) === 1 ? 16 : 8;
  }

  private parseHeader(): void {
    const h = Buffer.concat(this.header, this.headerBytes);
    const size32 = h.readUInt32BE(0);
    const type = h.subarray(4, 8).toString('latin1');
    if (!/^[\x20-\x7e]{4}$/.test(type)) {
      this.error = `box ${this.types.length + 1} has no valid type`;
      return;
    }
    this.types.push(type);
    let size: number;
    if (size32 === 0) {
      this.toEnd = true; // the last box runs to the end of the file
      return;
    } else if (size32 === 1) {
      size = Number(h.readBigUInt64BE(8));
      if (size < 16) this.error = `box ${type} has an impossible size`;
    } else {
      size = size32;
      if (size < 8) this.error = `box ${type} has an impossible size`;
    }
    this.boxStart += size;
    this.header = [];
    this.headerBytes = 0;
  }

  /** The reason the file is invalid, or null. */
  finish(total: number): string | null {
    if (this.error) return this.error;
    if (this.types.length === 0) return 'it has no boxes';
    if (!this.toEnd) {
      if (this.headerBytes > 0) return 'it ends inside a box header';
      if (this.boxStart > total) return `it is truncated (the ${this.types[this.types.length - 1]} box needs ${this.boxStart - total} more bytes)`;
    }
    if (!this.types.includes('moov')) return 'it has no movie header (moov box)';
    return null;
  }
}

/** Reads an EBML variable-size integer at `off`; `null` when it does not fit or is malformed. */
function vint(buf: Buffer, off: number, keepMarker: boolean): { value: number; length: number; unknown: boolean } | null {
  if (off >= buf.length) return null;
  const first = buf[off]!;
  let length = 1;
  while (length <= 8 && !(first & (0x80 >> (length - 1)))) length++;
  if (length > 8 || off + length > buf.length) return null;
  let value = keepMarker ? first : first & (0xff >> length);
  let allOnes = value === 0xff >> length;
  for (let i = 1; i < length; i++) {
    value = value * 256 + buf[off + i]!;
    if (buf[off + i] !== 0xff) allOnes = false;
  }
  return { value, length, unknown: !keepMarker && allOnes };
}

const SEGMENT_CHILDREN = new Set([0x114d9b74, 0x1549a966, 0x1654ae6b, 0x1f43b675, 0xec, 0xbf, 0x1c53bb6b, 0x1254c367, 0x1043a770, 0x1941a469]);

/** The reason a WebM/Matroska head is invalid, or null. */
function checkEbml(head: Buffer, total: number): string | null {
  const id = vint(head, 0, true);
  if (!id || id.value !== 0x1a45dfa3) return 'it does not start with an EBML header';
  const size = vint(head, id.length, false);
  if (!size || size.unknown) return 'its EBML header has no size';
  const bodyStart = id.length + size.length;
  const bodyEnd = bodyStart + size.value;
  if (bodyEnd > head.length) return 'its EBML header is truncated';
  let docType: string | null = null;
  for (let off = bodyStart; off < bodyEnd; ) {
    const eid = vint(head, off, true);
    const esize = eid && vint(head, off + eid.length, false);
    if (!eid || !esize || esize.unknown) return 'its EBML header is malformed';
    const dataStart = off + eid.length + esize.length;
    if (dataStart + esize.value > bodyEnd) return 'its EBML header is malformed';
    if (eid.value === 0x4282) docType = head.subarray(dataStart, dataStart + esize.value).toString('latin1').replace(/\0+$/, '');
    off = dataStart + esize.value;
  }
  if (docType !== 'webm' && docType !== 'matroska') return 'its DocType is not webm or matroska';
  const seg = vint(head, bodyEnd, true);
  if (!seg || seg.value !== 0x18538067) return 'no Segment follows the EBML header';
  const segSize = vint(head, bodyEnd + seg.length, false);
  if (!segSize) return 'the Segment has no size';
  const segStart = bodyEnd + seg.length + segSize.length;
  if (!segSize.unknown && segStart + segSize.value > total) return 'it is truncated (the Segment is longer than the file)';
  const child = vint(head, segStart, true);
  if (!child || !SEGMENT_CHILDREN.has(child.value)) return 'the Segment does not start with a known element';
  return null;
}
