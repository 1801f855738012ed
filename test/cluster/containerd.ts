// Which containerd a node runs, and its configuration. Pluggable: a flavour names its binaries and renders
// its own config, so a node list can mix Debian's 1.6 with a containerd 2.x built from the Go module proxy.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CNI_BIN_DIR, hostBin } from './paths.ts';

/** Paths one node's containerd owns: nothing under /var/lib, /run/containerd or /etc is used. */
export interface ContainerdPaths {
  root: string;
  state: string;
  socket: string;
  cniConfDir: string;
  /** runc's state root, per node so that two nodes never share one. */
  runcRoot: string;
  sandboxImage: string;
  /**
   * The CRI's registry host directory (hosts.toml per registry): where Spegel's `configuration` step writes
   * its mirror. Absent: no registry section (pulls go straight to the registry); an empty directory does the same.
   */
  certsDir?: string;
}

/** A node's registry host directory (ContainerdPaths.certsDir), under the directory given to its containerd. */
export const certsDirOf = (nodeDir: string): string => join(nodeDir, 'containerd', 'certs.d');

/** A node's content store, which Spegel reads blobs from directly (both flavours keep it under root). */
export const contentDirOf = (nodeDir: string): string =>
  join(nodeDir, 'containerd', 'root', 'io.containerd.content.v1.content');

export interface ContainerdFlavor {
  name: string;
  containerd: string;
  ctr: string;
  /** Prepended to PATH for containerd, where its shim lives. */
  binDir?: string;
  config(p: ContainerdPaths): string;
}

/** The CRI's registry table (1.6: under the CRI plugin; 2.x: under its images plugin), when certsDir is set. */
const registry = (p: ContainerdPaths, plugin: string): string =>
  p.certsDir === undefined
    ? ''
    : `  # Registry hosts (a Spegel mirror, when one runs) from <certsDir>/<registry>/hosts.toml.
  [plugins.${plugin}.registry]
    config_path = ${JSON.stringify(p.certsDir)}
`;

/** Debian 12's containerd 1.6 (config version 2). */
function debian(): ContainerdFlavor {
  return {
    name: 'debian-1.6',
    containerd: hostBin('containerd'),
    ctr: hostBin('ctr'),
    config: (p) => `version = 2
root = ${JSON.stringify(p.root)}
state = ${JSON.stringify(p.state)}
[grpc]
  address = ${JSON.stringify(p.socket)}
[plugins."io.containerd.internal.v1.opt"]
  path = ${JSON.stringify(join(p.root, 'opt'))}
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${JSON.stringify(p.sandboxImage)}
  # No CAP_SYS_RESOURCE here: lowering oom_score_adj is refused, and every sandbox would fail.
  restrict_oom_score_adj = true
  # Pod network namespaces under the node's state, not the shared /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    # Spegel serves layers from the content store: keep them after unpacking (1.6's default, made explicit).
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = ${JSON.stringify(p.runcRoot)}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${JSON.stringify(CNI_BIN_DIR)}
    conf_dir = ${JSON.stringify(p.cniConfDir)}
${registry(p, '"io.containerd.grpc.v1.cri"')}`,
  };
}

/**
 * containerd 2.x (config version 3) from a directory holding containerd, ctr and containerd-shim-runc-v2,
 * e.g. built with `go install github.com/containerd/containerd/v2/cmd/...@v2.4.2`.
 */
function containerd2(binDir: string): ContainerdFlavor {
  for (const b of ['containerd', 'ctr', 'containerd-shim-runc-v2']) {
    if (!existsSync(join(binDir, b))) throw new Error(`containerd 2 flavour: ${join(binDir, b)} is missing`);
  }
  return {
    name: 'containerd-2',
    containerd: join(binDir, 'containerd'),
    ctr: join(binDir, 'ctr'),
    binDir,
    config: (p) => `version = 3
root = ${JSON.stringify(p.root)}
state = ${JSON.stringify(p.state)}
[grpc]
  address = ${JSON.stringify(p.socket)}
[plugins.'io.containerd.internal.v1.opt']
  path = ${JSON.stringify(join(p.root, 'opt'))}
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  # Spegel serves layers from the content store: keep them after unpacking.
  discard_unpacked_layers = false
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = ${JSON.stringify(p.sandboxImage)}
${registry(p, "'io.containerd.cri.v1.images'")}[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = ${JSON.stringify(p.runcRoot)}
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [${JSON.stringify(CNI_BIN_DIR)}]
    conf_dir = ${JSON.stringify(p.cniConfDir)}
`,
  };
}

/** 'debian-1.6' (default) or 'containerd-2:/dir/with/binaries'; ENBI_CONTAINERD sets the default. */
export function containerdFlavor(spec = process.env.ENBI_CONTAINERD ?? 'debian-1.6'): ContainerdFlavor {
  if (spec === 'debian-1.6') return debian();
  if (spec.startsWith('containerd-2:')) return containerd2(spec.slice('containerd-2:'.length));
  throw new Error(`unknown containerd flavour ${spec}: use debian-1.6 or containerd-2:/dir/with/binaries`);
}
