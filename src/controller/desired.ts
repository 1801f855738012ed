// From what the cluster shows (manifests, bound pods, nodes, existing builds) to the NixBuilds that should
// exist. Pure: the controller's "plan" step, beside the planner it calls.
import type { V1Pod } from '@kubernetes/client-node';
import type { NixBuild } from '../api/nixbuild.ts';
import { GROUP, KIND, VERSION } from '../api/nixbuild.ts';
import { nixBuildName } from '../build/naming.ts';
import type { NodeView } from '../cluster/node-view.ts';
import { type LockIndex, sourceKey, type WorkloadNeeds } from '../contract/container-needs.ts';
import { parseFlakeRef, formatFlakeRef, redactFlakeUrl, withoutAttr } from '../flake/ref.ts';
import { normalizeImageName } from '../image/reference.ts';
import { type BuildPolicy, withinPolicy } from '../plan/allow.ts';
import { buildKey, needKey } from '../plan/claims.ts';
import { podWorkloads, type RefusedPod, type WaitingPod, withReportedMissing } from '../plan/on-demand.ts';
import type { Analysis } from '../pipeline/analyze.ts';
import { type DistributionMode, type PlannedBuild, plan } from '../plan/planner.ts';
import type { Toleration } from '../plan/scheduling.ts';
import { warmIndex } from '../plan/warmth.ts';
import type { Problem } from '../problems.ts';

export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const ANNOTATION_WORKLOADS = 'enbi.hrzn.ee/workloads';
/** When the controller first saw that nothing names what this NixBuild builds (garbage collection). */
export const ANNOTATION_UNREFERENCED = 'enbi.hrzn.ee/unreferenced-since';

export interface DesiredInput {
  analysis: Analysis | undefined;
  locks: LockIndex;
  pods: readonly V1Pod[];
  nodes: readonly NodeView[];
  existing: readonly NixBuild[];
  mode: DistributionMode;
  defaultBuildMode: 'on-demand' | 'eager';
  builderTolerations: readonly Toleration[];
  namespace: string;
  maxConcurrentBuildsPerNode: number;
  now: Date;
  /** A Succeeded build is redone for a missing image only this long after it completed (kubelet's image list lags). */
  rebuildGraceSeconds: number;
  /** Namespaces whose pods may declare their own flake; every other pod must match a Git workload. */
  trustedNamespaces: readonly string[];
  /** The image prefixes and flake sources enbi may build. */
  policy: BuildPolicy;
  /**
   * A Git source is configured but not read yet: trusted pods wait for it (their image names may be Git's,
   * and Git's claim on a name must be known before anyone else's is granted).
   */
  sourcePending?: boolean;
}

export interface Desired {
  create: NixBuild[];
  /** The node chosen for each created build (Spegel mode keeps it in status.node, not in the spec). */
  placement: Map<string, string>;
  /** Why each created build's node was chosen (status.placement). */
  placedWhy: Map<string, string>;
  /** Builds that would start but wait for a free slot on every node able to build them. */
  waiting: PlannedBuild[];
  /** Succeeded builds whose image is missing again where a pod waits for it: name → why. */
  rebuild: Map<string, string>;
  /** The completionTime each rebuild verdict is about: a build completed since then needs a new verdict. */
  rebuildOf: Map<string, string>;
  /** A build would be redone but for the grace period: plan again after this long. */
  recheckAfterMs?: number;
  problems: Problem[];
  unbuildable: string[];
  /** Waiting pods enbi builds nothing for, with the reason (an Event on each). */
  refused: RefusedPod[];
  /** NixBuilds holding a planned build's name with another spec: name → why they are not adopted. */
  notAdopted: Map<string, string>;
  /** The names of every build the plan wants now (to create, or existing and adoptable). */
  planned: Set<string>;
  /** Every (source, attribute) a workload of the source or a waiting trusted pod names: builds of anything else are unreferenced. */
  referenced: Set<string>;
}

/** Builds that occupy a slot on their node: not finished, and placed (status.node, or pinned by spec.node). */
export function activeBuildsByNode(builds: readonly NixBuild[]): Map<string, number> {
  const active = new Map<string, number>();
  for (const b of builds) {
    const node = b.status?.node ?? b.spec.node;
    const phase = b.status?.phase;
    if (node !== undefined && (phase === undefined || phase === 'Pending' || phase === 'Building'))
      active.set(node, (active.get(node) ?? 0) + 1);
  }
  return active;
}

export function desiredBuilds(input: DesiredInput): Desired {
  const byName = new Map(input.nodes.map((n) => [n.name, n]));
  const workloads: WorkloadNeeds[] = [];
  const problems: Problem[] = [];
  // Eager workloads are planned from the manifests, on every node they can run on, within the policy.
  const eager = (input.analysis?.workloads ?? []).flatMap((w) => {
    const needs = w.needs.filter(
      (n) =>
        n.mode === 'eager' || (input.defaultBuildMode === 'eager' && !('enbi.hrzn.ee/build' in w.workload.annotations)),
    );
    return needs.length > 0 ? [{ workload: w.workload, needs }] : [];
  });
  const allowed = withinPolicy(eager, input.policy);
  workloads.push(...allowed.workloads);
  problems.push(...allowed.refused);
  // On-demand: pods bound to a node that lacks their image, matched to Git's workloads.
  const pods = podWorkloads(input.pods, byName, {
    analysis: input.analysis,
    locks: input.locks,
    trustedNamespaces: input.trustedNamespaces,
    policy: input.policy,
    ...(input.sourcePending === true ? { sourcePending: true } : {}),
  });
  workloads.push(...pods.workloads);
  problems.push(...pods.problems);
  const existing = new Map(input.existing.map((b) => [b.metadata.name, b]));
  const names = new Map<PlannedBuild, string>();
  const nameOf = (b: PlannedBuild) => {
    let name = names.get(b);
    if (name === undefined) names.set(b, (name = toNixBuild(b, input.mode, input.namespace).metadata.name));
    return name;
  };
  const planned = plan({
    workloads,
    nodes: withReportedMissing(input.nodes, pods.waiting),
    mode: input.mode,
    builderTolerations: input.builderTolerations,
    activeBuilds: activeBuildsByNode(input.existing),
    maxBuildsPerNode: input.maxConcurrentBuildsPerNode,
    started: (b) => existing.has(nameOf(b)),
    warm: warmIndex(input.existing),
  });
  // Images kubelet itself reports missing, by waiting pod: the evidence a finished build is gone again.
  const reported = new Map<string, WaitingPod[]>();
  for (const w of pods.waiting) if (w.reported) reported.set(w.workload, [...(reported.get(w.workload) ?? []), w]);
  const create: NixBuild[] = [];
  const placement = new Map<string, string>();
  const placedWhy = new Map<string, string>();
  const waiting: PlannedBuild[] = [];
  const rebuild = new Map<string, string>();
  const rebuildOf = new Map<string, string>();
  const notAdopted = new Map<string, string>();
  const plannedNames = new Set<string>();
  let recheckAfterMs: number | undefined;
  for (const b of planned.builds) {
    const name = nameOf(b);
    const found = existing.get(name);
    if (found !== undefined) {
      const squat = adoptionProblem(found, toNixBuild(b, input.mode, input.namespace));
      if (squat !== undefined) {
        notAdopted.set(name, squat);
        continue;
      }
      plannedNames.add(name);
      const gone = goneAgain(found, b, reported, byName, input);
      if (typeof gone === 'string') {
        rebuild.set(name, gone);
        rebuildOf.set(name, found.status?.completionTime ?? '');
      } else if (gone !== undefined) recheckAfterMs = Math.min(recheckAfterMs ?? Infinity, gone.recheckMs);
      continue;
    }
    if (b.node === null) continue;
    if (b.queued === true) {
      waiting.push(b);
      continue;
    }
    const nb = toNixBuild(b, input.mode, input.namespace);
    plannedNames.add(name);
    existing.set(name, nb);
    create.push(nb);
    placement.set(name, b.node);
    if (b.placement !== undefined) placedWhy.set(name, b.placement);
  }
  return {
    create,
    placement,
    placedWhy,
    waiting,
    rebuild,
    ...(recheckAfterMs !== undefined ? { recheckAfterMs } : {}),
    problems,
    unbuildable: planned.unbuildable,
    refused: pods.refused,
    notAdopted,
    rebuildOf,
    planned: plannedNames,
    referenced: referencedKeys([...(input.analysis?.workloads ?? []), ...pods.workloads]),
  };
}

export { buildKey };

function referencedKeys(workloads: readonly WorkloadNeeds[]): Set<string> {
  const out = new Set<string>();
  for (const w of workloads) {
    for (const n of w.needs) {
      const k = needKey(n);
      if (k !== undefined) out.add(k);
    }
  }
  return out;
}

/**
 * Why an existing NixBuild under a planned build's name is not that build, or undefined. Names are
 * deterministic, so anyone allowed to create NixBuilds could create one first, under the name, with another
 * flake or more image names (another team's tag). The same source, attribute, system and pin, with images
 * among the planned ones, is the same build (the planned set only grows as workloads share it).
 */
export function adoptionProblem(found: NixBuild, want: NixBuild): string | undefined {
  const diffs: string[] = [];
  for (const field of ['flakeUrl', 'packageName', 'system', 'node'] as const) {
    const shown = field === 'flakeUrl' ? redactFlakeUrl(found.spec.flakeUrl) : found.spec[field];
    if (found.spec[field] !== want.spec[field])
      diffs.push(
        `spec.${field} is ${JSON.stringify(shown ?? null)}, the planned build has ${JSON.stringify(want.spec[field] ?? null)}`,
      );
  }
  const planned = new Set((want.spec.images ?? []).map(normalizeImageName));
  const extra = (found.spec.images ?? []).filter((i) => !planned.has(normalizeImageName(i)));
  if (extra.length > 0) diffs.push(`spec.images has ${extra.join(', ')}, which the planned build does not import`);
  if (diffs.length === 0) return undefined;
  return `this name is the one enbi gives the build of ${want.spec.flakeUrl}#${want.spec.packageName} for ${want.spec.system}, but ${diffs.join('; ')}. enbi neither builds nor adopts it: delete it and enbi creates its own`;
}

/**
 * Why a Succeeded build must run again, or undefined: the planner finds its image missing (complete
 * image lists lack it), a pod of the plan waits for it with kubelet's own image-missing reason, and the
 * build completed more than the grace period ago (kubelet refreshes its image list every 30 s).
 */
function goneAgain(
  nb: NixBuild,
  b: PlannedBuild,
  reported: ReadonlyMap<string, WaitingPod[]>,
  byName: ReadonlyMap<string, NodeView>,
  input: DesiredInput,
): string | { recheckMs: number } | undefined {
  if (nb.status?.phase !== 'Succeeded' || b.missingOn.length === 0) return undefined;
  const completed = Date.parse(nb.status.completionTime ?? '');
  if (Number.isNaN(completed)) return undefined;
  const images = new Set(b.images);
  // A waiting pod is no proof on its own: kubelet retries with back-off (up to minutes), so a pod can still
  // report ErrImageNeverPull long after the image was imported. A node's complete image list (the agent's,
  // or kubelet's under its cap) must lack the image too. (byName: the nodes as listed, without those reports.)
  const listed = b.missingOn.filter((name) => {
    const n = byName.get(name);
    return n !== undefined && n.imagesComplete && !b.images.some((img) => n.images.has(img));
  });
  if (listed.length === 0) return undefined;
  const pod = b.workloads.flatMap((w) => reported.get(w) ?? []).find((w) => images.has(normalizeImageName(w.image)));
  if (pod === undefined) return undefined;
  const left = completed + input.rebuildGraceSeconds * 1000 - input.now.getTime();
  if (left > 0) return { recheckMs: left };
  const ago = Math.round((input.now.getTime() - completed) / 1000);
  return `${pod.image} is missing again (${listed.length === 1 ? `node ${listed[0]}` : `nodes ${listed.slice(0, 5).join(', ')}${listed.length > 5 ? ', …' : ''}`}) while pod ${pod.namespace}/${pod.name} waits for it on ${pod.node} (${pod.reason}); built ${ago} s ago`;
}

export function toNixBuild(b: PlannedBuild, mode: DistributionMode, namespace: string): NixBuild {
  const flake = parseFlakeRef(b.flake);
  // In per-node mode the node is part of what is built (its import target): it goes in the spec, where
  // it pins the build. In Spegel mode the builder is the controller's choice: status.node only, so the
  // build can move when its node goes away.
  const pinned = mode === 'per-node' && b.node !== null ? b.node : undefined;
  const name = nixBuildName({
    source: sourceKey(flake),
    rev: b.rev,
    attr: b.attr,
    system: b.system,
    ...(pinned !== undefined ? { node: pinned } : {}),
  });
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: KIND,
    metadata: {
      name,
      namespace,
      labels: { [LABEL_MANAGED_BY]: 'enbi' },
      annotations: { [ANNOTATION_WORKLOADS]: b.workloads.join(', ').slice(0, 4000) },
    },
    spec: {
      flakeUrl: formatFlakeRef(withoutAttr(flake)),
      packageName: b.attr,
      system: b.system,
      images: b.images,
      imageTag: b.rev,
      ...(pinned !== undefined ? { node: pinned } : {}),
    },
  };
}
