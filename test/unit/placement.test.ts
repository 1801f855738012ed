// Placement of builds (per-node limit, spreading), moving builds off lost nodes, and rebuilding images
// that went missing: the pure parts (planner, desired builds, NixBuild state machine).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { NixBuild } from '../../src/api/nixbuild.ts';
import { nodeViewOf } from '../../src/cluster/node-view.ts';
import { nextState, nodeLoss, type NodeHealth } from '../../src/controller/build-state.ts';
import { activeBuildsByNode, desiredBuilds, type DesiredInput } from '../../src/controller/desired.ts';
import { podWorkloads } from '../../src/plan/on-demand.ts';
import { analyzeSource } from '../../src/pipeline/analyze.ts';
import { chooseBuilder, plan } from '../../src/plan/planner.ts';
import { deployment, type NodeOptions, rawNode, REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';

const workloadsOf = (...objects: unknown[]) =>
  analyzeSource([{ path: 'm.yaml', text: yamlDocs(...objects) }]).workloads;
const nodes = (spec: Record<string, NodeOptions>) =>
  Object.entries(spec).map(([name, o]) => nodeViewOf(rawNode(name, o)));
const eager = (name: string, rev = REV_A, o: Parameters<typeof deployment>[1] = {}) =>
  deployment(name, {
    flake: `github:acme/${name}/${rev}#image`,
    image: `registry.local/${name}:v1`,
    annotations: { 'enbi.hrzn.ee/build': 'eager' },
    ...o,
  });

// ---- the planner: per-node limit and spreading ----

test('a builder at the per-node limit is passed over for another capable node, native first', () => {
  const ns = nodes({ a1: {}, a2: {}, a3: { arch: 'arm64', extraSystems: ['x86_64-linux'] } });
  const ws = workloadsOf(eager('web', REV_A, { nodeSelector: { 'kubernetes.io/arch': 'amd64' } }));
  // a1 is the natural choice (name order); it is full, so a2 (native) gets it, not a3 (emulated).
  const p = plan({ workloads: ws, nodes: ns, mode: 'spegel', activeBuilds: new Map([['a1', 2]]), maxBuildsPerNode: 2 });
  assert.deepEqual(
    p.builds.map((b) => [b.node, b.emulated, b.queued]),
    [['a2', false, undefined]],
  );
  // Both native builders full: the emulating one, rather than waiting.
  const q = plan({
    workloads: ws,
    nodes: ns,
    mode: 'spegel',
    activeBuilds: new Map([
      ['a1', 2],
      ['a2', 2],
    ]),
    maxBuildsPerNode: 2,
  });
  assert.deepEqual(
    q.builds.map((b) => [b.node, b.emulated, b.queued]),
    [['a3', true, undefined]],
  );
  // Every able node full: queued on the best of them, nothing unbuildable.
  const r = plan({
    workloads: ws,
    nodes: ns,
    mode: 'spegel',
    activeBuilds: new Map([
      ['a1', 2],
      ['a2', 2],
      ['a3', 2],
    ]),
    maxBuildsPerNode: 2,
  });
  assert.deepEqual(
    r.builds.map((b) => [b.node, b.queued]),
    [['a1', true]],
  );
  assert.deepEqual(r.unbuildable, []);
});

test('builds of one plan spread over the able nodes, least loaded first; a tainted node is never chosen', () => {
  const ns = nodes({
    a1: {},
    a2: {},
    a3: {},
    a4: { taints: [{ key: 'dedicated', value: 'db', effect: 'NoSchedule' }] },
  });
  const ws = workloadsOf(...['w1', 'w2', 'w3', 'w4', 'w5', 'w6'].map((n) => eager(n)));
  const p = plan({ workloads: ws, nodes: ns, mode: 'spegel', activeBuilds: new Map([['a3', 1]]), maxBuildsPerNode: 2 });
  const per = new Map<string, number>();
  for (const b of p.builds) if (b.queued !== true) per.set(b.node!, (per.get(b.node!) ?? 0) + 1);
  assert.deepEqual(Object.fromEntries([...per].sort()), { a1: 2, a2: 2, a3: 1 }, 'a3 had one running already');
  assert.equal(p.builds.filter((b) => b.queued === true).length, 1);
  // A tolerated taint makes a4 a builder.
  const t = plan({
    workloads: ws,
    nodes: ns,
    mode: 'spegel',
    activeBuilds: new Map([['a3', 1]]),
    maxBuildsPerNode: 2,
    builderTolerations: [{ key: 'dedicated', operator: 'Exists' }],
  });
  assert.equal(t.builds.filter((b) => b.queued === true).length, 0);
  assert.ok(t.builds.some((b) => b.node === 'a4'));
});

test('per-node mode: a full node queues its own build; started builds are neither placed nor counted again', () => {
  const ns = nodes({ a1: {}, a2: {} });
  const ws = workloadsOf(eager('web'));
  const p = plan({
    workloads: ws,
    nodes: ns,
    mode: 'per-node',
    activeBuilds: new Map([['a1', 1]]),
    maxBuildsPerNode: 1,
  });
  assert.deepEqual(
    p.builds.map((b) => [b.node, b.queued]),
    [
      ['a1', true],
      ['a2', undefined],
    ],
  );
  const started = plan({
    workloads: ws,
    nodes: ns,
    mode: 'spegel',
    activeBuilds: new Map([['a1', 1]]),
    maxBuildsPerNode: 1,
    started: () => true,
  });
  assert.deepEqual(
    started.builds.map((b) => [b.node, b.queued]),
    [[null, undefined]],
  );
});

test('chooseBuilder: needing the image breaks ties, load comes first', () => {
  const ns = nodes({ a1: {}, a2: {} });
  const system = 'x86_64-linux';
  assert.equal(chooseBuilder(ns, { system, load: new Map(), maxPerNode: 4, needs: new Set(['a2']) })?.node.name, 'a2');
  assert.equal(
    chooseBuilder(ns, { system, load: new Map([['a2', 1]]), maxPerNode: 4, needs: new Set(['a2']) })?.node.name,
    'a1',
  );
  assert.deepEqual(chooseBuilder([], { system, load: new Map() }), undefined);
});

test('property: no node gets more new builds than its free slots; a build is queued only when every able node is full', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          arch: fc.constantFrom('amd64', 'arm64'),
          active: fc.integer({ min: 0, max: 3 }),
          extra: fc.boolean(),
        }),
        { minLength: 1, maxLength: 6 },
      ),
      fc.integer({ min: 1, max: 12 }),
      fc.integer({ min: 1, max: 3 }),
      (specs, count, max) => {
        const ns = specs.map((s, i) =>
          nodeViewOf(
            rawNode(`n${i}`, { arch: s.arch, extraSystems: s.extra ? ['aarch64-linux', 'x86_64-linux'] : [] }),
          ),
        );
        const active = new Map(specs.map((s, i) => [`n${i}`, s.active]));
        const ws = workloadsOf(...Array.from({ length: count }, (_, i) => eager(`w${i}`)));
        const p = plan({ workloads: ws, nodes: ns, mode: 'spegel', activeBuilds: active, maxBuildsPerNode: max });
        const added = new Map<string, number>();
        for (const b of p.builds)
          if (b.node !== null && b.queued !== true) added.set(b.node, (added.get(b.node) ?? 0) + 1);
        for (const [n, k] of added) assert.ok((active.get(n) ?? 0) + k <= max, `${n} over the limit`);
        for (const b of p.builds.filter((x) => x.queued === true)) {
          const able = ns.filter((n) => n.buildSystems.includes(b.system));
          assert.ok(
            able.every((n) => (active.get(n.name) ?? 0) + (added.get(n.name) ?? 0) >= max),
            `${b.id} queued while a node had room`,
          );
        }
      },
    ),
    { numRuns: 500 },
  );
});

// ---- desired builds: placement in status, queued builds, rebuilds ----

const NS = 'enbi-system';
const LAZY = `git+http://git.invalid/lazy.git?rev=${REV_B}#image`;
const podOn = (name: string, node: string, reason: string | null = 'ErrImageNeverPull'): V1Pod => ({
  metadata: { name, namespace: 'apps', annotations: { 'enbi.hrzn.ee/flake': LAZY } },
  spec: { nodeName: node, containers: [{ name: 'app', image: 'registry.local/lazy:v2', imagePullPolicy: 'Never' }] },
  status: {
    phase: 'Pending',
    containerStatuses:
      reason === null
        ? []
        : [
            {
              name: 'app',
              image: 'registry.local/lazy:v2',
              imageID: '',
              ready: false,
              restartCount: 0,
              state: { waiting: { reason } },
            },
          ],
  },
});
const desiredInput = (o: Partial<DesiredInput>): DesiredInput => ({
  analysis: undefined,
  locks: new Map(),
  pods: [],
  nodes: nodes({ a1: {}, a2: {}, r1: { arch: 'arm64' } }),
  existing: [],
  mode: 'spegel',
  defaultBuildMode: 'on-demand',
  builderTolerations: [],
  namespace: NS,
  maxConcurrentBuildsPerNode: 1,
  now: new Date('2025-01-01T12:00:00Z'),
  rebuildGraceSeconds: 120,
  // These pods declare their own flake: their namespace is trusted (the trust gate has its own tests).
  trustedNamespaces: ['apps'],
  policy: { images: ['registry.local/'], flakes: ['http://git.invalid/', 'https://github.com/acme/'] },
  ...o,
});

test('desired: Spegel-mode builds carry no spec.node; their node is the placement; a full cluster queues', () => {
  const d = desiredBuilds(desiredInput({ pods: [podOn('p1', 'a2'), podOn('p2', 'r1')] }));
  assert.equal(d.create.length, 2);
  for (const nb of d.create) assert.equal(nb.spec.node, undefined);
  assert.deepEqual([...d.placement.values()].sort(), ['a2', 'r1'], 'on the node the pod waits on, when free');
  const busy: NixBuild = {
    ...d.create[0]!,
    metadata: { ...d.create[0]!.metadata, name: 'other' },
    status: { phase: 'Building', node: 'a2' },
  };
  const d2 = desiredBuilds(desiredInput({ pods: [podOn('p1', 'a2')], existing: [busy] }));
  assert.deepEqual([...d2.placement.values()], ['a1'], 'a2 is at its limit: a1 builds instead of waiting');
  const d3 = desiredBuilds(
    desiredInput({
      pods: [podOn('p1', 'a2')],
      existing: [busy, { ...busy, metadata: { name: 'x' }, status: { phase: 'Building', node: 'a1' } }],
    }),
  );
  assert.deepEqual(d3.create, []);
  assert.equal(d3.waiting.length, 1);
  const perNode = desiredBuilds(desiredInput({ pods: [podOn('p1', 'a2')], mode: 'per-node' }));
  assert.equal(perNode.create[0]!.spec.node, 'a2', 'per-node: the node is what is built for, pinned in the spec');
  assert.deepEqual(
    activeBuildsByNode([busy, { ...busy, status: { phase: 'Succeeded', node: 'a1' } }]),
    new Map([['a2', 1]]),
  );
});

test('desired: the next revision goes to the node that built the repository last, and placedWhy says so', () => {
  const cold = desiredBuilds(desiredInput({ pods: [podOn('p1', 'a2')] }));
  assert.deepEqual([...cold.placement.values()], ['a2']);
  assert.deepEqual(
    [...cold.placedWhy.values()],
    ['least loaded (0 running builds) and needs the image itself; a1 does not'],
  );
  // Revision A of lazy.git Succeeded on a1: revision B goes there, though a2 is the pod's own node.
  const revA: NixBuild = {
    ...cold.create[0]!,
    metadata: { name: 'lazy-a' },
    spec: { ...cold.create[0]!.spec, flakeUrl: `git+http://git.invalid/lazy.git?rev=${REV_A}` },
    status: { phase: 'Succeeded', node: 'a1', completionTime: '2025-01-01T11:00:00Z' },
  };
  const warm = desiredBuilds(desiredInput({ pods: [podOn('p1', 'a2')], existing: [revA] }));
  assert.deepEqual([...warm.placement.values()], ['a1']);
  assert.deepEqual(
    [...warm.placedWhy.values()],
    [`warm: built git+http://git.invalid/lazy.git for x86_64-linux last (rev ${REV_A.slice(0, 12)})`],
  );
  // a1 busy with another build (the limit is 1): back to load.
  const busy: NixBuild = { ...revA, metadata: { name: 'other' }, status: { phase: 'Building', node: 'a1' } };
  const full = desiredBuilds(desiredInput({ pods: [podOn('p1', 'a2')], existing: [revA, busy] }));
  assert.deepEqual([...full.placement.values()], ['a2']);
  assert.match(
    [...full.placedWhy.values()][0]!,
    /^a1 built git\+http:\/\/git\.invalid\/lazy\.git .* but is at the limit of 1 running build; /,
  );
});

test('desired: a Succeeded build is rebuilt only when a pod reports the image missing, the list is complete, and the grace period has passed', () => {
  const first = desiredBuilds(desiredInput({ pods: [podOn('p1', 'a2')] })).create[0]!;
  const done = (completionTime: string): NixBuild => ({
    ...first,
    status: { phase: 'Succeeded', node: 'a1', completionTime },
  });
  const old = '2025-01-01T11:50:00Z';
  const yes = desiredBuilds(desiredInput({ pods: [podOn('p1', 'a2')], existing: [done(old)] }));
  assert.deepEqual(yes.create, []);
  assert.match(
    yes.rebuild.get(first.metadata.name) ?? '',
    /registry\.local\/lazy:v2 is missing again .* pod apps\/p1 waits for it on a2 \(ErrImageNeverPull\); built 600 s ago/,
  );
  // Just built: kubelet's image list may not show it yet.
  const justBuilt = desiredBuilds(
    desiredInput({ pods: [podOn('p1', 'a2')], existing: [done('2025-01-01T11:59:00Z')] }),
  );
  assert.equal(justBuilt.rebuild.size, 0);
  assert.equal(justBuilt.recheckAfterMs, 60_000, 'plan again when the grace period ends');
  // The pod has not started yet: only the image list says so, no kubelet report.
  assert.equal(desiredBuilds(desiredInput({ pods: [podOn('p1', 'a2', null)], existing: [done(old)] })).rebuild.size, 0);
  // The pod waits for something else.
  assert.equal(
    desiredBuilds(desiredInput({ pods: [podOn('p1', 'a2', 'CreateContainerConfigError')], existing: [done(old)] }))
      .rebuild.size,
    0,
  );
  // A Ready amd64 node holds it (Spegel serves it) — or a list may be truncated: not missing.
  const holder = nodes({ a1: { images: ['registry.local/lazy:v2'] }, a2: {} });
  assert.equal(
    desiredBuilds(desiredInput({ nodes: holder, pods: [podOn('p1', 'a2')], existing: [done(old)] })).rebuild.size,
    0,
  );
  const truncated = nodes({ a1: { padImagesTo: 50 }, a2: {} });
  assert.equal(
    desiredBuilds(desiredInput({ nodes: truncated, pods: [podOn('p1', 'a2')], existing: [done(old)] })).rebuild.size,
    0,
  );
  // The waiting pod's own node has a cut list: kubelet's report alone (it may predate the import, as kubelet
  // retries with back-off) is no proof that a finished build's image is gone.
  const cutHere = nodes({ a2: { padImagesTo: 50 } });
  assert.equal(
    desiredBuilds(desiredInput({ nodes: cutHere, pods: [podOn('p1', 'a2')], existing: [done(old)] })).rebuild.size,
    0,
  );
  // Yet for a build that never ran, that report is enough to start one.
  assert.equal(desiredBuilds(desiredInput({ nodes: cutHere, pods: [podOn('p1', 'a2')] })).create.length, 1);
  // Still building: nothing to redo.
  assert.equal(
    desiredBuilds(
      desiredInput({ pods: [podOn('p1', 'a2')], existing: [{ ...first, status: { phase: 'Building', node: 'a1' } }] }),
    ).rebuild.size,
    0,
  );
});

test('podWorkloads: which pods wait for which image, reported by kubelet or seen missing from the node', () => {
  const byName = new Map(nodes({ a1: {}, a2: { images: ['registry.local/lazy:v2'] } }).map((n) => [n.name, n]));
  const running: V1Pod = {
    ...podOn('p3', 'a1'),
    status: {
      phase: 'Running',
      containerStatuses: [
        { name: 'app', image: '', imageID: '', ready: true, restartCount: 0, state: { running: {} } },
      ],
    },
  };
  const r = podWorkloads([podOn('p1', 'a1'), podOn('p2', 'a1', null), podOn('p4', 'a2', null), running], byName, {
    analysis: undefined,
    locks: new Map(),
    trustedNamespaces: ['apps'],
  });
  assert.deepEqual(
    r.waiting.map((w) => [w.name, w.node, w.reason, w.reported]),
    [
      ['p1', 'a1', 'ErrImageNeverPull', true],
      ['p2', 'a1', 'not on the node (its image list)', false],
    ],
  );
  assert.equal(r.workloads.length, 2);
});

// ---- the state machine: lost nodes, pins, rebuilds ----

const nb = (status?: NixBuild['status'], spec: Partial<NixBuild['spec']> = {}): NixBuild => ({
  apiVersion: 'enbi.hrzn.ee/v1alpha1',
  kind: 'NixBuild',
  metadata: { name: 'b', generation: 1 },
  spec: { flakeUrl: `github:a/b/${REV_A}`, packageName: 'image', system: 'x86_64-linux', images: ['r/x:1'], ...spec },
  ...(status !== undefined ? { status } : {}),
});
const job = (attempt: number, node: string, state: 'running' | 'complete' | 'failed' = 'running'): V1Job => ({
  metadata: { name: `b-${attempt}` },
  spec: {
    template: {
      spec: {
        containers: [],
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: [node] }] }],
            },
          },
        },
      },
    },
  },
  status:
    state === 'running'
      ? {}
      : {
          conditions: [
            { type: state === 'complete' ? 'Complete' : 'Failed', status: 'True', lastTransitionTime: new Date(0) },
          ],
          ...(state === 'complete' ? { completionTime: '2025-01-01T11:00:00Z' as unknown as Date } : {}),
        },
});
const now = new Date('2025-01-01T12:00:00Z');
const ready = (...names: string[]) => new Map<string, NodeHealth>(names.map((n) => [n, { ready: true }]));
const base = { pods: [], now, maxAttempts: 3, retryBaseSeconds: 10, nodeLostSeconds: 300, maxRebuilds: 1 };
const building = {
  phase: 'Building' as const,
  node: 'n1',
  attempts: 1,
  buildJobName: 'b-1',
  startTime: '2025-01-01T11:00:00.000Z',
};

test('node loss: deleted at once; NotReady after the grace period (re-checked then); Ready never', () => {
  const health = new Map<string, NodeHealth>([
    ['ok', { ready: true }],
    ['flaky', { ready: false, readySince: '2025-01-01T11:58:00Z' }],
    ['down', { ready: false, readySince: '2025-01-01T11:50:00Z' }],
  ]);
  assert.deepEqual(nodeLoss('gone', health, now, 300), { lost: 'node gone was deleted' });
  assert.equal(nodeLoss('ok', health, now, 300), undefined);
  assert.deepEqual(nodeLoss('flaky', health, now, 300), { recheckMs: 180_000 });
  assert.deepEqual(nodeLoss('down', health, now, 300), { lost: 'node down has not been Ready for 600 s' });
});

test('a build whose node was deleted moves: a new attempt on another node, the old Job abandoned, an Event, the lost attempt not counted', () => {
  let asked = 0;
  const s = nextState({
    ...base,
    nb: nb(building),
    jobs: [job(1, 'n1')],
    nodes: ready('n2'),
    candidate: () => (asked++, 'n2'),
  });
  assert.equal(asked, 1);
  assert.deepEqual(s.action, { kind: 'create-job', attempt: 2, node: 'n2', abandon: 'b-1' });
  assert.equal(s.status.node, 'n2');
  assert.equal(s.status.attempts, 2);
  assert.equal(s.status.excusedAttempts, 1);
  assert.equal(s.status.moves, 1);
  assert.equal(s.status.buildJobName, 'b-2');
  assert.equal(s.status.phase, 'Building');
  assert.equal(s.event?.reason, 'NodeLost');
  assert.match(s.event!.message, /node n1 was deleted: attempt 1 of 3 moves to n2/);
  // Next reconcile, the new Job seen on n2: building there, nothing more.
  const s2 = nextState({
    ...base,
    nb: nb(s.status),
    jobs: [job(1, 'n1'), job(2, 'n2')],
    nodes: ready('n2'),
    candidate: () => assert.fail('no placement needed'),
  });
  assert.deepEqual(s2.action, { kind: 'none' });
  assert.equal(s2.status.node, 'n2');
  assert.match(s2.status.conditions!.find((c) => c.type === 'Ready')!.message, /attempt 1 of 3 on n2/);
  // Before the informer shows Job 2, status (attempt 2 on n2) is trusted: no third attempt.
  const lag = nextState({ ...base, nb: nb(s.status), jobs: [job(1, 'n1')], nodes: ready('n2'), candidate: () => 'n3' });
  assert.deepEqual(lag.action, { kind: 'create-job', attempt: 2, node: 'n2' });
});

test('a NotReady node: the build stays within the grace period and moves after it; a finished or failed-for-good build never moves', () => {
  const flaky = new Map<string, NodeHealth>([
    ['n1', { ready: false, readySince: '2025-01-01T11:58:00Z' }],
    ['n2', { ready: true }],
  ]);
  const wait = nextState({ ...base, nb: nb(building), jobs: [job(1, 'n1')], nodes: flaky, candidate: () => 'n2' });
  assert.deepEqual(wait.action, { kind: 'requeue', afterMs: 180_000 });
  assert.equal(wait.status.node, 'n1');
  const later = nextState({
    ...base,
    now: new Date('2025-01-01T12:03:01Z'),
    nb: nb(building),
    jobs: [job(1, 'n1')],
    nodes: flaky,
    candidate: () => 'n2',
  });
  assert.equal(later.action.kind, 'create-job');
  assert.match(later.event!.message, /node n1 has not been Ready for 301 s/);
  const done = nextState({
    ...base,
    nb: nb(building),
    jobs: [job(1, 'n1', 'complete')],
    nodes: new Map(),
    candidate: () => 'n2',
  });
  assert.equal(done.status.phase, 'Succeeded');
  assert.equal(done.status.node, 'n1');
  assert.deepEqual(done.action, { kind: 'none' });
  const failed = nextState({
    ...base,
    nb: nb({ ...building, phase: 'Failed', attempts: 3, logExcerpt: 'x' }),
    jobs: [job(3, 'n1', 'failed')],
    nodes: new Map(),
    candidate: () => 'n2',
  });
  assert.equal(failed.status.phase, 'Failed');
  assert.deepEqual(failed.action, { kind: 'none' });
  // Failed for good and its Jobs gone (ttlSecondsAfterFinished): it does not start over.
  const ttl = nextState({
    ...base,
    nb: nb({ ...building, phase: 'Failed', attempts: 3 }),
    jobs: [],
    nodes: ready('n1'),
    candidate: () => 'n1',
  });
  assert.deepEqual(ttl.action, { kind: 'none' });
});

test('spec.node pins a build: its node gone, it waits with NoBuilderNode instead of moving', () => {
  const s = nextState({
    ...base,
    nb: nb(building, { node: 'n1' }),
    jobs: [job(1, 'n1')],
    nodes: ready('n2'),
    candidate: () => 'n2',
  });
  assert.equal(s.status.phase, 'Pending');
  assert.equal(s.status.node, 'n1');
  const r = s.status.conditions!.find((c) => c.type === 'Ready')!;
  assert.equal(r.reason, 'NoBuilderNode');
  assert.match(r.message, /node n1 was deleted; spec.node pins this build there/);
  assert.equal(s.action.kind, 'requeue');
  // No node can take it: NoBuilderNode too, and nothing started.
  const none = nextState({
    ...base,
    nb: nb(building),
    jobs: [job(1, 'n1')],
    nodes: new Map(),
    candidate: () => undefined,
  });
  assert.equal(none.status.conditions!.find((c) => c.type === 'Ready')!.reason, 'NoBuilderNode');
  assert.equal(none.action.kind, 'requeue');
});

test('moved attempts do not count against maxAttempts; real failures do', () => {
  // Attempt 1 lost with its node, attempts 2 and 3 failed: two counted, one retry left.
  const st = { ...building, node: 'n2', attempts: 3, excusedAttempts: 1, moves: 1, logExcerpt: 'x' };
  const s = nextState({
    ...base,
    nb: nb(st),
    jobs: [job(3, 'n2', 'failed')],
    nodes: ready('n2'),
    candidate: () => 'n2',
  });
  assert.deepEqual(s.action, { kind: 'create-job', attempt: 4, node: 'n2' });
  assert.match(s.status.conditions!.find((c) => c.type === 'Ready')!.message, /attempt 2 failed .*; attempt 3 of 3/);
  const last = nextState({
    ...base,
    nb: nb({ ...st, attempts: 4 }),
    jobs: [job(4, 'n2', 'failed')],
    nodes: ready('n2'),
    candidate: () => 'n2',
  });
  assert.equal(last.status.phase, 'Failed');
});

test('rebuild: a Succeeded build whose image went missing gets one new attempt, on its node, and then never again', () => {
  const succeeded = {
    phase: 'Succeeded' as const,
    node: 'n1',
    attempts: 1,
    buildJobName: 'b-1',
    completionTime: '2025-01-01T11:00:00.000Z',
    imageDigest: 'sha256:ab',
    image: 'r/x:1',
  };
  const why =
    'r/x:1 is missing again (node n1) while pod apps/p waits for it on n1 (ErrImageNeverPull); built 3600 s ago';
  // Its Job may be gone already (ttlSecondsAfterFinished).
  const s = nextState({
    ...base,
    nb: nb(succeeded),
    jobs: [],
    nodes: ready('n1', 'n2'),
    candidate: () => 'n2',
    rebuild: why,
  });
  assert.deepEqual(
    s.action,
    { kind: 'create-job', attempt: 2, node: 'n1' },
    'same node: its Nix store still has the result',
  );
  assert.equal(s.status.phase, 'Building');
  assert.equal(s.status.rebuilds, 1);
  assert.equal(s.status.excusedAttempts, 1, 'a fresh failure budget');
  assert.equal(s.status.completionTime, undefined);
  assert.equal(s.event?.reason, 'ImageMissing');
  // It succeeds again...
  const s2 = nextState({
    ...base,
    nb: nb(s.status),
    jobs: [job(2, 'n1', 'complete')],
    nodes: ready('n1'),
    candidate: () => 'n2',
  });
  assert.equal(s2.status.phase, 'Succeeded');
  assert.equal(s2.status.conditions!.find((c) => c.type === 'Ready')!.status, 'True');
  // ...and the image is still missing: no third build, Stalled with the reason, and that is stable.
  const s3 = nextState({
    ...base,
    nb: nb(s2.status),
    jobs: [job(2, 'n1', 'complete')],
    nodes: ready('n1'),
    candidate: () => 'n2',
    rebuild: why,
  });
  assert.deepEqual(s3.action, { kind: 'none' });
  assert.equal(s3.status.phase, 'Succeeded');
  assert.equal(s3.status.conditions!.find((c) => c.type === 'Stalled')!.reason, 'ImageMissing');
  assert.match(
    s3.status.conditions!.find((c) => c.type === 'Ready')!.message,
    /rebuilt 1 time already .*delete this NixBuild/,
  );
  const s4 = nextState({
    ...base,
    nb: nb(s3.status),
    jobs: [],
    nodes: ready('n1'),
    candidate: () => 'n2',
    rebuild: why,
  });
  assert.deepEqual(s4.action, { kind: 'none' });
  assert.deepEqual(s4.status, s3.status);
  // The image back (no rebuild asked): Ready again.
  const s5 = nextState({ ...base, nb: nb(s3.status), jobs: [], nodes: ready('n1'), candidate: () => 'n2' });
  assert.equal(s5.status.conditions!.find((c) => c.type === 'Ready')!.status, 'True');
  // Its node gone: the rebuild goes elsewhere.
  assert.deepEqual(
    nextState({ ...base, nb: nb(succeeded), jobs: [], nodes: ready('n2'), candidate: () => 'n2', rebuild: why }).action,
    { kind: 'create-job', attempt: 2, node: 'n2' },
  );
});

test('property: whatever the sequence of observations, a build with a rebuild asked every time runs at most 1 + maxRebuilds successful attempts', () => {
  fc.assert(
    fc.property(
      fc.array(fc.constantFrom('complete', 'running', 'lag'), { minLength: 1, maxLength: 30 }),
      fc.integer({ min: 0, max: 2 }),
      (steps, maxRebuilds) => {
        let cur = nb();
        let jobs: V1Job[] = [];
        let created = 0;
        for (const step of steps) {
          const s = nextState({
            ...base,
            maxRebuilds,
            nb: cur,
            jobs: step === 'lag' ? jobs.slice(0, -1) : jobs,
            nodes: ready('n1'),
            candidate: () => 'n1',
            rebuild: 'gone',
          });
          if (
            s.action.kind === 'create-job' &&
            !jobs.some((j) => j.metadata?.name === `b-${(s.action as { attempt: number }).attempt}`)
          ) {
            created++;
            jobs = [...jobs, job(s.action.attempt, s.action.node, 'running')];
          }
          cur = nb(s.status);
          if (step === 'complete')
            jobs = jobs.map((j) => job(Number(j.metadata!.name!.split('-')[1]), 'n1', 'complete'));
        }
        assert.ok(created <= 1 + maxRebuilds, `${created} Jobs`);
      },
    ),
    { numRuns: 500 },
  );
});
