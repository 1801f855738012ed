// For the agent's tests and benchmark: a private containerd of either flavour the test cluster knows
// (Debian's 1.6, or 2.x built by test/cluster/build-containerd2.sh), started from the harness's own config,
// what `ctr images ls` says, the NodeImages CRD, and cheap archives of many images.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, openSync, writeFileSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { ApiextensionsV1Api, type KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { nodeImagesCrd } from '../../src/api/nodeimages.ts';
import { ContainerdClient } from '../../src/containerd/client.ts';
import { containerdFlavor } from '../cluster/containerd.ts';
import { run } from '../cluster/proc.ts';
import { tar } from '../cluster/tar.ts';
import { until } from './kube.ts';

export interface PrivateContainerd {
  socket: string;
  ctr: string;
  /** 'debian-1.6' or 'containerd-2'. */
  flavor: string;
  dir: string;
  pid(): number | undefined;
  /** Stops it (SIGTERM, SIGKILL after 10 s) and waits for the exit. */
  stop(): Promise<void>;
  /** Stops and starts it again on the same root and socket (what a containerd upgrade or crash does). */
  restart(): Promise<void>;
}

/**
 * A containerd of this flavour ('debian-1.6' or 'containerd-2:/dir') with its own root, state and socket
 * under dir (keep dir short: a socket path has at most 108 bytes), CRI plugin included, as a test node's.
 */
export async function startPrivateContainerd(spec: string, dir: string): Promise<PrivateContainerd> {
  const flavor = containerdFlavor(spec);
  mkdirSync(join(dir, 'cni'), { recursive: true });
  const socket = join(dir, 'c.sock');
  const config = join(dir, 'config.toml');
  writeFileSync(
    config,
    flavor.config({
      root: join(dir, 'root'),
      state: join(dir, 'state'),
      socket,
      cniConfDir: join(dir, 'cni'),
      runcRoot: join(dir, 'runc'),
      sandboxImage: 'enbi.test/pause:busybox',
    }),
  );
  let proc: ChildProcess | undefined;
  const start = async () => {
    const log = openSync(join(dir, 'containerd.log'), 'a');
    const env = { ...process.env, PATH: `${flavor.binDir ? `${flavor.binDir}:` : ''}${process.env.PATH ?? ''}` };
    proc = spawn(flavor.containerd, ['--config', config], { stdio: ['ignore', log, log], env });
    closeSync(log);
    const p = proc;
    const client = new ContainerdClient(socket);
    try {
      await until(
        `containerd (${flavor.name}) at ${socket}`,
        async () => {
          if (p.exitCode !== null)
            throw new Error(`containerd exited ${p.exitCode}: see ${join(dir, 'containerd.log')}`);
          await client.version();
          return true;
        },
        60_000,
        100,
      );
    } finally {
      client.close();
    }
  };
  const stop = async () => {
    const p = proc;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };
  await start();
  return {
    socket,
    ctr: flavor.ctr,
    flavor: flavor.name,
    dir,
    pid: () => proc?.pid,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
  };
}

/**
 * The directory of containerd 2 binaries (build-containerd2.sh: cached after the first build, a few minutes
 * cold), or undefined when they cannot be had (no Go) outside CI.
 */
export function containerd2Dir(): string | undefined {
  if (process.env.ENBI_CONTAINERD2_DIR) return process.env.ENBI_CONTAINERD2_DIR;
  try {
    return execFileSync('bash', [new URL('../cluster/build-containerd2.sh', import.meta.url).pathname], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    })
      .trim()
      .split('\n')
      .pop();
  } catch (e) {
    if (process.env.CI === 'true') throw e;
    return undefined;
  }
}

export interface CtrImage {
  name: string;
  digest: string;
  platforms: string[];
}

/** `ctr -n k8s.io images ls`, parsed: REF TYPE DIGEST SIZE(number unit) PLATFORMS LABELS. */
export async function ctrImages(ctr: string, socket: string): Promise<CtrImage[]> {
  const out = await run(ctr, ['--address', socket, '-n', 'k8s.io', 'images', 'ls']);
  return out
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const f = l.trim().split(/\s+/);
      return { name: f[0]!, digest: f[2]!, platforms: f[5] === '-' ? [] : (f[5] ?? '').split(',').sort() };
    });
}

/** digest → sorted names, the way NodeImages groups them. */
export function byDigest(images: { name: string; digest: string }[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const i of images) m.set(i.digest, [...(m.get(i.digest) ?? []), i.name].sort());
  return m;
}

export async function applyNodeImagesCrd(kc: KubeConfig): Promise<void> {
  const crd = nodeImagesCrd() as unknown as V1CustomResourceDefinition & { metadata: { name: string } };
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  try {
    await ext.createCustomResourceDefinition({ body: crd });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
    const current = await ext.readCustomResourceDefinition({ name: crd.metadata.name });
    await ext.replaceCustomResourceDefinition({
      name: crd.metadata.name,
      body: { ...crd, metadata: { ...crd.metadata, resourceVersion: current.metadata?.resourceVersion } },
    });
  }
  await until('the NodeImages CRD to be Established', async () => {
    const got = await ext.readCustomResourceDefinition({ name: crd.metadata.name });
    return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ? true : undefined;
  });
}

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/**
 * One docker-archive holding many small images that share one tiny layer and differ by their config (so by
 * digest): a single `ctr images import` brings in all of them. For benchmarks of large inventories.
 */
export function manyImagesArchive(refs: string[], out: string, architecture = 'amd64'): void {
  const layer = tar([{ type: 'file', path: 'hello.txt', data: Buffer.from('hello\n') }]);
  const diffId = `sha256:${sha256(layer)}`;
  const layerPath = `${diffId.slice(7)}/layer.tar`;
  const entries: Parameters<typeof tar>[0] = [
    { type: 'dir', path: diffId.slice(7) },
    { type: 'file', path: layerPath, data: layer },
  ];
  const manifest = refs.map((ref) => {
    const config = JSON.stringify({
      architecture,
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: { Cmd: ['/hello', ref] },
      rootfs: { type: 'layers', diff_ids: [diffId] },
    });
    const hex = sha256(config);
    entries.push({ type: 'file', path: `${hex}.json`, data: Buffer.from(config) });
    return { Config: `${hex}.json`, RepoTags: [ref], Layers: [layerPath] };
  });
  entries.push({ type: 'file', path: 'manifest.json', data: Buffer.from(JSON.stringify(manifest)) });
  writeFileSync(out, tar(entries));
}
