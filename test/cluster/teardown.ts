// Stopping a cluster: only the processes cluster.json recorded (and what they started: pods, shims), then
// the state they leave behind: mounts, network namespaces, links, cgroup directories, files.
import { existsSync, readFileSync, readdirSync, readlinkSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { hostBin } from './paths.ts';
import { run, stopProc, sleep } from './proc.ts';
import { cgroupPids, removeCgroupRoot } from './cgroups.ts';
import { deleteLink, deleteNetns } from './network.ts';
import type { ClusterState, NodeState, ProcRecord } from './state.ts';

function killPids(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** containerd shims are daemons of their own: find those that serve this node's containerd socket. */
function shimPids(socket: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.includes('containerd-shim') && argv.includes(socket)) out.push(Number(d));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Mount points under dir (kubelet volumes, pod netns, container rootfs), deepest first. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

async function unmountUnder(dir: string): Promise<void> {
  for (const m of mountsUnder(dir)) await run(hostBin('umount'), ['-l', m]).catch(() => undefined);
}

/** kubelet links every container log into the fixed /var/log/containers: remove the links into this node. */
function removeLogLinks(node: NodeState): void {
  const dir = '/var/log/containers';
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) {
    try {
      if (readlinkSync(join(dir, f)).startsWith(`${node.dir}/`)) unlinkSync(join(dir, f));
    } catch {
      // not a link
    }
  }
}

/**
 * libcni caches each pod's network results in the fixed /var/lib/cni/results; this node's entries name a
 * pod network namespace under the node's directory (netns_mounts_under_state_dir).
 */
function removeCniCache(node: NodeState): void {
  const dir = '/var/lib/cni/results';
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) {
    try {
      if (readFileSync(join(dir, f), 'utf8').includes(`"${node.dir}/`)) rmSync(join(dir, f), { force: true });
    } catch {
      // removed meanwhile
    }
  }
}

async function stopNode(node: NodeState, procs: ProcRecord[]): Promise<void> {
  const mine = (suffix: string): ProcRecord[] => procs.filter((p) => p.name === `${node.name}/${suffix}`);
  // Add-ons a test recorded for this node (`<node>/spegel`, see test/support/spegel.ts) go first: they
  // use the node's containerd and network.
  const addons = procs.filter(
    (p) =>
      p.name.startsWith(`${node.name}/`) && !['kubelet', 'containerd'].includes(p.name.slice(node.name.length + 1)),
  );
  for (const p of addons) await stopProc(p);
  for (const p of mine('kubelet')) await stopProc(p);
  // Pods' processes live under the node's cgroup root; kill them, then the shims that watched them.
  for (let i = 0; i < 3; i++) {
    const pids = cgroupPids(node.cgroupRoot);
    if (!pids.length) break;
    killPids(pids);
    await sleep(200);
  }
  await sleep(200);
  killPids(shimPids(node.containerdSocket));
  for (const p of mine('containerd')) await stopProc(p);
  await unmountUnder(node.dir);
  await deleteNetns(node.netns, node.hostVeth);
  const left = removeCgroupRoot(node.cgroupRoot);
  if (left.length) process.stderr.write(`warning: cgroup directories left: ${left.join(', ')}\n`);
  removeLogLinks(node);
  removeCniCache(node);
}

export async function teardown(s: ClusterState, o: { keepLogs?: boolean } = {}): Promise<void> {
  for (const n of s.nodes) await stopNode(n, s.procs);
  const order = ['kube-scheduler', 'kube-controller-manager', 'kube-apiserver', 'etcd'];
  for (const name of order) for (const p of s.procs.filter((x) => x.name === name)) await stopProc(p);
  // Only now: with its address gone first, the control plane's shutdown hangs on dead connections (10 s).
  if (s.bridge) await deleteLink(s.bridge);
  await clearDir(s.dir, o.keepLogs ? ['logs'] : []);
}

/** Unmounts what is mounted below dir and removes its contents, except the lock and the names kept. */
export async function clearDir(dir: string, keep: string[] = []): Promise<void> {
  await unmountUnder(dir);
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir)) {
    if (e !== '.lock' && !keep.includes(e)) rmSync(join(dir, e), { recursive: true, force: true });
  }
}
