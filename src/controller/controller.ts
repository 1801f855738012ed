// `enbi controller`: the pieces, named as docs/design.md names them.
//   informers   Nodes, bound Pods, build Jobs, NixBuilds, NodeImages: the caches every decision reads.
//   source loop the Git source (or directory) synced on its own timer and on a webhook, with timeouts
//               (source-loop.ts); a hung Git server delays only the source, never the builds.
//   plan pass   gather → desiredBuilds (pure) → create NixBuilds, tell refused pods (plan-pass.ts); it
//               runs after any change, one at a time, and hands the builds a fresh World.
//   work queue  one key per NixBuild (work-queue.ts): each build's reconcile (build-reconciler.ts) runs
//               on its own with its own errors, backoff and requeue; one build's failure blocks no other.
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  type V1Job,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../api/nixbuild.ts';
import { GROUP as NI_GROUP, NODE_IMAGES_PLURAL, VERSION as NI_VERSION } from '../api/nodeimages.ts';
import { LABEL_BUILD } from '../build/job.ts';
import { apiMessage } from '../kube/errors.ts';
import { fencedKubeConfig } from '../kube/fenced.ts';
import { resilientInformer, type ResilientInformer } from '../kube/informer.ts';
import { slimNode } from '../kube/slim-node.ts';
import { podConcernsEnbi, slimPod } from '../kube/slim-pod.ts';
import { buildReconciler, type World } from './build-reconciler.ts';
import { type ControllerConfig, policyOf } from './config.ts';
import { jsonLogger, type Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import { planPass } from './plan-pass.ts';
import { sourceLoop } from './source-loop.ts';
import type { SourceState } from './source-state.ts';
import { workQueue } from './work-queue.ts';

export interface ControllerDeps {
  cfg: ControllerConfig;
  kc: KubeConfig;
  source: SourceState;
  metrics: Metrics;
  /** A structured logger, or a plain line sink (each line then a JSON object). */
  log: Logger | ((msg: string) => void);
  /** Liveness: pending work that has not moved for this long makes healthy() false. Default 5 min. */
  stallMs?: number;
  /**
   * Why this replica may not write now (the leader election's write window), checked before every write
   * the controller sends; absent: one replica, always allowed.
   */
  writeRefusal?: () => string | undefined;
}

export interface RunningController {
  /** Ask for a plan pass soon; `syncSource` also syncs the source at once (webhook). */
  trigger(syncSource?: boolean): void;
  /** True once the informers have listed once. */
  ready(): boolean;
  /** False when work is pending and nothing has moved for stallMs (liveness). */
  healthy(): boolean;
  stop(): Promise<void>;
  /** Resolves after the next complete plan pass and the builds' reconciles it queued (for tests and `--once`). */
  reconciled(): Promise<void>;
}

/** Pods the controller watches: bound ones (unbound pods wait for the scheduler, not for an image). */
/**
 * The pods that can trigger a build: bound and still Pending (a container waiting for its image keeps a new
 * pod Pending). Filtered by the API server, so a cluster's running pods never reach the controller's cache.
 * A running pod whose container restarts onto a vanished image stays Running and is not seen; its next
 * pod (a rollout, a reschedule) is.
 */
export const POD_FIELDS = 'spec.nodeName!=,status.phase=Pending';

export async function startController(d: ControllerDeps): Promise<RunningController> {
  const { cfg, kc } = d;
  const log: Logger = typeof d.log === 'function' ? jsonLogger(d.log) : d.log;
  // Every write goes through the fence; the informers only read.
  const refusal = d.writeRefusal;
  const writer =
    refusal === undefined
      ? kc
      : fencedKubeConfig(kc, () => {
          const why = refusal();
          if (why !== undefined) d.metrics.writesFenced++;
          return why;
        });
  const core = writer.makeApiClient(CoreV1Api);
  const batch = writer.makeApiClient(BatchV1Api);
  const custom = writer.makeApiClient(CustomObjectsApi);
  const ns = cfg.namespace;
  const policy = policyOf(cfg);
  const stallMs = d.stallMs ?? 300_000;
  let stopped = false;
  let isReady = false;

  // ---- the plan pass: one at a time; a change while it runs queues exactly one more ----
  let planTimer: NodeJS.Timeout | undefined;
  let planAgain: NodeJS.Timeout | undefined;
  let planning = false;
  let planPending = false;
  let pendingSince: number | undefined;
  let lastProgress = Date.now();
  let world: World | undefined;
  const passWaiters: (() => void)[] = [];
  const schedulePlan = (delayMs = 50) => {
    if (stopped) return;
    pendingSince ??= Date.now();
    if (planning) {
      planPending = true;
      return;
    }
    if (planTimer === undefined) planTimer = setTimeout(() => void runPlan(), delayMs);
  };
  const plan = planPass({ cfg, policy, core, custom, source: d.source, metrics: d.metrics, log });

  const informers: ResilientInformer<any>[] = [
    resilientInformer<V1Node>(kc, {
      path: '/api/v1/nodes',
      listPage: (page) => core.listNode(page),
      onChange: () => schedulePlan(),
      log: log.line,
      transform: slimNode,
    }),
    // Waiting pods only (POD_FIELDS). Pods without enbi annotations or labels are kept slim and change
    // nothing in the plan: no pass for them.
    resilientInformer<V1Pod>(kc, {
      path: '/api/v1/pods',
      listPage: (page) => core.listPodForAllNamespaces({ fieldSelector: POD_FIELDS, ...page }),
      onChange: (p) => podConcernsEnbi(p) && schedulePlan(),
      log: log.line,
      fieldSelector: POD_FIELDS,
      transform: slimPod,
    }),
    // The build Jobs' own pods, whatever their phase: their termination messages say what was built.
    resilientInformer<V1Pod>(kc, {
      path: `/api/v1/namespaces/${ns}/pods`,
      listPage: (page) => core.listNamespacedPod({ namespace: ns, labelSelector: LABEL_BUILD, ...page }),
      onChange: () => schedulePlan(),
      log: log.line,
      labelSelector: LABEL_BUILD,
      transform: slimPod,
    }),
    resilientInformer<V1Job>(kc, {
      path: `/apis/batch/v1/namespaces/${ns}/jobs`,
      listPage: (page) => batch.listNamespacedJob({ namespace: ns, labelSelector: LABEL_BUILD, ...page }),
      onChange: () => schedulePlan(),
      log: log.line,
      labelSelector: LABEL_BUILD,
    }),
    resilientInformer<NixBuild>(kc, {
      path: `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`,
      listPage: (page) =>
        custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
          ...page,
        }) as never,
      onChange: () => schedulePlan(),
      log: log.line,
    }),
    // The node agents' containerd inventories; without them Node.status.images stays the source for a node.
    resilientInformer<KubernetesObject>(kc, {
      path: `/apis/${NI_GROUP}/${NI_VERSION}/${NODE_IMAGES_PLURAL}`,
      listPage: (page) =>
        custom.listClusterCustomObject({
          group: NI_GROUP,
          version: NI_VERSION,
          plural: NODE_IMAGES_PLURAL,
          ...page,
        }) as never,
      onChange: () => schedulePlan(),
      log: log.line,
    }),
  ];
  const [nodeInf, podInf, jobPodInf, jobInf, nbInf, invInf] = informers as [
    ResilientInformer<V1Node>,
    ResilientInformer<V1Pod>,
    ResilientInformer<V1Pod>,
    ResilientInformer<V1Job>,
    ResilientInformer<NixBuild>,
    ResilientInformer<KubernetesObject>,
  ];
  /** Waiting pods and build pods, once each (a Pending build pod is in both). */
  const pods = (): V1Pod[] => {
    const out = new Map<string, V1Pod>();
    for (const p of [...podInf.list(), ...jobPodInf.list()])
      out.set(p.metadata?.uid ?? `${p.metadata?.namespace}/${p.metadata?.name}`, p);
    return [...out.values()];
  };

  // ---- the builds' work queue ----
  const reconcileBuild = buildReconciler({
    cfg,
    policy,
    core,
    batch,
    custom,
    metrics: d.metrics,
    log,
    latest: (name) => nbInf.get(name, ns),
  });
  const queue = workQueue(
    async (name) => {
      const w = world;
      const outcome = w !== undefined ? await reconcileBuild(name, w) : undefined;
      lastProgress = Date.now();
      return outcome;
    },
    (name, err, retryInMs) => {
      d.metrics.reconcileErrors++;
      log.error(`reconcile failed, retried in ${Math.round(retryInMs / 1000)} s: ${apiMessage(err)}`, {
        nixbuild: `${ns}/${name}`,
      });
    },
    { workers: 4, baseDelayMs: 1_000, maxDelayMs: 300_000 },
  );

  async function runPlan(): Promise<void> {
    planTimer = undefined;
    planning = true;
    const started = performance.now();
    const since = pendingSince;
    pendingSince = undefined;
    try {
      await source.awaitForced();
      const result = await plan({
        nodes: nodeInf.list(),
        pods: pods(),
        jobs: jobInf.list(),
        builds: nbInf.list(),
        inventories: invInf.list(),
      });
      world = result.world;
      for (const name of result.world.builds.keys()) queue.add(name);
      clearTimeout(planAgain);
      if (result.againAfterMs !== undefined) planAgain = setTimeout(() => schedulePlan(0), result.againAfterMs);
      lastProgress = Date.now();
    } catch (err) {
      d.metrics.reconcileErrors++;
      log.error(`plan pass failed (retried in 5 s): ${(err as Error).stack ?? String(err)}`);
      pendingSince ??= since;
      clearTimeout(planAgain);
      planAgain = setTimeout(() => schedulePlan(0), 5_000);
    } finally {
      d.metrics.reconciles++;
      d.metrics.lastReconcileSeconds = (performance.now() - started) / 1000;
      d.metrics.informerRestarts = informers.reduce((n, i) => n + i.restarts(), 0);
      d.metrics.workQueueDepth = queue.depth();
      planning = false;
      for (const w of passWaiters.splice(0)) w();
      if (planPending) {
        planPending = false;
        schedulePlan();
      }
    }
  }

  // ---- the source loop: its own timer, timeouts and backoff; a change plans again ----
  const source = sourceLoop({
    source: d.source,
    intervalMs: (cfg.source?.intervalSeconds ?? 60) * 1000,
    log: log.with({ source: cfg.source?.url ?? cfg.source?.dir ?? 'none' }),
    onChange: () => schedulePlan(0),
  });

  await Promise.all(informers.map((i) => i.start()));
  isReady = true;
  source.start();
  // The caches are kept by watches; a periodic pass catches what no event announces (time passing).
  const resync = setInterval(() => schedulePlan(), Math.max(30_000, (cfg.source?.intervalSeconds ?? 60) * 1000));

  return {
    trigger(syncSource = false) {
      if (syncSource) source.syncNow();
      schedulePlan();
    },
    ready: () => isReady,
    healthy() {
      const waitingSince = pendingSince ?? (queue.depth() > 0 ? lastProgress : undefined);
      return waitingSince === undefined || Date.now() - Math.max(waitingSince, lastProgress) < stallMs;
    },
    reconciled: () =>
      new Promise<void>((resolve) => {
        passWaiters.push(() => void queue.idle().then(resolve));
      }),
    async stop() {
      stopped = true;
      clearInterval(resync);
      clearTimeout(planTimer);
      clearTimeout(planAgain);
      source.stop();
      queue.stop();
      await Promise.all(informers.map((i) => i.stop()));
    },
  };
}

export type { ControllerConfig };
