// `enbi diff`'s result: the plan plus everything the user must know to trust it, and its exit code.
import type { V1Pod } from '@kubernetes/client-node';
import type { NodeView } from '../cluster/node-view.ts';
import { type BuildPolicy, withinPolicy } from '../plan/allow.ts';
import { podWorkloads, type RefusedPod, type WaitingPod, withReportedMissing } from '../plan/on-demand.ts';
import { normalizeImageName } from '../image/reference.ts';
import type { Analysis, ManifestCounts } from '../pipeline/analyze.ts';
import type { DistributionMode, ImageState, Plan } from '../plan/planner.ts';
import { plan } from '../plan/planner.ts';
import type { Problem } from '../problems.ts';
import type { Toleration } from '../plan/scheduling.ts';
import type { NixBuild } from '../api/nixbuild.ts';
import { activeBuildsByNode } from '../controller/desired.ts';
import { warmIndex } from '../plan/warmth.ts';

/**
 * Exit codes: bit 2 = builds would start, bit 4 = problems in the input (annotated workloads not planned among
 * them); 1 = no plan could be made.
 */
export const EXIT_UP_TO_DATE = 0;
export const EXIT_FATAL = 1;
export const EXIT_BUILDS = 2;
export const EXIT_PROBLEMS = 4;

export interface SourceInfo {
  kind: 'git' | 'dir';
  location: string;
  ref?: string;
  commit?: string;
  path?: string;
}

export interface Drift {
  flake: string;
  branch: string;
  /** What the branch points to now. */
  head: string;
  /** What the manifest pins. */
  pinned: string;
  workloads: string[];
}

/** A pod bound to a node that lacks its image, and what would be built for it. */
export interface WaitingPodReport extends WaitingPod {
  system?: string;
  /** The plan's verdict for this image on this pod's node: missing (a build covers it), unknown, ...; invalid: its annotations cannot be planned. */
  state: ImageState | 'invalid';
  /** The build that would bring the image (see builds[].id). */
  buildId?: string;
  detail?: string;
}

export interface DiffReport {
  source: SourceInfo;
  /** What the source held: files, documents, workloads (with enbi annotations), skipped. */
  manifests?: ManifestCounts;
  nodesFrom: string;
  /** Bound, unfinished pods read from the cluster; absent when pods were not read (--nodes, or not allowed). */
  podsRead?: number;
  /** Pods waiting for an image their node lacks: the on-demand view of a live cluster. */
  waitingPods: WaitingPodReport[];
  /** Waiting pods enbi builds nothing for: no Git workload matches them (or the policy refuses their image). */
  refusedPods: RefusedPod[];
  mode: DistributionMode;
  nodes: {
    name: string;
    system?: string;
    buildSystems: string[];
    ready: boolean;
    images: number;
    imagesComplete: boolean;
    imageSource: string;
  }[];
  builds: Plan['builds'];
  statuses: Plan['statuses'];
  /** Workloads with enbi annotations that enbi plans nothing for (their annotations or the policy refused them: see problems). */
  refused: number;
  unbuildable: string[];
  problems: Problem[];
  warnings: Problem[];
  drift: Drift[];
}

export interface DiffInput {
  source: SourceInfo;
  nodesFrom: string;
  analysis: Analysis;
  nodes: NodeView[];
  mode: DistributionMode;
  builderTolerations?: Toleration[];
  drift?: Drift[];
  /** Bound pods of a live cluster: those waiting for a missing image are planned as the controller would. */
  pods?: readonly V1Pod[];
  /** Namespaces whose pods may declare their own flake (the controller's trustedNamespaces). */
  trustedNamespaces?: readonly string[];
  policy?: BuildPolicy;
  /** The cluster's NixBuilds, when read: where repositories were built (warm placement) and what runs now. */
  nixBuilds?: readonly NixBuild[];
  /** The controller's maxConcurrentBuildsPerNode (with --config). */
  maxBuildsPerNode?: number;
}

export function buildReport(input: DiffInput): DiffReport {
  // On demand, as the controller plans it: each waiting pod is a workload pinned to its node.
  const byName = new Map(input.nodes.map((n) => [n.name, n]));
  const trust = {
    analysis: input.analysis,
    locks: input.analysis.locks,
    trustedNamespaces: input.trustedNamespaces ?? [],
    ...(input.policy !== undefined ? { policy: input.policy } : {}),
  };
  const pods =
    input.pods !== undefined
      ? podWorkloads(input.pods, byName, trust)
      : { workloads: [], waiting: [], refused: [], problems: [] };
  // The controller's allow-lists, when given: what they refuse is a problem, never a build.
  const allowed =
    input.policy === undefined
      ? { workloads: input.analysis.workloads, refused: [] }
      : withinPolicy(input.analysis.workloads, input.policy);
  const p = plan({
    workloads: [...allowed.workloads, ...pods.workloads],
    nodes: withReportedMissing(input.nodes, pods.waiting),
    mode: input.mode,
    builderTolerations: input.builderTolerations ?? [],
    ...(input.nixBuilds !== undefined
      ? { warm: warmIndex(input.nixBuilds), activeBuilds: activeBuildsByNode(input.nixBuilds) }
      : {}),
    ...(input.maxBuildsPerNode !== undefined ? { maxBuildsPerNode: input.maxBuildsPerNode } : {}),
  });
  // Every workload with needs is annotated: the annotated ones left without a planned build were refused.
  const refused = Math.max(0, input.analysis.counts.annotated - allowed.workloads.length);
  const statuses = new Map(p.statuses.map((st) => [`${st.workload}\0${st.container}`, st]));
  const invalid = new Map(pods.problems.map((pr) => [pr.object ?? '', pr.message]));
  const waitingPods: WaitingPodReport[] = pods.waiting.map((w) => {
    const st = statuses.get(`${w.workload}\0${w.container}`);
    if (st === undefined)
      return {
        ...w,
        state: 'invalid',
        detail: invalid.get(w.workload) ?? 'its enbi annotations name no image to build for this container',
      };
    const image = normalizeImageName(w.image);
    return {
      ...w,
      ...(st.system !== undefined ? { system: st.system } : {}),
      state: st.state,
      ...(st.state === 'missing' && st.buildId !== undefined && st.image === image ? { buildId: st.buildId } : {}),
      ...(st.detail !== undefined
        ? { detail: st.detail }
        : st.state === 'present'
          ? { detail: `present on ${st.nodes.join(',')}` }
          : {}),
    };
  });
  return {
    source: input.source,
    manifests: input.analysis.counts,
    nodesFrom: input.nodesFrom,
    ...(input.pods !== undefined ? { podsRead: input.pods.length } : {}),
    mode: input.mode,
    nodes: input.nodes.map((n) => ({
      name: n.name,
      ...(n.system !== undefined ? { system: n.system } : {}),
      buildSystems: n.buildSystems,
      ready: n.ready,
      images: n.images.size,
      imagesComplete: n.imagesComplete,
      imageSource: n.imageSource,
    })),
    // Why each node builds: told only when the NixBuilds were read (without them, load and warmth are unknown).
    builds: input.nixBuilds !== undefined ? p.builds : p.builds.map(({ placement: _, ...b }) => b),
    statuses: p.statuses,
    refused,
    waitingPods,
    refusedPods: pods.refused,
    unbuildable: p.unbuildable,
    problems: [...input.analysis.problems, ...allowed.refused, ...pods.problems],
    warnings: input.analysis.warnings,
    drift: input.drift ?? [],
  };
}

export function exitCodeOf(report: DiffReport): number {
  return (
    (report.builds.length > 0 ? EXIT_BUILDS : 0) |
    (report.problems.length + report.unbuildable.length + report.refused > 0 ? EXIT_PROBLEMS : 0)
  );
}
