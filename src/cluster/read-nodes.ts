// Reads Nodes from a saved `kubectl get nodes -o yaml` file or from the cluster of a kubeconfig (read only).
import { readFile } from 'node:fs/promises';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { type NodeView, nodeViewOf } from './node-view.ts';

export class NodesReadError extends Error {
  override name = 'NodesReadError';
}

export async function readNodesFile(path: string, maxImages?: number): Promise<NodeView[]> {
  let doc: unknown;
  try {
    doc = parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new NodesReadError(`--nodes ${path}: ${(err as Error).message.split('\n')[0]}`);
  }
  const o = doc as { kind?: string; items?: unknown[] } | null;
  const items = o?.kind === 'Node' ? [o] : Array.isArray(o?.items) ? o.items : undefined;
  if (items === undefined) throw new NodesReadError(`--nodes ${path}: expected a Node or a List of Nodes (kubectl get nodes -o yaml)`);
  return items.map((n) => nodeViewOf(n, maxImages));
}

export function loadKubeConfig(kubeconfig?: string): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig !== undefined) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  if (kc.getCurrentCluster() === null) throw new NodesReadError('no cluster in the kubeconfig: pass --kubeconfig or --nodes FILE');
  return kc;
}

export async function readNodesFromCluster(kc: KubeConfig, maxImages?: number): Promise<NodeView[]> {
  const api = kc.makeApiClient(CoreV1Api);
  try {
    const list = await api.listNode();
    return list.items.map((n) => nodeViewOf(n, maxImages));
  } catch (err) {
    const server = kc.getCurrentCluster()?.server ?? '?';
    throw new NodesReadError(`cannot list Nodes from ${server}: ${(err as Error).message.split('\n')[0]}`);
  }
}
