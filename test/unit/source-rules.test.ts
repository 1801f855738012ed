// The pure rules both sources share, and the output's escaping.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parse } from 'yaml';
import { cell, toSafeJson, toSafeYaml } from '../../src/diff/output.ts';
import { splitDocuments } from '../../src/manifests/documents.ts';
import { confinePath, decodeSourceFile, isSourceFile } from '../../src/source/files.ts';
import { ignoreMatcher } from '../../src/source/ignore.ts';

test('gitignore-like patterns: unanchored names, anchored paths, directories, **, negation', () => {
  const ignored = ignoreMatcher([
    '*.tmp.yaml',
    '/build/',
    'charts/**/values-*.yaml',
    'legacy/*',
    '!legacy/keep.yaml',
    'vendor',
  ]);
  const yes = [
    'a.tmp.yaml',
    'x/y/b.tmp.yaml',
    'build/x.yaml',
    'charts/web/values-prod.yaml',
    'charts/a/b/values-x.yaml',
    'legacy/old.yaml',
    'vendor/x.yaml',
    'apps/vendor/y.yaml',
  ];
  const no = ['a.yaml', 'apps/build/x.yaml', 'charts/web/values.yaml', 'legacy/keep.yaml', 'vendors/x.yaml'];
  for (const p of yes) assert.equal(ignored(p), true, p);
  for (const p of no) assert.equal(ignored(p), false, p);
  assert.equal(ignoreMatcher([])('anything.yaml'), false);
});

test('--path stays inside the source', () => {
  assert.equal(confinePath(''), '');
  assert.equal(confinePath('/apps/'), 'apps');
  assert.equal(confinePath('apps/../clusters/home'), 'clusters/home');
  for (const bad of ['..', '../..', 'apps/../../etc', '../x'])
    assert.throws(() => confinePath(bad), /leads out of the source/);
});

test('skipped directories and invalid UTF-8', () => {
  assert.equal(isSourceFile('apps/a.yaml'), true);
  assert.equal(isSourceFile('node_modules/p/a.yaml'), false);
  assert.equal(isSourceFile('apps/.hidden/a.yaml'), false);
  assert.equal(isSourceFile('.enbiignore'), true);
  assert.deepEqual(decodeSourceFile('ok.yaml', Buffer.from('a: é\n')), { path: 'ok.yaml', text: 'a: é\n' });
  assert.equal(
    decodeSourceFile('bad.yaml', Buffer.from([0x61, 0x3a, 0x20, 0xff])).unreadable?.message,
    'not valid UTF-8 (byte 3): save the file as UTF-8',
  );
  assert.match(decodeSourceFile('cut.yaml', Buffer.from([0x61, 0xe2, 0x82])).unreadable?.message ?? '', /byte 1/);
});

test('documents are cut at their markers with their first line', () => {
  const docs = splitDocuments('a: 1\n---\nb: 2\n--- # c\n\nc: 3\n...\n---\n')!;
  assert.deepEqual(
    docs.map((d) => [d.line, d.text.trim()]),
    [
      [1, 'a: 1'],
      [3, 'b: 2'],
      [5, 'c: 3'],
    ],
  );
  assert.equal(splitDocuments('%YAML 1.2\n---\na: 1\n'), undefined);
  assert.equal(splitDocuments('--- |\n  text\n')![0]!.inlineStart, true);
});

test('table cells: no control character, cut to their width', () => {
  assert.equal(cell('a\u001b[2Jb\nc\td'), 'a\\x1b[2Jb\\nc\\td');
  assert.equal(cell('x'.repeat(200)).length, 120);
});

test('property: JSON and YAML output has no raw control or bidi character and reads back the same', () => {
  const unsafe = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
  fc.assert(
    fc.property(
      fc.dictionary(
        fc.string({ unit: 'binary', maxLength: 12 }).filter((k) => k !== '__proto__'),
        fc.string({ unit: 'binary', maxLength: 30 }),
        { noNullPrototype: true },
      ),
      (value) => {
        const json = toSafeJson(value);
        const yaml = toSafeYaml(value);
        assert.ok(!unsafe.test(json), json);
        assert.ok(!unsafe.test(yaml.replace(/\n/g, '')), yaml);
        assert.deepEqual(JSON.parse(json), value);
        assert.deepEqual(parse(yaml), value);
      },
    ),
    { numRuns: 500 },
  );
});
