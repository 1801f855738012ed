// The source tree as the pure render modules see it: every file's path, and the text of the few files they
// must read (kustomizations, charts' Chart.yaml). Built once per render pass by the I/O edge (tree.ts).
import { KUSTOMIZATION_FILES } from './kustomization.ts';
import { dirOf } from './paths.ts';

export interface TreeIndex {
  /** Every regular file, source-relative, sorted. */
  paths: readonly string[];
  /** Content hash per path (a Git blob id, or a sha256 for a directory source). */
  hashes: ReadonlyMap<string, string>;
  /** Text of kustomization files (and any other file a pure step needs), by path. */
  texts: ReadonlyMap<string, string>;
  /** Files of `texts`' kind that are not UTF-8, with the message saying where: absent from `texts`. */
  notUtf8?: ReadonlyMap<string, string>;
  /** Files left out by --exclude or .enbiignore, and directories wholly left out: absent from the rest. */
  excluded?: ReadonlySet<string>;
}

/** The index without the files `isExcluded` leaves out: renders neither read nor see them. */
export function withoutExcluded(tree: TreeIndex, isExcluded: (path: string) => boolean): TreeIndex {
  const paths = tree.paths.filter((p) => !isExcluded(p));
  if (paths.length === tree.paths.length) return tree;
  const kept = new Set(paths);
  const gone = tree.paths.filter((p) => !kept.has(p));
  const dirsKept = directoriesOf(paths);
  const excluded = new Set([...gone, ...[...directoriesOf(gone)].filter((d) => !dirsKept.has(d))]);
  return {
    paths,
    hashes: new Map([...tree.hashes].filter(([p]) => kept.has(p))),
    texts: new Map([...tree.texts].filter(([p]) => kept.has(p))),
    ...(tree.notUtf8 !== undefined ? { notUtf8: new Map([...tree.notUtf8].filter(([p]) => kept.has(p))) } : {}),
    excluded,
  };
}

/** Files whose text the pure steps read: kustomizations. */
export function needsText(path: string): boolean {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return (KUSTOMIZATION_FILES as readonly string[]).includes(base);
}

export function directoriesOf(paths: readonly string[]): Set<string> {
  const dirs = new Set<string>(['']);
  for (const p of paths) for (let d = dirOf(p); d !== '' && !dirs.has(d); d = dirOf(d)) dirs.add(d);
  return dirs;
}

export function kustomizationIn(tree: TreeIndex, dir: string): string | undefined {
  for (const name of KUSTOMIZATION_FILES) {
    const path = dir === '' ? name : `${dir}/${name}`;
    if (tree.hashes.has(path)) return path;
  }
  return undefined;
}

export function chartIn(tree: TreeIndex, dir: string): string | undefined {
  const path = dir === '' ? 'Chart.yaml' : `${dir}/Chart.yaml`;
  return tree.hashes.has(path) ? path : undefined;
}

// Files by directory, computed once per index: root detection asks for every kustomization's directory.
const byDir = new WeakMap<TreeIndex, Map<string, string[]>>();

/** Files directly in `dir` (not in its subdirectories). */
export function filesIn(tree: TreeIndex, dir: string): string[] {
  let index = byDir.get(tree);
  if (index === undefined) {
    index = new Map();
    for (const p of tree.paths) {
      const d = dirOf(p);
      const list = index.get(d);
      if (list === undefined) index.set(d, [p]);
      else list.push(p);
    }
    byDir.set(tree, index);
  }
  return [...(index.get(dir) ?? [])];
}

/** Files anywhere below `dir`. */
export function filesBelow(tree: TreeIndex, dir: string): string[] {
  return dir === '' ? [...tree.paths] : tree.paths.filter((p) => p.startsWith(`${dir}/`));
}
