/**
 * Streaming authenticated encryption of blobs at rest: the STREAM construction (Hoang, Reyhanitabar,
 * Rogaway, Vizár, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015)
 * over AES-256-GCM, laid out like Tink's AES-GCM-HKDF streaming AEAD. The byte layout is specified in
 * docs/encryption-format.md; keep the two in step.
 *
 *   blob      = header || segment_0 || ... || segment_{n-1}           (n >= 1)
 *   segment_i = AES-256-GCM(blobKey, nonce_i, plaintext_i, aad = header) (ciphertext || 16-byte tag)
 *   nonce_i   = noncePrefix (7) || uint32be(i) || (i == n-1 ? 0x01 : 0x00)
 *   blobKey   = HKDF-SHA256(ikm = tenant key, salt = header.salt, info = "obscura/blob/v1" || blob id, 32)
 *
 * Every plaintext segment is `segmentSize` bytes (64 KiB) except the last, which holds 0 to
 * `segmentSize` bytes and is the only one flagged last. That flag is what makes truncation at a
 * segment boundary and appended data detectable; the counter catches reordering and duplication; the
 * header as AAD catches any header edit; the blob id in the HKDF info catches a blob swapped under
 * another asset's name.
 *
 * Memory is bounded by one segment plus one input chunk in each direction, whatever the blob size.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import { AppError } from '../errors.js';

/** Magic bytes opening every encrypted blob: ASCII `OBSC`. */
export const MAGIC = Buffer.from('OBSC', 'ascii');
/** Format version of a whole blob (one object per asset). */
export const FORMAT_VERSION = 1;
/**
 * Format version of one **part** of an asset stored as a sequence of parts (tus uploads land in it
 * directly, so completion is a metadata step). See docs/encryption-format.md, "Version 2".
 */
export const PART_FORMAT_VERSION = 2;
/** Longest part id, in UTF-8 bytes (its length is one byte in a version-2 header). */
export const MAX_PART_ID_LENGTH = 32;
/** Plaintext bytes per segment (default and what production writes): 64 KiB. */
export const SEGMENT_SIZE = 64 * 1024;
/** Smallest segment size a header may declare. */
export const MIN_SEGMENT_SIZE = 16;
/**
 * Largest segment size a header may declare: the decryptor buffers one segment before it can
 * authenticate anything, so an unauthenticated header must not be able to demand more memory.
 */
export const MAX_SEGMENT_SIZE = 1024 * 1024;
/** AES-GCM tag bytes appended to every segment. */
export const TAG_LENGTH = 16;
/** HKDF salt bytes stored in the header. */
export const SALT_LENGTH = 32;
/** Random nonce prefix bytes stored in the header. */
export const NONCE_PREFIX_LENGTH = 7;
/** Longest key id, in UTF-8 bytes (its length is one byte in the header). */
export const MAX_KEY_ID_LENGTH = 255;
/** Longest blob id, in UTF-8 bytes. */
export const MAX_BLOB_ID_LENGTH = 255;
/** Header bytes before the key id: magic (4), version (1), segment size (4), key id length (1). */
const FIXED_PREFIX = 4 + 1 + 4 + 1;
/** Header length for the shortest possible key id (1 byte). */
export const HEADER_MIN_LENGTH = FIXED_PREFIX + 1 + SALT_LENGTH + NONCE_PREFIX_LENGTH;
/** Version-2 fields after the nonce prefix: part offset (u64) and part id length (u8). */
const PART_FIELDS = 8 + 1;
/**
 * Longest possible header of any version (345 bytes: a version-2 header with a 255-byte key id and a
 * 32-byte part id; 304 for version 1). A reader that does not know the key id fetches bytes
 * `[0, HEADER_MAX_LENGTH - 1]` (a store clamps the range to the object) and calls `readHeader`.
 */
export const HEADER_MAX_LENGTH = FIXED_PREFIX + MAX_KEY_ID_LENGTH + SALT_LENGTH + NONCE_PREFIX_LENGTH + PART_FIELDS + MAX_PART_ID_LENGTH;
/** Segments are numbered with a 32-bit counter (256 TiB per blob at 64 KiB). */
const MAX_SEGMENTS = 2 ** 32;
const HKDF_INFO_LABEL = Buffer.from('obscura/blob/v1', 'ascii');
const HKDF_INFO_LABEL_V2 = Buffer.from('obscura/blob/v2', 'ascii');
/** Last-segment flag values (the nonce's final byte). */
const FLAG_MIDDLE = 0x00;
/** Version 1: the blob's last segment. Version 2: the last segment of a part that is not the asset's last. */
const FLAG_LAST = 0x01;
/** Version 2 only: the last segment of the asset's final part (the chained final flag). */
const FLAG_FINAL = 0x02;
const KEY_LENGTH = 32;

/** A parsed blob header. Every field is authenticated once any segment has been verified. */
export interface BlobHeader {
  /** Format version (1). */
  readonly version: number;
  /** Plaintext bytes per segment. */
  readonly segmentSize: number;
  /** The id of the tenant key the blob key is derived from (look it up with the keyring). */
  readonly keyId: string;
  /** HKDF salt (32 bytes). */
  readonly salt: Buffer;
  /** Nonce prefix (7 bytes). */
  readonly noncePrefix: Buffer;
  /** The exact header bytes (the AAD of every segment). */
  readonly bytes: Buffer;
  /** Version 2 only: which part of its asset this blob claims to be. */
  readonly part?: { readonly offset: number; readonly id: string };
}

/**
 * What the database says a part is (version 2): the reader presents it, and a blob that was written as
 * anything else (another offset, another part, another asset, the final part read as a middle one or
 * the reverse) fails authentication.
 */
export interface PartExpectation {
  /** The part's random id (from the manifest). */
  id: string;
  /** Plaintext offset of the part's first byte in the asset. */
  offset: number;
  /** Whether the part is the asset's last (its last segment carries the final flag). */
  final: boolean;
}

/** Looks up a tenant key by id; may be async (keyring). Throw `ERR_INTEGRITY` for a shredded key. */
export type KeyLookup = (keyId: string) => Buffer | Promise<Buffer>;

/** Options of {@link encryptStream}. */
export interface EncryptOptions {
  /** The tenant key (32 bytes). Not modified or retained beyond the stream. */
  key: Buffer;
  /** The tenant key's id, written into the header (1–255 UTF-8 bytes). */
  keyId: string;
  /** The blob's identity (the asset id, 1–255 UTF-8 bytes); decryption must present the same id. */
  blobId: string;
  /**
   * Plaintext bytes per segment. Default {@link SEGMENT_SIZE}; other values exist for test vectors.
   * Must be within {@link MIN_SEGMENT_SIZE}..{@link MAX_SEGMENT_SIZE}.
   */
  segmentSize?: number;
  /**
   * Write a version-2 **part** instead of a version-1 blob: `blobId` is then the asset id, the part's
   * offset and id are bound into its key and header, and its last segment is flagged final exactly
   * when the part ends at `assetSize` (known only when the input ends, so a part may stop early).
   */
  part?: { id: string; offset: number; assetSize: number };
  /**
   * TEST ONLY: source of the salt (called first, 32 bytes) and the nonce prefix (then, 7 bytes), so
   * that test vectors are reproducible. Default: node:crypto `randomBytes`. Security: never set it in
   * production; a repeated salt and prefix under one tenant key and blob id repeats nonces.
   */
  random?: (n: number) => Buffer;
}

/** Options of {@link decryptStream}. */
export interface DecryptOptions {
  /** Returns the tenant key named in the header. */
  keyFor: KeyLookup;
  /** The blob's identity, as given to `encryptStream` (from the database, never from the blob). */
  blobId: string;
  /** For a version-2 part: what the manifest says it is. Required for version 2, refused for version 1. */
  part?: PartExpectation;
}

/** Which ciphertext bytes serve a plaintext byte range, and how to cut the decrypted segments. */
export interface RangePlan {
  /** First ciphertext byte to fetch (0-based, absolute in the blob). */
  readonly cipherStart: number;
  /** Last ciphertext byte to fetch (inclusive). */
  readonly cipherEnd: number;
  /** Index of the first segment fetched. */
  readonly firstSegment: number;
  /** Index of the last segment fetched (inclusive). */
  readonly lastSegment: number;
  /** Number of segments in the whole blob (the last one carries the last-segment flag). */
  readonly totalSegments: number;
  /** Plaintext bytes to drop from the start of the first fetched segment. */
  readonly skip: number;
  /** Plaintext bytes to output (`end - start + 1`). */
  readonly take: number;
  /** First plaintext byte served. */
  readonly start: number;
  /** Last plaintext byte served (inclusive; the requested end clamped to the plaintext). */
  readonly end: number;
  /** Plaintext size of the whole blob, as the plan assumed it. */
  readonly plaintextSize: number;
}

function integrityError(reason: string, internal: Record<string, unknown> = {}, cause?: unknown): AppError {
  // One public message for every failure: which check failed is logged, never sent (no oracle).
  return new AppError('ERR_INTEGRITY', 'The stored media failed its integrity check.', { cause, internal: { reason, ...internal } });
}

function utf8Id(id: string, what: string, max: number): Buffer {
  if (typeof id !== 'string') throw new TypeError(`${what} must be a string`);
  const bytes = Buffer.from(id, 'utf8');
  // A lone surrogate would be replaced by U+FFFD, so two different ids would share one encoding.
  if (bytes.length === 0 || bytes.length > max || bytes.toString('utf8') !== id) {
    throw new RangeError(`${what} must be 1 to ${max} bytes of valid UTF-8`);
  }
  return bytes;
}

function checkSegmentSize(n: number): void {
  if (!Number.isSafeInteger(n) || n < MIN_SEGMENT_SIZE || n > MAX_SEGMENT_SIZE) {
    throw new RangeError(`segmentSize must be an integer from ${MIN_SEGMENT_SIZE} to ${MAX_SEGMENT_SIZE}`);
  }
}

function checkKey(key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length !== KEY_LENGTH) throw new RangeError('the tenant key must be 32 bytes');
}

/** Header length for a given key id (49 + its UTF-8 length): lets a caller compute sizes before encrypting. */
export function headerLengthFor(keyId: string): number {
  return FIXED_PREFIX + utf8Id(keyId, 'keyId', MAX_KEY_ID_LENGTH).length + SALT_LENGTH + NONCE_PREFIX_LENGTH;
}

function encodeHeader(keyId: Buffer, segmentSize: number, salt: Buffer, noncePrefix: Buffer, part?: { offset: number; id: Buffer }): Buffer {
  const base = FIXED_PREFIX + keyId.length + SALT_LENGTH + NONCE_PREFIX_LENGTH;
  const out = Buffer.alloc(base + (part ? PART_FIELDS + part.id.length : 0));
  MAGIC.copy(out, 0);
  out.writeUInt8(part ? PART_FORMAT_VERSION : FORMAT_VERSION, 4);
  out.writeUInt32BE(segmentSize, 5);
  out.writeUInt8(keyId.length, 9);
  keyId.copy(out, FIXED_PREFIX);
  salt.copy(out, FIXED_PREFIX + keyId.length);
  noncePrefix.copy(out, FIXED_PREFIX + keyId.length + SALT_LENGTH);
  if (part) {
    out.writeBigUInt64BE(BigInt(part.offset), base);
    out.writeUInt8(part.id.length, base + 8);
    part.id.copy(out, base + PART_FIELDS);
  }
  return out;
}

/**
 * How many bytes the header at the start of `buf` occupies, as far as `buf` tells: the exact length
 * once the length fields are in `buf`, else a lower bound larger than `buf.length` (read more and ask
 * again). Unknown versions report the version-1 length and are refused by `readHeader`.
 */
function headerLengthIn(buf: Buffer): number {
  if (buf.length < FIXED_PREFIX) return FIXED_PREFIX;
  const base = FIXED_PREFIX + buf.readUInt8(9) + SALT_LENGTH + NONCE_PREFIX_LENGTH;
  if (buf.readUInt8(4) !== PART_FORMAT_VERSION) return base;
  if (buf.length < base + PART_FIELDS) return base + PART_FIELDS;
  return base + PART_FIELDS + buf.readUInt8(base + 8);
}

const strictUtf8 = (bytes: Buffer): string => new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);

/**
 * Parses the header at the start of `buf` (which may hold more bytes: the rest is ignored).
 *
 * @returns the header and its length in bytes (where segment 0 starts).
 * @throws AppError `ERR_INTEGRITY` when `buf` is too short or the header is not a version-1 Obscura
 *   header. Security: the fields are NOT yet authenticated; they are once a segment verifies (they
 *   are its AAD), so use them only to plan reads and look up keys.
 */
export function readHeader(buf: Buffer): { header: BlobHeader; headerLength: number } {
  if (buf.length < FIXED_PREFIX) throw integrityError('truncated header');
  if (!buf.subarray(0, 4).equals(MAGIC)) throw integrityError('bad magic');
  const version = buf.readUInt8(4);
  if (version !== FORMAT_VERSION && version !== PART_FORMAT_VERSION) throw integrityError('unsupported version', { version });
  const segmentSize = buf.readUInt32BE(5);
  if (segmentSize < MIN_SEGMENT_SIZE || segmentSize > MAX_SEGMENT_SIZE) throw integrityError('bad segment size', { segmentSize });
  const keyIdLength = buf.readUInt8(9);
  if (keyIdLength === 0) throw integrityError('empty key id');
  const base = FIXED_PREFIX + keyIdLength + SALT_LENGTH + NONCE_PREFIX_LENGTH;
  if (buf.length < (version === PART_FORMAT_VERSION ? base + PART_FIELDS : base)) throw integrityError('truncated header');
  const headerLength = headerLengthIn(buf);
  if (buf.length < headerLength) throw integrityError('truncated header');
  let keyId: string;
  try {
    keyId = strictUtf8(buf.subarray(FIXED_PREFIX, FIXED_PREFIX + keyIdLength));
  } catch (err) {
    throw integrityError('key id is not UTF-8', {}, err);
  }
  const bytes = Buffer.from(buf.subarray(0, headerLength));
  const saltAt = FIXED_PREFIX + keyIdLength;
  let part: { offset: number; id: string } | undefined;
  if (version === PART_FORMAT_VERSION) {
    const offset = bytes.readBigUInt64BE(base);
    const idLength = bytes.readUInt8(base + 8);
    if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw integrityError('part offset out of range');
    if (idLength === 0 || idLength > MAX_PART_ID_LENGTH) throw integrityError('bad part id length', { idLength });
    try {
      part = { offset: Number(offset), id: strictUtf8(bytes.subarray(base + PART_FIELDS, headerLength)) };
    } catch (err) {
      throw integrityError('part id is not UTF-8', {}, err);
    }
  }
  return {
    header: {
      version,
      segmentSize,
      keyId,
      salt: bytes.subarray(saltAt, saltAt + SALT_LENGTH),
      noncePrefix: bytes.subarray(saltAt + SALT_LENGTH, saltAt + SALT_LENGTH + NONCE_PREFIX_LENGTH),
      bytes,
      ...(part ? { part } : {}),
    },
    headerLength,
  };
}

function segmentCount(plaintextSize: number, segmentSize: number): number {
  return Math.max(1, Math.ceil(plaintextSize / segmentSize));
}

/**
 * Size of the encrypted blob for a plaintext of `plaintextSize` bytes: header + plaintext + 16 bytes
 * per segment (an empty plaintext still has one segment).
 *
 * @param headerLength - from `headerLengthFor(keyId)` or `readHeader`.
 * @param segmentSize - default {@link SEGMENT_SIZE}.
 */
export function ciphertextSize(plaintextSize: number, headerLength: number, segmentSize = SEGMENT_SIZE): number {
  if (!Number.isSafeInteger(plaintextSize) || plaintextSize < 0) throw new RangeError('plaintextSize must be a non-negative integer');
  if (!Number.isSafeInteger(headerLength) || headerLength < HEADER_MIN_LENGTH || headerLength > HEADER_MAX_LENGTH) throw new RangeError('headerLength is out of range');
  checkSegmentSize(segmentSize);
  return headerLength + plaintextSize + TAG_LENGTH * segmentCount(plaintextSize, segmentSize);
}

/**
 * Plaintext size of an encrypted blob of `ciphertextSize` bytes (the inverse of `ciphertextSize`).
 *
 * @throws AppError `ERR_INTEGRITY` when no plaintext encrypts to that size (a blob cut mid-segment,
 *   or with bytes appended that do not form a segment).
 */
export function plaintextSize(ciphertextSize: number, headerLength: number, segmentSize = SEGMENT_SIZE): number {
  if (!Number.isSafeInteger(ciphertextSize) || ciphertextSize < 0) throw new RangeError('ciphertextSize must be a non-negative integer');
  checkSegmentSize(segmentSize);
  const body = ciphertextSize - headerLength;
  if (body < TAG_LENGTH) throw integrityError('size too small', { ciphertextSize });
  const full = segmentSize + TAG_LENGTH;
  const n = Math.ceil(body / full);
  const last = body - (n - 1) * full;
  // The writer emits an empty segment only when the whole plaintext is empty.
  if (last < TAG_LENGTH || (n > 1 && last === TAG_LENGTH)) throw integrityError('size matches no plaintext', { ciphertextSize });
  return body - n * TAG_LENGTH;
}

function checkRange(plaintextSize: number, start: number, end: number): void {
  if (!Number.isSafeInteger(plaintextSize) || plaintextSize < 0) throw new RangeError('plaintextSize must be a non-negative integer');
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || start >= plaintextSize) {
    // RFC 9110 §15.5.17: a 416 carries the complete length as `bytes */length`.
    throw new AppError('ERR_RANGE_NOT_SATISFIABLE', 'The byte range is outside the media.', { headers: { 'content-range': `bytes */${plaintextSize}` } });
  }
}

/**
 * Plans a ranged read: which ciphertext bytes to fetch (only the segments that hold plaintext bytes
 * `[start, end]`) and how to cut them. Fetch the header separately (`[0, headerLength - 1]`).
 *
 * @param plaintextSize - the blob's plaintext size from the database. It decides which segment is
 *   last, so it must come from a trusted record, not from the store.
 * @param end - inclusive; clamped to `plaintextSize - 1` as in HTTP (RFC 9110 §14.1.2).
 * @throws AppError `ERR_RANGE_NOT_SATISFIABLE` when `start` is past the end (every range of an
 *   empty blob) or `end < start`.
 */
export function planRange(header: Pick<BlobHeader, 'segmentSize' | 'bytes'>, plaintextSize: number, start: number, end: number): RangePlan {
  checkRange(plaintextSize, start, end);
  const s = header.segmentSize;
  checkSegmentSize(s);
  const headerLength = header.bytes.length;
  const last = Math.min(end, plaintextSize - 1);
  const totalSegments = segmentCount(plaintextSize, s);
  const firstSegment = Math.floor(start / s);
  const lastSegment = Math.floor(last / s);
  const full = s + TAG_LENGTH;
  const lastLength = Math.min(s, plaintextSize - lastSegment * s) + TAG_LENGTH;
  return {
    cipherStart: headerLength + firstSegment * full,
    cipherEnd: headerLength + lastSegment * full + lastLength - 1,
    firstSegment,
    lastSegment,
    totalSegments,
    skip: start - firstSegment * s,
    take: last - start + 1,
    start,
    end: last,
    plaintextSize,
  };
}

function deriveBlobKey(tenantKey: Buffer, salt: Buffer, blobId: Buffer, part?: { offset: number; id: Buffer }): Buffer {
  // RFC 5869: a fresh random salt per blob gives every blob its own key, so the 96-bit GCM nonces
  // (prefix || counter || flag) never repeat under one key even across 2^32+ blobs per tenant key.
  // Version 2 also binds the part's place (offset) and identity (id) into the key: a part presented at
  // another offset, as another part, or under another asset derives another key and fails.
  let info: Buffer;
  if (part) {
    const fields = Buffer.alloc(PART_FIELDS);
    fields.writeBigUInt64BE(BigInt(part.offset), 0);
    fields.writeUInt8(part.id.length, 8);
    info = Buffer.concat([HKDF_INFO_LABEL_V2, fields, part.id, blobId]);
  } else {
    info = Buffer.concat([HKDF_INFO_LABEL, blobId]);
  }
  return Buffer.from(hkdfSync('sha256', tenantKey, salt, info, KEY_LENGTH));
}

function nonceFor(prefix: Buffer, index: number, flag: number): Buffer {
  const nonce = Buffer.allocUnsafe(12);
  prefix.copy(nonce, 0, 0, NONCE_PREFIX_LENGTH);
  nonce.writeUInt32BE(index, NONCE_PREFIX_LENGTH);
  nonce.writeUInt8(flag, 11);
  return nonce;
}

/**
 * FIFO of incoming chunks; hands out exact-size slices without concatenating everything. Consumed
 * chunks are skipped by index (not `shift()`ed one by one), so a stream of tiny chunks stays linear.
 */
class ByteQueue {
  private chunks: Buffer[] = [];
  /** Index of the first unconsumed chunk. */
  private first = 0;
  /** Bytes already consumed from `chunks[first]`. */
  private head = 0;
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  private advance(): void {
    this.first++;
    this.head = 0;
    if (this.first === this.chunks.length) {
      this.chunks = [];
      this.first = 0;
    } else if (this.first >= 1024 && this.first * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
  }

  /**
   * Removes and returns the next `n` bytes: a view when they lie in one chunk, else one copy. The
   * copy goes into `scratch` when it is large enough, so the result is then only valid until the
   * next `take` with the same scratch; callers that consume it synchronously (a cipher's `update`
   * copies its input) pass one reused buffer and avoid a fresh 64 KiB allocation per segment, which
   * is what drove V8's external-memory-triggered full GCs on large blobs.
   */
  take(n: number, scratch?: Buffer): Buffer {
    if (n > this.length) throw new RangeError('ByteQueue underflow');
    if (n === 0) return Buffer.alloc(0);
    this.length -= n;
    const c0 = this.chunks[this.first]!;
    if (c0.length - this.head >= n) {
      const out = c0.subarray(this.head, this.head + n);
      this.head += n;
      if (this.head === c0.length) this.advance();
      return out;
    }
    const out = scratch && scratch.length >= n ? scratch.subarray(0, n) : Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[this.first]!;
      const copied = c.copy(out, filled, this.head, Math.min(c.length, this.head + n - filled));
      filled += copied;
      this.head += copied;
      if (this.head === c.length) this.advance();
    }
    return out;
  }

  /** A copy of the next `n` bytes, left in the queue (for the small header). */
  peek(n: number): Buffer {
    const out = Buffer.alloc(Math.min(n, this.length));
    let filled = 0;
    let offset = this.head;
    for (let i = this.first; i < this.chunks.length && filled < out.length; i++) {
      filled += this.chunks[i]!.copy(out, filled, offset);
      offset = 0;
    }
    return out;
  }

  clear(): void {
    this.chunks = [];
    this.first = 0;
    this.head = 0;
    this.length = 0;
  }
}

class Encryptor extends Transform {
  private readonly queue = new ByteQueue();
  private readonly blobKey: Buffer;
  private readonly header: Buffer;
  private readonly prefix: Buffer;
  private readonly segmentSize: number;
  private index = 0;
  private headerSent = false;
  /** Plaintext bytes taken so far (a part's final flag depends on where it ends). */
  private total = 0;
  private readonly part: { offset: number; assetSize: number } | undefined;
  /** Reused for segments that span input chunks (cipher.update copies, so reuse is safe). */
  private readonly scratch: Buffer;

  constructor(opts: EncryptOptions) {
    const segmentSize = opts.segmentSize ?? SEGMENT_SIZE;
    checkSegmentSize(segmentSize);
    super({ readableHighWaterMark: segmentSize + TAG_LENGTH, writableHighWaterMark: segmentSize });
    checkKey(opts.key);
    const keyId = utf8Id(opts.keyId, 'keyId', MAX_KEY_ID_LENGTH);
    const blobId = utf8Id(opts.blobId, 'blobId', MAX_BLOB_ID_LENGTH);
    const random = opts.random ?? randomBytes;
    const salt = random(SALT_LENGTH);
    const prefix = random(NONCE_PREFIX_LENGTH);
    if (salt.length !== SALT_LENGTH || prefix.length !== NONCE_PREFIX_LENGTH) throw new RangeError('random returned the wrong number of bytes');
    this.segmentSize = segmentSize;
    this.scratch = Buffer.allocUnsafe(segmentSize);
    let part: { offset: number; id: Buffer } | undefined;
    if (opts.part) {
      const { offset, assetSize } = opts.part;
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(assetSize) || offset < 0 || offset > assetSize) throw new RangeError('part offset must be within the asset size');
      part = { offset, id: utf8Id(opts.part.id, 'partId', MAX_PART_ID_LENGTH) };
      this.part = { offset, assetSize };
    }
    this.header = encodeHeader(keyId, segmentSize, salt, prefix, part);
    this.prefix = Buffer.from(prefix);
    this.blobKey = deriveBlobKey(opts.key, salt, blobId, part);
  }

  private seal(plaintext: Buffer, last: boolean): void {
    if (this.index >= MAX_SEGMENTS) throw new AppError('ERR_PAYLOAD_TOO_LARGE', 'The media is too large to encrypt.');
    // A part's last segment says whether the part ends the asset: known only now, at the end of input.
    const flag = !last ? FLAG_MIDDLE : this.part && this.part.offset + this.total === this.part.assetSize ? FLAG_FINAL : FLAG_LAST;
    const cipher = createCipheriv('aes-256-gcm', this.blobKey, nonceFor(this.prefix, this.index, flag), { authTagLength: TAG_LENGTH });
    cipher.setAAD(this.header);
    const ct = cipher.update(plaintext);
    cipher.final();
    this.push(ct);
    this.push(cipher.getAuthTag());
    this.index++;
  }

  private sendHeader(): void {
    if (this.headerSent) return;
    this.headerSent = true;
    this.push(this.header);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.sendHeader();
      this.total += chunk.length;
      if (this.part && this.part.offset + this.total > this.part.assetSize) throw new RangeError('the part runs past the asset size');
      this.queue.push(chunk);
      // Hold back a full segment until at least one more byte arrives: only then do we know it is
      // not the last one (the writer never learns the total size in advance).
      while (this.queue.length > this.segmentSize) this.seal(this.queue.take(this.segmentSize, this.scratch), false);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.sendHeader();
      this.seal(this.queue.take(this.queue.length, this.scratch), true);
      this.blobKey.fill(0);
      this.scratch.fill(0);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.blobKey.fill(0);
    this.scratch.fill(0);
    this.queue.clear();
    cb(err);
  }
}

/**
 * A Transform that encrypts a plaintext stream into the blob format: it emits the header, then one
 * sealed segment per 64 KiB of plaintext, the last one flagged last (an empty input still yields one
 * empty final segment). Memory stays at about one segment whatever the input size.
 *
 * @throws RangeError at construction for a key that is not 32 bytes or an invalid id or segment size.
 * Security: the tenant key is not modified; the derived blob key is zeroed when the stream ends.
 */
export function encryptStream(opts: EncryptOptions): Transform {
  return new Encryptor(opts);
}

/** Opens segments of one blob: the derived key, the header as AAD, the nonce prefix. */
class SegmentOpener {
  constructor(
    private readonly blobKey: Buffer,
    private readonly header: BlobHeader,
    /** The flag the last segment must carry: 1, or 2 for the final part of a version-2 asset. */
    private readonly lastFlag: number,
  ) {}

  open(ciphertext: Buffer, index: number, last: boolean): Buffer {
    if (ciphertext.length < TAG_LENGTH) throw integrityError('truncated segment', { segment: index });
    if (index >= MAX_SEGMENTS) throw integrityError('too many segments', { segment: index });
    const body = ciphertext.length - TAG_LENGTH;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.blobKey, nonceFor(this.header.noncePrefix, index, last ? this.lastFlag : FLAG_MIDDLE), { authTagLength: TAG_LENGTH });
      decipher.setAAD(this.header.bytes);
      decipher.setAuthTag(ciphertext.subarray(body));
      const pt = decipher.update(ciphertext.subarray(0, body));
      // final() throws on a bad tag; nothing of this segment has been emitted before it returns.
      decipher.final();
      return pt;
    } catch (err) {
      throw integrityError('segment authentication failed', { segment: index, last }, err);
    }
  }

  wipe(): void {
    this.blobKey.fill(0);
  }
}

async function openerFor(header: BlobHeader, keyFor: KeyLookup, blobId: Buffer, expected: PartExpectation | undefined): Promise<SegmentOpener> {
  // Which kind of object this is comes from the database, never from the blob: a part presented as a
  // whole blob (or the reverse) is refused before any key is looked up.
  if (header.part && !expected) throw integrityError('a part presented as a whole blob');
  if (!header.part && expected) throw integrityError('a whole blob presented as a part');
  let part: { offset: number; id: Buffer } | undefined;
  if (expected && header.part) {
    if (header.part.offset !== expected.offset || header.part.id !== expected.id) {
      throw integrityError('part identity mismatch', { offset: header.part.offset, expectedOffset: expected.offset });
    }
    // The key is derived from the manifest's values (equal to the header's, checked above).
    part = { offset: expected.offset, id: utf8Id(expected.id, 'partId', MAX_PART_ID_LENGTH) };
  }
  const tenantKey = await keyFor(header.keyId);
  checkKey(tenantKey);
  return new SegmentOpener(derivedBlobKey(tenantKey, header.salt, blobId, part), header, expected?.final ? FLAG_FINAL : FLAG_LAST);
}

/** Derived blob keys per tenant key object, bounded per key (cleared when full). */
const derivedKeys = new WeakMap<Buffer, Map<string, Buffer>>();
const MAX_DERIVED_PER_TENANT_KEY = 4096;

/**
 * {@link deriveBlobKey}, remembered for as long as the keyring holds this very tenant-key object
 * (issue 12, item 3: HKDF was ~4 % of a small download). The cache is keyed by the key *object*: the
 * keyring hands out a new one when it re-reads a key (every key-cache TTL) and none once the key is
 * gone, so a crypto-shredded key's derived keys are never found again, on the same bound as the
 * tenant key itself. The salt comes from the blob read on every request, so a deleted blob still
 * fails at its read and a rewritten one derives anew; nothing here skips a read or a check. The
 * cached copies are not zeroed when the keyring forgets (they become unreachable, as the tenant key's
 * own unwrapped copies in the processing caches do): a derived key only opens its one blob.
 */
function derivedBlobKey(tenantKey: Buffer, salt: Buffer, blobId: Buffer, part?: { offset: number; id: Buffer }): Buffer {
  let byBlob = derivedKeys.get(tenantKey);
  if (!byBlob) derivedKeys.set(tenantKey, (byBlob = new Map()));
  // Every input of the derivation, length-prefixed where variable: equal ids mean equal keys.
  const id = `${salt.toString('base64')}|${blobId.length}:${blobId.toString('latin1')}|${part ? `${part.offset}:${part.id.toString('latin1')}` : ''}`;
  const hit = byBlob.get(id);
  // A copy: the opener wipes its key when its stream ends.
  if (hit) return Buffer.from(hit);
  const key = deriveBlobKey(tenantKey, salt, blobId, part);
  if (byBlob.size >= MAX_DERIVED_PER_TENANT_KEY) byBlob.clear();
  byBlob.set(id, Buffer.from(key));
  return key;
}

/**
 * A reusable buffer for assembling ciphertext segments that span input chunks. `SegmentOpener.open`
 * consumes its input synchronously (decipher.update/setAuthTag copy), so one buffer per stream
 * serves every segment. Allocated lazily at the header's segment size (bounded by MAX_SEGMENT_SIZE).
 */
function scratchFor(current: Buffer | undefined, segmentSize: number): Buffer {
  return current && current.length >= segmentSize + TAG_LENGTH ? current : Buffer.allocUnsafe(segmentSize + TAG_LENGTH);
}

class Decryptor extends Transform {
  private readonly queue = new ByteQueue();
  private scratch: Buffer | undefined;
  private readonly blobId: Buffer;
  private readonly keyFor: KeyLookup;
  private readonly part: PartExpectation | undefined;
  private header: BlobHeader | undefined;
  private opener: SegmentOpener | undefined;
  private index = 0;

  constructor(opts: DecryptOptions) {
    super({ readableHighWaterMark: SEGMENT_SIZE, writableHighWaterMark: SEGMENT_SIZE });
    this.blobId = utf8Id(opts.blobId, 'blobId', MAX_BLOB_ID_LENGTH);
    this.keyFor = opts.keyFor;
    this.part = opts.part;
  }

  /** Consumes the header once it is complete; resolves false while more bytes are needed. */
  private async takeHeader(final: boolean): Promise<boolean> {
    if (this.opener) return true;
    const have = this.queue.length;
    const head = this.queue.peek(Math.min(have, HEADER_MAX_LENGTH));
    const need = headerLengthIn(head);
    // At the end of input, let readHeader report what is wrong (bad magic first, else truncation).
    if (have < need && !final) return false;
    const { header, headerLength } = readHeader(head);
    this.queue.take(headerLength);
    this.header = header;
    this.opener = await openerFor(header, this.keyFor, this.blobId, this.part);
    return true;
  }

  private drain(final: boolean): void {
    const opener = this.opener!;
    const full = this.header!.segmentSize + TAG_LENGTH;
    const scratch = (this.scratch = scratchFor(this.scratch, this.header!.segmentSize));
    // A full segment is known not to be last only once a byte beyond it has arrived.
    while (this.queue.length > full) this.push(opener.open(this.queue.take(full, scratch), this.index++, false));
    if (final) {
      if (this.queue.length < TAG_LENGTH) throw integrityError('truncated segment', { segment: this.index });
      this.push(opener.open(this.queue.take(this.queue.length, scratch), this.index++, true));
    }
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.queue.push(chunk);
    this.step(false).then(() => cb(), (err: Error) => cb(err));
  }

  override _flush(cb: TransformCallback): void {
    this.step(true).then(
      () => {
        this.opener?.wipe();
        cb();
      },
      (err: Error) => cb(err),
    );
  }

  private async step(final: boolean): Promise<void> {
    if (!(await this.takeHeader(final))) return;
    this.drain(final);
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.opener?.wipe();
    this.queue.clear();
    cb(err);
  }
}

/**
 * A Transform that decrypts a whole blob. Each segment is authenticated before any of its plaintext
 * is emitted; on the first failure the stream errors with `AppError('ERR_INTEGRITY')` and emits
 * nothing more. Detected: header edits, bit flips, reordered, duplicated or dropped segments,
 * truncation (mid-segment or at a boundary), appended bytes, a blob presented under another blob id,
 * and a wrong key.
 *
 * Security: plaintext of the segments before a failure has already been emitted (and is authentic);
 * a consumer that must not act on a partial result (an HTTP response) has to abort on error.
 * Errors thrown by `keyFor` pass through unchanged.
 */
export function decryptStream(opts: DecryptOptions): Transform {
  return new Decryptor(opts);
}

/**
 * Decrypts a whole blob held in memory (a small object read in one call): the same checks as
 * {@link decryptStream} — header, every segment authenticated with its index and last flag, truncation
 * and appended bytes — without any stream machinery. Returns the plaintext only when every segment
 * verified, so a caller never holds unauthenticated bytes.
 *
 * @throws AppError `ERR_INTEGRITY` for any damage; errors thrown by `keyFor` pass through unchanged.
 */
export async function decryptBlob(ciphertext: Buffer, opts: DecryptOptions): Promise<Buffer> {
  const blobId = utf8Id(opts.blobId, 'blobId', MAX_BLOB_ID_LENGTH);
  const { header, headerLength } = readHeader(ciphertext.subarray(0, Math.min(ciphertext.length, HEADER_MAX_LENGTH)));
  const opener = await openerFor(header, opts.keyFor, blobId, opts.part);
  try {
    const full = header.segmentSize + TAG_LENGTH;
    const body = ciphertext.length - headerLength;
    if (body < TAG_LENGTH) throw integrityError('truncated segment', { segment: 0 });
    // Segments as the writer cut them: full ones, then a last one of TAG_LENGTH..full bytes. A body
    // whose last piece is only a tag after full segments was never written (the writer emits an
    // empty segment only for an empty plaintext): opening it fails authentication like a cut blob.
    const count = Math.max(1, Math.ceil(body / full));
    if (count === 1) return opener.open(ciphertext.subarray(headerLength), 0, true);
    const out = Buffer.allocUnsafe(body - count * TAG_LENGTH > 0 ? body - count * TAG_LENGTH : 0);
    let at = 0;
    for (let i = 0; i < count; i++) {
      const from = headerLength + i * full;
      const pt = opener.open(ciphertext.subarray(from, Math.min(from + full, ciphertext.length)), i, i === count - 1);
      pt.copy(out, at);
      at += pt.length;
    }
    return out.subarray(0, at);
  } finally {
    opener.wipe();
  }
}

/** Options of {@link decryptRange}. */
export interface DecryptRangeOptions {
  /** The header, from `readHeader` over the blob's first bytes. */
  header: BlobHeader;
  /** The plan from `planRange`; the input must be exactly bytes `[cipherStart, cipherEnd]`. */
  plan: RangePlan;
  /** Returns the tenant key named in the header. */
  keyFor: KeyLookup;
  /** The blob's identity (from the database). */
  blobId: string;
  /** For a version-2 part: what the manifest says it is (see {@link DecryptOptions.part}). */
  part?: PartExpectation;
}

class RangeDecryptor extends Transform {
  private readonly queue = new ByteQueue();
  private scratch: Buffer | undefined;
  private readonly blobId: Buffer;
  private opener: SegmentOpener | undefined;
  private index: number;
  private skip: number;
  private remaining: number;

  constructor(private readonly opts: DecryptRangeOptions) {
    super({ readableHighWaterMark: SEGMENT_SIZE, writableHighWaterMark: SEGMENT_SIZE });
    this.blobId = utf8Id(opts.blobId, 'blobId', MAX_BLOB_ID_LENGTH);
    // The plan must start on a segment boundary of this header's layout.
    if (opts.plan.cipherStart !== opts.header.bytes.length + opts.plan.firstSegment * (opts.header.segmentSize + TAG_LENGTH)) {
      throw new RangeError('the plan was not made for this header');
    }
    this.index = opts.plan.firstSegment;
    this.skip = opts.plan.skip;
    this.remaining = opts.plan.take;
  }

  private segmentLength(i: number): number {
    const { plan, header } = this.opts;
    if (i < plan.totalSegments - 1) return header.segmentSize + TAG_LENGTH;
    return plan.plaintextSize - i * header.segmentSize + TAG_LENGTH;
  }

  private drain(): void {
    const { plan } = this.opts;
    while (this.index <= plan.lastSegment && this.queue.length >= this.segmentLength(this.index)) {
      const i = this.index++;
      this.scratch = scratchFor(this.scratch, this.opts.header.segmentSize);
      let pt = this.opener!.open(this.queue.take(this.segmentLength(i), this.scratch), i, i === plan.totalSegments - 1);
      if (this.skip > 0) {
        pt = pt.subarray(this.skip);
        this.skip = 0;
      }
      if (pt.length > this.remaining) pt = pt.subarray(0, this.remaining);
      this.remaining -= pt.length;
      if (pt.length > 0) this.push(pt);
    }
    if (this.index > plan.lastSegment && this.queue.length > 0) throw integrityError('bytes beyond the planned range');
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.queue.push(chunk);
    this.ready().then(
      () => {
        try {
          this.drain();
          cb();
        } catch (err) {
          cb(err as Error);
        }
      },
      (err: Error) => cb(err),
    );
  }

  override _flush(cb: TransformCallback): void {
    this.ready().then(
      () => {
        try {
          this.drain();
          if (this.index <= this.opts.plan.lastSegment || this.remaining !== 0) throw integrityError('truncated range', { segment: this.index });
          this.opener?.wipe();
          cb();
        } catch (err) {
          cb(err as Error);
        }
      },
      (err: Error) => cb(err),
    );
  }

  private async ready(): Promise<void> {
    this.opener ??= await openerFor(this.opts.header, this.opts.keyFor, this.blobId, this.opts.part);
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.opener?.wipe();
    this.queue.clear();
    cb(err);
  }
}

/**
 * A Transform that turns ciphertext bytes `[plan.cipherStart, plan.cipherEnd]` of a blob into exactly
 * plaintext bytes `[plan.start, plan.end]`. Every segment is authenticated (with the header as AAD
 * and its true position and last flag) before any byte of it is emitted; a short, long or altered
 * input errors with `AppError('ERR_INTEGRITY')`.
 */
export function decryptRange(opts: DecryptRangeOptions): Transform {
  return new RangeDecryptor(opts);
}

/** Options of {@link openRange}. */
export interface OpenRangeOptions {
  /** Reads bytes `[start, end]` (inclusive, clamped to the object) of the stored blob: `store.get(key, range)`. */
  get: (range: { start: number; end: number }) => Promise<Readable>;
  /** The blob's plaintext size, from the database. */
  plaintextSize: number;
  /** First plaintext byte wanted. */
  start: number;
  /** Last plaintext byte wanted (inclusive; clamped to the plaintext). */
  end: number;
  keyFor: KeyLookup;
  blobId: string;
  /** For a version-2 part: what the manifest says it is. */
  part?: PartExpectation;
}

/**
 * The range was checked against the plaintext size from the database, so a store that cannot serve
 * it holds a shorter object than was written: that is damage, not a client error.
 */
async function storedRange(opts: OpenRangeOptions, start: number, end: number): Promise<Readable> {
  try {
    return await opts.get({ start, end });
  } catch (err) {
    if (err instanceof AppError && err.code === 'ERR_RANGE_NOT_SATISFIABLE') throw integrityError('stored object shorter than its size', { start }, err);
    throw err;
  }
}

async function readAtMost(stream: Readable, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of stream) {
      const b = chunk as Buffer;
      parts.push(b);
      length += b.length;
      if (length >= max) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(parts, length).subarray(0, max);
}

/**
 * Convenience for a caller that has ranged reads (`BlobStore.get(key, range)`): reads the header
 * (bytes `[0, HEADER_MAX_LENGTH - 1]`), plans the range, fetches only the needed segments and
 * returns a stream of exactly plaintext bytes `[plan.start, plan.end]`, with the plan (for the
 * `Content-Range` header). Two reads from the store; memory bounded by one segment.
 *
 * @throws AppError `ERR_RANGE_NOT_SATISFIABLE` (before any read for an empty blob), `ERR_INTEGRITY`
 *   for a damaged header; the stream errors with `ERR_INTEGRITY` for damaged segments.
 */
export async function openRange(opts: OpenRangeOptions): Promise<{ stream: Readable; plan: RangePlan }> {
  checkRange(opts.plaintextSize, opts.start, opts.end);
  const { header } = readHeader(await readAtMost(await storedRange(opts, 0, HEADER_MAX_LENGTH - 1), HEADER_MAX_LENGTH));
  const plan = planRange(header, opts.plaintextSize, opts.start, opts.end);
  const source = await storedRange(opts, plan.cipherStart, plan.cipherEnd);
  const out = decryptRange({ header, plan, keyFor: opts.keyFor, blobId: opts.blobId, ...(opts.part ? { part: opts.part } : {}) });
  // pipeline destroys `out` with the source's error, so a failed read surfaces on the returned stream.
  pipeline(source, out, () => undefined);
  return { stream: out, plan };
}

/** One part of a version-2 asset, as its manifest lists it, with a way to read its stored bytes. */
export interface StoredPart {
  /** The part's random id (bound into its key). */
  id: string;
  /** Plaintext offset of its first byte in the asset. */
  offset: number;
  /** Plaintext bytes in the part (at least 1). */
  size: number;
  /** Reads bytes `[start, end]` of the stored part (the whole object without a range). */
  get(range?: { start: number; end: number }): Promise<Readable>;
}

/** Options of {@link openParts}. */
export interface OpenPartsOptions {
  /** The manifest, in order: it must tile `[0, plaintextSize)` exactly. */
  parts: readonly StoredPart[];
  /** The asset's plaintext size, from the database. */
  plaintextSize: number;
  /** First plaintext byte wanted (default 0). */
  start?: number;
  /** Last plaintext byte wanted, inclusive (default the last byte; clamped). */
  end?: number;
  keyFor: KeyLookup;
  /** The asset id. */
  blobId: string;
}

/**
 * Checks that a manifest tiles `[0, plaintextSize)`: offsets in order, each part starting where the
 * previous ended, no empty part, the last one ending at the size.
 *
 * @throws AppError `ERR_INTEGRITY` otherwise.
 */
export function checkManifest(parts: readonly Pick<StoredPart, 'offset' | 'size' | 'id'>[], plaintextSize: number): void {
  let expected = 0;
  for (const p of parts) {
    if (p.offset !== expected || !Number.isSafeInteger(p.size) || p.size < 1) throw integrityError('manifest does not tile the asset', { offset: p.offset, expected });
    expected += p.size;
  }
  if (expected !== plaintextSize) throw integrityError('manifest does not add up to the asset size', { expected, plaintextSize });
}

/** A part the manifest lists must exist: a missing or short object is damage, not a client error. */
async function storedPart(part: StoredPart, range?: { start: number; end: number }): Promise<Readable> {
  try {
    return await part.get(range);
  } catch (err) {
    if (err instanceof AppError && (err.code === 'ERR_NOT_FOUND' || err.code === 'ERR_RANGE_NOT_SATISFIABLE')) throw integrityError('a listed part is missing or short', { offset: part.offset }, err);
    throw err;
  }
}

/**
 * Reads plaintext bytes `[start, end]` of an asset stored as version-2 parts (docs/encryption-format.md,
 * "Version 2"). Only the parts the range touches are fetched, one after the other; a part read whole
 * costs one store read, a part read in part two (header, then the needed segments). Each part is
 * opened with the identity the manifest gives it (asset id, offset, id, final or not), so a part that
 * is missing, moved, reordered, duplicated, cut, from another upload or org, or a manifest that drops
 * trailing parts, makes the stream error with `ERR_INTEGRITY` before any of its bytes are emitted.
 *
 * @throws AppError `ERR_RANGE_NOT_SATISFIABLE` for a range outside the asset, `ERR_INTEGRITY` for a
 *   manifest that does not tile the asset.
 */
export function openParts(opts: OpenPartsOptions): { stream: Readable; start: number; end: number } {
  const size = opts.plaintextSize;
  checkManifest(opts.parts, size);
  const start = opts.start ?? 0;
  let end = opts.end ?? size - 1;
  if (opts.start !== undefined || opts.end !== undefined) checkRange(size, start, end);
  end = Math.min(end, size - 1);
  const { parts, keyFor, blobId } = opts;
  async function* plaintext(): AsyncGenerator<Buffer> {
    for (let k = 0; k < parts.length; k++) {
      const part = parts[k]!;
      if (part.offset + part.size <= start || part.offset > end) continue;
      const expected: PartExpectation = { id: part.id, offset: part.offset, final: k === parts.length - 1 };
      const lo = Math.max(start, part.offset) - part.offset;
      const hi = Math.min(end, part.offset + part.size - 1) - part.offset;
      let stream: Readable;
      if (lo === 0 && hi === part.size - 1) {
        const source = await storedPart(part);
        const dec = decryptStream({ keyFor, blobId, part: expected });
        pipeline(source, dec, () => undefined);
        stream = dec;
      } else {
        ({ stream } = await openRange({ get: (r) => storedPart(part, r), plaintextSize: part.size, start: lo, end: hi, keyFor, blobId, part: expected }));
      }
      let n = 0;
      for await (const chunk of stream) {
        n += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      // The inner STREAM already ends where the part was sealed; this catches a manifest size that
      // disagrees with it (only possible if the database row was edited).
      if (n !== hi - lo + 1) throw integrityError('part length differs from its manifest entry', { offset: part.offset });
    }
  }
  return { stream: size === 0 ? Readable.from([]) : Readable.from(plaintext(), { objectMode: false }), start, end };
}
