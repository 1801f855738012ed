// What `enbi diff` prints is made safe for a terminal: text from manifests (names, images, messages) may hold
// escape sequences. The table escapes control characters and cuts long cells; JSON and YAML keep every value
// whole, with the characters JSON and YAML would print raw (C1 controls, DEL, bidirectional overrides)
// written as \u escapes, which both formats read back as the same characters.
import { Document, visit } from 'yaml';
import { printable } from '../text/printable.ts';

/** Longest table cell; -o json/yaml keep values whole. */
export const MAX_CELL = 120;
/** Longest line of the text output outside tables (a problem naming thousands of objects). */
export const MAX_LINE = 1000;

const RAW_IN_JSON_YAML = /[\u007f-\u009f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;
const uEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** One table cell: no control character (newlines and tabs included), at most `max` characters. */
export function cell(text: string, max = MAX_CELL): string {
  return cut(printable(text).replace(/\n/g, '\\n').replace(/\t/g, '\\t'), max);
}

/** A line of text output: escaped, and cut when longer than `max`. */
export function line(text: string, max = MAX_LINE): string {
  return text
    .split('\n')
    .map((l) => (l.length > max ? `${cut(l, max)} (${l.length} characters; whole in -o json)` : l))
    .map((l) => printable(l).replace(/\t/g, '\\t'))
    .join('\n');
}

export function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

export function toSafeJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2).replace(RAW_IN_JSON_YAML, uEscape)}\n`;
}

export function toSafeYaml(value: unknown): string {
  const doc = new Document(value);
  // Double-quoted scalars are the only YAML style with escapes: use it wherever an escape is needed.
  visit(doc, {
    Scalar(_, node) {
      if (
        typeof node.value === 'string' &&
        /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\u2028\u2029]/.test(node.value)
      )
        node.type = 'QUOTE_DOUBLE';
    },
  });
  return doc.toString().replace(RAW_IN_JSON_YAML, uEscape);
}
