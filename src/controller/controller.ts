// `enbi controller`: observe (Git source, Nodes, Pods, NixBuilds, Jobs) → plan (desired NixBuilds, each
// build's next state) → act (create NixBuilds and Jobs, write status once per build, only when it changed).
// One reconcile runs at a time; any change while it runs queues exactly one more.
import { BatchV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions, type V1Job, type V1Node, type V1Pod } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../api/nixbuild.ts';
import { buildJob, LABEL_BUILD } from '../build/job.ts';
import { type NodeView, nodeViewOf } from '../cluster/node-view.ts';
import { resilientInformer, type ResilientInformer } from '../kube/informer.ts';
import { type ControllerConfig, socketFor } from './config.ts';
import { type BuildAction, nextState, statusChanged } from './build-state.ts';
import { desiredBuilds, LABEL_MANAGED_BY } from './desired.ts';
import { recordEvent } from './events.ts';
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
    resilientInformer<V1Node>(kc, '/api/v1/nodes', () => core.listNode(), onChange, log),
    resilientInformer<V1Pod>(kc, '/api/v1/pods', () => core.listPodForAllNamespaces(), onChange, log),
    resilientInformer<V1Job>(kc, `/apis/batch/v1/namespaces/${ns}/jobs`, () => batch.listNamespacedJob({ namespace: ns, labelSelector: LABEL_BUILD }), onChange, log, LABEL_BUILD),
    resilientInformer<NixBuild>(
      kc,
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`,
      () => custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL }) as never,
      onChange,
      log,
    ),
  ];
  const [nodeInf, podInf, jobInf, nbInf] = informers as [ResilientInformer<V1Node>, ResilientInformer<V1Pod>, ResilientInformer<V1Job>, ResilientInformer<NixBuild>];
  await Promise.all(informers.map((i) => i.start()));
  isReady = true;
  const interval = setInterval(() => trigger(), cfg.source.intervalSeconds * 1000);

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
    const rawNodes = nodeInf.list();
    const nodes = rawNodes.map((n) => nodeViewOf(n, cfg.maxNodeImages));
    const builds = nbInf.list();
    const analysis = d.source.current()?.analysis;
    const pods = cfg.watchNamespaces.length === 0 ? podInf.list() : podInf.list().filter((p) => cfg.watchNamespaces.includes(p.metadata?.namespace ?? ''));
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
    });
    for (const p of desired.problems) log(`pod problem: ${p.object ?? ''} ${p.message}`);
    for (const nb of desired.create) {
      await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: nb }).catch((err: unknown) => {
        if (statusCode(err) !== 409) throw err;
      });
      d.metrics.buildsCreated++;
      log(`created NixBuild ${nb.metadata.name}: ${nb.spec.flakeUrl}#${nb.spec.packageName} for ${nb.spec.system} on ${nb.spec.node ?? '?'} (${nb.metadata.annotations?.['enbi.hrzn.ee/workloads'] ?? ''})`);
      await recordEvent(core, { namespace: ns, kind: 'NixBuild', apiVersion: nb.apiVersion, name: nb.metadata.name }, 'Normal', 'BuildPlanned', `building ${nb.spec.images?.join(', ') ?? ''} for ${nb.spec.system} on ${nb.spec.node ?? '?'}`, log);
    }
    const nodeByName = new Map(rawNodes.map((n) => [n.metadata?.name ?? '', n]));
    const viewByName = new Map(nodes.map((n) => [n.name, n]));
    for (const nb of [...builds, ...desired.create]) await reconcileBuild(nb, nodeByName, viewByName);
  }

  async function reconcileBuild(nb: NixBuild, rawNodes: Map<string, V1Node>, views: Map<string, NodeView>): Promise<void> {
    const name = nb.metadata.name;
    const jobs = jobInf.list().filter((j) => j.metadata?.labels?.[LABEL_BUILD] === name);
    const latestJob = jobs.map((j) => j.metadata?.name ?? '').sort().pop();
    const pods = podInf.list().filter((p) => p.metadata?.namespace === ns && p.metadata?.labels?.['job-name'] === latestJob);
    const node = nb.spec.node ?? nb.status?.node ?? pickBuilder(nb.spec.system, views);
    const base = { nb, jobs, pods, node, now: new Date(), maxAttempts: nb.spec.maxAttempts ?? cfg.maxAttempts, retryBaseSeconds: cfg.retryBaseSeconds };
    let { status, action } = nextState(base);
    if (action.kind === 'read-log') {
      const failedLog = await readLogTail(action.pod);
      ({ status, action } = nextState({ ...base, failedLog }));
    }
    await act(nb, action, node, rawNodes, views);
    if (statusChanged(nb.status, status)) {
      await custom.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name, body: { status } },
        mergePatch(),
      );
      if (status.phase !== nb.status?.phase) {
        const ready = status.conditions?.find((c) => c.type === 'Ready');
        const type = status.phase === 'Failed' ? 'Warning' : 'Normal';
        await recordEvent(core, { namespace: ns, kind: 'NixBuild', apiVersion: nb.apiVersion, name }, type, ready?.reason ?? status.phase ?? '', ready?.message ?? '', log);
        log(`NixBuild ${name}: ${nb.status?.phase ?? '-'} → ${status.phase}: ${ready?.message ?? ''}`);
        if (status.phase === 'Failed') d.metrics.buildsFailed++;
        if (status.phase === 'Succeeded') d.metrics.buildsSucceeded++;
      }
    }
  }

  async function act(nb: NixBuild, action: BuildAction, node: string | undefined, rawNodes: Map<string, V1Node>, views: Map<string, NodeView>): Promise<void> {
    const name = nb.metadata.name;
    if (action.kind === 'requeue') {
      clearTimeout(requeues.get(name));
      requeues.set(name, setTimeout(() => trigger(), Math.max(100, action.afterMs)));
    }
    if (action.kind !== 'create-job' || node === undefined) return;
    const raw = rawNodes.get(node);
    const job = buildJob(nb, node, views.get(node)?.system, action.attempt, {
      namespace: ns,
      builderImage: cfg.builderImage,
      importerImage: cfg.importerImage,
      cacheHostPath: cfg.cache.hostPath,
      containerdSocket: socketFor({ annotations: raw?.metadata?.annotations ?? {}, kubeletVersion: raw?.status?.nodeInfo?.kubeletVersion ?? '' }, cfg.containerdSocket),
      builderTolerations: cfg.builderTolerations,
      nixOptions: cfg.nixOptions,
      activeDeadlineSeconds: cfg.buildTimeoutSeconds,
    });
    await batch.createNamespacedJob({ namespace: ns, body: job }).catch((err: unknown) => {
      if (statusCode(err) !== 409) throw err;
    });
    log(`NixBuild ${name}: started Job ${job.metadata?.name} on ${node}`);
  }

  function pickBuilder(system: string, views: Map<string, NodeView>): string | undefined {
    const able = [...views.values()].filter((n) => n.ready && !n.unschedulable && n.builderAllowed && n.buildSystems.includes(system));
    able.sort((a, b) => Number(a.system !== system) - Number(b.system !== system) || (a.name < b.name ? -1 : 1));
    return able[0]?.name;
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
      for (const t of requeues.values()) clearTimeout(t);
      await Promise.all(informers.map((i) => i.stop()));
    },
  };
}

function statusCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

/** client-node sends JSON Patch by default; a status write is a merge patch. */
function mergePatch() {
  return setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
}
