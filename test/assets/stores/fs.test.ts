// The fs blob store: the shared conformance suite, then what only the fs adapter has.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdtemp, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { createFsStore, type FsBlobStore } from '../../../src/assets/stores/fs.js';

import { KiB, MiB, sha256, readAll, streamOf, collect, isAppError, BAD_KEYS, storeConformance, type Harness } from './conformance.js';

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

storeConformance('fs', fsHarness);

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
