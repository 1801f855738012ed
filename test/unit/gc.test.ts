// The garbage-collection decision (src/plan/gc.ts), pure: a root whose render gave no answer is unknown,
// never unreferenced. Its real-component counterpart is test/integration/render-unknown.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type GcBuild, gcDecision, type GcInput, type UnknownRoot } from '../../src/plan/gc.ts';

const NOW = new Date('2026-12-01T12:00:00Z');
const GRACE = 60;
const KEYS = ['a', 'b', 'c', 'd', 'e'];
const ago = (s: number) => new Date(NOW.getTime() - s * 1000).toISOString();

const buildArb: fc.Arbitrary<Omit<GcBuild, 'name'>> = fc.record(
  {
    key: fc.option(fc.constantFrom(...KEYS), { nil: undefined }),
    unreferencedSince: fc.integer({ min: 0, max: 3 * GRACE }).map(ago),
  },
  { requiredKeys: ['key'] },
);
const keySet = fc.subarray(KEYS).map((k) => new Set(k));
const rootArb: fc.Arbitrary<UnknownRoot> = fc.record(
  {
    origin: fc.constantFrom('kustomization → a', 'Kustomization flux-system/b → b', 'HelmRelease x/c → c'),
    lastGood: keySet,
  },
  { requiredKeys: ['origin'] },
);
const inputArb: fc.Arbitrary<GcInput> = fc
  .record({
    builds: fc.array(buildArb, { maxLength: 12 }),
    referenced: keySet,
    unknownRoots: fc.array(rootArb, { maxLength: 3 }),
  })
  .map((r) => ({
    ...r,
    builds: r.builds.map((b, i) => ({ ...b, name: `nb-${i}` })),
    now: NOW,
    graceSeconds: GRACE,
  }));

const removals = (i: GcInput) =>
  gcDecision(i)
    .actions.filter((a) => a.kind !== 'unstamp')
    .map((a) => `${a.kind} ${a.name}`);

test('a build an unknown root named at its last good render is never stamped or deleted, and is unstamped', () => {
  fc.assert(
    fc.property(inputArb, (input) => {
      const named = new Set([...input.referenced, ...input.unknownRoots.flatMap((r) => [...(r.lastGood ?? [])])]);
      const d = gcDecision(input);
      for (const b of input.builds) {
        if (b.key === undefined || !named.has(b.key)) continue;
        const acts = d.actions.filter((a) => a.name === b.name).map((a) => a.kind);
        assert.deepEqual(acts, b.unreferencedSince !== undefined ? ['unstamp'] : []);
      }
    }),
  );
});

test('an unknown root with no good render yet: nothing is stamped or deleted at all', () => {
  fc.assert(
    fc.property(inputArb, fc.constantFrom('kustomization → new', 'HelmRelease x/new → new'), (input, origin) => {
      const blind = { ...input, unknownRoots: [...input.unknownRoots, { origin }] };
      const d = gcDecision(blind);
      assert.deepEqual(removals(blind), []);
      assert.ok(d.held?.includes(origin));
    }),
  );
});

test('unknown roots only ever take stamps and deletions away, never add one', () => {
  fc.assert(
    fc.property(inputArb, (input) => {
      const known = new Set(removals({ ...input, unknownRoots: [] }));
      for (const r of removals(input)) assert.ok(known.has(r), `${r} appears only with unknown roots`);
    }),
  );
});

test('with every root known: stamp the unreferenced, delete them after the grace period, unstamp the named', () => {
  const d = gcDecision({
    builds: [
      { name: 'named', key: 'a', unreferencedSince: ago(5) },
      { name: 'fresh', key: 'b' },
      { name: 'waiting', key: 'c', unreferencedSince: ago(GRACE - 20) },
      { name: 'due', key: 'd', unreferencedSince: ago(GRACE + 1) },
      { name: 'unreadable', key: undefined },
    ],
    referenced: new Set(['a']),
    unknownRoots: [],
    now: NOW,
    graceSeconds: GRACE,
  });
  assert.deepEqual(d.actions, [
    { kind: 'unstamp', name: 'named' },
    { kind: 'stamp', name: 'fresh' },
    { kind: 'delete', name: 'due', since: ago(GRACE + 1) },
    { kind: 'stamp', name: 'unreadable' },
  ]);
  assert.equal(d.dueMs, 20_000);
  assert.equal(d.held, undefined);
  assert.equal(d.keptForUnknown.size, 0);
});

test('a timed-out root: its last good builds are kept and named, the rest of the source is still collected', () => {
  const d = gcDecision({
    builds: [
      { name: 'of-the-root', key: 'a', unreferencedSince: ago(GRACE + 5) },
      { name: 'gone-elsewhere', key: 'b', unreferencedSince: ago(GRACE + 5) },
    ],
    referenced: new Set(),
    unknownRoots: [{ origin: 'kustomization → apps', lastGood: new Set(['a']) }],
    now: NOW,
    graceSeconds: GRACE,
  });
  assert.deepEqual(d.actions, [
    { kind: 'unstamp', name: 'of-the-root' },
    { kind: 'delete', name: 'gone-elsewhere', since: ago(GRACE + 5) },
  ]);
  assert.deepEqual([...d.keptForUnknown], [['of-the-root', 'kustomization → apps']]);
});
