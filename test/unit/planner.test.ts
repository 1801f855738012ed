import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { nodeViewOf, spegelSource } from '../../src/cluster/node-view.ts';
import { analyzeSource } from '../../src/pipeline/analyze.ts';
import { plan, type DistributionMode } from '../../src/plan/planner.ts';
import { deployment, type NodeOptions, rawNode, REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';

const IMG = 'docker.io/library/web:v1';
const workloadsOf = (...objects: unknown[]) =>
  analyzeSource([{ path: 'm.yaml', text: yamlDocs(...objects) }]).workloads;
const nodes = (spec: Record<string, NodeOptions>) =>
  Object.entries(spec).map(([name, o]) => nodeViewOf(rawNode(name, o)));
const web = (o: Parameters<typeof deployment>[1] = {}) =>
  deployment('web', { flake: `github:acme/web/${REV_A}#image`, image: 'web:v1', ...o });

test('one build per system, on a node that needs it, nothing where the image is present', () => {
  const p = plan({
    workloads: workloadsOf(web()),
    nodes: nodes({ a1: {}, a2: {}, r1: { arch: 'arm64' }, r2: { arch: 'arm64', images: [IMG] } }),
    mode: 'spegel',
  });
  assert.deepEqual(
    p.builds.map((b) => [b.system, b.node, b.missingOn]),
    [['x86_64-linux', 'a1', ['a1', 'a2']]],
  );
  assert.equal(p.builds[0]!.flake, `github:acme/web/${REV_A}#image`);
  assert.deepEqual(p.builds[0]!.images, [IMG]);
  assert.ok(p.statuses.some((s) => s.system === 'aarch64-linux' && s.state === 'present'));
});

test('per-node mode builds on every node that lacks the image, and only there', () => {
  const p = plan({
    workloads: workloadsOf(web()),
    nodes: nodes({ a1: {}, a2: { images: [IMG] }, a3: {} }),
    mode: 'per-node',
  });
  assert.deepEqual(
    p.builds.map((b) => b.node),
    ['a1', 'a3'],
  );
  assert.equal(new Set(p.builds.map((b) => b.id)).size, 2);
});

test('nodeSelector, required affinity, taints and readiness decide where a workload needs its image', () => {
  const ns = nodes({
    a1: { taints: [{ key: 'dedicated', value: 'db', effect: 'NoSchedule' }] },
    a2: { unschedulable: true },
    a3: { ready: false },
    r1: { arch: 'arm64' },
    r2: { arch: 'arm64', labels: { zone: 'b' } },
  });
  const bySelector = plan({
    workloads: workloadsOf(web({ nodeSelector: { 'kubernetes.io/arch': 'arm64' } })),
    nodes: ns,
    mode: 'per-node',
  });
  assert.deepEqual(
    bySelector.builds.map((b) => b.node),
    ['r1', 'r2'],
  );
  const affinity = {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [
          { matchExpressions: [{ key: 'zone', operator: 'In', values: ['b'] }] },
          { matchFields: [{ key: 'metadata.name', operator: 'In', values: ['a1'] }] },
        ],
      },
    },
  };
  const byAffinity = plan({ workloads: workloadsOf(web({ affinity })), nodes: ns, mode: 'per-node' });
  assert.deepEqual(
    byAffinity.builds.map((b) => b.node),
    ['r2'],
    'a1 is tainted',
  );
  const tolerated = plan({
    workloads: workloadsOf(web({ affinity, tolerations: [{ key: 'dedicated', operator: 'Exists' }] })),
    nodes: ns,
    mode: 'per-node',
  });
  // The workload tolerates a1's taint but enbi's builder does not: a1 needs the image and cannot build it.
  assert.deepEqual(
    tolerated.builds.map((b) => [b.system, b.node]),
    [
      ['aarch64-linux', 'r2'],
      ['x86_64-linux', null],
    ],
  );
  assert.match(tolerated.unbuildable[0]!, /node a1 needs the image but cannot run enbi's build/);
});

test('nothing is built for an architecture no node of the workload runs', () => {
  const p = plan({
    workloads: workloadsOf(web({ nodeSelector: { 'kubernetes.io/arch': 'amd64' } })),
    nodes: nodes({ a1: { images: [IMG] }, r1: { arch: 'arm64' } }),
    mode: 'spegel',
  });
  assert.deepEqual(p.builds, []);
});

test('an image absent from a possibly truncated list is unknown, not missing', () => {
  const ns = nodes({ a1: { padImagesTo: 50 }, a2: {} });
  const spegel = plan({ workloads: workloadsOf(web()), nodes: ns, mode: 'spegel' });
  assert.deepEqual(spegel.builds, []);
  assert.equal(spegel.statuses[0]!.state, 'unknown');
  assert.deepEqual(spegel.statuses[0]!.nodes, ['a1']);
  const perNode = plan({ workloads: workloadsOf(web()), nodes: ns, mode: 'per-node' });
  assert.deepEqual(
    perNode.builds.map((b) => b.node),
    ['a2'],
  );
  const under = plan({ workloads: workloadsOf(web()), nodes: nodes({ a1: { padImagesTo: 49 } }), mode: 'spegel' });
  assert.equal(under.builds.length, 1, 'a list shorter than the cap is complete');
});

test('builder choice: native before emulated, binfmt-labelled nodes build foreign systems, otherwise unbuildable', () => {
  const arm = web({ nodeSelector: { 'kubernetes.io/arch': 'arm64' }, tolerations: [{ key: 'x', operator: 'Exists' }] });
  const emulated = plan({
    workloads: workloadsOf(arm),
    nodes: nodes({
      a1: { extraSystems: ['aarch64-linux'] },
      r1: { arch: 'arm64', taints: [{ key: 'x', effect: 'NoSchedule' }] },
      r2: { arch: 'arm64', unschedulable: true },
    }),
    mode: 'spegel',
  });
  // The workload runs on r1 (it tolerates the taint), but enbi's builder does not; r2 is cordoned: only a1 can build.
  assert.equal(emulated.builds.length, 1);
  assert.equal(emulated.builds[0]!.node, 'a1');
  assert.equal(emulated.builds[0]!.emulated, true);
  const none = plan({
    workloads: workloadsOf(
      web({ nodeSelector: { 'kubernetes.io/arch': 'arm64' }, tolerations: [{ operator: 'Exists' }] }),
    ),
    nodes: nodes({ a1: {}, r1: { arch: 'arm64', taints: [{ key: 'x', effect: 'NoSchedule' }] } }),
    mode: 'spegel',
  });
  assert.equal(none.builds[0]!.node, null);
  assert.match(none.unbuildable[0]!, /no Ready, schedulable node can build aarch64-linux/);
  const tolerated = plan({
    workloads: workloadsOf(
      web({ nodeSelector: { 'kubernetes.io/arch': 'arm64' }, tolerations: [{ operator: 'Exists' }] }),
    ),
    nodes: nodes({ r1: { arch: 'arm64', taints: [{ key: 'x', effect: 'NoSchedule' }] } }),
    mode: 'spegel',
    builderTolerations: [{ key: 'x', operator: 'Exists' }],
  });
  assert.equal(tolerated.builds[0]!.node, 'r1');
  const off = plan({
    workloads: workloadsOf(web()),
    nodes: nodes({ a1: { labels: { 'enbi.hrzn.ee/builder': 'false' } }, a2: {} }),
    mode: 'spegel',
  });
  assert.equal(off.builds[0]!.node, 'a2');
});

test('many workloads needing the same flake revision share one build per system', () => {
  const ws = Array.from({ length: 30 }, (_, i) =>
    deployment(`w${i}`, {
      flake: `github:acme/web/${REV_A}#image`,
      image: i % 2 === 0 ? 'web:v1' : 'registry.local/web:v1',
    }),
  );
  const p = plan({
    workloads: workloadsOf(...ws),
    nodes: nodes({ a1: {}, a2: {}, r1: { arch: 'arm64' } }),
    mode: 'spegel',
  });
  assert.equal(p.builds.length, 2);
  assert.deepEqual(p.builds[0]!.images, ['docker.io/library/web:v1', 'registry.local/web:v1']);
  assert.equal(p.builds[0]!.workloads.length, 30);
  assert.notEqual(p.builds[0]!.node, null);
});

// Property: random clusters and workloads; the planner's invariants hold.
const arch = fc.constantFrom('amd64', 'arm64', 'riscv64');
const nodeArb = fc.record({
  arch,
  ready: fc.boolean(),
  unschedulable: fc.boolean(),
  tainted: fc.boolean(),
  holds: fc.subarray([0, 1, 2, 3]),
  truncated: fc.boolean(),
  zone: fc.constantFrom('a', 'b'),
  extra: fc.boolean(),
});
const workloadArb = fc.record({
  image: fc.integer({ min: 0, max: 3 }),
  rev: fc.boolean(),
  arch: fc.option(arch, { nil: undefined }),
  zone: fc.option(fc.constantFrom('a', 'b'), { nil: undefined }),
  tolerate: fc.boolean(),
});

test('property: no duplicate builds, every missing (image, system) covered, nothing planned where present', () => {
  fc.assert(
    fc.property(
      fc.array(nodeArb, { minLength: 1, maxLength: 8 }),
      fc.array(workloadArb, { minLength: 1, maxLength: 6 }),
      fc.constantFrom<DistributionMode>('spegel', 'per-node'),
      (nodeSpecs, wspecs, mode) => {
        const images = [0, 1, 2, 3].map((i) => `registry.local/app${i}:v1`);
        const ns = nodeSpecs.map((s, i) =>
          nodeViewOf(
            rawNode(`n${i}`, {
              arch: s.arch,
              ready: s.ready,
              unschedulable: s.unschedulable,
              taints: s.tainted ? [{ key: 't', effect: 'NoSchedule' }] : [],
              images: s.holds.map((h) => images[h]!),
              padImagesTo: s.truncated ? 50 : undefined,
              labels: { zone: s.zone },
              extraSystems: s.extra ? ['aarch64-linux'] : [],
            }),
          ),
        );
        const ws = workloadsOf(
          ...wspecs.map((w, i) =>
            deployment(`w${i}`, {
              flake: `github:acme/app${w.image}/${w.rev ? REV_A : REV_B}#image`,
              image: images[w.image]!,
              nodeSelector: {
                ...(w.arch !== undefined ? { 'kubernetes.io/arch': w.arch } : {}),
                ...(w.zone !== undefined ? { zone: w.zone } : {}),
              },
              tolerations: w.tolerate ? [{ key: 't', operator: 'Exists' }] : [],
            }),
          ),
        );
        const p = plan({ workloads: ws, nodes: ns, mode });
        // 1. No duplicate builds; per (source, attr, system) at most one in spegel mode, one per node in per-node mode.
        assert.equal(new Set(p.builds.map((b) => b.id)).size, p.builds.length);
        const perKey = new Set(
          p.builds.map((b) => `${b.flake}@${b.system}${mode === 'per-node' ? `@${b.missingOn.join()}` : ''}`),
        );
        assert.equal(perKey.size, p.builds.length);
        // 2. Every missing status is covered by a build of that image for that system (on that node in per-node mode).
        for (const s of p.statuses.filter((s) => s.state === 'missing')) {
          for (const node of mode === 'spegel' ? [undefined] : s.nodes) {
            assert.ok(
              p.builds.some(
                (b) =>
                  b.system === s.system &&
                  b.images.includes(s.image) &&
                  (node === undefined || b.missingOn.includes(node)),
              ),
              `missing ${s.image} on ${s.system} ${node ?? ''} has no build`,
            );
          }
        }
        // 3. Nothing planned for an image present where needed, nor on the strength of a truncated list alone.
        for (const b of p.builds) {
          for (const n of b.missingOn) {
            const view = ns.find((v) => v.name === n)!;
            for (const img of b.images)
              assert.ok(
                !(view.images.has(img) && mode === 'per-node' && b.images.length === 1),
                `${img} present on ${n}`,
              );
            assert.ok(view.imagesComplete || mode === 'spegel', `per-node build for ${n} on a truncated list`);
            assert.equal(view.system, b.system);
          }
          if (mode === 'spegel') {
            const peers = ns.filter((v) => v.ready && v.system === b.system);
            assert.ok(
              peers.every((v) => v.imagesComplete),
              'spegel build despite a truncated peer list',
            );
            for (const img of b.images)
              assert.ok(!peers.some((v) => v.images.has(img)), `${img} already on a ${b.system} node`);
          }
          // 4. A chosen builder can build the system and is Ready and schedulable.
          if (b.node !== null) {
            const builder = ns.find((v) => v.name === b.node)!;
            assert.ok(
              builder.ready &&
                !builder.unschedulable &&
                builder.buildSystems.includes(b.system) &&
                builder.taints.length === 0,
            );
          }
        }
      },
    ),
    { numRuns: 3000 },
  );
});

test('an image kubelet reports absent is missing on that node even when its list is cut; other cut lists stay unknown', () => {
  const [a, b] = nodes({ a: { arch: 'amd64', padImagesTo: 50 }, b: { arch: 'amd64', padImagesTo: 50 } });
  const w = workloadsOf(web());
  const reported = { ...a!, missing: new Set([IMG]) };
  const perNode = plan({ workloads: w, nodes: [reported, b!], mode: 'per-node', builderTolerations: [] });
  assert.deepEqual(
    perNode.builds.map((x) => x.node),
    ['a'],
  );
  // Spegel: b might hold it and serve it: still unknown; with a alone, missing.
  assert.deepEqual(plan({ workloads: w, nodes: [reported, b!], mode: 'spegel', builderTolerations: [] }).builds, []);
  assert.deepEqual(
    plan({ workloads: w, nodes: [reported], mode: 'spegel', builderTolerations: [] }).builds.map((x) => x.node),
    ['a'],
  );
  // Without the report, a cut list never makes it missing.
  assert.deepEqual(plan({ workloads: w, nodes: [a!], mode: 'per-node', builderTolerations: [] }).builds, []);
});

test("kubelet's ErrImageNeverPull outweighs its own lagging image list: the node does not hold the image", () => {
  const ws = workloadsOf(web());
  for (const mode of ['spegel', 'per-node'] as DistributionMode[]) {
    const listed = nodes({ a1: { images: [IMG] } });
    assert.equal(
      plan({ workloads: ws, nodes: listed, mode }).builds.length,
      0,
      `${mode}: listed, nothing said: present`,
    );
    const reported = listed.map((n) => ({ ...n, missing: new Set([IMG]) }));
    const p = plan({ workloads: ws, nodes: reported, mode });
    assert.deepEqual(
      p.builds.map((b) => b.missingOn),
      [['a1']],
      `${mode}: kubelet says absent`,
    );
  }
});

test("spegel mode: a node of another system serves a system whose manifest its agent reports under the tag's index", () => {
  const IMG = 'docker.io/library/web:v1';
  const [a1, r1] = nodes({ a1: { extraSystems: ['aarch64-linux'] }, r1: { arch: 'arm64' } });
  // a1 (amd64) built the aarch64 image under QEMU: its inventory lists the tag with linux/arm64 only.
  const built = {
    ...a1!,
    imageSource: 'agent' as const,
    imagesComplete: true,
    platformImages: new Map([[IMG, new Set(['linux/arm64'])]]),
  };
  const p = plan({ workloads: workloadsOf(web()), nodes: [built, { ...r1!, imagesComplete: true }], mode: 'spegel' });
  const arm = p.statuses.find((s) => s.system === 'aarch64-linux');
  assert.deepEqual([arm?.state, arm?.nodes], ['present', ['a1']], 'r1 pulls the arm64 manifest from a1 through Spegel');
  // Not for amd64: a1 holds no amd64 manifest under the tag, so x86_64 is built.
  assert.deepEqual(
    p.builds.map((b) => b.system),
    ['x86_64-linux'],
  );
  // Without the arm64 manifest (only amd64 listed), aarch64 is missing again.
  const amdOnly = { ...built, platformImages: new Map([[IMG, new Set(['linux/amd64'])]]), images: new Set([IMG]) };
  const q = plan({ workloads: workloadsOf(web()), nodes: [amdOnly, { ...r1!, imagesComplete: true }], mode: 'spegel' });
  assert.deepEqual(
    q.builds.map((b) => b.system),
    ['aarch64-linux'],
  );
});

test('spegel mode builds on a node whose imports Spegel can spread (containerd 2.x) before one it cannot (1.6/1.7)', () => {
  const [a1, a2] = nodes({ a1: {}, a2: {} });
  const old = { ...a1!, spegelSource: spegelSource('containerd://1.6.20~ds1') };
  const current = { ...a2!, spegelSource: spegelSource('containerd://2.4.2') };
  assert.equal(old.spegelSource, false);
  assert.equal(current.spegelSource, true);
  assert.equal(spegelSource('containerd://1.7.28-k3s1'), false);
  assert.equal(spegelSource('cri-o://1.30.0'), true, 'not containerd: nothing known against it');
  const p = plan({ workloads: workloadsOf(web()), nodes: [old, current], mode: 'spegel' });
  assert.deepEqual(
    p.builds.map((b) => b.node),
    ['a2'],
    'a1 would win by name',
  );
  // With the 2.x node busy, the 1.6 one still builds rather than nobody.
  const busy = plan({
    workloads: workloadsOf(web()),
    nodes: [old, current],
    mode: 'spegel',
    activeBuilds: new Map([['a2', 1]]),
    maxBuildsPerNode: 1,
  });
  assert.deepEqual(
    busy.builds.map((b) => b.node),
    ['a1'],
  );
});
