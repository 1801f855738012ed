// `enbi diff`'s result: the plan plus everything the user must know to trust it, and its exit code.
import type { NodeView } from '../cluster/node-view.ts';
import type { Analysis } from '../pipeline/analyze.ts';
import type { DistributionMode, Plan } from '../plan/planner.ts';
import { plan } from '../plan/planner.ts';
import type { Problem } from '../problems.ts';
import type { Toleration } from '../plan/scheduling.ts';

/** Exit codes: bit 2 = builds would start, bit 4 = problems in the input; 1 = no plan could be made. */
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

export interface DiffReport {
  source: SourceInfo;
  nodesFrom: string;
  mode: DistributionMode;
  nodes: { name: string; system?: string; buildSystems: string[]; ready: boolean; images: number; imagesComplete: boolean; imageSource: string }[];
  builds: Plan['builds'];
  statuses: Plan['statuses'];
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
}

export function buildReport(input: DiffInput): DiffReport {
  const p = plan({ workloads: input.analysis.workloads, nodes: input.nodes, mode: input.mode, builderTolerations: input.builderTolerations ?? [] });
  return {
    source: input.source,
    nodesFrom: input.nodesFrom,
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
    builds: p.builds,
    statuses: p.statuses,
    unbuildable: p.unbuildable,
    problems: input.analysis.problems,
    warnings: input.analysis.warnings,
    drift: input.drift ?? [],
  };
}

export function exitCodeOf(report: DiffReport): number {
  return (report.builds.length > 0 ? EXIT_BUILDS : 0) | (report.problems.length + report.unbuildable.length > 0 ? EXIT_PROBLEMS : 0);
}
