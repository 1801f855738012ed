// cluster.json: what `up` started, so that tests can connect and `down` can stop exactly that.
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { stateFile } from './paths.ts';

export type Mode = 'control-plane' | 'full';

/** A process the cluster started; startTime (clock ticks since boot) tells it apart from a reused pid. */
export interface ProcRecord {
  name: string;
  pid: number;
  startTime: number;
  log: string;
}

export interface NodeState {
  name: string;
  /** Network namespace under /run/netns; every process of the node runs inside it. */
  netns: string;
  /** The node's InternalIP, on the run's bridge. */
  ip: string;
  podCIDR: string;
  /** Nix-style system this node builds for natively, e.g. x86_64-linux. */
  system: string;
  containerdSocket: string;
  /** The ctr binary matching this node's containerd (for `images import`). */
  ctr: string;
  /** Which containerd runs here, e.g. 'debian-1.6'. */
  containerd: string;
  /** Directory holding this node's containerd, kubelet and CNI state. */
  dir: string;
  cgroupRoot: string;
  hostVeth: string;
  /**
   * Systems it also builds through QEMU (binfmt_misc, host-wide) and carries the label
   * enbi.hrzn.ee/builds.<system>=true for; absent when none.
   */
  emulate?: string[];
}

export interface ClusterState {
  version: 1;
  mode: Mode;
  runId: string;
  dir: string;
  kubeconfig: string;
  server: string;
  kubernetesVersion: string;
  /** Root-namespace bridge carrying the API server address (full mode only). */
  bridge?: string;
  subnet?: string;
  nodes: NodeState[];
  procs: ProcRecord[];
  /** Image reference every node's containerd uses as the pod sandbox (pause) image. */
  sandboxImage?: string;
  /** Set when a test run's global setup owns the cluster and stops it at the end. */
  owner?: string;
  /** pid of that test run's runner; while it lives, another run must not replace the cluster. */
  ownerPid?: number;
  startedAt: string;
}

export function readState(dir?: string): ClusterState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(dir), 'utf8')) as ClusterState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export function writeState(s: ClusterState): void {
  const f = stateFile(s.dir);
  writeFileSync(`${f}.tmp`, JSON.stringify(s, null, 2) + '\n');
  renameSync(`${f}.tmp`, f);
}
