// Bytes that are not UTF-8, with the real kustomize and helm: never read as U+FFFD. kustomize itself refuses
// such a file (MalformedYAMLError), helm prints a template's file name as its bytes; enbi refuses each for
// that file or root only, naming it, and plans everything else.
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { run, sandboxEnv } from '../../src/render/exec.ts';
import { enbi, fixtureDir } from '../support/enbi-cli.ts';
import { rawNode, yamlDocs } from '../support/fixtures.ts';
import { renderTools } from '../support/render-tools.ts';

const tools = renderTools();
const REV = '0123456789abcdef0123456789abcdef01234567';
const CONFIG_MAP = Buffer.concat([
  Buffer.from('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  k: "caf'),
  Buffer.from([0xe9]), // Latin-1 é
  Buffer.from('"\n'),
]);
const BAD_NAME = Buffer.from([0x63, 0xff, 0x2e, 0x79, 0x61, 0x6d, 0x6c]); // "c\xff.yaml"

const deployment = (name: string, image: string) =>
  `apiVersion: apps/v1
kind: Deployment
metadata: {name: ${name}}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata:
      labels: {app: x}
      annotations: {enbi.hrzn.ee/flake: "github:o/r/${REV}#image"}
    spec:
      containers: [{name: c, image: "${image}"}]
`;

async function chartWithBadName(dir: string): Promise<void> {
  await mkdir(join(dir, 'chart/templates'), { recursive: true });
  await writeFile(join(dir, 'chart/Chart.yaml'), 'apiVersion: v2\nname: chart\nversion: 0.1.0\n');
  await writeFile(join(dir, 'chart/templates/good.yaml'), deployment('chart-web', 'registry.local/chart:1'));
  await writeFile(
    Buffer.concat([Buffer.from(join(dir, 'chart/templates/')), BAD_NAME]),
    'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: odd}\n',
  );
}

test('kustomize refuses a resource that is not UTF-8: enbi names the file and the root, plans the rest', async () => {
  const dir = await fixtureDir({
    'bad/kustomization.yaml': 'resources: [cm.yaml, web.yaml]\n',
    'bad/cm.yaml': CONFIG_MAP,
    'bad/web.yaml': deployment('bad-web', 'registry.local/bad:1'),
    'badkust/kustomization.yaml': Buffer.concat([
      Buffer.from('resources: [web.yaml]\n# caf'),
      Buffer.from([0xe9, 0x0a]),
    ]),
    'badkust/web.yaml': deployment('badkust-web', 'registry.local/badkust:1'),
    'good/kustomization.yaml': 'resources: [web.yaml]\n',
    'good/web.yaml': deployment('good-web', 'registry.local/good:1'),
    'plain/web.yaml': deployment('plain-web', 'registry.local/plain:1'),
    'nodes.yaml': yamlDocs({ apiVersion: 'v1', kind: 'List', items: [rawNode('n1')] }),
  });
  await chartWithBadName(dir);
  const env = { ENBI_KUSTOMIZE: tools.kustomize, ENBI_HELM: tools.helm };
  const r = await enbiWith(env, ['diff', '--dir', dir, '--nodes', join(dir, 'nodes.yaml'), '--offline', '-o', 'json']);
  assert.equal(r.code, 6, r.stderr);
  const plan = JSON.parse(r.stdout);
  const problems = plan.problems.map((p: { file?: string; message: string }) => `${p.file}: ${p.message}`);
  assert.deepEqual(problems.sort(), [
    'bad/cm.yaml: not valid UTF-8 (byte 66): save the file as UTF-8',
    "bad/kustomization.yaml: kustomize build → bad: kustomize build failed: Error: bad/kustomization.yaml: accumulating resources from 'cm.yaml': MalformedYAMLError: yaml: invalid trailing UTF-8 octet in File: cm.yaml",
    'badkust/kustomization.yaml: kustomize build → badkust: badkust/kustomization.yaml: not valid UTF-8 (byte 27): save it as UTF-8: not rendered',
    'badkust/kustomization.yaml: not valid UTF-8 (byte 27): save the file as UTF-8',
    'chart/templates/c\\xff.yaml: its name is not valid UTF-8: not read (rename it)',
  ]);
  assert.ok(!r.stdout.includes('\ufffd'), 'no U+FFFD anywhere in the plan');
  // The other kustomization, the plain file and the chart's readable template are planned.
  assert.deepEqual(plan.builds.flatMap((b: { images: string[] }) => b.images).sort(), [
    'registry.local/chart:1',
    'registry.local/good:1',
    'registry.local/plain:1',
  ]);
});

test('helm prints a template file name that is not UTF-8: the output is refused, saying where', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-helm-utf8-'));
  await chartWithBadName(dir);
  const result = await run(tools.helm, ['template', 'x', 'chart'], dir, sandboxEnv(join(dir, 'home')));
  assert.equal(result.ok, false);
  assert.match(
    !result.ok ? result.message : '',
    /^its output is not valid UTF-8 \(byte \d+\): nothing of it was read$/,
  );
});

function enbiWith(env: Record<string, string>, args: string[]) {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    return enbi(args);
  } finally {
    process.env = saved;
  }
}
