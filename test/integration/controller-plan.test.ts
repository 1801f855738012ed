// The controller against a real API server, with API-object nodes of several architectures: the right
// NixBuilds and Jobs, exactly once each, on the right nodes; a quiet reconcile writes nothing; a restart
// starts nothing twice; a pod bound to a node that lacks its image triggers a build for that node's system.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BatchV1Api, CoreV1Api, CustomObjectsApi, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { parseControllerConfig } from '../../src/controller/config.ts';
import { type RunningController, startController } from '../../src/controller/controller.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { sourceState } from '../../src/controller/source-state.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { deployment, REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';
import { applyNixBuildCrd, fakeNodes, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const pool = { 'enbi.test/pool': run };

describe('controller against a real API server (API-object nodes)', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let ns: string;
  let appNs: string;
  let dir: string;
  let nodes: Awaited<ReturnType<typeof fakeNodes>>;
  let controller: RunningController | undefined;
  const logs: string[] = [];

  const start = async () => {
    const cfg = parseControllerConfig({
      source: { dir, intervalSeconds: 3600 },
      namespace: ns,
      watchNamespaces: [appNs],
      // The bare pods below declare their own flake: their namespace is trusted (Git-matched pods: controller-e2e, trust).
      trustedNamespaces: [appNs],
      allowedImages: ['registry.local/'],
      allowedFlakes: ['http://git.invalid/'],
      builderImage: 'enbi.local/builder:dev',
      importerImage: 'enbi.local/importer:dev',
      containerdSocket: '/run/containerd/containerd.sock',
      retryBaseSeconds: 1,
      maxConcurrentBuildsPerNode: 4,
    });
    const metrics = newMetrics();
    controller = await startController({
      cfg,
      kc: c.kc,
      source: sourceState(cfg, join(dir, '.cache'), undefined, (m) => logs.push(m)),
      metrics,
      log: (m) => logs.push(m),
    });
    const done = controller.reconciled();
    controller.trigger(true);
    await done;
    return metrics;
  };
  const builds = async () =>
    (
      (await c.kc
        .makeApiClient(CustomObjectsApi)
        .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL })) as {
        items: NixBuild[];
      }
    ).items;
  const jobs = async () => (await c.kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: ns })).items;
  const settle = async () => {
    // Two quiet reconciles in a row: everything the first one wrote has been seen by the informers.
    for (let i = 0; i < 3; i++) {
      const done = controller!.reconciled();
      controller!.trigger();
      await done;
      await new Promise((r) => setTimeout(r, 300));
    }
  };

  before(async () => {
    c = await useCluster('control-plane');
    ns = `enbi-ctl-${run}`;
    appNs = `apps-${run}`;
    const core = c.kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await core.createNamespace({ body: { metadata: { name: appNs } } });
    await applyNixBuildCrd(c.kc);
    nodes = await fakeNodes(c.kc, {
      [`amd-1-${run}`]: { arch: 'amd64', labels: pool },
      [`amd-2-${run}`]: { arch: 'amd64', labels: pool, images: ['registry.local/other:v1'] },
      [`arm-1-${run}`]: { arch: 'arm64', labels: pool },
      [`arm-2-${run}`]: {
        arch: 'arm64',
        labels: pool,
        taints: [{ key: 'dedicated', value: 'x', effect: 'NoSchedule' }],
      },
      [`arm-3-${run}`]: { arch: 'arm64', labels: pool, unschedulable: true },
      [`rv-1-${run}`]: { arch: 'riscv64', labels: pool },
    });
    dir = await mkdtemp(join(tmpdir(), 'enbi-ctl-'));
    await writeFile(
      join(dir, 'apps.yaml'),
      yamlDocs(
        // Eager: built at once for every system it can run on (amd64 and arm64 here; not riscv64).
        deployment('eager', {
          namespace: appNs,
          flake: `git+http://git.invalid/eager.git?rev=${REV_A}#image`,
          image: `registry.local/eager:${REV_A.slice(0, 8)}`,
          annotations: { 'enbi.hrzn.ee/build': 'eager' },
          nodeSelector: pool,
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [
                  { matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['amd64', 'arm64'] }] },
                ],
              },
            },
          },
        }),
        // On demand (the default): nothing until a pod lands.
        deployment('lazy', {
          namespace: appNs,
          flake: `git+http://git.invalid/lazy.git?rev=${REV_B}#image`,
          image: 'registry.local/lazy:v2',
          nodeSelector: pool,
        }),
      ),
    );
  });

  after(async () => {
    await controller?.stop();
    await nodes?.stop();
    const core = c?.kc.makeApiClient(CoreV1Api);
    await core?.deleteNamespace({ name: ns }).catch(() => undefined);
    await core?.deleteNamespace({ name: appNs }).catch(() => undefined);
    if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
  });

  it('creates one NixBuild and one Job per system for an eager workload, on a node that can build it', async () => {
    await start();
    const nb = await until(
      'two NixBuilds',
      async () => ((await builds()).length === 2 ? await builds() : undefined),
      30_000,
    );
    assert.deepEqual(nb.map((b) => b.spec.system).sort(), ['aarch64-linux', 'x86_64-linux']);
    for (const b of nb) {
      assert.equal(b.spec.flakeUrl, `git+http://git.invalid/eager.git?rev=${REV_A}`);
      assert.equal(b.spec.packageName, 'image');
      assert.deepEqual(b.spec.images, [`registry.local/eager:${REV_A.slice(0, 8)}`]);
      // The controller's choice of node is status, not spec (spec.node would pin the build).
      assert.equal(b.spec.node, undefined);
    }
    const placed = await until(
      'nodes in status',
      async () => {
        const got = await builds();
        return got.every((b) => b.status?.node !== undefined) ? got : undefined;
      },
      30_000,
    );
    for (const b of placed) {
      // arm-2 is tainted, arm-3 cordoned: the arm64 build goes to arm-1.
      assert.equal(b.status?.node, b.spec.system === 'aarch64-linux' ? `arm-1-${run}` : `amd-1-${run}`);
    }
    const js = await until('two Jobs', async () => ((await jobs()).length === 2 ? await jobs() : undefined), 30_000);
    for (const j of js) {
      const build = placed.find((b) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === b.metadata.name)!;
      const terms =
        j.spec?.template.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
          ?.nodeSelectorTerms;
      assert.deepEqual(terms?.[0]?.matchFields?.[0]?.values, [build.status?.node]);
      const build_c = j.spec?.template.spec?.containers.find((x) => x.name === 'build')!;
      assert.equal(
        build_c.env?.find((e) => e.name === 'ENBI_INSTALLABLE')?.value,
        `git+http://git.invalid/eager.git?rev=${REV_A}#packages.${build.spec.system}.image`,
      );
      assert.ok(
        !(build_c.volumeMounts ?? []).some((m) => m.mountPath.includes('containerd')),
        'the build container never sees the socket',
      );
    }
    const withStatus = await until(
      'Building status',
      async () => {
        const got = await builds();
        return got.every((b) => b.status?.phase === 'Building') ? got : undefined;
      },
      30_000,
    );
    for (const b of withStatus) {
      assert.equal(b.status?.observedGeneration, 1);
      assert.equal(b.status?.conditions?.find((x) => x.type === 'Reconciling')?.status, 'True');
      assert.equal(b.status?.buildJobName, `${b.metadata.name}-1`);
    }
  });

  it('a reconcile that finds nothing new writes nothing', async () => {
    await settle();
    const before = new Map((await builds()).map((b) => [b.metadata.name, b.metadata.resourceVersion]));
    const jobsBefore = (await jobs()).length;
    for (let i = 0; i < 3; i++) {
      const done = controller!.reconciled();
      controller!.trigger(true);
      await done;
    }
    const after = await builds();
    assert.deepEqual(new Map(after.map((b) => [b.metadata.name, b.metadata.resourceVersion])), before);
    assert.equal((await jobs()).length, jobsBefore);
  });

  it('pods bound to nodes that lack their image trigger exactly one build per system; the time to the Job is printed', async () => {
    const core = c.kc.makeApiClient(CoreV1Api);
    const podOn = (name: string, node: string): V1Pod => ({
      metadata: {
        name,
        namespace: appNs,
        annotations: { 'enbi.hrzn.ee/flake': `git+http://git.invalid/lazy.git?rev=${REV_B}#image` },
      },
      spec: {
        nodeName: node,
        containers: [{ name: 'app', image: 'registry.local/lazy:v2', imagePullPolicy: 'Never' }],
      },
    });
    const waitingOnImage = (pod: V1Pod): V1Pod => ({
      ...pod,
      status: {
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'app',
            image: 'registry.local/lazy:v2',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'ErrImageNeverPull', message: 'image not present' } },
          },
        ],
      },
    });
    // A pod on a riscv64 node would need a riscv64 build that no node can make; none are bound there.
    const targets = [`arm-1-${run}`, `arm-2-${run}`, `amd-2-${run}`];
    const t0 = performance.now();
    const names: string[] = [];
    for (let i = 0; i < 24; i++) {
      const name = `lazy-${i}`;
      names.push(name);
      await core.createNamespacedPod({ namespace: appNs, body: podOn(name, targets[i % targets.length]!) });
    }
    const created = performance.now();
    for (const name of names) {
      const pod = await core.readNamespacedPod({ name, namespace: appNs });
      await core.replaceNamespacedPodStatus({ name, namespace: appNs, body: waitingOnImage(pod) });
    }
    const bound = performance.now();
    const lazyJobs = async () =>
      (await jobs()).filter((j) =>
        j.spec?.template.spec?.containers[0]?.env?.some((e) => e.value?.includes('lazy.git')),
      );
    const js = await until(
      'lazy Jobs',
      async () => ((await lazyJobs()).length >= 2 ? await lazyJobs() : undefined),
      30_000,
      20,
    );
    const firstJob = performance.now();
    console.log(
      `# 24 pods created in ${(created - t0).toFixed(0)} ms, statuses set in ${(bound - created).toFixed(0)} ms; Jobs existed ${(firstJob - bound).toFixed(0)} ms after the last status write`,
    );
    await settle();
    const all = await lazyJobs();
    assert.equal(all.length, 2, 'one build per system (Spegel mode), however many pods');
    const lazyBuilds = (await builds()).filter((b) => b.spec.flakeUrl.includes('lazy.git'));
    assert.deepEqual(lazyBuilds.map((b) => b.spec.system).sort(), ['aarch64-linux', 'x86_64-linux']);
    // arm-2 is tainted for enbi's builder: the arm64 build of the pods on arm-2 runs on arm-1.
    assert.equal(lazyBuilds.find((b) => b.spec.system === 'aarch64-linux')?.status?.node, `arm-1-${run}`);
    assert.equal(js.length, 2);
    // The pods' owners see it where they look: an Event on the waiting pods, naming the NixBuild.
    const podEvents = (await core.listNamespacedEvent({ namespace: appNs })).items.filter(
      (e) => e.involvedObject.kind === 'Pod' && e.reason === 'BuildPlanned',
    );
    assert.ok(podEvents.length >= 2, `BuildPlanned Events on pods: ${podEvents.length}`);
    for (const e of podEvents) {
      assert.ok(names.includes(e.involvedObject.name!), e.involvedObject.name);
      assert.match(
        e.message ?? '',
        new RegExp(`^enbi builds registry\\.local/lazy:v2 for (x86_64|aarch64)-linux on \\S+: NixBuild ${ns}/`),
      );
    }
  });

  it('a restarted controller starts nothing twice', async () => {
    const before = (await builds()).map((b) => b.metadata.name).sort();
    const jobsBefore = (await jobs()).map((j: V1Job) => j.metadata?.name).sort();
    await controller!.stop();
    controller = undefined;
    await start();
    await settle();
    assert.deepEqual((await builds()).map((b) => b.metadata.name).sort(), before);
    assert.deepEqual((await jobs()).map((j) => j.metadata?.name).sort(), jobsBefore);
  });
});
