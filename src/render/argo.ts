// Argo CD Applications (argoproj.io) found in the source, as render requests: spec.source.path (or each of
// spec.sources) is a kustomize directory (kustomization file), a Helm chart (Chart.yaml) or, as Argo CD's
// directory mode reads it, plain manifests (directory.ts),
// applied to destination.namespace with the source's kustomize or helm overrides. Paths are relative to the
// repository root, as in Argo CD. Remote charts (spec.source.chart) are not fetched. Pure.
import { parseGoYaml } from '../manifests/go-yaml.ts';
import type { ManifestObject } from '../manifests/scan.ts';
import { parseArgoImage } from './argo-image.ts';
import type { Found } from './flux.ts';
import { asArr, asObj, asStr, groupOf, metaOf, type Obj, stringMap, whereOf } from './object-access.ts';
import { joinInside, normalizeDir, shown } from './paths.ts';
import type { Overlay, RenderRequest } from './request.ts';
import { argoSourceVerdict, type ReadRepository } from './source-match.ts';
import { chartIn, directoriesOf, kustomizationIn, type TreeIndex } from './tree-index.ts';

export function argoApplications(
  objects: readonly ManifestObject[],
  tree: TreeIndex,
  repo: ReadRepository,
): Found<RenderRequest> {
  const found: Found<RenderRequest> = { requests: [], warnings: [] };
  const dirs = directoriesOf(tree.paths);
  for (const { file, line, object } of objects) {
    if (groupOf(object) !== 'argoproj.io') continue;
    const { name, namespace } = metaOf(object);
    if (object.kind === 'ApplicationSet') {
      found.warnings.push({
        ...whereOf(file, line),
        object: `ApplicationSet ${namespace}/${name}`,
        message:
          'ApplicationSet generators (clusters, Git, pull requests) need Argo CD and the cluster: the Applications it would make are not rendered; declare them as Applications to have them planned',
      });
    }
    if (object.kind !== 'Application') continue;
    const by = `Application ${namespace}/${name}`;
    const warn = (message: string) => found.warnings.push({ ...whereOf(file, line), object: by, message });
    const spec = asObj(object.spec) ?? {};
    const destination = asStr(asObj(spec.destination)?.namespace) ?? 'default';
    const single = asObj(spec.source);
    const sources: Obj[] =
      single !== undefined
        ? [single]
        : asArr(spec.sources).flatMap((s): Obj[] => {
            const o = asObj(s);
            return o === undefined ? [] : [o];
          });
    if (sources.length === 0) warn('not rendered: it has no spec.source or spec.sources');
    for (const source of sources) {
      if (asStr(source.chart) !== undefined) {
        warn(
          `not rendered: chart "${String(source.chart)}" from ${String(source.repoURL)} comes from a Helm repository, which enbi does not fetch (it renders only what this repository holds)`,
        );
        continue;
      }
      if (source.path === undefined) continue; // a values-only source ($values ref) of a multi-source Application
      const verdict = argoSourceVerdict(source, repo);
      if (verdict !== undefined) {
        warn(verdict);
        continue;
      }
      const dir = normalizeDir(asStr(source.path) ?? '.');
      if (dir === undefined || !dirs.has(dir)) {
        warn(
          `not rendered: spec.source.path "${String(source.path)}" is ${dir === undefined ? 'outside the repository' : tree.excluded?.has(dir) === true ? 'excluded (--exclude or .enbiignore)' : 'not a directory of this repository'}`,
        );
        continue;
      }
      const plugin = asObj(source.plugin);
      if (plugin !== undefined) {
        warn(
          `not rendered: a config management plugin${asStr(plugin.name) !== undefined ? ` (${String(plugin.name)})` : ''} renders ${shown(dir)}, and enbi cannot run it`,
        );
        continue;
      }
      const base = { by, dir, defaultNamespace: destination, ...whereOf(file, line) };
      const type = sourceType(source, dir, tree);
      if ('refused' in type) {
        warn(`not rendered: ${type.refused}`);
        continue;
      }
      if (type.type === 'helm') {
        found.requests.push({
          kind: 'helm',
          ...base,
          overlay: {},
          ...helmOptions(asObj(source.helm) ?? {}, name, dir, tree, warn),
        });
      } else if (type.type === 'kustomize') {
        found.requests.push({ kind: 'kustomize', ...base, overlay: overlayOf(asObj(source.kustomize) ?? {}) });
      } else {
        const directory = asObj(source.directory) ?? {};
        const include = asStr(directory.include);
        const exclude = asStr(directory.exclude);
        found.requests.push({
          kind: 'directory',
          ...base,
          overlay: {},
          recurse: directory.recurse === true,
          ...(include !== undefined ? { include } : {}),
          ...(exclude !== undefined ? { exclude } : {}),
        });
      }
    }
  }
  return found;
}

const EXPLICIT = ['kustomize', 'helm', 'directory'] as const;

/**
 * How Argo CD's repo-server renders a source (GetAppSourceType): the one of spec.source.kustomize, helm,
 * directory that is set (more than one is an error), else a kustomization file makes it kustomize, a
 * Chart.yaml helm, anything else a directory.
 */
function sourceType(
  source: Obj,
  dir: string,
  tree: TreeIndex,
): { type: (typeof EXPLICIT)[number] } | { refused: string } {
  const explicit = EXPLICIT.filter((k) => source[k] !== undefined && source[k] !== null);
  if (explicit.length > 1)
    return {
      refused: `spec.source sets ${explicit.join(' and ')}, and Argo CD refuses more than one ("multiple application sources defined")`,
    };
  const detected =
    kustomizationIn(tree, dir) !== undefined ? 'kustomize' : chartIn(tree, dir) !== undefined ? 'helm' : 'directory';
  const type = explicit[0] ?? detected;
  if (type === 'kustomize' && kustomizationIn(tree, dir) === undefined)
    return {
      refused: `spec.source.kustomize is set, but ${shown(dir)} has no kustomization file: kustomize build fails there`,
    };
  if (type === 'helm' && chartIn(tree, dir) === undefined)
    return { refused: `spec.source.helm is set, but ${shown(dir)} has no Chart.yaml: helm template fails there` };
  return { type };
}

function overlayOf(k: Obj): Overlay {
  const overlay: Overlay = {};
  for (const key of ['namespace', 'namePrefix', 'nameSuffix'] as const) {
    const v = asStr(k[key]);
    if (v !== undefined) overlay[key] = v;
  }
  for (const key of ['commonAnnotations', 'commonLabels'] as const) {
    const map = stringMap(k[key]);
    if (Object.keys(map).length > 0) overlay[key] = map;
  }
  const images = asArr(k.images)
    .filter((i): i is string => typeof i === 'string')
    .map(parseArgoImage);
  if (images.length > 0) overlay.images = images;
  const patches = asArr(k.patches);
  if (patches.length > 0) overlay.patches = patches;
  return overlay;
}

/** Argo CD's helm options: valueFiles relative to the chart's path, then values (a string), then valuesObject. */
function helmOptions(h: Obj, appName: string, dir: string, tree: TreeIndex, warn: (m: string) => void) {
  const valueFiles: string[] = [];
  for (const v of asArr(h.valueFiles).filter((x): x is string => typeof x === 'string')) {
    const path = v.startsWith('$') ? undefined : joinInside(dir, v);
    if (path === undefined || !tree.hashes.has(path)) {
      if (h.ignoreMissingValueFiles !== true) warn(`values file "${v}" is not in this source: skipped`);
    } else valueFiles.push(path);
  }
  const values: Record<string, unknown>[] = [];
  if (typeof h.values === 'string') {
    try {
      const parsed = asObj(parseGoYaml(h.values, { maxAliasCount: 100 }));
      if (parsed !== undefined) values.push(parsed);
    } catch (err) {
      warn(`helm.values is not valid YAML (${(err as Error).message.split('\n')[0]}): skipped`);
    }
  }
  const valuesObject = asObj(h.valuesObject);
  if (valuesObject !== undefined) values.push(valuesObject);
  const set = asArr(h.parameters).flatMap((p) => {
    const o = asObj(p);
    return typeof o?.name === 'string' && o.value !== undefined ? [`${o.name}=${String(o.value)}`] : [];
  });
  return { release: asStr(h.releaseName) ?? appName, valueFiles, values, set };
}
