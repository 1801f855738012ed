// What the controller keeps of a Node in its cache: what it plans and places with (labels, taints,
// readiness, the runtime and kubelet versions, the image names kubelet lists) and enbi's own annotations
// (the containerd socket). The rest of a kubelet's Node (managedFields, addresses, capacity, image sizes,
// other conditions, other tools' annotations) is most of its bytes, and a big cluster has thousands.
import type { V1Node, V1NodeCondition, V1NodeSystemInfo } from '@kubernetes/client-node';
import { interner } from './intern.ts';

const ENBI_PREFIX = 'enbi.hrzn.ee/';
/** Image names recur on thousands of nodes: the cache holds each once (JSON.parse gives every node its copy). */
const shared = interner();

export function slimNode(node: V1Node): V1Node {
  const m = node.metadata ?? {};
  const annotations = Object.fromEntries(
    Object.entries(m.annotations ?? {}).filter(([k]) => k.startsWith(ENBI_PREFIX)),
  );
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  const info = node.status?.nodeInfo;
  return {
    ...(node.apiVersion !== undefined ? { apiVersion: node.apiVersion } : {}),
    ...(node.kind !== undefined ? { kind: node.kind } : {}),
    metadata: {
      ...(m.name !== undefined ? { name: m.name } : {}),
      ...(m.uid !== undefined ? { uid: m.uid } : {}),
      ...(m.resourceVersion !== undefined ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.deletionTimestamp !== undefined ? { deletionTimestamp: m.deletionTimestamp } : {}),
      ...(m.labels !== undefined ? { labels: m.labels } : {}),
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    },
    spec: {
      ...(node.spec?.taints !== undefined ? { taints: node.spec.taints } : {}),
      ...(node.spec?.unschedulable !== undefined ? { unschedulable: node.spec.unschedulable } : {}),
    },
    status: {
      ...(ready !== undefined
        ? {
            conditions: [
              {
                type: ready.type,
                status: ready.status,
                ...(ready.lastTransitionTime !== undefined ? { lastTransitionTime: ready.lastTransitionTime } : {}),
              } as V1NodeCondition,
            ],
          }
        : {}),
      ...(node.status?.images !== undefined
        ? { images: node.status.images.map((i) => ({ names: (i.names ?? []).map(shared) })) }
        : {}),
      // The four fields read; the type's other required ones (machineID, bootID, …) are left out on purpose.
      ...(info !== undefined
        ? {
            nodeInfo: {
              architecture: info.architecture,
              operatingSystem: info.operatingSystem,
              containerRuntimeVersion: info.containerRuntimeVersion,
              kubeletVersion: info.kubeletVersion,
            } as V1NodeSystemInfo,
          }
        : {}),
    },
  };
}
