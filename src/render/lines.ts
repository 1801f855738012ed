// The line of a rendered object in the file it was built from, so that problems about it (and `enbi diff
// --list`) say file:line as for a plain manifest. A render may rename an object (namePrefix/nameSuffix) but
// keeps its kind: the written object is the one of that kind whose name is the rendered name, else the one
// whose name the rendered name contains (the longest, when only one is that long), else the file's only
// object of that kind. Anything less certain gets no line. Pure.
import { scanFile } from '../manifests/scan.ts';
import { asObj, asStr } from './object-access.ts';
import type { RenderedObject } from './output.ts';

interface Written {
  kind: string;
  name: string;
  line: number;
}

/**
 * `objects` with `line` set where the written object is found; `read` gives a source file's text (undefined
 * when it cannot be read). Each file is read and parsed once.
 */
export async function withSourceLines(
  objects: readonly RenderedObject[],
  read: (file: string) => Promise<string | undefined>,
): Promise<RenderedObject[]> {
  const byFile = new Map<string, Written[]>();
  for (const o of objects) {
    if (o.file === undefined || o.line !== undefined || byFile.has(o.file)) continue;
    const text = await read(o.file).catch(() => undefined);
    byFile.set(o.file, text === undefined ? [] : writtenObjects(o.file, text));
  }
  return objects.map((o) => {
    if (o.file === undefined || o.line !== undefined) return o;
    const line = lineOf(o.object, byFile.get(o.file) ?? []);
    return line === undefined ? o : { ...o, line };
  });
}

export function writtenObjects(file: string, text: string): Written[] {
  return scanFile({ path: file, text }).objects.flatMap(({ line, object }) => {
    const kind = asStr(object.kind);
    const metadata = asObj(object.metadata);
    const name = asStr(metadata?.name) ?? asStr(metadata?.generateName) ?? '';
    return kind === undefined ? [] : [{ kind, name, line }];
  });
}

export function lineOf(object: Record<string, unknown>, written: readonly Written[]): number | undefined {
  const kind = asStr(object.kind);
  const metadata = asObj(object.metadata);
  const name = asStr(metadata?.name) ?? asStr(metadata?.generateName) ?? '';
  const sameKind = written.filter((w) => w.kind === kind);
  const exact = sameKind.filter((w) => w.name === name);
  if (exact.length === 1) return exact[0]!.line;
  if (exact.length > 1) return undefined;
  const within = sameKind.filter((w) => w.name !== '' && name.includes(w.name));
  const longest = Math.max(0, ...within.map((w) => w.name.length));
  const best = within.filter((w) => w.name.length === longest);
  if (best.length === 1) return best[0]!.line;
  if (within.length === 0 && sameKind.length === 1) return sameKind[0]!.line;
  return undefined;
}
