// One conformance suite, run against every blob store (fs on a temp dir, s3 against s3rver), then
// the properties only one adapter has. s3rver stands in for AWS S3/MinIO and does NOT verify SigV4
// signatures, so presigned-URL binding is asserted on the signed-header list, not on a rejection.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { lstat, mkdtemp, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate as tick, setTimeout as delay } from 'node:timers/promises';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { AppError, type ErrorCode } from '../../src/errors.js';
import { createFsStore, type FsBlobStore } from '../../src/assets/stores/fs.js';
import { createS3Store } from '../../src/assets/stores/s3.js';
import type { BlobStore } from '../../src/assets/stores/types.js';
import { startS3rver, type S3rverHandle } from '../support/s3rver.js';

const KiB = 1024;
const MiB = 1024 * KiB;

// ---------------------------------------------------------------------------------------------
// helpers

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

/** A stream over `buf` in `chunkSize` pieces (Readable.from would emit one giant chunk). */
function streamOf(buf: Uint8Array, chunkSize = 64 * KiB): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.byteLength; i += chunkSize) yield buf.subarray(i, i + chunkSize);
    })(),
  );
}

/** `total` random bytes generated on demand (never held in memory), hashed as they go. */
function generated(total: number, chunkSize = 256 * KiB): { stream: Readable; digest: () => string } {
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
function failing(beforeBytes: number, err: Error): Readable {
  return Readable.from(
    (async function* () {
      for (let sent = 0; sent < beforeBytes; sent += 64 * KiB) yield randomBytes(64 * KiB);
      throw err;
    })(),
  );
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const k of it) out.push(k);
  return out.sort();
}

function isAppError(code: ErrorCode) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof AppError, `expected AppError ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

// Keys that must never reach a filesystem path or a bucket: traversal, absolute paths, separators
// of other systems, NUL, encodings that a later layer might decode, look-alikes, and over-length.
const BAD_KEYS: unknown[] = [
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

interface Harness {
  store: BlobStore;
  /** How many in-progress artefacts exist (fs temp files); absent when the backend hides them. */
  leftovers?: () => Promise<number>;
  teardown(): Promise<void>;
}

function storeConformance(name: string, makeHarness: () => Promise<Harness>): void {
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

// ---------------------------------------------------------------------------------------------
// adapters under the suite

async function fsHarness(): Promise<Harness & { store: FsBlobStore; outer: string }> {
  const outer = await mkdtemp(join(tmpdir(), 'obscura-fs-store-'));
  const store = await createFsStore({ root: join(outer, 'root') });
  return {
    store,
    outer,
    leftovers: async () => (await readdir(join(store.root, '.tmp'))).length,
    teardown: () => rm(outer, { recursive: true, force: true }),
  };
}

async function s3Harness(): Promise<Harness> {
  const s3 = await startS3rver();
  // Pagination is exercised against a scripted server below: s3rver's continuation tokens use DES,
  // which OpenSSL 3 no longer offers, so any truncated listing fails there with InternalError.
  const store = createS3Store({
    client: s3.client,
    bucket: s3.bucket,
    prefix: 'conformance/',
    serverSideEncryption: 'AES256',
  });
  return { store, teardown: () => s3.stop() };
}

storeConformance('fs', fsHarness);
storeConformance('s3 (s3rver)', s3Harness);

// ---------------------------------------------------------------------------------------------
// fs-only properties

describe('fs blob store', () => {
  let h: Awaited<ReturnType<typeof fsHarness>>;
  before(async () => {
    h = await fsHarness();
  });
  after(() => h.teardown());

  test('never creates or reads anything outside its root, whatever the key', async () => {
    await writeFile(join(h.outer, 'secret'), 'outside');
    for (const key of BAD_KEYS as string[]) {
      await assert.rejects(h.store.put(key, streamOf(Buffer.from('pwned'))), isAppError('ERR_VALIDATION'));
    }
    await assert.rejects(h.store.get('../secret'), isAppError('ERR_VALIDATION'));
    assert.deepEqual((await readdir(h.outer)).sort(), ['root', 'secret']);
    assert.deepEqual(await readdir(h.store.root), ['.tmp']);
  });

  test('treats a symlink planted as an object as missing instead of following it', async () => {
    await writeFile(join(h.outer, 'secret'), 'outside');
    await symlink(join(h.outer, 'secret'), join(h.store.root, 'link'));
    try {
      await assert.rejects(h.store.get('link'), isAppError('ERR_NOT_FOUND'));
      assert.equal(await h.store.head('link'), null);
      assert.ok(!(await collect(h.store.list(''))).includes('link'));
    } finally {
      await rm(join(h.store.root, 'link'));
    }
  });

  test('writes objects owner-only (0600) in owner-only directories (0700)', async () => {
    await h.store.put('modes/a/b', streamOf(Buffer.from('x')));
    assert.equal((await stat(join(h.store.root, 'modes/a/b'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(h.store.root, 'modes/a'))).mode & 0o777, 0o700);
    assert.equal((await stat(h.store.root)).mode & 0o777, 0o700);
  });

  test('answers ERR_CONFLICT when a key would be both an object and a directory', async () => {
    await h.store.put('conflict/a', streamOf(Buffer.from('a')));
    await assert.rejects(h.store.put('conflict/a/b', streamOf(Buffer.from('b'))), isAppError('ERR_CONFLICT'));
    await h.store.put('conflict/x/y', streamOf(Buffer.from('y')));
    await assert.rejects(h.store.put('conflict/x', streamOf(Buffer.from('x'))), isAppError('ERR_CONFLICT'));
    assert.deepEqual(await readdir(join(h.store.root, '.tmp')), []);
    assert.equal((await readAll(await h.store.get('conflict/a'))).toString(), 'a');
    assert.equal(await h.store.head('conflict/x'), null);
  });

  test('prunes directories emptied by delete but never the root', async () => {
    await h.store.put('prune/q/r/s', streamOf(Buffer.from('s')));
    await h.store.put('prune/keep', streamOf(Buffer.from('k')));
    await h.store.delete('prune/q/r/s');
    await assert.rejects(lstat(join(h.store.root, 'prune/q')), { code: 'ENOENT' });
    assert.ok((await lstat(join(h.store.root, 'prune'))).isDirectory());
    await h.store.delete('prune/keep');
    await assert.rejects(lstat(join(h.store.root, 'prune')), { code: 'ENOENT' });
    assert.ok((await lstat(join(h.store.root, '.tmp'))).isDirectory());
    // A put right after pruning recreates what it needs.
    await h.store.put('prune/q/r/s', streamOf(Buffer.from('again')));
    assert.equal((await readAll(await h.store.get('prune/q/r/s'))).toString(), 'again');
  });

  test('sweeps temp files left by a crash once they are older than the threshold', async () => {
    const tmp = join(h.store.root, '.tmp');
    await writeFile(join(tmp, 'stale.part'), 'half an upload');
    await writeFile(join(tmp, 'fresh.part'), 'an upload in progress');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    await utimes(join(tmp, 'stale.part'), twoHoursAgo, twoHoursAgo);
    // Crash leftovers are never visible as objects.
    assert.ok(!(await collect(h.store.list(''))).some((k) => k.includes('part')));
    assert.equal(await h.store.sweepTemp(3600_000), 1);
    assert.deepEqual(await readdir(tmp), ['fresh.part']);
    assert.equal(await h.store.sweepTemp(0), 1);
    assert.deepEqual(await readdir(tmp), []);
    await assert.rejects(h.store.sweepTemp(-1), isAppError('ERR_VALIDATION'));
  });

  test('gives concurrent readers one whole version while the object is being replaced', async () => {
    const oldData = randomBytes(1 * MiB);
    const newData = randomBytes(1 * MiB);
    const allowed = new Set([sha256(oldData), sha256(newData)]);
    await h.store.put('concurrent/obj', streamOf(oldData));
    const slowNew = Readable.from(
      (async function* () {
        for (let i = 0; i < newData.byteLength; i += 32 * KiB) {
          await tick();
          yield newData.subarray(i, i + 32 * KiB);
        }
      })(),
    );
    let finished = false;
    const writer = h.store.put('concurrent/obj', slowNew).finally(() => {
      finished = true;
    });
    const seen: string[] = [];
    const reader = async (): Promise<void> => {
      while (!finished) seen.push(sha256(await readAll(await h.store.get('concurrent/obj'))));
    };
    await Promise.all([writer, reader(), reader()]);
    seen.push(sha256(await readAll(await h.store.get('concurrent/obj'))));
    assert.ok(seen.length >= 3, `readers ran ${seen.length} times`);
    for (const digest of seen) assert.ok(allowed.has(digest), 'a reader saw a mix or a prefix');
    assert.equal(seen.at(-1), sha256(newData));
  });

  test('keeps serving an open read of the old version after a replacement', async () => {
    const oldData = randomBytes(512 * KiB);
    await h.store.put('pinned/obj', streamOf(oldData));
    const stream = await h.store.get('pinned/obj');
    await h.store.put('pinned/obj', streamOf(Buffer.from('new')));
    await h.store.delete('pinned/obj');
    assert.equal(sha256(await readAll(stream)), sha256(oldData));
  });

  test('accepts segments up to NAME_MAX (255) characters', async () => {
    const key = `${'x'.repeat(255)}/${'y'.repeat(255)}`;
    await h.store.put(key, streamOf(Buffer.from('long')));
    assert.equal((await readAll(await h.store.get(key))).toString(), 'long');
    await h.store.delete(key);
  });

  test('opens a store on an existing root and sees its objects', async () => {
    await h.store.put('reopen/x', streamOf(Buffer.from('persisted')));
    const again = await createFsStore({ root: h.store.root });
    assert.equal((await readAll(await again.get('reopen/x'))).toString(), 'persisted');
    assert.equal(again.supports('presign'), false);
    assert.equal(again.presignPut, undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// s3-only properties

describe('s3 blob store', () => {
  let s3: S3rverHandle;
  const extraServers: Server[] = [];
  before(async () => {
    s3 = await startS3rver();
  });
  after(async () => {
    for (const srv of extraServers) srv.close();
    await s3.stop();
  });

  async function httpServer(handler: Parameters<typeof createServer>[1]): Promise<string> {
    const srv = createServer(handler);
    extraServers.push(srv);
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  }

  function clientFor(endpoint: string): S3Client {
    return new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      maxAttempts: 1,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
  }

  test('presigns a PUT that a plain fetch can upload to, bound to length, type and SSE', async () => {
    const store = createS3Store({ client: s3.client, bucket: s3.bucket, prefix: 'presign', serverSideEncryption: 'AES256' });
    assert.equal(store.supports('presign'), true);
    const body = Buffer.from('uploaded straight from the client');
    const { url, headers } = await store.presignPut!('staging/up-1', {
      contentLength: body.byteLength,
      contentType: 'image/png',
      expiresInSeconds: 300,
    });
    assert.deepEqual(headers, {
      'content-type': 'image/png',
      'content-length': String(body.byteLength),
      'x-amz-server-side-encryption': 'AES256',
    });
    const u = new URL(url);
    assert.equal(u.pathname, `/${s3.bucket}/presign/staging/up-1`);
    assert.equal(u.searchParams.get('X-Amz-Expires'), '300');
    // s3rver does not verify signatures, so prove the binding from the signed-header list.
    const signed = (u.searchParams.get('X-Amz-SignedHeaders') ?? '').split(';');
    for (const h of ['content-length', 'content-type', 'host', 'x-amz-server-side-encryption']) {
      assert.ok(signed.includes(h), `${h} must be signed`);
    }
    // A checksum of the empty body presigned into the URL would make real S3 reject every upload.
    assert.ok(![...u.searchParams.keys()].some((k) => k.toLowerCase().startsWith('x-amz-checksum')));
    const res = await fetch(url, { method: 'PUT', headers, body });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.ok((await readAll(await store.get('staging/up-1'))).equals(body));
  });

  test('refuses to presign unbounded or header-splitting uploads', async () => {
    const store = createS3Store({ client: s3.client, bucket: s3.bucket });
    const ok = { contentLength: 10, contentType: 'image/jpeg', expiresInSeconds: 60 };
    const bad = [
      { ...ok, contentType: 'image/png\r\nx-amz-acl: public-read' },
      { ...ok, contentType: 'image/png; charset=utf-8' },
      { ...ok, contentType: 'png' },
      { ...ok, contentType: '' },
      { ...ok, contentLength: -1 },
      { ...ok, contentLength: 1.5 },
      { ...ok, contentLength: 5 * 1024 ** 3 + 1 },
      { ...ok, expiresInSeconds: 0 },
      { ...ok, expiresInSeconds: 604_801 },
      { ...ok, expiresInSeconds: 1.5 },
    ];
    for (const opts of bad) {
      await assert.rejects(store.presignPut!('staging/x', opts), isAppError('ERR_VALIDATION'), JSON.stringify(opts));
    }
    await store.presignPut!('staging/x', ok);
  });

  test('keeps each store inside its own prefix of a shared bucket', async () => {
    const a = createS3Store({ client: s3.client, bucket: s3.bucket, prefix: 'tenant-a/' });
    const b = createS3Store({ client: s3.client, bucket: s3.bucket, prefix: 'tenant-b' });
    await a.put('k', streamOf(Buffer.from('a')));
    assert.equal(await b.head('k'), null);
    assert.deepEqual(await collect(a.list('')), ['k']);
    assert.deepEqual(await collect(b.list('')), []);
    const raw = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'tenant-' }));
    assert.deepEqual(raw.Contents?.map((o) => o.Key), ['tenant-a/k']);
  });

  test('uploads large bodies as multipart and aborts the multipart upload when the source fails', async () => {
    const client = clientFor(s3.endpoint);
    const sent: string[] = [];
    client.middlewareStack.add(
      (next, context) => (args) => {
        sent.push(String(context.commandName));
        return next(args);
      },
      { step: 'initialize', name: 'recordCommands' },
    );
    const store = createS3Store({ client, bucket: s3.bucket, prefix: 'mpu' });
    await store.put('ok', generated(17 * MiB).stream);
    assert.deepEqual(
      sent.filter((c) => c !== 'UploadPartCommand'),
      ['CreateMultipartUploadCommand', 'CompleteMultipartUploadCommand'],
    );
    assert.equal(sent.filter((c) => c === 'UploadPartCommand').length, 3);

    sent.length = 0;
    const boom = new Error('client went away');
    await assert.rejects(store.put('broken', failing(12 * MiB, boom)), (err) => err === boom);
    assert.ok(sent.includes('AbortMultipartUploadCommand'), sent.join());
    assert.ok(!sent.includes('CompleteMultipartUploadCommand'));
    assert.equal(await store.head('broken'), null);
    client.destroy();
  });

  test('maps backend failures to AppErrors without leaking SDK messages', async () => {
    const missingBucket = createS3Store({ client: s3.client, bucket: 'no-such-bucket-here' });
    for (const op of [
      () => missingBucket.get('k'),
      () => missingBucket.put('k', streamOf(Buffer.from('x'))),
      () => collect(missingBucket.list('')),
    ]) {
      await assert.rejects(op(), (err: unknown) => {
        assert.ok(err instanceof AppError);
        assert.equal(err.code, 'ERR_INTERNAL');
        assert.ok(!err.message.includes('no-such-bucket-here'), 'bucket name must not leak');
        return true;
      });
    }

    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const closedPort = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const client = clientFor(`http://127.0.0.1:${closedPort}`);
    const down = createS3Store({ client, bucket: s3.bucket });
    await assert.rejects(down.head('k'), isAppError('ERR_DEPENDENCY_UNAVAILABLE'));
    await assert.rejects(down.put('k', streamOf(Buffer.from('x'))), isAppError('ERR_DEPENDENCY_UNAVAILABLE'));
    client.destroy();
  });

  test('cuts a wider window to size but refuses a response that ignored or shifted the range', async () => {
    const wider = await httpServer((_req, res) => {
      res.writeHead(206, { 'content-length': '11', 'content-range': 'bytes 0-10/11' });
      res.end('hello world');
    });
    const whole = await httpServer((_req, res) => {
      res.writeHead(200, { 'content-length': '11', 'content-type': 'application/octet-stream' });
      res.end('hello world');
    });
    const shifted = await httpServer((_req, res) => {
      res.writeHead(206, { 'content-length': '3', 'content-range': 'bytes 1-3/11' });
      res.end('ell');
    });
    const ok = clientFor(wider);
    assert.equal((await readAll(await createS3Store({ client: ok, bucket: 'b' }).get('k', { start: 0, end: 2 }))).toString(), 'hel');
    ok.destroy();
    for (const endpoint of [whole, shifted]) {
      const client = clientFor(endpoint);
      const store = createS3Store({ client, bucket: 'b' });
      await assert.rejects(store.get('k', { start: 0, end: 2 }), isAppError('ERR_INTERNAL'));
      client.destroy();
    }
  });

  test('follows ListObjectsV2 continuation tokens and reports only its own valid keys', async () => {
    // Scripted pages: s3rver cannot paginate on OpenSSL 3 (its tokens use DES).
    const pages: Record<string, { keys: string[]; next?: string }> = {
      '': { keys: ['p/list/a', 'p/list/b'], next: 'page-2' },
      'page-2': { keys: ['p/list/c', 'p/list/bad key'], next: 'page-3' },
      'page-3': { keys: ['p/list/d', 'p/list/../escape'] },
    };
    const seen: { prefix: string | null; maxKeys: string | null }[] = [];
    const endpoint = await httpServer((req, res) => {
      const q = new URL(req.url ?? '/', 'http://x').searchParams;
      seen.push({ prefix: q.get('prefix'), maxKeys: q.get('max-keys') });
      const page = pages[q.get('continuation-token') ?? ''];
      if (!page) {
        res.writeHead(400).end();
        return;
      }
      const contents = page.keys.map((k) => `<Contents><Key>${k}</Key><Size>1</Size></Contents>`).join('');
      res.writeHead(200, { 'content-type': 'application/xml' });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
          `<Name>b</Name><KeyCount>${page.keys.length}</KeyCount><MaxKeys>2</MaxKeys>` +
          `<IsTruncated>${page.next ? 'true' : 'false'}</IsTruncated>` +
          (page.next ? `<NextContinuationToken>${page.next}</NextContinuationToken>` : '') +
          `${contents}</ListBucketResult>`,
      );
    });
    const client = clientFor(endpoint);
    const store = createS3Store({ client, bucket: 'b', prefix: 'p/', listPageSize: 2 });
    assert.deepEqual(await collect(store.list('list/')), ['list/a', 'list/b', 'list/c', 'list/d']);
    assert.equal(seen.length, 3);
    for (const s of seen) assert.deepEqual(s, { prefix: 'p/list/', maxKeys: '2' });
    client.destroy();
  });

  test('fails at construction on a bad prefix, bucket, KMS or page-size setting', () => {
    const client = s3.client;
    assert.throws(() => createS3Store({ client, bucket: '' }), TypeError);
    assert.throws(() => createS3Store({ client, bucket: 'b', prefix: '../x' }), TypeError);
    assert.throws(() => createS3Store({ client, bucket: 'b', prefix: '/abs/' }), TypeError);
    assert.throws(() => createS3Store({ client, bucket: 'b', kmsKeyId: 'k' }), TypeError);
    assert.throws(() => createS3Store({ client, bucket: 'b', listPageSize: 0 }), TypeError);
    createS3Store({ client, bucket: 'b', serverSideEncryption: 'aws:kms', kmsKeyId: 'alias/obscura' });
  });
});

