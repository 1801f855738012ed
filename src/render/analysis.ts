// Rendered objects as workloads for the analysis: the same extraction as plain manifests, each workload
// remembering its origin, and its file and line where the written object was traced (lines.ts). Pure.
import type { ManifestObject } from '../manifests/scan.ts';
import { extractWorkloads, type Workload } from '../manifests/workloads.ts';
import type { Problem } from '../problems.ts';
import type { RenderedSource } from './index.ts';

export type RenderedInput = Pick<RenderedSource, 'objects' | 'consumed' | 'problems' | 'warnings' | 'stats' | 'roots'>;

export function renderedWorkloads(rendered: RenderedInput): { workloads: Workload[]; problems: Problem[] } {
  const workloads: Workload[] = [];
  const problems: Problem[] = [];
  for (const r of rendered.objects) {
    const asManifest: ManifestObject = { file: r.file ?? r.origin, line: r.line ?? 0, object: r.object };
    const extracted = extractWorkloads([asManifest]);
    for (const w of extracted.workloads) {
      if (r.line === undefined) delete w.line;
      if (r.file === undefined) delete w.file;
      workloads.push({ ...w, origin: r.origin });
    }
    problems.push(
      ...extracted.problems.map(({ line, ...p }) => ({
        ...p,
        ...(r.line !== undefined ? { line } : {}),
        origin: r.origin,
      })),
    );
  }
  return { workloads, problems };
}
