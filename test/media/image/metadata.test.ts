/**
 * The metadata policy's container editing (src/media/image/metadata.ts) on real files written by
 * sharp (libvips): what each policy removes and keeps, and that the pixels are the uploaded ones
 * (nothing is re-encoded). The ingest routes are covered by test/assets/metadata-policy.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { MetadataUnreadable, stripMetadata } from '../../../src/media/image/metadata.js';

const XMP = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" photoshop:City="XMPPLACE"/></rdf:RDF></x:xmpmeta>';

/** A small photo with a camera model, an owner, a GPS position, an XMP city, a P3 profile and orientation 6. */
async function photo(format: 'jpeg' | 'png' | 'webp' | 'tiff' | 'avif'): Promise<Buffer> {
  return sharp({ create: { width: 32, height: 24, channels: 3, background: { r: 200, g: 30, b: 90 } } })
    .withExif({ IFD0: { Model: 'MARKERCAM', Copyright: 'OWNERNAME' }, IFD3: { GPSMapDatum: 'SECRETPLACE', GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 2924/100' } })
    .withXmp(XMP)
    .withIccProfile('p3')
    .withMetadata({ orientation: 6 })
    .toFormat(format, format === 'jpeg' || format === 'webp' || format === 'avif' ? { quality: 70 } : {})
    .toBuffer();
}

/** What libvips reads back of a file's metadata. */
async function facts(bytes: Buffer) {
  const m = await sharp(bytes).metadata();
  const exif = m.exif?.toString('latin1') ?? '';
  return { gps: exif.includes('SECRETPLACE'), camera: exif.includes('MARKERCAM'), owner: exif.includes('OWNERNAME'), xmp: (m.xmp?.toString('utf8') ?? '').includes('XMPPLACE'), icc: !!m.icc, orientation: m.orientation ?? 1 };
}

const pixels = (bytes: Buffer) => sharp(bytes).raw().toBuffer();

describe('metadata policy: container edits without re-encoding', () => {
  for (const format of ['jpeg', 'png', 'webp', 'avif'] as const) {
    test(`${format}: strip_location removes GPS and XMP, keeps the camera, the profile and the orientation; strip_all keeps only the profile and the orientation; the pixels are the uploaded ones`, async () => {
      const original = await photo(format);
      const mime = `image/${format}`;
      const before = await facts(original);
      assert.deepEqual({ gps: before.gps, camera: before.camera, xmp: before.xmp }, { gps: true, camera: true, xmp: true }, 'the fixture carries what the policies remove');
      assert.equal(stripMetadata(mime, original, 'keep').bytes, original, 'keep changes nothing');

      const located = stripMetadata(mime, original, 'strip_location');
      const l = await facts(located.bytes);
      assert.equal(l.gps, false, 'no GPS');
      assert.equal(l.xmp, false, 'no XMP (it can repeat the place)');
      assert.equal(l.camera, true, 'the rest of EXIF stays');
      assert.equal(l.icc, true);
      assert.equal(l.orientation, before.orientation);
      assert.ok(!located.bytes.includes('SECRETPLACE'), 'the GPS values are gone from the bytes, not only unlinked');
      assert.deepEqual(await pixels(located.bytes), await pixels(original), 'same pixels: nothing re-encoded');

      const all = stripMetadata(mime, original, 'strip_all');
      const a = await facts(all.bytes);
      assert.deepEqual({ gps: a.gps, camera: a.camera, owner: a.owner, xmp: a.xmp }, { gps: false, camera: false, owner: false, xmp: false });
      assert.equal(a.icc, true, 'the colour profile stays');
      assert.equal(a.orientation, before.orientation, 'the orientation stays');
      for (const marker of ['SECRETPLACE', 'MARKERCAM', 'OWNERNAME', 'XMPPLACE']) assert.ok(!all.bytes.includes(marker), `${marker} is not in the bytes`);
      assert.deepEqual(await pixels(all.bytes), await pixels(original));
      // Idempotent on what it produced.
      assert.deepEqual(await pixels(stripMetadata(mime, all.bytes, 'strip_all').bytes), await pixels(original));
    });
  }

  test('tiff: the XMP tag goes under both policies, other non-rendering tags under strip_all; the pixels and the profile stay', async () => {
    const original = await photo('tiff');
    assert.equal((await facts(original)).xmp, true);
    for (const policy of ['strip_location', 'strip_all'] as const) {
      const out = stripMetadata('image/tiff', original, policy);
      const f = await facts(out.bytes);
      assert.equal(f.xmp, false, policy);
      assert.equal(f.icc, true, policy);
      assert.ok(!out.bytes.includes('XMPPLACE'));
      assert.equal(out.bytes.length, original.length, 'edited in place');
      assert.deepEqual(await pixels(out.bytes), await pixels(original));
    }
  });

  test('gif: comments and XMP go, the looping extension of an animation stays', async () => {
    const anim = await sharp({ create: { width: 8, height: 8, channels: 4, background: '#f00' } }).gif({ loop: 0 }).toBuffer();
    // A comment and an XMP application extension right before the first image block.
    const at = anim.indexOf(0x2c, 13);
    const comment = Buffer.concat([Buffer.from([0x21, 0xfe, 9]), Buffer.from('GIFSECRET'), Buffer.from([0])]);
    const xmp = Buffer.concat([Buffer.from([0x21, 0xff, 11]), Buffer.from('XMP DataXMP'), Buffer.from([8]), Buffer.from('XMPPLACE'), Buffer.from([0])]);
    const gif = Buffer.concat([anim.subarray(0, at), comment, xmp, anim.subarray(at)]);
    const located = stripMetadata('image/gif', gif, 'strip_location');
    assert.ok(!located.bytes.includes('XMPPLACE'));
    assert.ok(located.bytes.includes('GIFSECRET'), 'a comment is not a location');
    const all = stripMetadata('image/gif', gif, 'strip_all');
    assert.ok(!all.bytes.includes('XMPPLACE') && !all.bytes.includes('GIFSECRET'));
    assert.ok(all.bytes.includes('NETSCAPE2.0'), 'looping stays');
    assert.deepEqual(await pixels(all.bytes), await pixels(anim));
  });

  test('a file with nothing to remove comes back as the same buffer, and a broken container is refused rather than stored with its metadata', async () => {
    const plain = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#0f0' } }).png().toBuffer();
    const r = stripMetadata('image/png', plain, 'strip_all');
    assert.equal(r.bytes, plain);
    assert.deepEqual(r.removed, []);
    const jpeg = await photo('jpeg');
    assert.throws(() => stripMetadata('image/jpeg', jpeg.subarray(0, 200), 'strip_all'), MetadataUnreadable);
    const bigTiff = Buffer.from('II+\0\x08\0\0\0\0\0\0\0\0\0\0\0', 'latin1');
    assert.throws(() => stripMetadata('image/tiff', bigTiff, 'strip_location'), (e: unknown) => e instanceof MetadataUnreadable && e.reason === 'BigTIFF');
  });
});
