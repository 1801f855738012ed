// Parses manifest files into Kubernetes objects with their file and line. A malformed document is
// reported and skipped; the rest of the file and every other file still count.
import { LineCounter, parseAllDocuments, isMap, isSeq, type Node as YamlNode } from 'yaml';
import type { Problem } from '../problems.ts';

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

export interface ScanResult {
  objects: ManifestObject[];
  problems: Problem[];
}

export const MANIFEST_EXTENSIONS = ['.yaml', '.yml', '.json'];

export function isManifestPath(path: string): boolean {
  return MANIFEST_EXTENSIONS.some((ext) => path.endsWith(ext)) && !path.split('/').some((p) => p.startsWith('.'));
}

export function scanManifests(files: readonly ManifestFile[]): ScanResult {
  const result: ScanResult = { objects: [], problems: [] };
  for (const file of files) scanFile(file, result);
  return result;
}

function scanFile(file: ManifestFile, result: ScanResult): void {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(file.text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  // parseAllDocuments returns an EmptyStream (not an array) for a file with no documents.
  if (!Array.isArray(docs)) return;
  const lineOf = (offset: number | undefined) => (offset === undefined ? 1 : lineCounter.linePos(offset).line);
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        result.problems.push({ file: file.path, line: lineOf(err.pos[0]), message: `malformed YAML: ${firstLine(err.message)}` });
      }
      continue;
    }
    const root = doc.contents;
    if (root === null) continue;
    const line = lineOf(root.range?.[0]);
    if (!isMap(root)) {
      result.problems.push({ file: file.path, line, message: 'document is not a Kubernetes object (expected a mapping)' });
      continue;
    }
    const object = doc.toJS({ maxAliasCount: 100 }) as Record<string, unknown>;
    if (typeof object.kind === 'string' && object.kind.endsWith('List') && Array.isArray(object.items)) {
      pushListItems(file.path, root.get('items', true) as YamlNode | undefined, object.items, lineOf, result);
    } else {
      result.objects.push({ file: file.path, line, object });
    }
  }
}

function pushListItems(
  file: string,
  itemsNode: YamlNode | undefined,
  items: unknown[],
  lineOf: (offset: number | undefined) => number,
  result: ScanResult,
): void {
  items.forEach((item, i) => {
    const node = isSeq(itemsNode) ? (itemsNode.items[i] as YamlNode | undefined) : undefined;
    const line = lineOf(node?.range?.[0]);
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      result.problems.push({ file, line, message: `List item ${i} is not a Kubernetes object` });
    } else result.objects.push({ file, line, object: item as Record<string, unknown> });
  });
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}
