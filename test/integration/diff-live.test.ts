// `enbi diff` against a live API server: the agents' NodeImages inventories come before Node.status.images,
// and the output says which source each node's answer came from; pods already waiting for an image on their
// node are shown with the build that would bring it (the on-demand view).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiextensionsV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { GROUP, NODE_IMAGES_PLURAL, VERSION } from '../../src/api/nodeimages.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { deployment, REV_A, yamlDocs } from '../support/fixtures.ts';
import { fakeNodes, setPodWaiting, until } from '../support/kube.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const run = Date.now().toString(36);
const IMAGE = 'registry.local/live:v1';

function enbi(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/enbi.js'), ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe('enbi diff against a live cluster with agent inventories', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let nodes: Awaited<ReturnType<typeof fakeNodes>>;
  let dir: string;
  const withAgent = `inv-a-${run}`;
  const withoutAgent = `inv-b-${run}`;

  before(async () => {
    c = await useCluster('control-plane');
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
    const pool = { 'enbi.test/pool': `inv-${run}` };
    // Both nodes' kubelet lists are at the cap (50 entries) without the image: on their own, "unknown".
    nodes = await fakeNodes(c.kc, {
      [withAgent]: { arch: 'amd64', labels: pool, padImagesTo: 50 },
      [withoutAgent]: { arch: 'amd64', labels: pool, padImagesTo: 50 },
    });
    const custom = c.kc.makeApiClient(CustomObjectsApi);
    const body = { apiVersion: `${GROUP}/${VERSION}`, kind: 'NodeImages', metadata: { name: withAgent } };
    await custom.createClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, body });
    const status = {
      source: 'containerd',
      namespace: 'k8s.io',
      observedAt: new Date().toISOString(),
      resyncSeconds: 600,
      imageCount: 1,
      nameCount: 1,
      truncated: false,
      images: [{ digest: `sha256:${'1'.repeat(64)}`, names: ['registry.local/other:v9'], platforms: ['linux/amd64'] }],
    };
    await custom.patchClusterCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name: withAgent, body: { status } },
      (await import('@kubernetes/client-node')).setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
    dir = await mkdtemp(join(tmpdir(), 'enbi-live-'));
    await writeFile(
      join(dir, 'app.yaml'),
      yamlDocs(deployment('live', { flake: `github:acme/live/${REV_A}#image`, image: IMAGE, nodeSelector: pool })),
    );
  });

  after(async () => {
    await nodes?.stop();
    await c?.kc
      .makeApiClient(CustomObjectsApi)
      .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name: withAgent })
      .catch(() => undefined);
  });

  it('plans from the complete inventory where an agent runs, and never from a truncated kubelet list', async () => {
    const r = await enbi([
      'diff',
      '--dir',
      dir,
      '--kubeconfig',
      c.kubeconfig,
      '--mode',
      'per-node',
      '--offline',
      '-o',
      'json',
    ]);
    assert.equal(r.code, 2, r.stderr);
    const report = JSON.parse(r.stdout) as {
      builds: { node: string; flake: string }[];
      nodes: { name: string; imageSource: string; imagesComplete: boolean }[];
      statuses: { state: string; nodes: string[] }[];
    };
    const source = (n: string) => report.nodes.find((x) => x.name === n);
    assert.equal(source(withAgent)?.imageSource, 'agent');
    assert.equal(source(withAgent)?.imagesComplete, true);
    assert.equal(source(withoutAgent)?.imageSource, 'node-status');
    assert.equal(source(withoutAgent)?.imagesComplete, false);
    // Missing where the agent says so; unknown on the node whose only source is a capped list.
    assert.deepEqual(
      report.builds.filter((b) => b.flake.startsWith('github:acme/live/')).map((b) => b.node),
      [withAgent],
    );
    const text = await enbi(['diff', '--dir', dir, '--kubeconfig', c.kubeconfig, '--mode', 'per-node', '--offline']);
    assert.match(text.stdout, /images from \d+ agent inventor(y|ies)/);
  });

  it('shows pods waiting for a missing image on their node, and the build that would bring it', async () => {
    const core = c.kc.makeApiClient(CoreV1Api);
    const name = `waiting-${run}`;
    const image = 'registry.local/ondemand:v3';
    const podBody = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: 'default',
        annotations: { 'enbi.hrzn.ee/flake': `github:acme/ondemand/${REV_A}#image` },
      },
      spec: { nodeName: withoutAgent, containers: [{ name: 'app', image, imagePullPolicy: 'Never' }] },
    };
    // The pod is in Git (a Pod manifest of the source): its waiting copy in the cluster says where to build.
    await writeFile(join(dir, 'ondemand-pod.yaml'), yamlDocs(podBody));
    await core.createNamespacedPod({ namespace: 'default', body: podBody });
    // A tenant's pod that Git does not know, claiming a well-known name with its own flake: refused.
    const tenant = `tenant-${run}`;
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: tenant, annotations: { 'enbi.hrzn.ee/flake': `github:evil/payload/${REV_A}#image` } },
        spec: {
          nodeName: withoutAgent,
          containers: [{ name: 'db', image: 'postgres:16.4', imagePullPolicy: 'Never' }],
        },
      },
    });
    try {
      await setPodWaiting(c.kc, 'default', name, 'ErrImageNeverPull');
      await setPodWaiting(c.kc, 'default', tenant, 'ErrImageNeverPull');
      const r = await enbi([
        'diff',
        '--dir',
        dir,
        '--kubeconfig',
        c.kubeconfig,
        '--mode',
        'per-node',
        '--offline',
        '-o',
        'json',
      ]);
      assert.equal(r.code, 2, r.stderr);
      const report = JSON.parse(r.stdout) as {
        podsRead?: number;
        waitingPods: { name: string; node: string; reason: string; state: string; buildId?: string; system?: string }[];
        builds: { id: string; node: string; system: string; images: string[] }[];
      };
      assert.ok((report.podsRead ?? 0) >= 1);
      const w = report.waitingPods.find((x) => x.name === name);
      assert.ok(w, JSON.stringify(report.waitingPods));
      assert.equal(w.node, withoutAgent);
      assert.equal(w.reason, 'ErrImageNeverPull');
      assert.equal(w.state, 'missing');
      // The pod's own node builds it (its kubelet list is capped, but kubelet itself says the image is absent).
      const b = report.builds.find((x) => x.id === w.buildId);
      assert.ok(b, `no build for the waiting pod: ${JSON.stringify(report.builds)}`);
      assert.equal(b.node, withoutAgent);
      assert.equal(b.system, 'x86_64-linux');
      assert.deepEqual(b.images, [image]);
      const text = await enbi(['diff', '--dir', dir, '--kubeconfig', c.kubeconfig, '--mode', 'per-node', '--offline']);
      assert.match(
        text.stdout,
        new RegExp(
          `Pods waiting for an image missing on their node[\\s\\S]*default/${name}\\s+${withoutAgent}\\s+app\\s+${image.replaceAll('.', '\\.')}\\s+ErrImageNeverPull\\s+x86_64-linux on ${withoutAgent}`,
        ),
      );
      assert.match(text.stdout, /now \(pods waiting\)/);
      // The tenant's pod: refused, with the reason, and nothing planned for postgres or its flake.
      const refused = (
        JSON.parse(r.stdout) as { refusedPods: { name: string; container: string; image: string; reason: string }[] }
      ).refusedPods.find((x) => x.name === tenant);
      assert.ok(refused, 'the tenant pod is listed as refused');
      assert.equal(refused.image, 'postgres:16.4');
      assert.match(refused.reason, /no workload of the Git source matches this pod/);
      assert.ok(!report.builds.some((x) => x.images.some((i) => i.includes('postgres'))), 'no build for the tenant');
      assert.ok(!report.waitingPods.some((x) => x.name === tenant));
      assert.match(
        text.stdout,
        new RegExp(
          `Pods refused: waiting, but enbi builds nothing for them[\\s\\S]*default/${tenant}\\s+${withoutAgent}\\s+db\\s+postgres:16\\.4\\s+no workload of the Git source`,
        ),
      );
      // With --trusted-namespace default its pods may declare their own flake (as the controller's trustedNamespaces).
      const trusted = JSON.parse(
        (
          await enbi([
            'diff',
            '--dir',
            dir,
            '--kubeconfig',
            c.kubeconfig,
            '--mode',
            'per-node',
            '--offline',
            '-o',
            'json',
            '--trusted-namespace',
            'default',
          ])
        ).stdout,
      ) as { refusedPods: { name: string }[]; waitingPods: { name: string }[] };
      assert.ok(
        trusted.waitingPods.some((x) => x.name === tenant) && !trusted.refusedPods.some((x) => x.name === tenant),
      );
    } finally {
      await core.deleteNamespacedPod({ namespace: 'default', name, gracePeriodSeconds: 0 }).catch(() => undefined);
      await core
        .deleteNamespacedPod({ namespace: 'default', name: tenant, gracePeriodSeconds: 0 })
        .catch(() => undefined);
    }
  });
});
