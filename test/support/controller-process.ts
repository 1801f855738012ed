// `enbi controller` as a subprocess against a full-mode test cluster whose node really builds: the builder and
// importer images imported into the node's containerd, the node's Nix daemon on its cache, and a config file
// naming them. The process is the product as a Deployment would run it, not the library called in-process.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { NodeState } from '../cluster/harness.ts';
import { freePort } from '../cluster/ports.ts';
import { importBuildImages } from './build-images.ts';
import { until } from './kube.ts';
import { type NixDaemon, startNixDaemon } from './nix-daemon.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

export interface BuildingNode {
  /** Config settings for builds on this node (builder images, cache, containerd socket). */
  settings: Record<string, unknown>;
  daemon: NixDaemon;
}

/** Makes a real node ready to build: the build images in its containerd, its Nix daemon on its cache. */
export async function buildingNode(node: NodeState): Promise<BuildingNode> {
  const images = await importBuildImages(node);
  const cache = join(node.dir, 'enbi-nix-cache');
  const daemon = await startNixDaemon(cache);
  return {
    daemon,
    settings: {
      builderImage: images.builder.ref,
      importerImage: images.importer.ref,
      cache: { hostPath: cache },
      containerdSocket: node.containerdSocket,
    },
  };
}

export interface ControllerProcess {
  log(): string;
  stop(): Promise<void>;
}

/** Starts `enbi controller` with `config` (listen is added) and waits until it is ready. */
export async function startControllerProcess(
  kubeconfig: string,
  config: Record<string, unknown>,
): Promise<ControllerProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-controller-'));
  const port = await freePort();
  const file = join(dir, 'config.yaml');
  await writeFile(file, stringify({ ...config, listen: { host: '127.0.0.1', port } }));
  let out = '';
  const p: ChildProcess = spawn(
    process.execPath,
    [
      join(ROOT, 'bin/enbi.js'),
      'controller',
      '--config',
      file,
      '--kubeconfig',
      kubeconfig,
      '--cache-dir',
      join(dir, 'git'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => p.on('exit', () => resolve()));
  await until(
    'the controller to be ready',
    async () => {
      if (p.exitCode !== null) throw new Error(`enbi controller exited ${p.exitCode}: ${out.slice(-2000)}`);
      return (
        (await fetch(`http://127.0.0.1:${port}/readyz`).then(
          (r) => r.ok,
          () => false,
        )) || undefined
      );
    },
    60_000,
    250,
  );
  return {
    log: () => out,
    async stop() {
      if (p.exitCode === null) p.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (p.exitCode === null) p.kill('SIGKILL');
    },
  };
}
