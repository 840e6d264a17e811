/**
 * The blob-store conformance suite: every adapter's test file calls `storeConformance` with a harness
 * (as tus-node-server's stores share their suites), then tests what only that adapter has. Adding a
 * store means: its file in src/assets/stores/, a line in the factory, and a test file that calls this.
 * s3rver stands in for AWS S3/MinIO and does NOT verify SigV4 signatures, so presigned-URL binding is
 * asserted on the signed-header list, not on a rejection.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { AppError, type ErrorCode } from '../../../src/errors.js';
import type { BlobStore } from '../../../src/assets/stores/types.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

// ---------------------------------------------------------------------------------------------
// helpers

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

/** A stream over `buf` in `chunkSize` pieces (Readable.from would emit one giant chunk). */
export function streamOf(buf: Uint8Array, chunkSize = 64 * KiB): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.byteLength; i += chunkSize) yield buf.subarray(i, i + chunkSize);
    })(),
  );
}

/** `total` random bytes generated on demand (never held in memory), hashed as they go. */
export function generated(total: number, chunkSize = 256 * KiB): { stream: Readable; digest: () => string } {
  const hash = createHash('sha256');
  let done: string | undefined;
  const stream = Readable.from(
    (async function* () {
      for (let sent = 0; sent < total; sent += chunkSize) {
        const chunk = randomBytes(Math.min(chunkSize, total - sent));
        hash.update(chunk);
        yield chunk;
      }
      done = hash.digest('hex');
    })(),
  );
  return { stream, digest: () => done ?? assert.fail('stream not fully consumed') };
}

/** Emits `before` bytes, then fails with `err`: a client that disconnects mid-upload. */
export function failing(beforeBytes: number, err: Error): Readable {
  return Readable.from(
    (async function* () {
      for (let sent = 0; sent < beforeBytes; sent += 64 * KiB) yield randomBytes(64 * KiB);
      throw err;
    })(),
  );
}

export async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const k of it) out.push(k);
  return out.sort();
}

export function isAppError(code: ErrorCode) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof AppError, `expected AppError ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

// Keys that must never reach a filesystem path or a bucket: traversal, absolute paths, separators
// of other systems, NUL, encodings that a later layer might decode, look-alikes, and over-length.
export const BAD_KEYS: unknown[] = [
  '',
  '/',
  '/etc/passwd',
  '../escape',
  'a/../../escape',
  'a/..',
  '..',
  '.',
  './a',
  'a/./b',
  'a//b',
  'a/',
  '\\escape',
  'a\\..\\..\\escape',
  '..\\escape',
  'C:\\escape',
  'a\0b',
  '\0',
  'a%2F..%2F..%2Fescape',
  '%2e%2e/escape',
  '..%2fescape',
  '~/escape',
  'a b',
  'a\nb',
  'caf\u00e9',
  '\uff0e\uff0e/escape',
  '.tmp/x',
  '.hidden',
  '-flag',
  'x'.repeat(513),
  `a/${'b'.repeat(256)}`,
  undefined,
  null,
  42,
  ['a'],
];

// ---------------------------------------------------------------------------------------------
// the conformance suite

export interface Harness {
  store: BlobStore;
  /** How many in-progress artefacts exist (fs temp files); absent when the backend hides them. */
  leftovers?: () => Promise<number>;
  teardown(): Promise<void>;
}

export function storeConformance(name: string, makeHarness: () => Promise<Harness>): void {
  describe(`blob store conformance: ${name}`, () => {
    let h: Harness;
    let store: BlobStore;
    before(async () => {
      h = await makeHarness();
      store = h.store;
    });
    after(() => h.teardown());

    async function assertNothingAt(key: string, listPrefix: string): Promise<void> {
      assert.equal(await store.head(key), null);
      assert.ok(!(await collect(store.list(listPrefix))).includes(key), 'key must not be listed');
      await assert.rejects(store.get(key), isAppError('ERR_NOT_FOUND'));
      if (h.leftovers) assert.equal(await h.leftovers(), 0, 'no temp files may remain');
    }

    test('round-trips an empty object', async () => {
      assert.deepEqual(await store.put('rt/empty', streamOf(Buffer.alloc(0))), { size: 0 });
      assert.deepEqual(await store.head('rt/empty'), { size: 0 });
      assert.equal((await readAll(await store.get('rt/empty'))).byteLength, 0);
    });

    test('round-trips a small object byte for byte', async () => {
      const data = randomBytes(100 * KiB + 7);
      assert.deepEqual(await store.put('rt/small.bin', streamOf(data, 10 * KiB)), { size: data.byteLength });
      assert.deepEqual(await store.head('rt/small.bin'), { size: data.byteLength });
      assert.equal(sha256(await readAll(await store.get('rt/small.bin'))), sha256(data));
    });

    test('reads a whole small object in one call, refuses one longer than the bound, and answers ERR_NOT_FOUND for a missing key', async () => {
      const data = randomBytes(16 * KiB + 3);
      await store.put('rt/whole.bin', streamOf(data));
      assert.ok((await store.read('rt/whole.bin', data.byteLength)).equals(data));
      assert.ok((await store.read('rt/whole.bin', 64 * KiB)).equals(data));
      assert.equal((await store.read('rt/empty', 0)).byteLength, 0);
      await assert.rejects(store.read('rt/whole.bin', data.byteLength - 1), isAppError('ERR_PAYLOAD_TOO_LARGE'));
      await assert.rejects(store.read('missing/key', 1024), isAppError('ERR_NOT_FOUND'));
    });

    test('streams a 20 MiB object in and out with the same SHA-256', async () => {
      const src = generated(20 * MiB);
      assert.deepEqual(await store.put('rt/large.bin', src.stream), { size: 20 * MiB });
      assert.deepEqual(await store.head('rt/large.bin'), { size: 20 * MiB });
      const hash = createHash('sha256');
      for await (const c of await store.get('rt/large.bin')) hash.update(c as Uint8Array);
      assert.equal(hash.digest('hex'), src.digest());
      // Across the 8 MiB multipart boundary of the S3 store.
      const window = await readAll(await store.get('rt/large.bin', { start: 8 * MiB - 3, end: 8 * MiB + 3 }));
      assert.equal(window.byteLength, 7);
    });

    test('accepts string chunks as UTF-8 bytes', async () => {
      assert.deepEqual(await store.put('rt/text', Readable.from(['h\u00e9', 'llo'])), { size: 6 });
      assert.equal((await readAll(await store.get('rt/text'))).toString('utf8'), 'h\u00e9llo');
    });

    test('replaces an existing object on put', async () => {
      await store.put('rt/over', streamOf(Buffer.from('first version, longer')));
      await store.put('rt/over', streamOf(Buffer.from('second')));
      assert.equal((await readAll(await store.get('rt/over'))).toString(), 'second');
      assert.deepEqual(await store.head('rt/over'), { size: 6 });
    });

    test('accepts keys up to the maximum length', async () => {
      // 512 characters in all (s3rver appends a suffix to file names, so segments stay under 255).
      const longest = `${'x'.repeat(200)}/${'y'.repeat(200)}/${'z'.repeat(110)}`;
      for (const key of ['a', 'A-z_0.9/b-c.d_e', longest, '_/0/9']) {
        await store.put(key, streamOf(Buffer.from(key)));
        assert.equal((await readAll(await store.get(key))).toString(), key);
        await store.delete(key);
      }
    });

    test('reads byte ranges with an inclusive end, like HTTP', async () => {
      const data = randomBytes(200 * KiB);
      const n = data.byteLength;
      await store.put('range/obj', streamOf(data));
      assert.equal(store.supports('range'), true);
      const cases: [number, number, Buffer][] = [
        [0, 0, data.subarray(0, 1)],
        [n - 1, n - 1, data.subarray(n - 1)],
        [64 * KiB - 1, 64 * KiB + 1, data.subarray(64 * KiB - 1, 64 * KiB + 2)],
        [0, n - 1, data],
        [1000, 1999, data.subarray(1000, 2000)],
      ];
      for (const [start, end, want] of cases) {
        const got = await readAll(await store.get('range/obj', { start, end }));
        assert.equal(got.byteLength, want.byteLength, `range ${start}-${end}`);
        assert.ok(got.equals(want), `range ${start}-${end}`);
      }
      // An end past the object is clamped (RFC 9110 §14.1.2).
      assert.ok((await readAll(await store.get('range/obj', { start: n - 10, end: n + 1000 }))).equals(data.subarray(n - 10)));
    });

    test('refuses ranges that start past the end with ERR_RANGE_NOT_SATISFIABLE', async () => {
      await store.put('range/ten', streamOf(Buffer.from('0123456789')));
      await assert.rejects(store.get('range/ten', { start: 10, end: 10 }), isAppError('ERR_RANGE_NOT_SATISFIABLE'));
      await assert.rejects(store.get('range/ten', { start: 50, end: 60 }), isAppError('ERR_RANGE_NOT_SATISFIABLE'));
      await store.put('range/empty', streamOf(Buffer.alloc(0)));
      await assert.rejects(store.get('range/empty', { start: 0, end: 0 }), isAppError('ERR_RANGE_NOT_SATISFIABLE'));
    });

    test('rejects malformed ranges with ERR_VALIDATION', async () => {
      await store.put('range/v', streamOf(Buffer.from('0123456789')));
      for (const range of [
        { start: -1, end: 2 },
        { start: 5, end: 4 },
        { start: 0.5, end: 3 },
        { start: 0, end: Number.NaN },
        { start: 0, end: Number.POSITIVE_INFINITY },
      ]) {
        await assert.rejects(store.get('range/v', range), isAppError('ERR_VALIDATION'), JSON.stringify(range));
      }
    });

    test('answers head with null and get with ERR_NOT_FOUND for a missing key', async () => {
      assert.equal(await store.head('missing/key'), null);
      await assert.rejects(store.get('missing/key'), isAppError('ERR_NOT_FOUND'));
      await assert.rejects(store.get('missing/key', { start: 0, end: 1 }), isAppError('ERR_NOT_FOUND'));
    });

    test('deletes idempotently', async () => {
      await store.put('del/x', streamOf(Buffer.from('x')));
      await store.delete('del/x');
      await assertNothingAt('del/x', 'del/');
      await store.delete('del/x');
      await store.delete('del/never-existed');
    });

    test('lists keys by prefix', async () => {
      const keys = ['list/a/1', 'list/a/2', 'list/a/3', 'list/ab', 'list/b/1', 'listing'];
      for (const k of keys) await store.put(k, streamOf(Buffer.from(k)));
      assert.deepEqual(await collect(store.list('list/a/')), ['list/a/1', 'list/a/2', 'list/a/3']);
      assert.deepEqual(await collect(store.list('list/a')), ['list/a/1', 'list/a/2', 'list/a/3', 'list/ab']);
      assert.deepEqual(await collect(store.list('list/a/2')), ['list/a/2']);
      assert.deepEqual(await collect(store.list('list/')), keys.slice(0, 5));
      assert.deepEqual(await collect(store.list('list')), keys);
      assert.deepEqual(await collect(store.list('nothing/')), []);
      const all = await collect(store.list(''));
      for (const k of keys) assert.ok(all.includes(k), k);
      await store.delete('list/a/2');
      assert.deepEqual(await collect(store.list('list/a/')), ['list/a/1', 'list/a/3']);
    });

    test('rejects invalid list prefixes with ERR_VALIDATION', async () => {
      for (const prefix of ['/', '/etc', '../', '..', 'a//', '.tmp/', 'a\\b', '%2e%2e/']) {
        await assert.rejects(collect(store.list(prefix)), isAppError('ERR_VALIDATION'), prefix);
      }
    });

    test('rejects every unsafe key with ERR_VALIDATION on every operation', async () => {
      for (const key of BAD_KEYS as string[]) {
        const label = JSON.stringify(key);
        const body = streamOf(Buffer.from('payload'));
        await assert.rejects(store.put(key, body), isAppError('ERR_VALIDATION'), `put ${label}`);
        assert.ok(body.destroyed, `put ${label} releases the body`);
        await assert.rejects(store.get(key), isAppError('ERR_VALIDATION'), `get ${label}`);
        await assert.rejects(store.head(key), isAppError('ERR_VALIDATION'), `head ${label}`);
        await assert.rejects(store.delete(key), isAppError('ERR_VALIDATION'), `delete ${label}`);
        if (store.presignPut) {
          await assert.rejects(
            store.presignPut(key, { contentLength: 1, contentType: 'image/png', expiresInSeconds: 60 }),
            isAppError('ERR_VALIDATION'),
            `presign ${label}`,
          );
        }
      }
      if (h.leftovers) assert.equal(await h.leftovers(), 0);
    });

    test('leaves no object when a small source stream fails midway', async () => {
      const boom = new Error('client went away');
      await assert.rejects(store.put('fail/small', failing(128 * KiB, boom)), (err) => err === boom);
      await assertNothingAt('fail/small', 'fail/');
    });

    test('leaves no object when a multi-part source stream fails midway', async () => {
      const boom = new Error('client went away');
      await assert.rejects(store.put('fail/large', failing(10 * MiB, boom)), (err) => err === boom);
      await assertNothingAt('fail/large', 'fail/');
    });

    test('keeps the previous object intact when a replacing put fails', async () => {
      await store.put('fail/keep', streamOf(Buffer.from('original')));
      await assert.rejects(store.put('fail/keep', failing(256 * KiB, new Error('boom'))));
      assert.equal((await readAll(await store.get('fail/keep'))).toString(), 'original');
      if (h.leftovers) assert.equal(await h.leftovers(), 0);
    });

    test('enforces a declared content length in both directions and stores nothing on mismatch', async () => {
      const data = randomBytes(300 * KiB);
      await assert.rejects(
        store.put('len/short', streamOf(data), { contentLength: data.byteLength + 1 }),
        isAppError('ERR_VALIDATION'),
      );
      await assertNothingAt('len/short', 'len/');
      await assert.rejects(
        store.put('len/long', streamOf(data), { contentLength: data.byteLength - 1 }),
        isAppError('ERR_VALIDATION'),
      );
      await assertNothingAt('len/long', 'len/');
      await assert.rejects(store.put('len/bad', streamOf(data), { contentLength: -1 }), isAppError('ERR_VALIDATION'));
      assert.deepEqual(await store.put('len/ok', streamOf(data), { contentLength: data.byteLength }), {
        size: data.byteLength,
      });
    });

    test('stops and stores nothing when the put is aborted', async () => {
      const src = new Readable({ read() {} });
      const ac = new AbortController();
      const p = store.put('abort/x', src, { signal: ac.signal });
      src.push(randomBytes(64 * KiB));
      await delay(10);
      ac.abort();
      await assert.rejects(p, { name: 'AbortError' });
      assert.ok(src.destroyed);
      await assertNothingAt('abort/x', 'abort/');
      const pre = new AbortController();
      pre.abort();
      await assert.rejects(store.put('abort/y', streamOf(Buffer.from('y')), { signal: pre.signal }), {
        name: 'AbortError',
      });
      await assertNothingAt('abort/y', 'abort/');
    });

    test('does not expose an object while its put is still streaming', async () => {
      const src = new Readable({ read() {} });
      const p = store.put('slow/obj', src);
      for (let i = 0; i < 4; i++) {
        src.push(randomBytes(32 * KiB));
        await delay(5);
        assert.equal(await store.head('slow/obj'), null);
        assert.deepEqual(await collect(store.list('slow/')), []);
        await assert.rejects(store.get('slow/obj'), isAppError('ERR_NOT_FOUND'));
      }
      src.push(null);
      assert.deepEqual(await p, { size: 128 * KiB });
      assert.deepEqual(await store.head('slow/obj'), { size: 128 * KiB });
    });
  });
}

