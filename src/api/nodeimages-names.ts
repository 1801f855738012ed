// The NodeImages names and bounds without the zod schema (src/api/nodeimages.ts): what the node agent loads.
import type { NodeImage, NodeImages, NodeImagesStatus } from './nodeimages.ts';
import { GROUP, VERSION } from './group.ts';

export { GROUP, VERSION };
export type { NodeImage, NodeImages, NodeImagesStatus };
export const NODE_IMAGES_KIND = 'NodeImages';
export const NODE_IMAGES_PLURAL = 'nodeimages';

/**
 * Bounds, so that an object stays far below etcd's 1.5 MiB request limit (the API server refuses larger
 * writes). An entry is 250-400 bytes in practice (a 71-byte digest; a tag, a name@digest and the CRI's
 * sha256 id; a platform), so the byte budget holds 2,500-4,000 images; nodes hold tens to a few hundred
 * (kubelet's image garbage collection sees to it). The other 0.5 MiB is left for metadata and managedFields.
 * Anything cut sets `truncated`: an image absent from a truncated list is unknown, not missing.
 */
export const NODE_IMAGES_LIMITS = {
  /** Serialized size of status.images (JSON bytes). */
  maxImagesBytes: 1024 * 1024,
  /** Entries in status.images. */
  maxImages: 5000,
  /** Names kept per entry (an image tagged more often than this is listed with the first ones, sorted). */
  maxNamesPerImage: 64,
  /** Platforms kept per entry. */
  maxPlatformsPerImage: 16,
} as const;
