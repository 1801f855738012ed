// The fast reader must give exactly what the library path gives (the `yaml` package read as the Go readers
// read, go-yaml.ts), or step aside (NOT_SIMPLE).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseDocument, stringify } from 'yaml';
import { fastParseDocument, NOT_SIMPLE } from '../../src/manifests/fast-yaml.ts';
import { GO_YAML, goToJS } from '../../src/manifests/go-yaml.ts';
import { splitDocuments } from '../../src/manifests/documents.ts';
import { deployment, rawNode } from '../support/fixtures.ts';

const library = (text: string) => {
  const doc = parseDocument(text, { ...GO_YAML, uniqueKeys: true, logLevel: 'silent' });
  return doc.errors.length > 0 ? 'error' : goToJS(doc, { maxAliasCount: -1 });
};

/** Fast result equals the library's whenever the fast reader answers; returns whether it answered. */
function agrees(text: string): boolean {
  const fast = fastParseDocument(text);
  if (fast === NOT_SIMPLE) return false;
  assert.deepEqual(fast, library(text), `differs on:\n${text}`);
  return true;
}

const CASES = [
  "a: 1\nb: two\nc: 3.5\nd: true\ne: null\nf: ~\ng:\nh: 0x1F\ni: 0o17\nj: -.inf\nk: .NaN\nl: 1e3\nm: +12\nn: 007\no: yes\np: \"quoted \\\" \\u00e9 \\x41 \\n\"\nq: 'it''s'\n",
  'list:\n- a\n- b\n-\n  - nested\n- - x\n  - y\n- k: v\n  k2: v2\n',
  'spec:\n  containers:\n    - name: app # trailing comment\n      image: "r/x:1"\n      args: [--flag, "two words", 3, {a: b}]\n      env: {}\n      ports: []\n# a comment\n\n  other: {a: 1, b: [x, y], c: , d}\n',
  'script: |\n  echo one\n    indented\n\n  # not a comment\n  last\nkeep: |+\n  a\n\nstrip: |-\n  a\n  b\n\nnext: 1\n',
  'folded: >\n  one\n  two\n\n  three\nfolded2: >-\n  a\n  b\nempty: |\nafter: x\n',
  'url: http://example.org/a#b\nweird key with spaces: v\n"quoted key": 1\n\'single\': 2\ncolon: a:b\ndash: -x\n',
  'a:\n  b:\n    c:\n      d: deep\n  e: back\nf: top\n',
  '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}',
  'k: "a\\tb\\\\c\\/d"\nemoji: "\\U0001F600"\nplain: hello world\n',
  '- top\n- level\n- sequence\n',
  'x: 1\r\ny: |\r\n  crlf\r\n',
];

test('hand-written plain YAML: the fast reader agrees with the library and answers', () => {
  for (const text of CASES) assert.ok(agrees(text), `fast reader stepped aside on:\n${text}`);
});

test('corners of the core schema and of comments read as the library reads them', () => {
  for (const text of [
    'key   : v\n',
    'a: b #c\n',
    'a: "x" #c\n',
    'a: [a, b] #c\n',
    '- a #c\n',
    'a:  # c\n  b: 1\n',
    'a: b\n  # indented comment\nc: d\n',
    'a:\n  - x\n  # c\n  - y\n',
    'a: 0.5.1\n',
    'a: 1_000\n',
    'a: 0b101\n',
    'a: 1:20\n',
    'a: -.5\n',
    'a: +.5e3\n',
    'a: 12e\n',
    'a: 0x\n',
    'a: [ ]\n',
    'a: {b: [1, {c: d}], e: "f,g"}\n',
    'a: {a, b: }\n',
    'x: --\n',
    'x: ~x\n',
    'x: .\n',
    'x: 1.\n',
    'x: .e3\n',
    'x: 0o8\n',
    'x: Null\n',
    'x: nULL\n',
    '"a\\"b": 1\n',
  ]) {
    assert.ok(agrees(text), `fast reader stepped aside on:\n${text}`);
  }
});

test('what the fast reader leaves to the library', () => {
  for (const text of [
    'a: &x 1\nb: *x\n',
    'a: !!str 1\n',
    'a: 1\na: 2\n',
    'a: multi\n  line\n',
    'a: "multi\n  line"\n',
    'a: [1,\n 2]\n',
    'a: b: c\n',
    '? complex\n: key\n',
    'a:\n\t- tab\n',
    'k: |2\n   x\n',
    'a:\n  - x\n y: 1\n',
    'true: 1\n',
    '1: one\n',
    '<<: {a: 1}\n',
    'a: - b\n',
  ]) {
    assert.equal(fastParseDocument(text), NOT_SIMPLE, text);
  }
});

test('manifests as the tests, examples and yaml.stringify write them are read fast, as the library reads them', () => {
  const texts = [
    stringify(
      deployment('web', {
        flake: 'github:a/b/0123456789abcdef0123456789abcdef01234567#image',
        nodeSelector: { zone: 'a' },
        tolerations: [{ key: 'k', operator: 'Exists' }],
      }),
    ),
    stringify(rawNode('n1', { images: ['registry.local/a:1', 'b:2'], taints: [{ key: 'x', effect: 'NoSchedule' }] })),
  ];
  const dir = new URL('../../examples/manifests/', import.meta.url).pathname;
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.yaml') ? [join(d, e.name)] : [],
    );
  for (const f of walk(dir)) for (const doc of splitDocuments(readFileSync(f, 'utf8')) ?? []) texts.push(doc.text);
  let fast = 0;
  for (const t of texts) if (agrees(t)) fast++;
  assert.ok(fast >= texts.length - 1, `${fast} of ${texts.length} read fast`);
});

test('property: any JSON value stringified as YAML reads back the same, fast or by the library', () => {
  let fast = 0;
  let runs = 0;
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), fc.boolean(), (value, flow) => {
      const text = stringify(value, flow ? { collectionStyle: 'flow', lineWidth: 0 } : {});
      runs++;
      if (agrees(text)) fast++;
    }),
    { numRuns: 1500 },
  );
  assert.ok(fast > runs / 2, `only ${fast} of ${runs} read fast`);
});

test('property: scalars written plain resolve as the library path resolves them', () => {
  fc.assert(
    fc.property(fc.stringMatching(/^[a-zA-Z0-9.+\-_~ ]{1,8}$/), (s) => {
      agrees(`k: ${s}\n`);
    }),
    { numRuns: 3000 },
  );
});

test('property: random lines of YAML pieces are read as the library reads them, or left to it', () => {
  const value = fc.constantFrom(
    '',
    'v',
    'x y',
    '"q"',
    "'s'",
    '"e\\n"',
    '[x, y]',
    '{a: 1, b}',
    '|',
    '|-',
    '>',
    '>+',
    '1',
    'true',
    'null',
    '~',
    '0x1',
    '.5',
    '-1',
    'a#b',
    'v #c',
    '#c',
    '&a v',
    '*a',
    '[',
    ']',
    'a: b',
    '- x',
    '-',
  );
  const key = fc.constantFrom('a', 'b', 'k1', '"q k"', "'s'", '1', 'x y', '-k');
  const form = fc.oneof(
    fc.tuple(key, value).map(([k, v]) => `${k}: ${v}`),
    fc.tuple(key, value).map(([k, v]) => `${k}:${v}`),
    value.map((v) => `- ${v}`),
    fc.tuple(key, value).map(([k, v]) => `- ${k}: ${v}`),
    value,
  );
  const line = fc
    .tuple(fc.constantFrom(0, 0, 2, 2, 4, 1, 3, 6), form)
    .map(([indent, text]) => ' '.repeat(indent) + text);
  let fast = 0;
  fc.assert(
    fc.property(fc.array(line, { minLength: 1, maxLength: 8 }), (lines) => {
      if (agrees(`${lines.join('\n')}\n`)) fast++;
    }),
    { numRuns: 20000 },
  );
  assert.ok(fast > 300, `only ${fast} read fast`);
});
