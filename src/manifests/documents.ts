// A YAML stream cut into its documents by their markers, in one linear pass over the lines, so each document
// can be read on its own (and a huge one of a kind enbi ignores skipped without parsing it).

export interface DocumentText {
  text: string;
  /** 1-based line of the document's first line in its file. */
  line: number;
  /** The "---" line carries content ("--- |", "--- !tag"): only the YAML library reads that. */
  inlineStart: boolean;
}

/** The documents of a stream, or undefined when it has directives ("%YAML"), which only the library handles. */
export function splitDocuments(stream: string): DocumentText[] | undefined {
  const text = stream.startsWith('\ufeff') ? stream.slice(1) : stream;
  const docs: DocumentText[] = [];
  let start = 0;
  let startLine = 1;
  let inlineStart = false;
  let line = 1;
  const close = (end: number) => {
    const body = text.slice(start, end);
    if (inlineStart || !/^\s*$/.test(body)) docs.push({ text: body, line: startLine, inlineStart });
  };
  for (let pos = 0; pos < text.length; line++) {
    const nl = text.indexOf('\n', pos);
    const end = nl < 0 ? text.length : nl;
    const c = text.charCodeAt(pos);
    if (c === 0x25 /* % */) return undefined;
    if ((c === 0x2d /* - */ || c === 0x2e) /* . */ && isMarker(text, pos, end)) {
      close(pos);
      const marker = text.slice(pos, end).replace(/\r$/, '');
      inlineStart = marker.startsWith('---') && !/^---\s*(#.*)?$/.test(marker);
      start = inlineStart ? pos : end + 1;
      startLine = inlineStart ? line : line + 1;
    }
    pos = end + 1;
  }
  close(text.length);
  return docs;
}

function isMarker(text: string, pos: number, end: number): boolean {
  const three = text.slice(pos, pos + 3);
  if (three !== '---' && three !== '...') return false;
  const next = text[pos + 3];
  return pos + 3 >= end || next === ' ' || next === '\t' || next === '\r';
}

export interface DocumentHeader {
  apiVersion?: string;
  kind?: string;
}

const HEADER = /^(apiVersion|kind):[ \t]*["']?([^\s"'#]+)["']?[ \t]*(?:#.*)?\r?$/gm;

/** apiVersion and kind written as top-level block keys with one-word values, found without parsing. */
export function headerOf(doc: string): DocumentHeader {
  const header: DocumentHeader = {};
  for (const m of doc.matchAll(HEADER)) {
    const key = m[1] as 'apiVersion' | 'kind';
    header[key] ??= m[2]!;
    if (header.apiVersion !== undefined && header.kind !== undefined) break;
  }
  return header;
}
