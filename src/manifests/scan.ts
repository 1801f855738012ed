// Parses manifest files into Kubernetes objects with their file and line. Documents that are not Kubernetes
// objects (Helm values, CI configs, JSON arrays, empty documents) are counted and skipped without a problem;
// a malformed Kubernetes document (or one carrying enbi annotations) is reported and skipped, and the rest of
// the file and every other file still count. Most documents are read by a fast reader of plain block YAML;
// the rest by the `yaml` package, with duplicate keys checked in one linear pass (its own check is quadratic).
// Both read YAML as the Go readers that apply manifests do (go-yaml.ts: merge keys, Go's integers).
import {
  type Document,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseAllDocuments,
  parseDocument,
  visit,
  type Node as YamlNode,
} from 'yaml';
import { PREFIX as ENBI_PREFIX } from '../contract/keys.ts';
import type { Problem } from '../problems.ts';
import { type DocumentText, headerOf, splitDocuments } from './documents.ts';
import { fastParseDocument, NOT_SIMPLE } from './fast-yaml.ts';
import { GO_YAML, goToJS } from './go-yaml.ts';
import { WORKLOAD_KINDS } from './workloads.ts';

export interface ManifestFile {
  /** Path relative to the source root, with forward slashes. */
  path: string;
  text: string;
}

export interface ManifestObject {
  file: string;
  line: number;
  object: Record<string, unknown>;
}

export interface ScanCounts {
  /** Documents with content. */
  documents: number;
  /** Documents that are not Kubernetes objects (or are templates), skipped without a problem. */
  skipped: number;
}

export interface ScanResult extends ScanCounts {
  objects: ManifestObject[];
  problems: Problem[];
}

export const MANIFEST_EXTENSIONS = ['.yaml', '.yml', '.json'];

/** One anchor may be used this many times (kubectl takes hundreds); exponential expansion stays refused. */
export const MAX_ALIAS_COUNT = 10_000;
/** Documents of a kind enbi ignores larger than this are not parsed past their apiVersion and kind. */
export const SKIP_IGNORED_KIND_BYTES = 1024 * 1024;
/** Larger documents that would need the (slower) YAML library are refused: the API server takes 1.5 MiB. */
export const MAX_SLOW_DOCUMENT_BYTES = 8 * 1024 * 1024;

export function isManifestPath(path: string): boolean {
  return MANIFEST_EXTENSIONS.some((ext) => path.endsWith(ext)) && !path.split('/').some((p) => p.startsWith('.'));
}

export function scanManifests(files: readonly ManifestFile[]): ScanResult {
  const result: ScanResult = { objects: [], problems: [], documents: 0, skipped: 0 };
  for (const file of files) {
    const one = scanFile(file);
    for (const o of one.objects) result.objects.push(o);
    for (const p of one.problems) result.problems.push(p);
    result.documents += one.documents;
    result.skipped += one.skipped;
  }
  return result;
}

export function scanFile(file: ManifestFile): ScanResult {
  const result: ScanResult = { objects: [], problems: [], documents: 0, skipped: 0 };
  const docs = splitDocuments(file.text) ?? [{ text: file.text, line: 1, inlineStart: true, wholeStream: true }];
  for (const doc of docs) scanDocument(file.path, doc, result);
  return result;
}

const IGNORED_KIND = /^[A-Z][A-Za-z0-9]*$/;

function scanDocument(file: string, doc: DocumentText & { wholeStream?: boolean }, result: ScanResult): void {
  if (doc.text.length > SKIP_IGNORED_KIND_BYTES) {
    const { apiVersion, kind } = headerOf(doc.text);
    if (apiVersion !== undefined && kind !== undefined && IGNORED_KIND.test(kind) && !isWorkloadOrList(kind)) {
      result.documents++;
      return;
    }
  }
  const fast = doc.inlineStart ? NOT_SIMPLE : fastParseDocument(doc.text);
  if (fast !== NOT_SIMPLE)
    return classify(
      file,
      firstContentLine(doc.text, doc.line),
      fast,
      doc.text,
      result,
      listItemLines(doc.text, doc.line),
    );
  const matters = mattersToEnbi(doc.text);
  if (doc.text.length > MAX_SLOW_DOCUMENT_BYTES) {
    result.documents++;
    if (matters)
      result.problems.push({
        file,
        line: doc.line,
        message: `document of ${mib(doc.text.length)} is too large to read (limit ${mib(MAX_SLOW_DOCUMENT_BYTES)} for YAML beyond plain block style)`,
      });
    else result.skipped++;
    return;
  }
  let slow: ReturnType<typeof slowParse>;
  try {
    slow = slowParse(doc.text, doc.wholeStream === true);
  } catch (err) {
    // The library gave up (nesting that exhausts the stack): this document only.
    result.documents++;
    if (matters)
      result.problems.push({ file, line: doc.line, message: `not read: ${firstLine((err as Error).message)}` });
    else result.skipped++;
    return;
  }
  const lineOf = (offset: number | undefined) =>
    doc.line - 1 + (offset === undefined ? 1 : slow.lineCounter.linePos(offset).line);
  for (const parsed of slow.docs) {
    const errors = [...parsed.errors, ...duplicateKeys(parsed)];
    if (errors.length > 0) {
      result.documents++;
      // A Helm template or a broken values file is not enbi's to judge; a broken Kubernetes document is.
      if (!matters || isTemplate(doc.text)) result.skipped++;
      else
        for (const err of errors)
          result.problems.push({
            file,
            line: lineOf(err.pos[0]),
            message: `malformed YAML: ${firstLine(err.message)}`,
          });
      continue;
    }
    if (parsed.contents === null) continue;
    let value: unknown;
    try {
      value = goToJS(parsed, { maxAliasCount: MAX_ALIAS_COUNT });
    } catch (err) {
      // Too many aliases, too large an expansion (a "billion laughs") or another limit: this document only.
      result.documents++;
      if (matters)
        result.problems.push({
          file,
          line: lineOf(parsed.contents.range?.[0]),
          message: `not read: ${firstLine((err as Error).message)}`,
        });
      else result.skipped++;
      continue;
    }
    const items = isMap(parsed.contents) ? parsed.contents.get('items', true) : undefined;
    const itemLine = (i: number) =>
      lineOf(isSeq(items) ? (items.items[i] as YamlNode | undefined)?.range?.[0] : parsed.contents?.range?.[0]);
    classify(file, lineOf(parsed.contents.range?.[0]), value, doc.text, result, itemLine);
  }
}

function slowParse(text: string, wholeStream: boolean): { docs: Document.Parsed[]; lineCounter: LineCounter } {
  const lineCounter = new LineCounter();
  const options = { ...GO_YAML, lineCounter, prettyErrors: false, uniqueKeys: false, logLevel: 'silent' } as const;
  if (!wholeStream) return { docs: [parseDocument(text, options)], lineCounter };
  // Only streams with directives ("%YAML") come here: rare, so the library's own splitting is fine.
  const docs = parseAllDocuments(text, options);
  return { docs: Array.isArray(docs) ? docs : [], lineCounter };
}

function classify(
  file: string,
  line: number,
  value: unknown,
  text: string,
  result: ScanResult,
  itemLine: (index: number) => number,
): void {
  if (value === null || value === undefined) return;
  result.documents++;
  const object = asObject(value);
  if (object === undefined || typeof object.apiVersion !== 'string' || typeof object.kind !== 'string') {
    if (text.includes(ENBI_PREFIX) && !isTemplate(text)) {
      result.problems.push({
        file,
        line,
        message: 'document carries enbi annotations but is not a Kubernetes object (it needs apiVersion and kind)',
      });
    } else result.skipped++;
    return;
  }
  if (object.kind.endsWith('List') && Array.isArray(object.items)) {
    object.items.forEach((item, i) => {
      const o = asObject(item);
      if (o === undefined)
        result.problems.push({ file, line: itemLine(i), message: `List item ${i} is not a Kubernetes object` });
      else result.objects.push({ file, line: itemLine(i), object: o });
    });
    return;
  }
  result.objects.push({ file, line, object });
}

/** The line of a document's first content (past leading blank and comment lines), as the library reports it. */
function firstContentLine(text: string, docLine: number): number {
  let line = docLine;
  for (let pos = 0; pos < text.length; line++) {
    const nl = text.indexOf('\n', pos);
    const l = text.slice(pos, nl < 0 ? text.length : nl).trim();
    if (l !== '' && !l.startsWith('#')) return line;
    if (nl < 0) break;
    pos = nl + 1;
  }
  return docLine;
}

/** Lines of the items of a List read by the fast reader: each "- " at the items' indentation, found in one pass. */
function listItemLines(text: string, docLine: number): (index: number) => number {
  let lines: number[] | undefined;
  return (index) => {
    lines ??= itemLinesOf(text, docLine);
    return lines[index] ?? docLine;
  };
}

function itemLinesOf(text: string, docLine: number): number[] {
  const rows = text.split('\n');
  const at = rows.findIndex((l) => /^items:\s*$/.test(l));
  const out: number[] = [];
  let indent = -1;
  for (let i = at + 1; at >= 0 && i < rows.length; i++) {
    const m = /^( *)-(?: |$)/.exec(rows[i]!);
    if (m === null) continue;
    if (indent < 0) indent = m[1]!.length;
    if (m[1]!.length === indent) out.push(docLine + i);
  }
  return out;
}

/** Duplicate keys in any mapping of the document, found with one set per mapping (linear). */
function duplicateKeys(doc: Document.Parsed): { pos: [number, number]; message: string }[] {
  const found: { pos: [number, number]; message: string }[] = [];
  visit(doc, {
    Map(_, map) {
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        const key = isScalar(pair.key) ? pair.key.value : pair.key;
        if (seen.has(key)) {
          const pos = (pair.key as YamlNode | null)?.range?.[0] ?? 0;
          found.push({
            pos: [pos, pos],
            message: `Map keys must be unique: duplicate key ${JSON.stringify(String(key))}`,
          });
        }
        seen.add(key);
      }
    },
  });
  return found;
}

/** Whether a document enbi could not read would have mattered: a Kubernetes object, or one with enbi annotations. */
function mattersToEnbi(text: string): boolean {
  const header = headerOf(text);
  const json = /"apiVersion"\s*:/.test(text) && /"kind"\s*:/.test(text);
  return (
    (header.apiVersion !== undefined && header.kind !== undefined) ||
    json ||
    /^["']?(?:apiVersion|kind)["']?\s*:/m.test(text) ||
    text.includes(ENBI_PREFIX)
  );
}

/** Go template actions: a Helm or other template, not a manifest until rendered. */
function isTemplate(text: string): boolean {
  return text.includes('{{');
}

function isWorkloadOrList(kind: string): boolean {
  return (WORKLOAD_KINDS as readonly string[]).includes(kind) || kind.endsWith('List');
}

function asObject(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}
