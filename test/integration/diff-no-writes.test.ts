// docs/diff.md: "`enbi diff` never writes to the cluster". Against a real API server with everything diff reads
// (Nodes, NodeImages inventories, a pod waiting for its image): run with a ServiceAccount token that may only
// get, list and watch, the plan is the one the admin kubeconfig gives (so diff needs no write permission, and a
// write would fail loudly); run with the admin kubeconfig, a watch opened at the resourceVersion listed just
// before the run sees no object created, changed or deleted among everything enbi could write while it runs,
// but for the writes of the cluster's own components (kubelets, controllers), known by their field managers.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  Watch,
} from '@kubernetes/client-node';
import { parse } from 'yaml';
import { GROUP, NODE_IMAGES_PLURAL, VERSION } from '../../src/api/nodeimages.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { deployment, REV_A, yamlDocs } from '../support/fixtures.ts';
import { FAKE_KUBELET, fakeNodes, setPodWaiting, until } from '../support/kube.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const run = Date.now().toString(36);
const READER = `enbi-diff-reader-${run}`;

/** Everything enbi could write (NixBuilds, NodeImages, Events, Leases, Jobs) and what diff reads. */
const COLLECTIONS = [
  { path: '/apis/enbi.hrzn.ee/v1alpha1/nixbuilds', apiVersion: 'enbi.hrzn.ee/v1alpha1', kind: 'NixBuild' },
  { path: '/apis/enbi.hrzn.ee/v1alpha1/nodeimages', apiVersion: 'enbi.hrzn.ee/v1alpha1', kind: 'NodeImages' },
  { path: '/api/v1/events', apiVersion: 'v1', kind: 'Event' },
  { path: '/apis/coordination.k8s.io/v1/leases', apiVersion: 'coordination.k8s.io/v1', kind: 'Lease' },
  { path: '/apis/batch/v1/jobs', apiVersion: 'batch/v1', kind: 'Job' },
  { path: '/api/v1/nodes', apiVersion: 'v1', kind: 'Node' },
  { path: '/api/v1/pods', apiVersion: 'v1', kind: 'Pod' },
  { path: '/api/v1/configmaps', apiVersion: 'v1', kind: 'ConfigMap' },
  { path: '/api/v1/secrets', apiVersion: 'v1', kind: 'Secret' },
];

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

type Change = { collection: string; type: string; namespace: string; name: string; writer: string };

/**
 * The cluster's own components: in a full cluster they write all the time (kubelets renew leases and report
 * pods, the node controller records Events about nodes), whatever enbi does; and the fake nodes' renewals.
 */
const CLUSTER_COMPONENTS = new Set([
  'kubelet',
  'kube-controller-manager',
  'kube-scheduler',
  'kube-apiserver',
  FAKE_KUBELET,
]);

type Watched = KubernetesObject & { metadata?: { managedFields?: { manager?: string; time?: unknown }[] } };

const keyOf = (collection: string, o: KubernetesObject) =>
  `${collection} ${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

/** Who made an object's latest write, and when (whole seconds): its newest managedFields entry. */
function lastWrite(obj: Watched): { manager: string; at: number } {
  const times = (obj.metadata?.managedFields ?? []).map((f) => ({
    manager: f.manager ?? '',
    at: new Date(String(f.time ?? 0)).getTime(),
  }));
  return times.sort((a, b) => b.at - a.at)[0] ?? { manager: '', at: 0 };
}

/**
 * Every change to the collections from `resourceVersion` on, seen by watches opened there, until `stop`, but
 * for the cluster's own writes: a change whose newest managedFields entry is a component's, made since the
 * recording began, and the deletion of an object already being deleted when it began (a graceful deletion
 * finishing, a garbage collection). Every other change counts, whoever made it: a deletion requested now, a
 * write that leaves managedFields as they were.
 */
async function recordChanges(kc: KubeConfig, resourceVersion: string): Promise<() => Promise<Change[]>> {
  const began = Date.now() - 1000; // managedFields times are whole seconds
  const api = KubernetesObjectApi.makeApiClient(kc);
  const terminating = new Set<string>();
  for (const c of COLLECTIONS)
    for (const o of (await api.list(c.apiVersion, c.kind)).items)
      if (o.metadata?.deletionTimestamp !== undefined) terminating.add(keyOf(c.path, o));
  const changes: Change[] = [];
  const watch = new Watch(kc);
  const aborts = await Promise.all(
    COLLECTIONS.map(({ path }) =>
      watch.watch(
        path,
        { resourceVersion, allowWatchBookmarks: false },
        (type, obj: Watched) => {
          const last = lastWrite(obj);
          const others =
            type === 'DELETED'
              ? terminating.has(keyOf(path, obj))
              : last.at >= began && CLUSTER_COMPONENTS.has(last.manager);
          if (!others)
            changes.push({
              collection: path,
              type,
              namespace: obj.metadata?.namespace ?? '',
              name: obj.metadata?.name ?? '',
              writer: type === 'DELETED' ? '' : last.manager,
            });
        },
        () => undefined,
      ),
    ),
  );
  return async () => {
    // Events up to the moment diff exited reach the watch within a moment.
    await new Promise((r) => setTimeout(r, 2000));
    for (const a of aborts) a.abort();
    return changes;
  };
}

describe('enbi diff never writes to the cluster', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let nodes: Awaited<ReturnType<typeof fakeNodes>>;
  let dir: string;
  let readerKubeconfig: string;
  let reader: KubeConfig;
  const withAgent = `nw-a-${run}`;
  const withoutAgent = `nw-b-${run}`;
  const waiting = `nw-waiting-${run}`;
  const args = (json = true) => [
    'diff',
    '--dir',
    dir,
    '--mode',
    'per-node',
    '--offline',
    ...(json ? ['-o', 'json'] : []),
  ];

  before(async () => {
    c = await useCluster('control-plane');
    const ext = c.kc.makeApiClient(ApiextensionsV1Api);
    for (const file of ['nodeimages.enbi.hrzn.ee.yaml', 'nixbuilds.enbi.hrzn.ee.yaml']) {
      const crd = parse(await readFile(join(ROOT, 'deploy/crd', file), 'utf8'));
      await ext.createCustomResourceDefinition({ body: crd }).catch((e: { code?: number }) => {
        if (e.code !== 409) throw e;
      });
      await until(`the CRD ${file}`, async () =>
        (await ext.readCustomResourceDefinition({ name: crd.metadata.name })).status?.conditions?.some(
          (x) => x.type === 'Established' && x.status === 'True',
        )
          ? true
          : undefined,
      );
    }
    const pool = { 'enbi.test/pool': `nw-${run}` };
    nodes = await fakeNodes(c.kc, {
      [withAgent]: { arch: 'amd64', labels: pool },
      [withoutAgent]: { arch: 'amd64', labels: pool },
    });
    const custom = c.kc.makeApiClient(CustomObjectsApi);
    await custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: NODE_IMAGES_PLURAL,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'NodeImages', metadata: { name: withAgent } },
    });
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
      setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
    // A pod waiting for its image: diff reads it and plans the build on its node (the on-demand view).
    const core = c.kc.makeApiClient(CoreV1Api);
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: waiting,
        namespace: 'default',
        annotations: { 'enbi.hrzn.ee/flake': `github:acme/nowrite/${REV_A}#image` },
      },
      spec: {
        nodeName: withoutAgent,
        containers: [{ name: 'app', image: 'registry.local/nowrite:v1', imagePullPolicy: 'Never' }],
      },
    };
    await core.createNamespacedPod({ namespace: 'default', body: pod });
    await setPodWaiting(c.kc, 'default', waiting, 'ErrImageNeverPull');
    dir = await mkdtemp(join(tmpdir(), 'enbi-no-writes-'));
    await writeFile(
      join(dir, 'app.yaml'),
      yamlDocs(
        deployment('nowrite', {
          flake: `github:acme/nowrite/${REV_A}#image`,
          image: 'registry.local/live:v1',
          nodeSelector: pool,
        }),
        pod,
      ),
    );

    // The read-only user: a ServiceAccount bound to a ClusterRole of get, list and watch on what diff reads.
    const rbac = c.kc.makeApiClient(RbacAuthorizationV1Api);
    await core.createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name: READER } } });
    await rbac.createClusterRole({
      body: {
        metadata: { name: READER },
        rules: [
          { apiGroups: [''], resources: ['nodes', 'pods'], verbs: ['get', 'list', 'watch'] },
          { apiGroups: [GROUP], resources: [NODE_IMAGES_PLURAL, 'nixbuilds'], verbs: ['get', 'list', 'watch'] },
        ],
      },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: READER },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: READER },
        subjects: [{ kind: 'ServiceAccount', name: READER, namespace: 'default' }],
      },
    });
    const tr = await core.createNamespacedServiceAccountToken({
      name: READER,
      namespace: 'default',
      body: { spec: { audiences: [], expirationSeconds: 3600 } },
    });
    const cluster = c.kc.getCurrentCluster()!;
    reader = new KubeConfig();
    reader.loadFromOptions({
      clusters: [cluster],
      users: [{ name: 'reader', token: tr.status!.token }],
      contexts: [{ name: 'reader', cluster: cluster.name, user: 'reader' }],
      currentContext: 'reader',
    });
    readerKubeconfig = join(dir, 'reader.kubeconfig');
    await writeFile(readerKubeconfig, reader.exportConfig());
  });

  after(async () => {
    await nodes?.stop();
    const custom = c?.kc.makeApiClient(CustomObjectsApi);
    await custom
      ?.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name: withAgent })
      .catch(() => undefined);
    const core = c?.kc.makeApiClient(CoreV1Api);
    await core?.deleteNamespacedPod({ name: waiting, namespace: 'default' }).catch(() => undefined);
    await core?.deleteNamespacedServiceAccount({ name: READER, namespace: 'default' }).catch(() => undefined);
    const rbac = c?.kc.makeApiClient(RbacAuthorizationV1Api);
    await rbac?.deleteClusterRoleBinding({ name: READER }).catch(() => undefined);
    await rbac?.deleteClusterRole({ name: READER }).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("with a user that may only read, the plan is the admin's, and that user really cannot write", async () => {
    // RBAC takes effect at once, but wait until the token reads, so a refusal below is the verbs' doing.
    await until('the reader can list nodes', async () =>
      (await reader
        .makeApiClient(CoreV1Api)
        .listNode()
        .catch(() => undefined))
        ? true
        : undefined,
    );
    const refused = await reader
      .makeApiClient(CoreV1Api)
      .createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: `nw-probe-${run}` } } })
      .then(
        () => 0,
        (e: { code?: number }) => e.code ?? -1,
      );
    assert.equal(refused, 403, 'the read-only user is refused a write');

    const asReader = await enbi([...args(), '--kubeconfig', readerKubeconfig]);
    const asAdmin = await enbi([...args(), '--kubeconfig', c.kubeconfig]);
    assert.equal(asAdmin.code, 2, asAdmin.stderr + asAdmin.stdout);
    assert.equal(asReader.code, 2, asReader.stderr);
    const plan = JSON.parse(asAdmin.stdout) as {
      builds: { node: string; flake: string }[];
      nodes: { name: string; imageSource: string }[];
      waitingPods: { name: string }[];
    };
    // What it planned used every source it reads: the inventory, the node list and the waiting pod.
    assert.equal(plan.nodes.find((n) => n.name === withAgent)?.imageSource, 'agent');
    assert.ok(plan.waitingPods.some((p) => p.name === waiting));
    assert.ok(plan.builds.some((b) => b.flake.startsWith('github:acme/nowrite/') && b.node === withoutAgent));
    const sameServer = (s: string) => s.replaceAll(c.server, 'SERVER');
    assert.equal(sameServer(asReader.stdout), sameServer(asAdmin.stdout), 'the same plan, byte for byte');
    assert.equal(asReader.stderr, asAdmin.stderr);
  });

  it('with the admin kubeconfig, nothing is created, changed or deleted while it runs', async () => {
    const core = c.kc.makeApiClient(CoreV1Api);
    // One resourceVersion for all collections: the store's current revision, read just before the run.
    const rv = (await core.listNamespace({ limit: 1 })).metadata!.resourceVersion!;
    const stop = await recordChanges(c.kc, rv);
    const codes: number[] = [];
    let changes: Change[];
    try {
      for (const json of [true, false]) codes.push((await enbi([...args(json), '--kubeconfig', c.kubeconfig])).code);
    } finally {
      changes = await stop();
    }
    assert.deepEqual(codes, [2, 2], 'both runs planned builds');
    // The recording sees a write when there is one: an admin's ConfigMap, made the same way.
    const probeFrom = (await core.listNamespace({ limit: 1 })).metadata!.resourceVersion!;
    const stopProbe = await recordChanges(c.kc, probeFrom);
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: `nw-probe-${run}` } } });
    await core.deleteNamespacedConfigMap({ name: `nw-probe-${run}`, namespace: 'default' });
    assert.deepEqual(
      (await stopProbe()).map((x) => x.type),
      ['ADDED', 'DELETED'],
      'a created and deleted ConfigMap is seen',
    );
    assert.deepEqual(changes, [], 'no write while enbi diff ran');
  });
});
