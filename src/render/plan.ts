// Which renders a source needs and which files they consume. Flux and Argo CD objects in the scope say what
// is applied where; every other kustomization or chart in the scope that no kustomization builds from (a
// base) and no Flux/Argo object renders is a root of its own, as Argo CD treats a directory. The files a
// render reads are not also read as plain manifests. Pure.
import type { ManifestObject } from '../manifests/scan.ts';
import type { Problem } from '../problems.ts';
import { argoApplications } from './argo.ts';
import { isComponent, type KustomizeClosure, kustomizeClosure } from './closure.ts';
import { fluxHelmReleases, fluxKustomizations } from './flux.ts';
import { metaOf, whereOf } from './object-access.ts';
import { dirOf, isUnder, shown } from './paths.ts';
import type { DirectoryRequest, KustomizeRequest, RenderRequest } from './request.ts';
import { directoryFiles } from './directory.ts';
import type { ReadRepository } from './source-match.ts';
import { chartIn, directoriesOf, filesBelow, filesIn, kustomizationIn, type TreeIndex } from './tree-index.ts';

export interface PlannedRender {
  request: RenderRequest;
  /** Files whose content decides the output (the cache key) and that are not read as plain manifests. */
  inputs: string[];
  /** Why it cannot be rendered; the render is skipped and these are its one problem. */
  refusals: string[];
}

export interface RenderPlan {
  renders: PlannedRender[];
  consumed: Set<string>;
  warnings: Problem[];
  /** Objects not rendered that name enbi annotations: workloads enbi should build go unplanned (a CI gate fails). */
  problems: Problem[];
}

const MANIFEST = /\.(ya?ml|json)$/;

/** `repo`: the repository and ref enbi reads; Flux and Argo CD objects of any other source are not rendered. */
export function planRenders(
  tree: TreeIndex,
  scope: string,
  objects: readonly ManifestObject[],
  repo: ReadRepository,
): RenderPlan {
  const flux = fluxKustomizations(objects, tree, repo);
  const releases = fluxHelmReleases(objects, tree, repo);
  const argo = argoApplications(objects, tree, repo);
  const requests: RenderRequest[] = [...flux.requests, ...releases.requests, ...argo.requests];
  const warnings = [...flux.warnings, ...releases.warnings, ...argo.warnings];
  const dirs = directoriesOf(tree.paths);
  const charts = [...dirs].filter((d) => chartIn(tree, d) !== undefined).sort();
  const inChart = (d: string) => charts.some((c) => c !== d && isUnder(d, c));
  const kustomizeDirs = [...dirs].filter((d) => kustomizationIn(tree, d) !== undefined && !inChart(d)).sort();
  // Each kustomization's closure once: root detection and the renders' inputs both need it.
  const closures = new Map<string, KustomizeClosure>();
  const closureOf = (d: string) => {
    let c = closures.get(d);
    if (c === undefined) closures.set(d, (c = kustomizeClosure(tree, d, dirs)));
    return c;
  };
  // A base is a directory another kustomization builds from. Kustomizations that include each other (a
  // cycle) are not each other's base: the first of them is a root, never rendered, its cycle its one problem.
  const reaches = (from: string, to: string) => closureOf(from).dirs.includes(to);
  const bases = new Set<string>();
  for (const d of kustomizeDirs) {
    for (const b of closureOf(d).dirs.slice(1)) if (!reaches(b, d)) bases.add(b);
  }
  for (const d of kustomizeDirs) {
    if (bases.has(d) || closureOf(d).cycle === undefined) continue;
    if (kustomizeDirs.some((e) => e < d && !bases.has(e) && reaches(e, d) && reaches(d, e))) bases.add(d);
  }
  // What Flux and Argo CD objects render comes first; a root whose kustomization or Chart.yaml one of them
  // already reads (a directory inside a Flux path without a kustomization) is not rendered again on its own.
  // A directory they name that holds nothing to render is a warning for that object, not a render.
  const gitopsRenders: PlannedRender[] = [];
  for (const request of requests) {
    const warn = (message: string) =>
      warnings.push({
        ...(request.file !== undefined ? whereOf(request.file, request.line ?? 0) : {}),
        object: request.by,
        message,
      });
    const empty =
      request.kind === 'kustomize' && request.generate !== undefined
        ? nothingToGenerate(request, tree, dirs)
        : request.kind === 'directory'
          ? nothingInDirectory(request, tree)
          : undefined;
    if (empty !== undefined) {
      warn(`not rendered: ${empty}`);
      continue;
    }
    if (request.kind === 'directory') {
      const { jsonnet } = directoryFiles(tree, request);
      if (jsonnet.length > 0)
        warn(
          `${listed(jsonnet)}: jsonnet, which enbi does not run: skipped (the directory's other manifests are read)`,
        );
    }
    gitopsRenders.push({ request, ...inputsOf(request, tree, dirs, closureOf) });
  }
  const covered = new Set(gitopsRenders.flatMap((r) => r.inputs));
  const requested = new Set(requests.map((r) => r.dir));
  const plain: RenderRequest[] = [];
  // A Component nothing lists is built by nothing (kustomize refuses to build one on its own): not a root,
  // and its files (patches, partial objects) are not manifests either.
  const unusedComponents: string[] = [];
  for (const d of kustomizeDirs) {
    const file = kustomizationIn(tree, d)!;
    if (!isUnder(d, scope) || bases.has(d) || requested.has(d) || covered.has(file)) continue;
    if (isComponent(tree, d)) unusedComponents.push(...closureOf(d).files.filter((f) => isUnder(f, d)));
    else
      plain.push({ kind: 'kustomize', by: 'kustomize build', dir: d, overlay: {}, defaultNamespace: 'default', file });
  }
  for (const c of charts) {
    const file = chartIn(tree, c)!;
    if (isUnder(c, scope) && !inChart(c) && !requested.has(c) && !covered.has(file)) {
      const release = c === '' ? 'release' : c.slice(c.lastIndexOf('/') + 1);
      plain.push({
        kind: 'helm',
        by: 'helm template',
        dir: c,
        overlay: {},
        defaultNamespace: 'default',
        release,
        valueFiles: [],
        values: [],
        set: [],
        file,
      });
    }
  }
  const renders = [
    ...gitopsRenders,
    ...plain.map((request) => ({ request, ...inputsOf(request, tree, dirs, closureOf) })),
  ];
  const consumed = new Set([...renders.flatMap((r) => r.inputs), ...unusedComponents]);
  return { renders, consumed, ...annotatedNotRendered(warnings, objects) };
}

/**
 * A Flux or Argo CD object of this repository that is not rendered (a remote chart, a plugin) but names enbi
 * annotations (a HelmRelease's values, an Application's parameters) hides workloads enbi should build: a
 * problem, not a warning. Another source's objects stay warnings: that source is planned where it is read.
 */
function annotatedNotRendered(
  warnings: Problem[],
  objects: readonly ManifestObject[],
): { warnings: Problem[]; problems: Problem[] } {
  const keys = new Map<string, string>();
  for (const { file, object } of objects) {
    const key = ENBI_KEY.exec(JSON.stringify(object.spec ?? null))?.[0];
    if (key === undefined) continue;
    const { name, namespace } = metaOf(object);
    keys.set(`${file}\0${String(object.kind)} ${namespace}/${name}`, key);
  }
  if (keys.size === 0) return { warnings, problems: [] };
  const kept: Problem[] = [];
  const problems: Problem[] = [];
  for (const w of warnings) {
    const key = w.message.startsWith('not rendered') ? keys.get(`${w.file}\0${w.object}`) : undefined;
    if (key === undefined) kept.push(w);
    else
      problems.push({
        ...w,
        message: `${w.message}; it names enbi annotations (${key}), so the workloads they annotate are not planned`,
      });
  }
  return { warnings: kept, problems };
}

const ENBI_KEY = /enbi\.hrzn\.ee\/[A-Za-z0-9._-]+/;

/**
 * Why a directory rendered through the kustomization Flux (or Argo CD's directory mode) generates has
 * nothing in it to render (no YAML or JSON manifest, nor a kustomization below it when recursing), else
 * undefined. kustomize would be handed an empty directory; Flux applies nothing there, Argo CD may run
 * jsonnet or a plugin enbi does not.
 */
function nothingToGenerate(r: KustomizeRequest, tree: TreeIndex, dirs: ReadonlySet<string>): string | undefined {
  const files = r.generate!.recurse ? filesBelow(tree, r.dir) : filesIn(tree, r.dir);
  if (files.some((f) => MANIFEST.test(f))) return undefined;
  if (
    r.generate!.recurse &&
    [...dirs].some((d) => d !== r.dir && isUnder(d, r.dir) && kustomizationIn(tree, d) !== undefined)
  )
    return undefined;
  const jsonnet = files.filter((f) => /\.(jsonnet|libsonnet)$/.test(f));
  if (jsonnet.length > 0) return `${shown(r.dir)} holds jsonnet (${listed(jsonnet)}), which enbi does not render`;
  const none = `${shown(r.dir)} holds no YAML or JSON manifest${r.generate!.recurse ? '' : ' directly (directory.recurse is off)'}`;
  return files.length === 0 ? none : `${none} (only ${listed(files)})`;
}

/** Why Argo CD's directory mode finds nothing enbi reads in a directory, else undefined. */
function nothingInDirectory(r: DirectoryRequest, tree: TreeIndex): string | undefined {
  const { manifests, jsonnet } = directoryFiles(tree, r);
  if (manifests.length > 0) return undefined;
  if (jsonnet.length > 0) return `${shown(r.dir)} holds jsonnet (${listed(jsonnet)}), which enbi does not render`;
  const files = r.recurse ? filesBelow(tree, r.dir) : filesIn(tree, r.dir);
  const filtered = r.include !== undefined || r.exclude !== undefined ? ' that directory.include/exclude select' : '';
  const none = `${shown(r.dir)} holds no YAML or JSON manifest${filtered}${r.recurse ? '' : ' directly (directory.recurse is off)'}`;
  return files.length === 0 ? none : `${none} (only ${listed(files)})`;
}

function listed(list: readonly string[]): string {
  return `${list.slice(0, 3).join(', ')}${list.length > 3 ? `, and ${list.length - 3} more` : ''}`;
}

function inputsOf(
  r: RenderRequest,
  tree: TreeIndex,
  dirs: ReadonlySet<string>,
  closureOf: (dir: string) => KustomizeClosure,
): { inputs: string[]; refusals: string[] } {
  if (r.kind === 'directory') return { inputs: directoryFiles(tree, r).manifests, refusals: [] };
  if (r.kind === 'helm')
    return { inputs: [...new Set([...filesBelow(tree, r.dir), ...r.valueFiles])].sort(), refusals: [] };
  if (r.generate === undefined) {
    const c = closureOf(r.dir);
    return { inputs: c.files, refusals: c.refusals };
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
      const c = closureOf(n);
      for (const f of c.files) inputs.add(f);
      refusals.push(...c.refusals);
    }
  }
  return { inputs: [...inputs].sort(), refusals };
}
