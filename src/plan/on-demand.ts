// The on-demand half of the plan: bound pods waiting for an image their node lacks. Git (and the cluster
// admin) decide what is built; a pod only says where. A waiting pod leads to a build only when it belongs to a
// workload of the Git source (its own name for a Pod in Git, or its owner chain: ReplicaSet → Deployment,
// StatefulSet, DaemonSet, Job → CronJob), its node is one Git lets that workload run on (nodeName,
// nodeSelector, required node affinity: an owner reference is the pod's own word, anyone who may create
// pods there can forge it), and its container runs exactly the image Git names for it; the flake
// and the image reference then come from Git, never from the pod. Pods in namespaces the admin listed as
// trusted may declare their own flake (clusters without a Git source), but never for an image name Git
// declares with another flake (claims.ts). Everything else is refused, with the reason, for an Event on the
// pod and for `enbi diff`. Pure.
import type { V1Pod } from '@kubernetes/client-node';
import type { NodeView } from '../cluster/node-view.ts';
import {
  type ContainerNeed,
  containerNeedsOf,
  type LockIndex,
  type WorkloadNeeds,
} from '../contract/container-needs.ts';
import { normalizeImageName } from '../image/reference.ts';
import { type BuildPolicy, needRefusal } from './allow.ts';
import { collidingClaims, describeClaims, gitClaims, needKey } from './claims.ts';
import { formatFlakeRef } from '../flake/ref.ts';
import { schedulingOf, type Workload, workloadId } from '../manifests/workloads.ts';
import type { Analysis } from '../pipeline/analyze.ts';
import type { Problem } from '../problems.ts';
import { type PodScheduling, unfitReason } from './scheduling.ts';

/**
 * kubelet's proof that a node lacks an image. A failed pull is no proof (the registry may refuse, or the pod
 * may name someone else's image with imagePullPolicy Always): only the node's complete image list is then.
 */
export const IMAGE_ABSENT_REASON = 'ErrImageNeverPull';
const PULL_FAILURES = new Set(['ErrImagePull', 'ImagePullBackOff']);

/** A container of a bound pod whose image its node lacks. */
export interface ImageWait {
  container: string;
  image: string;
  /** kubelet's waiting reason, or why enbi thinks so before kubelet says. */
  reason: string;
  /** True when kubelet proves it (ErrImageNeverPull), false when only the node's complete image list says so. */
  reported: boolean;
}

/** The containers of a bound, live pod with enbi annotations that wait for an image their node lacks. */
export function imageWaits(pod: V1Pod, nodes: ReadonlyMap<string, NodeView>): ImageWait[] {
  const nodeName = pod.spec?.nodeName;
  if (nodeName === undefined || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return [];
  // A pod being deleted waits for nothing (and its namespace may be going, refusing Events).
  if (pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null) return [];
  const annotations = pod.metadata?.annotations ?? {};
  if (!Object.keys(annotations).some((k) => k.startsWith('enbi.hrzn.ee/'))) return [];
  const statuses = [...(pod.status?.containerStatuses ?? []), ...(pod.status?.initContainerStatuses ?? [])];
  const node = nodes.get(nodeName);
  const listedMissing = (image: string) =>
    node !== undefined && node.imagesComplete && !node.images.has(normalizeImageName(image));
  const out: ImageWait[] = [];
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    if (c.image === undefined) continue;
    const s = statuses.find((x) => x.name === c.name);
    const reason = s?.state?.waiting?.reason;
    if (reason === IMAGE_ABSENT_REASON) out.push({ container: c.name, image: c.image, reason, reported: true });
    else if (reason !== undefined && PULL_FAILURES.has(reason) && listedMissing(c.image)) {
      out.push({
        container: c.name,
        image: c.image,
        reason: `${reason}, and not in the node's complete image list`,
        reported: false,
      });
    } else if (s === undefined && listedMissing(c.image)) {
      // Not started yet: missing if the node's complete image list lacks it.
      out.push({ container: c.name, image: c.image, reason: 'not on the node (its image list)', reported: false });
    }
  }
  return out;
}

/** A pod waiting for an image, as `enbi diff` shows it and the controller logs it. */
export interface WaitingPod extends ImageWait {
  namespace: string;
  name: string;
  node: string;
  /** Its workload id in the plan (`Pod ns/name`). */
  workload: string;
  /** The Git workload it was matched to (`Deployment ns/app`), or `trusted namespace`. */
  via: string;
}

/** A waiting pod enbi builds nothing for, and why: said on the pod (an Event) and in `enbi diff`. */
export interface RefusedPod {
  namespace: string;
  name: string;
  uid?: string;
  node: string;
  container: string;
  image: string;
  reason: string;
}

export interface TrustInput {
  /** The Git source's workloads (absent: no source, only trusted namespaces can build). */
  analysis: Analysis | undefined;
  locks: LockIndex;
  /** Namespaces whose pods may declare their own flake (opt-in, for clusters without a Git source). */
  trustedNamespaces: readonly string[];
  /** What may be built and written at all; absent (enbi diff without a configuration): anything. */
  policy?: BuildPolicy;
  /** A Git source is configured and not read yet: trusted pods are refused until it is (see claims.ts). */
  sourcePending?: boolean;
}

export interface OnDemand {
  workloads: WorkloadNeeds[];
  waiting: WaitingPod[];
  refused: RefusedPod[];
  problems: Problem[];
}

/** Waiting pods as workloads pinned to their nodes, each with what Git (or a trusted namespace) says it needs. */
export function podWorkloads(
  pods: readonly V1Pod[],
  nodes: ReadonlyMap<string, NodeView>,
  trust: TrustInput,
): OnDemand {
  const git = gitIndex(trust.analysis);
  const claims = gitClaims(trust.analysis?.workloads);
  const trusted = new Set(trust.trustedNamespaces);
  let files: Map<string, string> | undefined;
  const out: OnDemand = { workloads: [], waiting: [], refused: [], problems: [] };
  for (const pod of pods) {
    const waits = imageWaits(pod, nodes);
    if (waits.length === 0) continue;
    const w = workloadOfPod(pod);
    const id = workloadId(w);
    const node = pod.spec?.nodeName ?? '';
    const refuse = (wait: ImageWait, reason: string) =>
      out.refused.push({
        namespace: w.namespace,
        name: w.name,
        ...(pod.metadata?.uid !== undefined ? { uid: pod.metadata.uid } : {}),
        node,
        container: wait.container,
        image: wait.image,
        reason,
      });
    const owner = ownerWorkloads(pod)
      .map((o) => git.get(key(w.namespace, o.kind, o.name)))
      .find((x) => x !== undefined);
    let needs: ContainerNeed[];
    let via: string;
    if (owner !== undefined) {
      via = workloadId(owner.workload);
      // The owner reference and labels are the pod's own word: anyone who may create pods in the namespace
      // can write them. What they cannot change is where Git lets the workload run: a pod on another node
      // gets nothing, so a forged pod can only ask for the builds the workload's own pods could.
      const outside = outsideWorkload(owner.workload.scheduling, node, nodes.get(node));
      if (outside !== undefined) {
        for (const wait of waits)
          refuse(
            wait,
            `the pod claims to belong to ${via} in Git, but ${outside}: enbi builds for a workload only on the nodes Git lets it run on`,
          );
        continue;
      }
      needs = [];
      for (const wait of waits) {
        const need = owner.needs.find((n) => n.container === wait.container);
        if (need === undefined) refuse(wait, `${via} in Git builds no image for container ${wait.container}`);
        else if (normalizeImageName(wait.image) !== need.image)
          refuse(wait, `container ${wait.container} runs ${wait.image}, but ${via} in Git names ${need.image} for it`);
        else if (!needs.includes(need)) needs.push(need);
      }
    } else if (trusted.has(w.namespace)) {
      via = 'trusted namespace';
      if (trust.sourcePending === true) {
        // Git's claims on image names are not known yet: nothing a trusted pod declares is granted before.
        for (const wait of waits)
          refuse(
            wait,
            `the Git source has not been read yet: pods of trusted namespace ${w.namespace} are planned once it is, so that no image name Git declares is granted to another flake first`,
          );
        continue;
      }
      w.file = (files ??= manifestFiles(trust.analysis)).get(`${w.namespace}\0${sortedEnbi(w.annotations)}`) ?? '';
      const result = containerNeedsOf(w, trust.locks);
      out.problems.push(...result.problems);
      needs = result.needs;
    } else {
      const owners = ownerWorkloads(pod).map((o) => `${o.kind} ${w.namespace}/${o.name}`);
      const reason = `no workload of the Git source matches this pod (${owners.length > 0 ? `looked for ${owners.join(', ')}` : 'it has no owner enbi knows'}), and namespace ${w.namespace} is not among trustedNamespaces: enbi builds what Git declares, not what a pod asks for`;
      for (const wait of waits) refuse(wait, reason);
      continue;
    }
    if (trust.policy !== undefined) {
      const policy = trust.policy;
      needs = needs.filter((need) => {
        const why = needRefusal(need, policy);
        if (why !== undefined) for (const wait of waits) if (wait.container === need.container) refuse(wait, why);
        return why === undefined;
      });
    }
    if (owner === undefined) {
      // One owner per image name: a name Git declares is built from Git's flake only, never the pod's.
      needs = needs.filter((need) => {
        const hit = collidingClaims(claims, need.image, needKey(need));
        if (hit.length === 0) return true;
        const why = `image ${need.image} is claimed twice: ${describeClaims(hit)}, and pod ${w.namespace}/${w.name} (trusted namespace) declares ${formatFlakeRef(need.source.flake)} for container ${need.container}. An image name Git declares is built only from the flake Git names for it`;
        for (const wait of waits) if (wait.container === need.container) refuse(wait, why);
        return false;
      });
    }
    if (needs.length > 0) out.workloads.push({ workload: w, needs });
    const built = new Set(needs.map((n) => n.container));
    for (const wait of waits)
      if (built.has(wait.container))
        out.waiting.push({ ...wait, namespace: w.namespace, name: w.name, node, workload: id, via });
  }
  return out;
}

/** The workloads a pod may belong to, nearest first, from its controller reference and the names Kubernetes derives. */
export function ownerWorkloads(pod: V1Pod): { kind: string; name: string }[] {
  const owner = pod.metadata?.ownerReferences?.find((o) => o.controller === true);
  if (owner === undefined) return [{ kind: 'Pod', name: pod.metadata?.name ?? '' }];
  switch (owner.kind) {
    case 'ReplicaSet': {
      // A Deployment's ReplicaSet is named <deployment>-<pod-template-hash>, and its pods carry that hash.
      const hash = pod.metadata?.labels?.['pod-template-hash'];
      const out = [{ kind: 'ReplicaSet', name: owner.name }];
      if (hash !== undefined && hash !== '' && owner.name.endsWith(`-${hash}`))
        out.push({ kind: 'Deployment', name: owner.name.slice(0, -hash.length - 1) });
      return out;
    }
    case 'Job': {
      // A CronJob's Jobs are named <cronjob>-<scheduled time in minutes>.
      const m = /^(.+)-\d+$/.exec(owner.name);
      return [{ kind: 'Job', name: owner.name }, ...(m !== null ? [{ kind: 'CronJob', name: m[1]! }] : [])];
    }
    case 'StatefulSet':
    case 'DaemonSet':
      return [{ kind: owner.kind, name: owner.name }];
    default:
      return [];
  }
}

/**
 * Why a Git workload could never run on this node (its nodeName, nodeSelector or required node affinity),
 * or undefined when it could. Taints, cordons and readiness are left out: they change after a pod is bound.
 */
export function outsideWorkload(
  scheduling: PodScheduling,
  nodeName: string,
  node: NodeView | undefined,
): string | undefined {
  const placement: PodScheduling = {
    ...(scheduling.nodeName !== undefined ? { nodeName: scheduling.nodeName } : {}),
    ...(scheduling.nodeSelector !== undefined ? { nodeSelector: scheduling.nodeSelector } : {}),
    ...(scheduling.requiredTerms !== undefined ? { requiredTerms: scheduling.requiredTerms } : {}),
  };
  if (placement.nodeName !== undefined && placement.nodeName !== nodeName)
    return `Git binds it to node ${placement.nodeName}, not ${nodeName}`;
  const constrained = placement.nodeSelector !== undefined || (placement.requiredTerms?.length ?? 0) > 0;
  if (!constrained) return undefined;
  if (node === undefined) return `its node ${nodeName} is not known to enbi, so Git's placement cannot be checked`;
  switch (unfitReason(placement, { ...node, ready: true, unschedulable: false, taints: [] })) {
    case 'node-selector':
      return `its nodeSelector ${JSON.stringify(placement.nodeSelector)} excludes node ${nodeName}`;
    case 'affinity':
      return `its required node affinity excludes node ${nodeName}`;
    default:
      return undefined;
  }
}

/**
 * The node views with what waiting pods' kubelets prove absent added as known missing: a capped image list
 * cannot say an image is missing, but kubelet's ErrImageNeverPull can.
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

function workloadOfPod(pod: V1Pod): Workload {
  const containers = [
    ...(pod.spec?.initContainers ?? []).map((c) => ({ c, init: true })),
    ...(pod.spec?.containers ?? []).map((c) => ({ c, init: false })),
  ];
  return {
    kind: 'Pod',
    namespace: pod.metadata?.namespace ?? 'default',
    name: pod.metadata?.name ?? '',
    annotations: pod.metadata?.annotations ?? {},
    containers: containers.map(({ c, init }) => ({
      name: c.name,
      init,
      ...(c.image !== undefined ? { image: c.image } : {}),
      ...(c.imagePullPolicy !== undefined ? { imagePullPolicy: c.imagePullPolicy } : {}),
    })),
    scheduling: schedulingOf({ nodeName: pod.spec?.nodeName } as Record<string, unknown>, false),
  };
}

const key = (namespace: string, kind: string, name: string) => `${namespace}\0${kind}\0${name}`;

function gitIndex(analysis: Analysis | undefined): Map<string, WorkloadNeeds> {
  const out = new Map<string, WorkloadNeeds>();
  for (const w of analysis?.workloads ?? []) out.set(key(w.workload.namespace, w.workload.kind, w.workload.name), w);
  return out;
}

function sortedEnbi(annotations: Record<string, unknown>): string {
  return JSON.stringify(
    Object.entries(annotations)
      .filter(([k]) => k.startsWith('enbi.hrzn.ee/'))
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );
}

/** Which manifest file a trusted pod's annotations came from, so its indirect flake finds the right flake.lock. */
function manifestFiles(analysis: Analysis | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const { workload } of analysis?.workloads ?? [])
    if (workload.file !== undefined)
      out.set(`${workload.namespace}\0${sortedEnbi(workload.annotations)}`, workload.file);
  return out;
}
