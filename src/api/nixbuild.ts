// The NixBuild custom resource (nixbuilds.enbi.hrzn.ee): its zod source, from which
// deploy/crd/nixbuilds.enbi.hrzn.ee.yaml and schemas/nixbuild.schema.json are generated.
// The pre-alpha's spec names (flakeUrl, imageTag, packageName, system) are kept as they were.
import { z } from 'zod';
import { crdFor } from './crd.ts';

import { GROUP, VERSION } from './group.ts';

export { GROUP, VERSION };
export const KIND = 'NixBuild';
export const PLURAL = 'nixbuilds';

const system = z
  .string()
  .regex(/^[a-z0-9_]+-[a-z]+$/)
  .describe('Nix system to build for, e.g. x86_64-linux or aarch64-linux.');

export const nixBuildSpecSchema = z.object({
  flakeUrl: z
    .string()
    .min(1)
    .describe('Flake reference pinned to a revision (…?rev=<sha> or github:o/r/<sha>), without the attribute.'),
  packageName: z
    .string()
    .min(1)
    .describe(
      'Attribute to build: packages.<system>.<packageName> (a full packages.<system>.x path is taken literally).',
    ),
  system,
  images: z
    .array(z.string().min(1))
    .min(1)
    .describe(
      "Exact image references to import the result under: tagged, inside the controller's allowedImages. Required: the build output never chooses the names it is written under.",
    ),
  imageTag: z
    .string()
    .optional()
    .describe('Pre-alpha: the git revision the image is tagged with (informational when images is set).'),
  node: z
    .string()
    .optional()
    .describe(
      'Pins the build to this node (builder and import target); if it goes away the build waits (NoBuilderNode). Absent: enbi picks a Ready node able to build the system (status.node) and moves the build if that node goes away.',
    ),
  maxAttempts: z
    .number()
    .int()
    .min(1)
    .max(20)
    .optional()
    .describe('Build attempts before the build is Stalled (default from the controller).'),
});

export const PHASES = ['Pending', 'Building', 'Succeeded', 'Failed'] as const;
export type Phase = (typeof PHASES)[number];

const condition = z.object({
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string(),
  message: z.string(),
  lastTransitionTime: z.string(),
  observedGeneration: z.number().int().optional(),
});

// A new NixBuild has no status until the controller writes one, and kstatus (Flux's health checks) reads a
// custom resource without status or conditions as Current, i.e. healthy. The API server fills these
// defaults in whenever it serves the object (status {} , then observedGeneration -1), so a NixBuild
// reads as not yet observed (InProgress: generation ≠ observedGeneration) until the controller writes
// its own observedGeneration. `.meta` keeps them out of the TypeScript type: enbi's writes always set it.
export const UNOBSERVED_GENERATION = -1;

export const nixBuildStatusSchema = z
  .object({
    observedGeneration: z
      .number()
      .int()
      .optional()
      .meta({ default: UNOBSERVED_GENERATION })
      .describe('The metadata.generation the controller last acted on; -1 (the default) until it has seen the build.'),
    phase: z.enum(PHASES).optional(),
    conditions: z.array(condition).optional(),
    node: z
      .string()
      .optional()
      .describe('The node building (or that built) the image: spec.node, or the one enbi chose.'),
    placement: z
      .string()
      .optional()
      .describe(
        "Why enbi chose status.node: e.g. 'warm: built <repository> for <system> last (rev …)' (its store holds what the last revision built) or 'least loaded: …'. Absent when spec.node pins the build.",
      ),
    system: z.string().optional(),
    image: z.string().optional().describe('The first image reference imported.'),
    imageDigest: z
      .string()
      .optional()
      .describe("The built platform manifest's digest (`<repository>@<digest>` on the node)."),
    manifest: z
      .object({
        digest: z.string(),
        size: z.number().int(),
        mediaType: z.string(),
        platform: z.string().describe('os/arch[/variant] of the image, e.g. linux/arm64.'),
      })
      .optional()
      .describe(
        "The platform manifest this build imported: every node's enbi agent lists it, beside the other platforms' builds of the same image, in the one index each tag resolves to.",
      ),
    storePath: z.string().optional(),
    buildJobName: z.string().optional(),
    attempts: z.number().int().optional().describe('The latest attempt: its Job is <name>-<attempts>.'),
    excusedAttempts: z
      .number()
      .int()
      .optional()
      .describe(
        'Attempts that do not count against maxAttempts: those lost with their node, and those before a rebuild.',
      ),
    moves: z
      .number()
      .int()
      .optional()
      .describe('Times the build moved to another node because its node was deleted or stayed NotReady.'),
    rebuilds: z
      .number()
      .int()
      .optional()
      .describe(
        'Times the build ran again because its image went missing where a pod waits for it (at most maxRebuilds).',
      ),
    startTime: z.string().optional(),
    completionTime: z.string().optional(),
    logExcerpt: z.string().optional().describe('The end of the build log of a failed attempt.'),
  })
  .meta({ default: {} });

export type NixBuildSpec = z.infer<typeof nixBuildSpecSchema>;
export type NixBuildStatus = z.infer<typeof nixBuildStatusSchema>;
export type Condition = z.infer<typeof condition>;

export interface NixBuild {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    generation?: number;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    creationTimestamp?: Date;
    resourceVersion?: string;
  };
  spec: NixBuildSpec;
  status?: NixBuildStatus;
}

/** The CRD, with the OpenAPI schema generated from zod. */
export function nixBuildCrd(): Record<string, unknown> {
  return crdFor({
    group: GROUP,
    version: VERSION,
    kind: KIND,
    plural: PLURAL,
    singular: 'nixbuild',
    shortNames: ['nb'],
    scope: 'Namespaced',
    printerColumns: [
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      { name: 'System', type: 'string', jsonPath: '.spec.system' },
      { name: 'Node', type: 'string', jsonPath: '.status.node' },
      { name: 'Image', type: 'string', jsonPath: '.status.image' },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
    fields: { spec: nixBuildSpecSchema, status: nixBuildStatusSchema },
    required: ['spec'],
  });
}
