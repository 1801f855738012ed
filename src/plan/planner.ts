// The planner: a pure function from (what workloads need, what nodes are and hold) to the builds to
// start. No I/O, so it is tested exhaustively and shared by `enbi diff` and the controller.
import { attrKey } from '../flake/attr.ts';
import { formatFlakeRef } from '../flake/ref.ts';
import type { ContainerNeed, WorkloadNeeds } from '../contract/container-needs.ts';
import { sourceKey } from '../contract/container-needs.ts';
import type { BuildMode } from '../contract/annotations.ts';
import type { NodeView } from '../cluster/node-view.ts';
import { workloadId } from '../manifests/workloads.ts';
import { platformOf } from '../cluster/systems.ts';
import { describeWarm, type WarmBuild, warmFor, type WarmIndex } from './warmth.ts';
import { blockingTaintsTolerated, type PodScheduling, type Toleration, unfitReason } from './scheduling.ts';

/** spegel: one node of a system holding the image is enough (peers serve it); per-node: every node needing it must hold it. */
export type DistributionMode = 'spegel' | 'per-node';

export interface PlanInput {
  workloads: readonly WorkloadNeeds[];
  nodes: readonly NodeView[];
  mode: DistributionMode;
  /** Tolerations of enbi's build Jobs: a node tainted otherwise is never a builder. */
  builderTolerations?: readonly Toleration[];
  /** Builds running now, by node (the controller's NixBuilds that are Pending or Building). */
  activeBuilds?: ReadonlyMap<string, number>;
  /**
   * Running builds per node (default: no limit). A builder at the limit is passed over for another
   * capable node; when every capable node is at it, the build is queued on the best of them.
   */
  maxBuildsPerNode?: number;
  /** Builds that exist already (the controller's NixBuilds): not placed again; their load is in activeBuilds. */
  started?: (build: PlannedBuild) => boolean;
  /** Where each repository was last built (warmIndex of the NixBuilds): preferred builders within the limit. */
  warm?: WarmIndex;
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
  /** Every node able to build it is at maxBuildsPerNode: it waits for a free slot on `node`. */
  queued?: true;
  /** Why `node` builds it (warm, least loaded, native, ...): what the NixBuild's status.placement says. */
  placement?: string;
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
  // Drafts by build key, then by target node ('' in Spegel mode): no long-string concatenation per node.
  const drafts = new Map<string, Map<string, BuildDraft>>();
  const holders = new HolderIndex(input.nodes);
  for (const d of demands) {
    const status = input.mode === 'spegel' ? decideSpegel(d, holders) : decidePerNode(d);
    statuses.push(status);
    if (status.state !== 'missing') continue;
    let byTarget = drafts.get(d.key);
    if (byTarget === undefined) drafts.set(d.key, (byTarget = new Map()));
    const targets = input.mode === 'spegel' ? [''] : status.nodes;
    for (const target of targets) {
      let draft = byTarget.get(target);
      if (draft === undefined) {
        draft = { demand: d, target, images: new Set(), missingOn: new Set(), workloads: new Set(), eager: false };
        byTarget.set(target, draft);
      }
      draft.images.add(d.need.image);
      if (target === '') for (const n of status.nodes) draft.missingOn.add(n);
      else draft.missingOn.add(target);
      draft.workloads.add(d.workload);
      if (d.need.mode === 'eager') draft.eager = true;
    }
    status.buildId = targets.length === 1 && targets[0] !== '' ? buildIdOf(d.key, targets[0]!) : d.key;
  }
  const builds = [...drafts.values()].flatMap((m) => [...m.values()].map(finish)).sort((a, b) => compare(a.id, b.id));
  const unbuildable = assignBuilders(builds, input);
  return { builds, statuses, unbuildable };
}

interface BuildDraft {
  demand: Demand;
  /** The node the build is for in per-node mode, '' in Spegel mode. */
  target: string;
  images: Set<string>;
  missingOn: Set<string>;
  workloads: Set<string>;
  eager: boolean;
}

function buildIdOf(key: string, target: string): string {
  return target === '' ? key : `${key}@${target}`;
}

// Code-point order: deterministic and much faster than localeCompare on large plans.
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function finish(d: BuildDraft): PlannedBuild {
  const flake = d.demand.need.source.flake;
  return {
    id: buildIdOf(d.demand.key, d.target),
    flake: formatFlakeRef(flake),
    rev: d.demand.need.source.rev,
    attr: attrKey(flake.attr),
    system: d.demand.system,
    images: [...d.images].sort(),
    node: d.target === '' ? null : d.target,
    emulated: false,
    missingOn: [...d.missingOn].sort(),
    workloads: [...d.workloads].sort(),
    trigger: d.eager ? 'eager' : 'on-demand',
  };
}

function collectDemands(input: PlanInput, statuses: ImageStatus[]): Demand[] {
  const demands: Demand[] = [];
  // Many workloads share their constraints: compute each distinct set of candidate nodes once.
  const candidatesBySchedule = new Map<string, Map<string, NodeView[]>>();
  for (const { workload, needs } of input.workloads) {
    if (needs.length === 0) continue;
    const scheduleKey = JSON.stringify(workload.scheduling);
    let bySystem = candidatesBySchedule.get(scheduleKey);
    if (bySystem === undefined) {
      bySystem = groupBySystem(candidateNodes(workload.scheduling, input.nodes));
      candidatesBySchedule.set(scheduleKey, bySystem);
    }
    const id = workloadId(workload);
    for (const need of needs) {
      if (bySystem.size === 0) {
        statuses.push({
          workload: id,
          container: need.container,
          image: need.image,
          state: 'unschedulable',
          nodes: [],
          detail: 'no Ready node of a known system matches its scheduling constraints',
        });
        continue;
      }
      for (const [system, nodes] of [...bySystem].sort(([a], [b]) => compare(a, b))) {
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

function groupBySystem(nodes: readonly NodeView[]): Map<string, NodeView[]> {
  const out = new Map<string, NodeView[]>();
  for (const n of nodes) {
    if (n.system === undefined) continue;
    const list = out.get(n.system);
    if (list === undefined) out.set(n.system, [n]);
    else list.push(n);
  }
  return out;
}

/**
 * Which Ready nodes serve an image to a system's pods through Spegel, and which have lists that may be cut;
 * memoized per (image, system). A node of the system serves it when it holds the image; a node of another
 * system, when its agent reports that system's manifest under the name (the tag's index lists it there).
 */
class HolderIndex {
  private readonly readyBySystem: Map<string, NodeView[]>;
  private readonly otherHolders: NodeView[];
  private readonly memo = new Map<string, { holders: string[]; truncated: string[] }>();
  constructor(nodes: readonly NodeView[]) {
    const ready = nodes.filter((n) => n.ready);
    this.readyBySystem = groupBySystem(ready);
    this.otherHolders = ready.filter((n) => n.platformImages !== undefined && n.platformImages.size > 0);
  }
  lookup(image: string, system: string): { holders: string[]; truncated: string[] } {
    const key = `${image} ${system}`;
    let hit = this.memo.get(key);
    if (hit === undefined) {
      const peers = this.readyBySystem.get(system) ?? [];
      const p = platformOf(system);
      const want = p !== undefined ? `${p.os}/${p.arch}` : undefined;
      const across =
        want === undefined
          ? []
          : this.otherHolders.filter((n) => n.system !== system && n.platformImages!.get(image)?.has(want) === true);
      // A cut list leaves the image unknown on a node, unless kubelet there reports it absent.
      hit = {
        holders: [...peers.filter((n) => holds(n, image)), ...across].map((n) => n.name),
        truncated: peers.filter((n) => !n.imagesComplete && n.missing?.has(image) !== true).map((n) => n.name),
      };
      this.memo.set(key, hit);
    }
    return hit;
  }
}

const TRUNCATED = 'image lists may be truncated (nodeStatusMaxImages)';

/**
 * Whether a node holds an image: its list says so and kubelet there does not report it absent. kubelet's
 * ErrImageNeverPull is fresher than its own image list, which lags up to a status period (an image removed
 * by GC or by hand stays listed meanwhile).
 */
function holds(n: NodeView, image: string): boolean {
  return n.images.has(image) && n.missing?.has(image) !== true;
}

/** Spegel: the image is there if any Ready node of the system holds it; otherwise missing on every candidate. */
function decideSpegel(d: Demand, index: HolderIndex): ImageStatus {
  const { holders, truncated } = index.lookup(d.need.image, d.system);
  const base = { workload: d.workload, container: d.need.container, image: d.need.image, system: d.system };
  if (holders.length > 0) return { ...base, state: 'present', nodes: holders };
  if (truncated.length > 0) return { ...base, state: 'unknown', nodes: truncated, detail: TRUNCATED };
  return { ...base, state: 'missing', nodes: d.nodes.map((n) => n.name) };
}

/** Per node: every candidate node must hold the image itself. */
function decidePerNode(d: Demand): ImageStatus {
  const lacking = d.nodes.filter((n) => !holds(n, d.need.image));
  const known = (n: NodeView) => n.imagesComplete || n.missing?.has(d.need.image) === true;
  const missing = lacking.filter(known);
  const unknown = lacking.filter((n) => !known(n));
  const base = { workload: d.workload, container: d.need.container, image: d.need.image, system: d.system };
  if (missing.length > 0) return { ...base, state: 'missing', nodes: missing.map((n) => n.name) };
  if (unknown.length > 0) return { ...base, state: 'unknown', nodes: unknown.map((n) => n.name), detail: TRUNCATED };
  return { ...base, state: 'present', nodes: d.nodes.map((n) => n.name) };
}

/** Whether enbi's build Job can run on a node for a system: Ready, schedulable, allowed, able, taints tolerated. */
export function canBuild(n: NodeView, system: string, tolerations: readonly Toleration[] | undefined): boolean {
  return buildBlocker(n, system, tolerations) === undefined;
}

export type BuildBlocker = 'system' | 'not-ready' | 'cordoned' | 'not-allowed' | 'taints';

/** The first of canBuild's conditions a node fails for a system, or undefined when it can build it. */
export function buildBlocker(
  n: NodeView,
  system: string,
  tolerations: readonly Toleration[] | undefined,
): BuildBlocker | undefined {
  if (!n.buildSystems.includes(system)) return 'system';
  if (!n.ready) return 'not-ready';
  if (n.unschedulable) return 'cordoned';
  if (!n.builderAllowed) return 'not-allowed';
  if (!blockingTaintsTolerated(tolerations, n.taints)) return 'taints';
  return undefined;
}

export interface BuilderChoice {
  node: NodeView;
  /** The node is at the limit (as is every other able node): the build waits for a free slot. */
  full: boolean;
  /** Why this node: the first rule that set it apart from the next best (see chooseBuilder). */
  reason: string;
}

export interface BuilderQuery {
  system: string;
  /** Running builds by node. */
  load: ReadonlyMap<string, number>;
  /** Running builds per node (default: no limit). */
  maxPerNode?: number;
  /** Nodes that need the image themselves. */
  needs?: ReadonlySet<string>;
  /** Nodes whose stores are warm for this build: they built its repository for this system (warmth.ts). */
  warm?: ReadonlyMap<string, WarmBuild>;
}

/**
 * The builder for a system among nodes able to build it: a node under the per-node limit if there is
 * one, one whose imports Spegel can spread (containerd ≥ 2: NodeView.spegelSource), native before
 * emulated, then the warmest (the one that built the same repository for the system most recently: its
 * store holds the dependencies the next revision shares), then the least loaded (spreading builds), then
 * one that needs the image itself (no Spegel transfer), then by name. Warmth never outranks Spegel or native
 * building, and counts only under the limit: when every able node is full, load decides which the build
 * waits for. Pure.
 */
export function chooseBuilder(able: readonly NodeView[], q: BuilderQuery): BuilderChoice | undefined {
  const { system, load } = q;
  const max = q.maxPerNode ?? Infinity;
  const needs = q.needs ?? new Set<string>();
  const warm = q.warm ?? new Map<string, WarmBuild>();
  const loadOf = (n: NodeView) => load.get(n.name) ?? 0;
  const warmAt = (n: NodeView) => warm.get(n.name)?.completedAt ?? -1;
  // Negative when a is better, positive when b is; its magnitude is the rule that decided (RULES[|d| - 1]).
  const order = (a: NodeView, b: NodeView, warmth: boolean): number =>
    sign(Number(a.spegelSource === false) - Number(b.spegelSource === false)) * 1 ||
    sign(Number(a.system !== system) - Number(b.system !== system)) * 2 ||
    (warmth ? sign(warmAt(b) - warmAt(a)) * 3 : 0) ||
    sign(loadOf(a) - loadOf(b)) * 4 ||
    sign(Number(!needs.has(a.name)) - Number(!needs.has(b.name))) * 5 ||
    compare(a.name, b.name) * 6;
  const free = { best: undefined as NodeView | undefined, next: undefined as NodeView | undefined };
  const full = { best: undefined as NodeView | undefined, next: undefined as NodeView | undefined };
  for (const n of able) {
    const warmth = loadOf(n) < max;
    const slot = warmth ? free : full;
    if (slot.best === undefined || order(n, slot.best, warmth) < 0) {
      slot.next = slot.best;
      slot.best = n;
    } else if (slot.next === undefined || order(n, slot.next, warmth) < 0) slot.next = n;
  }
  const isFull = free.best === undefined;
  const { best, next } = isFull ? full : free;
  if (best === undefined) return undefined;
  let reason: string;
  if (next === undefined)
    reason =
      full.best === undefined
        ? `the only node able to build ${system}`
        : `the only able node under the limit of ${runningBuilds(max)}`;
  else {
    const rule = Math.abs(order(best, next, !isFull));
    reason = ruleReason(rule, best, next);
    // As warm as the next best: warmth still set both apart from the colder nodes.
    if (!isFull && rule > 3 && warm.has(best.name))
      reason = `${ruleReason(3, best, next)}; as warm as ${next.name}, ${reason}`;
  }
  if (isFull) reason = `every able node is at the limit of ${runningBuilds(max)}: waits for a slot here (${reason})`;
  return { node: best, full: isFull, reason: passedOver(best) + reason };

  function ruleReason(rule: number, a: NodeView, b: NodeView): string {
    switch (rule) {
      case 1:
        return `its imports spread through Spegel (containerd ≥ 2); ${b.name}'s cannot`;
      case 2:
        return `native ${system}; ${b.name} would emulate it`;
      case 3: {
        const w = warm.get(a.name)!;
        return `warm: ${describeWarm(w, w === warmest())}`;
      }
      case 4:
        return `least loaded: ${runningBuilds(loadOf(a))}, ${b.name} has ${loadOf(b)}`;
      case 5:
        return `least loaded (${runningBuilds(loadOf(a))}) and needs the image itself; ${b.name} does not`;
      default:
        return `least loaded (${runningBuilds(loadOf(a))}), first by name beside ${b.name}`;
    }
  }

  /** The most recent warm build, ties by node name. */
  function warmest(): WarmBuild | undefined {
    let top: WarmBuild | undefined;
    for (const w of warm.values())
      if (
        top === undefined ||
        w.completedAt > top.completedAt ||
        (w.completedAt === top.completedAt && w.node < top.node)
      )
        top = w;
    return top;
  }

  /** Why the warmest node is not the one chosen, when it is not: a reader of the status should not have to guess. */
  function passedOver(chosen: NodeView): string {
    const w = warmest();
    if (w === undefined || w.node === chosen.name) return '';
    const n = able.find((x) => x.name === w.node);
    const why =
      n === undefined
        ? 'cannot build now (not Ready, cordoned, tainted or not a builder)'
        : loadOf(n) >= max
          ? `is at the limit of ${runningBuilds(max)}`
          : n.system !== system
            ? `would emulate ${system}`
            : n.spegelSource === false
              ? 'cannot spread its imports through Spegel'
              : undefined;
    return why !== undefined ? `${w.node} ${describeWarm(w, true)} but ${why}; ` : '';
  }
}

function runningBuilds(n: number): string {
  return `${n} running build${n === 1 ? '' : 's'}`;
}

function sign(n: number): number {
  return n < 0 ? -1 : n > 0 ? 1 : 0;
}

/** Picks a builder for each Spegel-mode build and checks the per-node ones; returns what cannot be built. */
function assignBuilders(builds: PlannedBuild[], input: PlanInput): string[] {
  const unbuildable: string[] = [];
  const load = new Map(input.activeBuilds ?? []);
  const max = input.maxBuildsPerNode ?? Infinity;
  const byName = new Map(input.nodes.map((n) => [n.name, n]));
  const buildersBySystem = new Map<string, NodeView[]>();
  for (const build of builds) {
    if (input.started?.(build) === true) continue;
    if (build.node !== null) {
      const node = byName.get(build.node);
      if (node === undefined || !canBuild(node, build.system, input.builderTolerations)) {
        unbuildable.push(
          `${build.id}: node ${build.node} needs the image but cannot run enbi's build (not Ready, cordoned, tainted or labelled ${'enbi.hrzn.ee/builder=false'})`,
        );
        build.node = null;
        continue;
      }
      build.emulated = node.system !== build.system;
      build.placement = 'the node that needs the image builds it (per-node mode)';
      if ((load.get(node.name) ?? 0) >= max) build.queued = true;
      else load.set(node.name, (load.get(node.name) ?? 0) + 1);
      continue;
    }
    let able = buildersBySystem.get(build.system);
    if (able === undefined) {
      able = input.nodes.filter((n) => canBuild(n, build.system, input.builderTolerations));
      buildersBySystem.set(build.system, able);
    }
    const choice = chooseBuilder(able, {
      system: build.system,
      load,
      maxPerNode: max,
      needs: new Set(build.missingOn),
      warm: warmFor(input.warm, build.flake, build.system),
    });
    if (choice === undefined) {
      unbuildable.push(
        `${build.id}: no Ready, schedulable node can build ${build.system} (a native node, or one labelled enbi.hrzn.ee/builds.${build.system}=true)`,
      );
      continue;
    }
    build.node = choice.node.name;
    build.placement = choice.reason;
    build.emulated = choice.node.system !== build.system;
    if (choice.full) build.queued = true;
    else load.set(choice.node.name, (load.get(choice.node.name) ?? 0) + 1);
  }
  return unbuildable;
}
