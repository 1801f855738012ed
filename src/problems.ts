// A problem with one input (a file, a workload, a node), reported where it was found; it never stops the rest.
export interface Problem {
  file?: string;
  line?: number;
  /** `Kind namespace/name` of the object concerned, when there is one. */
  object?: string;
  message: string;
}

export function formatProblem(p: Problem): string {
  const where = p.file !== undefined ? `${p.file}${p.line !== undefined ? `:${p.line}` : ''}` : '';
  return [where, p.object, p.message].filter((s) => s !== undefined && s !== '').join(': ');
}
