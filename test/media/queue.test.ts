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

  it('gives each tenant at most its share of slots; another tenant runs at once', async () => {
    const queue = createWorkQueue({ concurrency: 2, maxQueued: 10, perKeyConcurrency: 1 });
    const gate = deferred();
    const heavy = [queue.run(() => gate.promise, { key: 'heavy' }), queue.run(() => gate.promise, { key: 'heavy' })];
    assert.equal(queue.active, 1, 'the second heavy task waits for its own share');
    assert.equal(queue.queued, 1);
    assert.equal(await queue.run(async () => 'light', { key: 'light' }), 'light');
    gate.resolve();
    await Promise.all(heavy);
  });

  it('hands a freed slot to the next tenant in round-robin order, not to the first in line', async () => {
    const queue = createWorkQueue({ concurrency: 1, maxQueued: 10 });
    const gate = deferred();
    const order: string[] = [];
    const first = queue.run(() => gate.promise, { key: 'a' });
    const tasks = [
      queue.run(async () => void order.push('a1'), { key: 'a' }),
      queue.run(async () => void order.push('a2'), { key: 'a' }),
      queue.run(async () => void order.push('a3'), { key: 'a' }),
      queue.run(async () => void order.push('b1'), { key: 'b' }),
    ];
    gate.resolve();
    await Promise.all([first, ...tasks]);
    assert.deepEqual(order, ['a1', 'b1', 'a2', 'a3']);
  });

  it("refuses a tenant's request beyond its waiting places with reason org_queue_full, and still queues another tenant", async () => {
    const queue = createWorkQueue({ concurrency: 1, maxQueued: 10, perKeyQueued: 1 });
    const gate = deferred();
    const running = queue.run(() => gate.promise, { key: 'a' });
    const waiting = queue.run(async () => 'a2', { key: 'a' });
    const err = await rejectsWith(queue.run(async () => 'a3', { key: 'a' }), 'ERR_UNAVAILABLE');
    assert.equal(err.details?.reason, 'org_queue_full');
    assert.deepEqual(err.headers, { 'Retry-After': '1' });
    const other = queue.run(async () => 'b1', { key: 'b' });
    gate.resolve();
    assert.deepEqual(await Promise.all([running, waiting, other]), [undefined, 'a2', 'b1']);
  });

  it('gives up on a task that waited longer than maxWaitMs with 503 wait_timeout, without running it', async () => {
    const queue = createWorkQueue({ concurrency: 1, maxQueued: 10, maxWaitMs: 50 });
    const gate = deferred();
    const running = queue.run(() => gate.promise);
    let ran = false;
    const err = await rejectsWith(queue.run(async () => void (ran = true)), 'ERR_UNAVAILABLE');
    assert.equal(err.details?.reason, 'wait_timeout');
    assert.equal(queue.queued, 0);
    gate.resolve();
    await running;
    assert.equal(ran, false);
  });

  it('keeps the estimated memory of running tasks within the budget; a task larger than the budget runs alone', async () => {
    const queue = createWorkQueue({ concurrency: 4, maxQueued: 10, memoryBudgetBytes: 100 });
    let peak = 0;
    let running = 0;
    const task = (ms: number) => async () => {
      running++;
      peak = Math.max(peak, queue.memoryInUse);
      await new Promise((r) => setTimeout(r, ms));
      running--;
    };
    await Promise.all([queue.run(task(20), { memoryBytes: 60 }), queue.run(task(20), { memoryBytes: 60 }), queue.run(task(20), { memoryBytes: 30 })]);
    assert.ok(peak <= 100, `memory in use peaked at ${peak}`);
    // Larger than the whole budget: admitted only when nothing else runs.
    const gate = deferred();
    const small = queue.run(() => gate.promise, { memoryBytes: 10 });
    let bigStarted = false;
    const big = queue.run(async () => void (bigStarted = true), { memoryBytes: 500 });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(bigStarted, false);
    gate.resolve();
    await Promise.all([small, big]);
    assert.equal(bigStarted, true);
    assert.equal(queue.memoryInUse, 0);
  });
});

