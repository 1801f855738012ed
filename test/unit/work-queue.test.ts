// The controller's keyed work queue: dedup, one worker per key, a failing key backs off alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { workQueue } from '../../src/controller/work-queue.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a key added many times while queued runs once; added while running, once more after', async () => {
  const runs: string[] = [];
  let release: () => void = () => undefined;
  const q = workQueue(
    async (k) => {
      runs.push(k);
      if (k === 'slow' && runs.filter((r) => r === 'slow').length === 1) await new Promise<void>((r) => (release = r));
    },
    () => undefined,
    { workers: 1, baseDelayMs: 10, maxDelayMs: 100 },
  );
  q.add('slow');
  // Queued behind it: five adds, one entry.
  for (let i = 0; i < 5; i++) q.add('a');
  assert.equal(q.depth(), 2);
  await sleep(20);
  q.add('slow');
  q.add('slow');
  await sleep(20);
  assert.deepEqual(runs.filter((r) => r === 'slow').length, 1, 'never two workers on one key');
  release();
  await q.idle();
  assert.deepEqual(runs.sort(), ['a', 'slow', 'slow']);
  q.stop();
});

test('a failing key is retried with its own backoff; the others are not held up', async () => {
  const done: string[] = [];
  const errors: [string, number][] = [];
  let bad = 0;
  const q = workQueue(
    async (k) => {
      if (k === 'bad' && ++bad <= 3) throw new Error('refused by admission');
      done.push(k);
    },
    (k, _e, retry) => errors.push([k, retry]),
    { workers: 1, baseDelayMs: 20, maxDelayMs: 50 },
  );
  q.add('bad');
  for (const k of ['g1', 'g2', 'g3']) q.add(k);
  await q.idle(1000);
  assert.deepEqual(done, ['g1', 'g2', 'g3', 'bad'], 'the good keys finished before the bad one recovered');
  assert.deepEqual(
    errors,
    [
      ['bad', 20],
      ['bad', 40],
      ['bad', 50],
    ],
    'doubling, capped',
  );
  assert.equal(q.failures('bad'), 0, 'reset by the success');
  q.stop();
});

test('a requeue asked for by the processing comes back after its delay; the earliest delayed add wins', async () => {
  const at: number[] = [];
  const t0 = Date.now();
  const q = workQueue(
    async () => {
      at.push(Date.now() - t0);
      return at.length === 1 ? { requeueAfterMs: 60 } : undefined;
    },
    () => undefined,
    { workers: 1, baseDelayMs: 10, maxDelayMs: 100 },
  );
  q.add('k');
  await sleep(10);
  q.add('k', 500);
  await q.idle(1000);
  assert.equal(at.length, 2);
  assert.ok(at[1]! >= 55 && at[1]! < 400, `requeued after ${at[1]} ms`);
  q.stop();
});
