// The build Job of a NixBuild: a build container that asks the node's Nix daemon (the node component's
// DaemonSet enbi-nix-daemon, deploy/nix-daemon.yaml) to build the flake, and streams the image into a FIFO; an import
// container, the only one that mounts containerd's socket, that reads the FIFO into containerd's k8s.io
// namespace under the exact references asked for.
//
// Isolation: the build container runs as an unprivileged user with the node's store mounted read-only; the
// daemon owns the store and runs every builder in Nix's sandbox (its own mount, pid, network and user
// namespaces, only the build's inputs visible). The container's HOME and TMPDIR are its own emptyDirs, so no
// build sees another's Nix configuration or caches, and the daemon ignores the restricted settings an
// untrusted client sends (post-build-hook, substituters, sandbox, …). No flake code runs in the build
// container, which holds the Nix Secret and the pod's network: a streamLayeredImage script runs in the daemon's
// sandbox too (scripts.ts). Pod Security: every container meets
// `restricted` but for the hostPath volumes (the store, the socket) and the import container's uid 0
// (containerd's socket is root's, 0660): the namespace enforces `privileged` (deploy/namespace.yaml).
import type { V1Job, V1ResourceRequirements, V1SecurityContext, V1Toleration, V1Volume } from '@kubernetes/client-node';
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
  /** Host directory holding the node's Nix store, owned by the node's Nix daemon (mounted read-only at /nix). */
  cacheHostPath: string;
  /** containerd socket on the node. */
  containerdSocket: string;
  builderTolerations: V1Toleration[];
  /**
   * Settings of the Nix client that evaluates the flake (NIX_CONFIG). Builder settings (substituters,
   * extra-platforms, sandbox) are the node daemon's: the daemon ignores restricted settings from a build.
   */
  nixOptions: Record<string, string>;
  /** A Secret (key nix.conf: access-tokens, netrc-file, …) mounted into the build container, never in the pod spec. */
  nixSecretName?: string;
  /** Resources of the build and import containers (the builders themselves run in the node daemon's cgroup). */
  resources?: { build: V1ResourceRequirements; import: V1ResourceRequirements };
  /** Image prefixes the import may write (the controller's allowedImages): `enbi import` refuses any other name. */
  allowedImages?: readonly string[];
  /** Seconds a build may run before Kubernetes stops it. */
  activeDeadlineSeconds: number;
}

/** The build container's user: unprivileged, and not root, which the Nix daemon would trust. */
export const BUILD_UID = 65532;
export const DEFAULT_JOB_RESOURCES = {
  build: { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '2Gi' } },
  import: { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '512Mi' } },
};
const NIX_SECRET_DIR = '/etc/enbi/nix-secret';

export const LABEL_BUILD = 'enbi.hrzn.ee/nixbuild';
export const LABEL_MANAGED = 'app.kubernetes.io/managed-by';

/** The node a build Job is pinned to (its required node affinity on metadata.name). */
export function jobNodeOf(job: V1Job): string | undefined {
  const terms =
    job.spec?.template.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
      ?.nodeSelectorTerms ?? [];
  return terms[0]?.matchFields?.find((f) => f.key === 'metadata.name')?.values?.[0];
}

export function buildJob(nb: NixBuild, node: string, attempt: number, s: JobSettings): V1Job {
  const name = `${nb.metadata.name}-${attempt}`;
  const platform = platformOf(nb.spec.system);
  const installable = `${nb.spec.flakeUrl}#${expandAttr(nb.spec.packageName, nb.spec.system)}`;
  const options: Record<string, string> = { 'experimental-features': 'nix-command flakes', ...s.nixOptions };
  const resources = s.resources ?? DEFAULT_JOB_RESOURCES;
  const volumes: V1Volume[] = [
    { name: 'nix', hostPath: { path: s.cacheHostPath, type: 'DirectoryOrCreate' } },
    { name: 'work', emptyDir: {} },
    { name: 'home', emptyDir: {} },
    { name: 'tmp', emptyDir: {} },
    { name: 'containerd', hostPath: { path: s.containerdSocket, type: 'Socket' } },
    ...(s.nixSecretName !== undefined
      ? [{ name: 'nix-secret', secret: { secretName: s.nixSecretName, defaultMode: 0o444 } }]
      : []),
  ];
  const locked: V1SecurityContext = {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
  };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name,
      namespace: s.namespace,
      labels: { [LABEL_BUILD]: nb.metadata.name, [LABEL_MANAGED]: 'enbi' },
      ownerReferences:
        nb.metadata.uid !== undefined
          ? [
              {
                apiVersion: nb.apiVersion,
                kind: nb.kind,
                name: nb.metadata.name,
                uid: nb.metadata.uid,
                controller: true,
                blockOwnerDeletion: true,
              },
            ]
          : [],
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
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: [node] }] }],
              },
            },
          },
          tolerations: s.builderTolerations,
          enableServiceLinks: false,
          automountServiceAccountToken: false,
          securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
          volumes,
          containers: [
            {
              name: 'build',
              image: s.builderImage,
              imagePullPolicy: 'IfNotPresent',
              command: ['/bin/sh', '-c', BUILD_SCRIPT],
              env: [
                { name: 'ENBI_INSTALLABLE', value: installable },
                // The system of the derivation that runs an image script in Nix's sandbox (scripts.ts).
                { name: 'ENBI_SYSTEM', value: nb.spec.system },
                {
                  name: 'NIX_CONFIG',
                  value: Object.entries(options)
                    .map(([k, v]) => `${k} = ${v}`)
                    .join('\n'),
                },
                // The store is the daemon's: this container only asks it to build.
                { name: 'NIX_REMOTE', value: 'daemon' },
                { name: 'HOME', value: '/home/build' },
                { name: 'TMPDIR', value: '/tmp' },
                ...(s.nixSecretName !== undefined
                  ? [{ name: 'NIX_USER_CONF_FILES', value: `${NIX_SECRET_DIR}/nix.conf` }]
                  : []),
              ],
              volumeMounts: [
                { name: 'nix', mountPath: '/nix', readOnly: true },
                { name: 'work', mountPath: '/work' },
                { name: 'home', mountPath: '/home/build' },
                { name: 'tmp', mountPath: '/tmp' },
                ...(s.nixSecretName !== undefined
                  ? [{ name: 'nix-secret', mountPath: NIX_SECRET_DIR, readOnly: true }]
                  : []),
              ],
              resources: resources.build,
              securityContext: { ...locked, runAsUser: BUILD_UID, runAsGroup: BUILD_UID, runAsNonRoot: true },
              terminationMessagePolicy: 'FallbackToLogsOnError',
            },
            {
              name: 'import',
              image: s.importerImage,
              imagePullPolicy: 'IfNotPresent',
              ...(s.importerCommand !== undefined ? { command: s.importerCommand } : {}),
              args: [
                'import',
                '--fifo',
                '/work/image.fifo',
                '--failed-marker',
                '/work/failed',
                '--termination-log',
                '/dev/termination-log',
              ],
              env: [
                { name: 'ENBI_IMAGES', value: (nb.spec.images ?? []).join(' ') },
                { name: 'ENBI_NIXBUILD', value: nb.metadata.name },
                ...(s.allowedImages !== undefined
                  ? [{ name: 'ENBI_ALLOWED_IMAGES', value: s.allowedImages.join(' ') }]
                  : []),
                { name: 'ENBI_PLATFORM', value: platform !== undefined ? `${platform.os}/${platform.arch}` : '' },
                { name: 'CONTAINERD_ADDRESS', value: '/run/enbi/containerd.sock' },
              ],
              volumeMounts: [
                { name: 'work', mountPath: '/work' },
                { name: 'containerd', mountPath: '/run/enbi/containerd.sock' },
              ],
              resources: resources.import,
              // containerd's socket is root's (0660 root:root): uid 0 as its owner, with no capabilities at all.
              securityContext: { ...locked, runAsUser: 0, runAsGroup: 0, runAsNonRoot: false },
              terminationMessagePolicy: 'FallbackToLogsOnError',
            },
          ],
        },
      },
    },
  };
}
