// Flux and Argo CD objects come from two places: the files of the scope as written, and the output of renders
// (a Flux Kustomization applies the HelmReleases and Kustomizations below its path, patched and substituted).
// What a render produces is what the cluster would hold, so it replaces the written object it was built from
// (same kind, name and file); objects only a render produces are added. Pure.
import type { ManifestObject } from '../manifests/scan.ts';
import { asObj, groupOf } from './object-access.ts';
import type { RenderedObject } from './output.ts';

const GITOPS_GROUPS = new Set([
  'kustomize.toolkit.fluxcd.io',
  'helm.toolkit.fluxcd.io',
  'source.toolkit.fluxcd.io',
  'argoproj.io',
]);

export const isGitopsObject = (o: Record<string, unknown>) => GITOPS_GROUPS.has(groupOf(o));

const identity = (m: ManifestObject) =>
  `${String(m.object.kind)}\0${String(asObj(m.object.metadata)?.name)}\0${m.file}`;

/** Rendered objects as Flux/Argo CD inputs, at their written line when traced; line 0: no line known. */
export function gitopsOfRendered(objects: readonly RenderedObject[]): ManifestObject[] {
  return objects
    .filter((r) => isGitopsObject(r.object))
    .map((r) => ({ file: r.file ?? r.origin, line: r.line ?? 0, object: r.object }));
}

export function mergeGitops(written: readonly ManifestObject[], rendered: readonly ManifestObject[]): ManifestObject[] {
  const byId = new Map<string, ManifestObject>();
  for (const m of written) byId.set(identity(m), m);
  for (const m of rendered) byId.set(identity(m), m);
  return [...byId.values()];
}

/** The same objects in the same order: discovery has reached its fixed point. */
export function sameGitops(a: readonly ManifestObject[], b: readonly ManifestObject[]): boolean {
  return a.length === b.length && JSON.stringify(a) === JSON.stringify(b);
}
