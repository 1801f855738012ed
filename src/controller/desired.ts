// From what the cluster shows (manifests, bound pods, nodes, existing builds) to the NixBuilds that should
// exist. Pure: the controller's "plan" step, beside the planner it calls.
import type { V1Pod } from '@kubernetes/client-node';
import type { NixBuild } from '../api/nixbuild.ts';
import { GROUP, KIND, VERSION } from '../api/nixbuild.ts';
import { nixBuildName } from '../build/naming.ts';
import type { NodeView } from '../cluster/node-view.ts';
import { containerNeedsOf, type LockIndex, sourceKey, type WorkloadNeeds } from '../contract/container-needs.ts';
import { parseFlakeRef, formatFlakeRef, withoutAttr } from '../flake/ref.ts';
import type { Workload } from '../manifests/workloads.ts';
import { schedulingOf, workloadId } from '../manifests/workloads.ts';
import { normalizeImageName } from '../image/reference.ts';
import type { Analysis } from '../pipeline/analyze.ts';
import { type DistributionMode, type PlannedBuild, plan } from '../plan/planner.ts';
import type { Toleration } from '../plan/scheduling.ts';
import type { Problem } from '../problems.ts';

/** Waiting reasons that mean the node lacks the image. */
export const IMAGE_MISSING_REASONS = new Set(['ErrImageNeverPull', 'ErrImagePull', 'ImagePullBackOff']);

export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const ANNOTATION_WORKLOADS = 'enbi.hrzn.ee/workloads';

/** A container of a bound pod whose image its node lacks. */
export interface ImageWait {
  container: string;
  image: string;
  /** kubelet's waiting reason, or why enbi thinks so before kubelet says. */
  reason: string;
  /** True when kubelet reports it (a waiting reason), false when only the node's complete image list says so. */
  reported: boolean;
}

/** The containers of a bound, live pod with enbi annotations that wait for an image their node lacks. */
export function imageWaits(pod: V1Pod, nodes: ReadonlyMap<string, NodeView>): ImageWait[] {
  const nodeName = pod.spec?.nodeName;
  if (nodeName === undefined || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return [];
  const annotations = pod.metadata?.annotations ?? {};
  if (!Object.keys(annotations).some((k) => k.startsWith('enbi.hrzn.ee/'))) return [];
  const statuses = [...(pod.status?.containerStatuses ?? []), ...(pod.status?.initContainerStatuses ?? [])];
  const node = nodes.get(nodeName);
  const out: ImageWait[] = [];
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    if (c.image === undefined) continue;
    const s = statuses.find((x) => x.name === c.name);
    const reason = s?.state?.waiting?.reason;
    if (reason !== undefined) {
      if (IMAGE_MISSING_REASONS.has(reason)) out.push({ container: c.name, image: c.image, reason, reported: true });
    } else if (s === undefined && node !== undefined && node.imagesComplete && !node.images.has(normalizeImageName(c.image))) {
      // Not started yet: missing if the node's complete image list lacks it.
      out.push({ container: c.name, image: c.image, reason: 'not on the node (its image list)', reported: false });
    }
  }
  return out;
}

/**
 * A bound pod that waits for an image its node lacks, as a workload pinned to that node. Pods whose
 * containers run, or that wait for something else, need nothing built.
 */
export function podAsWorkload(pod: V1Pod, nodes: ReadonlyMap<string, NodeView>): Workload | undefined {
  if (imageWaits(pod, nodes).length === 0) return undefined;
  return workloadOfPod(pod);
}

function workloadOfPod(pod: V1Pod): Workload {
  const containers = [...(pod.spec?.initContainers ?? []).map((c) => ({ c, init: true })), ...(pod.spec?.containers ?? []).map((c) => ({ c, init: false }))];
  return {
    kind: 'Pod',
    namespace: pod.metadata?.namespace ?? 'default',
    name: pod.metadata?.name ?? '',
    annotations: pod.metadata?.annotations ?? {},
    containers: containers.map(({ c, init }) => ({ name: c.name, init, ...(c.image !== undefined ? { image: c.image } : {}), ...(c.imagePullPolicy !== undefined ? { imagePullPolicy: c.imagePullPolicy } : {}) })),
    scheduling: schedulingOf({ nodeName: pod.spec?.nodeName } as Record<string, unknown>, false),
  };
}

/** A pod waiting for an image, as `enbi diff` shows it and the controller logs it. */
export interface WaitingPod extends ImageWait {
  namespace: string;
  name: string;
  node: string;
  /** Its workload id in the plan (`Pod ns/name`). */
  workload: string;
}

/** The on-demand half of the plan: waiting pods as workloads pinned to their nodes, with what they wait for. */
export function podWorkloads(
  pods: readonly V1Pod[],
  nodes: ReadonlyMap<string, NodeView>,
  analysis: Analysis | undefined,
  locks: LockIndex,
): { workloads: WorkloadNeeds[]; waiting: WaitingPod[]; problems: Problem[] } {
  const fileOf = manifestFiles(analysis);
  const workloads: WorkloadNeeds[] = [];
  const waiting: WaitingPod[] = [];
  const problems: Problem[] = [];
  for (const pod of pods) {
    const waits = imageWaits(pod, nodes);
    if (waits.length === 0) continue;
    const w = workloadOfPod(pod);
    w.file = fileOf.get(`${w.namespace}\0${JSON.stringify(sortedEnbi(w.annotations))}`) ?? '';
    const { needs, problems: p } = containerNeedsOf(w, locks);
    problems.push(...p);
    if (needs.length > 0) workloads.push({ workload: w, needs });
    const id = workloadId(w);
    for (const wait of waits) waiting.push({ ...wait, namespace: w.namespace, name: w.name, node: pod.spec?.nodeName ?? '', workload: id });
  }
  return { workloads, waiting, problems };
}

/**
 * The node views with what waiting pods' kubelets report absent added as known missing: a capped image
 * list cannot say an image is missing, but kubelet failing to find it can.
 */
export function withReportedMissing(nodes: readonly NodeView[], waiting: readonly WaitingPod[]): NodeView[] {
  const byNode = new Map<string, Set<string>>();
  for (const w of waiting) {
    if (!w.reported) continue;
    let set = byNode.get(w.node);
    if (set === undefined) byNode.set(w.node, (set = new Set()));
    set.add(normalizeImageName(w.image));
  }
  if (byNode.size === 0) return [...nodes];
  return nodes.map((n) => {
    const extra = byNode.get(n.name);
    return extra === undefined ? n : { ...n, missing: new Set([...(n.missing ?? []), ...extra]) };
  });
}

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
}

export interface Desired {
  create: NixBuild[];
  /** The node chosen for each created build (Spegel mode keeps it in status.node, not in the spec). */
  placement: Map<string, string>;
  /** Builds that would start but wait for a free slot on every node able to build them. */
  waiting: PlannedBuild[];
  /** Succeeded builds whose image is missing again where a pod waits for it: name → why. */
  rebuild: Map<string, string>;
  /** A build would be redone but for the grace period: plan again after this long. */
  recheckAfterMs?: number;
  problems: Problem[];
  unbuildable: string[];
}

/** Builds that occupy a slot on their node: not finished, and placed (status.node, or pinned by spec.node). */
export function activeBuildsByNode(builds: readonly NixBuild[]): Map<string, number> {
  const active = new Map<string, number>();
  for (const b of builds) {
    const node = b.status?.node ?? b.spec.node;
    const phase = b.status?.phase;
    if (node !== undefined && (phase === undefined || phase === 'Pending' || phase === 'Building')) active.set(node, (active.get(node) ?? 0) + 1);
  }
  return active;
}

export function desiredBuilds(input: DesiredInput): Desired {
  const byName = new Map(input.nodes.map((n) => [n.name, n]));
  const workloads: WorkloadNeeds[] = [];
  // Eager workloads are planned from the manifests, on every node they can run on.
  for (const w of input.analysis?.workloads ?? []) {
    const eager = w.needs.filter((n) => n.mode === 'eager' || (input.defaultBuildMode === 'eager' && !('enbi.hrzn.ee/build' in w.workload.annotations)));
    if (eager.length > 0) workloads.push({ workload: w.workload, needs: eager });
  }
  // On-demand: pods bound to a node that lacks their image.
  const pods = podWorkloads(input.pods, byName, input.analysis, input.locks);
  workloads.push(...pods.workloads);
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
  });
  // Images kubelet itself reports missing, by waiting pod: the evidence a finished build is gone again.
  const reported = new Map<string, WaitingPod[]>();
  for (const w of pods.waiting) if (w.reported) reported.set(w.workload, [...(reported.get(w.workload) ?? []), w]);
  const create: NixBuild[] = [];
  const placement = new Map<string, string>();
  const waiting: PlannedBuild[] = [];
  const rebuild = new Map<string, string>();
  let recheckAfterMs: number | undefined;
  for (const b of planned.builds) {
    const name = nameOf(b);
    const found = existing.get(name);
    if (found !== undefined) {
      const gone = goneAgain(found, b, reported, byName, input);
      if (typeof gone === 'string') rebuild.set(name, gone);
      else if (gone !== undefined) recheckAfterMs = Math.min(recheckAfterMs ?? Infinity, gone.recheckMs);
      continue;
    }
    if (b.node === null) continue;
    if (b.queued === true) {
      waiting.push(b);
      continue;
    }
    const nb = toNixBuild(b, input.mode, input.namespace);
    existing.set(name, nb);
    create.push(nb);
    placement.set(name, b.node);
  }
  return { create, placement, waiting, rebuild, ...(recheckAfterMs !== undefined ? { recheckAfterMs } : {}), problems: pods.problems, unbuildable: planned.unbuildable };
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
  const name = nixBuildName({ source: sourceKey(flake), rev: b.rev, attr: b.attr, system: b.system, ...(pinned !== undefined ? { node: pinned } : {}) });
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: KIND,
    metadata: {
      name,
      namespace,
      labels: { [LABEL_MANAGED_BY]: 'enbi' },
      annotations: { [ANNOTATION_WORKLOADS]: b.workloads.join(', ').slice(0, 4000) },
    },
    spec: { flakeUrl: formatFlakeRef(withoutAttr(flake)), packageName: b.attr, system: b.system, images: b.images, imageTag: b.rev, ...(pinned !== undefined ? { node: pinned } : {}) },
  };
}

function sortedEnbi(annotations: Record<string, unknown>): [string, unknown][] {
  return Object.entries(annotations).filter(([k]) => k.startsWith('enbi.hrzn.ee/')).sort(([a], [b]) => (a < b ? -1 : 1));
}

/** Which manifest file a pod's annotations came from, so its indirect flake finds the right flake.lock. */
function manifestFiles(analysis: Analysis | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const { workload } of analysis?.workloads ?? []) {
    if (workload.file !== undefined) out.set(`${workload.namespace}\0${JSON.stringify(sortedEnbi(workload.annotations))}`, workload.file);
  }
  return out;
}
