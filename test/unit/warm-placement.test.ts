// Warm placement: the node that last built a flake repository for a system is preferred for its next
// revision, within the per-node limit, never over a native or Spegel-capable node, with the reason given.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { nodeViewOf, type NodeView } from '../../src/cluster/node-view.ts';
import { chooseBuilder, plan } from '../../src/plan/planner.ts';
import { type BuildRecord, repositoryOf, type WarmBuild, warmFor, warmIndex } from '../../src/plan/warmth.ts';
import { analyzeSource } from '../../src/pipeline/analyze.ts';
import { deployment, type NodeOptions, rawNode, REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';

const SYSTEM = 'x86_64-linux';
const REV_C = 'cccccccccccccccccccccccccccccccccccccccc';
const node = (name: string, o: NodeOptions & { spegelSource?: boolean } = {}): NodeView => {
  const v = nodeViewOf(rawNode(name, o));
  if (o.spegelSource !== undefined) v.spegelSource = o.spegelSource;
  return v;
};
const emulating = (name: string) => node(name, { arch: 'arm64', extraSystems: [SYSTEM] });
const succeeded = (flakeUrl: string, node: string, completionTime: string, system = SYSTEM): BuildRecord => ({
  spec: { flakeUrl, packageName: 'image', system },
  status: { phase: 'Succeeded', node, completionTime },
});
const warmOn = (...entries: [string, number][]): Map<string, WarmBuild> =>
  new Map(
    entries.map(([n, at]) => [
      n,
      { node: n, repository: 'github:acme/app', system: SYSTEM, attr: 'image', rev: REV_A, completedAt: at },
    ]),
  );

// ---- the repository of a flake, and the index of where it was built ----

test('repositoryOf: revisions, branches, attributes and content pins of one repository are one repository', () => {
  const same = [
    `github:acme/app/${REV_A}`,
    `github:acme/app/${REV_B}#image`,
    'github:acme/app/main',
    `github:acme/app?rev=${REV_A}&ref=release`,
    'github:acme/app',
  ];
  assert.deepEqual(new Set(same.map(repositoryOf)), new Set(['github:acme/app']));
  const git = [
    `git+https://git.example/app.git?rev=${REV_A}`,
    `git+https://git.example/app.git?ref=main&rev=${REV_B}`,
    `git+https://git.example/app.git?narHash=sha256-AAAA&rev=${REV_C}#packages.x86_64-linux.web`,
  ];
  assert.deepEqual(new Set(git.map(repositoryOf)), new Set(['git+https://git.example/app.git']));
  // Another repository, owner, host or subflake is another repository.
  const others = [
    `github:acme/other/${REV_A}`,
    `github:elsewhere/app/${REV_A}`,
    `github:acme/app/${REV_A}?host=ghe.example`,
    `github:acme/app/${REV_A}?dir=sub`,
    `git+https://git.example/app2.git?rev=${REV_A}`,
  ].map(repositoryOf);
  assert.equal(new Set(others).size, others.length);
  assert.ok(!others.includes('github:acme/app'));
  assert.equal(repositoryOf('not a flake'), undefined);
});

test('warmIndex: only Succeeded builds with a node count; per node the latest; per system apart', () => {
  const index = warmIndex([
    succeeded(`github:acme/app/${REV_A}`, 'n1', '2025-01-01T00:00:00Z'),
    succeeded(`github:acme/app/${REV_B}`, 'n1', '2025-01-03T00:00:00Z'),
    succeeded(`github:acme/app/${REV_C}`, 'n1', '2025-01-02T00:00:00Z'),
    succeeded(`github:acme/app/${REV_A}`, 'n2', '2025-01-02T00:00:00Z'),
    succeeded(`github:acme/app/${REV_C}`, 'arm', '2025-01-05T00:00:00Z', 'aarch64-linux'),
    {
      spec: { flakeUrl: `github:acme/app/${REV_C}`, packageName: 'image', system: SYSTEM },
      status: { phase: 'Failed', node: 'n3' },
    },
    {
      spec: { flakeUrl: `github:acme/app/${REV_C}`, packageName: 'image', system: SYSTEM },
      status: { phase: 'Building', node: 'n4' },
    },
    {
      spec: { flakeUrl: `github:acme/app/${REV_C}`, packageName: 'image', system: SYSTEM },
      status: { phase: 'Succeeded' },
    },
    { spec: { flakeUrl: `github:acme/app/${REV_C}`, packageName: 'image', system: SYSTEM } },
    succeeded('::bad::', 'n5', '2025-01-09T00:00:00Z'),
  ]);
  const warm = warmFor(index, `github:acme/app/${REV_C}#image`, SYSTEM);
  assert.deepEqual([...warm.values()].map((w) => [w.node, w.rev, new Date(w.completedAt).toISOString()]).sort(), [
    ['n1', REV_B, '2025-01-03T00:00:00.000Z'],
    ['n2', REV_A, '2025-01-02T00:00:00.000Z'],
  ]);
  assert.deepEqual([...warmFor(index, `github:acme/app/${REV_C}`, 'aarch64-linux').keys()], ['arm']);
  assert.equal(warmFor(index, `github:acme/other/${REV_C}`, SYSTEM).size, 0);
  assert.equal(warmFor(undefined, `github:acme/app/${REV_C}`, SYSTEM).size, 0);
});

// ---- the rule ----

test('warm is preferred over a less loaded node and one first by name, and says so', () => {
  const able = [node('a'), node('b'), node('c')];
  const load = new Map([['c', 2]]);
  const choice = chooseBuilder(able, { system: SYSTEM, load, maxPerNode: 4, warm: warmOn(['c', 10]) });
  assert.equal(choice?.node.name, 'c');
  assert.equal(choice?.reason, `warm: built github:acme/app for ${SYSTEM} last (rev ${REV_A.slice(0, 12)})`);
  // Without warmth, load and then name decide, as before.
  const cold = chooseBuilder(able, { system: SYSTEM, load, maxPerNode: 4 });
  assert.equal(cold?.node.name, 'a');
  assert.equal(cold?.reason, 'least loaded (0 running builds), first by name beside b');
  // Two warm nodes: the one that built it last.
  const two = chooseBuilder(able, { system: SYSTEM, load, maxPerNode: 4, warm: warmOn(['b', 5], ['c', 10]) });
  assert.equal(two?.node.name, 'c');
  // The later one full: the earlier one, still warm.
  const earlier = chooseBuilder(able, { system: SYSTEM, load, maxPerNode: 2, warm: warmOn(['b', 5], ['c', 10]) });
  assert.equal(earlier?.node.name, 'b');
  assert.match(
    earlier!.reason,
    /^c built github:acme\/app .* but is at the limit of 2 running builds; warm: built .* before/,
  );
});

test('a warm node at its limit: load decides as without warmth, and the reason names the full warm node', () => {
  const able = [node('a'), node('b'), node('c')];
  const load = new Map([
    ['a', 1],
    ['c', 2],
  ]);
  const choice = chooseBuilder(able, { system: SYSTEM, load, maxPerNode: 2, warm: warmOn(['c', 10]) });
  assert.equal(choice?.node.name, 'b');
  assert.equal(
    choice?.reason,
    `c built github:acme/app for ${SYSTEM} last (rev ${REV_A.slice(0, 12)}) but is at the limit of 2 running builds; least loaded: 0 running builds, a has 1`,
  );
  // Every node full: the build waits for the least loaded, not for the warm one.
  const allFull = chooseBuilder(able, {
    system: SYSTEM,
    load: new Map([
      ['a', 3],
      ['b', 2],
      ['c', 4],
    ]),
    maxPerNode: 2,
    warm: warmOn(['c', 10]),
  });
  assert.deepEqual([allFull?.node.name, allFull?.full], ['b', true]);
  assert.match(
    allFull!.reason,
    /every able node is at the limit of 2 running builds: waits for a slot here \(least loaded/,
  );
});

test('warmth never makes an emulating or a non-Spegel node win over a native, Spegel-capable one', () => {
  const choice = chooseBuilder([emulating('arm1'), node('x')], {
    system: SYSTEM,
    load: new Map([['x', 3]]),
    maxPerNode: 4,
    warm: warmOn(['arm1', 10]),
  });
  assert.equal(choice?.node.name, 'x');
  assert.equal(
    choice?.reason,
    `arm1 built github:acme/app for ${SYSTEM} last (rev ${REV_A.slice(0, 12)}) but would emulate ${SYSTEM}; native ${SYSTEM}; arm1 would emulate it`,
  );
  const spegel = chooseBuilder([node('old', { spegelSource: false }), node('new', { spegelSource: true })], {
    system: SYSTEM,
    load: new Map(),
    warm: warmOn(['old', 10]),
  });
  assert.equal(spegel?.node.name, 'new');
  assert.match(
    spegel!.reason,
    /old built .* but cannot spread its imports through Spegel; its imports spread through Spegel/,
  );
  // With only emulating nodes, warmth chooses among them.
  const onlyEmulated = chooseBuilder([emulating('arm1'), emulating('arm2')], {
    system: SYSTEM,
    load: new Map(),
    warm: warmOn(['arm2', 1]),
  });
  assert.equal(onlyEmulated?.node.name, 'arm2');
});

test('plan: revision B goes to the node that built revision A; another repository by load; cordoned, tainted and unready warm nodes never build', () => {
  const ws = analyzeSource([
    {
      path: 'm.yaml',
      text: yamlDocs(
        ...[
          ['app', `github:acme/app/${REV_B}#image`],
          ['other', `github:acme/other/${REV_A}#image`],
        ].map(([name, flake]) =>
          deployment(name!, {
            flake: flake!,
            image: `registry.local/${name}:v2`,
            annotations: { 'enbi.hrzn.ee/build': 'eager' },
          }),
        ),
      ),
    },
  ]).workloads;
  const warm = warmIndex([succeeded(`github:acme/app/${REV_A}`, 'z', '2025-01-01T00:00:00Z')]);
  const p = plan({ workloads: ws, nodes: [node('a'), node('z')], mode: 'spegel', maxBuildsPerNode: 4, warm });
  const placed = Object.fromEntries(p.builds.map((b) => [b.flake.split('/')[1], [b.node, b.placement]]));
  assert.deepEqual(placed, {
    app: ['z', `warm: built github:acme/app for ${SYSTEM} last (rev ${REV_A.slice(0, 12)})`],
    // z holds a build now: the other repository goes to the least loaded node.
    other: ['a', 'least loaded: 0 running builds, z has 1'],
  });
  for (const o of [
    { unschedulable: true },
    { taints: [{ key: 'dedicated', value: 'db', effect: 'NoSchedule' }] },
    { ready: false },
    { labels: { 'enbi.hrzn.ee/builder': 'false' } },
  ] satisfies NodeOptions[]) {
    const q = plan({ workloads: ws, nodes: [node('a'), node('z', o)], mode: 'spegel', maxBuildsPerNode: 4, warm });
    assert.deepEqual(
      q.builds.map((b) => b.node),
      ['a', 'a'],
      JSON.stringify(o),
    );
    const app = q.builds.find((b) => b.flake.includes('acme/app/'))!;
    assert.match(app.placement!, /^z built github:acme\/app .* but cannot build now/);
  }
});

// ---- properties over every small cluster ----

interface Shape {
  nodes: { native: boolean; spegel: boolean | undefined; load: number; warmAt: number | undefined; needs: boolean }[];
  max: number;
}

const shape: fc.Arbitrary<Shape> = fc.record({
  nodes: fc.array(
    fc.record({
      native: fc.boolean(),
      spegel: fc.constantFrom(true, false, undefined),
      load: fc.integer({ min: 0, max: 3 }),
      warmAt: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
      needs: fc.boolean(),
    }),
    { minLength: 1, maxLength: 6 },
  ),
  max: fc.constantFrom(1, 2, 3, Infinity),
});

function setUp(s: Shape) {
  const able = s.nodes.map((n, i) => (n.native ? node(`n${i}`, { spegelSource: n.spegel }) : emulating(`n${i}`)));
  able.forEach((v, i) => {
    if (!s.nodes[i]!.native && s.nodes[i]!.spegel !== undefined) v.spegelSource = s.nodes[i]!.spegel;
  });
  const load = new Map(s.nodes.map((n, i) => [`n${i}`, n.load]));
  const needs = new Set(s.nodes.flatMap((n, i) => (n.needs ? [`n${i}`] : [])));
  const warm = warmOn(
    ...s.nodes.flatMap((n, i): [string, number][] => (n.warmAt !== undefined ? [[`n${i}`, n.warmAt]] : [])),
  );
  return { able, query: { system: SYSTEM, load, maxPerNode: s.max, needs }, warm };
}

const classOf = (n: NodeView) => [n.spegelSource === false, n.system !== SYSTEM].join();

test('property: warmth changes the choice only to a warm node under the limit, within the best Spegel/native class', () => {
  fc.assert(
    fc.property(shape, (s) => {
      const { able, query, warm } = setUp(s);
      const cold = chooseBuilder(able, query)!;
      const hot = chooseBuilder(able, { ...query, warm })!;
      const loadOf = (n: NodeView) => query.load.get(n.name) ?? 0;
      // Never an emulated or non-Spegel node because it is warm: the class is the one load alone picks.
      assert.equal(classOf(hot.node), classOf(cold.node));
      assert.equal(hot.full, cold.full);
      if (hot.node.name !== cold.node.name) {
        assert.ok(warm.has(hot.node.name), 'only warmth moves a build');
        assert.ok(loadOf(hot.node) < s.max, 'never onto a node at its limit');
        assert.match(hot.reason, /(^|; )warm: built /);
      }
      // All full: warmth plays no part.
      if (hot.full) assert.equal(hot.node.name, cold.node.name);
      // The warmest free node of the chosen class is chosen when there is one (ties by load, need, name).
      const warmFree = able.filter((n) => warm.has(n.name) && loadOf(n) < s.max && classOf(n) === classOf(cold.node));
      if (warmFree.length > 0 && !cold.full) {
        const top = Math.max(...warmFree.map((n) => warm.get(n.name)!.completedAt));
        assert.equal(warm.get(hot.node.name)?.completedAt, top);
      }
      // A warm node's entry at its limit changes nothing.
      const freeWarm = new Map([...warm].filter(([n]) => loadOf(able.find((a) => a.name === n)!) < s.max));
      assert.equal(chooseBuilder(able, { ...query, warm: freeWarm })!.node.name, hot.node.name);
    }),
    { numRuns: 2000 },
  );
});

test('property: the choice and its reason do not depend on the order nodes are listed in', () => {
  fc.assert(
    fc.property(
      shape.chain((s) =>
        fc.tuple(
          fc.constant(s),
          fc.shuffledSubarray(
            s.nodes.map((_, i) => i),
            { minLength: s.nodes.length },
          ),
        ),
      ),
      ([s, order]) => {
        const { able, query, warm } = setUp(s);
        const a = chooseBuilder(able, { ...query, warm })!;
        const b = chooseBuilder(
          order.map((i) => able[i]!),
          { ...query, warm },
        )!;
        assert.deepEqual([b.node.name, b.full, b.reason], [a.node.name, a.full, a.reason]);
      },
    ),
    { numRuns: 1000 },
  );
});
