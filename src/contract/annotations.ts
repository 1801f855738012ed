// The zod source of the annotation contract; schemas/annotations.schema.json is generated from it.
import { z } from 'zod';
import { FlakeRefError, parseFlakeRef } from '../flake/ref.ts';
import {
  BUILD_MODE,
  CONTAINER_NAME,
  FLAKE,
  FLAKE_FOR,
  LEGACY_FLAKE_URL,
  LEGACY_IMAGE_TAG,
  LEGACY_PACKAGE_NAME,
  PREFIX,
} from './keys.ts';

const flakeRefString = z
  .string()
  .superRefine((value, ctx) => {
    try {
      parseFlakeRef(value);
    } catch (err) {
      if (!(err instanceof FlakeRefError)) throw err;
      ctx.addIssue({ code: 'custom', message: err.message });
    }
  })
  .describe(
    'A flake reference with its attribute, e.g. github:owner/app/<40-hex rev>#image or myapp#image (an input of a committed flake.lock)',
  );

export const buildModeSchema = z.enum(['on-demand', 'eager']);
export type BuildMode = z.infer<typeof buildModeSchema>;

const KEY_PATTERN = new RegExp(
  `^${PREFIX.replace(/\./g, '\\.')}(flake|flake\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?|build|nixbuild-flakeUrl|nixbuild-imageTag|nixbuild-packageName)$`,
);

export const annotationsSchema = z
  .object({
    [FLAKE]: flakeRefString.optional().describe("Flake that builds the image of the pod's only container."),
    [BUILD_MODE]: buildModeSchema
      .optional()
      .describe(
        'on-demand (default): build for a system once a pod needing it lands there; eager: build for every system the workload can schedule to.',
      ),
    [LEGACY_FLAKE_URL]: z
      .string()
      .min(1)
      .optional()
      .describe('Pre-alpha: flake URL pinned with ?rev=<sha>. Prefer enbi.hrzn.ee/flake.'),
    [LEGACY_IMAGE_TAG]: z.string().min(1).optional().describe('Pre-alpha: the tag of the container image to build.'),
    [LEGACY_PACKAGE_NAME]: z
      .string()
      .min(1)
      .optional()
      .describe('Pre-alpha: the attribute, built as packages.<system>.<packageName>.'),
  })
  .catchall(flakeRefString.describe(`${FLAKE_FOR}<container>: flake that builds that container's image`))
  .superRefine((value, ctx) => {
    for (const key of Object.keys(value)) {
      if (!KEY_PATTERN.test(key)) {
        const hint = key.startsWith(FLAKE_FOR)
          ? `: "${key.slice(FLAKE_FOR.length)}" is not a container name (${CONTAINER_NAME})`
          : '';
        ctx.addIssue({ code: 'custom', path: [key], message: `unknown enbi annotation${hint}` });
      }
    }
    const legacy = [LEGACY_FLAKE_URL, LEGACY_PACKAGE_NAME].filter((k) => value[k] !== undefined);
    if (legacy.length === 1)
      ctx.addIssue({
        code: 'custom',
        path: [legacy[0]!],
        message: `${LEGACY_FLAKE_URL} and ${LEGACY_PACKAGE_NAME} go together`,
      });
  })
  .meta({
    title: 'enbi annotations',
    description: 'Annotations on a pod template (or a Pod) that tell enbi which flake builds which container image.',
    propertyNames: { pattern: KEY_PATTERN.source },
  });

export type EnbiAnnotations = z.infer<typeof annotationsSchema>;

/** Only the enbi keys of an annotation map: the rest belongs to other tools. */
export function enbiAnnotationsOf(annotations: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(annotations ?? {})) if (k.startsWith(PREFIX)) out[k] = v;
  return out;
}
