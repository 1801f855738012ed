// One real node: its own network namespace, containerd, CNI config and kubelet. Everything it writes lives
// under its own directory and cgroup root, so that N nodes can share this machine.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { hostBin, kubeBin } from './paths.ts';
import { makeCert, type CertPair } from './pki.ts';
import { writeKubeconfig } from './kubeconfig.ts';
import { firstDead, startDaemon, waitFor } from './proc.ts';
import { createCgroupRoot } from './cgroups.ts';
import { importImage } from './images.ts';
import { certsDirOf, type ContainerdFlavor } from './containerd.ts';
import { buildsLabel } from './emulation.ts';
import type { NodeState, ProcRecord } from './state.ts';

/**
 * Kept at kubelet's default (50), set explicitly so the choice is visible: enbi reads Node.status.images
 * only as a hint, and tests should see the same cap (and the same truncation) a real cluster shows.
 */
export const NODE_STATUS_MAX_IMAGES = 50;

export interface NodePlan {
  name: string;
  system: string;
  netns: string;
  hostVeth: string;
  ip: string;
  podCIDR: string;
  cgroupRoot: string;
  dir: string;
  containerd: ContainerdFlavor;
  /** Systems built through QEMU (binfmt_misc registered by the caller); each gets enbi's builds label. */
  emulate: string[];
  /** containerd's socket when not `<dir>/containerd/containerd.sock` (NodeSpec.socket). */
  socket?: string;
}

export interface NodeContext {
  server: string;
  ca: CertPair;
  sandboxImage: string;
  sandboxArchive: string;
  logs: string;
  log: (msg: string) => void;
}

// Unix socket paths are limited to 108 bytes; containerd also binds `${socket}.ttrpc`.
const MAX_SOCKET = 100;

function cniConfig(p: NodePlan): object {
  return {
    cniVersion: '0.4.0',
    name: `enbi-${p.netns}`,
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: p.podCIDR }]],
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir: join(p.dir, 'cni-ipam'),
        },
      },
    ],
  };
}

function kubeletConfig(p: NodePlan, c: NodeContext, socket: string, serving: CertPair): object {
  return {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // This machine has cgroup v1 only, which kubelet 1.34 refuses unless told.
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    cgroupRoot: p.cgroupRoot,
    failSwapOn: false,
    containerRuntimeEndpoint: `unix://${socket}`,
    podCIDR: p.podCIDR,
    nodeStatusMaxImages: NODE_STATUS_MAX_IMAGES,
    // kubelet cannot read filesystem stats for this disk: keep eviction from firing on bogus numbers.
    evictionHard: {
      'memory.available': '100Mi',
      'nodefs.available': '1%',
      'imagefs.available': '1%',
      'nodefs.inodesFree': '1%',
    },
    address: p.ip,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    tlsCertFile: serving.cert,
    tlsPrivateKeyFile: serving.key,
    authentication: { anonymous: { enabled: false }, webhook: { enabled: false }, x509: { clientCAFile: c.ca.cert } },
    authorization: { mode: 'AlwaysAllow' },
    podLogsDir: join(p.dir, 'pod-logs'),
    volumePluginDir: join(p.dir, 'volume-plugins'),
    clusterDomain: 'cluster.local',
    serializeImagePulls: false,
  };
}

const socketOf = (p: NodePlan): string => p.socket ?? join(p.dir, 'containerd', 'containerd.sock');

/** What cluster.json says about a node; known before anything starts, so a failed start can be undone. */
export function nodeState(p: NodePlan): NodeState {
  return {
    name: p.name,
    netns: p.netns,
    ip: p.ip,
    podCIDR: p.podCIDR,
    system: p.system,
    containerdSocket: socketOf(p),
    ctr: p.containerd.ctr,
    containerd: p.containerd.name,
    dir: p.dir,
    cgroupRoot: p.cgroupRoot,
    hostVeth: p.hostVeth,
    ...(p.emulate.length > 0 ? { emulate: p.emulate } : {}),
  };
}

/** Starts containerd and kubelet for one node (its network namespace exists); record() keeps each pid. */
export async function startNode(p: NodePlan, c: NodeContext, record: (x: ProcRecord) => void): Promise<void> {
  const dirs = ['containerd', 'containerd/certs.d', 'cni', 'kubelet', 'pki', 'pod-logs', 'volume-plugins'].map((d) =>
    join(p.dir, d),
  );
  for (const d of dirs) mkdirSync(d, { recursive: true });
  const socket = socketOf(p);
  mkdirSync(dirname(socket), { recursive: true });
  if (Buffer.byteLength(`${socket}.ttrpc`) > MAX_SOCKET) {
    throw new Error(
      `containerd socket path ${socket} is too long for a unix socket: set ENBI_CLUSTER_DIR to a shorter directory`,
    );
  }
  createCgroupRoot(p.cgroupRoot);
  const nsenter = [`--net=/run/netns/${p.netns}`, '--'];
  const procs: ProcRecord[] = [];
  const start = (...a: Parameters<typeof startDaemon>): void => {
    const r = startDaemon(...a);
    procs.push(r);
    record(r);
  };
  const dead = firstDead(procs);

  writeFileSync(join(p.dir, 'cni', '10-bridge.conflist'), JSON.stringify(cniConfig(p), null, 2));
  const ctrdConfig = join(p.dir, 'containerd', 'config.toml');
  writeFileSync(
    ctrdConfig,
    p.containerd.config({
      root: join(p.dir, 'containerd', 'root'),
      state: join(p.dir, 'containerd', 'state'),
      socket,
      cniConfDir: join(p.dir, 'cni'),
      runcRoot: join(p.dir, 'containerd', 'runc'),
      sandboxImage: c.sandboxImage,
      certsDir: certsDirOf(p.dir),
    }),
  );
  c.log(`${p.name}: ${p.containerd.name} containerd in netns ${p.netns} (${p.ip})`);
  const env = p.containerd.binDir ? `PATH=${p.containerd.binDir}:${process.env.PATH ?? ''}` : undefined;
  start(
    `${p.name}/containerd`,
    hostBin('nsenter'),
    [...nsenter, ...(env ? [hostBin('env'), env] : []), p.containerd.containerd, '--config', ctrdConfig],
    join(c.logs, `${p.name}-containerd.log`),
  );
  await waitFor(
    `${p.name} containerd`,
    async () => {
      await importImage(socket, c.sandboxArchive, { ctr: p.containerd.ctr });
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 300, alive: dead },
  );

  const pki = join(p.dir, 'pki');
  const client = await makeCert(pki, c.ca, {
    name: 'kubelet-client',
    cn: `system:node:${p.name}`,
    org: 'system:nodes',
    usage: 'client',
  });
  const serving = await makeCert(pki, c.ca, {
    name: 'kubelet-serving',
    cn: p.name,
    usage: 'server',
    sans: [`IP:${p.ip}`, `DNS:${p.name}`],
  });
  const kubeconfig = join(p.dir, 'kubelet.kubeconfig');
  writeKubeconfig(kubeconfig, c.server, c.ca.cert, `system:node:${p.name}`, client);
  const config = join(p.dir, 'kubelet-config.yaml');
  writeFileSync(config, stringify(kubeletConfig(p, c, socket, serving)));
  // Labels a node may set on itself (not kubernetes.io/k8s.io): present from registration on, as on a
  // real node provisioned with them.
  const labels = p.emulate.map((sys) => `${buildsLabel(sys)}=true`);
  c.log(
    `${p.name}: kubelet (podCIDR ${p.podCIDR}, cgroup root ${p.cgroupRoot}${labels.length ? `, labels ${labels.join(',')}` : ''})`,
  );
  start(
    `${p.name}/kubelet`,
    hostBin('nsenter'),
    [
      ...nsenter,
      kubeBin('kubelet'),
      `--config=${config}`,
      `--kubeconfig=${kubeconfig}`,
      `--hostname-override=${p.name}`,
      `--node-ip=${p.ip}`,
      `--root-dir=${join(p.dir, 'kubelet')}`,
      `--cert-dir=${pki}`,
      '--v=1',
      ...(labels.length ? [`--node-labels=${labels.join(',')}`] : []),
    ],
    join(c.logs, `${p.name}-kubelet.log`),
  );
}
