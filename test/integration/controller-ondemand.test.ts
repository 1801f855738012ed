// The controller against a real API server when things go away: a build's node deleted mid-build (the
// build moves, unless spec.node pins it), and an image removed from its node after the build (rebuilt
// once, never in a loop). API-object nodes; the test plays kubelet (pod and node status) and the build
// (the Job's status).
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BatchV1Api, CoreV1Api, CustomObjectsApi, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { jobNodeOf } from '../../src/build/job.ts';
import { parseControllerConfig } from '../../src/controller/config.ts';
import { type RunningController, startController } from '../../src/controller/controller.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { sourceState } from '../../src/controller/source-state.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { REV_A, REV_B } from '../support/fixtures.ts';
import {
  applyNixBuildCrd,
  completeJob,
  fakeNodes,
  setNodeImages,
  setPodWaiting,
  setPodRunning,
  until,
} from '../support/kube.ts';

const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';
const pool = { [POOL]: `od-${run}` };

describe('controller: lost nodes and lost images (real API server)', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let ns: string;
  let appNs: string;
  let nodes: Awaited<ReturnType<typeof fakeNodes>>;
  let controller: RunningController | undefined;
  const logs: string[] = [];
  const [nodeA, nodeB, nodeC, nodePin] = ['a', 'b', 'c', 'pin'].map((n) => `od-${n}-${run}`) as [
    string,
    string,
    string,
    string,
  ];

  const custom = () => c.kc.makeApiClient(CustomObjectsApi);
  const builds = async () =>
    (
      (await custom().listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
      })) as { items: NixBuild[] }
    ).items;
  const build = async (name: string) => (await builds()).find((b) => b.metadata.name === name);
  const jobs = async () => (await c.kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: ns })).items;
  const jobsOf = async (name: string) =>
    (await jobs()).filter((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === name);
  const events = async (name: string) =>
    (await c.kc.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: ns })).items.filter(
      (e) => e.involvedObject.name === name,
    );
  const settle = async (ms = 1500) => {
    for (const _ of [1, 2]) {
      const done = controller!.reconciled();
      controller!.trigger();
      await done;
      await new Promise((r) => setTimeout(r, ms / 2));
    }
  };
  const pod = (name: string, node: string, flake: string, image: string): V1Pod => ({
    metadata: { name, namespace: appNs, annotations: { 'enbi.hrzn.ee/flake': flake } },
    spec: { nodeName: node, containers: [{ name: 'app', image, imagePullPolicy: 'Never' }] },
  });

  before(async () => {
    c = await useCluster('control-plane');
    ns = `enbi-od-${run}`;
    appNs = `apps-od-${run}`;
    const core = c.kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await core.createNamespace({ body: { metadata: { name: appNs } } });
    await applyNixBuildCrd(c.kc);
    nodes = await fakeNodes(
      c.kc,
      Object.fromEntries([nodeA, nodeB, nodeC, nodePin].map((n) => [n, { arch: 'amd64', labels: pool }])),
    );
    const dir = await mkdtemp(join(tmpdir(), 'enbi-od-'));
    await writeFile(join(dir, 'empty.yaml'), '');
    const cfg = parseControllerConfig({
      source: { dir, intervalSeconds: 3600 },
      namespace: ns,
      watchNamespaces: [appNs],
      // These pods declare their own flake (no Git source): their namespace is trusted, as a cluster without Git opts in.
      trustedNamespaces: [appNs],
      allowedImages: ['registry.local/'],
      allowedFlakes: ['http://git.invalid/', 'github:acme'],
      builderImage: 'enbi.local/builder:dev',
      importerImage: 'enbi.local/importer:dev',
      containerdSocket: '/run/containerd/containerd.sock',
      // Builds only on this test's nodes, whatever else the cluster has (a real node under npm test).
      builderNodeSelector: pool,
      maxConcurrentBuildsPerNode: 2,
      maxNodeImages: 1000,
      retryBaseSeconds: 1,
      rebuildGraceSeconds: 3,
    });
    controller = await startController({
      cfg,
      kc: c.kc,
      source: sourceState(cfg, join(dir, '.cache'), undefined, (m) => logs.push(m)),
      metrics: newMetrics(),
      log: (m) => logs.push(m),
    });
    const done = controller.reconciled();
    controller.trigger(true);
    await done;
  });

  after(async () => {
    await controller?.stop();
    await nodes?.stop();
    const core = c?.kc.makeApiClient(CoreV1Api);
    await core?.deleteNamespace({ name: ns }).catch(() => undefined);
    await core?.deleteNamespace({ name: appNs }).catch(() => undefined);
    if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
  });

  it('a build whose node is deleted mid-build moves: a new Job on another node, status.node updated, a NodeLost Event', async () => {
    const core = c.kc.makeApiClient(CoreV1Api);
    const flake = `git+http://git.invalid/moving.git?rev=${REV_A}#image`;
    await core.createNamespacedPod({ namespace: appNs, body: pod('mover', nodeA, flake, 'registry.local/moving:v1') });
    await setPodWaiting(c.kc, appNs, 'mover', 'ErrImageNeverPull');
    // Built where the pod waits (the node needing the image wins the tie).
    const nb = await until(
      'a NixBuild placed on node a',
      async () => (await builds()).find((b) => b.status?.node === nodeA && b.status.phase === 'Building'),
      30_000,
    );
    const first = await until(
      'Job 1 on node a',
      async () => (await jobsOf(nb.metadata.name)).find((j) => j.metadata?.name === `${nb.metadata.name}-1`),
      30_000,
    );
    assert.equal(jobNodeOf(first), nodeA);
    assert.equal(nb.spec.node, undefined, 'the controller keeps its choice in status, not spec');

    const t0 = performance.now();
    await core.deleteNode({ name: nodeA });
    const moved = await until(
      'the build on another node',
      async () => {
        const b = await build(nb.metadata.name);
        return b?.status?.node !== undefined && b.status.node !== nodeA && b.status.attempts === 2 ? b : undefined;
      },
      30_000,
    );
    const second = await until(
      'Job 2',
      async () => (await jobsOf(nb.metadata.name)).find((j) => j.metadata?.name === `${nb.metadata.name}-2`),
      30_000,
    );
    console.log(`# node deleted → build moved (status and Job 2) in ${(performance.now() - t0).toFixed(0)} ms`);
    assert.ok([nodeB, nodeC, nodePin].includes(moved.status!.node!), moved.status!.node);
    assert.equal(jobNodeOf(second), moved.status!.node);
    assert.equal(moved.status?.moves, 1);
    assert.equal(moved.status?.excusedAttempts, 1, 'the lost attempt is not a failure');
    assert.equal(moved.status?.phase, 'Building');
    const ev = await until(
      'a NodeLost Event',
      async () => (await events(nb.metadata.name)).find((e) => e.reason === 'NodeLost'),
      10_000,
    );
    assert.match(
      ev.message ?? '',
      new RegExp(`node ${nodeA} was deleted: attempt 1 of 3 moves to ${moved.status!.node}`),
    );
    assert.equal(ev.type, 'Warning');
    // The Job left on the deleted node is gone; nothing more starts.
    await until(
      'Job 1 deleted',
      async () =>
        (await jobsOf(nb.metadata.name)).some(
          (j) => j.metadata?.name === `${nb.metadata.name}-1` && j.metadata.deletionTimestamp === undefined,
        )
          ? undefined
          : true,
      30_000,
    );
    await settle();
    assert.deepEqual(
      (await jobsOf(nb.metadata.name)).map((j) => j.metadata?.name),
      [`${nb.metadata.name}-2`],
    );
  });

  it('a hand-written NixBuild pinned by spec.node does not move: NoBuilderNode', async () => {
    const body: NixBuild = {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'NixBuild',
      metadata: { name: `pinned-${run}`, namespace: ns },
      spec: {
        flakeUrl: `github:acme/pinned/${REV_B}`,
        packageName: 'image',
        system: 'x86_64-linux',
        images: ['registry.local/pinned:v1'],
        node: nodePin,
      },
    };
    await custom().createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      body,
    });
    await until(
      'its Job on the pinned node',
      async () => {
        const [j] = await jobsOf(body.metadata.name);
        return j !== undefined && jobNodeOf(j) === nodePin ? j : undefined;
      },
      30_000,
    );
    await c.kc.makeApiClient(CoreV1Api).deleteNode({ name: nodePin });
    const waiting = await until(
      'NoBuilderNode',
      async () => {
        const b = await build(body.metadata.name);
        return b?.status?.conditions?.find((x) => x.type === 'Ready' && x.reason === 'NoBuilderNode') !== undefined
          ? b
          : undefined;
      },
      30_000,
    );
    assert.equal(waiting.status?.phase, 'Pending');
    assert.equal(waiting.status?.node, nodePin);
    assert.match(
      waiting.status!.conditions!.find((x) => x.type === 'Ready')!.message,
      /spec.node pins this build there/,
    );
    await settle();
    assert.deepEqual(
      (await jobsOf(body.metadata.name)).map((j) => j.metadata?.name),
      [`${body.metadata.name}-1`],
      'no second attempt elsewhere',
    );
  });

  it('an image removed from its node while a pod waits for it is rebuilt once, and only once', async () => {
    const core = c.kc.makeApiClient(CoreV1Api);
    const flake = `git+http://git.invalid/gc.git?rev=${REV_B}#image`;
    const image = 'registry.local/gc:v1';
    await core.createNamespacedPod({ namespace: appNs, body: pod('gc-app', nodeC, flake, image) });
    await setPodWaiting(c.kc, appNs, 'gc-app', 'ErrImageNeverPull');
    const nb = await until(
      'a NixBuild for the gc image',
      async () => (await builds()).find((b) => b.spec.flakeUrl.includes('gc.git') && b.status?.phase === 'Building'),
      30_000,
    );
    const name = nb.metadata.name;
    const job1 = await until(
      'Job 1',
      async () => (await jobsOf(name)).find((j) => j.metadata?.name === `${name}-1`),
      30_000,
    );
    const builder = jobNodeOf(job1)!;
    // The build succeeds: the image is on the builder, the pod runs.
    await completeJob(c.kc, ns, `${name}-1`);
    await setNodeImages(c.kc, builder, [image]);
    await setPodRunning(c.kc, appNs, 'gc-app');
    await until(
      'Succeeded',
      async () => ((await build(name))?.status?.phase === 'Succeeded' ? true : undefined),
      30_000,
    );
    await settle(4000);
    assert.equal((await jobsOf(name)).length, 1, 'an image in place: nothing more');

    // Garbage-collected: gone from the node's (complete) list; kubelet reports the pod waiting again.
    const t0 = performance.now();
    await setNodeImages(c.kc, builder, []);
    await setPodWaiting(c.kc, appNs, 'gc-app', 'ErrImageNeverPull');
    const job2 = await until(
      'Job 2 (the rebuild)',
      async () => (await jobsOf(name)).find((j) => j.metadata?.name === `${name}-2`),
      30_000,
      100,
    );
    console.log(
      `# image removed → rebuild Job in ${(performance.now() - t0).toFixed(0)} ms (rebuildGraceSeconds 3 after completion)`,
    );
    const rebuilding = await until(
      'status of the rebuild',
      async () => {
        const b = await build(name);
        return b?.status?.rebuilds === 1 ? b : undefined;
      },
      30_000,
    );
    assert.equal(rebuilding.status?.phase, 'Building');
    assert.equal(jobNodeOf(job2), builder, 'on the node that built it (its Nix store still has the result)');
    const ev = await until(
      'an ImageMissing Event',
      async () => (await events(name)).find((e) => e.reason === 'ImageMissing'),
      10_000,
    );
    assert.match(
      ev.message ?? '',
      /registry\.local\/gc:v1 is missing again .*pod apps-od-.*\/gc-app waits for it .*ErrImageNeverPull/,
    );

    // The rebuild "succeeds" but the image still does not show: no third build, ever; Stalled instead.
    await completeJob(c.kc, ns, `${name}-2`);
    const stalled = await until(
      'Stalled ImageMissing',
      async () => {
        const b = await build(name);
        return b?.status?.conditions?.find((x) => x.type === 'Stalled' && x.reason === 'ImageMissing') !== undefined
          ? b
          : undefined;
      },
      30_000,
    );
    assert.equal(stalled.status?.phase, 'Succeeded');
    assert.match(stalled.status!.conditions!.find((x) => x.type === 'Ready')!.message, /rebuilt 1 time already/);
    await until(
      'a Warning Event for the stall',
      async () =>
        (await events(name)).find(
          (e) => e.reason === 'ImageMissing' && /delete this NixBuild/.test(e.message ?? '') && e.type === 'Warning',
        ),
      10_000,
    );
    await settle(8000);
    assert.deepEqual((await jobsOf(name)).map((j: V1Job) => j.metadata?.name).sort(), [`${name}-1`, `${name}-2`]);
  });
});
