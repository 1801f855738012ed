// Reads Nodes from a saved `kubectl get nodes -o yaml` file or from the cluster of a kubeconfig (read only).
import { readFile } from 'node:fs/promises';
import { CoreV1Api, CustomObjectsApi, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { GROUP, NODE_IMAGES_PLURAL, VERSION } from '../api/nodeimages.ts';
import { withInventory } from './inventory.ts';
import { parseAllDocuments } from 'yaml';
import { type NodeView, nodeViewOf } from './node-view.ts';
import { errorMessage } from '../async/error-message.ts';

export class NodesReadError extends Error {
  override name = 'NodesReadError';
}

export async function readNodesFile(path: string, maxImages?: number): Promise<NodeView[]> {
  const text = await readFile(path, 'utf8').catch((err: Error) => {
    throw new NodesReadError(`--nodes ${path}: ${err.message}`);
  });
  const nodes: unknown[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new NodesReadError(`--nodes ${path}: ${doc.errors[0]!.message.split('\n')[0]}`);
    const o = doc.toJS() as { kind?: string; items?: unknown[] } | null;
    if (o?.kind === 'Node') nodes.push(o);
    else if (Array.isArray(o?.items)) nodes.push(...o.items.filter((i) => (i as { kind?: string }).kind === 'Node'));
  }
  if (nodes.length === 0)
    throw new NodesReadError(`--nodes ${path}: expected a Node or a List of Nodes (kubectl get nodes -o yaml)`);
  return nodes.map((n) => nodeViewOf(n, maxImages));
}

export function loadKubeConfig(kubeconfig?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (kubeconfig !== undefined) kc.loadFromFile(kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    const which = kubeconfig ?? process.env.KUBECONFIG ?? '~/.kube/config';
    throw new NodesReadError(
      `cannot load kubeconfig ${which} (${errorMessage(err).split('\n')[0]}): pass --kubeconfig or --nodes FILE`,
    );
  }
  if (kc.getCurrentCluster() === null)
    throw new NodesReadError('no cluster in the kubeconfig: pass --kubeconfig or --nodes FILE');
  return kc;
}

export async function readNodesFromCluster(kc: KubeConfig, maxImages?: number): Promise<NodeView[]> {
  const api = kc.makeApiClient(CoreV1Api);
  let nodes;
  try {
    nodes = (await api.listNode()).items;
  } catch (err) {
    const server = kc.getCurrentCluster()?.server ?? '?';
    throw new NodesReadError(`cannot list Nodes from ${server}: ${errorMessage(err).split('\n')[0]}`);
  }
  // The agents' inventories (containerd, complete, with platforms) come first; Node.status.images is the fallback.
  const inventories = await readInventories(kc);
  return nodes.map((n) => {
    const view = nodeViewOf(n, maxImages);
    const inventory = inventories.get(view.name);
    return inventory !== undefined ? withInventory(view, inventory) : view;
  });
}

/** NodeImages by node name; empty when the CRD is not installed or not readable (no agents: fall back). */
async function readInventories(kc: KubeConfig): Promise<Map<string, unknown>> {
  try {
    const list = (await kc
      .makeApiClient(CustomObjectsApi)
      .listClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL })) as {
      items: { metadata?: { name?: string } }[];
    };
    return new Map(list.items.map((o) => [o.metadata?.name ?? '', o]));
  } catch {
    return new Map();
  }
}

/**
 * Bound, unfinished pods (the on-demand half of the plan), or undefined when pods cannot be read (not
 * allowed, say): `enbi diff` then plans from the manifests alone and says so.
 */
export async function readBoundPods(kc: KubeConfig): Promise<{ pods?: V1Pod[]; note?: string }> {
  try {
    const list = await kc
      .makeApiClient(CoreV1Api)
      .listPodForAllNamespaces({ fieldSelector: 'spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed' });
    return { pods: list.items };
  } catch (err) {
    return {
      note: `pods not read (${errorMessage(err).split('\n')[0]}): the on-demand view (pods waiting for images) is left out`,
    };
  }
}
