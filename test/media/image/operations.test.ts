import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { mediaLimits } from '../../../src/media/limits.js';
import { MAX_OPERATIONS, OPERATION_LIST, buildPlan, parseOperations, serializeOperations } from '../../../src/media/image/operations/registry.js';
import { planResize } from '../../../src/media/image/operations/geometry.js';
import { processImage } from '../../../src/media/image/pipeline.js';
import { QUADRANTS, pngWithAlpha, quadrants } from '../../fixtures/make.js';
import { assertColour, limits, means, pixel, solid, throwsWith } from '../support.js';

const run = (input: Buffer, ops: string | unknown[], extra: Partial<Parameters<typeof processImage>[2]> = {}) =>
  processImage(input, ops, { limits, ...extra });

/** A 200×100 quadrant PNG (TL red, TR green, BL blue, BR yellow). */
const quad = () => quadrants(200, 100, 'png');
/** A horizontal grey gradient 0..255, 256×16. */
async function gradient(from = 0, to = 255): Promise<Buffer> {
  const w = 256;
  const h = 16;
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px.fill(Math.round(from + ((to - from) * x) / (w - 1)), (y * w + x) * 3, (y * w + x) * 3 + 3);
  return sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

describe('parseOperations', () => {
  it('parses the string form with primary values, key=value pairs and percent-decoding', () => {
    const ops = parseOperations('resize:width=400,fit=cover/rotate:90/tint:%23ff0000/text:a%2Fb%2Cc,size=20/format:webp,quality=80');
    assert.deepEqual(ops.map((o) => o.name), ['resize', 'rotate', 'tint', 'text', 'format']);
    assert.deepEqual(ops[0]!.args, { width: 400, fit: 'cover' });
    assert.deepEqual(ops[1]!.args, { angle: 90 });
    assert.deepEqual(ops[2]!.args, { color: '#ff0000' });
    assert.deepEqual(ops[3]!.args, { text: 'a/b,c', size: 20 });
    assert.deepEqual(ops[4]!.args, { type: 'webp', quality: 80 });
  });

  it('parses the JSON form and CLI-style string items, resolving aliases', () => {
    const ops = parseOperations([{ op: 'crop', left: 1, top: 2, width: 3, height: 4 }, 'greyscale', 'resize:enlarge=true,width=10']);
    assert.deepEqual(ops.map((o) => o.name), ['extract', 'grayscale', 'resize']);
    assert.deepEqual(ops[2]!.args, { enlarge: true, width: 10 });
  });

  it('round-trips through the canonical string form', () => {
    const ops = parseOperations('resize:width=400,fit=cover/text:hello%2C%20world/tint:%23ff0000');
    assert.deepEqual(parseOperations(serializeOperations(ops)), ops);
  });

  it('refuses unknown operations and unknown parameters, naming the operation', () => {
    const unknownOp = throwsWith(() => parseOperations('resize:width=10/explode:now=1'), 'ERR_VALIDATION');
    assert.equal(unknownOp.status, 400);
    assert.equal(unknownOp.details?.operation, 'explode');
    assert.equal(unknownOp.details?.reason, 'unknown_operation');
    assert.equal(unknownOp.details?.index, 1);
    const unknownParam = throwsWith(() => parseOperations([{ op: 'resize', width: 10, wdith: 5 }]), 'ERR_VALIDATION');
    assert.equal(unknownParam.details?.operation, 'resize');
    assert.deepEqual(unknownParam.details?.parameters, ['wdith']);
    // Prototype keys are parameters like any other: refused, never looked up on the prototype.
    throwsWith(() => parseOperations('resize:width=1,constructor=1'), 'ERR_VALIDATION');
    throwsWith(() => parseOperations([{ op: 'toString' }]), 'ERR_VALIDATION');
  });

  it('refuses out-of-range and mistyped values, naming the operation and the parameter', () => {
    const cases: Array<[unknown, string, string]> = [
      ['resize:width=0', 'resize', 'width'],
      ['resize:width=1.5', 'resize', 'width'],
      ['resize:width=0x10', 'resize', 'width'],
      ['resize:width=10,fit=squash', 'resize', 'fit'],
      ['blur:0.1', 'blur', 'sigma'],
      ['blur:101', 'blur', 'sigma'],
      ['gamma:3.5', 'gamma', 'value'],
      ['quality:0', 'quality', 'value'],
      ['quality:101', 'quality', 'value'],
      ['format:bmp', 'format', 'type'],
      ['tint:red', 'tint', 'color'],
      ['tint:%23ff00', 'tint', 'color'],
      ['watermark:abc,opacity=1.5', 'watermark', 'opacity'],
      ['watermark:abc,scale=0', 'watermark', 'scale'],
      ['watermark:..%2Fetc', 'watermark', 'assetId'],
      [[{ op: 'text', text: 'x'.repeat(201) }], 'text', 'text'],
      [[{ op: 'text', text: 'bell\u0007' }], 'text', 'text'],
      [[{ op: 'resize', width: '400' }], 'resize', 'width'],
    ];
    for (const [input, operation, parameter] of cases) {
      const err = throwsWith(() => parseOperations(input), 'ERR_VALIDATION');
      assert.equal(err.details?.operation, operation, JSON.stringify(input));
      const errors = err.details?.errors as Array<{ parameter: string }>;
      assert.ok(errors.some((e) => e.parameter === parameter), `${JSON.stringify(input)} → ${JSON.stringify(errors)}`);
    }
  });

  it('refuses cross-parameter mistakes and grammar errors', () => {
    assert.equal(throwsWith(() => parseOperations('resize:fit=cover'), 'ERR_VALIDATION').details?.reason, 'width_or_height_required');
    assert.equal(throwsWith(() => parseOperations('resize:width=9,fit=contain,position=entropy'), 'ERR_VALIDATION').details?.operation, 'resize');
    assert.equal(throwsWith(() => parseOperations('modulate'), 'ERR_VALIDATION').details?.operation, 'modulate');
    for (const bad of ['resize:width=1,width=2', 'resize:width=', 'resize:width=1//flip', 'flip:now', 'resize:width=%E0%A4%A', 'rotate:90,45', '/']) {
      throwsWith(() => parseOperations(bad), 'ERR_VALIDATION');
    }
    throwsWith(() => parseOperations(42), 'ERR_VALIDATION');
    throwsWith(() => parseOperations([null]), 'ERR_VALIDATION');
  });

  it(`refuses more than ${MAX_OPERATIONS} operations and over-long strings`, () => {
    const err = throwsWith(() => parseOperations(Array(MAX_OPERATIONS + 1).fill('flip').join('/')), 'ERR_VALIDATION');
    assert.equal(err.details?.reason, 'too_many_operations');
    throwsWith(() => parseOperations(Array(MAX_OPERATIONS + 1).fill({ op: 'flip' })), 'ERR_VALIDATION');
    throwsWith(() => parseOperations(`text:${'a'.repeat(5000)}`), 'ERR_VALIDATION');
  });
});

describe('buildPlan', () => {
  it('keeps the order written (overlays too), lets output settings go anywhere, and refuses an order the pipeline would change instead of reordering silently', () => {
    const plan = buildPlan(parseOperations('format:auto/flip/resize:width=10/text:b/text:a/background:%23000'));
    assert.deepEqual(
      plan.steps.map((s) => s.operation.name + (s.operation.name === 'text' ? `:${String(s.args.text)}` : '')),
      ['background', 'flip', 'resize', 'text:b', 'text:a', 'format'],
    );
    // resize then crop would be applied as crop then resize: a different image, so it is refused.
    const err = throwsWith(() => buildPlan(parseOperations('resize:width=100/crop:left=0,top=0,width=10,height=10')), 'ERR_VALIDATION');
    assert.equal(err.details?.reason, 'order_changed');
    assert.equal(err.details?.operation, 'extract');
    assert.equal(err.details?.must_come_before, 'resize');
    throwsWith(() => buildPlan(parseOperations('text:b/resize:width=10')), 'ERR_VALIDATION');
    assert.equal(plan.negotiatesFormat, true);
    assert.equal(plan.hasOverlays, true);
  });

  it('refuses a repeated non-overlay operation', () => {
    const err = throwsWith(() => buildPlan(parseOperations('resize:width=10/resize:width=20')), 'ERR_VALIDATION');
    assert.equal(err.details?.operation, 'resize');
    assert.equal(err.details?.reason, 'duplicate_operation');
  });

  it('every registered operation has a closed object schema and a unique order', () => {
    const orders = new Set<number>();
    for (const op of OPERATION_LIST) {
      assert.equal((op.schema as { type?: string }).type, 'object', op.name);
      assert.equal((op.schema as { additionalProperties?: boolean }).additionalProperties, false, op.name);
      assert.ok(!orders.has(op.order), `order of ${op.name}`);
      orders.add(op.order);
    }
  });
});

describe('planResize', () => {
  it('caps every output side at the maximum, keeping aspect', () => {
    assert.deepEqual(planResize({ width: 1000, height: 8000 }, { width: 8192, fit: 'cover', enlarge: true }, 8192).out, { width: 1024, height: 8192 });
    assert.deepEqual(planResize({ width: 100, height: 100 }, { width: 16000, height: 4000, fit: 'fill', enlarge: true }, 8192).out, { width: 8192, height: 2048 });
    const outside = planResize({ width: 1000, height: 100 }, { width: 100, height: 1000, fit: 'outside', enlarge: true }, 8192);
    assert.ok(outside.out.width <= 8192 && outside.out.height <= 8192);
    assert.equal(outside.fit, 'fill');
  });
});

describe('operations on real images', () => {
  it('resize: scales, never enlarges by default, enlarges when asked, and is capped', async () => {
    const img = await quad();
    const half = await run(img, 'resize:width=100');
    assert.deepEqual([half.info.width, half.info.height], [100, 50]);
    const noEnlarge = await run(img, 'resize:width=400');
    assert.deepEqual([noEnlarge.info.width, noEnlarge.info.height], [200, 100]);
    const enlarged = await run(img, 'resize:width=400,enlarge=true');
    assert.deepEqual([enlarged.info.width, enlarged.info.height], [400, 200]);
    const capped = await processImage(img, 'resize:width=4000,enlarge=true', { limits: mediaLimits({ maxOutputDimension: 300 }) });
    assert.deepEqual([capped.info.width, capped.info.height], [300, 150]);
    const fill = await run(img, 'resize:width=50,height=50,fit=fill');
    assert.deepEqual([fill.info.width, fill.info.height], [50, 50]);
  });

  it('resize: cover crops at the position; contain pads with the background colour', async () => {
    const img = await quad();
    const left = await run(img, 'resize:width=50,height=50,fit=cover,position=west');
    assertColour(await pixel(left.data, 2, 2), QUADRANTS.topLeft);
    const right = await run(img, 'resize:width=50,height=50,fit=cover,position=east');
    assertColour(await pixel(right.data, 47, 2), QUADRANTS.topRight);
    const contain = await run(img, 'resize:width=100,height=100,fit=contain/background:%2300ffff');
    assert.deepEqual([contain.info.width, contain.info.height], [100, 100]);
    assertColour(await pixel(contain.data, 50, 5), [0, 255, 255]);
    assertColour(await pixel(contain.data, 10, 40), QUADRANTS.topLeft);
  });

  it('images larger than the output limit are scaled down even without resize', async () => {
    const out = await processImage(await quad(), '', { limits: mediaLimits({ maxOutputDimension: 64 }) });
    assert.deepEqual([out.info.width, out.info.height], [64, 32]);
  });

  it('extract (crop): cuts the requested rectangle, and refuses one outside the image', async () => {
    const img = await quad();
    const out = await run(img, 'crop:left=100,top=0,width=100,height=50');
    assert.deepEqual([out.info.width, out.info.height], [100, 50]);
    const m = await means(out.data);
    assertColour(m, QUADRANTS.topRight, 2);
    const err = await processImage(img, 'extract:left=150,top=0,width=100,height=10', { limits }).catch((e: unknown) => e);
    assert.equal((err as { code?: string }).code, 'ERR_VALIDATION');
    assert.equal((err as { details?: { operation?: string } }).details?.operation, 'extract');
  });

  it('rotate: 90° clockwise swaps dimensions and moves the bottom-left corner to the top-left', async () => {
    const out = await run(await quad(), 'rotate:90');
    assert.deepEqual([out.info.width, out.info.height], [100, 200]);
    assertColour(await pixel(out.data, 2, 2), QUADRANTS.bottomLeft);
    assertColour(await pixel(out.data, 97, 2), QUADRANTS.topLeft);
  });

  it('rotate: other angles grow the canvas and fill corners with the background colour', async () => {
    const out = await run(await quad(), 'rotate:45,background=%23000000');
    assert.ok(out.info.width > 200 && out.info.height > 100);
    assertColour(await pixel(out.data, 0, 0), [0, 0, 0], 10);
  });

  it('flip mirrors top-bottom and flop mirrors left-right', async () => {
    const img = await quad();
    assertColour(await pixel((await run(img, 'flip')).data, 2, 2), QUADRANTS.bottomLeft);
    assertColour(await pixel((await run(img, 'flop')).data, 2, 2), QUADRANTS.topRight);
  });

  it('mirroring happens before cropping, with or without a rotation', async () => {
    const img = await quad();
    // After flop the top-left 100×50 is green; cropping first then mirroring would give red.
    const flopped = await run(img, 'flop/crop:left=0,top=0,width=100,height=50');
    assertColour(await means(flopped.data), QUADRANTS.topRight, 2);
    const withRotate = await run(img, 'flop/rotate:180/crop:left=0,top=0,width=100,height=50');
    // flop then rotate 180 == flip: top-left becomes bottom-left (blue).
    assertColour(await means(withRotate.data), QUADRANTS.bottomLeft, 2);
  });

  it('trim removes a uniform border', async () => {
    const inner = await solid(50, 30, '#ff0000');
    const bordered = await sharp(inner).extend({ top: 20, bottom: 20, left: 20, right: 20, background: '#ffffff' }).png().toBuffer();
    const out = await run(bordered, 'trim');
    assert.deepEqual([out.info.width, out.info.height], [50, 30]);
    // One-sided resizes after trim are still capped even though the trimmed size is unknown up front.
    const tall = await sharp(await solid(20, 400, '#ff0000')).extend({ left: 200, right: 200, background: '#ffffff' }).png().toBuffer();
    const capped = await processImage(tall, 'trim/resize:width=60,enlarge=true', { limits: mediaLimits({ maxOutputDimension: 128 }) });
    assert.ok(capped.info.height <= 128, `height ${capped.info.height}`);
    assert.equal(capped.info.width, 6);
  });

  it('blur softens edges and sharpen restores them', async () => {
    const img = await quadrants(200, 100, 'png');
    const base = await sharp(img).stats();
    const blurred = await run(img, 'blur:8');
    const soft = await sharp(blurred.data).stats();
    assert.ok(soft.sharpness < base.sharpness, `${soft.sharpness} < ${base.sharpness}`);
    const sharpened = await run(blurred.data, 'sharpen:sigma=3');
    const crisp = await sharp(sharpened.data).stats();
    assert.ok(crisp.sharpness > soft.sharpness, `${crisp.sharpness} > ${soft.sharpness}`);
  });

  it('modulate changes brightness, saturation and hue in the expected direction', async () => {
    const grey = await solid(32, 32, '#606060');
    const brighter = await means((await run(grey, 'modulate:brightness=1.5')).data);
    assert.ok(brighter[0]! > 0x60 + 20, `brighter ${brighter}`);
    const red = await solid(32, 32, '#c03030');
    const desaturated = await means((await run(red, 'modulate:saturation=0')).data);
    assert.ok(Math.abs(desaturated[0]! - desaturated[1]!) < 6, `desaturated ${desaturated}`);
    const shifted = await means((await run(red, 'modulate:hue=120')).data);
    assert.ok(shifted[1]! > shifted[0]!, `hue-rotated red is greener: ${shifted}`);
  });

  it('grayscale makes every channel equal', async () => {
    const out = await run(await quad(), 'grayscale/format:png');
    const stats = await sharp(out.data).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    for (let i = 0; i < stats.data.length; i += stats.info.channels) {
      assert.equal(stats.data[i], stats.data[i + 1]);
      assert.equal(stats.data[i + 1], stats.data[i + 2]);
    }
  });

  it('tint pushes a neutral image towards the colour', async () => {
    const m = await means((await run(await solid(32, 32, '#808080'), 'tint:%230000ff')).data);
    assert.ok(m[2]! > m[0]! + 20, `blue > red: ${m}`);
  });

  it('gamma with a lower output gamma darkens the image', async () => {
    const img = await gradient();
    const before = (await means(img))[0]!;
    const after = (await means((await run(img, 'gamma:value=2.2,out=1')).data))[0]!;
    assert.ok(after < before - 20, `${after} < ${before}`);
    const neutral = (await means((await run(img, 'gamma')).data))[0]!;
    assert.ok(Math.abs(neutral - before) < 3, `value=out is near-neutral: ${neutral} vs ${before}`);
  });

  it('normalize stretches a low-contrast image to the full range', async () => {
    const img = await gradient(100, 150);
    const stats = await sharp((await run(img, 'normalize')).data).stats();
    assert.ok(stats.channels[0]!.min < 10, `min ${stats.channels[0]!.min}`);
    assert.ok(stats.channels[0]!.max > 235, `max ${stats.channels[0]!.max}`);
  });

  it('flatten replaces transparency with the colour and removes alpha', async () => {
    const out = await run(await pngWithAlpha(), 'flatten:%230000ff');
    const meta = await sharp(out.data).metadata();
    assert.equal(meta.hasAlpha, false);
    assertColour(await pixel(out.data, 250, 10), [0, 0, 255], 2);
    assertColour(await pixel(out.data, 5, 10), [255, 0, 0], 2);
  });

  it('background sets the colour flatten uses by default', async () => {
    const out = await run(await pngWithAlpha(), 'flatten/background:%2300ff00');
    assertColour(await pixel(out.data, 250, 10), [0, 255, 0], 2);
  });

  it('format writes each output format, recognised by its bytes', async () => {
    const img = await quadrants(64, 32, 'png');
    for (const [type, vips] of [['jpeg', 'jpeg'], ['png', 'png'], ['webp', 'webp'], ['avif', 'heif'], ['gif', 'gif'], ['tiff', 'tiff']] as const) {
      const out = await run(img, `format:${type}`);
      assert.equal(out.info.format, type);
      assert.equal((await sharp(out.data).metadata()).format, vips, type);
      assert.deepEqual([out.info.width, out.info.height], [64, 32]);
    }
  });

  it('quality trades size for fidelity', async () => {
    const img = await quadrants(400, 200, 'png');
    const blurred = (await run(img, 'blur:2')).data;
    const low = await run(blurred, 'format:jpeg/quality:10');
    const high = await run(blurred, 'format:jpeg,quality=95');
    assert.ok(low.info.size < high.info.size, `${low.info.size} < ${high.info.size}`);
  });
});
