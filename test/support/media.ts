/** Media fixtures generated at test time (no binary files in git). */
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';

/**
 * A valid PNG of random pixels (stored uncompressed, ~3 bytes per pixel, so it spans many encryption
 * segments) carrying `marker` in a tEXt chunk, so that a scan for the marker finds any plaintext copy.
 */
export async function markedPng(marker: string, width = 300, height = Math.round(width * 0.75)): Promise<Buffer> {
  const png = await sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
  const data = Buffer.from(`Comment\0${marker}`, 'latin1');
  const type = Buffer.from('tEXt');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([type, data])) >>> 0);
  // After the signature (8 bytes) and IHDR (25 bytes).
  return Buffer.concat([png.subarray(0, 33), len, type, data, crc, png.subarray(33)]);
}

/**
 * A valid PNG of exactly `size` bytes: a small marked PNG followed by filler after its IEND chunk
 * (decoders stop at IEND). For tests that need a complete, decodable upload of a given length; a
 * prefix of a bigger PNG is a truncated file, which uploads now refuse (issue 9, item 5).
 */
export async function pngOfSize(size: number, marker = `sized-${size}`): Promise<Buffer> {
  const png = await markedPng(marker, 48, 36);
  if (png.length > size) throw new Error(`pngOfSize: ${size} bytes is less than the ${png.length}-byte base image`);
  return Buffer.concat([png, randomBytes(size - png.length)]);
}
