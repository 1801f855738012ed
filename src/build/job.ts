// The build Job of a NixBuild: a build container that runs Nix with the node's persistent cache and
// streams the image into a FIFO, and an import container, the only one that mounts containerd's socket,
// that reads the FIFO into containerd's k8s.io namespace under the exact references asked for.
import type { V1Job, V1Toleration, V1Volume } from '@kubernetes/client-node';
import { expandAttr } from '../flake/attr.ts';
import { platformOf } from '../cluster/systems.ts';
import type { NixBuild } from '../api/nixbuild.ts';
import { BUILD_SCRIPT } from './scripts.ts';

export interface JobSettings {
  namespace: string;
  builderImage: string;
  /**
   * Runs `enbi import`: the controller image (its entrypoint is enbi's CLI; the container gets `import …` as
   * arguments), or any image whose entrypoint is, or give importerCommand.
   */
  importerImage: string;
  /** The command that runs enbi's CLI in importerImage, when its entrypoint does not (e.g. ['node', '/app/dist/cli/main.js']). */
  importerCommand?: string[];
  /** Host directory holding the node's Nix store and ~/.cache/nix (mounted at /nix). */
  cacheHostPath: string;
  /** containerd socket on the node. */
  containerdSocket: string;
  builderTolerations: V1Toleration[];
  /** Extra `--option name value` pairs for Nix, e.g. substituters. */
  nixOptions: Record<string, string>;
  /** Image prefixes the import may write (the controller's allowedImages): `enbi import` refuses any other name. */
  allowedImages?: readonly string[];
  /** Seconds a build may run before Kubernetes stops it. */
  activeDeadlineSeconds: number;
  /** Runs containers as privileged; only needed for Nix's own sandbox. */
  privilegedBuild?: boolean;
}

export const LABEL_BUILD = 'enbi.hrzn.ee/nixbuild';
export const LABEL_MANAGED = 'app.kubernetes.io/managed-by';

/** The node a build Job is pinned to (its required node affinity on metadata.name). */
export function jobNodeOf(job: V1Job): string | undefined {
  const terms = job.spec?.template.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
  return terms[0]?.matchFields?.find((f) => f.key === 'metadata.name')?.values?.[0];
}

export function buildJob(nb: NixBuild, node: string, nodeSystem: string | undefined, attempt: number, s: JobSettings): V1Job {
  const name = `${nb.metadata.name}-${attempt}`;
  const platform = platformOf(nb.spec.system);
  const installable = `${nb.spec.flakeUrl}#${expandAttr(nb.spec.packageName, nb.spec.system)}`;
  // Nix's sandbox needs mount namespaces (a privileged pod); the build runs unprivileged without it.
  const options: Record<string, string> = { 'experimental-features': 'nix-command flakes', sandbox: 'false', 'build-users-group': '', ...s.nixOptions };
  if (nodeSystem !== nb.spec.system) options['extra-platforms'] = nb.spec.system;
  const volumes: V1Volume[] = [
    { name: 'nix', hostPath: { path: s.cacheHostPath, type: 'DirectoryOrCreate' } },
    { name: 'work', emptyDir: {} },
    { name: 'containerd', hostPath: { path: s.containerdSocket, type: 'Socket' } },
  ];
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name,
      namespace: s.namespace,
      labels: { [LABEL_BUILD]: nb.metadata.name, [LABEL_MANAGED]: 'enbi' },
      ownerReferences: nb.metadata.uid !== undefined ? [{ apiVersion: nb.apiVersion, kind: nb.kind, name: nb.metadata.name, uid: nb.metadata.uid, controller: true, blockOwnerDeletion: true }] : [],
    },
    spec: {
      // enbi retries with its own backoff so that each attempt's log stays readable.
      backoffLimit: 0,
      activeDeadlineSeconds: s.activeDeadlineSeconds,
      ttlSecondsAfterFinished: 3600,
      template: {
        metadata: { labels: { [LABEL_BUILD]: nb.metadata.name, [LABEL_MANAGED]: 'enbi' } },
        spec: {
          restartPolicy: 'Never',
          affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: [node] }] }] } } },
          tolerations: s.builderTolerations,
          enableServiceLinks: false,
          automountServiceAccountToken: false,
          volumes,
          containers: [
            {
              name: 'build',
              image: s.builderImage,
              imagePullPolicy: 'IfNotPresent',
              command: ['/bin/sh', '-c', BUILD_SCRIPT],
              env: [
                { name: 'ENBI_INSTALLABLE', value: installable },
                { name: 'NIX_CONFIG', value: Object.entries(options).map(([k, v]) => `${k} = ${v}`).join('\n') },
                // ~/.cache/nix lives on the node's cache volume beside the store.
                { name: 'HOME', value: '/nix/var/enbi/home' },
              ],
              volumeMounts: [
                { name: 'nix', mountPath: '/nix' },
                { name: 'work', mountPath: '/work' },
              ],
              securityContext: s.privilegedBuild === true ? { privileged: true } : { allowPrivilegeEscalation: false },
              terminationMessagePolicy: 'FallbackToLogsOnError',
            },
            {
              name: 'import',
              image: s.importerImage,
              imagePullPolicy: 'IfNotPresent',
              ...(s.importerCommand !== undefined ? { command: s.importerCommand } : {}),
              args: ['import', '--fifo', '/work/image.fifo', '--failed-marker', '/work/failed', '--termination-log', '/dev/termination-log'],
              env: [
                { name: 'ENBI_IMAGES', value: (nb.spec.images ?? []).join(' ') },
                { name: 'ENBI_NIXBUILD', value: nb.metadata.name },
                ...(s.allowedImages !== undefined ? [{ name: 'ENBI_ALLOWED_IMAGES', value: s.allowedImages.join(' ') }] : []),
                { name: 'ENBI_PLATFORM', value: platform !== undefined ? `${platform.os}/${platform.arch}` : '' },
                { name: 'CONTAINERD_ADDRESS', value: '/run/enbi/containerd.sock' },
              ],
              volumeMounts: [
                { name: 'work', mountPath: '/work' },
                { name: 'containerd', mountPath: '/run/enbi/containerd.sock' },
              ],
              // containerd's socket is root's (0660): the controller image runs as nonroot (65532) otherwise.
              securityContext: { allowPrivilegeEscalation: false, runAsUser: 0, runAsGroup: 0 },
              terminationMessagePolicy: 'FallbackToLogsOnError',
            },
          ],
        },
      },
    },
  };
}
