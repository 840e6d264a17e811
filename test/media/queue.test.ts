import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createWorkQueue } from '../../src/media/queue.js';
import { rejectsWith } from './support.js';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('createWorkQueue', () => {
  it('runs at most `concurrency` tasks at once', async () => {
    const queue = createWorkQueue({ concurrency: 2, maxQueued: 10 });
    let running = 0;
    let peak = 0;
    const task = async (): Promise<number> => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      return 1;
    };
    const results = await Promise.all(Array.from({ length: 6 }, () => queue.run(task)));
    assert.deepEqual(results, [1, 1, 1, 1, 1, 1]);
    assert.equal(peak, 2);
    assert.equal(queue.active, 0);
    assert.equal(queue.queued, 0);
  });

  it('refuses work with 503 and Retry-After when running and queued slots are full', async () => {
    const queue = createWorkQueue({ concurrency: 1, maxQueued: 1 });
    const gate = deferred();
    const first = queue.run(() => gate.promise.then(() => 'first'));
    const second = queue.run(async () => 'second');
    assert.equal(queue.active, 1);
    assert.equal(queue.queued, 1);
    const err = await rejectsWith(queue.run(async () => 'third'), 'ERR_UNAVAILABLE');
    assert.equal(err.status, 503);
    assert.deepEqual(err.headers, { 'Retry-After': '1' });
    assert.equal(err.details?.reason, 'queue_full');
    gate.resolve();
    assert.equal(await first, 'first');
    assert.equal(await second, 'second');
    assert.equal(await queue.run(async () => 'later'), 'later');
  });

  it('releases the slot when a task fails', async () => {
    const queue = createWorkQueue({ concurrency: 1, maxQueued: 0 });
    await assert.rejects(queue.run(() => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(await queue.run(async () => 'ok'), 'ok');
  });

  it('drops a waiting task whose signal aborts, without running it', async () => {
    const queue = createWorkQueue({ concurrency: 1, maxQueued: 1 });
    const gate = deferred();
    const first = queue.run(() => gate.promise);
    const controller = new AbortController();
    let ran = false;
    const waiting = queue.run(async () => {
      ran = true;
    }, controller.signal);
    controller.abort();
    await rejectsWith(waiting, 'ERR_UNAVAILABLE');
    assert.equal(queue.queued, 0);
    gate.resolve();
    await first;
    assert.equal(ran, false);
    assert.equal(queue.active, 0);
  });

  it('rejects nonsensical sizes at construction', () => {
    assert.throws(() => createWorkQueue({ concurrency: 0, maxQueued: 1 }), TypeError);
    assert.throws(() => createWorkQueue({ concurrency: 1, maxQueued: -1 }), TypeError);
  });
});
