// enbi installed the way a user installs it: deploy/ through a kustomize overlay holding only what a user of a
// k3s node writes (their controller configuration, the webhook Secret, the Nix daemon's extra settings, and
// install.md's k3s patch of the agent's containerd directory), rendered by the real kustomize, applied to the
// cluster, and waited on until the controller and the agent are Ready. Shared by the in-cluster test and
// the demo (`npm start`).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { AppsV1Api, type KubeConfig, KubernetesObjectApi, type KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments, stringify } from 'yaml';
import { run } from '../cluster/proc.ts';
import { renderTool } from './render-tools.ts';
import { until } from './kube.ts';

export const DEPLOY_DIR = new URL('../../deploy/', import.meta.url).pathname;
export const INSTALL_NS = 'enbi-system';
/** k3s's containerd: the socket, and the directory the agent mounts (docs/install.md). */
export const K3S_SOCKET = '/run/k3s/containerd/containerd.sock';
export const K3S_SOCKET_DIR = '/run/k3s/containerd';

export interface OverlayOptions {
  /** The controller's config.yaml (what a user writes in deploy/controller.yaml's ConfigMap). */
  config: Record<string, unknown>;
  webhookSecret: string;
  /** Extra nix.conf for the node's Nix daemon (the optional Secret enbi-nix-daemon). */
  nixConf?: string;
  /** The containerd directory the agent mounts, when not /run/containerd (k3s: K3S_SOCKET_DIR). */
  containerdDir?: string;
  /** The node's Nix store directory, when not /var/lib/enbi/nix (the config's cache.hostPath must name it too). */
  nixStoreDir?: string;
  /** containerd sockets the build-Job policy admits, when not the distributions' usual places. */
  sockets?: string[];
}

/** The agent's containerd volume and mount moved to another directory: docs/install.md's patch. */
export function containerdDirPatch(dir: string): object[] {
  return [
    // The tests make a reordered deploy/agent.yaml fail here rather than patch another volume.
    { op: 'test', path: '/spec/template/spec/volumes/0/name', value: 'containerd' },
    { op: 'replace', path: '/spec/template/spec/volumes/0/hostPath/path', value: dir },
    { op: 'test', path: '/spec/template/spec/containers/0/volumeMounts/0/name', value: 'containerd' },
    { op: 'replace', path: '/spec/template/spec/containers/0/volumeMounts/0/mountPath', value: dir },
  ];
}

/** The Nix daemon's store volume moved to another directory (the controller's cache.hostPath names the same). */
export function nixStorePatch(dir: string): object[] {
  return [
    { op: 'test', path: '/spec/template/spec/volumes/0/name', value: 'nix-store' },
    { op: 'replace', path: '/spec/template/spec/volumes/0/hostPath/path', value: dir },
  ];
}

/**
 * docs/install.md's patch of the build-Job admission policy (deploy/build-jobs.yaml): the images and store it
 * expects, the same as the config names. Each value replaces its variable's CEL string literal.
 */
export function buildJobsPolicyPatch(o: {
  builderImage?: string;
  importerImage?: string;
  storePath?: string;
  sockets?: string[];
}): object[] {
  const order = ['builderImage', 'importerImage', 'storePath', 'sockets'] as const;
  return order.flatMap((name, i) =>
    o[name] === undefined
      ? []
      : [
          { op: 'test', path: `/spec/variables/${i}/name`, value: name },
          { op: 'replace', path: `/spec/variables/${i}/expression`, value: JSON.stringify(o[name]) },
        ],
  );
}

/** Writes a kustomize overlay of deploy/ into `dir` (which must not be inside deploy/). */
export function writeOverlay(dir: string, o: OverlayOptions): string {
  mkdirSync(dir, { recursive: true });
  const patches: object[] = [{ path: 'config.yaml' }];
  writeFileSync(
    join(dir, 'config.yaml'),
    stringify({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'enbi-controller', namespace: INSTALL_NS },
      data: { 'config.yaml': stringify(o.config) },
    }),
  );
  if (o.containerdDir !== undefined)
    patches.push({
      target: { kind: 'DaemonSet', name: 'enbi-agent' },
      patch: JSON.stringify(containerdDirPatch(o.containerdDir)),
    });
  if (o.nixStoreDir !== undefined)
    patches.push({
      target: { kind: 'DaemonSet', name: 'enbi-nix-daemon' },
      patch: JSON.stringify(nixStorePatch(o.nixStoreDir)),
    });
  // The build-Job policy expects what the config names (docs/install.md), as a user's overlay says it.
  const policy = buildJobsPolicyPatch({
    ...(typeof o.config.builderImage === 'string' ? { builderImage: o.config.builderImage } : {}),
    ...(typeof o.config.importerImage === 'string' ? { importerImage: o.config.importerImage } : {}),
    ...(o.nixStoreDir !== undefined ? { storePath: o.nixStoreDir } : {}),
    ...(o.sockets !== undefined ? { sockets: o.sockets } : {}),
  });
  if (policy.length > 0)
    patches.push({
      target: { kind: 'ValidatingAdmissionPolicy', name: 'enbi-build-jobs' },
      patch: JSON.stringify(policy),
    });
  const secrets: { name: string; namespace: string; literals?: string[]; files?: string[] }[] = [
    { name: 'enbi-webhook', namespace: INSTALL_NS, literals: [`secret=${o.webhookSecret}`] },
  ];
  if (o.nixConf !== undefined) {
    writeFileSync(join(dir, 'nix.conf'), o.nixConf);
    secrets.push({ name: 'enbi-nix-daemon', namespace: INSTALL_NS, files: ['nix.conf'] });
  }
  writeFileSync(
    join(dir, 'kustomization.yaml'),
    stringify({
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      resources: [relative(dir, DEPLOY_DIR)],
      patches,
      secretGenerator: secrets,
      generatorOptions: { disableNameSuffixHash: true },
    }),
  );
  return dir;
}

/** `kustomize build dir`, parsed. */
export async function kustomizeBuild(dir: string): Promise<KubernetesObject[]> {
  const out = await run(renderTool('kustomize'), ['build', dir]);
  return parseAllDocuments(out)
    .map((d) => d.toJS() as KubernetesObject)
    .filter((o) => o !== null);
}

const order = (o: KubernetesObject): number =>
  o.kind === 'CustomResourceDefinition' ? 0 : o.kind === 'Namespace' ? 1 : 2;

/** Server-side apply of every object, CRDs and Namespaces first (as `kubectl apply --server-side` would). */
export async function applyAll(kc: KubeConfig, objects: KubernetesObject[]): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  for (const obj of [...objects].sort((a, b) => order(a) - order(b))) {
    await api
      .patch(obj, undefined, undefined, 'enbi-install', true, 'application/apply-patch+yaml')
      .catch((err: unknown) => {
        throw new Error(
          `applying ${obj.kind} ${obj.metadata?.namespace ?? ''}/${obj.metadata?.name}: ${(err as Error).message.split('\n')[0]}`,
        );
      });
    if (obj.kind === 'CustomResourceDefinition') {
      await until(
        `CRD ${obj.metadata?.name} established`,
        async () => {
          const crd = (await api.read({
            apiVersion: obj.apiVersion,
            kind: obj.kind,
            metadata: { name: obj.metadata!.name! },
          })) as { status?: { conditions?: { type: string; status: string }[] } };
          return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') === true
            ? true
            : undefined;
        },
        30_000,
      );
    }
  }
}

/** Waits until every controller replica, agent pod and Nix daemon pod is Ready; `why()` says what is missing. */
export async function waitInstalled(kc: KubeConfig, ms: number, why: () => Promise<string>): Promise<void> {
  const apps = kc.makeApiClient(AppsV1Api);
  const daemonSetReady = async (name: string): Promise<boolean> => {
    const ds = await apps.readNamespacedDaemonSet({ name, namespace: INSTALL_NS });
    return (ds.status?.desiredNumberScheduled ?? 0) > 0 && ds.status?.numberReady === ds.status?.desiredNumberScheduled;
  };
  await until(
    'the controller, the agent and the Nix daemon Ready',
    async () => {
      const dep = await apps.readNamespacedDeployment({ name: 'enbi-controller', namespace: INSTALL_NS });
      const controllerReady = (dep.status?.readyReplicas ?? 0) === (dep.spec?.replicas ?? 1);
      return controllerReady && (await daemonSetReady('enbi-agent')) && (await daemonSetReady('enbi-nix-daemon'))
        ? true
        : undefined;
    },
    ms,
    1000,
  ).catch(async (err: unknown) => {
    throw new Error(`${(err as Error).message}\n${await why()}`);
  });
}
