/**
 * Regression: the storage path must hold a bounded number of bytes whatever the blob size (a server
 * that buffers an upload or a download grows with the file: a memory DoS). These tests push 64 MiB
 * through the streaming AEAD into a deliberately slow consumer and bound the bytes in flight
 * (produced by the source but not yet consumed), which a stage with an unbounded queue or a huge
 * highWaterMark would blow through.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decryptStream, encryptStream } from '../../src/crypto/stream.js';

const KEY = randomBytes(32);
const TOTAL = 64 * 1024 * 1024;
/** One segment per stage plus stream highWaterMarks: far below this, far above any real queue. */
const MAX_IN_FLIGHT = 2 * 1024 * 1024;

/**
 * Streams TOTAL pseudo-random bytes in odd-sized chunks (so segments straddle chunks) through
 * `stages` into a sink that yields to the event loop on every chunk; returns the largest
 * produced-minus-consumed count seen and whether the output's SHA-256 matched the input's.
 */
async function measure(stages: Transform[]): Promise<{ maxInFlight: number; intact: boolean }> {
  const block = randomBytes(1024 * 1024 + 12_345);
  const inHash = createHash('sha256');
  const outHash = createHash('sha256');
  let produced = 0;
  let consumed = 0;
  let maxInFlight = 0;
  const source = Readable.from(
    (function* () {
      let sizes = [1000, 70_000, 65_536, 65_553, 3, 200_000];
      for (let i = 0; produced < TOTAL; i++) {
        const n = Math.min(sizes[i % sizes.length]!, TOTAL - produced);
        const at = produced % (block.length - n);
        const chunk = block.subarray(at, at + n);
        inHash.update(chunk);
        produced += n;
        maxInFlight = Math.max(maxInFlight, produced - consumed);
        yield chunk;
      }
      sizes = [];
    })(),
    { objectMode: false },
  );
  const sink = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, cb) {
      outHash.update(chunk);
      consumed += chunk.length;
      setImmediate(cb);
    },
  });
  await pipeline([source, ...stages, sink]);
  assert.equal(consumed, TOTAL);
  return { maxInFlight, intact: inHash.digest('hex') === outHash.digest('hex') };
}

describe('streaming encryption memory', () => {
  test('encrypting and decrypting 64 MiB into a slow consumer keeps under 2 MiB in flight and round-trips every byte', async () => {
    const { maxInFlight, intact } = await measure([encryptStream({ key: KEY, keyId: 'tk_mem', blobId: 'ast_mem' }), decryptStream({ keyFor: () => KEY, blobId: 'ast_mem' })]);
    assert.ok(intact, 'the plaintext must survive the reused segment buffers unchanged');
    assert.ok(maxInFlight < MAX_IN_FLIGHT, `in flight: ${maxInFlight} bytes`);
  });

  test('the measurement catches a stage that buffers without bound (a 64 MiB highWaterMark)', async () => {
    // Proves the bound above can fail: the same chain with one over-sized queue in the middle.
    const { maxInFlight } = await measure([encryptStream({ key: KEY, keyId: 'tk_mem', blobId: 'ast_mem' }), new PassThrough({ highWaterMark: TOTAL }), decryptStream({ keyFor: () => KEY, blobId: 'ast_mem' })]);
    assert.ok(maxInFlight >= MAX_IN_FLIGHT, `in flight: ${maxInFlight} bytes`);
  });
});
