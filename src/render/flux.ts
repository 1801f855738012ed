// Flux objects found in the source, as render requests: a Kustomization (kustomize.toolkit.fluxcd.io) builds
// spec.path with its targetNamespace, images, patches and postBuild.substitute; a HelmRelease
// (helm.toolkit.fluxcd.io) renders an in-repository chart (chart.spec.chart with a GitRepository source, or
// chartRef to a HelmChart) with its values. Paths are relative to the repository root, as in Flux. Pure.
import type { ManifestObject } from '../manifests/scan.ts';
import type { Problem } from '../problems.ts';
import { asArr, asObj, asStr, groupOf, metaOf, type Obj, stringMap, whereOf } from './object-access.ts';
import { joinInside, normalizeDir } from './paths.ts';
import type { HelmRequest, KustomizeImage, KustomizeRequest, Overlay } from './request.ts';
import { findFluxSource, fluxSourceVerdict, type ReadRepository } from './source-match.ts';
import { chartIn, directoriesOf, kustomizationIn, type TreeIndex } from './tree-index.ts';

export interface Found<R> {
  requests: R[];
  warnings: Problem[];
}

/** Sources of files a Kustomization (or a chart) may come from: each compared with what enbi reads. */
const FILE_SOURCES = new Set(['GitRepository', 'OCIRepository', 'Bucket']);

export function fluxKustomizations(
  objects: readonly ManifestObject[],
  tree: TreeIndex,
  repo: ReadRepository,
): Found<KustomizeRequest> {
  const found: Found<KustomizeRequest> = { requests: [], warnings: [] };
  const dirs = directoriesOf(tree.paths);
  for (const { file, line, object } of objects) {
    if (object.kind !== 'Kustomization' || groupOf(object) !== 'kustomize.toolkit.fluxcd.io') continue;
    const { name, namespace } = metaOf(object);
    const by = `Kustomization ${namespace}/${name}`;
    const warn = (message: string) => found.warnings.push({ ...whereOf(file, line), object: by, message });
    const spec = asObj(object.spec) ?? {};
    const sourceRef = asObj(spec.sourceRef);
    const sourceKind = asStr(sourceRef?.kind) ?? 'GitRepository';
    const verdict = FILE_SOURCES.has(sourceKind)
      ? fluxSourceVerdict(sourceRef, namespace, objects, repo)
      : sourceKind === 'ExternalArtifact'
        ? 'not rendered: its source is an ExternalArtifact (made by a Flux ArtifactGenerator in the cluster), which enbi does not render'
        : `not rendered: its sourceRef is ${article(sourceKind)} ${sourceKind}, not a kind of source enbi knows`;
    if (verdict !== undefined) {
      warn(verdict);
      continue;
    }
    const dir = normalizeDir(asStr(spec.path) ?? '.');
    if (dir === undefined || !dirs.has(dir)) {
      warn(
        `not rendered: spec.path "${String(spec.path)}" is ${dir === undefined ? 'outside the repository' : tree.excluded?.has(dir) === true ? 'excluded (--exclude or .enbiignore)' : 'not a directory of this repository'}`,
      );
      continue;
    }
    if (asArr(asObj(spec.postBuild)?.substituteFrom).length > 0) {
      warn(
        'postBuild.substituteFrom reads ConfigMaps/Secrets from the cluster, which enbi does not read: only postBuild.substitute is applied, variables from substituteFrom stay as written',
      );
    }
    const overlay: Overlay = {};
    const target = asStr(spec.targetNamespace);
    if (target !== undefined) overlay.namespace = target;
    for (const key of ['namePrefix', 'nameSuffix'] as const) {
      const v = asStr(spec[key]);
      if (v !== undefined) overlay[key] = v;
    }
    const images = asArr(spec.images).flatMap(imageOf);
    if (images.length > 0) overlay.images = images;
    const patches = asArr(spec.patches);
    if (patches.length > 0) overlay.patches = patches;
    const request: KustomizeRequest = {
      kind: 'kustomize',
      by,
      dir,
      overlay,
      defaultNamespace: target ?? 'default',
      ...whereOf(file, line),
    };
    if (kustomizationIn(tree, dir) === undefined) request.generate = { recurse: true };
    const substitute = stringMap(asObj(spec.postBuild)?.substitute);
    if (Object.keys(substitute).length > 0 || asObj(spec.postBuild) !== undefined) request.substitute = substitute;
    found.requests.push(request);
  }
  return found;
}

function imageOf(v: unknown): KustomizeImage[] {
  const o = asObj(v);
  const name = asStr(o?.name);
  if (o === undefined || name === undefined) return [];
  const image: KustomizeImage = { name };
  for (const key of ['newName', 'newTag', 'digest'] as const) {
    const x = asStr(o[key]);
    if (x !== undefined) image[key] = x;
  }
  return [image];
}

export function fluxHelmReleases(
  objects: readonly ManifestObject[],
  tree: TreeIndex,
  repo: ReadRepository,
): Found<HelmRequest> {
  const found: Found<HelmRequest> = { requests: [], warnings: [] };
  for (const { file, line, object } of objects) {
    if (object.kind !== 'HelmRelease' || groupOf(object) !== 'helm.toolkit.fluxcd.io') continue;
    const { name, namespace } = metaOf(object);
    const by = `HelmRelease ${namespace}/${name}`;
    const warn = (message: string) => found.warnings.push({ ...whereOf(file, line), object: by, message });
    const spec = asObj(object.spec) ?? {};
    const chart = chartOf(spec, namespace, objects, repo);
    if ('warning' in chart) {
      warn(chart.warning);
      continue;
    }
    const dir = normalizeDir(chart.path);
    if (dir === undefined || chartIn(tree, dir) === undefined) {
      warn(
        `not rendered: chart "${chart.path}" is ${dir !== undefined && tree.excluded?.has(dir) === true ? 'excluded (--exclude or .enbiignore)' : 'not a chart directory (with Chart.yaml) of this repository'}`,
      );
      continue;
    }
    if (asArr(spec.valuesFrom).length > 0)
      warn('valuesFrom reads ConfigMaps/Secrets from the cluster, which enbi does not read: rendered without them');
    const valueFiles: string[] = [];
    for (const v of chart.valuesFiles) {
      const path = joinInside('', v);
      if (path === undefined || !tree.hashes.has(path)) warn(`values file "${v}" is not in this source: skipped`);
      else valueFiles.push(path);
    }
    const target = asStr(spec.targetNamespace);
    const releaseNamespace = target ?? namespace;
    const overlay: Overlay = {};
    for (const pr of asArr(spec.postRenderers)) {
      const k = asObj(asObj(pr)?.kustomize);
      if (k === undefined) continue;
      const images = asArr(k.images).flatMap(imageOf);
      if (images.length > 0) overlay.images = [...(overlay.images ?? []), ...images];
      const patches = asArr(k.patches);
      if (patches.length > 0) overlay.patches = [...(overlay.patches ?? []), ...patches];
    }
    const values = asObj(spec.values);
    found.requests.push({
      kind: 'helm',
      by,
      dir,
      overlay,
      defaultNamespace: releaseNamespace,
      release: asStr(spec.releaseName) ?? (target !== undefined ? `${target}-${name}` : name),
      valueFiles,
      ...(chart.valuesFiles.length > 0 ? { withoutChartValues: true } : {}),
      values: values !== undefined ? [values] : [],
      set: [],
      ...(asObj(spec.test)?.enable === true ? { tests: true } : {}),
      ...whereOf(file, line),
    });
  }
  return found;
}

/**
 * The in-repository chart path and values files of a HelmRelease, or the warning saying why it is not
 * rendered: a chart from a Helm or OCI repository, or from a source that is not the repository enbi reads.
 */
function chartOf(
  spec: Obj,
  namespace: string,
  objects: readonly ManifestObject[],
  repo: ReadRepository,
): { path: string; valuesFiles: string[] } | { warning: string } {
  const ref = asObj(spec.chartRef);
  if (ref !== undefined) {
    const kind = asStr(ref.kind);
    if (kind !== 'HelmChart')
      return {
        warning: `not rendered: ${kind === 'OCIRepository' ? 'its chartRef is an OCIRepository, a chart in a registry, which enbi does not fetch (it renders only what this repository holds)' : `its chartRef is ${article(kind ?? '?')} ${kind ?? '?'}, not a chart of this repository`}`,
      };
    const ns = asStr(ref.namespace) ?? namespace;
    const helmChart = findFluxSource(objects, 'HelmChart', String(ref.name), ns);
    if (helmChart === undefined)
      return {
        warning: `not rendered: its chartRef names HelmChart ${ns}/${String(ref.name)}, which is not in this repository`,
      };
    // A HelmChart's sourceRef is in its own namespace.
    return chartSpecOf(asObj(helmChart.spec) ?? {}, metaOf(helmChart).namespace, objects, repo);
  }
  return chartSpecOf(asObj(asObj(spec.chart)?.spec) ?? {}, namespace, objects, repo);
}

function chartSpecOf(
  chartSpec: Obj,
  namespace: string,
  objects: readonly ManifestObject[],
  repo: ReadRepository,
): { path: string; valuesFiles: string[] } | { warning: string } {
  const sourceRef = asObj(chartSpec.sourceRef);
  const sourceKind = asStr(sourceRef?.kind) ?? '?';
  const chart = asStr(chartSpec.chart);
  if (chart === undefined) return { warning: 'not rendered: chart.spec.chart is missing' };
  if (sourceKind !== 'GitRepository' && sourceKind !== 'Bucket')
    return {
      warning: `not rendered: chart "${chart}" comes from ${article(sourceKind)} ${sourceKind}, which enbi does not fetch (it renders only what this repository holds)`,
    };
  const verdict = fluxSourceVerdict(sourceRef, namespace, objects, repo);
  if (verdict !== undefined) return { warning: verdict };
  const valuesFiles = asArr(chartSpec.valuesFiles).filter((v): v is string => typeof v === 'string');
  const single = asStr(chartSpec.valuesFile);
  return { path: chart, valuesFiles: single !== undefined ? [single, ...valuesFiles] : valuesFiles };
}

/** "a" or "an" before a kind's name. */
export const article = (word: string) => (/^[AEIOU]/i.test(word) ? 'an' : 'a');
