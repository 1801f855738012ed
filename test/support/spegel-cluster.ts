// The three-node cluster with a real Spegel on every node that the Spegel tests share (issue 11):
//   enbi-node-1  Debian's containerd 1.6
//   enbi-node-2  containerd 2.x, also builds aarch64-linux through QEMU (label enbi.hrzn.ee/builds.aarch64-linux)
//   enbi-node-3  containerd 2.x
// in ENBI_SPEGEL_CLUSTER_DIR (default ~/.cache/enbi/cluster-spegel). `spegelCluster()` brings it up or reuses
// it (and its Spegels) and registers this process as a user; `release()` stops it when the last user leaves,
// unless ENBI_KEEP_CLUSTER=1.
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { down, type NodeSpec, up } from '../cluster/cluster.ts';
import { pidAlive, withLock } from '../cluster/lock.ts';
import { cacheDir } from '../cluster/paths.ts';
import { isAlive } from '../cluster/proc.ts';
import { readState, writeState, type ClusterState } from '../cluster/state.ts';
import { containerd2Dir } from './containerd.ts';
import { startSpegel, type Spegel, type SpegelOptions } from './spegel.ts';

export const spegelClusterDir = (): string => process.env.ENBI_SPEGEL_CLUSTER_DIR ?? join(cacheDir(), 'cluster-spegel');

/** The cluster's nodes; containerd 2.x from build-containerd2.sh (cached, built when missing). */
export function spegelClusterNodes(): NodeSpec[] {
  const dir = containerd2Dir();
  if (!dir) throw new Error('containerd 2.x is not available: run `bash test/cluster/build-containerd2.sh` (needs Go)');
  const c2 = `containerd-2:${dir}`;
  // `emulate: []`: a reused cluster must not have other nodes emulating anything either.
  return [
    { name: 'enbi-node-1', containerd: 'debian-1.6', emulate: [] },
    { name: 'enbi-node-2', containerd: c2, emulate: ['aarch64-linux'] },
    { name: 'enbi-node-3', containerd: c2, emulate: [] },
  ];
}

export interface SpegelCluster {
  state: ClusterState;
  kc: KubeConfig;
  spegel: Spegel;
  /** Leaves: the last user out stops Spegel and the cluster, unless ENBI_KEEP_CLUSTER=1. */
  release(): Promise<void>;
}

const usersDir = (dir: string): string => join(dir, 'spegel-users');

/**
 * Spegel v0.7.4 exits when its containerd restarts ("event channel closed"; its DaemonSet would start it
 * again): forget such records, so that `up` reuses the cluster and startSpegel starts Spegel again.
 */
async function forgetDeadSpegel(dir: string): Promise<void> {
  if (!existsSync(join(dir, 'cluster.json'))) return;
  await withLock(dir, async () => {
    const s = readState(dir);
    if (!s || !s.procs.some((p) => p.name.endsWith('/spegel') && !isAlive(p))) return;
    s.procs = s.procs.filter((p) => !p.name.endsWith('/spegel') || isAlive(p));
    writeState(s);
  });
}

export async function spegelCluster(o: SpegelOptions = {}): Promise<SpegelCluster> {
  const dir = spegelClusterDir();
  await forgetDeadSpegel(dir);
  const state = await up({
    mode: 'full',
    dir,
    nodes: spegelClusterNodes(),
    owner: process.env.ENBI_TEST_RUN_ID ?? `spegel-${process.pid}`,
    ownerPid: Number(process.env.ENBI_TEST_RUN_PID) || process.pid,
  });
  // Users are pids: a test file that shares the cluster keeps it up until it releases it (or dies).
  mkdirSync(usersDir(dir), { recursive: true });
  writeFileSync(join(usersDir(dir), String(process.pid)), '');
  const spegel = await startSpegel(state, o);
  const kc = new KubeConfig();
  kc.loadFromFile(state.kubeconfig);
  let released = false;
  return {
    state,
    kc,
    spegel,
    async release() {
      if (released) return;
      released = true;
      rmSync(join(usersDir(dir), String(process.pid)), { force: true });
      const others = existsSync(usersDir(dir))
        ? readdirSync(usersDir(dir))
            .map(Number)
            .filter((p) => p !== process.pid && pidAlive(p))
        : [];
      if (others.length > 0 || process.env.ENBI_KEEP_CLUSTER === '1') return;
      await spegel.stop();
      await down(dir);
    },
  };
}
