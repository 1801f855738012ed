// What the demo needs on this machine before it starts anything, what of it is missing, and the scripts that
// get it (the same ones CI runs; each caches by version, so the second `npm start` finds everything).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cachedToolPath } from '../src/render/tools.ts';
import { cacheDir, KUBE_VERSION } from '../test/cluster/paths.ts';

export interface Prereq {
  what: string;
  present: boolean;
  /** The script that gets it, from the repository root. */
  script: string;
  /** What it costs the first time, said before it runs. */
  cost: string;
}

const ROOT = new URL('../', import.meta.url).pathname;
const onPath = (bin: string): boolean =>
  (process.env.PATH ?? '')
    .split(':')
    .concat('/usr/sbin', '/usr/bin', '/sbin')
    .some((d) => existsSync(join(d, bin)));

export function prereqs(): Prereq[] {
  const kubeDir = process.env.KUBE_BIN_DIR ?? join(cacheDir(), 'kube', KUBE_VERSION);
  return [
    {
      what: 'Debian packages (etcd, containerd 1.6, runc, CNI plugins, busybox, git, iptables)',
      present: ['etcd', 'containerd', 'runc', 'busybox', 'git', 'iptables', 'nsenter'].every(onPath),
      script: 'test/cluster/install-deps.sh',
      cost: 'apt-get install: a minute or two',
    },
    {
      what: `Kubernetes ${KUBE_VERSION} (kube-apiserver, controller-manager, scheduler, kubelet)`,
      present: ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet'].every((b) =>
        existsSync(join(kubeDir, b)),
      ),
      script: 'test/cluster/build-kube.sh',
      cost: 'a Go build from modules: the longest step, 10 to 20 minutes on 2 cores',
    },
    {
      what: "kustomize (renders deploy/ with the demo's overlay)",
      present: existsSync(cachedToolPath('kustomize')),
      script: 'test/cluster/build-kustomize.sh',
      cost: 'a Go build: a few minutes',
    },
  ];
}

/** Runs a script from the repository root, its output indented under the step; rejects on failure. */
export function runScript(script: string, print: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [join(ROOT, script)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const take = (d: Buffer): void => {
      for (const line of d.toString().split('\n').filter(Boolean)) print(`    ${line}`);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`${script} exited ${code}: run it yourself to see why (bash ${script})`)),
    );
  });
}
