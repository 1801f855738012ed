// YAML read as the Go readers read it (src/manifests/go-yaml.ts), through enbi's scan of manifest files: merge
// keys, Go's integers, string maps kept as written, and the bound on what aliases and merge keys expand to.
// test/integration/yaml-reading.test.ts checks the same readings against the real `kustomize build`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDocument } from 'yaml';
import { fastParseDocument, NOT_SIMPLE } from '../../src/manifests/fast-yaml.ts';
import { checkExpansion, GO_YAML, goInteger, MAX_EXPANDED_BYTES } from '../../src/manifests/go-yaml.ts';
import { scanFile } from '../../src/manifests/scan.ts';
import { extractWorkloads } from '../../src/manifests/workloads.ts';

const FLAKE = 'github:o/r/0123456789abcdef0123456789abcdef01234567#web';

test('go-yaml integers: what strconv.ParseInt(s, 0) reads once underscores are dropped', () => {
  const cases: [string, number | undefined][] = [
    ['010', 8],
    ['0777', 511],
    ['-010', -8],
    ['0o17', 15],
    ['0O17', 15],
    ['0x1F', 31],
    ['0X1f', 31],
    ['+0x1F', 31],
    ['-0x1F', -31],
    ['0b101', 5],
    ['1_000', 1000],
    ['0_10', 8],
    ['09', 9],
    ['0', 0],
    ['+12', 12],
    ['12', 12],
    ['_1', undefined],
    ['0x', undefined],
    ['0x1FFFFFFFFFFFFFFFFF', undefined], // past uint64: a string to Go
    ['1.5', undefined],
    ['yes', undefined],
  ];
  for (const [s, want] of cases) assert.equal(goInteger(s), want, s);
});

test('merge keys: one map, a list of maps (the first wins), explicit keys win, nested maps, images', () => {
  const text = [
    'apiVersion: apps/v1',
    'kind: Deployment',
    'metadata: {name: web}',
    'x-defaults:',
    '  enbi: &enbi',
    `    enbi.hrzn.ee/flake: "${FLAKE}"`,
    '    team: base',
    '  more: &more {team: second, tier: "2"}',
    '  container: &container {name: web, image: "nix/web:1"}',
    'spec:',
    '  template:',
    '    metadata:',
    '      annotations:',
    '        <<: [*enbi, *more]',
    '        team: a',
    '    spec:',
    '      nodeSelector:',
    '        <<: {zone: z1, disk: ssd}',
    '        zone: z2',
    '      containers:',
    '      - <<: *container',
    '      - {<<: *container, name: side, image: "nix/side:1"}',
  ].join('\n');
  const { objects, problems } = scanFile({ path: 'web.yaml', text });
  assert.deepEqual(problems, []);
  const [w] = extractWorkloads(objects).workloads;
  assert.deepEqual(w!.annotations, { 'enbi.hrzn.ee/flake': FLAKE, team: 'a', tier: '2' });
  assert.deepEqual(w!.scheduling.nodeSelector, { zone: 'z2', disk: 'ssd' });
  assert.deepEqual(
    w!.containers.map((c) => [c.name, c.image]),
    [
      ['web', 'nix/web:1'],
      ['side', 'nix/side:1'],
    ],
  );
});

test('a quoted "<<" and "<<" inside a key are ordinary keys', () => {
  const text = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  "<<": {a: "1"}\n  x<<y: "2"\n';
  const { objects } = scanFile({ path: 'c.yaml', text });
  assert.deepEqual(objects[0]!.object.data, { '<<': { a: '1' }, 'x<<y': '2' });
});

test("YAML 1.1 values: integers as Go reads them; yes/on stay strings; the object's own annotations keep the text", () => {
  const text = [
    'apiVersion: apps/v1',
    'kind: Deployment',
    'metadata: {name: web, labels: {v: 010}, annotations: {e: ~, n: &n 0777, m: *n}}',
    'spec:',
    '  replicas: 010',
    '  template:',
    '    metadata:',
    '      annotations:',
    `        enbi.hrzn.ee/flake: "${FLAKE}"`,
    '        n: 0777',
    '        e: ~',
    '    spec:',
    '      nodeSelector: {gpu: 010, big: 1e3, on: yes, hex: 0x1F}',
    '      containers: [{name: web, image: "x:1", args: [yes, on, 0x1F, 1_000]}]',
  ].join('\n');
  const { objects, problems } = scanFile({ path: 'web.yaml', text });
  assert.deepEqual(problems, []);
  const o = objects[0]!.object as any;
  assert.equal(o.spec.replicas, 8);
  assert.deepEqual(o.metadata.labels, { v: 8 });
  assert.deepEqual(o.metadata.annotations, { e: '~', n: '0777', m: '0777' });
  // In the pod template, as kustomize writes it: typed (the API server refuses such an annotation).
  assert.deepEqual(o.spec.template.metadata.annotations, { 'enbi.hrzn.ee/flake': FLAKE, n: 511, e: null });
  assert.deepEqual(o.spec.template.spec.nodeSelector, { gpu: 8, big: 1000, on: 'yes', hex: 31 });
  assert.deepEqual(o.spec.template.spec.containers[0].args, ['yes', 'on', 31, 1000]);
  // The fast reader leaves typed values in string maps to the library, which knows what was written.
  assert.equal(fastParseDocument('metadata:\n  annotations:\n    v: 010\n'), NOT_SIMPLE);
  assert.equal(fastParseDocument('items:\n- metadata:\n    annotations:\n      v: 1\n'), NOT_SIMPLE);
  assert.deepEqual(fastParseDocument('spec:\n  replicas: 010\n  n: 1_000\n'), { spec: { replicas: 8, n: 1000 } });
});

test('a "billion laughs" through merge keys is refused by its expanded size, for that document only', () => {
  // Each level merges the one before twice under two keys: 2^30 copies of the first map.
  const levels = ['l0: &l0 {a: "xxxxxxxxxx", b: "yyyyyyyyyy"}'];
  for (let i = 1; i <= 30; i++) levels.push(`l${i}: &l${i} {x: {<<: *l${i - 1}}, y: {<<: *l${i - 1}}}`);
  const bomb = ['apiVersion: v1', 'kind: ConfigMap', 'metadata: {name: bomb}', 'data:', ...levels.map((l) => `  ${l}`)];
  const text = [...bomb, '---', 'apiVersion: v1', 'kind: ConfigMap', 'metadata: {name: fine}', ''].join('\n');
  const t0 = performance.now();
  const { objects, problems } = scanFile({ path: 'bomb.yaml', text });
  assert.ok(performance.now() - t0 < 2000, 'refused without expanding');
  assert.deepEqual(
    objects.map((o) => (o.object.metadata as { name: string }).name),
    ['fine'],
  );
  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.file, 'bomb.yaml');
  assert.equal(problems[0]!.line, 1);
  assert.equal(
    problems[0]!.message,
    'not read: expands to more than 8 MiB through aliases or merge keys (limit 8 MiB)',
  );
});

test('expanded size: one large string aliased is counted per use; an alias inside its own anchor is refused', () => {
  const big = 'x'.repeat(100_000);
  const uses = (n: number) => `a: &s "${big}"\nb: [${Array.from({ length: n }, () => '*s').join(', ')}]\n`;
  // 84 uses: 8.4 MB expanded, over the limit (8 MiB = 8.39 MB); 70: 7 MB, under it.
  assert.throws(
    () => checkExpansion(parseDocument(uses(84), GO_YAML), MAX_EXPANDED_BYTES),
    /expands to more than 8 MiB/,
  );
  checkExpansion(parseDocument(uses(70), GO_YAML), MAX_EXPANDED_BYTES);
  assert.throws(
    () => checkExpansion(parseDocument('a: &a [1, *a]\n', GO_YAML), MAX_EXPANDED_BYTES),
    /refers to the node that holds it/,
  );
});
