// Small readers over untyped Kubernetes objects, for the Flux and Argo CD parsers.
export type Obj = Record<string, unknown>;

export const asObj = (v: unknown): Obj | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined;
export const asStr = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
export const asArr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export function groupOf(object: Obj): string {
  const apiVersion = asStr(object.apiVersion) ?? '';
  return apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
}

export function metaOf(object: Obj): { name: string; namespace: string } {
  const m = asObj(object.metadata);
  return { name: asStr(m?.name) ?? '?', namespace: asStr(m?.namespace) ?? 'default' };
}

/** Entries of a string map (postBuild.substitute), keeping only string values. */
export function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(asObj(v) ?? {}))
    if (typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean') out[k] = String(x);
  return out;
}

/** Where an object was found, for problems: line 0 means produced by a render, so no line. */
export function whereOf(file: string, line: number): { file: string; line?: number } {
  return line > 0 ? { file, line } : { file };
}
