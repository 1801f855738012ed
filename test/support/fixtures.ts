// Builders of Kubernetes objects for tests: raw Node objects as the API serves them, and manifests.
import type { V1Deployment } from '@kubernetes/client-node';
import { stringify } from 'yaml';

export const REV_A = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
export const REV_B = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';

export interface NodeOptions {
  arch?: string;
  ready?: boolean;
  unschedulable?: boolean;
  images?: string[];
  /** Pads status.images up to this length with unrelated images (to model kubelet's cap). */
  padImagesTo?: number;
  taints?: { key: string; value?: string; effect: string }[];
  labels?: Record<string, string>;
  extraSystems?: string[];
}

export function rawNode(name: string, o: NodeOptions = {}): Record<string, unknown> {
  const images = (o.images ?? []).map((n) => ({ names: [n], sizeBytes: 1000 }));
  while (o.padImagesTo !== undefined && images.length < o.padImagesTo)
    images.push({ names: [`docker.io/library/filler:${images.length}`], sizeBytes: 10 });
  const labels: Record<string, string> = {
    'kubernetes.io/arch': o.arch ?? 'amd64',
    'kubernetes.io/os': 'linux',
    'kubernetes.io/hostname': name,
    ...o.labels,
  };
  for (const s of o.extraSystems ?? []) labels[`enbi.hrzn.ee/builds.${s}`] = 'true';
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels },
    spec: {
      ...(o.taints !== undefined ? { taints: o.taints } : {}),
      ...(o.unschedulable === true ? { unschedulable: true } : {}),
    },
    status: { conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }], images },
  };
}

export interface DeploymentOptions {
  namespace?: string;
  flake?: string;
  annotations?: Record<string, string>;
  image?: string;
  containers?: { name: string; image: string }[];
  nodeSelector?: Record<string, string>;
  affinity?: unknown;
  tolerations?: unknown[];
  kind?: string;
}

export function deployment(name: string, o: DeploymentOptions = {}): Record<string, unknown> {
  const annotations = { ...(o.flake !== undefined ? { 'enbi.hrzn.ee/flake': o.flake } : {}), ...o.annotations };
  const spec: Record<string, unknown> = {
    containers: o.containers ?? [{ name: 'app', image: o.image ?? `registry.local/${name}:v1` }],
    ...(o.nodeSelector !== undefined ? { nodeSelector: o.nodeSelector } : {}),
    ...(o.affinity !== undefined ? { affinity: o.affinity } : {}),
    ...(o.tolerations !== undefined ? { tolerations: o.tolerations } : {}),
  };
  return {
    apiVersion: 'apps/v1',
    kind: o.kind ?? 'Deployment',
    metadata: { name, namespace: o.namespace ?? 'default' },
    spec: {
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name }, annotations }, spec },
    },
  };
}

export function yamlDocs(...objects: unknown[]): string {
  return objects.map((o) => stringify(o)).join('---\n');
}

export interface IdleAppOptions {
  name: string;
  namespace: string;
  /** The flake reference without the attribute (`#image` is added). */
  flakeUrl: string;
  image: string;
  /** kubernetes.io/hostname to pin the pod to. */
  node?: string;
  eager?: boolean;
}

/**
 * The end-to-end tests' app: a Deployment of one pod that idles in the image enbi builds (the image's own
 * command prints a line and exits), never pulled (imagePullPolicy Never), annotated with its flake.
 */
export function idleAppDeployment(o: IdleAppOptions): V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: o.name, namespace: o.namespace },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: o.name } },
      template: {
        metadata: {
          labels: { app: o.name },
          annotations: {
            'enbi.hrzn.ee/flake': `${o.flakeUrl}#image`,
            ...(o.eager === true ? { 'enbi.hrzn.ee/build': 'eager' } : {}),
          },
        },
        spec: {
          ...(o.node !== undefined ? { nodeSelector: { 'kubernetes.io/hostname': o.node } } : {}),
          containers: [
            {
              name: 'app',
              image: o.image,
              imagePullPolicy: 'Never',
              command: ['/bin/sh', '-c', 'exec /bin/busybox sleep 3600'],
            },
          ],
        },
      },
    },
  };
}
