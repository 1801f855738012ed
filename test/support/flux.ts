// A real Flux kustomize-controller beside enbi, for the coexistence tests: built from Go modules by
// test/cluster/build-flux.sh, run as a process outside the cluster (as a Flux pod would run in it), with its
// CRDs and source-controller's applied. source-controller is not run: a GitRepository's status is written
// by the test to point at a .tar.gz of manifests served here over HTTP, with its sha256 digest, exactly as
// source-controller would publish an artifact.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { applyCrdFile, until } from './kube.ts';

const REPO = new URL('../../', import.meta.url).pathname;
export const SOURCE = { group: 'source.toolkit.fluxcd.io', version: 'v1', plural: 'gitrepositories' };
export const KUSTOMIZE = { group: 'kustomize.toolkit.fluxcd.io', version: 'v1', plural: 'kustomizations' };

/** The directory holding kustomize-controller and crds/ (built once per version, cached). */
export function fluxDir(): string {
  const out = execFileSync('bash', [join(REPO, 'test/cluster/build-flux.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return out.trim().split('\n').at(-1)!;
}

/** Every CRD of kustomize-controller and source-controller (it needs each source kind to be served). */
export async function applyFluxCrds(kc: KubeConfig, dir: string): Promise<void> {
  for (const f of readdirSync(join(dir, 'crds'))
    .filter((n) => n.endsWith('.yaml'))
    .sort())
    await applyCrdFile(kc, join(dir, 'crds', f));
}

export interface KustomizeController {
  /** Its JSON log lines so far. */
  log(): string;
  stop(): Promise<void>;
}

/** Starts kustomize-controller against the cluster; `namespace` is its RUNTIME_NAMESPACE. */
export async function startKustomizeController(
  dir: string,
  kubeconfig: string,
  namespace: string,
  ports: { metrics: number; health: number },
): Promise<KustomizeController> {
  let out = '';
  const p: ChildProcess = spawn(
    join(dir, 'kustomize-controller'),
    [
      '--enable-leader-election=false',
      `--metrics-addr=127.0.0.1:${ports.metrics}`,
      `--health-addr=127.0.0.1:${ports.health}`,
      '--log-level=debug',
      '--watch-all-namespaces=true',
    ],
    {
      env: { ...process.env, KUBECONFIG: kubeconfig, RUNTIME_NAMESPACE: namespace },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => p.on('exit', () => resolve()));
  await until(
    'kustomize-controller to be ready',
    async () => {
      if (p.exitCode !== null) throw new Error(`kustomize-controller exited ${p.exitCode}: ${out.slice(-2000)}`);
      return (
        (await fetch(`http://127.0.0.1:${ports.health}/readyz`).then(
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

export interface Artifact {
  url: string;
  /** sha256:<hex> of the .tar.gz, which kustomize-controller verifies. */
  digest: string;
  revision: string;
}

export interface ArtifactServer {
  /** Writes `files` into a .tar.gz served under `name`, as source-controller would for a revision. */
  publish(name: string, revision: string, files: Record<string, string>): Artifact;
  close(): Promise<void>;
}

/** An HTTP server of artifacts on `host` (the cluster's bridge address, where source-controller's Service would be). */
export async function startArtifactServer(host: string): Promise<ArtifactServer> {
  const root = mkdtempSync(join(tmpdir(), 'enbi-flux-artifacts-'));
  const server: Server = createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1));
    try {
      const body = readFileSync(join(root, 'out', name.replaceAll('/', '_')));
      res.writeHead(200, { 'Content-Type': 'application/gzip', 'Content-Length': body.length }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as { port: number }).port;
  mkdirSync(join(root, 'out'));
  return {
    publish(name, revision, files) {
      const src = join(root, 'src', name);
      for (const [path, text] of Object.entries(files)) {
        mkdirSync(dirname(join(src, path)), { recursive: true });
        writeFileSync(join(src, path), text);
      }
      const file = `${name}-${revision}.tar.gz`.replaceAll('/', '_');
      execFileSync('tar', ['-czf', join(root, 'out', file), '-C', src, '.']);
      const digest = `sha256:${createHash('sha256')
        .update(readFileSync(join(root, 'out', file)))
        .digest('hex')}`;
      return { url: `http://${host}:${port}/${file}`, digest, revision };
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * A GitRepository whose status names `artifact` and says Ready, as source-controller writes it after a
 * fetch; calling it again with a new artifact is a new revision.
 */
export async function publishGitRepository(
  kc: KubeConfig,
  namespace: string,
  name: string,
  artifact: Artifact,
): Promise<void> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const path = { ...SOURCE, namespace };
  await custom
    .createNamespacedCustomObject({
      ...path,
      body: {
        apiVersion: `${SOURCE.group}/${SOURCE.version}`,
        kind: 'GitRepository',
        metadata: { name, namespace },
        spec: { url: 'https://git.invalid/manifests.git', interval: '1h', ref: { branch: 'main' } },
      },
    })
    .catch((err: unknown) => {
      if ((err as { code?: number }).code !== 409) throw err;
    });
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const got = (await custom.getNamespacedCustomObject({ ...path, name })) as { metadata: { generation: number } };
  const status = {
    observedGeneration: got.metadata.generation,
    url: artifact.url.replace(/[^/]+$/, 'latest.tar.gz'),
    artifact: {
      path: `gitrepository/${namespace}/${name}/${artifact.revision}.tar.gz`,
      url: artifact.url,
      revision: `main@sha1:${artifact.revision}`,
      digest: artifact.digest,
      lastUpdateTime: now,
    },
    conditions: [
      {
        type: 'Ready',
        status: 'True',
        reason: 'Succeeded',
        message: `stored artifact for revision 'main@sha1:${artifact.revision}'`,
        lastTransitionTime: now,
        observedGeneration: got.metadata.generation,
      },
      {
        type: 'ArtifactInStorage',
        status: 'True',
        reason: 'Succeeded',
        message: 'stored artifact',
        lastTransitionTime: now,
        observedGeneration: got.metadata.generation,
      },
    ],
  };
  await custom.patchNamespacedCustomObjectStatus(
    { ...path, name, body: { status } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
}

export interface FluxCondition {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface Kustomization {
  metadata: { name: string; generation: number; annotations?: Record<string, string> };
  status?: {
    observedGeneration?: number;
    lastAppliedRevision?: string;
    lastAttemptedRevision?: string;
    lastHandledReconcileAt?: string;
    conditions?: FluxCondition[];
    inventory?: { entries: { id: string; v: string }[] };
  };
}

/** A Kustomization applying the whole GitRepository `source`, waiting for every object it applies to be ready. */
export async function createKustomization(
  kc: KubeConfig,
  namespace: string,
  name: string,
  source: string,
  o: { timeout: string; interval?: string; healthCheckExprs?: unknown[] },
): Promise<void> {
  await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    ...KUSTOMIZE,
    namespace,
    body: {
      apiVersion: `${KUSTOMIZE.group}/${KUSTOMIZE.version}`,
      kind: 'Kustomization',
      metadata: { name, namespace },
      spec: {
        interval: o.interval ?? '1h',
        path: './',
        prune: true,
        wait: true,
        timeout: o.timeout,
        sourceRef: { kind: 'GitRepository', name: source },
        ...(o.healthCheckExprs !== undefined ? { healthCheckExprs: o.healthCheckExprs } : {}),
      },
    },
  });
}

export async function readKustomization(kc: KubeConfig, namespace: string, name: string): Promise<Kustomization> {
  return (await kc
    .makeApiClient(CustomObjectsApi)
    .getNamespacedCustomObject({ ...KUSTOMIZE, namespace, name })) as Kustomization;
}

export const conditionOf = (k: Kustomization | undefined, type: string): FluxCondition | undefined =>
  k?.status?.conditions?.find((c) => c.type === type);

/** Asks for a reconcile now, as `flux reconcile kustomization` does. */
export async function requestReconcile(kc: KubeConfig, namespace: string, name: string, at: string): Promise<void> {
  await kc
    .makeApiClient(CustomObjectsApi)
    .patchNamespacedCustomObject(
      { ...KUSTOMIZE, namespace, name, body: { metadata: { annotations: { 'reconcile.fluxcd.io/requestedAt': at } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
}
