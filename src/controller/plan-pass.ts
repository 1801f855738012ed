// The controller's plan pass: gather (the informers' caches and the source's analysis), plan (desiredBuilds,
// pure), then the only cluster-wide writes: the NixBuilds to create and the Events on refused pods. Each
// write is handled on its own: one refused creation is logged and retried later, the rest go on. The result
// is the World the builds' reconciles read.
import {
  type CoreV1Api,
  type CustomObjectsApi,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
  type V1Job,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import { GROUP, type NixBuild, type NixBuildStatus, PLURAL, VERSION } from '../api/nixbuild.ts';
import { LABEL_BUILD } from '../build/job.ts';
import { withInventory } from '../cluster/inventory.ts';
import { type NodeView, nodeViewOf } from '../cluster/node-view.ts';
import type { BuildPolicy } from '../plan/allow.ts';
import { gitClaims, type ImageClaims, needKey } from '../plan/claims.ts';
import { gcDecision, type UnknownRoot } from '../plan/gc.ts';
import type { RefusedPod } from '../plan/on-demand.ts';
import { canBuild, chooseBuilder } from '../plan/planner.ts';
import { warmFor, warmIndex, type WarmIndex } from '../plan/warmth.ts';
import { apiMessage, isConflict, isNotFound } from '../kube/errors.ts';
import { CONTROLLER_FIELD_MANAGER } from '../kube/field-manager.ts';
import type { World } from './build-reconciler.ts';
import type { ControllerConfig } from './config.ts';
import {
  activeBuildsByNode,
  ANNOTATION_UNREFERENCED,
  ANNOTATION_WORKLOADS,
  buildKey,
  type Desired,
  desiredBuilds,
  LABEL_MANAGED_BY,
} from './desired.ts';
import { recordEvent, workloadTargets } from './events.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { SourceSnapshot, SourceState } from './source-state.ts';

export interface Observed {
  nodes: readonly V1Node[];
  pods: readonly V1Pod[];
  jobs: readonly V1Job[];
  builds: readonly NixBuild[];
  inventories: readonly KubernetesObject[];
}

export interface PlanPassDeps {
  cfg: ControllerConfig;
  policy: BuildPolicy;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  source: SourceState;
  metrics: Metrics;
  log: Logger;
}

export interface PlanPassResult {
  world: World;
  /** Plan again after this long: a rebuild's grace period ends, or a creation failed. */
  againAfterMs?: number;
}

export function planPass(d: PlanPassDeps): (observed: Observed) => Promise<PlanPassResult> {
  const { cfg } = d;
  const ns = cfg.namespace;
  const said = { problems: '', blocked: '', gc: '' };
  // Refusals already told to each pod (uid → message): one Event per pod and reason, not one per pass.
  const refusedTold = new Map<string, string>();

  return async function run(o: Observed): Promise<PlanPassResult> {
    const now = new Date();
    const nodes = nodeViews(o, cfg, now);
    d.metrics.nodesWithAgentInventory = nodes.filter((n) => n.imageSource === 'agent').length;
    const builds = o.builds;
    const analysis = d.source.current()?.analysis;
    // A Git source not read yet: whose image names are whose is unknown, so nothing is granted meanwhile.
    const sourcePending = cfg.source !== undefined && analysis === undefined;
    const watched =
      cfg.watchNamespaces.length === 0
        ? o.pods
        : o.pods.filter((p) => cfg.watchNamespaces.includes(p.metadata?.namespace ?? ''));
    const desired = desiredBuilds({
      analysis,
      locks: analysis?.locks ?? new Map(),
      pods: watched,
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
      policy: d.policy,
      ...(sourcePending ? { sourcePending } : {}),
    });
    sayOnce(desired);
    await tellRefused(desired.refused, o.pods);
    const { created, failed } = await createBuilds(desired);
    const unknown = unknownRoots(d.source.current());
    d.metrics.renderRootsUnknown = unknown.length;
    const gcDueMs = await collectGarbage(builds, desired.referenced, unknown, now);
    const againAfterMs = Math.min(
      desired.recheckAfterMs !== undefined ? desired.recheckAfterMs + 100 : Infinity,
      failed ? 5_000 : Infinity,
      gcDueMs ?? Infinity,
    );
    const pending = sourcePending
      ? 'the Git source has not been read yet: a build that has not started waits for it, since its image names may be ones Git declares'
      : undefined;
    return {
      world: worldOf(o, nodes, [...builds, ...created], desired, now, gitClaims(analysis?.workloads), pending),
      ...(Number.isFinite(againAfterMs) ? { againAfterMs } : {}),
    };
  };

  /**
   * NixBuilds enbi created for what no workload of the source (and no waiting trusted pod) names any more
   * (Flux pruned them, Git dropped them): stamped when first seen so, deleted with their Jobs after the grace
   * period, unstamped if named again (the decision: plan/gc.ts). Only while the source is read without
   * error: a failed sync must not make every build look unreferenced; a root whose render gave no answer
   * keeps what it named at its last good render. Hand-written NixBuilds are never collected.
   */
  async function collectGarbage(
    builds: readonly NixBuild[],
    referenced: ReadonlySet<string>,
    unknown: readonly UnknownRoot[],
    now: Date,
  ): Promise<number | undefined> {
    if (
      !cfg.gc.enabled ||
      (cfg.source !== undefined && (d.source.current() === undefined || d.source.lastError() !== undefined))
    )
      return undefined;
    const managed = builds.filter((b) => b.metadata.labels?.[LABEL_MANAGED_BY] === 'enbi');
    const decision = gcDecision({
      builds: managed.map((b) => ({
        name: b.metadata.name,
        key: buildKey(b.spec.flakeUrl, b.spec.packageName),
        ...(b.metadata.annotations?.[ANNOTATION_UNREFERENCED] !== undefined
          ? { unreferencedSince: b.metadata.annotations[ANNOTATION_UNREFERENCED] }
          : {}),
      })),
      referenced,
      unknownRoots: unknown,
      now,
      graceSeconds: cfg.gc.graceSeconds,
    });
    const kept = [...decision.keptForUnknown].map(([name, origin]) => `${name} (${origin})`);
    const gcSaid = [decision.held ?? '', ...kept].join('\n');
    if (gcSaid !== said.gc) {
      said.gc = gcSaid;
      if (decision.held !== undefined)
        d.log.warn(`garbage collection holds: ${decision.held}; nothing is stamped or deleted until they render`);
      if (kept.length > 0)
        d.log.info(
          `garbage collection keeps ${kept.length} NixBuild(s) that roots whose render gave no answer named at their last good render: ${kept.slice(0, 10).join(', ')}`,
        );
    }
    const byName = new Map(managed.map((b) => [b.metadata.name, b]));
    for (const a of decision.actions) {
      const log = d.log.with({ nixbuild: `${ns}/${a.name}` });
      const path = { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: a.name };
      // Each write is guarded by the copy it was decided from: a NixBuild changed since (stamped or
      // unstamped by another writer, replaced under the same name) is refused (409) and decided again.
      const { resourceVersion, uid } = byName.get(a.name)?.metadata ?? {};
      const stamp = (value: string | null) =>
        d.custom.patchNamespacedCustomObject(
          {
            ...path,
            body: { metadata: { resourceVersion, annotations: { [ANNOTATION_UNREFERENCED]: value } } },
            fieldManager: CONTROLLER_FIELD_MANAGER,
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
      try {
        if (a.kind === 'unstamp') await stamp(null);
        else if (a.kind === 'stamp') {
          await stamp(now.toISOString());
          log.info(
            `no workload names what this builds any more: deleted after ${cfg.gc.graceSeconds} s unless one does again`,
          );
        } else {
          await d.custom.deleteNamespacedCustomObject({
            ...path,
            propagationPolicy: 'Background',
            body: { preconditions: { resourceVersion, uid } },
          });
          d.metrics.buildsCollected++;
          log.info(`deleted with its Jobs: unreferenced since ${a.since}`);
        }
      } catch (err) {
        if (isConflict(err)) {
          d.metrics.statusConflicts++;
          log.info('garbage collection: the NixBuild changed since it was read; decided again at the next pass');
        } else if (!isNotFound(err)) log.warn(`garbage collection: ${apiMessage(err)}`);
      }
    }
    // Decide again when the next stamped build's grace period ends.
    return decision.dueMs !== undefined ? Math.max(100, decision.dueMs + 100) : undefined;
  }

  /** What cannot be planned or started, logged once per change rather than on every pass. */
  function sayOnce(desired: Desired): void {
    const problems = desired.problems.map((p) => `${p.object ?? ''} ${p.message}`).join('\n');
    if (problems !== said.problems) {
      said.problems = problems;
      for (const p of desired.problems) d.log.warn(`not planned: ${p.message}`, { object: p.object, file: p.file });
    }
    const blocked = [
      ...desired.unbuildable,
      ...desired.waiting.map(
        (b) => `${b.id}: waits for a free build slot on ${b.node ?? '?'} (maxConcurrentBuildsPerNode)`,
      ),
    ].join('\n');
    if (blocked !== said.blocked) {
      said.blocked = blocked;
      if (blocked !== '') for (const line of blocked.split('\n')) d.log.info(`not started: ${line}`);
    }
  }

  async function tellRefused(refused: readonly RefusedPod[], pods: readonly V1Pod[]): Promise<void> {
    const live = new Set(pods.map((p) => p.metadata?.uid));
    for (const uid of refusedTold.keys()) if (!live.has(uid)) refusedTold.delete(uid);
    for (const r of refused) {
      const id = r.uid ?? `${r.namespace}/${r.name}`;
      const message = `enbi builds nothing for container ${r.container}: ${r.reason}`;
      if (refusedTold.get(id) === message) continue;
      refusedTold.set(id, message);
      d.log.warn(message, { pod: `${r.namespace}/${r.name}`, image: r.image });
      d.metrics.podsRefused++;
      await recordEvent(
        d.core,
        {
          namespace: r.namespace,
          kind: 'Pod',
          apiVersion: 'v1',
          name: r.name,
          ...(r.uid !== undefined ? { uid: r.uid } : {}),
        },
        'Warning',
        'BuildRefused',
        message,
        d.log.line,
      );
    }
  }

  async function createBuilds(desired: Desired): Promise<{ created: NixBuild[]; failed: boolean }> {
    const created: NixBuild[] = [];
    let failed = false;
    for (const nb of desired.create) {
      const node = desired.placement.get(nb.metadata.name);
      const log = d.log.with({ nixbuild: `${ns}/${nb.metadata.name}` });
      let body: NixBuild | undefined;
      try {
        body = (await d.custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
          body: nb,
          fieldManager: CONTROLLER_FIELD_MANAGER,
        })) as NixBuild;
      } catch (err) {
        if (isConflict(err)) continue;
        failed = true;
        d.metrics.reconcileErrors++;
        log.error(`could not create the NixBuild (retried): ${apiMessage(err)}`);
        continue;
      }
      created.push(body);
      d.metrics.buildsCreated++;
      log.info(`created: ${nb.spec.flakeUrl}#${nb.spec.packageName} for ${nb.spec.system} on ${node ?? '?'}`, {
        workloads: nb.metadata.annotations?.[ANNOTATION_WORKLOADS],
      });
      const images = nb.spec.images?.join(', ') ?? '';
      await recordEvent(
        d.core,
        { namespace: ns, kind: 'NixBuild', apiVersion: nb.apiVersion, name: nb.metadata.name },
        'Normal',
        'BuildPlanned',
        `building ${images} for ${nb.spec.system} on ${node ?? '?'}`,
        log.line,
      );
      // And on the workloads that need it, where their owners look (kubectl describe pod).
      for (const w of workloadTargets(nb.metadata.annotations?.[ANNOTATION_WORKLOADS])) {
        await recordEvent(
          d.core,
          w,
          'Normal',
          'BuildPlanned',
          `enbi builds ${images} for ${nb.spec.system} on ${node ?? '?'}: NixBuild ${ns}/${nb.metadata.name}`,
          log.line,
        );
      }
    }
    return { created, failed };
  }

  function worldOf(
    o: Observed,
    nodes: NodeView[],
    builds: NixBuild[],
    desired: Desired,
    now: Date,
    claims: ImageClaims,
    sourcePending: string | undefined,
  ): World {
    const jobsByBuild = new Map<string, V1Job[]>();
    for (const j of o.jobs) {
      const b = j.metadata?.labels?.[LABEL_BUILD];
      if (b !== undefined) jobsByBuild.set(b, [...(jobsByBuild.get(b) ?? []), j]);
    }
    const podsByJob = new Map<string, V1Pod[]>();
    for (const p of o.pods) {
      const job = p.metadata?.namespace === ns ? p.metadata.labels?.['job-name'] : undefined;
      if (job !== undefined) podsByJob.set(job, [...(podsByJob.get(job) ?? []), p]);
    }
    // Where builds without a node go, and moved ones: the planner's builder choice with the current load.
    const byName = new Map(builds.map((b) => [b.metadata.name, b]));
    const load = activeBuildsByNode(builds);
    // Builds created by this pass hold a slot on their chosen node before any status says so (a pinned one
    // is counted by its spec.node already).
    for (const [name, node] of desired.placement)
      if (byName.get(name)?.spec.node === undefined) load.set(node, (load.get(node) ?? 0) + 1);
    const ableBySystem = new Map<string, NodeView[]>();
    let warm: WarmIndex | undefined;
    return {
      now,
      builds: byName,
      jobsByBuild,
      podsByJob,
      rawNodes: new Map(o.nodes.map((n) => [n.metadata?.name ?? '', n])),
      views: new Map(nodes.map((n) => [n.name, n])),
      placement: desired.placement,
      placedWhy: desired.placedWhy,
      rebuild: desired.rebuild,
      rebuildOf: desired.rebuildOf,
      notAdopted: desired.notAdopted,
      planned: desired.planned,
      claims,
      ...(sourcePending !== undefined ? { sourcePending } : {}),
      candidate({ system, flakeUrl }) {
        let able = ableBySystem.get(system);
        if (able === undefined)
          ableBySystem.set(system, (able = nodes.filter((n) => canBuild(n, system, cfg.builderTolerations))));
        warm ??= warmIndex(builds);
        const choice = chooseBuilder(able, {
          system,
          load,
          maxPerNode: cfg.maxConcurrentBuildsPerNode,
          warm: warmFor(warm, flakeUrl, system),
        });
        if (choice === undefined) return undefined;
        load.set(choice.node.name, (load.get(choice.node.name) ?? 0) + 1);
        return { node: choice.node.name, reason: choice.reason };
      },
    };
  }
}

/**
 * The nodes as enbi sees them: agent inventories where fresh, the build pool applied. Each Node's view is
 * read once per object: the informer replaces a Node's object when it changes and never edits it in place,
 * so a quiet pass reads no node again (at 5,000 nodes, their image lists were normalized on every pass).
 * Per config, as the pool and the image cap are part of a view. Views are never changed by readers.
 */
const plainViews = new WeakMap<ControllerConfig, WeakMap<object, NodeView>>();

function nodeViews(o: Observed, cfg: ControllerConfig, now: Date): NodeView[] {
  const pool = Object.entries(cfg.builderNodeSelector);
  const inventories = new Map(o.inventories.map((i) => [i.metadata?.name ?? '', i]));
  let views = plainViews.get(cfg);
  if (views === undefined) plainViews.set(cfg, (views = new WeakMap()));
  return o.nodes.map((n) => {
    let plain = views.get(n);
    if (plain === undefined) {
      plain = nodeViewOf(n, cfg.maxNodeImages);
      if (pool.some(([k, v]) => plain!.labels[k] !== v)) plain.builderAllowed = false;
      views.set(n, plain);
    }
    const inventory = inventories.get(plain.name);
    return inventory !== undefined ? withInventory(plain, inventory, { now }) : plain;
  });
}

/**
 * The roots whose render gave no answer, each with the builds its last good render named: the workloads
 * that stand in for it in the analysis carry its origin.
 */
function unknownRoots(snapshot: SourceSnapshot | undefined): UnknownRoot[] {
  if (snapshot === undefined || snapshot.unknown.length === 0) return [];
  const keysByOrigin = new Map<string, Set<string>>();
  for (const w of snapshot.analysis.workloads) {
    const origin = w.workload.origin;
    if (origin === undefined) continue;
    for (const n of w.needs) {
      const k = needKey(n);
      if (k === undefined) continue;
      let keys = keysByOrigin.get(origin);
      if (keys === undefined) keysByOrigin.set(origin, (keys = new Set()));
      keys.add(k);
    }
  }
  return snapshot.unknown.map((u) =>
    u.lastGoodRevision !== undefined
      ? { origin: u.origin, lastGood: keysByOrigin.get(u.origin) ?? new Set<string>() }
      : { origin: u.origin },
  );
}
