// Helpers for tests against the real API server: waiting, the CRD, and API-object nodes that stay Ready
// (their Leases are renewed, so the node lifecycle controller does not mark them unreachable).
import { readFile } from 'node:fs/promises';
import {
  ApiextensionsV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1ContainerState,
  type V1Node,
} from '@kubernetes/client-node';
import { parse } from 'yaml';
import { rawNode, type NodeOptions } from './fixtures.ts';
import { parseControllerConfig } from '../../src/controller/config.ts';
import { type RunningController, startController } from '../../src/controller/controller.ts';
import { type Metrics, newMetrics } from '../../src/controller/metrics.ts';
import { sourceState } from '../../src/controller/source-state.ts';
import { LiteApi, targetFromKubeConfig } from '../../src/kube/lite.ts';

export async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000, everyMs = 200): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end)
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}${last !== undefined ? ` (last error: ${String(last)})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function applyNixBuildCrd(kc: KubeConfig): Promise<void> {
  await applyCrdFile(kc, new URL('../../deploy/crd/nixbuilds.enbi.hrzn.ee.yaml', import.meta.url).pathname);
}

/** Creates or replaces the CRD in a YAML file and waits until it is Established. */
export async function applyCrdFile(kc: KubeConfig, file: string): Promise<void> {
  const crd = parse(await readFile(file, 'utf8')) as { metadata: { name: string; resourceVersion?: string } };
  // Sent as JSON, as kubectl would: client-node's CRD model drops the schema's `default`s (it names them
  // `_default`), and NixBuild's status defaults are what make a new one read as not yet observed.
  const raw = new LiteApi(targetFromKubeConfig(kc), 'enbi-tests');
  const path = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
  try {
    await raw.post(path, crd);
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
    const current = await raw.get<{ metadata: { resourceVersion: string } }>(`${path}/${crd.metadata.name}`);
    await raw.request('PUT', `${path}/${crd.metadata.name}`, {
      ...crd,
      metadata: { ...crd.metadata, resourceVersion: current.metadata.resourceVersion },
    });
  }
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  await until(`the CRD ${crd.metadata.name} to be Established`, async () => {
    const got = await ext.readCustomResourceDefinition({ name: crd.metadata.name });
    return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ? true : undefined;
  });
}

/**
 * Creates API-object nodes and keeps them Ready until `stop()`. Each node's Lease is renewed from the
 * moment it exists: a node left without one for the node monitor grace period is marked Unknown by the
 * node lifecycle controller, and nothing would mark it Ready again.
 */
/** The field manager of the fake nodes' lease renewals: what a test watching for others' writes leaves out. */
export const FAKE_KUBELET = 'enbi-test-fake-kubelet';

export async function fakeNodes(
  kc: KubeConfig,
  specs: Record<string, NodeOptions>,
): Promise<{ names: string[]; stop: () => Promise<void> }> {
  const core = kc.makeApiClient(CoreV1Api);
  const leases = kc.makeApiClient(CoordinationV1Api);
  const names = Object.keys(specs);
  const live: string[] = [];
  // renewTime is a MicroTime: the API server refuses a time with milliseconds only. A merge patch renews
  // without a resourceVersion (a PUT without one is refused), and sends the string as it is.
  const lease = async (name: string) => {
    const patch = () =>
      leases.patchNamespacedLease(
        {
          name,
          namespace: 'kube-node-lease',
          body: { spec: { renewTime: new Date().toISOString().replace(/Z$/, '000Z') } },
          fieldManager: FAKE_KUBELET,
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    await patch().catch(async (err: unknown) => {
      if ((err as { code?: number }).code !== 404) return;
      await leases
        .createNamespacedLease({
          namespace: 'kube-node-lease',
          body: {
            metadata: { name, namespace: 'kube-node-lease' },
            spec: { holderIdentity: name, leaseDurationSeconds: 40 },
          },
          fieldManager: FAKE_KUBELET,
        })
        .catch(() => undefined);
      await patch().catch(() => undefined);
    });
  };
  let renewing = false;
  const renew = async () => {
    // A slow API server must not pile renewals up.
    if (renewing) return;
    renewing = true;
    for (const name of [...live]) await lease(name);
    renewing = false;
  };
  const timer = setInterval(() => void renew(), 5000);
  const create = async (name: string, o: NodeOptions) => {
    const raw = rawNode(name, o) as unknown as V1Node;
    await core.deleteNode({ name }).catch(() => undefined);
    await until(`old node ${name} to go`, async () =>
      (await core.readNode({ name }).then(
        () => false,
        () => true,
      ))
        ? true
        : undefined,
    );
    await core.createNode({ body: { ...raw, status: undefined } as V1Node });
    await lease(name);
    live.push(name);
    // The node lifecycle controller writes to new nodes too: retry on conflict.
    await until(
      `status of node ${name}`,
      async () => {
        const current = await core.readNode({ name });
        await core.replaceNodeStatus({
          name,
          body: { ...raw, spec: current.spec, metadata: current.metadata } as V1Node,
        });
        return true;
      },
      20_000,
      100,
    );
  };
  const queue = Object.entries(specs);
  await Promise.all(
    [1, 2, 3, 4].map(async () => {
      for (let next = queue.shift(); next !== undefined; next = queue.shift()) await create(...next);
    }),
  );
  return {
    names,
    stop: async () => {
      clearInterval(timer);
      for (const name of names) await core.deleteNode({ name }).catch(() => undefined);
    },
  };
}

/** Plays kubelet: the node's image list becomes `images` (retried on conflicts with other status writers). */
export async function setNodeImages(kc: KubeConfig, name: string, images: string[]): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  await until(
    `images of node ${name}`,
    async () => {
      const node = await core.readNode({ name });
      await core.replaceNodeStatus({
        name,
        body: { ...node, status: { ...node.status, images: images.map((n) => ({ names: [n], sizeBytes: 1000 })) } },
      });
      return true;
    },
    20_000,
    100,
  );
}

/** Plays kubelet: every container of the pod waits with `reason` (ErrImageNeverPull, ImagePullBackOff, ...). */
export async function setPodWaiting(kc: KubeConfig, namespace: string, name: string, reason: string): Promise<void> {
  await setPodStatus(
    kc,
    namespace,
    name,
    (image) => ({ waiting: { reason, message: `image ${image} is not present` } }),
    'Pending',
  );
}

/** Plays kubelet: every container of the pod runs. */
export async function setPodRunning(kc: KubeConfig, namespace: string, name: string): Promise<void> {
  await setPodStatus(kc, namespace, name, () => ({ running: { startedAt: new Date() } }), 'Running');
}

async function setPodStatus(
  kc: KubeConfig,
  namespace: string,
  name: string,
  state: (image: string) => V1ContainerState,
  phase: string,
): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  await until(
    `status of pod ${namespace}/${name}`,
    async () => {
      const pod = await core.readNamespacedPod({ name, namespace });
      const containerStatuses = (pod.spec?.containers ?? []).map((c) => ({
        name: c.name,
        image: c.image ?? '',
        imageID: '',
        ready: phase === 'Running',
        restartCount: 0,
        state: state(c.image ?? ''),
      }));
      await core.replaceNamespacedPodStatus({
        name,
        namespace,
        body: { ...pod, status: { ...pod.status, phase, containerStatuses } },
      });
      return true;
    },
    20_000,
    100,
  );
}

/** Plays the build: the Job is marked Complete as the Job controller would after its pod succeeded. */
export async function completeJob(kc: KubeConfig, namespace: string, name: string): Promise<void> {
  const batch = kc.makeApiClient(BatchV1Api);
  await until(
    `Job ${name} complete`,
    async () => {
      const job = await batch.readNamespacedJob({ name, namespace });
      const now = new Date();
      const done = (type: string) => ({
        type,
        status: 'True',
        lastTransitionTime: now,
        lastProbeTime: now,
        reason: 'CompletionsReached',
        message: 'Reached expected number of succeeded pods',
      });
      await batch.replaceNamespacedJobStatus({
        name,
        namespace,
        body: {
          ...job,
          status: {
            ...job.status,
            active: 0,
            ready: 0,
            succeeded: 1,
            startTime: job.status?.startTime ?? now,
            completionTime: now,
            conditions: [done('SuccessCriteriaMet'), done('Complete')],
          },
        },
      });
      return true;
    },
    20_000,
    100,
  );
}

/** Plays the Job controller: the Job failed (its backoff limit reached), as after a failed pod. */
export async function failJob(kc: KubeConfig, namespace: string, name: string): Promise<void> {
  const batch = kc.makeApiClient(BatchV1Api);
  await until(
    `Job ${name} failed`,
    async () => {
      const job = await batch.readNamespacedJob({ name, namespace });
      const now = new Date();
      const failed = (type: string) => ({
        type,
        status: 'True',
        lastTransitionTime: now,
        lastProbeTime: now,
        reason: 'BackoffLimitExceeded',
        message: 'Job has reached the specified backoff limit',
      });
      await batch.replaceNamespacedJobStatus({
        name,
        namespace,
        body: {
          ...job,
          status: {
            ...job.status,
            active: 0,
            ready: 0,
            failed: 1,
            startTime: job.status?.startTime ?? now,
            conditions: [failed('FailureTarget'), failed('Failed')],
          },
        },
      });
      return true;
    },
    20_000,
    100,
  );
}

/**
 * The controller, in this process, for tests on API-object nodes: a directory source, enbi's allow-lists for
 * `registry.local/` and `http://git.invalid/`, test images, builds only on nodes labelled `pool` (whatever
 * else the shared cluster has). `settings` add to or replace these; `logs` collects its log lines.
 */
export async function startApiNodeController(
  kc: KubeConfig,
  o: {
    dir: string;
    namespace: string;
    pool: Record<string, string>;
    logs: string[];
    metrics?: Metrics;
    settings?: Record<string, unknown>;
    /** The leader election's write window (controller-fencing); absent: always allowed. */
    writeRefusal?: () => string | undefined;
    /** Liveness: pending work that has not moved for this long makes healthy() false. */
    stallMs?: number;
  },
): Promise<RunningController> {
  const cfg = parseControllerConfig({
    source: { dir: o.dir, intervalSeconds: 3600 },
    namespace: o.namespace,
    allowedImages: ['registry.local/'],
    allowedFlakes: ['http://git.invalid/'],
    builderImage: 'enbi.local/builder:dev',
    importerImage: 'enbi.local/importer:dev',
    containerdSocket: '/run/containerd/containerd.sock',
    builderNodeSelector: o.pool,
    ...o.settings,
  });
  const log = (m: string) => o.logs.push(m);
  return startController({
    cfg,
    kc,
    source: sourceState(cfg, `${o.dir}/.cache`, undefined, log),
    metrics: o.metrics ?? newMetrics(),
    log,
    ...(o.writeRefusal !== undefined ? { writeRefusal: o.writeRefusal } : {}),
    ...(o.stallMs !== undefined ? { stallMs: o.stallMs } : {}),
  });
}
