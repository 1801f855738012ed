// One NixBuild's reconcile, run by the work queue for that build alone: read what the last plan pass gathered
// (the World), decide with the pure state machine, act (a Job), then write status once, at the end, only when
// it changed, with the Events that follow from it. An error here fails this build's reconcile only: the queue
// retries it with its own backoff while every other build goes on.
import { within } from '../async/within.ts';
import {
  type BatchV1Api,
  type CoreV1Api,
  type CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type V1Job,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import { GROUP, type NixBuild, type NixBuildStatus, PLURAL, VERSION } from '../api/nixbuild.ts';
import { buildJob } from '../build/job.ts';
import { isControllerName } from '../build/naming.ts';
import type { NodeView } from '../cluster/node-view.ts';
import { redactFlakeUrl } from '../flake/ref.ts';
import { apiMessage, isConflict, isNotFound } from '../kube/errors.ts';
import { CONTROLLER_FIELD_MANAGER } from '../kube/field-manager.ts';
import type { BuildPolicy } from '../plan/allow.ts';
import { type ImageClaims, nixBuildClaimProblem } from '../plan/claims.ts';
import { attemptOf, type BuildAction, nextState, statusChanged } from './build-state.ts';
import { socketFor } from '../cluster/socket.ts';
import type { ControllerConfig } from './config.ts';
import { ANNOTATION_WORKLOADS } from './desired.ts';
import { recordEvent, workloadTargets } from './events.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import { pinnedNodeProblem, specProblem } from './spec-check.ts';
import type { Outcome } from './work-queue.ts';

/** What the last plan pass saw and decided, for the builds' reconciles. */
export interface World {
  now: Date;
  builds: ReadonlyMap<string, NixBuild>;
  jobsByBuild: ReadonlyMap<string, V1Job[]>;
  podsByJob: ReadonlyMap<string, V1Pod[]>;
  rawNodes: ReadonlyMap<string, V1Node>;
  views: ReadonlyMap<string, NodeView>;
  /** The node chosen for each build created by that pass. */
  placement: ReadonlyMap<string, string>;
  rebuild: ReadonlyMap<string, string>;
  /** The completionTime each rebuild verdict was made about. */
  rebuildOf: ReadonlyMap<string, string>;
  notAdopted: ReadonlyMap<string, string>;
  /** Every build the plan wants now: a NixBuild under a controller name outside it does not start. */
  planned: ReadonlySet<string>;
  /** The image names Git declares, with the flake each is declared with: no other flake builds under them. */
  claims: ImageClaims;
  /** A Git source is configured and not read yet (its claims unknown): why builds not started wait. */
  sourcePending?: string;
  /** Why each build created by that pass was placed where it is (the planner's reason). */
  placedWhy: ReadonlyMap<string, string>;
  /** Where a build without a node (or a moved one) goes now, and why; counts it against that node's slots. */
  candidate(build: { system: string; flakeUrl: string }): { node: string; reason: string } | undefined;
}

export interface BuildReconcilerDeps {
  cfg: ControllerConfig;
  policy: BuildPolicy;
  core: CoreV1Api;
  batch: BatchV1Api;
  custom: CustomObjectsApi;
  metrics: Metrics;
  log: Logger;
  /** The newest copy of a NixBuild the informer holds (the World's is as old as the last plan pass). */
  latest(name: string): NixBuild | undefined;
}

export function buildReconciler(d: BuildReconcilerDeps): (name: string, world: World) => Promise<Outcome> {
  const { cfg, core, batch, custom } = d;
  const ns = cfg.namespace;

  return async function reconcileBuild(name, world): Promise<Outcome> {
    // The informer's copy is the newest this process has; one the plan pass just created may not be there
    // yet. A copy older than the object (our own last write not seen yet, another writer's) fails the
    // status write below, guarded by the resourceVersion decided from, and is reconciled again.
    const nb = d.latest(name) ?? world.builds.get(name);
    if (nb === undefined || !world.builds.has(name)) return undefined;
    // A rebuild verdict holds for the completion it was made about: once the build has completed again (the
    // rebuild it asked for has run), or is running, it waits for a new verdict from the next plan pass.
    const rebuild =
      nb.status?.phase === 'Succeeded' && nb.status.completionTime === world.rebuildOf.get(name)
        ? world.rebuild.get(name)
        : undefined;
    const log = d.log.with({ nixbuild: `${ns}/${name}` });
    const jobs = world.jobsByBuild.get(name) ?? [];
    const latestJob = [...jobs].sort((a, b) => attemptOf(b) - attemptOf(a))[0]?.metadata?.name;
    const pods = latestJob !== undefined ? (world.podsByJob.get(latestJob) ?? []) : [];
    const placed = world.placement.get(name);
    // The placement the state machine takes, kept with its reason for status.placement.
    let chosen: { node: string; reason?: string } | undefined;
    const candidate = () => {
      chosen =
        placed !== undefined && nb.status?.node === undefined
          ? { node: placed, ...optional('reason', world.placedWhy.get(name)) }
          : world.candidate(nb.spec);
      return chosen?.node;
    };
    const base = {
      nb,
      jobs,
      pods,
      nodes: world.views,
      candidate,
      // The time of this reconcile, not of the plan pass that made the world: a requeued reconcile (a retry's
      // backoff, a recheck) runs on the same world until the next pass, and must see its wait run out.
      now: new Date(),
      maxAttempts: nb.spec.maxAttempts ?? cfg.maxAttempts,
      retryBaseSeconds: cfg.retryBaseSeconds,
      nodeLostSeconds: cfg.nodeLostSeconds,
      maxRebuilds: cfg.maxRebuilds,
      ...optional('rebuild', rebuild),
      ...optional('invalid', specProblem(nb, d.policy)),
      ...optional('notAdopted', world.notAdopted.get(name)),
      ...optional(
        'notPlanned',
        isControllerName(name) && !world.planned.has(name)
          ? `${name} is a name enbi gives the builds it plans, and no workload of the source needs this one now: it starts when one does, if its spec is the one enbi would write (hand-written builds take another name)`
          : undefined,
      ),
      ...optional('pinUnable', pinnedNodeProblem(nb, world.views, cfg.builderTolerations)),
      // The claim message names the NixBuild's flake: shown without credentials (refused as InvalidSpec anyway).
      ...optional(
        'claimed',
        nixBuildClaimProblem(`${ns}/${name}`, { ...nb.spec, flakeUrl: redactFlakeUrl(nb.spec.flakeUrl) }, world.claims),
      ),
      ...optional('sourcePending', world.sourcePending),
    };
    let { status, action, event } = nextState(base);
    if (action.kind === 'read-log') {
      const failedLog = await readLogTail(action.pod);
      ({ status, action, event } = nextState({ ...base, failedLog }));
    }
    if (chosen?.reason !== undefined && status.node === chosen.node) status.placement = chosen.reason;
    // Starting a Job is the one act that matters if decided from an old copy (a stale reconcile would start
    // the attempt a newer status has moved past): it is done only from the object's current version, read
    // here (rare: once per attempt). The status write below is guarded the same way.
    if (action.kind === 'create-job' && !(await isCurrent(nb))) return staleCopy(log);
    await act(nb, action, world.rawNodes, log);
    const target = {
      namespace: ns,
      kind: 'NixBuild',
      apiVersion: nb.apiVersion,
      name,
      ...(nb.metadata.uid !== undefined ? { uid: nb.metadata.uid } : {}),
    };
    if (statusChanged(nb.status, status)) {
      // A merge patch keeps keys it does not name: the ones this status dropped (completionTime when a build
      // starts again, logExcerpt) are sent as null, which deletes them. The resourceVersion makes it a
      // compare-and-swap: a status decided from a copy that is no longer the object's is refused (409), and
      // the build is reconciled again from the newer copy. Acts before it are idempotent (a Job's name is
      // its build's and attempt's), so deciding twice starts nothing twice.
      const dropped = Object.fromEntries(
        Object.keys(nb.status ?? {})
          .filter((k) => !(k in status))
          .map((k) => [k, null]),
      );
      try {
        await custom.patchNamespacedCustomObjectStatus(
          {
            group: GROUP,
            version: VERSION,
            namespace: ns,
            plural: PLURAL,
            name,
            body: {
              metadata: { resourceVersion: nb.metadata.resourceVersion },
              status: { ...status, ...dropped },
            },
            fieldManager: CONTROLLER_FIELD_MANAGER,
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
      } catch (err) {
        if (!isConflict(err)) throw err;
        return staleCopy(log);
      }
      await tellPhase(nb, status, target, log);
    }
    // Events follow the write that made them true: a decision refused above tells nothing.
    if (event !== undefined) {
      log.info(`${event.reason}: ${event.message}`);
      await recordEvent(core, target, event.type, event.reason, event.message, log.line);
    }
    return action.kind === 'requeue' ? { requeueAfterMs: Math.max(100, action.afterMs) } : undefined;
  };

  /** Whether `nb` is the object's current version (a build deleted meanwhile is not). */
  async function isCurrent(nb: NixBuild): Promise<boolean> {
    try {
      const now = (await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        name: nb.metadata.name,
      })) as NixBuild;
      return now.metadata.resourceVersion === nb.metadata.resourceVersion;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** A decision made from a copy that is no longer the object's: dropped, and made again from the newer one. */
  function staleCopy(log: Logger): Outcome {
    d.metrics.statusConflicts++;
    log.info('the NixBuild changed since this decision was made: reconciled again from its newer copy');
    return { requeueAfterMs: CONFLICT_REQUEUE_MS };
  }

  /** An Event on each phase change, and when a build stalls without one; the end of a build on its workloads. */
  async function tellPhase(
    nb: NixBuild,
    status: NixBuildStatus,
    target: { namespace: string; kind: string; apiVersion: string; name: string },
    log: Logger,
  ): Promise<void> {
    const stalled = (st: NixBuildStatus | undefined) =>
      st?.conditions?.some((c) => c.type === 'Stalled' && c.status === 'True') === true;
    if (status.phase === nb.status?.phase && !(stalled(status) && !stalled(nb.status))) return;
    const ready = status.conditions?.find((c) => c.type === 'Ready');
    const type = status.phase === 'Failed' || stalled(status) ? 'Warning' : 'Normal';
    await recordEvent(core, target, type, ready?.reason ?? status.phase ?? '', ready?.message ?? '', log.line);
    (type === 'Warning' ? log.warn : log.info)(
      `${nb.status?.phase ?? '-'} → ${status.phase}: ${ready?.message ?? ''}`,
      { reason: ready?.reason },
    );
    if (status.phase === 'Succeeded' || status.phase === 'Failed') {
      for (const w of workloadTargets(nb.metadata.annotations?.[ANNOTATION_WORKLOADS])) {
        await recordEvent(
          core,
          w,
          type,
          ready?.reason ?? status.phase,
          `NixBuild ${ns}/${nb.metadata.name}: ${ready?.message ?? status.phase}`,
          log.line,
        );
      }
    }
    if (status.phase === 'Failed') d.metrics.buildsFailed++;
    if (status.phase === 'Succeeded') d.metrics.buildsSucceeded++;
  }

  async function act(
    nb: NixBuild,
    action: BuildAction,
    rawNodes: ReadonlyMap<string, V1Node>,
    log: Logger,
  ): Promise<void> {
    if (action.kind !== 'create-job') return;
    const node = action.node;
    if (action.abandon !== undefined) {
      // The Job left on a lost node: its pod must not come back to life if the node does.
      await batch
        .deleteNamespacedJob({ name: action.abandon, namespace: ns, propagationPolicy: 'Background' })
        .catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
    }
    const raw = rawNodes.get(node);
    const job = buildJob(nb, node, action.attempt, {
      namespace: ns,
      builderImage: cfg.builderImage,
      importerImage: cfg.importerImage,
      ...(cfg.importerCommand !== undefined ? { importerCommand: cfg.importerCommand } : {}),
      cacheHostPath: cfg.cache.hostPath,
      containerdSocket: socketFor(
        { annotations: raw?.metadata?.annotations ?? {}, kubeletVersion: raw?.status?.nodeInfo?.kubeletVersion ?? '' },
        cfg.containerdSocket,
      ),
      builderTolerations: cfg.builderTolerations,
      nixOptions: cfg.nixOptions,
      ...(cfg.nixSecretName !== undefined ? { nixSecretName: cfg.nixSecretName } : {}),
      allowedImages: d.policy.images,
      activeDeadlineSeconds: cfg.buildTimeoutSeconds,
    });
    await batch
      .createNamespacedJob({ namespace: ns, body: job, fieldManager: CONTROLLER_FIELD_MANAGER })
      .catch((err: unknown) => {
        if (!isConflict(err)) throw new Error(`creating Job ${job.metadata?.name}: ${apiMessage(err)}`);
      });
    log.info(`started Job ${job.metadata?.name} on ${node}`, { job: job.metadata?.name, node });
  }

  /**
   * The end of a failed attempt's logs, both containers at once, each bounded: kubelet serves logs through
   * its container runtime, and right after a containerd restart a read can hang for kubelet's whole runtime
   * timeout (2 min each, seen in the containerd-restart fault test), which would hold the retry back.
   */
  async function readLogTail(pod: string): Promise<string> {
    const texts = await Promise.all(
      ['build', 'import'].map(async (container) => {
        const read = core.readNamespacedPodLog({ name: pod, namespace: ns, container, tailLines: 25 }).catch(() => '');
        const text = await within(read, LOG_READ_MS, '');
        return text.trim() !== '' ? `[${container}]\n${text.trimEnd()}` : '';
      }),
    );
    return texts
      .filter((t) => t !== '')
      .join('\n')
      .slice(-4000);
  }
}

const LOG_READ_MS = 10_000;

/** After a refused status write, the informer shows the newer copy within moments. */
const CONFLICT_REQUEUE_MS = 250;

const optional = <K extends string>(key: K, value: string | undefined): { [k in K]?: string } =>
  value !== undefined ? ({ [key]: value } as { [k in K]: string }) : {};
