import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { backoff } from '../../src/async/backoff.ts';
import { errorMessage } from '../../src/async/error-message.ts';

test('backoff doubles from base per failure and never passes the cap', () => {
  const o = { baseMs: 500, maxMs: 30_000 };
  assert.deepEqual(
    [0, 1, 2, 3, 6, 7, 1000].map((n) => backoff(n, o)),
    [500, 500, 1000, 2000, 16_000, 30_000, 30_000],
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 1, max: 60_000 }), (n, base) => {
      const d = backoff(n, { baseMs: base, maxMs: 300_000 });
      return d >= Math.min(base, 300_000) && d <= 300_000 && d <= backoff(n + 1, { baseMs: base, maxMs: 300_000 });
    }),
  );
});

test('jittered backoff stays within half to one and a half of the delay', () => {
  const o = { baseMs: 1000, maxMs: 8000, jitter: true };
  assert.equal(
    backoff(2, o, () => 0),
    1000,
  );
  assert.equal(
    backoff(2, o, () => 0.5),
    2000,
  );
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 50 }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (n, r) => {
        const plain = backoff(n, { baseMs: 1000, maxMs: 8000 });
        const d = backoff(n, o, () => r);
        return d >= plain * 0.5 && d <= plain * 1.5;
      },
    ),
  );
});

test('errorMessage reads Errors, strings and anything else', () => {
  assert.equal(errorMessage(new TypeError('bad')), 'bad');
  assert.equal(errorMessage('plain'), 'plain');
  assert.equal(errorMessage(42), '42');
  assert.equal(errorMessage(undefined), 'undefined');
});
