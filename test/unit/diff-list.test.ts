// The pure halves of `enbi diff --list` and of tracing a rendered object to its line (the real kustomize and
// helm run in test/integration/render-sources.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { listWorkloads } from '../../src/diff/list.ts';
import { analyzeSource } from '../../src/pipeline/analyze.ts';
import { lineOf, writtenObjects } from '../../src/render/lines.ts';

const FILE = `apiVersion: v1
kind: Service
metadata: {name: api}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api-worker}
`;

const obj = (kind: string, name: string) => ({ apiVersion: 'v1', kind, metadata: { name } });

test('a rendered object is traced to its written line by kind and name, renamed by a prefix or suffix too; anything ambiguous gets no line', () => {
  const written = writtenObjects('base/app.yaml', FILE);
  assert.equal(lineOf(obj('Deployment', 'api'), written), 5);
  assert.equal(lineOf(obj('Service', 'prod-api'), written), 1);
  // "prod-api-worker-x" contains both names: the longer one is the object renamed.
  assert.equal(lineOf(obj('Deployment', 'prod-api-worker-x'), written), 9);
  // Two Deployments, neither name in the rendered one: not traced rather than guessed.
  assert.equal(lineOf(obj('Deployment', 'other'), written), undefined);
  // The file's only object of its kind, renamed beyond recognition (a substituted name): that one.
  assert.equal(lineOf(obj('Service', 'svc'), written), 1);
  assert.equal(lineOf(obj('ConfigMap', 'api'), written), undefined);
});

test('--list names the root of a workload from its origin when the renders did not list it (a stand-in of an earlier render)', () => {
  const analysis = analyzeSource(
    [
      {
        path: 'apps/web.yaml',
        text: `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {}
  template:
    spec: {containers: [{name: web, image: nginx:1}]}
`,
      },
    ],
    { listAll: true },
  );
  const [plain] = analysis.found!;
  analysis.found!.push({ ...plain!, name: 'web2', origin: 'Application argocd/shop → apps/shop' });
  const list = listWorkloads({ source: { kind: 'dir', location: '.' }, analysis });
  assert.deepEqual(
    list.workloads.map((w) => w.root),
    [
      { kind: 'file', path: 'apps/web.yaml' },
      { kind: 'Application', path: 'apps/shop', object: 'argocd/shop', origin: 'Application argocd/shop → apps/shop' },
    ],
  );
  assert.deepEqual(list.images, [
    { image: 'nginx:1', workloads: ['Deployment default/web', 'Deployment default/web2'], flakes: [] },
  ]);
});

test('--list never repeats credentials written in a flake URL: the annotation is listed redacted', () => {
  const secret = 'glpat-S3cr3tT0ken';
  const analysis = analyzeSource(
    [
      {
        path: 'apps/app.yaml',
        text: `apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  selector: {}
  template:
    metadata:
      annotations: {enbi.hrzn.ee/flake: "git+https://u:${secret}@github.com/team/app.git?rev=${'a'.repeat(40)}#image"}
    spec: {containers: [{name: app, image: "registry.local/app:aaaaaaa"}]}
`,
      },
    ],
    { listAll: true },
  );
  const list = listWorkloads({ source: { kind: 'dir', location: '.' }, analysis });
  assert.equal(list.workloads[0]!.annotated, true);
  assert.equal(list.workloads[0]!.planned, false);
  assert.match(
    list.workloads[0]!.annotations!['enbi.hrzn.ee/flake']!,
    /^git\+https:\/\/\*\*\*@github\.com\/team\/app\.git/,
  );
  assert.ok(!JSON.stringify(list).includes(secret));
});
