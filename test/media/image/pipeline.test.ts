import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { AppError } from '../../../src/errors.js';
import { mediaLimits } from '../../../src/media/limits.js';
import { buildPlan, parseOperations } from '../../../src/media/image/operations/registry.js';
import { negotiateFormat, processImage } from '../../../src/media/image/pipeline.js';
import { sniff } from '../../../src/media/sniff.js';
import {
  QUADRANTS,
  animatedGif,
  bombPng,
  exifHasGps,
  hugeJpegHeader,
  jpegWithExif,
  pngNamedJpg,
  pngWithAlpha,
  quadrants,
  textFile,
} from '../../fixtures/make.js';
import { assertColour, limits, means, pixel, rejectsWith, solid } from '../support.js';

describe('processImage: input safety', () => {
  it('validates operations before reading the input (400 even for a non-image)', async () => {
    const err = await rejectsWith(processImage(textFile(), 'resize:width=-1', { limits }), 'ERR_VALIDATION');
    assert.equal(err.details?.operation, 'resize');
  });

  it('refuses a text file named .jpg with 415', async () => {
    const err = await rejectsWith(processImage(textFile(), 'resize:width=10', { limits }), 'ERR_UNSUPPORTED_MEDIA_TYPE');
    assert.equal(err.status, 415);
  });

  it('processes a PNG named .jpg as a PNG', async () => {
    const { data } = await pngNamedJpg();
    const out = await processImage(data, 'resize:width=50', { limits });
    assert.equal(out.info.format, 'png');
    assert.equal((await sniff(out.data))?.mime, 'image/png');
  });

  for (const [name, make] of [['decompression-bomb PNG', () => bombPng()], ['60000×60000 JPEG', () => hugeJpegHeader()]] as const) {
    it(`refuses a ${name} in under a second without allocating its pixels`, async () => {
      const input = await make();
      global.gc?.();
      const rss = process.memoryUsage().rss;
      const start = performance.now();
      const err = await rejectsWith(processImage(input, 'resize:width=100/format:webp', { limits }), 'ERR_IMAGE_TOO_LARGE');
      const ms = performance.now() - start;
      const grown = process.memoryUsage().rss - rss;
      assert.equal(err.status, 422);
      assert.ok(ms < 1000, `took ${ms} ms`);
      assert.ok(grown < 100 * 1024 * 1024, `RSS grew ${grown} bytes`);
    });
  }

  it('refuses an SVG by default and rasterises a sanitised one when enabled', async () => {
    const svg = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" onload="alert(1)">' +
        '<image href="http://127.0.0.1:1/x.png" width="40" height="20"/><rect width="40" height="20" fill="#00f"/></svg>',
    );
    await rejectsWith(processImage(svg, '', { limits }), 'ERR_UNSUPPORTED_MEDIA_TYPE');
    const out = await processImage(svg, '', { limits: mediaLimits({ allowSvg: true }) });
    assert.equal(out.info.format, 'png');
    assert.deepEqual([out.info.width, out.info.height], [40, 20]);
    assertColour(await pixel(out.data, 5, 5), [0, 0, 255], 2);
  });

  it('refuses an SVG whose declared size exceeds the pixel limit', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><rect width="1" height="1"/></svg>');
    await rejectsWith(processImage(svg, '', { limits: mediaLimits({ allowSvg: true }) }), 'ERR_IMAGE_TOO_LARGE');
  });

  it('stops with 503 when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await rejectsWith(processImage(await quadrants(), '', { limits, signal: controller.signal }), 'ERR_UNAVAILABLE');
    assert.equal(err.details?.reason, 'aborted');
  });

  it('accepts a prebuilt plan', async () => {
    const plan = buildPlan(parseOperations('resize:width=20'));
    const out = await processImage(await quadrants(), plan, { limits });
    assert.equal(out.info.width, 20);
  });
});

describe('processImage: metadata', () => {
  it('applies EXIF orientation and strips EXIF and GPS by default', async () => {
    const out = await processImage(await jpegWithExif(), 'resize:width=270', { limits });
    assert.deepEqual([out.info.width, out.info.height], [270, 480]);
    const meta = await sharp(out.data).metadata();
    assert.equal(meta.exif, undefined);
    assert.equal(meta.xmp, undefined);
    assert.ok(meta.orientation === undefined || meta.orientation === 1);
    // Orientation 6 = rotate 90° clockwise: the red top-left corner ends up top-right.
    assertColour(await pixel(out.data, 260, 10), QUADRANTS.topLeft);
    assertColour(await pixel(out.data, 10, 10), QUADRANTS.bottomLeft);
  });

  it('keeps the colour profile by default', async () => {
    const p3 = await sharp(await quadrants(64, 32, 'png')).withIccProfile('p3').jpeg().toBuffer();
    const icc = (await sharp(p3).metadata()).icc;
    assert.ok(icc && icc.length > 0);
    for (const ops of ['resize:width=32', 'resize:width=32/format:webp']) {
      const meta = await sharp((await processImage(p3, ops, { limits })).data).metadata();
      assert.ok(meta.icc?.equals(icc), ops);
      assert.equal(meta.exif, undefined);
    }
  });

  it('keeps EXIF and GPS when keepMetadata is set, with the orientation reset', async () => {
    const input = await jpegWithExif();
    assert.ok(exifHasGps((await sharp(input).metadata()).exif), 'fixture has GPS');
    const out = await processImage(input, 'resize:width=270', { limits, keepMetadata: true });
    const meta = await sharp(out.data).metadata();
    assert.ok(exifHasGps(meta.exif));
    assert.ok(meta.exif?.includes('ObscuraTestCam'));
    assert.equal(meta.orientation ?? 1, 1);
  });

  it('strips EXIF and GPS from every output format', async () => {
    const input = await jpegWithExif();
    for (const type of ['jpeg', 'png', 'webp', 'avif', 'tiff']) {
      const out = await processImage(input, `resize:width=64/format:${type}`, { limits });
      const meta = await sharp(out.data).metadata();
      assert.ok(!exifHasGps(meta.exif), type);
      assert.ok(!meta.exif?.includes('ObscuraTestCam'), type);
    }
  });

  it('keeps EXIF with overlays when keepMetadata is set', async () => {
    const out = await processImage(await jpegWithExif(), 'resize:width=200/text:hello', { limits, keepMetadata: true });
    assert.ok(exifHasGps((await sharp(out.data).metadata()).exif));
    const stripped = await processImage(await jpegWithExif(), 'resize:width=200/text:hello', { limits });
    assert.equal((await sharp(stripped.data).metadata()).exif, undefined);
  });
});

describe('processImage: formats', () => {
  it('keeps the input format by default', async () => {
    assert.equal((await processImage(await quadrants(64, 32, 'webp'), '', { limits })).info.format, 'webp');
    assert.equal((await processImage(await jpegWithExif(), 'resize:width=32', { limits })).info.format, 'jpeg');
  });

  it('auto picks AVIF or WebP from Accept, else JPEG or PNG by alpha, and asks for Vary: Accept', async () => {
    const opaque = await quadrants(64, 32, 'png');
    const avif = await processImage(opaque, 'format:auto', { limits, accept: 'image/avif,image/webp,*/*;q=0.8' });
    assert.equal(avif.info.format, 'avif');
    assert.equal(avif.varyAccept, true);
    assert.equal((await processImage(opaque, 'format:auto', { limits, accept: 'image/webp,*/*' })).info.format, 'webp');
    assert.equal((await processImage(opaque, 'format:auto', { limits, accept: 'image/avif;q=0,image/webp' })).info.format, 'webp');
    assert.equal((await processImage(opaque, 'format:auto', { limits, accept: '*/*' })).info.format, 'jpeg');
    assert.equal((await processImage(await pngWithAlpha(), 'format:auto', { limits })).info.format, 'png');
    assert.equal((await processImage(opaque, 'format:png', { limits })).varyAccept, false);
  });

  it('negotiateFormat keeps animations in formats that can hold them', () => {
    assert.equal(negotiateFormat('image/avif,image/webp', { hasAlpha: false, animated: true }), 'webp');
    assert.equal(negotiateFormat('image/avif', { hasAlpha: false, animated: true }), 'gif');
  });

  it('keeps every frame of an animation into GIF and WebP, and the first frame into PNG', async () => {
    const gif = await animatedGif();
    const toGif = await processImage(gif, 'resize:width=32', { limits });
    assert.equal(toGif.info.frames, 3);
    assert.equal((await sharp(toGif.data).metadata()).pages, 3);
    assert.deepEqual([toGif.info.width, toGif.info.height], [32, 32]);
    const toWebp = await processImage(gif, 'format:webp', { limits });
    assert.equal((await sharp(toWebp.data).metadata()).pages, 3);
    const toPng = await processImage(gif, 'format:png', { limits });
    assert.equal(toPng.info.frames, 1);
    assert.deepEqual([toPng.info.width, toPng.info.height], [64, 64]);
    assertColour(await pixel(toPng.data, 5, 5), [255, 0, 0], 2);
  });

  it('flattens transparency onto the background colour for JPEG output', async () => {
    const out = await processImage(await pngWithAlpha(), 'format:jpeg/background:%23000000', { limits });
    assertColour(await pixel(out.data, 250, 10), [0, 0, 0], 10);
    const white = await processImage(await pngWithAlpha(), 'format:jpeg', { limits });
    assertColour(await pixel(white.data, 250, 10), [255, 255, 255], 10);
  });
});

describe('processImage: overlays and preview', () => {
  it('renders markup-looking text literally and refuses text over 200 characters', async () => {
    const base = await solid(400, 100, '#000000');
    // If the span were interpreted the glyphs would be red; rendered literally they take our colour.
    const out = await processImage(base, [{ op: 'text', text: '<span foreground="red">AAAA</span> &amp; <b>x</b>', size: 24, color: '#00ff00' }], { limits });
    const stats = await sharp(out.data).stats();
    assert.ok(stats.channels[1]!.max > 200, 'green glyphs drawn');
    assert.ok(stats.channels[0]!.max < 40, `no red glyphs (red max ${stats.channels[0]!.max})`);
    assert.deepEqual([out.info.width, out.info.height], [400, 100]);
    const err = await rejectsWith(processImage(base, [{ op: 'text', text: 'x'.repeat(201) }], { limits }), 'ERR_VALIDATION');
    assert.equal(err.details?.operation, 'text');
  });

  it('keeps very large or long text within the image', async () => {
    const base = await solid(120, 60, '#000000');
    const out = await processImage(base, [{ op: 'text', text: 'W'.repeat(200), size: 512 }, { op: 'text', text: 'a\n'.repeat(99) + 'b', size: 100, gravity: 'north' }], { limits });
    assert.deepEqual([out.info.width, out.info.height], [120, 60]);
    assert.ok((await means(out.data))[0]! > 1, 'something was drawn');
  });

  it('overlays are not tinted: they are composited after colour operations', async () => {
    const base = await solid(200, 100, '#808080');
    const out = await processImage(base, [{ op: 'tint', color: '#ff0000' }, { op: 'text', text: 'MMMMMMMM', size: 40, color: '#0000ff', gravity: 'center' }], { limits });
    const stats = await sharp(out.data).stats();
    assert.ok(stats.channels[2]!.max > 200, 'blue text survives the red tint');
  });

  it('watermark: composites another asset with scale, gravity and opacity', async () => {
    const base = await quadrants(400, 200, 'png');
    const white = await solid(50, 50, '#ffffff');
    const requested: string[] = [];
    const loadAsset = async (id: string): Promise<Buffer> => {
      requested.push(id);
      return white;
    };
    const opaque = await processImage(base, 'watermark:logo1,scale=0.25,gravity=northwest,opacity=1', { limits, loadAsset });
    assert.deepEqual(requested, ['logo1']);
    assertColour(await pixel(opaque.data, 5, 5), [255, 255, 255], 2);
    assertColour(await pixel(opaque.data, 95, 95), [255, 255, 255], 2); // 0.25 × 400 = 100 px square
    assertColour(await pixel(opaque.data, 105, 5), QUADRANTS.topLeft, 2);
    const half = await processImage(base, 'watermark:logo1,gravity=northwest,opacity=0.5', { limits, loadAsset });
    assertColour(await pixel(half.data, 5, 5), [255, 128, 128], 6);
  });

  it('watermark: a missing asset is not found and a non-image is refused, naming the operation', async () => {
    const base = await quadrants();
    await rejectsWith(processImage(base, 'watermark:nope', { limits }), 'ERR_NOT_FOUND');
    const err = await rejectsWith(
      processImage(base, 'watermark:txt', { limits, loadAsset: async () => textFile() }),
      'ERR_UNSUPPORTED_MEDIA_TYPE',
    );
    assert.equal(err.details?.operation, 'watermark');
    const bomb = await rejectsWith(processImage(base, 'watermark:b', { limits, loadAsset: () => bombPng() }), 'ERR_IMAGE_TOO_LARGE');
    assert.equal(bomb.details?.operation, 'watermark');
    const loadErr = new AppError('ERR_NOT_FOUND', 'The asset does not exist.');
    assert.equal(await processImage(base, 'watermark:x', { limits, loadAsset: () => Promise.reject(loadErr) }).catch((e: unknown) => e), loadErr);
  });

  it('preview: downscales to at most 512 px and adds a visible mark', async () => {
    const input = await jpegWithExif();
    const plain = await processImage(input, 'resize:width=288', { limits });
    const preview = await processImage(input, 'resize:width=2000,enlarge=true', { limits, preview: true });
    assert.ok(preview.info.width <= 512 && preview.info.height <= 512);
    assert.deepEqual([preview.info.width, preview.info.height], [plain.info.width, plain.info.height]);
    const a = await sharp(plain.data).raw().toBuffer();
    const b = await sharp(preview.data).raw().toBuffer();
    let differing = 0;
    for (let i = 0; i < a.length; i++) if (Math.abs(a[i]! - b[i]!) > 30) differing++;
    assert.ok(differing > a.length * 0.02, `the mark changes a visible share of pixels (${differing})`);
  });
});
