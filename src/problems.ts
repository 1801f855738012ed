// A problem with one input (a file, a workload, a node), reported where it was found; it never stops the rest.
export interface Problem {
  file?: string;
  line?: number;
  /** `Kind namespace/name` of the object concerned, when there is one. */
  object?: string;
  message: string;
  /** What rendered the object (a Flux/Argo CD object, an overlay, a chart), when it came from kustomize or helm. */
  origin?: string;
}

export function formatProblem(p: Problem): string {
  const where = p.file !== undefined ? `${p.file}${p.line !== undefined ? `:${p.line}` : ''}` : '';
  const message = p.origin !== undefined ? `${p.message} (rendered by ${p.origin})` : p.message;
  return [where, p.object, message].filter((s) => s !== undefined && s !== '').join(': ');
}
