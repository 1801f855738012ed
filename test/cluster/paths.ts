// Where the test cluster keeps its binaries and state, and how it finds the tools it runs.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export const KUBE_VERSION = 'v1.34.4';

export const cacheDir = (): string => resolve(process.env.ENBI_CACHE_DIR ?? join(homedir(), '.cache', 'enbi'));

/** State of the one cluster this checkout runs: cluster.json, certificates, logs, node data. */
export const clusterDir = (): string => resolve(process.env.ENBI_CLUSTER_DIR ?? join(cacheDir(), 'cluster'));

export const stateFile = (dir = clusterDir()): string => join(dir, 'cluster.json');

const KUBE_BINS = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet'] as const;
export type KubeBin = (typeof KUBE_BINS)[number];

/** A Kubernetes binary from KUBE_BIN_DIR or build-kube.sh's cache, or an error saying how to get it. */
export function kubeBin(name: KubeBin): string {
  const dir = process.env.KUBE_BIN_DIR ?? join(cacheDir(), 'kube', KUBE_VERSION);
  const path = join(dir, name);
  if (!existsSync(path)) {
    throw new Error(
      `${name} not found at ${path}: run \`bash test/cluster/build-kube.sh\` ` +
        `(builds ${KUBE_VERSION} into the cache), or set KUBE_BIN_DIR to a directory holding it`,
    );
  }
  return path;
}

const SEARCH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** A host tool from Debian's packages, or an error naming the script that installs it. */
export function hostBin(name: string): string {
  for (const d of [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SEARCH]) {
    const p = join(d, name);
    if (existsSync(p)) return p;
  }
  throw new Error(`${name} not found: run \`bash test/cluster/install-deps.sh\` (as root)`);
}

export const CNI_BIN_DIR = '/usr/lib/cni';
