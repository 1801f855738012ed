// `enbi diff` as a user runs it, with the real kustomize and helm, on a repository where one file would expand
// past what a process can hold: that file is refused, naming it and the limit, while every other file and
// render is still planned, and the run stays small.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { fixtureDir, ROOT, type Run } from '../support/enbi-cli.ts';
import { rawNode, yamlDocs } from '../support/fixtures.ts';
import { renderTools } from '../support/render-tools.ts';

const tools = renderTools();
const REV = '0123456789abcdef0123456789abcdef01234567';
const SOURCE_REF = '{kind: GitRepository, name: repo, namespace: flux-system}';

/** Runs the CLI and reports the child's peak resident memory (its own process.resourceUsage at exit). */
function enbiMeasured(args: string[]): Promise<Run & { maxRssMiB: number }> {
  const report = `process.on('exit', () => process.stderr.write('\\nmaxRSS=' + process.resourceUsage().maxRSS + '\\n'))`;
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ['--import', `data:text/javascript,${encodeURIComponent(report)}`, join(ROOT, 'bin/enbi.js'), ...args],
      {
        cwd: ROOT,
        env: { ...process.env, KUBECONFIG: '/nonexistent', ENBI_KUSTOMIZE: tools.kustomize, ENBI_HELM: tools.helm },
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      const kib = Number(/maxRSS=(\d+)/.exec(stderr)?.[1]);
      resolve({ code: code ?? -1, stdout, stderr, maxRssMiB: kib / 1024 });
    });
  });
}

const deployment = (name: string, flake: string, image: string) =>
  `apiVersion: apps/v1
kind: Deployment
metadata: {name: ${name}}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata:
      labels: {app: x}
      annotations: {enbi.hrzn.ee/flake: "${flake}"}
    spec:
      containers: [{name: c, image: "${image}"}]
`;

const helmRelease = (name: string, values: string) =>
  `apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: ${name}, namespace: default}
spec:
  chart: {spec: {chart: ./charts/app, sourceRef: ${SOURCE_REF}}}
  values:
${values}`;

test('a 210 KB HelmRelease aliasing a 100 KB string 9,999 times: refused for its file, the rest planned, RSS bounded', async () => {
  const big = helmRelease(
    'big',
    `    blob: &blob "${'x'.repeat(100_000)}"\n    copies:\n${'    - *blob\n'.repeat(9_999)}`,
  );
  assert.ok(big.length > 210_000 && big.length < 230_000, `${big.length} bytes`);
  const dir = await fixtureDir({
    'clusters/repo.yaml':
      'apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: repo, namespace: flux-system}\nspec:\n  url: https://git.example/repo.git\n  ref: {branch: main}\n',
    'charts/app/Chart.yaml': 'apiVersion: v2\nname: app\nversion: 0.1.0\n',
    'charts/app/templates/deploy.yaml': deployment(
      '{{ .Release.Name }}',
      `github:o/chart/${REV}#image`,
      'registry.local/chart-{{ .Release.Name }}:1',
    ),
    'releases/big.yaml': big,
    'releases/small.yaml': helmRelease('small', '    a: 1\n'),
    'plain/web.yaml': deployment('web', `github:o/plain/${REV}#image`, 'registry.local/plain:1'),
    'kust/kustomization.yaml': 'resources: [deploy.yaml]\nnamePrefix: k-\n',
    'kust/deploy.yaml': deployment('web', `github:o/kust/${REV}#image`, 'registry.local/kust:1'),
    'nodes.yaml': yamlDocs({ apiVersion: 'v1', kind: 'List', items: [rawNode('n1')] }),
  });
  const r = await enbiMeasured([
    'diff',
    '--dir',
    dir,
    '--nodes',
    join(dir, 'nodes.yaml'),
    '--offline',
    '--source-url',
    'https://git.example/repo.git',
    '--ref',
    'main',
    '-o',
    'json',
  ]);
  // 6: builds would start, and a problem.
  assert.equal(r.code, 6, r.stderr);
  const plan = JSON.parse(r.stdout);
  assert.deepEqual(
    plan.problems.map((p: { file?: string; line?: number; message: string }) => `${p.file}:${p.line}: ${p.message}`),
    ['releases/big.yaml:1: not read: expands to more than 8 MiB through aliases or merge keys (limit 8 MiB)'],
  );
  // The plain file, the kustomize root and the other release of the same chart are all still planned.
  assert.deepEqual(plan.builds.flatMap((b: { images: string[] }) => b.images).sort(), [
    'registry.local/chart-small:1',
    'registry.local/kust:1',
    'registry.local/plain:1',
  ]);
  // Before the bound: "Invalid string length" at 1.27 GB. The CLI alone is about 180 MiB here.
  assert.ok(r.maxRssMiB > 0 && r.maxRssMiB < 300, `peak RSS ${r.maxRssMiB.toFixed(0)} MiB`);
});

test('a "billion laughs" through merge keys in a plain manifest: refused for that file only, the rest planned', async () => {
  const levels = ['l0: &l0 {a: "xxxxxxxxxx", b: "yyyyyyyyyy"}'];
  for (let i = 1; i <= 40; i++) levels.push(`l${i}: &l${i} {x: {<<: *l${i - 1}}, y: {<<: *l${i - 1}}}`);
  const bomb = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n${levels.map((l) => `  ${l}\n`).join('')}`;
  const dir = await fixtureDir({
    'bomb/bomb.yaml': bomb,
    'plain/web.yaml': deployment('web', `github:o/plain/${REV}#image`, 'registry.local/plain:1'),
    'kust/kustomization.yaml': 'resources: [deploy.yaml]\n',
    'kust/deploy.yaml': deployment('web2', `github:o/kust/${REV}#image`, 'registry.local/kust:1'),
    'nodes.yaml': yamlDocs({ apiVersion: 'v1', kind: 'List', items: [rawNode('n1')] }),
  });
  const t0 = Date.now();
  const r = await enbiMeasured(['diff', '--dir', dir, '--nodes', join(dir, 'nodes.yaml'), '--offline', '-o', 'json']);
  assert.equal(r.code, 6, r.stderr);
  const plan = JSON.parse(r.stdout);
  assert.deepEqual(
    plan.problems.map((p: { file?: string; message: string }) => `${p.file}: ${p.message}`),
    ['bomb/bomb.yaml: not read: expands to more than 8 MiB through aliases or merge keys (limit 8 MiB)'],
  );
  assert.deepEqual(plan.builds.flatMap((b: { images: string[] }) => b.images).sort(), [
    'registry.local/kust:1',
    'registry.local/plain:1',
  ]);
  assert.ok(Date.now() - t0 < 30_000);
  assert.ok(r.maxRssMiB < 300, `peak RSS ${r.maxRssMiB.toFixed(0)} MiB`);
});
