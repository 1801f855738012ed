// What a kustomization file refers to: local files and directories (its inputs, which are then not read as
// plain manifests), and remote or unsupported references, which enbi refuses rather than fetch. Pure.
import { parseGoYaml } from '../manifests/go-yaml.ts';

export const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'] as const;

export interface KustomizationRefs {
  /** Paths as written, relative to the kustomization's directory (files or directories). */
  local: string[];
  /** Of `local`, the patch files (patches, patchesStrategicMerge, patchesJson6902): changes to objects, not objects. */
  patches: string[];
  /** References kustomize would fetch over the network (never fetched: a problem). */
  remote: string[];
  /** Features that cannot render offline or without extra flags (helmCharts needs --enable-helm and a network). */
  unsupported: string[];
  /** `Component` for a kustomize component (kustomize.config.k8s.io/v1alpha1), built only into a kustomization that lists it. */
  kind?: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

/** kustomize's remote forms: URLs, scp-like Git, and host/org/repo//path?ref= shorthands. */
export function isRemoteRef(ref: string): boolean {
  return (
    /^[a-z][a-z0-9+.-]*:\/\//i.test(ref) ||
    /^[^/\s]+@[^/\s]+:/.test(ref) ||
    /^(github\.com|gitlab\.com|bitbucket\.org)\//.test(ref) ||
    ref.includes('?ref=') ||
    ref.includes('?version=')
  );
}

export function kustomizationRefs(text: string): KustomizationRefs | { error: string } {
  let doc: unknown;
  try {
    doc = parseGoYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    return { error: `malformed kustomization: ${(err as Error).message.split('\n')[0]}` };
  }
  if (doc === null || doc === undefined) doc = {};
  if (!isObj(doc)) return { error: 'malformed kustomization: expected a mapping' };
  const refs: string[] = [
    ...strings(doc.resources),
    ...strings(doc.bases),
    ...strings(doc.components),
    ...strings(doc.crds),
    ...strings(doc.configurations),
  ];
  // patchesStrategicMerge entries are file paths or inline patches (which contain a newline or a colon-space).
  const patches = strings(doc.patchesStrategicMerge).filter((p) => !p.includes('\n') && !p.includes(': '));
  for (const key of ['patches', 'patchesJson6902']) {
    for (const p of Array.isArray(doc[key]) ? doc[key] : [])
      if (isObj(p) && typeof p.path === 'string') patches.push(p.path);
  }
  refs.push(...patches);
  for (const p of Array.isArray(doc.replacements) ? doc.replacements : [])
    if (isObj(p) && typeof p.path === 'string') refs.push(p.path);
  for (const key of ['configMapGenerator', 'secretGenerator']) {
    for (const g of Array.isArray(doc[key]) ? doc[key] : []) {
      if (!isObj(g)) continue;
      // files: "path" or "key=path"; envs: paths; env: one path (deprecated form).
      refs.push(...strings(g.files).map((f) => f.slice(f.indexOf('=') + 1)), ...strings(g.envs));
      if (typeof g.env === 'string') refs.push(g.env);
    }
  }
  // Generators/transformers/validators may be inline objects (not inputs) or paths.
  for (const key of ['generators', 'transformers', 'validators'])
    refs.push(...strings(doc[key]).filter((p) => !p.includes('\n')));
  if (isObj(doc.openapi) && typeof doc.openapi.path === 'string') refs.push(doc.openapi.path);
  const unsupported: string[] = [];
  if (doc.helmCharts !== undefined || doc.helmChartInflationGenerator !== undefined) {
    unsupported.push(
      'helmCharts (kustomize would need --enable-helm and a chart repository: render the chart as its own root instead)',
    );
  }
  return {
    local: refs.filter((r) => !isRemoteRef(r)),
    patches: patches.filter((r) => !isRemoteRef(r)),
    remote: refs.filter(isRemoteRef),
    unsupported,
    ...(typeof doc.kind === 'string' ? { kind: doc.kind } : {}),
  };
}
