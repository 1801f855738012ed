// Which renders a source needs and which files they consume. Flux and Argo CD objects in the scope say what
// is applied where; every other kustomization or chart in the scope that no kustomization builds from (a
// base) and no Flux/Argo object renders is a root of its own, as Argo CD treats a directory. The files a
// render reads are not also read as plain manifests. Pure.
import type { ManifestObject } from '../manifests/scan.ts';
import type { Problem } from '../problems.ts';
import { argoApplications } from './argo.ts';
import { kustomizeClosure } from './closure.ts';
import { fluxHelmReleases, fluxKustomizations } from './flux.ts';
import { dirOf, isUnder } from './paths.ts';
import { originOf, type RenderRequest } from './request.ts';
import { chartIn, directoriesOf, filesBelow, filesIn, kustomizationIn, type TreeIndex } from './tree-index.ts';

export interface PlannedRender {
  request: RenderRequest;
  /** Files whose content decides the output (the cache key) and that are not read as plain manifests. */
  inputs: string[];
  /** Why it cannot be rendered; the render is skipped and these are problems. */
  refusals: string[];
}

export interface RenderPlan {
  renders: PlannedRender[];
  consumed: Set<string>;
  warnings: Problem[];
}

const MANIFEST = /\.(ya?ml|json)$/;

export function planRenders(tree: TreeIndex, scope: string, objects: readonly ManifestObject[]): RenderPlan {
  const flux = fluxKustomizations(objects, tree);
  const releases = fluxHelmReleases(objects, tree);
  const argo = argoApplications(objects, tree);
  const requests: RenderRequest[] = [...flux.requests, ...releases.requests, ...argo.requests];
  const warnings = [...flux.warnings, ...releases.warnings, ...argo.warnings];
  const dirs = directoriesOf(tree.paths);
  const charts = [...dirs].filter((d) => chartIn(tree, d) !== undefined).sort();
  const inChart = (d: string) => charts.some((c) => c !== d && isUnder(d, c));
  const kustomizeDirs = [...dirs].filter((d) => kustomizationIn(tree, d) !== undefined && !inChart(d)).sort();
  const bases = new Set<string>();
  for (const d of kustomizeDirs) for (const b of kustomizeClosure(tree, d, dirs).dirs.slice(1)) bases.add(b);
  // What Flux and Argo CD objects render comes first; a root whose kustomization or Chart.yaml one of them
  // already reads (a directory inside a Flux path without a kustomization) is not rendered again on its own.
  const gitopsRenders = requests.map((request) => ({ request, ...inputsOf(request, tree, dirs) }));
  const covered = new Set(gitopsRenders.flatMap((r) => r.inputs));
  const requested = new Set(requests.map((r) => r.dir));
  const plain: RenderRequest[] = [];
  for (const d of kustomizeDirs) {
    if (isUnder(d, scope) && !bases.has(d) && !requested.has(d) && !covered.has(kustomizationIn(tree, d)!)) plain.push({ kind: 'kustomize', by: 'kustomize build', dir: d, overlay: {}, defaultNamespace: 'default' });
  }
  for (const c of charts) {
    if (isUnder(c, scope) && !inChart(c) && !requested.has(c) && !covered.has(chartIn(tree, c)!)) {
      const release = c === '' ? 'release' : c.slice(c.lastIndexOf('/') + 1);
      plain.push({ kind: 'helm', by: 'helm template', dir: c, overlay: {}, defaultNamespace: 'default', release, valueFiles: [], values: [], set: [] });
    }
  }
  const renders = [...gitopsRenders, ...plain.map((request) => ({ request, ...inputsOf(request, tree, dirs) }))];
  const consumed = new Set(renders.flatMap((r) => r.inputs));
  return { renders, consumed, warnings };
}

function inputsOf(r: RenderRequest, tree: TreeIndex, dirs: ReadonlySet<string>): { inputs: string[]; refusals: string[] } {
  if (r.kind === 'helm') return { inputs: [...new Set([...filesBelow(tree, r.dir), ...r.valueFiles])].sort(), refusals: [] };
  if (r.generate === undefined) {
    const c = kustomizeClosure(tree, r.dir, dirs);
    return { inputs: c.files, refusals: c.refusals.map((m) => `${originOf(r)}: ${m}`) };
  }
  // A generated kustomization lists the directory's manifests (below it when recursing); a subdirectory
  // with a kustomization of its own is built as one resource, as Flux's generator does.
  const inputs = new Set<string>();
  const refusals: string[] = [];
  const nested = [...dirs].filter((d) => d !== r.dir && isUnder(d, r.dir) && kustomizationIn(tree, d) !== undefined);
  const candidates = r.generate.recurse ? filesBelow(tree, r.dir) : filesIn(tree, r.dir);
  for (const f of candidates) {
    const owner = nested.find((n) => isUnder(dirOf(f), n));
    if (owner === undefined && MANIFEST.test(f)) inputs.add(f);
  }
  if (r.generate.recurse) {
    for (const n of nested.filter((n) => !nested.some((m) => m !== n && isUnder(n, m)))) {
      const c = kustomizeClosure(tree, n, dirs);
      for (const f of c.files) inputs.add(f);
      refusals.push(...c.refusals.map((m) => `${originOf(r)}: ${m}`));
    }
  }
  return { inputs: [...inputs].sort(), refusals };
}
