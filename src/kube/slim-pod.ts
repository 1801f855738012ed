// What the controller keeps of a Pod in its cache. It watches every bound pod in the cluster (it cannot select
// the ones with enbi annotations server-side), but needs the full object only for those and its own build
// pods; of the rest it keeps identity, node and phase. managedFields go from all: on a busy cluster they are
// often the largest part of a pod.
import type { V1Pod } from '@kubernetes/client-node';

const ENBI_PREFIX = 'enbi.hrzn.ee/';

/** True for pods the controller plans from: enbi annotations, or a label of enbi's own (its build pods). */
export function podConcernsEnbi(pod: V1Pod): boolean {
  const has = (m: Record<string, string> | undefined) =>
    m !== undefined && Object.keys(m).some((k) => k.startsWith(ENBI_PREFIX));
  return has(pod.metadata?.annotations) || has(pod.metadata?.labels);
}

export function slimPod(pod: V1Pod): V1Pod {
  const m = pod.metadata ?? {};
  if (podConcernsEnbi(pod)) {
    if (m.managedFields === undefined) return pod;
    const { managedFields: _dropped, ...metadata } = m;
    return { ...pod, metadata };
  }
  return {
    ...(pod.apiVersion !== undefined ? { apiVersion: pod.apiVersion } : {}),
    ...(pod.kind !== undefined ? { kind: pod.kind } : {}),
    metadata: {
      ...(m.name !== undefined ? { name: m.name } : {}),
      ...(m.namespace !== undefined ? { namespace: m.namespace } : {}),
      ...(m.uid !== undefined ? { uid: m.uid } : {}),
      ...(m.resourceVersion !== undefined ? { resourceVersion: m.resourceVersion } : {}),
    },
    spec: { containers: [], ...(pod.spec?.nodeName !== undefined ? { nodeName: pod.spec.nodeName } : {}) },
    ...(pod.status?.phase !== undefined ? { status: { phase: pod.status.phase } } : {}),
  };
}
