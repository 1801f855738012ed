// `enbi diff --list`: every workload and container image the source holds, annotated or not, each with the
// file it was written in and the root it was rendered through (a plain file, a kustomize directory, a chart,
// a Flux Kustomization or HelmRelease, an Argo CD Application). It plans nothing: it lists. Pure.
import { enbiAnnotationsOf } from '../contract/annotations.ts';
import { redactFlakeUrl } from '../flake/ref.ts';
import { isEnbiAnnotated, type Workload, workloadId } from '../manifests/workloads.ts';
import type { Analysis, ManifestCounts } from '../pipeline/analyze.ts';
import type { Problem } from '../problems.ts';
import type { RootOutcome } from '../render/index.ts';
import { EXIT_PROBLEMS, EXIT_UP_TO_DATE, type SourceInfo } from './report.ts';

export type RootKind = 'file' | 'kustomization' | 'chart' | 'Kustomization' | 'HelmRelease' | 'Application';

export interface ListedRoot {
  /** file: a manifest read as written; kustomization, chart: a directory rendered on its own; else the Flux or Argo CD object. */
  kind: RootKind;
  /** The file (kind file) or the directory rendered, from the repository's root. */
  path: string;
  /** The Flux or Argo CD object, `namespace/name`. */
  object?: string;
  /** Where the root is declared: the Flux or Argo CD object's file, or the kustomization file or Chart.yaml. */
  file?: string;
  line?: number;
  /** "Kustomization flux-system/apps → apps/prod", as problems name it. */
  origin?: string;
}

export interface ListedContainer {
  name: string;
  init: boolean;
  image?: string;
  /** The flake enbi builds this container's image from (its annotation), when enbi plans it. */
  flake?: string;
}

export interface ListedWorkload {
  /** `Kind namespace/name`. */
  id: string;
  kind: string;
  namespace: string;
  name: string;
  /** The file the object was written in (for a rendered one, the file kustomize or helm built it from), when known. */
  file?: string;
  line?: number;
  root: ListedRoot;
  /** Its pod template carries enbi annotations. */
  annotated: boolean;
  /** enbi plans a build for at least one of its containers (annotated, and the annotations were accepted). */
  planned: boolean;
  /** The enbi annotations as written, when annotated. */
  annotations?: Record<string, string>;
  containers: ListedContainer[];
}

export interface ListedImage {
  image: string;
  /** Workload ids using it. */
  workloads: string[];
  /** Flakes enbi builds it from (none: enbi does not build it). */
  flakes: string[];
}

export interface WorkloadList {
  source: SourceInfo;
  manifests: ManifestCounts;
  workloads: ListedWorkload[];
  images: ListedImage[];
  problems: Problem[];
  warnings: Problem[];
}

export interface ListInput {
  source: SourceInfo;
  /** Made with `listAll`, so that it holds every workload. */
  analysis: Analysis;
  /** The roots rendered (renderSource's `roots`), to say what each rendered workload came through. */
  roots?: readonly RootOutcome[];
}

export function listWorkloads(input: ListInput): WorkloadList {
  const { analysis } = input;
  const needs = new Map(analysis.workloads.map((w) => [w.workload, w.needs]));
  const roots = new Map((input.roots ?? []).map((r) => [r.origin, r]));
  const workloads = (analysis.found ?? []).map((w): ListedWorkload => {
    const planned = needs.get(w) ?? [];
    const flakeOf = new Map(planned.map((n) => [n.container, redactFlakeUrl(n.source.declared)]));
    const annotated = isEnbiAnnotated(w);
    return {
      id: workloadId(w),
      kind: w.kind,
      namespace: w.namespace,
      name: w.name,
      ...(w.file !== undefined ? { file: w.file } : {}),
      ...(w.line !== undefined ? { line: w.line } : {}),
      root: rootOf(w, roots),
      annotated,
      planned: planned.length > 0,
      ...(annotated ? { annotations: writtenAnnotations(w) } : {}),
      containers: w.containers.map((c) => ({
        name: c.name,
        init: c.init,
        ...(c.image !== undefined ? { image: c.image } : {}),
        ...(flakeOf.has(c.name) ? { flake: flakeOf.get(c.name)! } : {}),
      })),
    };
  });
  return {
    source: input.source,
    manifests: analysis.counts,
    workloads,
    images: imagesOf(workloads),
    problems: analysis.problems,
    warnings: analysis.warnings,
  };
}

/** 4 when the manifests hold problems (as `enbi diff`), else 0: a listing starts no build. */
export function exitCodeOfList(list: WorkloadList): number {
  return list.problems.length > 0 ? EXIT_PROBLEMS : EXIT_UP_TO_DATE;
}

function rootOf(w: Workload, roots: ReadonlyMap<string, RootOutcome>): ListedRoot {
  if (w.origin === undefined) return { kind: 'file', path: w.file ?? '' };
  const r = roots.get(w.origin);
  // "<by> → <dir>" (render/request.ts originOf), for a root the renders did not list (the controller's stand-ins).
  const arrow = w.origin.lastIndexOf(' → ');
  const by = r?.by ?? (arrow >= 0 ? w.origin.slice(0, arrow) : w.origin);
  const dir = r?.dir ?? (arrow >= 0 ? w.origin.slice(arrow + 3) : '');
  const where = {
    ...(r?.file !== undefined ? { file: r.file } : {}),
    ...(r?.line !== undefined ? { line: r.line } : {}),
    origin: w.origin,
  };
  const path = dir === '' ? '.' : dir;
  if (by === 'kustomize build') return { kind: 'kustomization', path, ...where };
  if (by === 'helm template') return { kind: 'chart', path, ...where };
  const space = by.indexOf(' ');
  const kind = by.slice(0, space);
  if (kind === 'Kustomization' || kind === 'HelmRelease' || kind === 'Application')
    return { kind, path, object: by.slice(space + 1), ...where };
  return { kind: 'kustomization', path, ...where };
}

/** The enbi annotations as written, but for credentials in flake URLs (refused, and never repeated). */
function writtenAnnotations(w: Workload): Record<string, string> {
  return Object.fromEntries(
    Object.entries(enbiAnnotationsOf(w.annotations)).map(([k, v]) => [
      k,
      redactFlakeUrl(typeof v === 'string' ? v : JSON.stringify(v)),
    ]),
  );
}

function imagesOf(workloads: readonly ListedWorkload[]): ListedImage[] {
  const byImage = new Map<string, { workloads: Set<string>; flakes: Set<string> }>();
  for (const w of workloads)
    for (const c of w.containers) {
      if (c.image === undefined) continue;
      let entry = byImage.get(c.image);
      if (entry === undefined) byImage.set(c.image, (entry = { workloads: new Set(), flakes: new Set() }));
      entry.workloads.add(w.id);
      if (c.flake !== undefined) entry.flakes.add(c.flake);
    }
  return [...byImage.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([image, e]) => ({ image, workloads: [...e.workloads], flakes: [...e.flakes] }));
}
