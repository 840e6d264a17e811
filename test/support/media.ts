/** Media fixtures generated at test time (no binary files in git). */
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';

/** A valid PNG carrying a unique text marker (tEXt chunk), so a scan for the marker finds any plaintext copy. */
export async function markedPng(marker: string, size = 300): Promise<Buffer> {
  const raw = await sharp({ create: { width: size, height: Math.round(size * 0.75), channels: 3, background: { r: 10, g: 120, b: 200 } } })
    // Random rows so the file does not compress to nothing and spans several encryption segments.
    .composite([{ input: randomBytes(size * 20), raw: { width: size, height: 20, channels: 1 }, top: 0, left: 0 }])
    .png({ compressionLevel: 0 })
    .withMetadata()
    .toBuffer();
  // Insert a tEXt chunk after IHDR (8-byte signature + 25-byte IHDR chunk).
  const data = Buffer.from(`Comment\0${marker}`, 'latin1');
  const type = Buffer.from('tEXt');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([type, data])) >>> 0);
  return Buffer.concat([raw.subarray(0, 33), len, type, data, crc, raw.subarray(33)]);
}

