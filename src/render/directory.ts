// Argo CD's directory mode, for an Application whose path holds neither a kustomization nor a Chart.yaml (or
// that sets spec.source.directory): the repo-server reads every *.yaml, *.yml and *.json file of the directory
// (below it with directory.recurse) whose path relative to it matches directory.include and not
// directory.exclude, as plain objects: no kustomize, so generateName and hook Jobs stay as written. It runs
// *.jsonnet files too, which enbi does not: they are skipped with a warning. The file choice is pure (planned);
// reading the files is the render (run-render.ts).
import { parseAllDocuments } from 'yaml';
import { GO_YAML } from '../manifests/go-yaml.ts';
import type { Problem } from '../problems.ts';
import { objectsOfOutput, type RenderedObject } from './output.ts';
import { lineOf, writtenObjects } from './lines.ts';
import { isUnder } from './paths.ts';
import type { DirectoryRequest } from './request.ts';
import { filesBelow, filesIn, type TreeIndex } from './tree-index.ts';

/** The files Argo CD's directory mode reads (manifests) and runs (jsonnet), in path order. */
export function directoryFiles(tree: TreeIndex, r: DirectoryRequest): { manifests: string[]; jsonnet: string[] } {
  const include = r.include !== undefined && r.include !== '' ? argoGlob(r.include) : undefined;
  const exclude = r.exclude !== undefined && r.exclude !== '' ? argoGlob(r.exclude) : undefined;
  const manifests: string[] = [];
  const jsonnet: string[] = [];
  for (const path of r.recurse ? filesBelow(tree, r.dir) : filesIn(tree, r.dir)) {
    if (!isUnder(path, r.dir) || !/\.(ya?ml|json|jsonnet)$/.test(path)) continue;
    const rel = r.dir === '' ? path : path.slice(r.dir.length + 1);
    if (exclude?.(rel) === true || include?.(rel) === false) continue;
    (path.endsWith('.jsonnet') ? jsonnet : manifests).push(path);
  }
  return { manifests, jsonnet };
}

/**
 * A glob as Argo CD matches directory.include/exclude (gobwas/glob without separators): `*` and `**` match
 * any characters, `/` included; `?` one character; `[a-z]`, `[!a-z]` classes; `{a,b}` alternatives.
 */
export function argoGlob(pattern: string): (path: string) => boolean {
  let re = '';
  let depth = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) re += escape(pattern[++i]!);
    else if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '{') {
      re += '(?:';
      depth++;
    } else if (c === '}' && depth > 0) {
      re += ')';
      depth--;
    } else if (c === ',' && depth > 0) re += '|';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        let body = pattern.slice(i + 1, end);
        const negated = body.startsWith('!');
        if (negated) body = body.slice(1);
        re += `[${negated ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
        i = end;
      }
    } else re += escape(c);
  }
  if (depth > 0) return () => false; // Argo CD logs a pattern that does not compile and matches nothing
  const compiled = new RegExp(`^${re}$`, 's');
  return (path) => compiled.test(path);
}

function escape(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * The objects of one file as Argo CD's directory mode reads them: a JSON file is one object; a YAML file's
 * documents are objects. A file that does not parse is skipped when it does not look like a manifest (Argo CD
 * ignores unrelated YAML) and is a problem when it does.
 */
export function objectsOfDirectoryFile(
  path: string,
  text: string,
  ctx: { origin: string; defaultNamespace: string },
): { objects: RenderedObject[]; problems: Problem[] } {
  const fail = (why: string) => ({ objects: [], problems: [{ file: path, object: ctx.origin, message: why }] });
  if (path.endsWith('.json')) {
    try {
      JSON.parse(text);
    } catch (err) {
      return fail(
        `not read: ${(err as Error).message.split('\n')[0]} (Argo CD reads one object per JSON file and fails the app)`,
      );
    }
  } else {
    const docs = parseAllDocuments(text, { ...GO_YAML, prettyErrors: false });
    const broken = Array.isArray(docs) ? docs.find((d) => d.errors.length > 0) : undefined;
    if (broken !== undefined) {
      const looksLikeManifest = ['apiVersion:', 'kind:', 'metadata:'].every((k) => text.includes(k));
      if (!looksLikeManifest) return { objects: [], problems: [] };
      return fail(`not valid YAML (Argo CD fails the app): ${broken.errors[0]!.message.split('\n')[0]}`);
    }
  }
  const read = objectsOfOutput(text, ctx);
  const written = writtenObjects(path, text);
  return {
    objects: read.objects.map((o) => {
      const line = lineOf(o.object, written);
      return { ...o, file: path, ...(line !== undefined ? { line } : {}) };
    }),
    problems: read.problems.map((p) => ({ file: path, ...p })),
  };
}
