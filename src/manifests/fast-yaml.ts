// A fast reader for the plain block YAML that manifests are almost always written in (indented mappings and
// sequences, one-line scalars, quoted strings, one-line flow collections, literal and folded block scalars).
// It returns exactly what the library path (the `yaml` package read as go-yaml.ts says) returns for such a
// document, about ten times faster, and gives up (NOT_SIMPLE) on anything else — anchors, merge keys, tags,
// multi-line plain or quoted scalars, duplicate keys, odd indentation, a number or boolean in an object's own
// annotations, which kustomize keeps as text — so the caller parses that document with the `yaml`
// package, which reports errors.

import { goInteger } from './go-yaml.ts';

export const NOT_SIMPLE: unique symbol = Symbol('not simple YAML');

class Unsupported extends Error {}
const bail = (): never => {
  throw new Unsupported();
};

/** The document's value, or NOT_SIMPLE when the text uses YAML this reader does not handle. */
export function fastParseDocument(text: string): unknown {
  try {
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop(); // the newline ending the last line starts no line of its own
    const reader = new Reader(lines);
    const first = reader.peek();
    if (first < 0) return null;
    if (first !== 0) bail();
    const value = reader.nodeAt(0, -1);
    if (reader.peek() >= 0) bail();
    // The library path keeps such values as written ("010", not 8): it alone knows what was written.
    if (hasTypedStringMapValue(value)) return NOT_SIMPLE;
    return value;
  } catch (err) {
    // Nesting deep enough to exhaust the stack is the library's to judge (and report) too.
    if (err instanceof Unsupported || err instanceof RangeError) return NOT_SIMPLE;
    throw err;
  }
}

type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined;
const typedValue = (map: unknown) => Object.values(asObj(map) ?? {}).some((v) => v === null || typeof v !== 'string');

const typedMetadata = (o: Obj | undefined) => {
  const metadata = asObj(o?.metadata);
  return typedValue(metadata?.annotations);
};

/** A non-string value in the annotations of the document's object (or of a List's items). */
function hasTypedStringMapValue(value: unknown): boolean {
  const o = asObj(value);
  return typedMetadata(o) || (Array.isArray(o?.items) && o.items.some((i) => typedMetadata(asObj(i))));
}

class Reader {
  private row = 0;
  /** After a sequence dash, the rest of the row is read as a line of its own starting at this column. */
  private col = -1;
  private readonly lines: string[];
  // The last answer of peek() (indentation, content), valid while row and col stay where they were.
  private peekedRow = -1;
  private peekedCol = -1;
  private peekedIndent = -1;
  /** The content of the line peek() found. */
  content = '';

  constructor(lines: string[]) {
    this.lines = lines;
  }

  /** Indentation of the next line with content (blank and comment lines skipped), -1 at the end; see `content`. */
  peek(): number {
    if (this.peekedRow === this.row && this.peekedCol === this.col) return this.peekedIndent;
    this.peekedIndent = this.scan();
    this.peekedRow = this.row;
    this.peekedCol = this.col;
    return this.peekedIndent;
  }

  private scan(): number {
    while (this.row < this.lines.length) {
      const raw = this.lineText(this.row);
      const start = this.col >= 0 ? this.col : leadingSpaces(raw);
      const c = raw.charCodeAt(start);
      if (
        start >= raw.length ||
        c === 0x23 /* # */ ||
        ((c === 0x09 || c === 0x0d || c === 0x20) && /^\s*$/.test(raw.slice(start)))
      ) {
        this.row++;
        this.col = -1;
        continue;
      }
      if (c === 0x09) bail();
      this.content = start === 0 ? raw : raw.slice(start);
      return start;
    }
    return -1;
  }

  private lineText(row: number): string {
    const raw = this.lines[row]!;
    return raw.endsWith('\r') ? raw.slice(0, -1) : raw;
  }

  private nextRow(): void {
    this.row++;
    this.col = -1;
  }

  /** The block node whose first line is the next line, at `indent`, inside a collection at `parent`. */
  nodeAt(indent: number, parent: number): unknown {
    this.peek();
    const content = this.content;
    if (isDash(content)) return this.sequence(indent);
    if (keyOf(content) !== undefined) return this.mapping(indent);
    // A scalar on a line of its own: only as a sequence item (after "- ") or a whole document.
    const value = this.inlineValue(content, parent);
    if (parent >= 0 && this.peek() > parent) bail();
    return value;
  }

  /** A node below a key or a dash at `parent`: more indented, or null when nothing is. */
  private childOf(parent: number): unknown {
    const next = this.peek();
    if (next < 0 || next <= parent) return null;
    return this.nodeAt(next, parent);
  }

  private mapping(indent: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    while (this.peek() === indent) {
      const key = keyOf(this.content);
      if (key === undefined) bail();
      const { name, rest } = key!;
      if (Object.hasOwn(out, name) || name === '__proto__' || name === '<<') bail();
      if (rest === '') {
        this.nextRow();
        // "key:" then "- item" at the key's own indentation is a sequence too.
        out[name] = this.peek() === indent && isDash(this.content) ? this.sequence(indent) : this.childOf(indent);
      } else {
        out[name] = this.inlineValue(rest, indent);
        if (this.peek() > indent) bail(); // a continuation line: multi-line scalar
      }
    }
    if (this.peek() > indent) bail();
    return out;
  }

  private sequence(indent: number): unknown[] {
    const out: unknown[] = [];
    while (this.peek() === indent && isDash(this.content)) {
      const rest = this.content.slice(1);
      const skip = leadingSpaces(rest);
      if (rest.slice(skip) === '' || rest.slice(skip).startsWith('#')) {
        this.nextRow();
        out.push(this.childOf(indent));
      } else {
        this.col = indent + 1 + skip;
        out.push(this.nodeAt(this.col, indent));
      }
    }
    if (this.peek() > indent) bail();
    return out;
  }

  /** The value written after "key: " or "- " (or alone), consuming its line (and a block scalar's lines). */
  private inlineValue(text: string, parent: number): unknown {
    const c = text[0]!;
    if (c === '|' || c === '>') return this.blockScalar(text, parent);
    this.nextRow();
    if (c === '"' || c === "'") {
      const { value, end } = c === '"' ? doubleQuoted(text, 0) : singleQuoted(text, 0);
      expectEnd(text, end);
      return value;
    }
    if (c === '[' || c === '{') {
      const flow = new Flow(text);
      const value = flow.value();
      expectEnd(text, flow.pos);
      return value;
    }
    return plainScalar(stripComment(text));
  }

  private blockScalar(header: string, parent: number): string {
    const m = /^([|>])([-+]?)(\s+#.*|\s*)$/.exec(header);
    if (m === null) bail();
    const [, style, chomp] = m!;
    this.nextRow();
    const body: string[] = [];
    let indent = -1;
    let blankSpaces = 0;
    while (this.row < this.lines.length) {
      const raw = this.lineText(this.row);
      const spaces = leadingSpaces(raw);
      if (spaces === raw.length) {
        if (indent >= 0 && spaces > indent) bail(); // trailing spaces kept in content: leave it to the library
        blankSpaces = Math.max(blankSpaces, spaces);
        body.push('');
        this.row++;
        continue;
      }
      if (indent < 0) {
        if (spaces <= parent) break;
        indent = spaces;
        // Leading blank lines longer than the first content line are an error for the library.
        if (blankSpaces > indent) bail();
      }
      if (spaces < indent) {
        if (spaces > parent) bail();
        break;
      }
      if (raw[spaces] === '\t') bail();
      body.push(raw.slice(indent));
      this.row++;
    }
    this.col = -1;
    // Trailing empty lines belong to chomping, not content.
    let end = body.length;
    while (end > 0 && body[end - 1] === '') end--;
    const lines = body.slice(0, end);
    if (lines.length === 0) return chomp === '+' ? bail() : '';
    const text = style === '|' ? lines.join('\n') : fold(lines);
    if (chomp === '-') return text;
    if (chomp === '+') return `${text}\n${'\n'.repeat(body.length - end)}`;
    return `${text}\n`;
  }
}

/** Folded (">") content: single line breaks become spaces; blank lines stay; more-indented lines are left to the library. */
function fold(lines: string[]): string {
  if (lines.some((l) => l.startsWith(' ') || l.startsWith('\t'))) bail();
  // A line break between two lines of text is a space; each blank line is one newline.
  let out = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') out += '\n';
    else out += (i > 0 && lines[i - 1] !== '' ? ' ' : '') + line;
  }
  return out;
}

function leadingSpaces(s: string): number {
  let i = 0;
  while (i < s.length && s.charCodeAt(i) === 32) i++;
  return i;
}

function isDash(content: string): boolean {
  return content === '-' || content.startsWith('- ') || content.startsWith('-\t');
}

const KEY_START_INDICATORS = '-?:,[]{}#&*!|>\'"%@`';

/** "key: rest" → the key (as toJS gives it: always a string here) and what follows the colon. */
let lastKeyLine: string | undefined;
let lastKey: { name: string; rest: string } | undefined;

function keyOf(content: string): { name: string; rest: string } | undefined {
  // nodeAt() and mapping() ask about the same line one after the other.
  if (content === lastKeyLine) return lastKey;
  lastKeyLine = undefined;
  lastKey = readKey(content);
  lastKeyLine = content;
  return lastKey;
}

function readKey(content: string): { name: string; rest: string } | undefined {
  let name: string;
  let after: number;
  const first = content[0]!;
  if (first === '"' || first === "'") {
    const q = first === '"' ? doubleQuoted(content, 0) : singleQuoted(content, 0);
    const m = /^\s*:(?:\s+|$)/.exec(content.slice(q.end));
    if (m === null) return undefined;
    name = q.value;
    after = q.end + m[0].length;
  } else {
    // A plain key: no ":" or "#" inside, ended by ": " or ":" at the end of the line.
    const colon = content.indexOf(':');
    if (colon <= 0) return undefined;
    const next = content.charCodeAt(colon + 1);
    if (colon + 1 < content.length && next !== 0x20 && next !== 0x09) return undefined;
    if (
      first === ' ' ||
      (KEY_START_INDICATORS.includes(first) && !(first === '-' && content.length > 1 && !' \t:#'.includes(content[1]!)))
    )
      return undefined;
    name = content.slice(0, colon).trimEnd();
    if (name.includes('#') || name.includes('\t')) return undefined;
    // Keys that the core schema reads as null, booleans or numbers become other strings in toJS.
    if (typeof plainScalar(name) !== 'string') bail();
    after = colon + 1;
    while (after < content.length && (content[after] === ' ' || content[after] === '\t')) after++;
  }
  const rest = content.slice(after);
  return { name, rest: rest.startsWith('#') ? '' : rest.trimEnd() };
}

function stripComment(text: string): string {
  const hash = text.includes('#') ? text.search(/\s#/) : -1;
  return (hash < 0 ? text : text.slice(0, hash)).trimEnd();
}

function expectEnd(text: string, end: number): void {
  const rest = text.slice(end);
  if (!/^\s*$/.test(rest) && !/^\s+#/.test(rest)) bail();
}

/** A plain scalar resolved as the YAML 1.2 core schema does, integers as go-yaml reads them (go-yaml.ts). */
export function plainScalar(s: string): unknown {
  if (s === '') return null;
  const c = s[0]!;
  if ('&*!%@`?|>\'"[]{},#'.includes(c) || ((c === '-' || c === ':') && (s.length === 1 || s[1] === ' '))) bail();
  if ((s.includes(':') && /:(?:\s|$)/.test(s)) || (s.includes('#') && /\s#/.test(s)) || s.includes('\t')) bail();
  // Only these first characters can start a null, a boolean or a number: the rest is a string.
  if (!'0123456789+-.~nNtTfF'.includes(c)) return s;
  if (/^(?:~|[Nn]ull|NULL)$/.test(s)) return null;
  if (/^(?:[Tt]rue|TRUE)$/.test(s)) return true;
  if (/^(?:[Ff]alse|FALSE)$/.test(s)) return false;
  const integer = goInteger(s);
  if (integer !== undefined) return integer;
  if (/^[-+]?\.(?:inf|Inf|INF)$/.test(s)) return s[0] === '-' ? -Infinity : Infinity;
  if (/^\.(?:nan|NaN|NAN)$/.test(s)) return NaN;
  if (/^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$/.test(s)) return parseFloat(s);
  return s;
}

const ESCAPES: Record<string, string> = {
  '0': '\0',
  a: '\x07',
  b: '\b',
  t: '\t',
  '\t': '\t',
  n: '\n',
  v: '\v',
  f: '\f',
  r: '\r',
  e: '\x1b',
  ' ': ' ',
  '"': '"',
  '/': '/',
  '\\': '\\',
  N: '\u0085',
  _: '\u00a0',
  L: '\u2028',
  P: '\u2029',
};

function doubleQuoted(text: string, start: number): { value: string; end: number } {
  let out = '';
  for (let i = start + 1; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') return { value: out, end: i + 1 };
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = text[++i];
    if (e === undefined) bail();
    const hex = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    if (hex > 0) {
      const digits = text.slice(i + 1, i + 1 + hex);
      if (!new RegExp(`^[0-9a-fA-F]{${hex}}$`).test(digits)) bail();
      const code = parseInt(digits, 16);
      // Lone surrogates and out-of-range code points: the library's business.
      if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) bail();
      out += String.fromCodePoint(code);
      i += hex;
    } else if (ESCAPES[e!] !== undefined) out += ESCAPES[e!];
    else bail();
  }
  return bail();
}

function singleQuoted(text: string, start: number): { value: string; end: number } {
  let out = '';
  for (let i = start + 1; i < text.length; i++) {
    const c = text[i]!;
    if (c !== "'") out += c;
    else if (text[i + 1] === "'") {
      out += "'";
      i++;
    } else return { value: out, end: i + 1 };
  }
  return bail();
}

/** A flow collection ("[a, b]", "{k: v}") that opens and closes on one line. */
class Flow {
  pos = 0;
  private readonly text: string;
  constructor(text: string) {
    this.text = text;
  }

  value(): unknown {
    this.space();
    const c = this.text[this.pos];
    if (c === '[') return this.seq();
    if (c === '{') return this.map();
    if (c === '"' || c === "'") {
      const q = c === '"' ? doubleQuoted(this.text, this.pos) : singleQuoted(this.text, this.pos);
      this.pos = q.end;
      return q.value;
    }
    return plainScalar(this.plain());
  }

  private seq(): unknown[] {
    const out: unknown[] = [];
    this.pos++;
    for (;;) {
      this.space();
      if (this.text[this.pos] === ']') {
        this.pos++;
        return out;
      }
      out.push(this.value());
      this.space();
      const c = this.text[this.pos];
      if (c === ',') this.pos++;
      else if (c !== ']') bail();
    }
  }

  private map(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.pos++;
    for (;;) {
      this.space();
      if (this.text[this.pos] === '}') {
        this.pos++;
        return out;
      }
      const c = this.text[this.pos];
      if (c === '[' || c === '{') bail();
      const key = this.value();
      if (typeof key !== 'string' || Object.hasOwn(out, key) || key === '__proto__' || key === '<<') bail();
      this.space();
      let value: unknown = null;
      if (this.text[this.pos] === ':') {
        this.pos++;
        this.space();
        const n = this.text[this.pos];
        value = n === ',' || n === '}' ? null : this.value();
        this.space();
      }
      out[key as string] = value;
      const d = this.text[this.pos];
      if (d === ',') this.pos++;
      else if (d !== '}') bail();
    }
  }

  /** A plain scalar inside a flow collection: up to ",", "]", "}" or ": ". */
  private plain(): string {
    const start = this.pos;
    while (this.pos < this.text.length) {
      const c = this.text[this.pos]!;
      if (c === ',' || c === ']' || c === '}' || c === '[' || c === '{') break;
      if (c === ':' && /[\s,\]}]/.test(this.text[this.pos + 1] ?? ' ')) break;
      if (c === '#' && /\s/.test(this.text[this.pos - 1] ?? '')) bail();
      this.pos++;
    }
    const s = this.text.slice(start, this.pos).trim();
    if (s === '') bail();
    return s;
  }

  private space(): void {
    while (this.text[this.pos] === ' ') this.pos++;
  }
}
