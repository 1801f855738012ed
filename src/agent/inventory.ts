// From containerd's image records to NodeImages' status.images: grouped by digest, sorted, bounded.
// Pure: no I/O.
import { NODE_IMAGES_LIMITS, type NodeImage, type NodeImagesStatus } from '../api/nodeimages-names.ts';

export interface ImageRecordLike {
  name: string;
  target: { digest: string };
}

export interface Inventory {
  images: NodeImage[];
  imageCount: number;
  nameCount: number;
  truncated: boolean;
}

export type Limits = { [K in keyof typeof NODE_IMAGES_LIMITS]: number };

/**
 * Groups records by target digest (one entry per image, every name of it), entries sorted by digest, names
 * and platforms sorted. Entries are kept in that order until a bound is reached; what does not fit is
 * counted in imageCount but not listed, and truncated says so.
 */
export function buildInventory(
  records: Iterable<ImageRecordLike>,
  platforms: (digest: string) => readonly string[],
  limits: Limits = NODE_IMAGES_LIMITS,
): Inventory {
  const byDigest = new Map<string, string[]>();
  let nameCount = 0;
  for (const r of records) {
    if (r.target.digest === '') continue;
    nameCount++;
    const names = byDigest.get(r.target.digest);
    if (names) names.push(r.name);
    else byDigest.set(r.target.digest, [r.name]);
  }
  const digests = [...byDigest.keys()].sort();
  const images: NodeImage[] = [];
  let truncated = false;
  let bytes = 2; // []
  for (const digest of digests) {
    const names = byDigest.get(digest)!.sort();
    const plats = [...platforms(digest)].sort();
    if (names.length > limits.maxNamesPerImage || plats.length > limits.maxPlatformsPerImage) truncated = true;
    const entry: NodeImage = {
      digest,
      names: names.slice(0, limits.maxNamesPerImage),
      platforms: plats.slice(0, limits.maxPlatformsPerImage),
    };
    const size = Buffer.byteLength(JSON.stringify(entry)) + 1;
    if (images.length >= limits.maxImages || bytes + size > limits.maxImagesBytes) {
      truncated = true;
      break;
    }
    bytes += size;
    images.push(entry);
  }
  return { images, imageCount: digests.length, nameCount, truncated };
}

/** Whether two statuses say the same about the node (observedAt aside, which only says when). */
export function sameInventory(a: NodeImagesStatus | undefined, b: NodeImagesStatus | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const key = (s: NodeImagesStatus) =>
    JSON.stringify([
      s.source,
      s.containerdVersion ?? '',
      s.namespace,
      s.resyncSeconds ?? 0,
      s.imageCount,
      s.nameCount,
      s.truncated,
      s.images.map((i) => [i.digest, i.names, i.platforms]),
    ]);
  return key(a) === key(b);
}
