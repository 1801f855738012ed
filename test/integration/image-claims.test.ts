// One owner per image name (issue 19) against a real API server: the image name a Git Deployment uses is
// built only from the flake Git declares it with. A pod of a trusted namespace declaring its own flake for
// that name gets no NixBuild, only a BuildRefused Event naming the Git workload and the pod (its other
// container, with a name of its own, is built); a NixBuild created for another flake under the name is
// Failed and Stalled (ImageClaimed, naming the Git workload and the NixBuild) and never gets a Job, while
// one of Git's own flake under it does; and while a configured Git source has not been read, neither a
// trusted pod nor a hand-written NixBuild starts anything. The test plays kubelet on API-object nodes.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type CoreV1Event,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { parseControllerConfig } from '../../src/controller/config.ts';
import { type RunningController, startController } from '../../src/controller/controller.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { sourceState } from '../../src/controller/source-state.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';
import { applyNixBuildCrd, fakeNodes, setPodWaiting, startApiNodeController, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';
const FLAKE = `git+http://git.invalid/shop.git?rev=${REV_A}`;
const IMAGE = `registry.local/shop:${REV_A.slice(0, 12)}`;
const CLAIMANT = `git+http://git.invalid/tool.git?rev=${REV_B}`;
const TOOL_IMAGE = `registry.local/tool:${REV_B.slice(0, 12)}`;
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

describe(
  'one owner per image name: what Git declares, nobody else builds under (real API server)',
  { skip: clusterSkipReason() },
  () => {
    let c: ClusterInfo;
    let controller: RunningController | undefined;
    let pending: RunningController | undefined;
    let nodes: Awaited<ReturnType<typeof fakeNodes>> | undefined;
    const ns = `enbi-claims-${run}`;
    const appNs = `shop-${run}`;
    const labNs = `lab-${run}`;
    const ns2 = `enbi-unread-${run}`;
    const labNs2 = `lab2-${run}`;
    const node = `claims-${run}`;
    const logs: string[] = [];

    const custom = () => c.kc.makeApiClient(CustomObjectsApi);
    const core = () => c.kc.makeApiClient(CoreV1Api);
    const builds = async (namespace = ns) =>
      (
        (await custom().listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL })) as {
          items: NixBuild[];
        }
      ).items;
    const jobs = async (namespace = ns) =>
      (await c.kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace })).items;
    const eventOn = (namespace: string, name: string, reason: string) =>
      until(
        `a ${reason} Event on ${name}`,
        async () =>
          (await core().listNamespacedEvent({ namespace })).items.find(
            (e: CoreV1Event) => e.involvedObject.name === name && e.reason === reason,
          ),
        30_000,
      );
    const settle = async (ctl: RunningController) => {
      for (const _ of [1, 2, 3]) {
        const done = ctl.reconciled();
        ctl.trigger();
        await done;
        await new Promise((r) => setTimeout(r, 300));
      }
    };
    const deployment: V1Deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'shop', namespace: appNs },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'shop' } },
        template: {
          metadata: { labels: { app: 'shop' }, annotations: { 'enbi.hrzn.ee/flake': `${FLAKE}#image` } },
          spec: { nodeName: node, containers: [{ name: 'app', image: IMAGE, imagePullPolicy: 'Never' }] },
        },
      },
    };
    /** A bare pod of a trusted namespace declaring CLAIMANT for each of its containers. */
    const labPod = (namespace: string, name: string, containers: { name: string; image: string }[]): V1Pod => ({
      metadata: {
        name,
        namespace,
        annotations: Object.fromEntries(containers.map((x) => [`enbi.hrzn.ee/flake.${x.name}`, `${CLAIMANT}#image`])),
      },
      spec: { nodeName: node, containers: containers.map((x) => ({ ...x, imagePullPolicy: 'Never' })) },
    });
    const nixBuild = (namespace: string, name: string, flakeUrl: string, images: string[]): NixBuild => ({
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'NixBuild',
      metadata: { name, namespace },
      spec: { flakeUrl, packageName: 'image', system: 'x86_64-linux', images },
    });

    before(async () => {
      c = await useCluster('control-plane');
      for (const name of [ns, appNs, labNs, ns2, labNs2])
        await core().createNamespace({ body: { metadata: { name } } });
      await applyNixBuildCrd(c.kc);
      nodes = await fakeNodes(c.kc, { [node]: { arch: 'amd64', labels: { [POOL]: run } } });
      const dir = await mkdtemp(join(tmpdir(), 'enbi-claims-'));
      // Git holds the shop Deployment (on demand): it declares IMAGE, built from FLAKE.
      await writeFile(join(dir, 'shop.yaml'), yamlDocs(deployment));
      controller = await startApiNodeController(c.kc, {
        dir,
        namespace: ns,
        pool: { [POOL]: run },
        logs,
        settings: {
          watchNamespaces: [appNs, labNs],
          trustedNamespaces: [labNs],
          maxNodeImages: 1000,
          maxConcurrentBuildsPerNode: 4,
        },
      });
      const done = controller.reconciled();
      controller.trigger(true);
      await done;
    });

    after(async () => {
      await controller?.stop();
      await pending?.stop();
      await nodes?.stop();
      for (const name of [appNs, labNs, labNs2, ns, ns2])
        await core()
          .deleteNamespace({ name })
          .catch(() => undefined);
      if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
    });

    it("a trusted pod declaring its own flake for Git's image name gets no NixBuild, and an Event naming both claimants", async () => {
      // Container app claims Git's name; container tool uses a name Git does not declare.
      await core().createNamespacedPod({
        namespace: labNs,
        body: labPod(labNs, 'claim', [
          { name: 'app', image: IMAGE },
          { name: 'tool', image: TOOL_IMAGE },
        ]),
      });
      await setPodWaiting(c.kc, labNs, 'claim', 'ErrImageNeverPull');
      const ev = await eventOn(labNs, 'claim', 'BuildRefused');
      assert.equal(ev.type, 'Warning');
      assert.match(
        ev.message ?? '',
        new RegExp(
          `^enbi builds nothing for container app: image ${esc(IMAGE)} is claimed twice: Deployment ${appNs}/shop in Git builds it from ${esc(`${FLAKE}#image`)}, and pod ${labNs}/claim \\(trusted namespace\\) declares ${esc(`${CLAIMANT}#image`)} for container app`,
        ),
      );
      // Its other container is the trusted namespace's to declare: built, under its own name only.
      const tool = await until(
        "the build of the pod's other container",
        async () => (await builds()).find((b) => b.spec.flakeUrl === CLAIMANT),
        30_000,
      );
      assert.deepEqual(tool.spec.images, [TOOL_IMAGE]);
      // Git's workload gets its build, from Git's flake, under the name.
      await c.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace: appNs, body: deployment });
      const pod = await until(
        'a shop pod bound',
        async () =>
          (await core().listNamespacedPod({ namespace: appNs, labelSelector: 'app=shop' })).items.find(
            (p) => p.spec?.nodeName !== undefined,
          ),
        60_000,
      );
      await setPodWaiting(c.kc, appNs, pod.metadata!.name!, 'ErrImageNeverPull');
      const shop = await until(
        "the Git workload's build",
        async () => (await builds()).find((b) => b.spec.flakeUrl === FLAKE),
        30_000,
      );
      assert.deepEqual(shop.spec.images, [IMAGE]);
      await settle(controller!);
      const all = await builds();
      assert.deepEqual(
        all.filter((b) => b.spec.images?.includes(IMAGE)).map((b) => b.spec.flakeUrl),
        [FLAKE],
        `only Git's flake is built under ${IMAGE}`,
      );
      assert.ok(
        !all.some((b) => b.spec.flakeUrl === CLAIMANT && b.spec.images?.includes(IMAGE)),
        "no NixBuild of the claimant's flake under the name",
      );
      const refusals = (await core().listNamespacedEvent({ namespace: labNs })).items.filter(
        (e) => e.reason === 'BuildRefused' && e.involvedObject.name === 'claim',
      );
      assert.equal(refusals.length, 1, 'one Event per pod and reason');
    });

    it("a NixBuild of another flake under Git's image name is Stalled ImageClaimed, naming both, and gets no Job; Git's own flake under it does", async () => {
      const hand = `hand-${run}`;
      const same = `same-${run}`;
      await custom().createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        body: nixBuild(ns, hand, CLAIMANT, [IMAGE]),
      });
      await custom().createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        body: nixBuild(ns, same, FLAKE, [IMAGE]),
      });
      const stalled = await until(
        `${hand} Stalled`,
        async () => {
          const b = (await builds()).find((x) => x.metadata.name === hand);
          return b?.status?.conditions?.some((x) => x.type === 'Stalled' && x.status === 'True') ? b : undefined;
        },
        30_000,
      );
      assert.equal(stalled.status?.phase, 'Failed');
      const ready = stalled.status!.conditions!.find((x) => x.type === 'Ready')!;
      assert.equal(ready.reason, 'ImageClaimed');
      const why = new RegExp(
        `image ${esc(IMAGE)} is claimed twice: Deployment ${appNs}/shop in Git builds it from ${esc(`${FLAKE}#image`)}, and NixBuild ${ns}/${hand} builds it from ${esc(`${CLAIMANT}#image`)}.*enbi does not build this NixBuild`,
      );
      assert.match(ready.message, why);
      const ev = await eventOn(ns, hand, 'ImageClaimed');
      assert.equal(ev.type, 'Warning');
      assert.match(ev.message ?? '', why);
      await until(
        `a Job for ${same}`,
        async () =>
          (await jobs()).some((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === same) ? true : undefined,
        30_000,
      );
      await settle(controller!);
      assert.ok(
        !(await jobs()).some((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === hand),
        `no Job for ${hand}`,
      );
    });

    it('while a configured Git source is unread, a trusted pod and a hand-written NixBuild start nothing', async () => {
      // A controller whose Git server never answers (nothing listens on port 9): its source stays unread.
      const cfg = parseControllerConfig({
        source: { url: 'http://127.0.0.1:9/manifests.git', intervalSeconds: 3600, timeoutSeconds: 5 },
        namespace: ns2,
        watchNamespaces: [labNs2],
        trustedNamespaces: [labNs2],
        allowedImages: ['registry.local/'],
        allowedFlakes: ['http://git.invalid/'],
        builderImage: 'enbi.local/builder:dev',
        importerImage: 'enbi.local/importer:dev',
        containerdSocket: '/run/containerd/containerd.sock',
        builderNodeSelector: { [POOL]: run },
      });
      const dir = await mkdtemp(join(tmpdir(), 'enbi-unread-'));
      pending = await startController({
        cfg,
        kc: c.kc,
        source: sourceState(cfg, dir, undefined, (m) => logs.push(`[unread] ${m}`)),
        metrics: newMetrics(),
        log: (m) => logs.push(`[unread] ${m}`),
      });
      const name = `early-${run}`;
      await custom().createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns2,
        plural: PLURAL,
        body: nixBuild(ns2, name, CLAIMANT, [TOOL_IMAGE]),
      });
      await core().createNamespacedPod({
        namespace: labNs2,
        body: labPod(labNs2, 'early', [{ name: 'tool', image: TOOL_IMAGE }]),
      });
      await setPodWaiting(c.kc, labNs2, 'early', 'ErrImageNeverPull');
      const waiting = await until(
        `${name} waiting for the source`,
        async () => {
          const b = (await builds(ns2)).find((x) => x.metadata.name === name);
          return b?.status?.conditions?.find((x) => x.type === 'Ready' && x.reason === 'WaitingForSource') !== undefined
            ? b
            : undefined;
        },
        30_000,
      );
      assert.equal(waiting.status?.phase, 'Pending');
      const ev = await eventOn(labNs2, 'early', 'BuildRefused');
      assert.match(
        ev.message ?? '',
        /the Git source has not been read yet: pods of trusted namespace .* are planned once it is/,
      );
      await settle(pending);
      assert.deepEqual(await jobs(ns2), [], 'no Job');
      assert.deepEqual(
        (await builds(ns2)).map((b) => b.metadata.name),
        [name],
        'no NixBuild planned for the pod',
      );
    });
  },
);
