// The NodeImages custom resource (nodeimages.enbi.hrzn.ee): one per node, named after it, cluster-scoped,
// written only by that node's `enbi agent`: the images the node's containerd holds in the k8s.io namespace.
// Its zod source; deploy/crd/nodeimages.enbi.hrzn.ee.yaml and schemas/nodeimages.schema.json are generated
// from it (npm run schemas).
import { z } from 'zod';
import { crdFor } from './crd.ts';
import { GROUP, VERSION } from './group.ts';

export { GROUP, VERSION };
import { NODE_IMAGES_KIND, NODE_IMAGES_LIMITS, NODE_IMAGES_PLURAL } from './nodeimages-names.ts';

export { NODE_IMAGES_KIND, NODE_IMAGES_LIMITS, NODE_IMAGES_PLURAL };

export const nodeImageSchema = z.object({
  digest: z
    .string()
    .describe("The image's target in containerd (index or manifest digest), as `ctr images ls` shows it."),
  names: z
    .array(z.string())
    .max(NODE_IMAGES_LIMITS.maxNamesPerImage)
    .describe(
      "Every containerd image record pointing at that digest (tags, name@digest, and the CRI's sha256:<config> id), sorted.",
    ),
  platforms: z
    .array(z.string())
    .max(NODE_IMAGES_LIMITS.maxPlatformsPerImage)
    .describe(
      'Platforms (os/arch[/variant]) whose manifest and config are in the content store, e.g. linux/amd64. Empty when containerd holds no runnable manifest yet.',
    ),
});

export const nodeImagesStatusSchema = z.object({
  source: z
    .literal('containerd')
    .describe("Where the list comes from: the node's containerd, asked over its gRPC API."),
  containerdVersion: z.string().optional().describe("containerd's version as it reports it."),
  namespace: z.string().describe('containerd namespace listed (k8s.io: the images kubelet uses).'),
  observedAt: z
    .string()
    .describe(
      'When the agent last listed containerd and wrote this (RFC 3339). Refreshed at every resync even when nothing changed: an old value means the agent is not running.',
    ),
  resyncSeconds: z
    .number()
    .int()
    .optional()
    .describe("The agent's resync period: observedAt is refreshed at least this often while it runs."),
  imageCount: z.number().int().describe('Distinct images (digests) containerd holds, whether or not all are listed.'),
  nameCount: z.number().int().describe('Image records (names) containerd holds.'),
  truncated: z
    .boolean()
    .describe(
      'True when images (or the names of one) were cut to stay within the bounds: an image absent from the list is then unknown, not missing.',
    ),
  images: z
    .array(nodeImageSchema)
    .max(NODE_IMAGES_LIMITS.maxImages)
    .describe('The images, sorted by digest, at most 5000 entries and 1 MiB.'),
});

export type NodeImage = z.infer<typeof nodeImageSchema>;
export type NodeImagesStatus = z.infer<typeof nodeImagesStatusSchema>;

export interface NodeImages {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    resourceVersion?: string;
    uid?: string;
    labels?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string }[];
    creationTimestamp?: Date | string;
  };
  status?: NodeImagesStatus;
}

/** The CRD, with the OpenAPI schema generated from zod. */
export function nodeImagesCrd(): Record<string, unknown> {
  return crdFor({
    group: GROUP,
    version: VERSION,
    kind: NODE_IMAGES_KIND,
    plural: NODE_IMAGES_PLURAL,
    singular: 'nodeimages',
    shortNames: ['ni'],
    scope: 'Cluster',
    printerColumns: [
      { name: 'Images', type: 'integer', jsonPath: '.status.imageCount' },
      { name: 'Truncated', type: 'boolean', jsonPath: '.status.truncated' },
      { name: 'Containerd', type: 'string', jsonPath: '.status.containerdVersion' },
      { name: 'Observed', type: 'date', jsonPath: '.status.observedAt' },
    ],
    fields: { status: nodeImagesStatusSchema },
  });
}
