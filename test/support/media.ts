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
