// YAML read as the Go readers that apply manifests read it: kustomize's kyaml (go-yaml v3, what Flux and Argo CD
// build with) and sigs.k8s.io/yaml (go-yaml v2: kubectl, Flux's and Argo CD's appliers). Where the `yaml`
// package's default (YAML 1.2 core) differs and both Go readers agree, enbi follows them:
//   - `<<` merge keys (a map, or a list of maps: the first holding a key wins, keys written beside `<<` win);
//   - integers as Go's strconv.ParseInt(s, 0) reads them once underscores are dropped: `010` is 8, `0o17` 15,
//     `0x1F` 31, `0b101` 5, `1_000` 1000, `+0x1F` 31;
//   - an object's own metadata.annotations as written, as kustomize writes them: `v: 010` is the string "010",
//     `a: ~` is "~" (kustomize reads that map as text; everywhere else, its labels, pod templates and
//     nodeSelectors included, it types values like any other, and the API server then refuses a number where
//     a string belongs).
// Where they disagree enbi follows kustomize: `yes`/`no`/`on`/`off`/`y`/`n` stay strings (go-yaml v2 reads
// booleans, but every Flux path and Argo CD's kustomize go through kustomize, which keeps them strings).
// Also here: the bound on what a document expands to through aliases and merge keys, counted on the parsed
// tree before anything is built from it.
import {
  type Document,
  type DocumentOptions,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  type Node as YamlNode,
  type ParseOptions,
  parseDocument,
  Scalar,
  type SchemaOptions,
  type Tags,
  visit,
} from 'yaml';

/** A document may expand (through aliases and merge keys) to this much, counted as JSON would write it. */
export const MAX_EXPANDED_BYTES = 8 * 1024 * 1024;

export class ExpansionError extends Error {
  override name = 'ExpansionError';
}

const INT_TAG = 'tag:yaml.org,2002:int';

/** What go-yaml's resolver hands strconv.ParseInt(s, 0, 64) (underscores anywhere but first). */
const GO_INT =
  /^(?:[-+]_*)?(?:0_*[xX][_0-9a-fA-F]*[0-9a-fA-F][_0-9a-fA-F]*|0_*[oO][_0-7]*[0-7][_0-7]*|0_*[bB][_01]*[01][_01]*|[0-9][_0-9]*)$/;
const MAX_UINT64 = 2n ** 64n - 1n;

/** A plain scalar's integer value as go-yaml reads it, or undefined when it reads no integer there. */
export function goInteger(s: string): number | undefined {
  if (!GO_INT.test(s)) return undefined;
  const plain = s.replace(/_/g, '');
  const negative = plain.startsWith('-');
  const digits = plain.replace(/^[-+]/, '');
  const prefix = digits.slice(0, 2).toLowerCase();
  let value: bigint;
  if (prefix === '0x' || prefix === '0o' || prefix === '0b') value = BigInt(`0${prefix[1]}${digits.slice(2)}`);
  else if (/^0[0-7]+$/.test(digits)) value = BigInt(`0o${digits.slice(1)}`);
  // "09": not octal, so Go reads it as the float 9; any other run of digits is decimal.
  else value = BigInt(digits);
  // Past int64 (and, positive, uint64) a hexadecimal, octal or binary number is a string to Go; a decimal a float.
  const radixPrefixed = prefix === '0x' || prefix === '0o' || prefix === '0b' || /^0[0-7]+$/.test(digits);
  if (radixPrefixed && (negative ? value > 2n ** 63n : value > MAX_UINT64)) return undefined;
  return Number(negative ? -value : value);
}

const goIntTag = {
  identify: (value: unknown) => typeof value === 'number' && Number.isInteger(value),
  default: true,
  tag: INT_TAG,
  test: GO_INT,
  resolve: (s: string) => goInteger(s) ?? s,
};

/** The core schema with go-yaml's integers in place of YAML 1.2's three integer forms. */
function goTags(tags: Tags): Tags {
  const out: Tags = [];
  for (const t of tags) {
    const isInt = typeof t === 'object' && t.tag === INT_TAG;
    if (!isInt) out.push(t);
    else if (!out.includes(goIntTag)) out.push(goIntTag);
  }
  return out;
}

/** Options for parseDocument/parseAllDocuments: merge keys and go-yaml's integers. */
export const GO_YAML: ParseOptions & DocumentOptions & SchemaOptions = { merge: true, customTags: goTags };

export interface ToJsLimits {
  /** One anchor may be used this many times. */
  maxAliasCount: number;
  /** The document may expand to this many bytes (default MAX_EXPANDED_BYTES). */
  maxExpandedBytes?: number;
}

/** The document's value as the Go readers see it, refused (ExpansionError, ReferenceError) past the limits. */
export function goToJS(doc: Document, limits: ToJsLimits): unknown {
  const targets = aliasTargets(doc);
  checkExpansion(doc, limits.maxExpandedBytes ?? MAX_EXPANDED_BYTES, targets);
  annotationsAsWritten(doc, targets);
  return doc.toJS({ maxAliasCount: limits.maxAliasCount });
}

/** `parse()` as the Go readers read: the first error thrown, the value within the limits. */
export function parseGoYaml(text: string, limits: ToJsLimits): unknown {
  const doc = parseDocument(text, { ...GO_YAML, prettyErrors: false });
  if (doc.errors.length > 0) throw doc.errors[0]!;
  return goToJS(doc, limits);
}

const mib = (bytes: number) => `${+(bytes / 2 ** 20).toFixed(1)} MiB`;

/**
 * Throws ExpansionError when the document, with every alias and merge key replaced by what it refers to,
 * would exceed `limit` bytes (about what JSON would write). Linear: each node's size is counted once.
 */
export function checkExpansion(doc: Document, limit: number, target = aliasTargets(doc)): void {
  const sizes = new Map<unknown, number>();
  const open = new Set<unknown>();
  const tooLarge = () =>
    new ExpansionError(`expands to more than ${mib(limit)} through aliases or merge keys (limit ${mib(limit)})`);
  const size = (node: unknown): number => {
    if (isAlias(node)) {
      const to = target.get(node);
      return to === undefined ? 4 : size(to);
    }
    const known = sizes.get(node);
    if (known !== undefined) return known;
    let n = 4;
    if (isScalar(node)) n = (node.source ?? String(node.value)).length + 2;
    else if (isMap(node) || isSeq(node)) {
      if (open.has(node)) throw new ExpansionError(`an alias refers to the node that holds it: it never ends`);
      open.add(node);
      n = 2;
      for (const item of node.items) {
        n += isMap(node)
          ? size((item as { key: unknown }).key) + size((item as { value: unknown }).value) + 2
          : size(item) + 1;
        if (n > limit) throw tooLarge();
      }
      open.delete(node);
    }
    if (n > limit) throw tooLarge();
    sizes.set(node, n);
    return n;
  };
  size(doc.contents);
}

/** Each alias's node: the last node before it with that anchor (one pass, in document order). */
function aliasTargets(doc: Document): Map<unknown, YamlNode> {
  const anchors = new Map<string, YamlNode>();
  const target = new Map<unknown, YamlNode>();
  visit(doc, {
    Node(_, node) {
      if (isAlias(node)) {
        const to = anchors.get(node.source);
        if (to !== undefined) target.set(node, to);
      } else if (node.anchor !== undefined) anchors.set(node.anchor, node);
    },
  });
  return target;
}

const keyOf = (node: unknown): unknown =>
  node !== null && typeof node === 'object' && 'key' in node && isScalar(node.key) ? node.key.value : undefined;

/**
 * Whether `path` (the visitor's, ending at the map holding the pair) is an object's own metadata: the document's
 * (document, object, metadata pair, metadata map) or a List item's (…, items pair, items, item, metadata pair, …).
 */
function isObjectMetadata(path: readonly unknown[]): boolean {
  if (keyOf(path.at(-2)) !== 'metadata') return false;
  return path.length === 4 || (path.length === 7 && keyOf(path[2]) === 'items' && isSeq(path[3]));
}

/**
 * In an object's own metadata.annotations, plain scalars written directly (or through an alias) become the text
 * written, as kustomize writes them: `v: 010` is "010", not 8. Merged entries keep their type, as in kustomize
 * (and so do labels: kustomize types them).
 */
function annotationsAsWritten(doc: Document, targets: ReadonlyMap<unknown, YamlNode>): void {
  visit(doc, {
    Pair(_, pair, path) {
      const key = isScalar(pair.key) ? pair.key.value : undefined;
      if (key !== 'annotations' || !isMap(pair.value) || !isObjectMetadata(path)) return;
      for (const item of pair.value.items) {
        const value = isAlias(item.value) ? targets.get(item.value) : item.value;
        if (
          isScalar(value) &&
          value.type === Scalar.PLAIN &&
          typeof value.value !== 'string' &&
          value.source !== undefined
        )
          item.value = new Scalar(value.source);
      }
    },
  });
}
