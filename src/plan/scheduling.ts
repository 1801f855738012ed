// Which nodes a pod can be scheduled to, from its spec alone: nodeName, nodeSelector, required node
// affinity, and taints against tolerations. The subset of the scheduler's filters that depends on
// node labels and taints; resource fit is left to the scheduler (it changes by the second).

export interface Toleration {
  key?: string;
  operator?: 'Exists' | 'Equal';
  value?: string;
  effect?: string;
}

export interface Taint {
  key: string;
  value?: string;
  effect: string;
}

export interface NodeSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | 'Gt' | 'Lt';
  values?: string[];
}

export interface NodeSelectorTerm {
  matchExpressions?: NodeSelectorRequirement[];
  matchFields?: NodeSelectorRequirement[];
}

export interface PodScheduling {
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  requiredTerms?: NodeSelectorTerm[];
  tolerations?: Toleration[];
  /** DaemonSet pods tolerate cordoned and not-ready nodes implicitly. */
  daemonSet?: boolean;
}

export interface SchedulableNode {
  name: string;
  labels: Record<string, string>;
  taints: Taint[];
  ready: boolean;
  unschedulable: boolean;
}

export function tolerates(tolerations: readonly Toleration[] | undefined, taint: Taint): boolean {
  return (tolerations ?? []).some((t) => {
    if (t.effect !== undefined && t.effect !== '' && t.effect !== taint.effect) return false;
    if (t.key === undefined || t.key === '') return t.operator === 'Exists';
    if (t.key !== taint.key) return false;
    return t.operator === 'Exists' || (t.value ?? '') === (taint.value ?? '');
  });
}

/** Taints that keep new pods off a node: NoSchedule and NoExecute (PreferNoSchedule is only a preference). */
export function blockingTaintsTolerated(
  tolerations: readonly Toleration[] | undefined,
  taints: readonly Taint[],
): boolean {
  return taints.every((taint) => taint.effect === 'PreferNoSchedule' || tolerates(tolerations, taint));
}

function matchesRequirement(value: string | undefined, req: NodeSelectorRequirement): boolean {
  const values = req.values ?? [];
  switch (req.operator) {
    case 'In':
      return value !== undefined && values.includes(value);
    case 'NotIn':
      return value === undefined || !values.includes(value);
    case 'Exists':
      return value !== undefined;
    case 'DoesNotExist':
      return value === undefined;
    case 'Gt':
    case 'Lt': {
      const [bound] = values;
      if (value === undefined || bound === undefined || !/^-?\d+$/.test(value) || !/^-?\d+$/.test(bound)) return false;
      return req.operator === 'Gt' ? BigInt(value) > BigInt(bound) : BigInt(value) < BigInt(bound);
    }
    default:
      return false;
  }
}

function matchesTerm(node: SchedulableNode, term: NodeSelectorTerm): boolean {
  const exprs = term.matchExpressions ?? [];
  const fields = term.matchFields ?? [];
  // An empty term matches nothing, as in the scheduler.
  if (exprs.length === 0 && fields.length === 0) return false;
  return (
    exprs.every((req) => matchesRequirement(node.labels[req.key], req)) &&
    fields.every((req) => matchesRequirement(req.key === 'metadata.name' ? node.name : undefined, req))
  );
}

export type Unfit = 'not-ready' | 'cordoned' | 'node-name' | 'node-selector' | 'affinity' | 'taint';

/** Why a pod cannot go to a node, or undefined when it can. */
export function unfitReason(pod: PodScheduling, node: SchedulableNode): Unfit | undefined {
  if (pod.nodeName !== undefined) {
    // A pod bound by name bypasses the scheduler: kubelet admits it whatever the node's taints or cordon.
    return pod.nodeName === node.name ? undefined : 'node-name';
  }
  if (!node.ready && !pod.daemonSet) return 'not-ready';
  if (node.unschedulable && !pod.daemonSet && pod.nodeName === undefined) return 'cordoned';
  for (const [key, value] of Object.entries(pod.nodeSelector ?? {})) {
    if (node.labels[key] !== value) return 'node-selector';
  }
  if (
    pod.requiredTerms !== undefined &&
    pod.requiredTerms.length > 0 &&
    !pod.requiredTerms.some((t) => matchesTerm(node, t))
  ) {
    return 'affinity';
  }
  const taints = pod.daemonSet ? node.taints.filter((t) => !DAEMONSET_TOLERATED.has(t.key)) : node.taints;
  if (!blockingTaintsTolerated(pod.tolerations, taints)) return 'taint';
  return undefined;
}

// The DaemonSet controller adds these tolerations to its pods.
const DAEMONSET_TOLERATED = new Set([
  'node.kubernetes.io/not-ready',
  'node.kubernetes.io/unreachable',
  'node.kubernetes.io/disk-pressure',
  'node.kubernetes.io/memory-pressure',
  'node.kubernetes.io/pid-pressure',
  'node.kubernetes.io/unschedulable',
]);
