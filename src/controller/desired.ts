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
import { schedulingOf } from '../manifests/workloads.ts';
import type { Analysis } from '../pipeline/analyze.ts';
import { type DistributionMode, type PlannedBuild, plan } from '../plan/planner.ts';
import type { Toleration } from '../plan/scheduling.ts';
import type { Problem } from '../problems.ts';

/** Waiting reasons that mean the node lacks the image. */
export const IMAGE_MISSING_REASONS = new Set(['ErrImageNeverPull', 'ErrImagePull', 'ImagePullBackOff']);

export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const ANNOTATION_WORKLOADS = 'enbi.hrzn.ee/workloads';

/**
 * A bound pod that waits for an image its node lacks, as a workload pinned to that node. Pods whose
 * containers run, or that wait for something else, need nothing built.
 */
export function podAsWorkload(pod: V1Pod, nodes: ReadonlyMap<string, NodeView>): Workload | undefined {
  const nodeName = pod.spec?.nodeName;
  if (nodeName === undefined || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return undefined;
  const annotations = pod.metadata?.annotations ?? {};
  if (!Object.keys(annotations).some((k) => k.startsWith('enbi.hrzn.ee/'))) return undefined;
  const statuses = [...(pod.status?.containerStatuses ?? []), ...(pod.status?.initContainerStatuses ?? [])];
  const node = nodes.get(nodeName);
  const waiting = (name: string, image: string | undefined) => {
    const s = statuses.find((c) => c.name === name);
    if (s?.state?.waiting?.reason !== undefined) return IMAGE_MISSING_REASONS.has(s.state.waiting.reason);
    // Not started yet: missing if the node's complete image list lacks it.
    return s === undefined && node !== undefined && node.imagesComplete && image !== undefined && !node.images.has(image);
  };
  const containers = [...(pod.spec?.initContainers ?? []).map((c) => ({ c, init: true })), ...(pod.spec?.containers ?? []).map((c) => ({ c, init: false }))];
  if (!containers.some(({ c }) => waiting(c.name, c.image))) return undefined;
  return {
    kind: 'Pod',
    namespace: pod.metadata?.namespace ?? 'default',
    name: pod.metadata?.name ?? '',
    annotations,
    containers: containers.map(({ c, init }) => ({ name: c.name, init, ...(c.image !== undefined ? { image: c.image } : {}), ...(c.imagePullPolicy !== undefined ? { imagePullPolicy: c.imagePullPolicy } : {}) })),
    scheduling: schedulingOf({ nodeName } as Record<string, unknown>, false),
  };
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
}

export interface Desired {
  create: NixBuild[];
  /** Builds that would start but wait for a free slot on their node. */
  waiting: PlannedBuild[];
  problems: Problem[];
  unbuildable: string[];
}

export function desiredBuilds(input: DesiredInput): Desired {
  const byName = new Map(input.nodes.map((n) => [n.name, n]));
  const problems: Problem[] = [];
  const workloads: WorkloadNeeds[] = [];
  // Eager workloads are planned from the manifests, on every node they can run on.
  for (const w of input.analysis?.workloads ?? []) {
    const eager = w.needs.filter((n) => n.mode === 'eager' || (input.defaultBuildMode === 'eager' && !('enbi.hrzn.ee/build' in w.workload.annotations)));
    if (eager.length > 0) workloads.push({ workload: w.workload, needs: eager });
  }
  // On-demand: pods bound to a node that lacks their image.
  const fileOf = manifestFiles(input.analysis);
  for (const pod of input.pods) {
    const w = podAsWorkload(pod, byName);
    if (w === undefined) continue;
    w.file = fileOf.get(`${w.namespace}\0${JSON.stringify(sortedEnbi(w.annotations))}`) ?? '';
    const { needs, problems: p } = containerNeedsOf(w, input.locks);
    problems.push(...p);
    if (needs.length > 0) workloads.push({ workload: w, needs });
  }
  const planned = plan({ workloads, nodes: input.nodes, mode: input.mode, builderTolerations: input.builderTolerations });
  const existing = new Map(input.existing.map((b) => [b.metadata.name, b]));
  const active = new Map<string, number>();
  for (const b of input.existing) {
    const node = b.status?.node ?? b.spec.node;
    if (node !== undefined && (b.status?.phase === undefined || b.status.phase === 'Pending' || b.status.phase === 'Building')) active.set(node, (active.get(node) ?? 0) + 1);
  }
  const create: NixBuild[] = [];
  const waiting: PlannedBuild[] = [];
  for (const b of planned.builds) {
    if (b.node === null) continue;
    const nb = toNixBuild(b, input.mode, input.namespace);
    if (existing.has(nb.metadata.name)) continue;
    if ((active.get(b.node) ?? 0) >= input.maxConcurrentBuildsPerNode) {
      waiting.push(b);
      continue;
    }
    active.set(b.node, (active.get(b.node) ?? 0) + 1);
    existing.set(nb.metadata.name, nb);
    create.push(nb);
  }
  return { create, waiting, problems, unbuildable: planned.unbuildable };
}

export function toNixBuild(b: PlannedBuild, mode: DistributionMode, namespace: string): NixBuild {
  const flake = parseFlakeRef(b.flake);
  const name = nixBuildName({ source: sourceKey(flake), rev: b.rev, attr: b.attr, system: b.system, ...(mode === 'per-node' && b.node !== null ? { node: b.node } : {}) });
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: KIND,
    metadata: {
      name,
      namespace,
      labels: { [LABEL_MANAGED_BY]: 'enbi' },
      annotations: { [ANNOTATION_WORKLOADS]: b.workloads.join(', ').slice(0, 4000) },
    },
    spec: { flakeUrl: formatFlakeRef(withoutAttr(flake)), packageName: b.attr, system: b.system, images: b.images, imageTag: b.rev, ...(b.node !== null ? { node: b.node } : {}) },
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
