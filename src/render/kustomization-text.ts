// The kustomization files enbi writes into its private copy of the source: the overlay that applies a Flux or
// Argo CD object's overrides (as Flux does), and the kustomization Flux generates for a directory without one.
// Pure: text in, text out.
import { stringify } from 'yaml';
import type { Overlay } from './request.ts';

/** An overlay over `resources`, recording each object's origin file (kustomize's originAnnotations). */
export function overlayKustomization(resources: readonly string[], overlay: Overlay): string {
  const doc: Record<string, unknown> = {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    resources: [...resources],
    buildMetadata: ['originAnnotations'],
  };
  if (overlay.namespace !== undefined) doc.namespace = overlay.namespace;
  if (overlay.namePrefix !== undefined) doc.namePrefix = overlay.namePrefix;
  if (overlay.nameSuffix !== undefined) doc.nameSuffix = overlay.nameSuffix;
  if (overlay.commonAnnotations !== undefined) doc.commonAnnotations = overlay.commonAnnotations;
  if (overlay.commonLabels !== undefined) doc.commonLabels = overlay.commonLabels;
  if ((overlay.images ?? []).length > 0) doc.images = overlay.images;
  if ((overlay.patches ?? []).length > 0) doc.patches = overlay.patches;
  return stringify(doc);
}

/** What Flux's generator writes into a directory without a kustomization: its manifests and nested kustomizations. */
export function generatedKustomization(resources: readonly string[]): string {
  return stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: [...resources] });
}
