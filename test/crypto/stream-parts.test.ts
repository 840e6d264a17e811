/**
 * Format version 2: an asset as a sequence of independently sealed parts (docs/encryption-format.md,
 * "Version 2"). Vectors from an independent Python implementation, and every way of rearranging
 * parts failing with ERR_INTEGRITY while the genuine arrangement reads back.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decryptStream, encryptStream, openParts, readHeader, HEADER_MAX_LENGTH, type StoredPart } from '../../src/crypto/stream.js';
import { AppError } from '../../src/errors.js';
import vectorFile from './vectors-v2.json' with { type: 'json' };

const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const keyFor = () => KEY;
/**
 * Header length of a version-2 part, from the spec (docs/encryption-format.md: 58 + L + I, L and I the
 * UTF-8 lengths of the key id and part id); written here, not imported, so the test checks the code
 * against the document.
 */
const partHeaderLengthFor = (keyId: string, partId: string): number => 58 + Buffer.byteLength(keyId) + Buffer.byteLength(partId);

async function drain(stream: Readable): Promise<{ out: Buffer; err: unknown }> {
  const chunks: Buffer[] = [];
  let err: unknown;
  try {
    for await (const c of stream) chunks.push(c as Buffer);
  } catch (e) {
    err = e;
  }
  return { out: Buffer.concat(chunks), err };
}

async function seal(plain: Buffer, o: { assetId: string; id: string; offset: number; assetSize: number; segmentSize?: number; random?: (n: number) => Buffer }): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(
    Readable.from([plain]),
    encryptStream({ key: KEY, keyId: 'tk_vector', blobId: o.assetId, part: { id: o.id, offset: o.offset, assetSize: o.assetSize }, ...(o.segmentSize ? { segmentSize: o.segmentSize } : {}), ...(o.random ? { random: o.random } : {}) }),
    new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(chunks);
}

/** Parts held in memory, with ranged reads like a store's. */
function stored(list: Array<{ id: string; offset: number; size: number; bytes: Buffer }>): StoredPart[] {
  return list.map((p) => ({ id: p.id, offset: p.offset, size: p.size, get: async (r) => Readable.from([r ? p.bytes.subarray(r.start, r.end + 1) : p.bytes]) }));
}

function assertIntegrity(err: unknown, what: string): void {
  assert.ok(err instanceof AppError, `${what}: expected an AppError, got ${String(err)}`);
  assert.equal(err.code, 'ERR_INTEGRITY', what);
}

describe('format version 2 (asset parts)', () => {
  const { vectors } = vectorFile as unknown as {
    vectors: Array<{ description: string; assetId: string; salt: string; noncePrefix: string; segmentSize: number; assetSize: number; parts: Array<{ id: string; offset: number; final: boolean; plaintext: string; ciphertext: string }> }>;
  };

  test('sealing each vector part with its salt and prefix reproduces it byte for byte, and the parts read back as the asset', async () => {
    assert.ok(vectors.length >= 2);
    for (const v of vectors) {
      const list = [];
      for (const p of v.parts) {
        const rnd = [Buffer.from(v.salt, 'hex'), Buffer.from(v.noncePrefix, 'hex')];
        const bytes = await seal(Buffer.from(p.plaintext, 'hex'), { assetId: v.assetId, id: p.id, offset: p.offset, assetSize: v.assetSize, segmentSize: v.segmentSize, random: () => rnd.shift()! });
        assert.equal(bytes.toString('hex'), p.ciphertext, `${v.description}: ${p.id}`);
        list.push({ id: p.id, offset: p.offset, size: p.plaintext.length / 2, bytes: Buffer.from(p.ciphertext, 'hex') });
      }
      const { out, err } = await drain(openParts({ parts: stored(list), plaintextSize: v.assetSize, keyFor, blobId: v.assetId }).stream);
      assert.equal(err, undefined);
      assert.equal(out.toString('hex'), v.parts.map((p) => p.plaintext).join(''), v.description);
    }
  });

  test('a version-2 header carries the part offset and id, and fits in HEADER_MAX_LENGTH', () => {
    const v = vectors[1]!;
    const { header, headerLength } = readHeader(Buffer.from(v.parts[1]!.ciphertext, 'hex'));
    assert.equal(header.version, 2);
    assert.deepEqual(header.part, { offset: 24, id: 'part1' });
    assert.equal(headerLength, partHeaderLengthFor('tk_vector', 'part1'));
    assert.equal(partHeaderLengthFor('k'.repeat(255), 'p'.repeat(32)), HEADER_MAX_LENGTH);
  });

  describe('rearranged parts are refused, the genuine arrangement reads', () => {
    const ASSET = 'ast_parts';
    const sizes = [70_001, 65_536, 1, 100_000];
    const total = sizes.reduce((a, b) => a + b, 0);
    const plain = randomBytes(total);
    let genuine: Array<{ id: string; offset: number; size: number; bytes: Buffer }>;
    const read = (list: typeof genuine, o: { size?: number; start?: number; end?: number; assetId?: string } = {}) =>
      drain(openParts({ parts: stored(list), plaintextSize: o.size ?? list.reduce((n, p) => n + p.size, 0), keyFor, blobId: o.assetId ?? ASSET, ...(o.start !== undefined ? { start: o.start, end: o.end! } : {}) }).stream);

    test('genuine parts read whole and in every range across boundaries', async () => {
      genuine = [];
      let at = 0;
      for (const [i, n] of sizes.entries()) {
        genuine.push({ id: `p${i}`, offset: at, size: n, bytes: await seal(plain.subarray(at, at + n), { assetId: ASSET, id: `p${i}`, offset: at, assetSize: total }) });
        at += n;
      }
      const whole = await read(genuine);
      assert.equal(whole.err, undefined);
      assert.ok(whole.out.equals(plain));
      for (const [start, end] of [[0, 0], [70_000, 70_001], [70_001 + 65_535, 70_001 + 65_537], [5, total - 5], [total - 1, total + 100]] as const) {
        const r = await read(genuine, { start, end });
        assert.equal(r.err, undefined, `${start}-${end}`);
        assert.ok(r.out.equals(plain.subarray(start, Math.min(end, total - 1) + 1)), `${start}-${end}`);
      }
    });

    test('swapped, duplicated, dropped, cut, foreign or wrongly final parts fail with ERR_INTEGRITY', async () => {
      const g = genuine;
      const withBytes = (i: number, bytes: Buffer) => g.map((p, k) => (k === i ? { ...p, bytes } : p));
      const otherAsset = await seal(plain.subarray(g[1]!.offset, g[1]!.offset + g[1]!.size), { assetId: 'ast_other', id: 'p1', offset: g[1]!.offset, assetSize: total });
      const asFinal = await seal(plain.subarray(0, g[2]!.offset + g[2]!.size), { assetId: ASSET, id: 'x', offset: 0, assetSize: g[2]!.offset + g[2]!.size });
      const cases: Array<[string, typeof g, number?]> = [
        ['parts 1 and 2 swapped (bytes)', g.map((p, k) => (k === 1 ? { ...p, bytes: g[2]!.bytes } : k === 2 ? { ...p, bytes: g[1]!.bytes } : p))],
        ['part 1 duplicated over part 2', withBytes(2, g[1]!.bytes)],
        ['part 1 of another asset', withBytes(1, otherAsset)],
        ['final part cut by one byte', withBytes(3, g[3]!.bytes.subarray(0, g[3]!.bytes.length - 1))],
        ['final part cut at a segment boundary', withBytes(3, g[3]!.bytes.subarray(0, partHeaderLengthFor('tk_vector', 'p3') + 65_536 + 16))],
        ['bytes appended to a middle part', withBytes(1, Buffer.concat([g[1]!.bytes, g[1]!.bytes.subarray(-40)]))],
        ['the manifest drops the final part', g.slice(0, 3)],
        ['a final part listed before another', [{ id: 'x', offset: 0, size: g[2]!.offset + g[2]!.size, bytes: asFinal }, g[3]!]],
        ['a part listed under another id', g.map((p, k) => (k === 1 ? { ...p, id: 'p9' } : p))],
      ];
      for (const [what, list] of cases) {
        const { err } = await read(list);
        assertIntegrity(err, what);
      }
      // A manifest that does not tile the asset is refused before any read.
      assert.throws(() => openParts({ parts: stored([g[0]!, g[2]!, g[3]!]), plaintextSize: total - g[1]!.size, keyFor, blobId: ASSET }), (e) => e instanceof AppError && e.code === 'ERR_INTEGRITY');
      // The whole asset under another asset id.
      assertIntegrity((await read(g, { assetId: 'ast_elsewhere' })).err, 'another asset id');
      // A range inside a moved part fails too (ranged reads check identity as well).
      assertIntegrity((await read(withBytes(2, g[1]!.bytes), { start: g[2]!.offset, end: g[2]!.offset })).err, 'ranged read of a duplicated part');
    });

    test('a part and a whole (version-1) blob are never read as each other', async () => {
      const part = genuine[0]!;
      const asBlob = await drain(Readable.from([part.bytes]).pipe(decryptStream({ keyFor, blobId: ASSET })));
      assertIntegrity(asBlob.err, 'a part read as a whole blob');
      const blob: Buffer[] = [];
      await pipeline(Readable.from([plain.subarray(0, 100)]), encryptStream({ key: KEY, keyId: 'tk_vector', blobId: ASSET }), new Writable({ write: (c: Buffer, _e, cb) => (blob.push(c), cb()) }));
      const { err } = await drain(openParts({ parts: stored([{ id: 'p0', offset: 0, size: 100, bytes: Buffer.concat(blob) }]), plaintextSize: 100, keyFor, blobId: ASSET }).stream);
      assertIntegrity(err, 'a whole blob read as a part');
    });
  });
});
