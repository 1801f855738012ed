// The planner: a pure function from (what workloads need, what nodes are and hold) to the builds to
// start. No I/O, so it is tested exhaustively and shared by `enbi diff` and the controller.
import { attrKey } from '../flake/attr.ts';
import { formatFlakeRef } from '../flake/ref.ts';
import type { ContainerNeed, WorkloadNeeds } from '../contract/container-needs.ts';
import { sourceKey } from '../contract/container-needs.ts';
import type { BuildMode } from '../contract/annotations.ts';
import type { NodeView } from '../cluster/node-view.ts';
import { workloadId } from '../manifests/workloads.ts';
import { blockingTaintsTolerated, type PodScheduling, type Toleration, unfitReason } from './scheduling.ts';

/** spegel: one node of a system holding the image is enough (peers serve it); per-node: every node needing it must hold it. */
export type DistributionMode = 'spegel' | 'per-node';

export interface PlanInput {
  workloads: readonly WorkloadNeeds[];
  nodes: readonly NodeView[];
  mode: DistributionMode;
  /** Tolerations of enbi's build Jobs: a node tainted otherwise is never a builder. */
  builderTolerations?: readonly Toleration[];
}

export interface PlannedBuild {
  /** Stable identity: one build per (source, attribute, system) — and node in per-node mode. */
  id: string;
  /** The pinned flake with its short attribute, as Nix is asked to build it. */
  flake: string;
  rev: string;
  attr: string;
  system: string;
  /** Image references to import the result under (several manifests may name the same build). */
  images: string[];
  /** Builder and import target; null when no node can build this system. */
  node: string | null;
  emulated: boolean;
  /** Nodes that need the image and lack it: the reason for the build. */
  missingOn: string[];
  workloads: string[];
  /** on-demand: started once a pod lands on a node of this system; eager: started at once. */
  trigger: BuildMode;
}

export type ImageState = 'present' | 'missing' | 'unknown' | 'unschedulable';

export interface ImageStatus {
  workload: string;
  container: string;
  image: string;
  system?: string;
  state: ImageState;
  /** present: nodes holding it; missing: nodes lacking it; unknown: nodes whose lists may be truncated. */
  nodes: string[];
  buildId?: string;
  detail?: string;
}

export interface Plan {
  builds: PlannedBuild[];
  statuses: ImageStatus[];
  /** Needs that no node can build: reported, never silently dropped. */
  unbuildable: string[];
}

interface Demand {
  key: string;
  need: ContainerNeed;
  system: string;
  workload: string;
  /** Nodes of this system the workload can run on. */
  nodes: NodeView[];
}

export function plan(input: PlanInput): Plan {
  const statuses: ImageStatus[] = [];
  const demands = collectDemands(input, statuses);
  const builds = new Map<string, PlannedBuild>();
  const readyBySystem = groupReadyBySystem(input.nodes);
  for (const d of demands) {
    const missingOn = input.mode === 'spegel' ? decideSpegel(d, readyBySystem, statuses) : decidePerNode(d, statuses);
    if (missingOn.length === 0) continue;
    const targets = input.mode === 'spegel' ? [undefined] : missingOn;
    for (const target of targets) {
      const id = target === undefined ? d.key : `${d.key}@${target}`;
      let build = builds.get(id);
      if (build === undefined) {
        build = newBuild(id, d, target);
        builds.set(id, build);
      }
      mergeInto(build, d, target === undefined ? missingOn : [target]);
    }
    statuses[statuses.length - 1]!.buildId = targets.length === 1 ? (targets[0] === undefined ? d.key : `${d.key}@${targets[0]}`) : d.key;
  }
  const unbuildable = assignBuilders([...builds.values()], input);
  return { builds: [...builds.values()].sort((a, b) => a.id.localeCompare(b.id)), statuses, unbuildable };
}

function collectDemands(input: PlanInput, statuses: ImageStatus[]): Demand[] {
  const demands: Demand[] = [];
  // Many workloads share their constraints: compute each distinct set of candidate nodes once.
  const candidatesBySchedule = new Map<string, NodeView[]>();
  for (const { workload, needs } of input.workloads) {
    if (needs.length === 0) continue;
    const scheduleKey = JSON.stringify(workload.scheduling);
    let candidates = candidatesBySchedule.get(scheduleKey);
    if (candidates === undefined) {
      candidates = candidateNodes(workload.scheduling, input.nodes);
      candidatesBySchedule.set(scheduleKey, candidates);
    }
    const bySystem = new Map<string, NodeView[]>();
    for (const n of candidates) if (n.system !== undefined) bySystem.set(n.system, [...(bySystem.get(n.system) ?? []), n]);
    const id = workloadId(workload);
    for (const need of needs) {
      if (bySystem.size === 0) {
        statuses.push({ workload: id, container: need.container, image: need.image, state: 'unschedulable', nodes: [], detail: 'no Ready node of a known system matches its scheduling constraints' });
        continue;
      }
      for (const [system, nodes] of [...bySystem].sort(([a], [b]) => a.localeCompare(b))) {
        const key = `${sourceKey(need.source.flake)}#${attrKey(need.source.flake.attr)}@${system}`;
        demands.push({ key, need, system, workload: id, nodes });
      }
    }
  }
  return demands;
}

export function candidateNodes(scheduling: PodScheduling, nodes: readonly NodeView[]): NodeView[] {
  return nodes.filter((n) => unfitReason(scheduling, n) === undefined);
}

function groupReadyBySystem(nodes: readonly NodeView[]): Map<string, NodeView[]> {
  const out = new Map<string, NodeView[]>();
  for (const n of nodes) if (n.ready && n.system !== undefined) out.set(n.system, [...(out.get(n.system) ?? []), n]);
  return out;
}

/** Spegel: the image is there if any Ready node of the system holds it; otherwise missing on every candidate. */
function decideSpegel(d: Demand, readyBySystem: Map<string, NodeView[]>, statuses: ImageStatus[]): string[] {
  const peers = readyBySystem.get(d.system) ?? [];
  const holders = peers.filter((n) => n.images.has(d.need.image));
  const base = { workload: d.workload, container: d.need.container, image: d.need.image, system: d.system };
  if (holders.length > 0) {
    statuses.push({ ...base, state: 'present', nodes: holders.map((n) => n.name) });
    return [];
  }
  const truncated = peers.filter((n) => !n.imagesComplete);
  if (truncated.length > 0) {
    statuses.push({ ...base, state: 'unknown', nodes: truncated.map((n) => n.name), detail: 'image lists may be truncated (nodeStatusMaxImages)' });
    return [];
  }
  const missingOn = d.nodes.map((n) => n.name);
  statuses.push({ ...base, state: 'missing', nodes: missingOn });
  return missingOn;
}

/** Per node: every candidate node must hold the image itself. */
function decidePerNode(d: Demand, statuses: ImageStatus[]): string[] {
  const lacking = d.nodes.filter((n) => !n.images.has(d.need.image));
  const unknown = lacking.filter((n) => !n.imagesComplete);
  const missing = lacking.filter((n) => n.imagesComplete);
  const base = { workload: d.workload, container: d.need.container, image: d.need.image, system: d.system };
  if (missing.length > 0) statuses.push({ ...base, state: 'missing', nodes: missing.map((n) => n.name) });
  else if (unknown.length > 0) statuses.push({ ...base, state: 'unknown', nodes: unknown.map((n) => n.name), detail: 'image lists may be truncated (nodeStatusMaxImages)' });
  else statuses.push({ ...base, state: 'present', nodes: d.nodes.map((n) => n.name) });
  return missing.map((n) => n.name);
}

function newBuild(id: string, d: Demand, target: string | undefined): PlannedBuild {
  const flake = d.need.source.flake;
  return {
    id,
    flake: formatFlakeRef(flake),
    rev: d.need.source.rev,
    attr: attrKey(flake.attr),
    system: d.system,
    images: [],
    node: target ?? null,
    emulated: false,
    missingOn: [],
    workloads: [],
    trigger: 'on-demand',
  };
}

function mergeInto(build: PlannedBuild, d: Demand, missingOn: string[]): void {
  addSorted(build.images, d.need.image);
  for (const n of missingOn) addSorted(build.missingOn, n);
  addSorted(build.workloads, d.workload);
  if (d.need.mode === 'eager') build.trigger = 'eager';
}

function addSorted(list: string[], value: string): void {
  if (!list.includes(value)) {
    list.push(value);
    list.sort();
  }
}

/** Picks a builder for each Spegel-mode build and checks the per-node ones; returns what cannot be built. */
function assignBuilders(builds: PlannedBuild[], input: PlanInput): string[] {
  const unbuildable: string[] = [];
  const load = new Map<string, number>();
  const canBuild = (n: NodeView, system: string) =>
    n.ready && !n.unschedulable && n.builderAllowed && n.buildSystems.includes(system) && blockingTaintsTolerated(input.builderTolerations, n.taints);
  const byName = new Map(input.nodes.map((n) => [n.name, n]));
  for (const build of [...builds].sort((a, b) => a.id.localeCompare(b.id))) {
    if (build.node !== null) {
      const node = byName.get(build.node);
      if (node === undefined || !canBuild(node, build.system)) {
        unbuildable.push(`${build.id}: node ${build.node} needs the image but cannot run enbi's build (not Ready, cordoned, tainted or labelled ${'enbi.hrzn.ee/builder=false'})`);
        build.node = null;
      } else build.emulated = node.system !== build.system;
      continue;
    }
    const rank = (n: NodeView) => (n.system === build.system ? 0 : 2) + (build.missingOn.includes(n.name) ? 0 : 1);
    const best = input.nodes
      .filter((n) => canBuild(n, build.system))
      .sort((a, b) => rank(a) - rank(b) || (load.get(a.name) ?? 0) - (load.get(b.name) ?? 0) || a.name.localeCompare(b.name))[0];
    if (best === undefined) {
      unbuildable.push(`${build.id}: no Ready, schedulable node can build ${build.system} (a native node, or one labelled enbi.hrzn.ee/builds.${build.system}=true)`);
      continue;
    }
    build.node = best.name;
    build.emulated = best.system !== build.system;
    load.set(best.name, (load.get(best.name) ?? 0) + 1);
  }
  return unbuildable;
}
