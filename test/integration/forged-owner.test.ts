// A forged owner reference against a real API server (ReplicaSet and garbage collectors running): Git holds a
// Deployment placed on amd64 (nodeSelector, and nodeName as the test plays the scheduler; the nodeSelector
// and affinity checks alone are in test/unit/trust.test.ts). A tenant of its namespace creates a bare pod that claims
// to be the Deployment's (ownerReference to `<deployment>-<pod-template-hash>`, the hash label, the image Git
// names), bound by nodeName to an arm64 node. enbi plans nothing for that node or its system, and says why
// on the pod; the Deployment's own pod, made by the ReplicaSet controller, still gets its build. The test
// plays kubelet (pod status) on API-object nodes.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AppsV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import type { RunningController } from '../../src/controller/controller.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { REV_A, yamlDocs } from '../support/fixtures.ts';
import { applyNixBuildCrd, fakeNodes, setPodWaiting, startApiNodeController, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';
const FLAKE = `git+http://git.invalid/shop.git?rev=${REV_A}`;
const IMAGE = `registry.local/shop:${REV_A.slice(0, 12)}`;

describe(
  'a forged owner reference cannot move a Git workload to another node (real API server)',
  { skip: clusterSkipReason() },
  () => {
    let c: ClusterInfo;
    let controller: RunningController | undefined;
    let nodes: Awaited<ReturnType<typeof fakeNodes>> | undefined;
    const ns = `enbi-forged-${run}`;
    const appNs = `shop-forged-${run}`;
    const amd = `forged-amd-${run}`;
    const arm = `forged-arm-${run}`;
    const logs: string[] = [];
    const core = () => c.kc.makeApiClient(CoreV1Api);
    const builds = async () =>
      (
        (await c.kc.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
        })) as { items: NixBuild[] }
      ).items;
    const settle = async () => {
      for (const _ of [1, 2, 3]) {
        const done = controller!.reconciled();
        controller!.trigger();
        await done;
        await new Promise((r) => setTimeout(r, 300));
      }
    };
    const shop = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'shop', namespace: appNs },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'shop' } },
        template: {
          metadata: { labels: { app: 'shop' }, annotations: { 'enbi.hrzn.ee/flake': `${FLAKE}#image` } },
          spec: {
            nodeSelector: { 'kubernetes.io/arch': 'amd64' },
            // These API-object nodes have no kubelet nor allocatable resources: the test plays the scheduler.
            nodeName: amd,
            containers: [{ name: 'app', image: IMAGE, imagePullPolicy: 'Never' }],
          },
        },
      },
    };

    before(async () => {
      c = await useCluster('control-plane');
      await core().createNamespace({ body: { metadata: { name: ns } } });
      await core().createNamespace({ body: { metadata: { name: appNs } } });
      await applyNixBuildCrd(c.kc);
      nodes = await fakeNodes(c.kc, {
        [amd]: { arch: 'amd64', labels: { [POOL]: run } },
        [arm]: { arch: 'arm64', labels: { [POOL]: run } },
      });
      const dir = await mkdtemp(join(tmpdir(), 'enbi-forged-'));
      await writeFile(join(dir, 'shop.yaml'), yamlDocs(shop));
      controller = await startApiNodeController(c.kc, {
        dir,
        namespace: ns,
        pool: { [POOL]: run },
        logs,
        settings: { watchNamespaces: [appNs], maxNodeImages: 1000 },
      });
      const done = controller.reconciled();
      controller.trigger(true);
      await done;
    });

    after(async () => {
      await controller?.stop();
      await nodes?.stop();
      await core()
        .deleteNamespace({ name: appNs })
        .catch(() => undefined);
      await core()
        .deleteNamespace({ name: ns })
        .catch(() => undefined);
      if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
    });

    it("a bare pod posing as the Deployment's on an arm64 node gets an Event and no build; the Deployment's own pod gets its build", async () => {
      await c.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace: appNs, body: shop as never });
      const real = await until(
        'a pod of shop made by its ReplicaSet',
        async () =>
          (await core().listNamespacedPod({ namespace: appNs, labelSelector: 'app=shop' })).items.find(
            (p) => p.metadata?.ownerReferences?.[0]?.kind === 'ReplicaSet',
          ),
        60_000,
      );
      const rs = real.metadata!.ownerReferences![0]!;
      const hash = real.metadata!.labels!['pod-template-hash']!;
      assert.equal(rs.name, `shop-${hash}`);

      // The tenant's pod: everything enbi reads of the owner chain, copied. Its owner reference names an API
      // group no controller serves and a uid of its own, so that neither the ReplicaSet controller (which
      // would release or count it) nor the garbage collector (which would delete it as dangling) touches it:
      // it stays as the tenant wrote it for the whole test.
      const forged = `shop-${hash}-forged`;
      await core().createNamespacedPod({
        namespace: appNs,
        body: {
          metadata: {
            name: forged,
            labels: { 'pod-template-hash': hash },
            annotations: { 'enbi.hrzn.ee/flake': `${FLAKE}#image` },
            ownerReferences: [
              {
                apiVersion: 'forged.invalid/v1',
                kind: 'ReplicaSet',
                name: rs.name,
                uid: '00000000-0000-0000-0000-000000000000',
                controller: true,
              },
            ],
          },
          spec: { nodeName: arm, containers: [{ name: 'app', image: IMAGE, imagePullPolicy: 'Never' }] },
        },
      });
      await setPodWaiting(c.kc, appNs, forged, 'ErrImageNeverPull');
      const ev = await until(
        `a BuildRefused Event on ${forged}`,
        async () =>
          (await core().listNamespacedEvent({ namespace: appNs })).items.find(
            (e) => e.involvedObject.name === forged && e.reason === 'BuildRefused',
          ),
        30_000,
      );
      assert.match(
        ev.message ?? '',
        new RegExp(
          `claims to belong to Deployment ${appNs}/shop in Git, but Git binds it to node ${amd}, not ${arm}: enbi builds for a workload only on the nodes Git lets it run on`,
        ),
      );
      await settle();
      assert.deepEqual(
        (await builds())
          .filter((b) => b.spec.system !== 'x86_64-linux' || b.spec.node === arm)
          .map((b) => b.metadata.name),
        [],
        'no NixBuild for the arm64 node or its system',
      );

      // The Deployment's own pod, waiting on its amd64 node: the build Git declares.
      await setPodWaiting(c.kc, appNs, real.metadata!.name!, 'ErrImageNeverPull');
      const mine = await until(
        'the shop build',
        async () => (await builds()).find((b) => b.spec.images.includes(IMAGE)),
        30_000,
      );
      assert.equal(mine.spec.system, 'x86_64-linux');
      assert.equal(mine.spec.flakeUrl, FLAKE);
      await settle();
      assert.deepEqual(
        (await builds()).map((b) => b.spec.system),
        ['x86_64-linux'],
        'one build, for the system Git places the workload on',
      );
      // The attack stayed live throughout: the forged pod is there, its owner reference as written.
      const still = await core().readNamespacedPod({ namespace: appNs, name: forged });
      assert.equal(still.metadata?.ownerReferences?.[0]?.name, rs.name);
      assert.equal(still.spec?.nodeName, arm);
    });
  },
);
