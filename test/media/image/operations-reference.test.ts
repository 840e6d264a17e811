/**
 * Issue 9, item 11: the operation reference is generated from the registry itself. docs/operations.md
 * is exactly what `npm run docs:operations` writes from the current registry (so CI fails when an entry
 * changes without the docs), the reference carries every entry's parameters with the ranges, values and
 * defaults of its schema, and validation errors name what is allowed for every parameter type.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { OPERATION_LIST, OPERATION_REFERENCE, parseOperations, serializeOperations } from '../../../src/media/image/operations/registry.js';
import { renderReferenceMarkdown } from '../../../src/media/describe.js';
import { VIDEO_OPERATION_REFERENCE } from '../../../src/media/video/operations.js';
import { AppError } from '../../../src/errors.js';

const ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../../../' : '../../../', import.meta.url));

function refusal(input: unknown): AppError {
  try {
    parseOperations(input);
  } catch (err) {
    assert.ok(err instanceof AppError);
    assert.equal(err.code, 'ERR_VALIDATION');
    return err;
  }
  assert.fail(`${JSON.stringify(input)} was accepted`);
}

describe('operation reference', () => {
  test('docs/operations.md is exactly what the registry generates (run `npm run docs:operations` after changing an operation)', () => {
    const checkedIn = readFileSync(`${ROOT}docs/operations.md`, 'utf8');
    assert.equal(checkedIn, renderReferenceMarkdown(OPERATION_REFERENCE, VIDEO_OPERATION_REFERENCE), 'docs/operations.md is stale: run `npm run docs:operations`');
  });

  test('the reference lists every operation and every parameter with the schema’s types, ranges, values, defaults and aliases', () => {
    assert.deepEqual(OPERATION_REFERENCE.operations.map((o) => o.name), OPERATION_LIST.map((o) => o.name));
    for (const def of OPERATION_LIST) {
      const op = OPERATION_REFERENCE.operations.find((o) => o.name === def.name)!;
      const props = (def.schema as { properties: Record<string, unknown> }).properties;
      assert.deepEqual(op.parameters.map((p) => p.name), Object.keys(props), def.name);
    }
    const byName = (n: string) => OPERATION_REFERENCE.operations.find((o) => o.name === n)!;
    const width = byName('resize').parameters.find((p) => p.name === 'width')!;
    assert.deepEqual({ type: width.type, minimum: width.minimum, maximum: width.maximum, required: width.required, primary: width.primary }, { type: 'integer', minimum: 1, maximum: 16383, required: false, primary: true });
    const type = byName('format').parameters.find((p) => p.name === 'type')!;
    assert.equal(type.type, 'enum');
    assert.ok(type.values!.includes('jpeg') && type.values!.includes('webp'));
    assert.equal(type.value_aliases?.jpg, 'jpeg');
    assert.equal(byName('sharpen').parameters[0]!.default, 1);
    assert.equal(byName('tint').parameters[0]!.type, 'colour');
    assert.equal(byName('resize').parameters.find((p) => p.name === 'enlarge')!.type, 'boolean');
    assert.deepEqual(byName('extract').aliases, ['crop']);
    assert.equal(byName('watermark').reads_assets, true);
  });

  test('format:jpg is accepted as jpeg (an alias users expect) and stored canonically', () => {
    assert.equal(serializeOperations(parseOperations('format:jpg')), 'format:type=jpeg');
    assert.equal(serializeOperations(parseOperations([{ op: 'format', type: 'tif' }])), 'format:type=tiff');
  });

  test('validation errors name what is allowed for enums, integer and number ranges, booleans and colours', () => {
    const first = (input: unknown) => (refusal(input).details!.errors as Array<{ parameter: string; allowed: Record<string, unknown>; got?: unknown }>)[0]!;
    const fmt = first('format:bmp');
    assert.equal(fmt.parameter, 'type');
    assert.equal(fmt.allowed.type, 'enum');
    assert.deepEqual(fmt.allowed.values, ['jpeg', 'png', 'webp', 'avif', 'gif', 'tiff', 'auto']);
    assert.equal(fmt.got, 'bmp');
    assert.deepEqual(first('resize:width=0').allowed, { type: 'integer', minimum: 1, maximum: 16383 });
    assert.deepEqual({ ...first('blur:500').allowed }, { type: 'number', minimum: 0.3, maximum: 100 });
    assert.equal(first('resize:width=10,enlarge=yes').allowed.type, 'boolean');
    assert.equal(first('tint:red').allowed.type, 'colour');
    // A missing required parameter names its range too.
    const missing = first([{ op: 'blur' }]);
    assert.equal(missing.parameter, 'sigma');
    assert.equal(missing.allowed.minimum, 0.3);
    // Unknown operations and parameters list what exists.
    assert.ok((refusal('bogus:1').details!.allowed as string[]).includes('resize'));
    assert.deepEqual(refusal('flip:x=1').details!.allowed, []);
    assert.ok((refusal('resize:widht=10').details!.allowed as string[]).includes('width'));
  });
});
