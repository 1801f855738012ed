// Bringing the test cluster up (or reusing a healthy one) and down. State: cluster.json in the cluster dir.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { arch } from 'node:os';
import { join } from 'node:path';
import { CNI_BIN_DIR, KUBE_VERSION, clusterDir, hostBin, kubeBin } from './paths.ts';
import { SERVICE_IP, startControlPlane } from './controlplane.ts';
import { apiGet, apiMergePatch, type Cred } from './health.ts';
import { buildBusyboxImage } from './images.ts';
import {
  createBridge,
  createNodeNetns,
  routeKubernetesService,
  nodeIp,
  pickSubnet,
  podCidr,
  type Subnet,
} from './network.ts';
import { nodeState, startNode, type NodePlan } from './node.ts';
import { containerdFlavor } from './containerd.ts';
import { ensureEmulation, preflightEmulation } from './emulation.ts';
import { firstDead, isAlive, waitFor } from './proc.ts';
import { pidAlive, withLock } from './lock.ts';
import type { CertPair } from './pki.ts';
import { readState, writeState, type ClusterState, type Mode, type NodeState, type ProcRecord } from './state.ts';
import { clearDir, teardown } from './teardown.ts';

export interface NodeSpec {
  name: string;
  /** Nix system the node builds for natively; default this host's. */
  system?: string;
  /** containerd flavour (see containerd.ts); default ENBI_CONTAINERD or Debian's 1.6. */
  containerd?: string;
  /**
   * Nix systems the node also builds through QEMU user-mode emulation, e.g. ['aarch64-linux']: the host's
   * binfmt_misc gets qemu-<cpu> with the F flag (host-wide, see emulation.ts) and the node the label
   * enbi.hrzn.ee/builds.<system>=true. Nodes without it carry no such label. For reuse, a recorded node
   * matches only with exactly these systems; `[]` asks for a node that emulates nothing, undefined for
   * either.
   */
  emulate?: string[];
  /**
   * containerd's socket, when not the node directory's own: e.g. k3s's /run/k3s/containerd/containerd.sock
   * (a path on this host, so one node per machine may use it at a time). Reuse matches it exactly.
   */
  socket?: string;
}

export interface UpOptions {
  mode: Mode;
  /** Full mode's nodes; default one node, enbi-node-1. */
  nodes?: NodeSpec[];
  dir?: string;
  log?: (msg: string) => void;
  /** Recorded in cluster.json when this call starts the cluster (a test run's id, see global-setup.ts). */
  owner?: string;
  ownerPid?: number;
}

export const SANDBOX_IMAGE = 'enbi.test/pause:busybox';
const hostSystem = (): string => `${arch() === 'arm64' ? 'aarch64' : 'x86_64'}-linux`;
const say = (msg: string): void => void process.stderr.write(`[enbi cluster] ${msg}\n`);

export const adminCred = (s: ClusterState): Cred => {
  const pki = join(s.dir, 'pki');
  return { ca: join(pki, 'ca.crt'), cert: join(pki, 'admin.crt'), key: join(pki, 'admin.key') };
};

/** Why the recorded cluster is not usable, or undefined when every process runs and every node is Ready. */
export async function unhealthy(s: ClusterState): Promise<string | undefined> {
  const dead = s.procs.find((p) => !isAlive(p));
  if (dead) return `${dead.name} (pid ${dead.pid}) is not running`;
  try {
    const r = await apiGet(s.server, adminCred(s), '/readyz');
    if (r.status !== 200) return `kube-apiserver /readyz answered ${r.status}`;
    for (const n of s.nodes) {
      const node = await apiGet(s.server, adminCred(s), `/api/v1/nodes/${n.name}`);
      if (node.status !== 200) return `node ${n.name} is not registered`;
      const ready = (
        JSON.parse(node.body) as { status?: { conditions?: { type: string; status: string }[] } }
      ).status?.conditions?.find((c) => c.type === 'Ready');
      if (ready?.status !== 'True') return `node ${n.name} is not Ready`;
    }
  } catch (e) {
    return `kube-apiserver does not answer: ${(e as Error).message}`;
  }
  return undefined;
}

/** The last lines of every component log: on CI, the only view of why a start failed. */
function logTails(logs: string, lines = 8): string {
  return readdirSync(logs)
    .map((f) => {
      const text = readFileSync(join(logs, f), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
      return `--- ${f} (last ${lines} lines) ---\n${text}`;
    })
    .join('\n');
}

/** Why the recorded cluster cannot serve this request (a full one serves control-plane requests too). */
function mismatch(s: ClusterState, o: UpOptions): string | undefined {
  if (o.mode === 'control-plane') return undefined;
  if (s.mode !== 'full') return `it runs in ${s.mode} mode`;
  const same = (a: string[] = [], b: string[] = []): boolean => [...a].sort().join(',') === [...b].sort().join(',');
  const matches = (n: NodeSpec, x: NodeState): boolean =>
    x.name === n.name &&
    (!n.containerd || x.containerd === containerdFlavor(n.containerd).name) &&
    (n.emulate === undefined || same(n.emulate, x.emulate)) &&
    (n.socket === undefined || x.containerdSocket === n.socket);
  const missing = nodeSpecs(o).filter((n) => !s.nodes.some((x) => matches(n, x)));
  const describe = (n: NodeSpec): string =>
    `${n.name}${n.emulate?.length ? ` (emulating ${n.emulate.join(', ')})` : ''}`;
  return missing.length ? `it lacks node(s) ${missing.map(describe).join(', ')}` : undefined;
}

export async function up(o: UpOptions): Promise<ClusterState> {
  const dir = o.dir ?? clusterDir();
  const log = o.log ?? say;
  return await withLock(dir, async () => {
    const existing = readState(dir);
    if (existing) {
      const other = mismatch(existing, o);
      const runner = existing.owner !== o.owner ? existing.ownerPid : undefined;
      if (other && runner && pidAlive(runner)) {
        throw new Error(
          `the cluster in ${dir} cannot serve this request (${other}) and belongs to test run pid ${runner}, ` +
            'which still runs: wait for it, or set ENBI_CLUSTER_DIR to start a cluster of your own',
        );
      }
      const why = other ?? (await unhealthy(existing));
      if (!why) {
        log(`reusing the ${existing.mode} cluster started ${existing.startedAt}`);
        // binfmt_misc is the host's, not the cluster's: put back what an emulated node needs if it went.
        for (const sys of new Set(existing.nodes.flatMap((n) => n.emulate ?? []))) await ensureEmulation(sys, log);
        return existing;
      }
      log(`replacing the recorded cluster: ${why}`);
      await teardown(existing);
    }
    return await start(dir, o, log);
  });
}

const nodeSpecs = (o: UpOptions): NodeSpec[] => (o.mode === 'full' ? (o.nodes ?? [{ name: 'enbi-node-1' }]) : []);

/** Every binary the cluster will run, found before anything starts (each lookup names its fix). */
function preflight(mode: Mode, nodes: NodeSpec[]): void {
  hostBin('etcd');
  hostBin('openssl');
  for (const b of ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler'] as const) kubeBin(b);
  if (mode !== 'full') return;
  kubeBin('kubelet');
  for (const b of ['ip', 'nsenter', 'runc', 'busybox', 'umount']) hostBin(b);
  if (!existsSync(join(CNI_BIN_DIR, 'bridge')))
    throw new Error(`CNI plugins missing in ${CNI_BIN_DIR}: run \`bash test/cluster/install-deps.sh\``);
  for (const n of nodes) containerdFlavor(n.containerd);
  for (const sys of new Set(nodes.flatMap((n) => n.emulate ?? []))) preflightEmulation(sys);
}

async function start(dir: string, o: UpOptions, log: (m: string) => void): Promise<ClusterState> {
  if (o.mode === 'full' && process.getuid?.() !== 0) {
    throw new Error(
      'full mode needs root (network namespaces, cgroups, mounts): run as root, or use --mode control-plane',
    );
  }
  const nodes = nodeSpecs(o);
  preflight(o.mode, nodes);
  const t0 = Date.now();
  const runId = randomBytes(3).toString('hex');
  const subnet = o.mode === 'full' ? await pickSubnet(nodes.length) : undefined;
  const s: ClusterState = {
    version: 1,
    mode: o.mode,
    runId,
    dir,
    kubeconfig: join(dir, 'kubeconfig'),
    server: '',
    kubernetesVersion: KUBE_VERSION,
    nodes: [],
    procs: [],
    startedAt: new Date().toISOString(),
    ...(o.owner ? { owner: o.owner, ownerPid: o.ownerPid ?? process.pid } : {}),
  };
  // Nothing recorded runs any more: leftovers of a run that died unrecorded (etcd data, certificates) go.
  await clearDir(dir);
  mkdirSync(join(dir, 'logs'), { recursive: true });
  writeState(s);
  try {
    if (subnet) {
      s.bridge = `enbi-br-${runId}`;
      s.subnet = subnet.cidr;
      log(`bridge ${s.bridge} ${subnet.gateway}/24`);
      await createBridge(s.bridge, subnet);
      writeState(s);
    }
    const cp = await startControlPlane({
      dir,
      address: subnet?.gateway ?? '127.0.0.1',
      log,
      record: (p) => {
        s.procs.push(p);
        writeState(s);
      },
    });
    s.server = cp.server;
    writeState(s);
    if (subnet) await startNodes(s, subnet, nodes, cp.ca, log);
  } catch (e) {
    log(`start failed, stopping what was started (logs kept in ${join(dir, 'logs')})`);
    const tails = logTails(join(dir, 'logs'));
    await teardown(s, { keepLogs: true }).catch((te: Error) => log(`teardown: ${te.message}`));
    throw new Error(`${(e as Error).message}\n${tails}`, { cause: e });
  }
  writeState(s);
  log(`${s.mode} cluster up in ${((Date.now() - t0) / 1000).toFixed(1)} s: export KUBECONFIG=${s.kubeconfig}`);
  return s;
}

async function startNodes(
  s: ClusterState,
  subnet: Subnet,
  specs: NodeSpec[],
  ca: CertPair,
  log: (m: string) => void,
): Promise<void> {
  const bridge = s.bridge;
  if (!bridge) throw new Error('full mode without a bridge');
  const sandboxArchive = join(s.dir, 'images', 'pause.tar');
  buildBusyboxImage({
    ref: SANDBOX_IMAGE,
    out: sandboxArchive,
    cmd: ['/bin/sh', '-c', 'trap "exit 0" TERM INT; sleep 2147483647 & wait'],
  });
  s.sandboxImage = SANDBOX_IMAGE;
  const ctx = { server: s.server, ca, sandboxImage: SANDBOX_IMAGE, sandboxArchive, logs: join(s.dir, 'logs'), log };
  const record = (p: ProcRecord): void => {
    s.procs.push(p);
    writeState(s);
  };
  for (const sys of new Set(specs.flatMap((n) => n.emulate ?? []))) await ensureEmulation(sys, log);
  for (const [i, spec] of specs.entries()) {
    const plan: NodePlan = {
      name: spec.name,
      system: spec.system ?? hostSystem(),
      netns: `enbi-${s.runId}-${i}`,
      hostVeth: `enbi-${s.runId}-${i}`,
      ip: nodeIp(subnet, i),
      podCIDR: podCidr(subnet, i),
      cgroupRoot: `/enbi-${s.runId}-${spec.name}`,
      dir: join(s.dir, 'nodes', spec.name),
      containerd: containerdFlavor(spec.containerd),
      emulate: [...new Set(spec.emulate ?? [])],
      ...(spec.socket !== undefined ? { socket: spec.socket } : {}),
    };
    s.nodes.push(nodeState(plan));
    writeState(s);
    await createNodeNetns({ ...plan, bridge, addr: plan.ip, gateway: subnet.gateway });
    await routeKubernetesService(plan.netns, SERVICE_IP, s.server);
    await startNode(plan, ctx, record);
  }
  const dead = firstDead(s.procs);
  const cred = adminCred(s);
  // No nodeipam controller runs (each node's CNI config holds its range): record the range on the Node
  // as that controller would, once kubelet has registered it.
  for (const n of s.nodes) {
    const path = `/api/v1/nodes/${n.name}`;
    await waitFor(
      `${n.name} to register`,
      async () => ((await apiGet(s.server, cred, path)).status === 200 ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 300, alive: dead },
    );
    await apiMergePatch(s.server, cred, path, { spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] } });
  }
  await waitFor(
    `node(s) ${specs.map((n) => n.name).join(', ')} Ready`,
    async () => {
      const why = await unhealthy(s);
      if (why) throw new Error(why);
      return true;
    },
    { timeoutMs: 120_000, intervalMs: 500, alive: dead },
  );
}

export async function down(dir = clusterDir(), log = say): Promise<boolean> {
  return await withLock(dir, async () => {
    const s = readState(dir);
    if (!s) return false;
    await teardown(s);
    log(`cluster in ${dir} stopped and removed`);
    return true;
  });
}
