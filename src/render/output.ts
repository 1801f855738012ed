// Objects from a render's output (kustomize or helm YAML), each remembering where it came from: the file of the
// source it was built from (kustomize's origin annotation, helm's "# Source:" comment) and the render that
// produced it. Objects that name no namespace get the one they would be applied to. Pure.
import { type Document, parseAllDocuments, parseDocument } from 'yaml';
import { GO_YAML, goToJS } from '../manifests/go-yaml.ts';
import type { Problem } from '../problems.ts';
import { substitute, substitutionDisabled } from './envsubst.ts';
import { asObj, asStr, type Obj } from './object-access.ts';
import { joinInside } from './paths.ts';

export interface RenderedObject {
  object: Obj;
  /** Source-relative file the object comes from, when known. */
  file?: string;
  /** Its line in that file, when the written object is found there (lines.ts); never for chart templates. */
  line?: number;
  /** "Kustomization flux-system/apps → apps/prod". */
  origin: string;
}

export const ORIGIN_ANNOTATION = 'config.kubernetes.io/origin';

export interface OutputContext {
  origin: string;
  defaultNamespace: string;
  /** The overlay directory (source-relative) kustomize's origin paths are relative to. */
  overlayDir?: string;
  /** When overlayDir is outside the copy: the copy's directory beside it (`tree/`), stripped from paths. */
  overlayTree?: string;
  /** The chart directory, for helm's "# Source: chart/templates/x.yaml" comments. */
  chartDir?: string;
  /** Flux postBuild.substitute variables, when the render has postBuild. */
  substitute?: Readonly<Record<string, string>>;
  /** Files by "Kind/name" from an earlier helm pass, for a helm output that went through an overlay. */
  filesByObject?: ReadonlyMap<string, string>;
}

export function objectsOfOutput(text: string, ctx: OutputContext): { objects: RenderedObject[]; problems: Problem[] } {
  const objects: RenderedObject[] = [];
  const problems: Problem[] = [];
  for (const chunk of text.split(/^---[ \t]*$/m)) {
    const docs = parseAllDocuments(chunk, { ...GO_YAML, prettyErrors: false });
    if (!Array.isArray(docs)) continue;
    for (const doc of docs) {
      if (doc.errors.length > 0 || doc.contents === null) {
        if (doc.errors.length > 0)
          problems.push({
            object: ctx.origin,
            message: `rendered output is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`,
          });
        continue;
      }
      const fail = (message: string) => problems.push({ object: ctx.origin, message });
      let object = toObject(doc, fail);
      if (object === undefined || asStr(object.kind) === undefined) continue;
      if (ctx.substitute !== undefined && !substitutionDisabled(object)) {
        // Flux substitutes in the object's YAML text, so a value can break it: then that object is a problem.
        const substituted = parseDocument(substitute(chunk, ctx.substitute), { ...GO_YAML, prettyErrors: false });
        if (substituted.errors.length > 0) {
          fail(
            `${String(object.kind)} ${String(asObj(object.metadata)?.name)}: not valid YAML after postBuild.substitute: ${substituted.errors[0]!.message.split('\n')[0]}`,
          );
          continue;
        }
        object = toObject(substituted, fail);
        if (object === undefined) continue;
      }
      const file = fileOf(object, chunk, ctx);
      // A template may emit a List: its items are what gets applied.
      const items =
        String(object.kind).endsWith('List') && Array.isArray(object.items)
          ? object.items.flatMap((i): Obj[] => {
              const o = asObj(i);
              return o === undefined ? [] : [o];
            })
          : [object];
      for (const item of items) {
        defaultNamespace(item, ctx.defaultNamespace);
        objects.push({ object: item, origin: ctx.origin, ...(file !== undefined ? { file } : {}) });
      }
    }
  }
  return { objects, problems };
}

/**
 * A document as a plain object, read as the Go appliers read it; aliases and expansion are capped (a template
 * can emit an alias bomb), a failure is a problem.
 */
function toObject(doc: Document, fail: (message: string) => void): Obj | undefined {
  try {
    return asObj(goToJS(doc, { maxAliasCount: 100 }));
  } catch (err) {
    fail(`rendered output: ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

function fileOf(object: Obj, chunk: string, ctx: OutputContext): string | undefined {
  const metadata = asObj(object.metadata);
  const annotations = asObj(metadata?.annotations);
  const origin = asStr(annotations?.[ORIGIN_ANNOTATION]);
  if (annotations !== undefined && origin !== undefined) {
    // enbi asked for the annotation; the manifest did not carry it: remove it again.
    delete annotations[ORIGIN_ANNOTATION];
    if (Object.keys(annotations).length === 0) delete metadata!.annotations;
  }
  const source = /^# Source: (\S+)/m.exec(chunk)?.[1];
  if (source !== undefined && ctx.chartDir !== undefined) {
    const rest = source.slice(source.indexOf('/') + 1);
    return joinInside(ctx.chartDir, rest);
  }
  const byObject = ctx.filesByObject?.get(`${String(object.kind)}/${String(metadata?.name)}`);
  if (byObject !== undefined) return byObject;
  const path = origin !== undefined ? /^path: (.+)$/m.exec(origin)?.[1]?.trim() : undefined;
  if (path !== undefined && ctx.overlayDir !== undefined) {
    const joined = joinInside(ctx.overlayDir, path);
    if (ctx.overlayTree === undefined) return joined;
    return joined?.startsWith(ctx.overlayTree) === true ? joined.slice(ctx.overlayTree.length) : undefined;
  }
  return undefined;
}

function defaultNamespace(object: Obj, namespace: string): void {
  const metadata = asObj(object.metadata) ?? {};
  if (asStr(metadata.namespace) === undefined) object.metadata = { ...metadata, namespace };
}

/** Where objects of a helm output come from, by "Kind/name", before an overlay drops helm's comments. */
export function helmFilesByObject(text: string, chartDir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const { object, file } of objectsOfOutput(text, { origin: '', defaultNamespace: 'default', chartDir }).objects) {
    if (file !== undefined) files.set(`${String(object.kind)}/${String(asObj(object.metadata)?.name)}`, file);
  }
  return files;
}
