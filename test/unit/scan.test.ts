import assert from 'node:assert/strict';
import { test } from 'node:test';
import { scanManifests } from '../../src/manifests/scan.ts';
import { extractWorkloads } from '../../src/manifests/workloads.ts';

test('multi-document files, List objects and JSON are scanned with their lines', () => {
  const yaml = [
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata: {name: a}',
    '---',
    'apiVersion: v1',
    'kind: List',
    'items:',
    '  - apiVersion: v1',
    '    kind: Pod',
    '    metadata: {name: p}',
    '    spec: {containers: [{name: c, image: "x:1"}]}',
    '  - apiVersion: batch/v1',
    '    kind: CronJob',
    '    metadata: {name: cj}',
    '    spec: {jobTemplate: {spec: {template: {spec: {containers: [{name: c, image: "y:1"}]}}}}}',
  ].join('\n');
  const json = JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'ds' },
    spec: { template: { spec: { containers: [{ name: 'c', image: 'z:1' }] } } },
  });
  const scan = scanManifests([
    { path: 'a.yaml', text: yaml },
    { path: 'b.json', text: json },
  ]);
  assert.deepEqual(scan.problems, []);
  assert.deepEqual(
    scan.objects.map((o) => [o.file, o.line, o.object.kind]),
    [
      ['a.yaml', 1, 'ConfigMap'],
      ['a.yaml', 8, 'Pod'],
      ['a.yaml', 12, 'CronJob'],
      ['b.json', 1, 'DaemonSet'],
    ],
  );
  const { workloads } = extractWorkloads(scan.objects);
  assert.deepEqual(
    workloads.map((w) => [w.kind, w.name, w.containers[0]!.image, w.scheduling.daemonSet ?? false]),
    [
      ['Pod', 'p', 'x:1', false],
      ['CronJob', 'cj', 'y:1', false],
      ['DaemonSet', 'ds', 'z:1', true],
    ],
  );
});

test('a malformed document is reported with file and line; the other documents still count', () => {
  const text = [
    'kind: Pod',
    'apiVersion: v1',
    'metadata: {name: ok}',
    'spec: {containers: []}',
    '---',
    'kind: [unclosed',
    '---',
    'apiVersion: v1',
    'kind: Pod',
    'metadata: {name: ok2}',
    'spec: {containers: []}',
  ].join('\n');
  const scan = scanManifests([
    { path: 'm.yaml', text },
    { path: 'n.yaml', text: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a: "1"\n  a: "2"\n' },
    { path: 'o.yaml', text: '- just\n- a list\n' },
  ]);
  assert.deepEqual(
    scan.objects.map((o) => o.object.metadata),
    [{ name: 'ok' }, { name: 'ok2' }],
  );
  const problems = scan.problems.map((p) => `${p.file}:${p.line}`);
  assert.ok(problems.includes('m.yaml:6') || problems.includes('m.yaml:7'), problems.join(' '));
  assert.ok(problems.includes('n.yaml:6'), `duplicate key reported at its line: ${problems.join(' ')}`);
  // Not a Kubernetes object: skipped and counted, no problem (issue 12).
  assert.ok(!scan.problems.some((p) => p.file === 'o.yaml'));
  assert.equal(scan.skipped, 1);
});

test('a workload without a pod template is a problem, other kinds are ignored', () => {
  const scan = scanManifests([
    {
      path: 'x.yaml',
      text: 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n',
    },
  ]);
  const { workloads, problems } = extractWorkloads(scan.objects);
  assert.equal(workloads.length, 0);
  assert.equal(problems.length, 1);
  assert.match(problems[0]!.message, /no pod template/);
});

test('lines point at each document, past comments and blank lines, whether read fast or by the library', () => {
  const text = [
    '# header comment',
    '',
    'apiVersion: v1',
    'kind: Pod',
    'metadata: {name: a}',
    '---',
    '',
    '# about b',
    'apiVersion: v1',
    'kind: Pod',
    'metadata: {name: &n b}',
    '---',
    'apiVersion: v1',
    'kind: Pod',
    'metadata: {name: c}',
    '',
  ].join('\n');
  const scan = scanManifests([{ path: 'p.yaml', text }]);
  assert.deepEqual(
    scan.objects.map((o) => [o.line, (o.object.metadata as { name: string }).name]),
    [
      [3, 'a'],
      [9, 'b'],
      [13, 'c'],
    ],
  );
});

test('documents that are not Kubernetes objects are skipped and counted; with enbi annotations they are a problem', () => {
  const scan = scanManifests([
    { path: 'values.yaml', text: 'replicaCount: 1\n' },
    { path: 'arr.json', text: '[1, 2]' },
    { path: 'tail.yaml', text: 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\n' },
    {
      path: 'tpl.yaml',
      text: 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Values.name }}\n  labels:\n    {{- include "x" . | nindent 4 }}\n',
    },
    { path: 'lost.yaml', text: 'metadata:\n  annotations: {enbi.hrzn.ee/flake: "github:a/b/c#d"}\n' },
  ]);
  assert.equal(scan.objects.length, 1);
  assert.equal(scan.documents, 5);
  assert.equal(scan.skipped, 3);
  assert.deepEqual(
    scan.problems.map((p) => `${p.file}:${p.line}`),
    ['lost.yaml:1'],
  );
});

test('nesting deep enough to exhaust the stack is a problem for its document only', () => {
  const deep = `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "deep"}, "data": ${'['.repeat(200_000)}${']'.repeat(200_000)}}`;
  const scan = scanManifests([
    { path: 'deep.json', text: deep },
    { path: 'ok.yaml', text: 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n' },
  ]);
  assert.equal(scan.objects.length, 1);
  assert.equal(scan.problems.length >= 1, true);
  assert.ok(
    scan.problems.every((p) => p.file === 'deep.json'),
    JSON.stringify(scan.problems),
  );
});
