// What tests use to get a real cluster:
//   const c = await useCluster('full');   // or 'control-plane'
//   c.kc.makeApiClient(CoreV1Api) ... c.nodes[0].containerdSocket ...
// It reuses the cluster recorded in cluster.json when healthy, or starts one (so a test file run alone
// works). Under `npm test` the global setup (global-setup.ts) stops at the end a cluster the run started.
import { KubeConfig } from '@kubernetes/client-node';
import { up } from './cluster.ts';
import type { ClusterState, Mode, NodeState } from './state.ts';

export type { ClusterState, Mode, NodeState };

export interface ClusterInfo {
  mode: Mode;
  /** Admin kubeconfig (system:masters). */
  kubeconfig: string;
  server: string;
  /** A KubeConfig loaded from that file. */
  kc: KubeConfig;
  /** Real nodes (full mode); empty in control-plane mode, where tests create Node objects themselves. */
  nodes: NodeState[];
  state: ClusterState;
}

/**
 * A reason to skip real-cluster tests, or undefined. Only ENBI_SKIP_CLUSTER=1 outside CI skips: under
 * CI=true a cluster that cannot start fails the tests instead.
 */
export function clusterSkipReason(): string | undefined {
  if (process.env.ENBI_SKIP_CLUSTER === '1' && process.env.CI !== 'true') return 'ENBI_SKIP_CLUSTER=1';
  return undefined;
}

const started = new Map<Mode, Promise<ClusterInfo>>();

/**
 * A running cluster of at least this mode. ENBI_CLUSTER_MODE=full (which the global setup sets) makes a
 * control-plane request start a full cluster, so that one run starts the cluster once.
 */
export function useCluster(mode: Mode = 'control-plane'): Promise<ClusterInfo> {
  const want: Mode = mode === 'full' || process.env.ENBI_CLUSTER_MODE === 'full' ? 'full' : 'control-plane';
  let p = started.get(want);
  if (!p) {
    p = start(want);
    started.set(want, p);
  }
  return p;
}

async function start(mode: Mode): Promise<ClusterInfo> {
  const count = Number(process.env.ENBI_CLUSTER_NODES ?? '1');
  const s = await up({
    mode,
    nodes: Array.from({ length: count }, (_, i) => ({ name: `enbi-node-${i + 1}` })),
    ...(process.env.ENBI_TEST_RUN_ID
      ? { owner: process.env.ENBI_TEST_RUN_ID, ownerPid: Number(process.env.ENBI_TEST_RUN_PID) || process.pid }
      : {}),
  });
  const kc = new KubeConfig();
  kc.loadFromFile(s.kubeconfig);
  return { mode: s.mode, kubeconfig: s.kubeconfig, server: s.server, kc, nodes: s.nodes, state: s };
}
