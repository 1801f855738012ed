// Runs one planned render in the private copy of the source: writes the generated kustomization and the
// overlay, calls kustomize or helm, and reads the objects back with their origin. Any failure is a problem
// naming the root and what to do (the caller adds where the asking object is); it never stops the others.
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { GO_YAML, goToJS } from '../manifests/go-yaml.ts';
import type { CachedRender } from './cache.ts';
import { type ExecLimits, type ExecResult, run, sandboxEnv } from './exec.ts';
import { helmTemplateArgs } from './helm-args.ts';
import { generatedKustomization, overlayKustomization } from './kustomization-text.ts';
import { decodeUtf8 } from '../source/files.ts';
import { inRepositoryTerms } from './messages.ts';
import { helmFilesByObject, objectsOfOutput } from './output.ts';
import { dirOf, isUnder } from './paths.ts';
import type { PlannedRender } from './plan.ts';
import { type DirectoryRequest, type HelmRequest, type KustomizeRequest, originOf, overlayIsEmpty } from './request.ts';
import { objectsOfDirectoryFile } from './directory.ts';
import { withoutHelmTests } from './helm-tests.ts';
import { withSourceLines } from './lines.ts';
import { kustomizationIn, type TreeIndex } from './tree-index.ts';
import type { Tools } from './tools.ts';

/** Where enbi writes its helm inputs inside the copy: hidden, so it is never mistaken for the source's own. */
export const WORK_DIR = '.enbi-render';
/** The copy of the source and, beside it, enbi's kustomize overlays (in the render's work directory). */
export const TREE_DIR = 'tree';
const OVERLAYS_DIR = 'overlays';

/** The Kubernetes version charts are rendered for (an unstamped helm believes v1.20). */
export const KUBE_VERSION = '1.34.0';

export interface RenderContext {
  treeDir: string;
  tree: TreeIndex;
  tools: Tools;
  limits: ExecLimits;
  /** A directory for HOME and helm's caches. */
  scratch: string;
}

/** A tool's or the file system's message with the copy's paths as the repository's. */
export function inCopyTerms(message: string, ctx: RenderContext): string {
  return inRepositoryTerms(message, { work: dirname(ctx.treeDir), tree: TREE_DIR, overlays: OVERLAYS_DIR }, ctx.tree);
}

export async function runRender(planned: PlannedRender, index: number, ctx: RenderContext): Promise<CachedRender> {
  const r = planned.request;
  const origin = originOf(r);
  const fail = (message: string): CachedRender => ({
    objects: [],
    problems: [{ message: `${origin}: ${inCopyTerms(message, ctx)}` }],
  });
  if (r.kind === 'directory') return readDirectory(planned, r, ctx);
  const overlayDir = `${WORK_DIR}/r${index}`;
  await mkdir(join(ctx.treeDir, overlayDir), { recursive: true });
  const kustomize = (dir: string) =>
    run(
      ctx.tools.kustomize!,
      ['build', dir, '--load-restrictor', 'LoadRestrictionsRootOnly'],
      ctx.treeDir,
      sandboxEnv(ctx.scratch),
      ctx.limits,
    );
  if (r.kind === 'kustomize') {
    // The overlay sits beside the copy, not in it: a kustomization at the source's root would otherwise
    // contain the overlay that includes it (kustomize: "cycle detected").
    const outside = `${OVERLAYS_DIR}/r${index}`;
    const work = join(ctx.treeDir, '..');
    await mkdir(join(work, outside), { recursive: true });
    const fromOverlay = posix.relative(`/${outside}`, `/${TREE_DIR}/${r.dir}`) || '.';
    await writeFile(join(work, outside, 'kustomization.yaml'), overlayKustomization([fromOverlay], r.overlay));
    const result = await kustomize(join(work, outside));
    if (!result.ok) return fail(`kustomize build failed: ${result.message}`);
    const out = objectsOfOutput(result.stdout, {
      origin,
      defaultNamespace: r.defaultNamespace,
      overlayDir: outside,
      overlayTree: `${TREE_DIR}/`,
      ...(r.substitute !== undefined ? { substitute: r.substitute } : {}),
    });
    // The files kustomize names are inputs of this render, in the copy: their lines are those of the repository.
    const objects = await withSourceLines(out.objects, (file) =>
      readFile(join(ctx.treeDir, file)).then(decodeUtf8, () => undefined),
    );
    return { objects, problems: out.problems };
  }
  const helm = await runHelm(r, overlayDir, ctx);
  if (!helm.ok) return fail(`helm template failed: ${helm.message}`);
  const applied = (out: CachedRender) => (r.tests === true ? out : withoutHelmTests(out));
  if (overlayIsEmpty(r.overlay))
    return applied(objectsOfOutput(helm.stdout, { origin, defaultNamespace: r.defaultNamespace, chartDir: r.dir }));
  // Flux postRenderers: kustomize over the chart's output.
  if (ctx.tools.kustomize === undefined) return fail('postRenderers need kustomize, which was not found');
  await writeFile(join(ctx.treeDir, overlayDir, 'rendered.yaml'), helm.stdout);
  await writeFile(
    join(ctx.treeDir, overlayDir, 'kustomization.yaml'),
    overlayKustomization(['rendered.yaml'], r.overlay),
  );
  const result = await kustomize(overlayDir);
  if (!result.ok) return fail(`kustomize build of the postRenderers failed: ${result.message}`);
  return applied(
    objectsOfOutput(result.stdout, {
      origin,
      defaultNamespace: r.defaultNamespace,
      filesByObject: helmFilesByObject(helm.stdout, r.dir),
    }),
  );
}

/** Argo CD's directory mode: each planned file read from the copy as it is, no tool run. */
async function readDirectory(planned: PlannedRender, r: DirectoryRequest, ctx: RenderContext): Promise<CachedRender> {
  const out: CachedRender = { objects: [], problems: [] };
  const origin = originOf(r);
  for (const path of planned.inputs) {
    const text = decodeUtf8(await readFile(join(ctx.treeDir, path)));
    if (text === undefined) {
      out.problems.push({
        file: path,
        object: origin,
        message: 'not UTF-8: not read (Argo CD reads manifests as UTF-8)',
      });
      continue;
    }
    const read = objectsOfDirectoryFile(path, text, { origin, defaultNamespace: r.defaultNamespace });
    out.objects.push(...read.objects);
    out.problems.push(...read.problems);
  }
  return out;
}

async function runHelm(r: HelmRequest, overlayDir: string, ctx: RenderContext): Promise<ExecResult> {
  const inline: string[] = [];
  for (const [i, values] of r.values.entries()) {
    const file = `${overlayDir}/values-${i}.json`;
    await writeFile(join(ctx.treeDir, file), JSON.stringify(values));
    inline.push(file);
  }
  let chartPath = r.dir;
  if (r.withoutChartValues === true) {
    // As Flux does for valuesFiles: the chart renders with the listed files only (its own values.yaml still
    // counts when listed, read from the original directory).
    chartPath = `${overlayDir}/chart`;
    await cp(join(ctx.treeDir, r.dir), join(ctx.treeDir, chartPath), { recursive: true });
    await writeFile(join(ctx.treeDir, chartPath, 'values.yaml'), '{}\n');
  }
  const args = helmTemplateArgs(r, inline, KUBE_VERSION, chartPath);
  if ('error' in args) return { ok: false, message: args.error };
  return run(ctx.tools.helm!, args, ctx.treeDir, sandboxEnv(ctx.scratch), ctx.limits);
}

/**
 * Flux's generator: the directory's Kubernetes manifests and its subdirectories' kustomizations as resources.
 * Written before renders run in parallel, since two requests may generate into the same directory.
 */
export async function writeGenerated(r: KustomizeRequest, ctx: RenderContext): Promise<void> {
  const resources: string[] = [];
  const nested = new Set<string>();
  for (const path of ctx.tree.paths) {
    if (!isUnder(path, r.dir) || (!r.generate!.recurse && dirOf(path) !== r.dir)) continue;
    const owner = ownerKustomization(dirOf(path), r.dir, ctx.tree);
    if (owner !== undefined) nested.add(owner);
    else if (/\.ya?ml$/.test(path)) {
      // A file that is not UTF-8 is listed: kustomize then refuses it, naming it, as Flux's build fails on it.
      const text = decodeUtf8(await readFile(join(ctx.treeDir, path)));
      if (text === undefined || isKubernetesFile(text)) resources.push(path);
    }
  }
  const rel = (p: string) => posix.relative(r.dir === '' ? '.' : r.dir, p);
  await mkdir(join(ctx.treeDir, r.dir), { recursive: true });
  await writeFile(
    join(ctx.treeDir, r.dir, 'kustomization.yaml'),
    generatedKustomization([...resources.map(rel), ...[...nested].sort().map(rel)]),
  );
}

/** The topmost directory between `root` (exclusive) and `dir` that holds a kustomization of its own. */
function ownerKustomization(dir: string, root: string, tree: TreeIndex): string | undefined {
  if (dir === root || !isUnder(dir, root)) return undefined;
  const above = ownerKustomization(dirOf(dir), root, tree);
  return above ?? (kustomizationIn(tree, dir) !== undefined ? dir : undefined);
}

function isKubernetesFile(text: string): boolean {
  try {
    const docs = parseAllDocuments(text, GO_YAML);
    if (!Array.isArray(docs)) return false;
    return docs.some((d) => {
      const js = d.errors.length === 0 ? (goToJS(d, { maxAliasCount: 100 }) as Record<string, unknown> | null) : null;
      return js !== null && typeof js === 'object' && typeof js.apiVersion === 'string' && typeof js.kind === 'string';
    });
  } catch {
    return false; // an alias bomb or worse: not a manifest Flux's generator would list
  }
}
