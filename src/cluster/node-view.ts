// What enbi needs to know of a Node: the systems it runs and can build, whether pods can land on it,
// and which images it holds, with how far that list can be trusted.
import { normalizeImageName } from '../image/reference.ts';
import { NODE_BUILDER, NODE_BUILDS_PREFIX } from '../contract/keys.ts';
import type { SchedulableNode, Taint } from '../plan/scheduling.ts';
import { memo } from '../kube/intern.ts';
import { isKnownSystem, nixSystemOf } from './systems.ts';

/**
 * Normalized once per distinct name, and the result shared: thousands of nodes list the same images, and a
 * view's set then holds the same strings as every other node's instead of a copy each.
 */
const normalizedName = memo(normalizeImageName);

/** kubelet's default `nodeStatusMaxImages`: a list this long may have been cut. */
export const DEFAULT_NODE_STATUS_MAX_IMAGES = 50;

export type ImageSource = 'node-status' | 'agent';

export interface NodeView extends SchedulableNode {
  /** The Nix system its pods run, from kubernetes.io/arch and kubernetes.io/os. */
  system?: string;
  /** Systems it can build: its own plus those labelled `enbi.hrzn.ee/builds.<system>=true`. */
  buildSystems: string[];
  builderAllowed: boolean;
  images: ReadonlySet<string>;
  /** False when the list may be truncated: an image absent from it is unknown, not missing. */
  imagesComplete: boolean;
  /**
   * Images kubelet itself reports absent (a pod on the node waits with ErrImageNeverPull, ErrImagePull or
   * ImagePullBackOff): missing there even when the list is incomplete.
   */
  missing?: ReadonlySet<string>;
  imageSource: ImageSource;
  /**
   * From the agent's inventory: for each image name, the platforms (os/arch) whose manifest the node holds,
   * its own or not. In Spegel mode a node holding a system's manifest serves that system to its peers,
   * even when it runs another (an amd64 node that built aarch64 under QEMU).
   */
  platformImages?: ReadonlyMap<string, ReadonlySet<string>>;
  /** When the Ready condition last changed (ISO 8601), when the node says: how long it has been (not) Ready. */
  readySince?: string;
  /**
   * False when what is imported on this node cannot be spread by Spegel: containerd before 2.0 publishes no
   * content events, so Spegel (v0.7.4) never advertises the blobs of an image imported while it runs. Such a
   * node builds for itself, but is not chosen to build for its peers in spegel mode while another can.
   */
  spegelSource?: boolean;
}

type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});

/** Whether Spegel can spread what is imported into this runtime (`containerd://2.1.4`: yes; `containerd://1.7.28`: no). */
export function spegelSource(runtimeVersion: string): boolean {
  const m = /^containerd:\/\/v?(\d+)\./.exec(runtimeVersion);
  return m === null || Number(m[1]) >= 2;
}

export function nodeViewOf(node: unknown, maxImages = DEFAULT_NODE_STATUS_MAX_IMAGES): NodeView {
  const metadata = asObj(asObj(node).metadata);
  const spec = asObj(asObj(node).spec);
  const status = asObj(asObj(node).status);
  const labels = Object.fromEntries(Object.entries(asObj(metadata.labels)).map(([k, v]) => [k, String(v)]));
  const arch = labels['kubernetes.io/arch'] ?? labels['beta.kubernetes.io/arch'];
  const os = labels['kubernetes.io/os'] ?? labels['beta.kubernetes.io/os'] ?? 'linux';
  const system = arch !== undefined ? nixSystemOf(arch, os) : undefined;
  const extra = Object.entries(labels)
    .filter(([k, v]) => k.startsWith(NODE_BUILDS_PREFIX) && v === 'true')
    .map(([k]) => k.slice(NODE_BUILDS_PREFIX.length))
    .filter(isKnownSystem);
  const conditions = Array.isArray(status.conditions) ? (status.conditions as Obj[]) : [];
  const statusImages = Array.isArray(status.images) ? (status.images as Obj[]) : [];
  const images = new Set<string>();
  for (const img of statusImages) {
    for (const name of Array.isArray(img.names) ? img.names : [])
      if (typeof name === 'string') images.add(normalizedName(name));
  }
  const view: NodeView = {
    name: String(metadata.name ?? ''),
    labels,
    taints: Array.isArray(spec.taints) ? (spec.taints as Taint[]) : [],
    ready: conditions.some((c) => c.type === 'Ready' && c.status === 'True'),
    unschedulable: spec.unschedulable === true,
    buildSystems: [...new Set([...(system !== undefined ? [system] : []), ...extra])],
    builderAllowed: labels[NODE_BUILDER] !== 'false',
    images,
    imagesComplete: statusImages.length < maxImages,
    imageSource: 'node-status',
  };
  if (system !== undefined) view.system = system;
  const runtime = asObj(status.nodeInfo).containerRuntimeVersion;
  if (typeof runtime === 'string') view.spegelSource = spegelSource(runtime);
  const since = conditions.find((c) => c.type === 'Ready')?.lastTransitionTime;
  if (since instanceof Date) view.readySince = since.toISOString();
  else if (typeof since === 'string' && since !== '') view.readySince = since;
  return view;
}
