// Applies the annotation contract to a workload: which containers enbi builds, from which flake, at
// which revision, under which exact image reference. Every rejection says what to change.
import { findLockedInput } from '../flake/lock.ts';
import {
  type FlakeRef,
  flakeCredentialsProblem,
  FlakeRefError,
  formatFlakeRef,
  isFullRev,
  parseFlakeRef,
  pinFlakeRef,
  redactFlakeUrl,
  withoutAttr,
} from '../flake/ref.ts';
import { formatImageRef, ImageRefError, parseImageRef } from '../image/reference.ts';
import type { ContainerSpec, Workload } from '../manifests/workloads.ts';
import { workloadId } from '../manifests/workloads.ts';
import type { Problem } from '../problems.ts';
import { annotationsSchema, type BuildMode, enbiAnnotationsOf } from './annotations.ts';
import { BUILD_MODE, FLAKE, FLAKE_FOR, LEGACY_FLAKE_URL, LEGACY_IMAGE_TAG, LEGACY_PACKAGE_NAME } from './keys.ts';

export type RevisionSource = 'flake-ref' | 'flake-lock' | 'image-tag';

export interface BuildSource {
  /** The flake as written in the annotation. */
  declared: string;
  /** The flake pinned to `rev`, with its attribute. */
  flake: FlakeRef;
  rev: string;
  revisionFrom: RevisionSource;
  lockFile?: string;
}

export interface ContainerNeed {
  container: string;
  /** Fully qualified image reference the manifest asks for; the build is imported under exactly this name. */
  image: string;
  source: BuildSource;
  mode: BuildMode;
}

export interface WorkloadNeeds {
  workload: Workload;
  needs: ContainerNeed[];
}

export type LockIndex = ReadonlyMap<string, ReadonlyMap<string, FlakeRef>>;

export function containerNeedsOf(
  workload: Workload,
  locks: LockIndex,
): { needs: ContainerNeed[]; problems: Problem[]; warnings: Problem[] } {
  const where = { file: workload.file, line: workload.line, object: workloadId(workload) };
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  const raw = enbiAnnotationsOf(workload.annotations);
  if (Object.keys(raw).length === 0) return { needs: [], problems, warnings };
  const parsed = checkAnnotations(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = issue.path.length > 0 ? `annotation ${String(issue.path[0])}` : 'annotations';
      problems.push({ ...where, message: `${key}: ${issue.message}` });
    }
    return { needs: [], problems, warnings };
  }
  const annotations = parsed.data as Record<string, string | undefined>;
  const mode = (annotations[BUILD_MODE] as BuildMode | undefined) ?? 'on-demand';
  const needs: ContainerNeed[] = [];
  for (const [container, declared] of flakesByContainer(workload, annotations, problems, where)) {
    const need = needOf(workload, container, declared, mode, locks, where, problems, warnings);
    if (need !== undefined) needs.push(need);
  }
  return { needs, problems, warnings };
}

type Where = Pick<Problem, 'file' | 'line' | 'object'>;

// Fleets repeat the same annotations and flakes across thousands of workloads: both checks are pure, so
// their answers are kept (a bounded memo, emptied when full) and each distinct value is checked once.
const MEMO_LIMIT = 10_000;
const annotationChecks = new Map<string, ReturnType<typeof annotationsSchema.safeParse>>();
const flakeRefs = new Map<string, FlakeRef | FlakeRefError>();

function checkAnnotations(raw: Record<string, unknown>): ReturnType<typeof annotationsSchema.safeParse> {
  const key = JSON.stringify(raw);
  let result = annotationChecks.get(key);
  if (result === undefined) {
    if (annotationChecks.size >= MEMO_LIMIT) annotationChecks.clear();
    result = annotationsSchema.safeParse(raw);
    annotationChecks.set(key, result);
  }
  return result.success ? { ...result, data: { ...result.data } } : result;
}

function parseFlakeRefOnce(text: string): FlakeRef {
  let ref = flakeRefs.get(text);
  if (ref === undefined) {
    if (flakeRefs.size >= MEMO_LIMIT) flakeRefs.clear();
    try {
      ref = parseFlakeRef(text);
    } catch (err) {
      if (!(err instanceof FlakeRefError)) throw err;
      ref = err;
    }
    flakeRefs.set(text, ref);
  }
  if (ref instanceof FlakeRefError) throw ref;
  return { ...ref, params: { ...ref.params } };
}

/** Container → flake text, from the per-container keys, the single-container key or the pre-alpha keys. */
function flakesByContainer(
  workload: Workload,
  a: Record<string, string | undefined>,
  problems: Problem[],
  where: Where,
): Map<ContainerSpec, string> {
  const out = new Map<ContainerSpec, string>();
  const byName = new Map(workload.containers.map((c) => [c.name, c]));
  for (const [key, value] of Object.entries(a)) {
    if (!key.startsWith(FLAKE_FOR) || value === undefined) continue;
    const name = key.slice(FLAKE_FOR.length);
    const container = byName.get(name);
    if (container === undefined)
      problems.push({
        ...where,
        message: `annotation ${key}: no container named "${name}" (containers: ${[...byName.keys()].join(', ')})`,
      });
    else out.set(container, value);
  }
  const single = a[FLAKE];
  if (single !== undefined) {
    const main = workload.containers.filter((c) => !c.init);
    if (main.length !== 1) {
      problems.push({
        ...where,
        message: `annotation ${FLAKE}: the pod has ${main.length} containers; name each with ${FLAKE_FOR}<container>`,
      });
    } else if (!out.has(main[0]!)) out.set(main[0]!, single);
  }
  const legacyUrl = a[LEGACY_FLAKE_URL];
  if (legacyUrl !== undefined) {
    const tag = a[LEGACY_IMAGE_TAG];
    const main = workload.containers.filter((c) => !c.init);
    const target =
      tag !== undefined ? main.find((c) => c.image?.endsWith(`:${tag}`)) : main.length === 1 ? main[0] : undefined;
    if (target === undefined) {
      problems.push({
        ...where,
        message: `annotation ${LEGACY_FLAKE_URL}: no single container${tag !== undefined ? ` with image tag "${tag}"` : ''} to build`,
      });
    } else if (!out.has(target)) out.set(target, `${legacyUrl.split('#')[0]}#${a[LEGACY_PACKAGE_NAME]}`);
  }
  return out;
}

function needOf(
  workload: Workload,
  container: ContainerSpec,
  declared: string,
  mode: BuildMode,
  locks: LockIndex,
  where: Where,
  problems: Problem[],
  warnings: Problem[],
): ContainerNeed | undefined {
  const at = { ...where, message: '' };
  const fail = (message: string) => void problems.push({ ...at, message: `container ${container.name}: ${message}` });
  if (container.image === undefined) return fail('has no image: enbi builds the image the manifest names, so name one');
  let image;
  try {
    image = parseImageRef(container.image);
  } catch (err) {
    if (err instanceof ImageRefError) return fail(err.message);
    throw err;
  }
  if (image.digest !== undefined)
    return fail(`image "${container.image}" is pinned by digest; a build cannot promise that digest, so use a tag`);
  if (image.tag === undefined || image.tag === 'latest') {
    return fail(
      `image "${container.image}" has ${image.tag === undefined ? 'no tag' : 'the moving tag "latest"'}; tag it with the revision it runs (e.g. :<commit>)`,
    );
  }
  if (container.imagePullPolicy === 'Always') {
    warnings.push({
      ...at,
      message: `container ${container.name}: imagePullPolicy Always makes kubelet pull from the registry; use IfNotPresent or Never`,
    });
  }
  let flake: FlakeRef;
  try {
    flake = parseFlakeRefOnce(declared);
  } catch (err) {
    if (err instanceof FlakeRefError) return fail(err.message);
    throw err;
  }
  const pinned = pin(flake, image.tag, workload, locks);
  if ('error' in pinned) return fail(pinned.error);
  if (pinned.revisionFrom === 'flake-ref' && isFullRev(image.tag) && image.tag !== pinned.rev) {
    warnings.push({
      ...at,
      message: `container ${container.name}: image tag ${image.tag} is a commit but the flake pins ${pinned.rev}`,
    });
  }
  return { container: container.name, image: formatImageRef(image), source: { declared, ...pinned }, mode };
}

function pin(
  flake: FlakeRef,
  tag: string,
  workload: Workload,
  locks: LockIndex,
): Omit<BuildSource, 'declared'> | { error: string } {
  if (flake.type === 'indirect') {
    if (flake.ref !== undefined || flake.rev !== undefined)
      return { error: `flake "${formatFlakeRef(flake)}": an input id names a locked input; drop the /ref` };
    const found = findLockedInput(locks, workload.file ?? '', flake.owner!);
    if ('searched' in found) {
      const where =
        found.searched.length > 0 ? found.searched.join(', ') : 'no flake.lock beside or above the manifest';
      return {
        error: `flake input "${flake.owner}" is not locked (${where}); commit a flake.lock with that input or write a full flake reference`,
      };
    }
    const locked: FlakeRef = { ...found.ref, params: { ...found.ref.params } };
    const credentials = flakeCredentialsProblem(locked, redactFlakeUrl(formatFlakeRef(locked)));
    if (credentials !== undefined)
      return { error: `flake input "${flake.owner}" locked in ${found.lockFile}: ${credentials}` };
    if (flake.attr !== undefined) locked.attr = flake.attr;
    return { flake: locked, rev: found.ref.rev!, revisionFrom: 'flake-lock', lockFile: found.lockFile };
  }
  if (flake.type === 'path' || flake.type === 'tarball') {
    return {
      error: `flake "${formatFlakeRef(flake)}": ${flake.type} references cannot be fetched by revision in the cluster; use github:, gitlab: or git+https:`,
    };
  }
  if (flake.rev !== undefined) return { flake, rev: flake.rev, revisionFrom: 'flake-ref' };
  if (isFullRev(tag)) return { flake: pinFlakeRef(flake, tag), rev: tag, revisionFrom: 'image-tag' };
  return {
    error: `flake "${formatFlakeRef(flake)}" is not pinned: add ?rev=<commit> (or /<commit>), tag the image with the full commit, or lock it in flake.lock`,
  };
}

/** What identifies the source tree of a build: the pinned flake without attribute or branch name. */
export function sourceKey(flake: FlakeRef): string {
  const { ref: _ref, ...rest } = withoutAttr(flake);
  return formatFlakeRef({ ...rest, params: { ...rest.params } });
}
