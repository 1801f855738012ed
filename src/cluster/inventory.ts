// What a node's NodeImages object (written by `enbi agent`) says about the images it holds, in the terms
// of NodeView: the set of image names, whether the list is complete, and where it comes from. The agent's
// inventory comes first where it is present and fresh; otherwise Node.status.images (a hint: capped at 50,
// stale) stays the source. Pure: no I/O.
import type { NodeImages, NodeImagesStatus } from '../api/nodeimages.ts';
import { normalizeImageName } from '../image/reference.ts';
import type { NodeView } from './node-view.ts';

export interface InventoryImages {
  /** Normalized names of the images the node can run (for its platform, when given). */
  images: ReadonlySet<string>;
  /** True when the agent listed every image: absent from the set means missing, not unknown. */
  imagesComplete: boolean;
  imageSource: 'agent';
  /** When the agent last checked containerd. */
  observedAt: string;
  /** Every name with the platforms (os/arch) whose manifest the node holds under it. */
  platformImages: ReadonlyMap<string, ReadonlySet<string>>;
}

export interface InventoryOptions {
  /** The node's platform, `os/arch` (e.g. linux/arm64; a variant is ignored): images without it are left out. */
  platform?: string;
  /** Now, for the freshness check (default the current time). */
  now?: Date;
  /**
   * Age beyond which the inventory is not trusted (the agent is gone or cannot reach containerd). Default:
   * twice the agent's resync period (as its status states it, believed between 10 s and 1 h) plus a minute
   * (21 min with the default 10-min resync).
   */
  maxAgeMs?: number;
}

const IMAGE_ID = /^sha256:[0-9a-f]{64}$/;
type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const osArch = (p: string): string => p.split('/').slice(0, 2).join('/');

/** `os/arch` of a Node from its labels (kubernetes.io/os, kubernetes.io/arch), or undefined. */
export function nodePlatform(labels: Record<string, string> | undefined): string | undefined {
  const arch = labels?.['kubernetes.io/arch'] ?? labels?.['beta.kubernetes.io/arch'];
  const os = labels?.['kubernetes.io/os'] ?? labels?.['beta.kubernetes.io/os'] ?? 'linux';
  return arch !== undefined ? `${os}/${arch}` : undefined;
}

/** The agent's default resync; the period a status states is believed only within these bounds. */
const DEFAULT_RESYNC_S = 600;
const MIN_RESYNC_S = 10;
const MAX_RESYNC_S = 3600;
/** How far ahead of this clock an agent may date its list (clocks of two machines differ a little). */
const FUTURE_SKEW_MS = 60_000;

/**
 * When the agent says it last listed containerd (observedAt), unless it dates that in the future by more than
 * clocks differ: an agent whose clock runs ahead would otherwise get a negative age, and its list would stay
 * trusted for as long as the skew lasts, alive or not. (The API server's own time of the write is not used:
 * it keeps no managedFields for NodeImages objects here, checked on Kubernetes 1.34.) Undefined: not usable.
 */
function inventoryWrittenAt(nodeImages: NodeImages | unknown, now: Date): number | undefined {
  const observedAt = asObj(asObj(nodeImages).status).observedAt;
  const claimed = typeof observedAt === 'string' ? Date.parse(observedAt) : NaN;
  if (!Number.isFinite(claimed) || claimed - now.getTime() > FUTURE_SKEW_MS) return undefined;
  return Math.min(claimed, now.getTime());
}

/**
 * The images of a NodeImages object, or undefined when it cannot be trusted: no status yet, not from
 * containerd, or older than maxAgeMs. Undefined means: keep using Node.status.images.
 */
export function inventoryToNodeView(
  nodeImages: NodeImages | unknown,
  o: InventoryOptions = {},
): InventoryImages | undefined {
  const status = asObj(asObj(nodeImages).status) as Partial<NodeImagesStatus>;
  if (status.source !== 'containerd' || typeof status.observedAt !== 'string' || !Array.isArray(status.images))
    return undefined;
  const now = o.now ?? new Date();
  const writtenAt = inventoryWrittenAt(nodeImages, now);
  if (writtenAt === undefined) return undefined;
  const resyncS = typeof status.resyncSeconds === 'number' ? status.resyncSeconds : DEFAULT_RESYNC_S;
  const resyncMs = Math.min(MAX_RESYNC_S, Math.max(MIN_RESYNC_S, resyncS)) * 1000;
  const maxAge = o.maxAgeMs ?? 2 * resyncMs + 60_000;
  if (now.getTime() - writtenAt > maxAge) return undefined;
  const { images, platformImages } = imagesOf(nodeImages as object, status.images, o.platform);
  return {
    images,
    imagesComplete: status.truncated === false,
    imageSource: 'agent',
    observedAt: status.observedAt,
    platformImages,
  };
}

/**
 * An inventory's names, read once per object and platform: the controller's cache replaces an object when it
 * changes and never edits it in place, so a pass that finds the same object reuses what the last one read
 * (5,000 nodes' lists are otherwise normalized again on every pass). The sets are never changed by readers.
 */
const imagesMemo = new WeakMap<object, Map<string, Pick<InventoryImages, 'images' | 'platformImages'>>>();

function imagesOf(
  key: object,
  list: NodeImagesStatus['images'],
  platform: string | undefined,
): Pick<InventoryImages, 'images' | 'platformImages'> {
  let byPlatform = imagesMemo.get(key);
  const known = byPlatform?.get(platform ?? '');
  if (known !== undefined) return known;
  const want = platform !== undefined ? osArch(platform) : undefined;
  const images = new Set<string>();
  const platformImages = new Map<string, Set<string>>();
  for (const img of list) {
    const platforms = (Array.isArray(img.platforms) ? img.platforms : [])
      .filter((p): p is string => typeof p === 'string')
      .map(osArch);
    // An image of another architecture, or with no runnable manifest, does not serve the node's pods.
    const runsHere = want === undefined || platforms.includes(want);
    for (const name of Array.isArray(img.names) ? img.names : []) {
      if (typeof name !== 'string') continue;
      const n = IMAGE_ID.test(name) ? name : normalizeImageName(name);
      if (runsHere) images.add(n);
      if (platforms.length === 0) continue;
      let set = platformImages.get(n);
      if (set === undefined) platformImages.set(n, (set = new Set()));
      for (const p of platforms) set.add(p);
    }
  }
  const read = { images, platformImages };
  if (byPlatform === undefined) imagesMemo.set(key, (byPlatform = new Map()));
  byPlatform.set(platform ?? '', read);
  return read;
}

/** The view with its images taken from the inventory when it is usable; the view unchanged otherwise. */
export function withInventory(
  view: NodeView,
  nodeImages: NodeImages | unknown,
  o: Omit<InventoryOptions, 'platform'> = {},
): NodeView {
  const platform = nodePlatform(view.labels);
  const inv = inventoryToNodeView(nodeImages, { ...o, ...(platform !== undefined ? { platform } : {}) });
  if (inv === undefined) return view;
  return {
    ...view,
    images: inv.images,
    imagesComplete: inv.imagesComplete,
    imageSource: 'agent',
    platformImages: inv.platformImages,
  };
}
