import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_MEDIA_LIMITS, mediaLimits } from '../../src/media/limits.js';
import { inspect } from '../../src/media/image/inspect.js';
import { animatedGif, bombPng, hugeJpegHeader, jpegWithExif, pngNamedJpg, pngWithAlpha, quadrants, textFile } from '../fixtures/make.js';
import { rejectsWith } from './support.js';

const limits = DEFAULT_MEDIA_LIMITS;

describe('media limits', () => {
  it('has the documented secure defaults', () => {
    assert.deepEqual({ ...DEFAULT_MEDIA_LIMITS }, {
      maxInputBytes: 50 * 1024 * 1024,
      maxInputPixels: 40_000_000,
      maxOutputDimension: 8192,
      maxFrames: 100,
      timeoutMs: 30_000,
      maxCost: 1500,
      allowSvg: false,
    });
    assert.ok(Object.isFrozen(DEFAULT_MEDIA_LIMITS));
  });

  it('rejects a non-positive or non-integer limit at configuration time, naming it', () => {
    assert.throws(() => mediaLimits({ maxInputPixels: 0 }), /maxInputPixels/);
    assert.throws(() => mediaLimits({ timeoutMs: 1.5 }), /timeoutMs/);
    assert.throws(() => mediaLimits({ maxOutputDimension: 20_000 }), /maxOutputDimension/);
    assert.equal(mediaLimits({ maxFrames: 3 }).maxFrames, 3);
  });
});

describe('inspect', () => {
  it('reports oriented dimensions and orientation from headers', async () => {
    const info = await inspect(await jpegWithExif(), limits);
    assert.equal(info.format, 'jpeg');
    assert.equal(info.orientation, 6);
    assert.equal(info.width, 1080);
    assert.equal(info.height, 1920);
    assert.equal(info.frames, 1);
    assert.equal(info.hasAlpha, false);
  });

  it('reports frames and alpha', async () => {
    const gif = await inspect(await animatedGif(), limits);
    assert.equal(gif.frames, 3);
    assert.equal(gif.width, 64);
    assert.equal(gif.height, 64);
    assert.equal((await inspect(await pngWithAlpha(), limits)).hasAlpha, true);
  });

  it('uses the sniffed type: a PNG named .jpg is a PNG', async () => {
    const info = await inspect((await pngNamedJpg()).data, limits);
    assert.equal(info.format, 'png');
    assert.equal(info.mime, 'image/png');
  });

  it('refuses a text file with 415', async () => {
    const err = await rejectsWith(inspect(textFile(), limits), 'ERR_UNSUPPORTED_MEDIA_TYPE');
    assert.equal(err.status, 415);
  });

  it('refuses SVG with 415 unless the app enables it', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
    await rejectsWith(inspect(svg, limits), 'ERR_UNSUPPORTED_MEDIA_TYPE');
    const info = await inspect(svg, mediaLimits({ allowSvg: true }));
    assert.equal(info.format, 'svg');
    assert.equal(info.width, 10);
  });

  it('refuses a file over maxInputBytes with 413 before sniffing', async () => {
    const err = await rejectsWith(inspect(await quadrants(), mediaLimits({ maxInputBytes: 100 })), 'ERR_PAYLOAD_TOO_LARGE');
    assert.equal(err.status, 413);
  });

  it('refuses a decompression-bomb PNG quickly with bounded memory', async () => {
    const bomb = await bombPng();
    assert.ok(bomb.length < 200_000, 'the bomb is small on disk');
    global.gc?.();
    const rss = process.memoryUsage().rss;
    const start = performance.now();
    const err = await rejectsWith(inspect(bomb, limits), 'ERR_IMAGE_TOO_LARGE');
    const ms = performance.now() - start;
    assert.equal(err.status, 422);
    assert.equal(err.details?.reason, 'pixels');
    assert.ok(ms < 1000, `took ${ms} ms`);
    assert.ok(process.memoryUsage().rss - rss < 100 * 1024 * 1024, 'RSS grew by less than 100 MB');
  });

  it('refuses a JPEG whose header claims 60000×60000 quickly', async () => {
    const start = performance.now();
    const err = await rejectsWith(inspect(await hugeJpegHeader(), limits), 'ERR_IMAGE_TOO_LARGE');
    assert.equal(err.details?.reason, 'pixels');
    assert.ok(performance.now() - start < 1000);
  });

  it('counts every frame against the pixel limit and the frame limit', async () => {
    const gif = await animatedGif(); // 3 frames of 64×64 = 12 288 px
    const frames = await rejectsWith(inspect(gif, mediaLimits({ maxFrames: 2 })), 'ERR_IMAGE_TOO_LARGE');
    assert.equal(frames.details?.reason, 'frames');
    const pixels = await rejectsWith(inspect(gif, mediaLimits({ maxInputPixels: 10_000 })), 'ERR_IMAGE_TOO_LARGE');
    assert.equal(pixels.details?.reason, 'pixels');
    await inspect(gif, mediaLimits({ maxInputPixels: 12_288, maxFrames: 3 }));
  });

  it('refuses a truncated or corrupt header with 422', async () => {
    const png = await quadrants();
    await rejectsWith(inspect(png.subarray(0, 30), limits), 'ERR_UNPROCESSABLE');
  });
});
