// The inputs of one kustomization, followed through its local bases and components: the directories it
// builds from, the files it reads, and what it refers to that enbi cannot or will not render. Pure.
import { kustomizationRefs } from './kustomization.ts';
import { dirOf, joinInside, shown } from './paths.ts';
import { directoriesOf, filesIn, kustomizationIn, type TreeIndex } from './tree-index.ts';

export interface KustomizeClosure {
  /** Directories holding a kustomization reached from the root (the root first). */
  dirs: string[];
  /** Every file the build may read: the kustomization directories' own files and the files referred to. */
  files: string[];
  /** Why this root cannot be rendered (remote bases, missing paths, helmCharts, a cycle); empty when it can. */
  refusals: string[];
  /** Kustomization directories that include each other, as first met from the root (a → b → a). */
  cycle?: string[];
}

export function kustomizeClosure(
  tree: TreeIndex,
  root: string,
  allDirs: ReadonlySet<string> = directoriesOf(tree.paths),
): KustomizeClosure {
  const closure: KustomizeClosure = { dirs: [], files: [], refusals: [] };
  const files = new Set<string>();
  const seen = new Set<string>();
  // The directories being visited, in order: a reference back to one of them is a cycle, which kustomize
  // refuses ("cycle detected"); reported once, as the chain of kustomization directories.
  const stack: string[] = [];
  const visit = (dir: string): void => {
    const on = stack.indexOf(dir);
    if (on >= 0) {
      if (closure.cycle === undefined) {
        closure.cycle = [...stack.slice(on), dir];
        const chain = closure.cycle.map(shown).join(' → ');
        closure.refusals.push(
          closure.cycle.length === 2
            ? `${kustomizationIn(tree, dir) ?? shown(dir)} includes its own directory (${chain}): kustomize refuses a cycle`
            : `the kustomizations of ${[...new Set(closure.cycle)].map(shown).join(', ')} include each other (${chain}): kustomize refuses a cycle`,
        );
      }
      return;
    }
    if (seen.has(dir)) return;
    seen.add(dir);
    const file = kustomizationIn(tree, dir);
    if (file === undefined) {
      closure.refusals.push(`${shown(dir)} has no kustomization.yaml`);
      return;
    }
    closure.dirs.push(dir);
    for (const f of filesIn(tree, dir)) files.add(f);
    const refs = refsOf(tree, file);
    if ('error' in refs) {
      closure.refusals.push(`${file}: ${refs.error}`);
      return;
    }
    for (const r of refs.remote)
      closure.refusals.push(
        `${file} refers to the remote "${r}", which enbi does not fetch (vendor it into the repository)`,
      );
    for (const u of refs.unsupported) closure.refusals.push(`${file}: ${u}`);
    for (const ref of refs.local) {
      const target = joinInside(dir, ref);
      if (target === undefined) closure.refusals.push(`${file} refers to "${ref}", outside the source`);
      else if (tree.hashes.has(target)) files.add(target);
      else if (allDirs.has(target)) {
        stack.push(dir);
        visit(target);
        stack.pop();
      } else
        closure.refusals.push(
          `${file} refers to "${ref}", which ${tree.excluded?.has(target) === true ? 'is excluded (--exclude or .enbiignore)' : 'does not exist'}`,
        );
    }
  };
  visit(root);
  closure.files = [...files].sort();
  return closure;
}

/**
 * Files of the tree that kustomizations use only as patches (never as resources): strategic-merge patches
 * look like partial objects (a HelmRelease with only values, a Kustomization with only images) but are
 * changes to the objects they target, so they are neither manifests nor Flux/Argo CD objects of their own.
 */
export function patchOnlyFiles(tree: TreeIndex): Set<string> {
  const patches = new Set<string>();
  const resources = new Set<string>();
  for (const file of tree.texts.keys()) {
    if (kustomizationIn(tree, dirOf(file)) !== file) continue;
    const refs = refsOf(tree, file);
    if ('error' in refs) continue;
    const patchRefs = new Set(refs.patches);
    for (const ref of refs.local) {
      const target = joinInside(dirOf(file), ref);
      if (target !== undefined) (patchRefs.has(ref) ? patches : resources).add(target);
    }
  }
  for (const r of resources) patches.delete(r);
  return patches;
}

/** Whether the kustomization in `dir` is a kustomize Component: never built on its own, only through `components:`. */
export function isComponent(tree: TreeIndex, dir: string): boolean {
  const file = kustomizationIn(tree, dir);
  if (file === undefined) return false;
  const refs = refsOf(tree, file);
  return !('error' in refs) && refs.kind === 'Component';
}

// Parsed once per index: every overlay of a base reads the base's kustomization again.
const parsed = new WeakMap<TreeIndex, Map<string, ReturnType<typeof kustomizationRefs>>>();

function refsOf(tree: TreeIndex, file: string): ReturnType<typeof kustomizationRefs> {
  let memo = parsed.get(tree);
  if (memo === undefined) parsed.set(tree, (memo = new Map()));
  let refs = memo.get(file);
  const notUtf8 = tree.notUtf8?.get(file);
  if (refs === undefined)
    memo.set(
      file,
      (refs =
        notUtf8 !== undefined
          ? { error: `${notUtf8}: save it as UTF-8` }
          : kustomizationRefs(tree.texts.get(file) ?? '')),
    );
  return refs;
}
