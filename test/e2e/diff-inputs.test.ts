// `enbi diff --dir` on what real GitOps repositories hold besides Kubernetes manifests, and on hostile
// input (issue 12): each case is the real CLI as a subprocess, with its exit code and message.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { deployment, rawNode, REV_A, yamlDocs } from '../support/fixtures.ts';
import { enbi, fixtureDir } from '../support/enbi-cli.ts';

const NODES = yamlDocs({ apiVersion: 'v1', kind: 'List', items: [rawNode('n1')] });
const FLAKE = `github:a/web/${REV_A}#image`;
const diff = (dir: string, ...args: string[]) =>
  enbi(['diff', '--dir', dir, '--nodes', join(dir, 'nodes.yaml'), '--offline', ...args]);

const CHART_TEMPLATE = [
  'apiVersion: apps/v1',
  'kind: Deployment',
  'metadata:',
  '  name: {{ include "web.fullname" . }}',
  '  labels:',
  '    {{- include "web.labels" . | nindent 4 }}',
  'spec:',
  '  {{- if not .Values.autoscaling.enabled }}',
  '  replicas: {{ .Values.replicaCount }}',
  '  {{- end }}',
  '  template:',
  '    spec:',
  '      containers:',
  '        - name: {{ .Chart.Name }}',
  '          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"',
  '',
].join('\n');

test('charts, workflows, values, JSON arrays, trailing ---, empty documents and generateName: no problem, one summary line', async () => {
  const dir = await fixtureDir({
    'nodes.yaml': NODES,
    'apps/web.yaml': `${yamlDocs(deployment('web', { flake: FLAKE }))}---\n---\n# only a comment\n---\n`,
    'apps/migrate.yaml': yamlDocs({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { generateName: 'migrate-' },
      spec: {
        template: {
          metadata: { annotations: { 'enbi.hrzn.ee/flake': FLAKE } },
          spec: { containers: [{ name: 'app', image: 'registry.local/web:v1' }] },
        },
      },
    }),
    'charts/web/Chart.yaml': 'apiVersion: v2\nname: web\nversion: 0.1.0\n',
    'charts/web/values.yaml':
      'replicaCount: 1\nautoscaling:\n  enabled: false\nimage:\n  repository: nginx\n  tag: "1.27"\nports: [{port: 80}]\n',
    'charts/web/templates/_helpers.tpl':
      '{{- define "web.fullname" -}}{{ .Release.Name }}-web{{- end }}\n{{- define "web.labels" -}}app: web{{- end }}\n',
    'charts/web/templates/deployment.yaml': CHART_TEMPLATE,
    'charts/web/templates/service.yaml':
      'apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  ports: {{ toYaml .Values.ports | nindent 4 }}\n',
    'loose-template.yaml': CHART_TEMPLATE,
    '.github/workflows/ci.yml': 'on: push\njobs:\n  test: {runs-on: ubuntu-latest, steps: [{run: "npm test"}]}\n',
    'ci/pipeline.yml': 'stages: [build, test]\nbuild:\n  script: make\n',
    'data/list.json': '[1, 2, {"a": 3}]\n',
    'data/empty.yaml': '',
    'kustomization.yaml':
      'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [apps/web.yaml]\n',
    'node_modules/some-pkg/broken.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n',
  });
  const r = await diff(dir);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.equal(r.stderr, '', 'nothing on stderr (no YAML library warnings)');
  assert.doesNotMatch(r.stdout, /Problems/);
  // The root kustomization (and apps/web.yaml, its resource) and the chart are rendered (kustomize, helm):
  // their files are not read again as plain manifests; their workloads count with the plain ones.
  assert.match(
    r.stdout,
    /^Read: {3}4 files, 3 documents and 2 rendered roots: 3 workloads \(2 rendered, 2 with enbi annotations\); skipped 2 documents that are not Kubernetes objects, 2 Helm chart templates$/m,
  );
  assert.match(r.stdout, /1 build would start/);
  assert.match(r.stdout, /Job default\/migrate-/);
  const json = JSON.parse((await diff(dir, '-o', 'json')).stdout) as {
    problems: unknown[];
    manifests: Record<string, number>;
  };
  assert.deepEqual(json.problems, []);
  assert.deepEqual(json.manifests, {
    files: 4,
    documents: 3,
    workloads: 3,
    annotated: 2,
    skipped: 2,
    chartTemplates: 2,
    excluded: 0,
    roots: 2,
    renderedWorkloads: 2,
  });
});

test('malformed Kubernetes documents stay problems with file and line: a duplicate key, a broken workload; exit 4 when nothing else', async () => {
  const dir = await fixtureDir({
    'nodes.yaml': NODES,
    'dup.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: "1"\n  a: "2"\n',
    'broken.yaml': 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: [oops\n',
    'annotated-no-kind.yaml': 'metadata:\n  annotations:\n    enbi.hrzn.ee/flake: github:a/b/c#d\n',
  });
  const r = await diff(dir);
  assert.equal(r.code, 4, r.stdout + r.stderr);
  assert.match(r.stdout, /dup\.yaml:7: malformed YAML: Map keys must be unique: duplicate key "a"/);
  assert.match(r.stdout, /broken\.yaml:[34]: malformed YAML/);
  assert.match(r.stdout, /annotated-no-kind\.yaml:1: document carries enbi annotations but is not a Kubernetes object/);
  assert.match(r.stdout, /No builds: no workload carries an enbi annotation/);
});

test('one anchor used 100 times is read; a billion laughs is refused for its file only, named', async () => {
  const anchors = [
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata: {name: many}',
    'x: &v value',
    'data:',
    ...Array.from({ length: 100 }, (_, i) => `  k${i}: *v`),
  ].join('\n');
  const laughs = [
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata: {name: lol}',
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
  ];
  for (const [i, l] of ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'].entries())
    laughs.push(
      `${l}: &${l} [${Array(9)
        .fill(`*${String.fromCharCode(97 + i)}`)
        .join(',')}]`,
    );
  const dir = await fixtureDir({
    'nodes.yaml': NODES,
    'anchors.yaml': anchors,
    'laughs.yaml': `${laughs.join('\n')}\n`,
    'web.yaml': yamlDocs(deployment('web', { flake: FLAKE })),
  });
  const r = await diff(dir);
  assert.equal(r.code, 6, r.stdout + r.stderr);
  // Bounded by what it would expand to (counted before anything is built), before the alias count.
  assert.match(
    r.stdout,
    /laughs\.yaml:1: not read: expands to more than 8 MiB through aliases or merge keys \(limit 8 MiB\)/,
  );
  assert.doesNotMatch(r.stdout, /anchors\.yaml/);
  assert.match(r.stdout, /1 build would start/);
});

test('invalid UTF-8 is a problem naming the file; the rest is planned', async () => {
  const dir = await fixtureDir({
    'nodes.yaml': NODES,
    'latin1.yaml': Buffer.from('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xe9}\n', 'latin1'),
    'web.yaml': yamlDocs(deployment('web', { flake: FLAKE })),
  });
  const r = await diff(dir);
  assert.equal(r.code, 6, r.stdout + r.stderr);
  assert.match(r.stdout, /latin1\.yaml: not valid UTF-8 \(byte 51\)/);
});

test('terminal escapes from manifests are escaped in the table, JSON and YAML; long values cut in the table only', async () => {
  const evil = 'web\u001b[2J\u009b31m\u202e';
  const long = `registry.local/${'x'.repeat(300)}:v1`;
  const dir = await fixtureDir({
    'nodes.yaml': NODES,
    'web.yaml': yamlDocs(
      deployment(evil, { flake: FLAKE, image: 'registry.local/web:v1' }),
      deployment('long', { flake: `github:a/long/${REV_A}#image`, image: long }),
    ),
  });
  const text = await diff(dir);
  assert.ok(!/[\u001b\u009b\u202e]/.test(text.stdout), 'no raw escape in the text output');
  assert.match(text.stdout, /Deployment default\/web\\x1b\[2J\\x9b31m\\u\{202e\}/);
  assert.ok(
    text.stdout.split('\n').every((l) => l.length < 1000),
    'no line of the table is longer than 1000 characters',
  );
  assert.doesNotMatch(text.stdout, /x{300}/);
  const json = await diff(dir, '-o', 'json');
  assert.ok(!/[\u001b\u009b\u202e]/.test(json.stdout), 'no raw escape in JSON');
  const report = JSON.parse(json.stdout) as { builds: { images: string[]; workloads: string[] }[] };
  assert.deepEqual(
    report.builds.flatMap((b) => b.images).sort(),
    [long, 'registry.local/web:v1'].sort(),
    'JSON keeps values whole',
  );
  assert.ok(
    report.builds.some((b) => b.workloads.includes(`Deployment default/${evil}`)),
    'and exact',
  );
  const yaml = await diff(dir, '-o', 'yaml');
  assert.ok(!/[\u001b\u009b\u202e]/.test(yaml.stdout), 'no raw escape in YAML');
  assert.deepEqual(parse(yaml.stdout), report);
});

test('--path cannot leave the directory', async () => {
  const r = await enbi([
    'diff',
    '--dir',
    'examples/manifests',
    '--path',
    '../..',
    '--nodes',
    'examples/nodes.yaml',
    '--offline',
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--path "\.\.\/\.\." leads out of the source/);
  assert.equal(r.stdout, '');
  // Nor through a symlink.
  const outside = await fixtureDir({ 'x.yaml': yamlDocs(deployment('outside', { flake: FLAKE })) });
  const dir = await fixtureDir({ 'nodes.yaml': NODES, out: { symlink: outside } });
  const linked = await enbi(['diff', '--dir', dir, '--path', 'out', '--nodes', join(dir, 'nodes.yaml'), '--offline']);
  assert.equal(linked.code, 1, linked.stdout + linked.stderr);
  assert.match(linked.stderr, /--path "out" leads out of the source through a symlink/);
});

test('symlinks: followed inside the directory, refused (a warning) outside; hidden directories and node_modules skipped', async () => {
  const outside = await fixtureDir({ 'secret.yaml': yamlDocs(deployment('outside', { flake: FLAKE })) });
  const dir = await fixtureDir({
    'nodes.yaml': NODES,
    'base/web.yaml': yamlDocs(deployment('web', { flake: FLAKE })),
    'apps/linked.yaml': { symlink: '../base/web.yaml' },
    'apps/escape.yaml': { symlink: join(outside, 'secret.yaml') },
    'apps/.hidden/x.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n',
    'apps/node_modules/x.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n',
  });
  await writeFile(join(dir, 'apps/nodes.yaml'), NODES);
  const r = await enbi([
    'diff',
    '--dir',
    dir,
    '--path',
    'apps',
    '--nodes',
    join(dir, 'nodes.yaml'),
    '--offline',
    '-o',
    'json',
  ]);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout) as {
    problems: unknown[];
    warnings: { file?: string; message: string }[];
    builds: { workloads: string[] }[];
  };
  assert.deepEqual(report.problems, []);
  assert.deepEqual(
    report.builds.flatMap((b) => b.workloads),
    ['Deployment default/web'],
  );
  assert.deepEqual(
    report.warnings.map((w) => `${w.file}: ${w.message}`),
    ['escape.yaml: symlink leads out of the source: not read'],
  );
});

test('--exclude and .enbiignore leave paths out, counted', async () => {
  const dir = await fixtureDir({
    'nodes.yaml': NODES,
    '.enbiignore': '# generated\nlegacy/*\n!legacy/keep.yaml\n',
    'legacy/broken.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n',
    'legacy/keep.yaml': yamlDocs(deployment('kept', { flake: FLAKE })),
    'tmp/scratch.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n',
  });
  const r = await diff(dir, '--exclude', 'tmp/*.yaml', '--exclude', 'nodes.yaml');
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stdout, /3 files excluded/);
  assert.match(r.stdout, /Deployment default\/kept/);
  assert.doesNotMatch(r.stdout, /Problems/);
});

test('a 2 MiB ConfigMap is skipped without parsing its data; a 9 MiB document beyond plain YAML is refused for its file only', async () => {
  const big = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n${Array.from({ length: 60_000 }, (_, i) => `  k${i}: &a${i} "value ${i}"\n`).join('')}`;
  const huge = `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: huge}\nspec:\n  template:\n    metadata:\n      annotations:\n${Array.from({ length: 320_000 }, (_, i) => `        k${i}: &a${i} "value ${i}"\n`).join('')}`;
  const dir = await fixtureDir({
    'nodes.yaml': NODES,
    'big.yaml': big,
    'huge.yaml': huge,
    'web.yaml': yamlDocs(deployment('web', { flake: FLAKE })),
  });
  const started = Date.now();
  const r = await diff(dir);
  assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms`);
  assert.equal(r.code, 6, r.stdout + r.stderr);
  assert.match(r.stdout, /huge\.yaml:1: document of \d+\.\d MiB is too large to read/);
  assert.doesNotMatch(r.stdout, /big\.yaml/);
});
