// `enbi controller`: observe (Git source, Nodes, Pods, NixBuilds, Jobs) → plan (desired NixBuilds, each
// build's next state) → act (create NixBuilds and Jobs, write status once per build, only when it changed).
// One reconcile runs at a time; any change while it runs queues exactly one more.
import { BatchV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig, type KubernetesObject, PatchStrategy, setHeaderOptions, type V1Job, type V1Node, type V1Pod } from '@kubernetes/client-node';
import { GROUP, type NixBuild, type NixBuildStatus, PLURAL, VERSION } from '../api/nixbuild.ts';
import { buildJob, LABEL_BUILD } from '../build/job.ts';
import { GROUP as NI_GROUP, NODE_IMAGES_PLURAL, VERSION as NI_VERSION } from '../api/nodeimages.ts';
import { withInventory } from '../cluster/inventory.ts';
import { type NodeView, nodeViewOf } from '../cluster/node-view.ts';
import { canBuild, chooseBuilder } from '../plan/planner.ts';
import { resilientInformer, type ResilientInformer } from '../kube/informer.ts';
import { podConcernsEnbi, slimPod } from '../kube/slim-pod.ts';
import { type ControllerConfig, policyOf, socketFor } from './config.ts';
import { attemptOf, type BuildAction, type BuildEvent, nextState, statusChanged } from './build-state.ts';
import { activeBuildsByNode, ANNOTATION_WORKLOADS, desiredBuilds } from './desired.ts';
import { recordEvent, workloadTargets } from './events.ts';
import { pinnedNodeProblem, specProblem } from './spec-check.ts';
import type { Metrics } from './metrics.ts';
import type { SourceState } from './source-state.ts';

export interface ControllerDeps {
  cfg: ControllerConfig;
  kc: KubeConfig;
  source: SourceState;
  metrics: Metrics;
  log: (msg: string) => void;
}

export interface RunningController {
  /** Ask for a reconcile soon; `syncSource` also fetches Git at once (webhook). */
  trigger(syncSource?: boolean): void;
  /** Resolves when the informers have listed once. */
  ready(): boolean;
  stop(): Promise<void>;
  /** Resolves after the next complete reconcile (for tests and `--once`). */
  reconciled(): Promise<void>;
}

export async function startController(d: ControllerDeps): Promise<RunningController> {
  const { cfg, kc, log } = d;
  const core = kc.makeApiClient(CoreV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const ns = cfg.namespace;
  let forceSync = true;
  let running = false;
  let again = false;
  let stopped = false;
  let isReady = false;
  let timer: NodeJS.Timeout | undefined;
  const waiters: (() => void)[] = [];
  const requeues = new Map<string, NodeJS.Timeout>();
  // The last status written per NixBuild (by uid), until the informer shows it: a reconcile that runs
  // before the watch delivers our own write must not decide again from the older status.
  const written = new Map<string, NixBuildStatus>();
  let recheck: NodeJS.Timeout | undefined;
  let lastBlocked = '';
  let lastProblems = '';
  const policy = policyOf(cfg);
  // Refusals already told to each pod (uid → reason): one Event per pod and reason, not one per reconcile.
  const refusedTold = new Map<string, string>();

  const trigger = (syncSource = false) => {
    if (syncSource) forceSync = true;
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    if (timer === undefined) timer = setTimeout(() => void run(), 50);
  };
  const onChange = () => trigger();
  const informers: ResilientInformer<any>[] = [
    resilientInformer<V1Node>(kc, '/api/v1/nodes', (page) => core.listNode(page), onChange, log),
    // Only bound pods matter: waiting ones, and the build Jobs' own (for their termination messages).
    // Pods without enbi annotations or labels are kept slim and change nothing in the plan: no re-plan for them.
    // Listed in pages, each slimmed as it comes: a big cluster's pods are never all held as full objects.
    resilientInformer<V1Pod>(
      kc,
      '/api/v1/pods',
      (page) => core.listPodForAllNamespaces({ fieldSelector: POD_FIELDS, ...page }),
      (p) => podConcernsEnbi(p) && onChange(),
      log,
      undefined,
      POD_FIELDS,
      slimPod,
    ),
    resilientInformer<V1Job>(kc, `/apis/batch/v1/namespaces/${ns}/jobs`, (page) => batch.listNamespacedJob({ namespace: ns, labelSelector: LABEL_BUILD, ...page }), onChange, log, LABEL_BUILD),
    resilientInformer<NixBuild>(
      kc,
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`,
      (page) => custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, ...page }) as never,
      onChange,
      log,
    ),
    // The node agents' containerd inventories (complete, with platforms); without them (no CRD, no agent on a
    // node) Node.status.images stays the source for that node. Their observedAt-only resync writes re-plan too,
    // which is cheap and keeps an inventory going stale noticed.
    resilientInformer<KubernetesObject>(
      kc,
      `/apis/${NI_GROUP}/${NI_VERSION}/${NODE_IMAGES_PLURAL}`,
      (page) => custom.listClusterCustomObject({ group: NI_GROUP, version: NI_VERSION, plural: NODE_IMAGES_PLURAL, ...page }) as never,
      onChange,
      log,
    ),
  ];
  const [nodeInf, podInf, jobInf, nbInf, invInf] = informers as [ResilientInformer<V1Node>, ResilientInformer<V1Pod>, ResilientInformer<V1Job>, ResilientInformer<NixBuild>, ResilientInformer<KubernetesObject>];
  await Promise.all(informers.map((i) => i.start()));
  isReady = true;
  const interval = setInterval(() => trigger(), (cfg.source?.intervalSeconds ?? 60) * 1000);

  async function run(): Promise<void> {
    timer = undefined;
    running = true;
    const started = performance.now();
    try {
      await reconcile();
    } catch (err) {
      d.metrics.reconcileErrors++;
      log(`reconcile failed: ${(err as Error).stack ?? String(err)}`);
    } finally {
      d.metrics.reconciles++;
      d.metrics.lastReconcileSeconds = (performance.now() - started) / 1000;
      d.metrics.informerRestarts = informers.reduce((n, i) => n + i.restarts(), 0);
      running = false;
      for (const w of waiters.splice(0)) w();
      if (again) {
        again = false;
        trigger();
      }
    }
  }

  async function reconcile(): Promise<void> {
    const force = forceSync;
    forceSync = false;
    await d.source.refresh(force);
    const now = new Date();
    const rawNodes = nodeInf.list();
    const pool = Object.entries(cfg.builderNodeSelector);
    const inventories = new Map(invInf.list().map((o) => [o.metadata?.name ?? '', o]));
    const nodes = rawNodes.map((n) => {
      const plain = nodeViewOf(n, cfg.maxNodeImages);
      const inventory = inventories.get(plain.name);
      const view = inventory !== undefined ? withInventory(plain, inventory, { now }) : plain;
      if (pool.some(([k, v]) => view.labels[k] !== v)) view.builderAllowed = false;
      return view;
    });
    d.metrics.nodesWithAgentInventory = nodes.filter((n) => n.imageSource === 'agent').length;
    const builds = withWrittenStatus(nbInf.list());
    const analysis = d.source.current()?.analysis;
    const allPods = podInf.list();
    const pods = cfg.watchNamespaces.length === 0 ? allPods : allPods.filter((p) => cfg.watchNamespaces.includes(p.metadata?.namespace ?? ''));
    const desired = desiredBuilds({
      analysis,
      locks: analysis?.locks ?? new Map(),
      pods,
      nodes,
      existing: builds,
      mode: cfg.mode,
      defaultBuildMode: cfg.buildMode,
      builderTolerations: cfg.builderTolerations,
      namespace: ns,
      maxConcurrentBuildsPerNode: cfg.maxConcurrentBuildsPerNode,
      now,
      rebuildGraceSeconds: cfg.rebuildGraceSeconds,
      trustedNamespaces: cfg.trustedNamespaces,
      policy,
    });
    const problems = desired.problems.map((p) => `${p.object ?? ''} ${p.message}`).join('\n');
    if (problems !== lastProblems) {
      lastProblems = problems;
      if (problems !== '') log(`not planned:\n  ${problems.replaceAll('\n', '\n  ')}`);
    }
    await tellRefused(desired.refused, allPods);
    // What cannot start, said once per change rather than on every reconcile.
    const blocked = [...desired.unbuildable, ...desired.waiting.map((b) => `${b.id}: waits for a free build slot on ${b.node ?? '?'} (maxConcurrentBuildsPerNode)`)].join('\n');
    if (blocked !== lastBlocked) {
      lastBlocked = blocked;
      if (blocked !== '') log(`not started:\n  ${blocked.replaceAll('\n', '\n  ')}`);
    }
    if (desired.recheckAfterMs !== undefined) {
      clearTimeout(recheck);
      recheck = setTimeout(() => trigger(), desired.recheckAfterMs + 100);
    }
    const created: NixBuild[] = [];
    for (const nb of desired.create) {
      const node = desired.placement.get(nb.metadata.name);
      const body = await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: nb }).catch((err: unknown) => {
        if (statusCode(err) !== 409) throw err;
        return undefined;
      });
      if (body === undefined) continue;
      created.push(body as NixBuild);
      d.metrics.buildsCreated++;
      log(`created NixBuild ${nb.metadata.name}: ${nb.spec.flakeUrl}#${nb.spec.packageName} for ${nb.spec.system} on ${node ?? '?'} (${nb.metadata.annotations?.['enbi.hrzn.ee/workloads'] ?? ''})`);
      await recordEvent(core, { namespace: ns, kind: 'NixBuild', apiVersion: nb.apiVersion, name: nb.metadata.name }, 'Normal', 'BuildPlanned', `building ${nb.spec.images?.join(', ') ?? ''} for ${nb.spec.system} on ${node ?? '?'}`, log);
      // And on the workloads that need it, where their owners look (kubectl describe pod).
      for (const w of workloadTargets(nb.metadata.annotations?.[ANNOTATION_WORKLOADS])) {
        await recordEvent(core, w, 'Normal', 'BuildPlanned', `enbi builds ${nb.spec.images?.join(', ') ?? ''} for ${nb.spec.system} on ${node ?? '?'}: NixBuild ${ns}/${nb.metadata.name}`, log);
      }
    }
    const nodeByName = new Map(rawNodes.map((n) => [n.metadata?.name ?? '', n]));
    const viewByName = new Map(nodes.map((n) => [n.name, n]));
    // Builds by label and build pods by Job, once: a reconcile touches every build.
    const jobsByBuild = new Map<string, V1Job[]>();
    for (const j of jobInf.list()) {
      const b = j.metadata?.labels?.[LABEL_BUILD];
      if (b !== undefined) jobsByBuild.set(b, [...(jobsByBuild.get(b) ?? []), j]);
    }
    const podsByJob = new Map<string, V1Pod[]>();
    for (const p of allPods) {
      const job = p.metadata?.namespace === ns ? p.metadata.labels?.['job-name'] : undefined;
      if (job !== undefined) podsByJob.set(job, [...(podsByJob.get(job) ?? []), p]);
    }
    // Where builds without a node go, and moved ones: the planner's builder choice with the current load.
    const load = activeBuildsByNode([...builds, ...created]);
    for (const b of created) {
      const node = desired.placement.get(b.metadata.name);
      if (node !== undefined) load.set(node, (load.get(node) ?? 0) + 1);
    }
    const ableBySystem = new Map<string, NodeView[]>();
    const candidate = (system: string) => {
      let able = ableBySystem.get(system);
      if (able === undefined) ableBySystem.set(system, (able = nodes.filter((n) => canBuild(n, system, cfg.builderTolerations))));
      const choice = chooseBuilder(able, system, load, cfg.maxConcurrentBuildsPerNode);
      if (choice === undefined) return undefined;
      load.set(choice.node.name, (load.get(choice.node.name) ?? 0) + 1);
      return choice.node.name;
    };
    for (const nb of [...builds, ...created]) {
      const placed = desired.placement.get(nb.metadata.name);
      const pick = placed !== undefined && nb.status?.node === undefined ? () => placed : () => candidate(nb.spec.system);
      await reconcileBuild(nb, { jobsByBuild, podsByJob, rawNodes: nodeByName, views: viewByName, now, candidate: pick, rebuild: desired.rebuild.get(nb.metadata.name), notAdopted: desired.notAdopted });
    }
    const live = new Set(builds.map((b) => b.metadata.uid));
    for (const uid of written.keys()) if (!live.has(uid)) written.delete(uid);
  }

  /** The informer's NixBuilds, with the status this controller wrote last where the watch has not caught up. */
  function withWrittenStatus(list: readonly NixBuild[]): NixBuild[] {
    return list.map((nb) => {
      const mine = nb.metadata.uid !== undefined ? written.get(nb.metadata.uid) : undefined;
      if (mine === undefined) return nb;
      if (!statusChanged(nb.status, mine)) {
        written.delete(nb.metadata.uid!);
        return nb;
      }
      return { ...nb, status: mine };
    });
  }

  interface BuildContext {
    jobsByBuild: Map<string, V1Job[]>;
    podsByJob: Map<string, V1Pod[]>;
    rawNodes: Map<string, V1Node>;
    views: Map<string, NodeView>;
    now: Date;
    candidate: () => string | undefined;
    rebuild: string | undefined;
    notAdopted: ReadonlyMap<string, string>;
  }

  /** A Warning Event on each waiting pod enbi builds nothing for, once per pod and reason. */
  async function tellRefused(refused: readonly { namespace: string; name: string; uid?: string; container: string; reason: string }[], pods: readonly V1Pod[]): Promise<void> {
    const live = new Set(pods.map((p) => p.metadata?.uid));
    for (const uid of refusedTold.keys()) if (!live.has(uid)) refusedTold.delete(uid);
    for (const r of refused) {
      const id = r.uid ?? `${r.namespace}/${r.name}`;
      const message = `enbi builds nothing for container ${r.container}: ${r.reason}`;
      if (refusedTold.get(id) === message) continue;
      refusedTold.set(id, message);
      log(`pod ${r.namespace}/${r.name}: ${message}`);
      d.metrics.podsRefused++;
      await recordEvent(core, { namespace: r.namespace, kind: 'Pod', apiVersion: 'v1', name: r.name, ...(r.uid !== undefined ? { uid: r.uid } : {}) }, 'Warning', 'BuildRefused', message, log);
    }
  }

  async function reconcileBuild(nb: NixBuild, x: BuildContext): Promise<void> {
    const name = nb.metadata.name;
    const jobs = x.jobsByBuild.get(name) ?? [];
    const latestJob = [...jobs].sort((a, b) => attemptOf(b) - attemptOf(a))[0]?.metadata?.name;
    const pods = latestJob !== undefined ? (x.podsByJob.get(latestJob) ?? []) : [];
    const base = {
      nb,
      jobs,
      pods,
      nodes: x.views,
      candidate: x.candidate,
      now: x.now,
      maxAttempts: nb.spec.maxAttempts ?? cfg.maxAttempts,
      retryBaseSeconds: cfg.retryBaseSeconds,
      nodeLostSeconds: cfg.nodeLostSeconds,
      maxRebuilds: cfg.maxRebuilds,
      ...(x.rebuild !== undefined ? { rebuild: x.rebuild } : {}),
      ...optional('invalid', specProblem(nb, policy)),
      ...optional('notAdopted', x.notAdopted.get(name)),
      ...optional('pinUnable', pinnedNodeProblem(nb, x.views, cfg.builderTolerations)),
    };
    let { status, action, event } = nextState(base);
    if (action.kind === 'read-log') {
      const failedLog = await readLogTail(action.pod);
      ({ status, action, event } = nextState({ ...base, failedLog }));
    }
    await act(nb, action, x.rawNodes);
    const target = { namespace: ns, kind: 'NixBuild', apiVersion: nb.apiVersion, name, ...(nb.metadata.uid !== undefined ? { uid: nb.metadata.uid } : {}) };
    if (event !== undefined) await emit(target, event);
    if (statusChanged(nb.status, status)) {
      await custom.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name, body: { status } },
        mergePatch(),
      );
      if (nb.metadata.uid !== undefined) written.set(nb.metadata.uid, status);
      const stalled = (st: NixBuildStatus | undefined) => st?.conditions?.some((c) => c.type === 'Stalled' && c.status === 'True') === true;
      // An Event on each phase change, and when a build stalls without one (Succeeded, image missing again).
      if (status.phase !== nb.status?.phase || (stalled(status) && !stalled(nb.status))) {
        const ready = status.conditions?.find((c) => c.type === 'Ready');
        const type = status.phase === 'Failed' || stalled(status) ? 'Warning' : 'Normal';
        await recordEvent(core, target, type, ready?.reason ?? status.phase ?? '', ready?.message ?? '', log);
        log(`NixBuild ${name}: ${nb.status?.phase ?? '-'} → ${status.phase}: ${ready?.message ?? ''}`);
        // The end of a build, on the workloads it was for.
        if (status.phase === 'Succeeded' || status.phase === 'Failed') {
          for (const w of workloadTargets(nb.metadata.annotations?.[ANNOTATION_WORKLOADS])) {
            await recordEvent(core, w, type, ready?.reason ?? status.phase, `NixBuild ${ns}/${name}: ${ready?.message ?? status.phase}`, log);
          }
        }
        if (status.phase === 'Failed') d.metrics.buildsFailed++;
        if (status.phase === 'Succeeded') d.metrics.buildsSucceeded++;
      }
    }
  }

  async function emit(target: { namespace: string; kind: string; apiVersion: string; name: string }, e: BuildEvent): Promise<void> {
    log(`NixBuild ${target.name}: ${e.reason}: ${e.message}`);
    await recordEvent(core, target, e.type, e.reason, e.message, log);
  }

  async function act(nb: NixBuild, action: BuildAction, rawNodes: Map<string, V1Node>): Promise<void> {
    const name = nb.metadata.name;
    if (action.kind === 'requeue') {
      clearTimeout(requeues.get(name));
      requeues.set(name, setTimeout(() => trigger(), Math.max(100, action.afterMs)));
    }
    if (action.kind !== 'create-job') return;
    const node = action.node;
    if (action.abandon !== undefined) {
      // The Job left on a lost node: its pod must not come back to life if the node does.
      await batch.deleteNamespacedJob({ name: action.abandon, namespace: ns, propagationPolicy: 'Background' }).catch((err: unknown) => {
        if (statusCode(err) !== 404) throw err;
      });
    }
    const raw = rawNodes.get(node);
    const job = buildJob(nb, node, action.attempt, {
      namespace: ns,
      builderImage: cfg.builderImage,
      importerImage: cfg.importerImage,
      ...(cfg.importerCommand !== undefined ? { importerCommand: cfg.importerCommand } : {}),
      cacheHostPath: cfg.cache.hostPath,
      containerdSocket: socketFor({ annotations: raw?.metadata?.annotations ?? {}, kubeletVersion: raw?.status?.nodeInfo?.kubeletVersion ?? '' }, cfg.containerdSocket),
      builderTolerations: cfg.builderTolerations,
      nixOptions: cfg.nixOptions,
      ...(cfg.nixSecretName !== undefined ? { nixSecretName: cfg.nixSecretName } : {}),
      allowedImages: policy.images,
      activeDeadlineSeconds: cfg.buildTimeoutSeconds,
    });
    await batch.createNamespacedJob({ namespace: ns, body: job }).catch((err: unknown) => {
      if (statusCode(err) !== 409) throw err;
    });
    log(`NixBuild ${name}: started Job ${job.metadata?.name} on ${node}`);
  }

  async function readLogTail(pod: string): Promise<string> {
    const parts: string[] = [];
    for (const container of ['build', 'import']) {
      const text = await core.readNamespacedPodLog({ name: pod, namespace: ns, container, tailLines: 25 }).catch(() => '');
      if (text.trim() !== '') parts.push(`[${container}]\n${text.trimEnd()}`);
    }
    return parts.join('\n').slice(-4000);
  }

  return {
    trigger,
    ready: () => isReady,
    reconciled: () => new Promise<void>((resolve) => waiters.push(resolve)),
    async stop() {
      stopped = true;
      clearInterval(interval);
      clearTimeout(timer);
      clearTimeout(recheck);
      for (const t of requeues.values()) clearTimeout(t);
      await Promise.all(informers.map((i) => i.stop()));
    },
  };
}

/** Pods the controller watches: bound ones (unbound pods wait for the scheduler, not for an image). */
export const POD_FIELDS = 'spec.nodeName!=';

function statusCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

/** client-node sends JSON Patch by default; a status write is a merge patch. */
function mergePatch() {
  return setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
}

const optional = <K extends string>(key: K, value: string | undefined): { [k in K]?: string } => (value !== undefined ? ({ [key]: value } as { [k in K]: string }) : {});
