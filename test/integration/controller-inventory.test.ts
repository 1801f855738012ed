// The controller plans from the node agents' NodeImages inventories where they are fresh, and from
// Node.status.images elsewhere: an image listed by the agent for the node's platform is present, one the agent
// does not list is missing (even though kubelet's capped list could not say), and a stale inventory counts
// for nothing, as does one dated in the future (an agent clock running ahead). Real API server, API-object nodes, NodeImages objects written as the agent writes them.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiextensionsV1Api, CoreV1Api, CustomObjectsApi, setHeaderOptions } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { NODE_IMAGES_PLURAL } from '../../src/api/nodeimages.ts';
import { parseControllerConfig } from '../../src/controller/config.ts';
import { type RunningController, startController } from '../../src/controller/controller.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { sourceState } from '../../src/controller/source-state.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { deployment, REV_A, yamlDocs } from '../support/fixtures.ts';
import { applyNixBuildCrd, fakeNodes, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const pool = { 'enbi.test/pool': `inv-ctl-${run}` };
const IMAGE = `registry.local/inv:${REV_A.slice(0, 8)}`;

describe('controller with agent inventories', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let ns: string;
  let dir: string;
  let nodes: Awaited<ReturnType<typeof fakeNodes>>;
  let controller: RunningController | undefined;
  const logs: string[] = [];
  const holds = `inv-holds-${run}`; // the agent lists the image for linux/amd64
  const lacks = `inv-lacks-${run}`; // the agent lists other images only
  const otherArch = `inv-arm-only-${run}`; // the agent lists the image, but only for linux/arm64
  const stale = `inv-stale-${run}`; // the agent's last word is an hour old
  const noAgent = `inv-none-${run}`; // no NodeImages: kubelet's capped list, so unknown
  const skewed = `inv-skewed-${run}`; // the agent's clock runs a day ahead and it states a week's resync

  const writeInventory = async (
    node: string,
    images: { names: string[]; platforms: string[] }[],
    observedAt = new Date(),
  ) => {
    const custom = c.kc.makeApiClient(CustomObjectsApi);
    return writeStatus(custom, node, images, observedAt);
  };
  const writeStatus = async (
    custom: CustomObjectsApi,
    node: string,
    images: { names: string[]; platforms: string[] }[],
    observedAt: Date,
    resyncSeconds = 600,
  ) => {
    await custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_IMAGES_PLURAL,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'NodeImages', metadata: { name: node } },
    });
    const status = {
      source: 'containerd',
      namespace: 'k8s.io',
      observedAt: observedAt.toISOString(),
      resyncSeconds,
      imageCount: images.length,
      nameCount: images.reduce((n, i) => n + i.names.length, 0),
      truncated: false,
      images: images.map((i, k) => ({ digest: `sha256:${String(k).repeat(64).slice(0, 64)}`, ...i })),
    };
    await custom.patchClusterCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name: node, body: { status } },
      setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
  };

  before(async () => {
    c = await useCluster('control-plane');
    ns = `enbi-inv-${run}`;
    await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    await applyNixBuildCrd(c.kc);
    const ext = c.kc.makeApiClient(ApiextensionsV1Api);
    const crd = parse(
      await readFile(new URL('../../deploy/crd/nodeimages.enbi.hrzn.ee.yaml', import.meta.url), 'utf8'),
    );
    await ext.createCustomResourceDefinition({ body: crd }).catch((e: { code?: number }) => {
      if (e.code !== 409) throw e;
    });
    await until('the NodeImages CRD', async () =>
      (await ext.readCustomResourceDefinition({ name: crd.metadata.name })).status?.conditions?.some(
        (x) => x.type === 'Established' && x.status === 'True',
      )
        ? true
        : undefined,
    );
    // Every kubelet list is at the cap without the image: on its own, never "missing".
    const amd = { arch: 'amd64', labels: pool, padImagesTo: 50 };
    nodes = await fakeNodes(c.kc, {
      [holds]: amd,
      [lacks]: amd,
      [otherArch]: amd,
      [stale]: amd,
      [noAgent]: amd,
      [skewed]: amd,
    });
    await writeInventory(holds, [{ names: [IMAGE], platforms: ['linux/amd64'] }]);
    await writeInventory(lacks, [{ names: ['registry.local/other:v1'], platforms: ['linux/amd64'] }]);
    await writeInventory(otherArch, [{ names: [IMAGE], platforms: ['linux/arm64'] }]);
    await writeInventory(
      stale,
      [{ names: ['registry.local/other:v1'], platforms: ['linux/amd64'] }],
      new Date(Date.now() - 3_600_000),
    );
    // A complete list without the image, dated a day ahead with a week's resync: believed, it would say
    // "missing" and plan a build there; an agent clock that runs ahead must not keep a list trusted.
    await writeStatus(
      c.kc.makeApiClient(CustomObjectsApi),
      skewed,
      [{ names: ['registry.local/other:v1'], platforms: ['linux/amd64'] }],
      new Date(Date.now() + 24 * 3600_000),
      7 * 24 * 3600,
    );
    dir = await mkdtemp(join(tmpdir(), 'enbi-inv-'));
    await writeFile(
      join(dir, 'app.yaml'),
      yamlDocs(
        deployment('inv', {
          flake: `git+http://git.invalid/inv.git?rev=${REV_A}#image`,
          image: IMAGE,
          annotations: { 'enbi.hrzn.ee/build': 'eager' },
          nodeSelector: pool,
        }),
      ),
    );
  });

  after(async () => {
    await controller?.stop();
    await nodes?.stop();
    const custom = c?.kc.makeApiClient(CustomObjectsApi);
    for (const n of [holds, lacks, otherArch, stale, skewed])
      await custom
        ?.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name: n })
        .catch(() => undefined);
    await c?.kc
      .makeApiClient(CoreV1Api)
      .deleteNamespace({ name: ns })
      .catch(() => undefined);
    if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
  });

  it('builds where a fresh inventory lacks the image for the node platform, and nowhere else', async () => {
    const cfg = parseControllerConfig({
      source: { dir, intervalSeconds: 3600 },
      namespace: ns,
      mode: 'per-node',
      allowedImages: ['registry.local/'],
      allowedFlakes: ['http://git.invalid/'],
      builderImage: 'enbi.local/builder:dev',
      importerImage: 'enbi.local/importer:dev',
      containerdSocket: '/run/containerd/containerd.sock',
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
    const list = async () =>
      (
        (await c.kc
          .makeApiClient(CustomObjectsApi)
          .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL })) as {
          items: NixBuild[];
        }
      ).items;
    const built = await until(
      'NixBuilds for the nodes that lack the image',
      async () => {
        const items = await list();
        return items.length >= 2 ? items : undefined;
      },
      30_000,
    );
    // A moment more: nothing else may follow.
    const again = controller.reconciled();
    controller.trigger();
    await again;
    const final = await list();
    assert.equal(final.length, built.length);
    const targets = final.map((b) => b.spec.node).sort();
    assert.deepEqual(targets, [lacks, otherArch].sort(), `builds on ${targets.join(', ')}\n${logs.join('\n')}`);
    for (const b of final) assert.deepEqual(b.spec.images ?? [b.spec.imageTag], [IMAGE]);
    // Pool nodes with a fresh agent inventory: holds, lacks, otherArch (the stale, skewed and noAgent ones fall back).
    assert.ok(metrics.nodesWithAgentInventory >= 3, `nodesWithAgentInventory ${metrics.nodesWithAgentInventory}`);
  });
});
