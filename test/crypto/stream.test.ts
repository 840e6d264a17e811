import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, hkdfSync, createCipheriv, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  ciphertextSize,
  decryptBlob,
  decryptRange,
  decryptStream,
  encryptStream,
  HEADER_MAX_LENGTH,
  headerLengthFor,
  openRange,
  planRange,
  plaintextSize,
  readHeader,
  SEGMENT_SIZE,
  TAG_LENGTH,
  type KeyLookup,
} from '../../src/crypto/stream.js';
import { AppError } from '../../src/errors.js';
import vectorFile from './vectors.json' with { type: 'json' };

const KEY = Buffer.alloc(32, 7);
const BLOB = 'ast_test';
const KEY_ID = 'tk_test';
const keyFor: KeyLookup = () => KEY;

function chunksOf(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

async function encrypt(plain: Buffer, opts: { segmentSize?: number; chunk?: number; blobId?: string; random?: (n: number) => Buffer } = {}): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(
    Readable.from(chunksOf(plain, opts.chunk ?? 8192)),
    encryptStream({ key: KEY, keyId: KEY_ID, blobId: opts.blobId ?? BLOB, segmentSize: opts.segmentSize, random: opts.random }),
    new Writable({
      write(c: Buffer, _e, cb) {
        parts.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(parts);
}

/** Decrypts, returning every byte emitted before the stream ended or failed, and the failure. */
async function decrypt(cipher: Buffer, opts: { keyFor?: KeyLookup; blobId?: string; chunk?: number } = {}): Promise<{ out: Buffer; err: unknown }> {
  const parts: Buffer[] = [];
  let err: unknown;
  try {
    await pipeline(
      Readable.from(chunksOf(cipher, opts.chunk ?? 5000)),
      decryptStream({ keyFor: opts.keyFor ?? keyFor, blobId: opts.blobId ?? BLOB }),
      new Writable({
        write(c: Buffer, _e, cb) {
          parts.push(c);
          cb();
        },
      }),
    );
  } catch (e) {
    err = e;
  }
  return { out: Buffer.concat(parts), err };
}

function assertIntegrity(err: unknown): void {
  assert.ok(err instanceof AppError, `expected an AppError, got ${String(err)}`);
  assert.equal(err.code, 'ERR_INTEGRITY');
  assert.equal(err.status, 500);
}

/** Splits a blob made with segment size `s` into header and sealed segments. */
function split(cipher: Buffer, s: number): { header: Buffer; segments: Buffer[] } {
  const { headerLength } = readHeader(cipher);
  return { header: cipher.subarray(0, headerLength), segments: chunksOf(cipher.subarray(headerLength), s + TAG_LENGTH) };
}

const pattern = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff));

describe('test vectors', () => {
  const { vectors } = vectorFile as { vectors: Array<Record<string, string | number>> };

  test('encryption with the vector salt and prefix reproduces every vector byte for byte', async () => {
    assert.ok(vectors.length >= 4);
    for (const v of vectors) {
      const rnd = [Buffer.from(v.salt as string, 'hex'), Buffer.from(v.noncePrefix as string, 'hex')];
      const parts: Buffer[] = [];
      await pipeline(
        Readable.from([Buffer.from(v.plaintext as string, 'hex')]),
        encryptStream({ key: Buffer.from(v.key as string, 'hex'), keyId: v.keyId as string, blobId: v.blobId as string, segmentSize: v.segmentSize as number, random: () => rnd.shift()! }),
        new Writable({
          write(c: Buffer, _e, cb) {
            parts.push(c);
            cb();
          },
        }),
      );
      assert.equal(Buffer.concat(parts).toString('hex'), v.ciphertext, v.description as string);
    }
  });

  test('every vector decrypts to its plaintext', async () => {
    for (const v of vectors) {
      const { out, err } = await decrypt(Buffer.from(v.ciphertext as string, 'hex'), { keyFor: () => Buffer.from(v.key as string, 'hex'), blobId: v.blobId as string, chunk: 7 });
      assert.equal(err, undefined);
      assert.equal(out.toString('hex'), v.plaintext, v.description as string);
    }
  });

  test('the format matches a construction written directly from the documented layout', async () => {
    // Independent of stream.ts: header bytes, HKDF and nonces assembled by hand from the spec.
    const salt = randomBytes(32);
    const prefix = randomBytes(7);
    const plain = pattern(40);
    const kid = Buffer.from(KEY_ID);
    const seg = Buffer.alloc(4);
    seg.writeUInt32BE(16);
    const header = Buffer.concat([Buffer.from('OBSC'), Buffer.from([1]), seg, Buffer.from([kid.length]), kid, salt, prefix]);
    const blobKey = Buffer.from(hkdfSync('sha256', KEY, salt, Buffer.from(`obscura/blob/v1${BLOB}`), 32));
    const expected = [header];
    for (let i = 0; i < 3; i++) {
      const nonce = Buffer.concat([prefix, Buffer.from([0, 0, 0, i, i === 2 ? 1 : 0])]);
      const c = createCipheriv('aes-256-gcm', blobKey, nonce).setAAD(header);
      expected.push(c.update(plain.subarray(i * 16, i * 16 + 16)), c.final(), c.getAuthTag());
    }
    const rnd = [salt, prefix];
    const actual = await encrypt(plain, { segmentSize: 16, random: () => rnd.shift()! });
    assert.equal(actual.toString('hex'), Buffer.concat(expected).toString('hex'));
  });
});

describe('round trips and sizes', () => {
  test('round-trips every size around segment boundaries, whatever the chunking', async () => {
    const s = 16;
    for (const n of [0, 1, 15, 16, 17, 31, 32, 33, 48, 100]) {
      const plain = pattern(n);
      for (const chunk of [1, 5, 16, 64]) {
        const cipher = await encrypt(plain, { segmentSize: s, chunk });
        assert.equal(cipher.length, ciphertextSize(n, headerLengthFor(KEY_ID), s));
        assert.equal(plaintextSize(cipher.length, headerLengthFor(KEY_ID), s), n);
        for (const dchunk of [1, 17, 1000]) {
          const { out, err } = await decrypt(cipher, { chunk: dchunk });
          assert.equal(err, undefined);
          assert.ok(out.equals(plain), `size ${n} chunk ${chunk}/${dchunk}`);
        }
      }
    }
  });

  test('round-trips with the default 64 KiB segments, including exact multiples', async () => {
    for (const n of [SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE, 3 * SEGMENT_SIZE + 12345]) {
      const plain = randomBytes(n);
      const cipher = await encrypt(plain, { chunk: 10_000 });
      assert.equal(cipher.length, ciphertextSize(n, headerLengthFor(KEY_ID)));
      const { out, err } = await decrypt(cipher, { chunk: 65_536 });
      assert.equal(err, undefined);
      assert.ok(out.equals(plain));
    }
  });

  test('an empty plaintext is a header and one empty final segment that decrypts to nothing', async () => {
    const cipher = await encrypt(Buffer.alloc(0));
    assert.equal(cipher.length, headerLengthFor(KEY_ID) + TAG_LENGTH);
    const { out, err } = await decrypt(cipher);
    assert.equal(err, undefined);
    assert.equal(out.length, 0);
  });

  test('the header records the key id, segment size, salt and nonce prefix', async () => {
    const cipher = await encrypt(pattern(10));
    const { header, headerLength } = readHeader(cipher);
    assert.equal(headerLength, headerLengthFor(KEY_ID));
    assert.equal(header.version, 1);
    assert.equal(header.keyId, KEY_ID);
    assert.equal(header.segmentSize, SEGMENT_SIZE);
    assert.equal(header.salt.length, 32);
    assert.equal(header.noncePrefix.length, 7);
  });

  test('encrypting the same plaintext twice gives unrelated ciphertexts (fresh salt and prefix)', async () => {
    const plain = pattern(100);
    const a = await encrypt(plain);
    const b = await encrypt(plain);
    assert.equal(a.length, b.length);
    assert.ok(!readHeader(a).header.salt.equals(readHeader(b).header.salt));
    assert.ok(!a.subarray(headerLengthFor(KEY_ID)).equals(b.subarray(headerLengthFor(KEY_ID))));
  });

  test('plaintextSize refuses sizes that no plaintext encrypts to', () => {
    const h = headerLengthFor(KEY_ID);
    for (const bad of [h - 1, h, h + 15, h + 16 + 16 + 15, h + 16 + 16 + 16]) {
      assert.throws(() => plaintextSize(bad, h, 16), (e: unknown) => e instanceof AppError && e.code === 'ERR_INTEGRITY', String(bad));
    }
    assert.equal(plaintextSize(h + 16, h, 16), 0);
    assert.equal(plaintextSize(h + 32 + 17, h, 16), 17);
  });

  test('refuses a key that is not 32 bytes and ids that cannot be encoded unambiguously', () => {
    assert.throws(() => encryptStream({ key: Buffer.alloc(31), keyId: KEY_ID, blobId: BLOB }), RangeError);
    assert.throws(() => encryptStream({ key: KEY, keyId: '', blobId: BLOB }), RangeError);
    assert.throws(() => encryptStream({ key: KEY, keyId: 'x'.repeat(256), blobId: BLOB }), RangeError);
    assert.throws(() => encryptStream({ key: KEY, keyId: KEY_ID, blobId: '\ud800' }), RangeError);
    assert.throws(() => encryptStream({ key: KEY, keyId: KEY_ID, blobId: BLOB, segmentSize: 2 * 1024 * 1024 }), RangeError);
    assert.ok(encryptStream({ key: KEY, keyId: 'x'.repeat(255), blobId: BLOB }));
  });

  test('streams 256 MiB through encryption and decryption in bounded memory', async () => {
    const total = 256 * 1024 * 1024;
    const block = randomBytes(1024 * 1024);
    const inHash = createHash('sha256');
    const outHash = createHash('sha256');
    async function* source() {
      let sent = 0;
      for (let i = 0; sent < total; i++) {
        // Uneven chunk sizes so segment boundaries fall everywhere inside chunks.
        const n = Math.min(total - sent, 1000 + ((i * 7919) % 120_000));
        const off = (i * 4099) % (block.length - n);
        const chunk = block.subarray(off, off + n);
        inHash.update(chunk);
        sent += n;
        yield chunk;
      }
    }
    // What "bounded" means is what stays reachable, not when V8 chooses to collect: measure the live
    // heap and buffers right after a forced full GC (exposed for this test only), every 16 MiB.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const mem = () => {
      const m = process.memoryUsage();
      return { rss: m.rss, live: m.heapUsed + m.arrayBuffers };
    };
    gc();
    const base = mem();
    let peakRss = 0;
    let peakLive = 0;
    let seen = 0;
    let nextSample = 0;
    await pipeline(
      source(),
      encryptStream({ key: KEY, keyId: KEY_ID, blobId: BLOB }),
      decryptStream({ keyFor, blobId: BLOB }),
      new Writable({
        write(c: Buffer, _e, cb) {
          outHash.update(c);
          seen += c.length;
          if (seen >= nextSample) {
            nextSample += 16 * 1024 * 1024;
            gc();
            const m = mem();
            peakRss = Math.max(peakRss, m.rss - base.rss);
            peakLive = Math.max(peakLive, m.live - base.live);
          }
          cb();
        },
      }),
    );
    assert.equal(seen, total);
    assert.equal(outHash.digest('hex'), inHash.digest('hex'));
    // Holding the data would keep >= 256 MiB reachable. Streaming keeps a few segments; what remains
    // is freed ArrayBuffers V8 releases lazily, measured at 0-40 MiB whatever the volume.
    assert.ok(peakLive < 64 * 1024 * 1024, `live heap + buffers after GC grew by ${(peakLive / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(peakRss < 96 * 1024 * 1024, `RSS grew by ${(peakRss / 2 ** 20).toFixed(1)} MiB`);
  });
});

describe('tampering is detected', () => {
  const S = 16;
  const plain = pattern(40); // segments of 16, 16 and 8 bytes
  let cipher: Buffer;
  const fresh = async () => (cipher ??= await encrypt(plain, { segmentSize: S }));

  test('the untouched blob decrypts (control for every case below)', async () => {
    const { out, err } = await decrypt(await fresh());
    assert.equal(err, undefined);
    assert.ok(out.equals(plain));
  });

  test('every single-bit flip anywhere in the blob is refused with ERR_INTEGRITY', async () => {
    const c = await fresh();
    for (let i = 0; i < c.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const bad = Buffer.from(c);
        bad[i]! ^= bit;
        const { err } = await decrypt(bad);
        assertIntegrity(err);
      }
    }
  });

  test('dropping the final segment (a cut at a segment boundary) is detected', async () => {
    const { header, segments } = split(await fresh(), S);
    assertIntegrity((await decrypt(Buffer.concat([header, ...segments.slice(0, 2)]))).err);
    assertIntegrity((await decrypt(Buffer.concat([header, ...segments.slice(0, 1)]))).err);
    assertIntegrity((await decrypt(header)).err);
  });

  test('a cut in the middle of a segment, of its tag or of the header is detected', async () => {
    const c = await fresh();
    const h = headerLengthFor(KEY_ID);
    for (const len of [c.length - 1, c.length - TAG_LENGTH, h + S + TAG_LENGTH + 3, h + 5, h - 1, 9, 3, 0]) {
      assertIntegrity((await decrypt(c.subarray(0, len))).err);
    }
  });

  test('reordered segments are detected', async () => {
    const { header, segments } = split(await fresh(), S);
    const [a, b, z] = segments as [Buffer, Buffer, Buffer];
    assertIntegrity((await decrypt(Buffer.concat([header, b, a, z]))).err);
  });

  test('a duplicated segment is detected', async () => {
    const { header, segments } = split(await fresh(), S);
    const [a, b, z] = segments as [Buffer, Buffer, Buffer];
    assertIntegrity((await decrypt(Buffer.concat([header, a, a, b, z]))).err);
    assertIntegrity((await decrypt(Buffer.concat([header, a, b, z, z]))).err);
  });

  test('bytes appended after the final segment are detected', async () => {
    const c = await fresh();
    const { segments } = split(c, S);
    for (const extra of [Buffer.from([0]), Buffer.alloc(TAG_LENGTH), segments[2]!, Buffer.concat([segments[0]!, segments[1]!])]) {
      assertIntegrity((await decrypt(Buffer.concat([c, extra]))).err);
    }
  });

  test('decryptBlob (small files in memory) decrypts what the stream does and refuses every tampering above', async () => {
    const whole = async (c: Buffer, blobId = BLOB) => decryptBlob(c, { keyFor, blobId }).then((out) => ({ out, err: undefined as unknown }), (err: unknown) => ({ out: undefined, err }));
    for (const n of [0, 1, S, S + 1, 40]) {
      const p = pattern(n);
      const r = await whole(await encrypt(p, { segmentSize: S }));
      assert.equal(r.err, undefined, `size ${n}`);
      assert.ok(r.out!.equals(p), `size ${n}`);
    }
    const c = await fresh();
    const { header, segments } = split(c, S);
    const [a, b, z] = segments as [Buffer, Buffer, Buffer];
    const bad: Buffer[] = [
      Buffer.concat([header, a, b]), // final segment dropped
      Buffer.concat([header, a]),
      header,
      Buffer.concat([header, b, a, z]), // reordered
      Buffer.concat([header, a, a, b, z]), // duplicated
      Buffer.concat([c, Buffer.alloc(TAG_LENGTH)]), // appended
      Buffer.concat([c, z]),
      ...[c.length - 1, c.length - TAG_LENGTH, headerLengthFor(KEY_ID) + 5, 9, 0].map((len) => c.subarray(0, len)), // cut
    ];
    for (let i = 0; i < c.length; i++) {
      const flipped = Buffer.from(c);
      flipped[i]! ^= 0x01;
      bad.push(flipped);
    }
    for (const blob of bad) assertIntegrity((await whole(blob)).err);
    assertIntegrity((await whole(c, 'ast_other')).err);
  });

  test('header edits are detected even when the edited key id names the same key', async () => {
    const c = await fresh();
    const kidAt = 10;
    const saltAt = kidAt + KEY_ID.length;
    const edits: Array<[string, (b: Buffer) => void]> = [
      ['magic', (b) => (b[0] = 0x58)],
      ['version', (b) => (b[4] = 2)],
      ['segment size', (b) => b.writeUInt32BE(32, 5)],
      ['key id', (b) => (b[kidAt + 3] = 'X'.charCodeAt(0))],
      ['salt', (b) => (b[saltAt]! ^= 1)],
      ['nonce prefix', (b) => (b[saltAt + 32 + 6]! ^= 1)],
    ];
    for (const [what, edit] of edits) {
      const bad = Buffer.from(c);
      edit(bad);
      // keyFor answers every id with the right key: only the header's authentication can catch the edit.
      const { out, err } = await decrypt(bad, { keyFor: () => KEY });
      assertIntegrity(err);
      assert.equal(out.length, 0, what);
    }
  });

  test('a header naming a longer key id than it holds is refused', async () => {
    const bad = Buffer.from(await fresh());
    bad[9] = 200;
    assertIntegrity((await decrypt(bad)).err);
  });

  test('a blob presented under another blob id does not decrypt', async () => {
    const c = await fresh();
    assertIntegrity((await decrypt(c, { blobId: 'ast_other' })).err);
  });

  test('a wrong tenant key does not decrypt', async () => {
    const c = await fresh();
    assertIntegrity((await decrypt(c, { keyFor: () => Buffer.alloc(32, 9) })).err);
  });

  test('no byte of a failing segment is ever emitted; earlier authentic segments are', async () => {
    const c = await fresh();
    const h = headerLengthFor(KEY_ID);
    const lastSegmentAt = h + 2 * (S + TAG_LENGTH);
    const bad = Buffer.from(c);
    bad[lastSegmentAt + 2]! ^= 0x10;
    const r = await decrypt(bad, { chunk: 1 });
    assertIntegrity(r.err);
    assert.ok(r.out.equals(plain.subarray(0, 2 * S)), 'exactly the two authentic segments');
    const first = Buffer.from(c);
    first[h]! ^= 0x10;
    const r0 = await decrypt(first, { chunk: 1 });
    assertIntegrity(r0.err);
    assert.equal(r0.out.length, 0);
  });

  test('an error from the key lookup (a shredded key) passes through unchanged', async () => {
    const shredded = new AppError('ERR_INTEGRITY', 'gone');
    const r = await decrypt(await fresh(), {
      keyFor: async () => {
        throw shredded;
      },
    });
    assert.equal(r.err, shredded);
    assert.equal(r.out.length, 0);
  });

  test('the key lookup is asked for exactly the key id in the header', async () => {
    const asked: string[] = [];
    const r = await decrypt(await fresh(), {
      keyFor: async (id) => {
        asked.push(id);
        return KEY;
      },
    });
    assert.equal(r.err, undefined);
    assert.deepEqual(asked, [KEY_ID]);
  });
});

/** A blob store's ranged read over an in-memory object, counting the bytes it serves. */
function memoryStore(object: Buffer) {
  const reads: Array<{ start: number; end: number }> = [];
  return {
    reads,
    get: async (range: { start: number; end: number }) => {
      if (range.start >= object.length) throw new AppError('ERR_RANGE_NOT_SATISFIABLE', 'outside');
      reads.push(range);
      return Readable.from(chunksOf(object.subarray(range.start, Math.min(range.end, object.length - 1) + 1), 1000));
    },
  };
}

async function collect(stream: Readable): Promise<{ out: Buffer; err: unknown }> {
  const parts: Buffer[] = [];
  try {
    for await (const c of stream) parts.push(c as Buffer);
    return { out: Buffer.concat(parts), err: undefined };
  } catch (err) {
    return { out: Buffer.concat(parts), err };
  }
}

describe('byte ranges', () => {
  test('every range of a multi-segment blob decrypts to exactly those bytes', async () => {
    const S = 16;
    const plain = pattern(50);
    const cipher = await encrypt(plain, { segmentSize: S });
    const { header } = readHeader(cipher);
    for (let start = 0; start < plain.length; start++) {
      for (let end = start; end < plain.length; end += 3) {
        const plan = planRange(header, plain.length, start, end);
        const src = Readable.from(chunksOf(cipher.subarray(plan.cipherStart, plan.cipherEnd + 1), 7));
        const { out, err } = await collect(src.pipe(decryptRange({ header, plan, keyFor, blobId: BLOB })));
        assert.equal(err, undefined);
        assert.ok(out.equals(plain.subarray(start, end + 1)), `${start}-${end}`);
      }
    }
  });

  test('a range fetches the header and only the segments that hold it', async () => {
    const size = 5 * SEGMENT_SIZE + 100;
    const plain = randomBytes(size);
    const cipher = await encrypt(plain, { chunk: 65_536 });
    const store = memoryStore(cipher);
    const start = 2 * SEGMENT_SIZE + 10;
    const end = 3 * SEGMENT_SIZE + 5;
    const { stream, plan } = await openRange({ get: store.get, plaintextSize: size, start, end, keyFor, blobId: BLOB });
    const { out, err } = await collect(stream);
    assert.equal(err, undefined);
    assert.ok(out.equals(plain.subarray(start, end + 1)));
    const h = headerLengthFor(KEY_ID);
    const full = SEGMENT_SIZE + TAG_LENGTH;
    assert.deepEqual(store.reads, [
      { start: 0, end: HEADER_MAX_LENGTH - 1 },
      { start: h + 2 * full, end: h + 4 * full - 1 },
    ]);
    assert.equal(plan.firstSegment, 2);
    assert.equal(plan.lastSegment, 3);
    assert.equal(plan.take, end - start + 1);
  });

  test('a range ending in the short final segment, and one past the end, are served and clamped', async () => {
    const size = 2 * SEGMENT_SIZE + 100;
    const plain = randomBytes(size);
    const cipher = await encrypt(plain);
    const store = memoryStore(cipher);
    const { stream, plan } = await openRange({ get: store.get, plaintextSize: size, start: size - 150, end: size + 1000, keyFor, blobId: BLOB });
    assert.equal(plan.end, size - 1);
    assert.equal(plan.cipherEnd, cipher.length - 1);
    const { out, err } = await collect(stream);
    assert.equal(err, undefined);
    assert.ok(out.equals(plain.subarray(size - 150)));
  });

  test('ranges outside the media are refused with ERR_RANGE_NOT_SATISFIABLE before any read', async () => {
    const cipher = await encrypt(pattern(20), { segmentSize: 16 });
    const { header } = readHeader(cipher);
    for (const [start, end] of [
      [20, 25],
      [5, 4],
      [-1, 3],
    ] as const) {
      assert.throws(() => planRange(header, 20, start, end), (e: unknown) => e instanceof AppError && e.code === 'ERR_RANGE_NOT_SATISFIABLE' && e.headers?.['content-range'] === 'bytes */20');
    }
    assert.equal(planRange(header, 20, 19, 19).take, 1);
    const empty = memoryStore(await encrypt(Buffer.alloc(0)));
    await assert.rejects(openRange({ get: empty.get, plaintextSize: 0, start: 0, end: 0, keyFor, blobId: BLOB }), (e: unknown) => e instanceof AppError && e.code === 'ERR_RANGE_NOT_SATISFIABLE');
    assert.equal(empty.reads.length, 0);
  });

  test('a tampered, short or overlong segment range is refused with ERR_INTEGRITY', async () => {
    const S = 16;
    const plain = pattern(50);
    const cipher = await encrypt(plain, { segmentSize: S });
    const { header } = readHeader(cipher);
    const plan = planRange(header, plain.length, 17, 40);
    const slice = cipher.subarray(plan.cipherStart, plan.cipherEnd + 1);
    const run = (bytes: Buffer) => collect(Readable.from(chunksOf(bytes, 5)).pipe(decryptRange({ header, plan, keyFor, blobId: BLOB })));
    assert.equal((await run(slice)).err, undefined);
    const flipped = Buffer.from(slice);
    flipped[flipped.length - 1]! ^= 1;
    assertIntegrity((await run(flipped)).err);
    assertIntegrity((await run(slice.subarray(0, slice.length - 1))).err);
    assertIntegrity((await run(slice.subarray(0, S + TAG_LENGTH))).err);
    assertIntegrity((await run(Buffer.concat([slice, Buffer.from([0])]))).err);
  });

  test('a range read checks the last-segment flag: a size that makes a middle segment look final fails', async () => {
    const S = 16;
    const plain = pattern(50);
    const cipher = await encrypt(plain, { segmentSize: S });
    const { header } = readHeader(cipher);
    // The database claims 32 bytes (a blob truncated after segment 1): segment 1 is then "final".
    const plan = planRange(header, 32, 20, 31);
    const r = await collect(Readable.from([cipher.subarray(plan.cipherStart, plan.cipherEnd + 1)]).pipe(decryptRange({ header, plan, keyFor, blobId: BLOB })));
    assertIntegrity(r.err);
    assert.equal(r.out.length, 0);
  });

  test('a range read refuses a header edited in the store', async () => {
    const plain = pattern(50);
    const cipher = Buffer.from(await encrypt(plain, { segmentSize: 16 }));
    cipher[12]! ^= 1; // inside the key id
    const store = memoryStore(cipher);
    const { stream } = await openRange({ get: store.get, plaintextSize: 50, start: 0, end: 49, keyFor: () => KEY, blobId: BLOB });
    const r = await collect(stream);
    assertIntegrity(r.err);
    assert.equal(r.out.length, 0);
  });

  test('a stored object cut before the requested segments is an integrity failure, not a client range error', async () => {
    const size = 3 * SEGMENT_SIZE;
    const cipher = await encrypt(randomBytes(size));
    for (const cut of [cipher.subarray(0, SEGMENT_SIZE), cipher.subarray(0, 0)]) {
      const store = memoryStore(cut);
      await assert.rejects(openRange({ get: store.get, plaintextSize: size, start: 2 * SEGMENT_SIZE, end: size - 1, keyFor, blobId: BLOB }), (e: unknown) => e instanceof AppError && e.code === 'ERR_INTEGRITY');
    }
  });

  test('a store that serves fewer bytes than asked makes the range stream fail, not end short', async () => {
    const size = 3 * SEGMENT_SIZE;
    const plain = randomBytes(size);
    const cipher = await encrypt(plain);
    const truncated = memoryStore(cipher.subarray(0, cipher.length - 1000));
    const { stream } = await openRange({ get: truncated.get, plaintextSize: size, start: SEGMENT_SIZE, end: size - 1, keyFor, blobId: BLOB });
    const r = await collect(stream);
    assertIntegrity(r.err);
    assert.ok(r.out.equals(plain.subarray(SEGMENT_SIZE, 2 * SEGMENT_SIZE)), 'only the authentic middle segment');
  });
});
