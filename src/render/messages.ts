// kustomize's and helm's messages in the repository's terms: they run in enbi's private copy, so their
// errors name its temporary directory (/tmp/enbi-render-…/tree/apps/web) and the overlay's way back into it
// ('../../tree/apps/web'). Those become repository paths ("apps/web/kustomization.yaml"), and kustomize's
// repetition of each step (a path tried as a file, then as a directory, at every level) is cut to the
// innermost kustomization. Pure.
import { kustomizationIn, type TreeIndex } from './tree-index.ts';

export interface CopyPaths {
  /** The render's work directory (absolute). */
  work: string;
  /** The copy of the source inside it ("tree"). */
  tree: string;
  /** enbi's overlays beside the copy ("overlays"), two levels below `work` (overlays/rN). */
  overlays: string;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export function inRepositoryTerms(message: string, paths: CopyPaths, tree?: TreeIndex): string {
  const work = escape(paths.work.replace(/\/+$/, ''));
  const copy = escape(paths.tree);
  let m = message
    // "accumulation err='accumulating resources from 'X': 'Y' must resolve to a file': " is kustomize
    // saying it tried a directory as a file first: noise, whatever follows says what failed.
    .replace(/accumulation err='accumulating resources from '[^']*': '[^']*' must resolve to a file': /g, '')
    .replace(new RegExp(`${work}/${copy}/`, 'g'), '')
    .replace(new RegExp(`${work}/${copy}(?![\\w.-])`, 'g'), '.')
    .replace(new RegExp(`${work}/${escape(paths.overlays)}/r\\d+`, 'g'), "enbi's overlay")
    .replace(new RegExp(work, 'g'), "enbi's copy")
    // The overlay's own reference into the copy.
    .replace(new RegExp(`(?<=^|['"\\s(])\\.\\./\\.\\./${copy}/`, 'g'), '')
    .replace(new RegExp(`(?<=^|['"\\s(])\\.\\./\\.\\./${copy}(?=['"\\s),:]|$)`, 'g'), '.')
    .replace(/(?:accumulating resources: )+(?=accumulating resources from )/g, '');
  // "accumulating resources: recursed accumulation of path 'a': accumulating resources: recursed … 'b': X"
  // → "b/kustomization.yaml: X": where it failed, once.
  m = m.replace(/(?:(?:accumulating resources: )?recursed accumulation of path '([^']*)': )+/g, (chain) => {
    const last = [...chain.matchAll(/recursed accumulation of path '([^']*)'/g)].at(-1)![1]!;
    const dir = last === '.' ? '' : last;
    return `${(tree !== undefined ? kustomizationIn(tree, dir) : undefined) ?? last}: `;
  });
  return m;
}
