// What one render produces objects from: a kustomize directory or a Helm chart, with the overrides a Flux or
// Argo CD object (or nothing: a plain root) applies on top. Plain data, decided by pure functions.

export interface KustomizeImage {
  name: string;
  newName?: string;
  newTag?: string;
  digest?: string;
}

/** Overrides applied through a generated kustomization over the base output, as Flux applies them. */
export interface Overlay {
  namespace?: string;
  namePrefix?: string;
  nameSuffix?: string;
  images?: KustomizeImage[];
  /** Argo CD kustomize.commonAnnotations / commonLabels (kustomize puts them on pod templates too). */
  commonAnnotations?: Record<string, string>;
  commonLabels?: Record<string, string>;
  /** kustomize `patches` entries, inline (`patch` + `target`), as in Flux and Argo CD objects. */
  patches?: unknown[];
}

interface RequestBase {
  /** Who asks: "Kustomization flux-system/apps", "Application argocd/shop", or "kustomization" for a plain root. */
  by: string;
  /** Source-relative directory rendered. */
  dir: string;
  overlay: Overlay;
  /** Namespace of objects that name none (Argo CD's destination, Helm's release namespace). */
  defaultNamespace: string;
  /** Where the asking object is, for problems about it. */
  file?: string;
  line?: number;
}

export interface KustomizeRequest extends RequestBase {
  kind: 'kustomize';
  /** No kustomization file: generate one from the directory's manifests, as Flux (and Argo CD's directory mode) do. */
  generate?: { recurse: boolean };
  /** Flux postBuild.substitute: ${var} replaced in the output. */
  substitute?: Record<string, string>;
}

export interface HelmRequest extends RequestBase {
  kind: 'helm';
  release: string;
  /** Source-relative values files, in order (after the chart's own values.yaml). */
  valueFiles: string[];
  /** Flux valuesFiles replace the chart's values.yaml: its defaults count only when it is listed. */
  withoutChartValues?: boolean;
  /** Inline values, merged after the files, in order. */
  values: Record<string, unknown>[];
  /** --set name=value pairs (Argo CD helm.parameters). */
  set: string[];
  /** Flux spec.test.enable: helm test hooks run after each release, so their pods count; else they are dropped. */
  tests?: boolean;
}

/** Argo CD's directory mode: the directory's manifest files read as they are (directory.ts). */
export interface DirectoryRequest extends RequestBase {
  kind: 'directory';
  recurse: boolean;
  /** directory.include / directory.exclude globs, relative to the directory. */
  include?: string;
  exclude?: string;
}

export type RenderRequest = KustomizeRequest | HelmRequest | DirectoryRequest;

/** The tool a render runs (a directory is read, not run). */
export function toolOf(r: RenderRequest): 'kustomize' | 'helm' | undefined {
  return r.kind === 'directory' ? undefined : r.kind;
}

/** How the origin of a rendered object reads: "Kustomization flux-system/apps → apps/prod". */
export function originOf(r: Pick<RequestBase, 'by' | 'dir'>): string {
  return `${r.by} → ${r.dir === '' ? '.' : r.dir}`;
}

export function overlayIsEmpty(o: Overlay): boolean {
  return (
    o.namespace === undefined &&
    o.namePrefix === undefined &&
    o.nameSuffix === undefined &&
    (o.images ?? []).length === 0 &&
    (o.patches ?? []).length === 0 &&
    o.commonAnnotations === undefined &&
    o.commonLabels === undefined
  );
}
