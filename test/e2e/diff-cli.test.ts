// `enbi diff` as a user runs it: a subprocess on the repository's examples and on directories made here.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { deployment, rawNode, REV_A, yamlDocs } from '../support/fixtures.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const ENBI = join(ROOT, 'bin/enbi.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function enbi(args: string[], cwd = ROOT): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [ENBI, ...args], {
      cwd,
      env: { ...process.env, KUBECONFIG: '/nonexistent' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

async function tempRepo(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-diff-'));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

test('examples/: the table names every build, its system, node and reason; exit 2', async () => {
  const r = await enbi(['diff', '--dir', 'examples/manifests', '--nodes', 'examples/nodes.yaml', '--offline']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stdout, /6 builds would start/);
  assert.match(r.stdout, /github:example\/shop\/9a8b7c6d5e4f#api-image\s+x86_64-linux\s+amd-1\s+now/);
  assert.match(r.stdout, /aarch64-linux\s+arm-1\s+on demand\s+registry\.local\/hello:4f1c2d9e8b7a/);
  // The hello image is on amd-1 already: no x86_64 build of it.
  assert.doesNotMatch(r.stdout, /hello\/4f1c[^\n]*x86_64-linux/);
});

test('-o json and -o yaml carry the same plan', async () => {
  const args = ['diff', '--dir', 'examples/manifests', '--nodes', 'examples/nodes.yaml', '--offline'];
  const json = JSON.parse((await enbi([...args, '-o', 'json'])).stdout);
  const yaml = parse((await enbi([...args, '-o', 'yaml'])).stdout);
  assert.deepEqual(yaml, json);
  assert.equal(json.builds.length, 6);
  for (const b of json.builds) {
    assert.match(b.rev, /^[0-9a-f]{40}$/);
    assert.ok(['x86_64-linux', 'aarch64-linux'].includes(b.system));
    assert.ok(b.missingOn.length > 0);
  }
});

test('nothing to build: exit 0', async () => {
  const dir = await tempRepo({
    'app.yaml': yamlDocs(deployment('web', { flake: `github:a/web/${REV_A}#image`, image: 'registry.local/web:v1' })),
    'nodes.yaml': yamlDocs({
      apiVersion: 'v1',
      kind: 'List',
      items: [rawNode('n1', { images: ['registry.local/web:v1'] })],
    }),
  });
  const r = await enbi(['diff', '--dir', dir, '--nodes', join(dir, 'nodes.yaml'), '--offline']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /No builds/);
});

test('malformed files and bad annotations: reported with file and line, the rest still planned, exit 6', async () => {
  const dir = await tempRepo({
    'good.yaml': yamlDocs(deployment('web', { flake: `github:a/web/${REV_A}#image` })),
    'broken.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n',
    'sub/bad.yml': yamlDocs(
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } },
      deployment('unpinned', { flake: 'github:a/web#image' }),
    ),
    'nodes.yaml': yamlDocs({ apiVersion: 'v1', kind: 'List', items: [rawNode('n1')] }),
  });
  const r = await enbi(['diff', '--dir', dir, '--nodes', join(dir, 'nodes.yaml'), '--offline']);
  assert.equal(r.code, 6, r.stdout + r.stderr);
  assert.match(r.stdout, /1 build would start/);
  assert.match(r.stdout, /broken\.yaml:[34]: malformed YAML/);
  assert.match(
    r.stdout,
    /sub\/bad\.yml:6: Deployment default\/unpinned: container app: flake "github:a\/web#image" is not pinned/,
  );
});

test('usage errors, an unreadable nodes file and an unreachable cluster exit 1 with a message', async () => {
  const none = await enbi(['diff']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /give either a Git URL or --dir/);
  const mode = await enbi([
    'diff',
    '--dir',
    'examples/manifests',
    '--nodes',
    'examples/nodes.yaml',
    '--mode',
    'sometimes',
  ]);
  assert.equal(mode.code, 1);
  assert.match(mode.stderr, /--mode must be spegel or per-node/);
  const nodes = await enbi([
    'diff',
    '--dir',
    'examples/manifests',
    '--nodes',
    'examples/manifests/hello/deployment.yaml',
  ]);
  assert.equal(nodes.code, 1);
  assert.match(nodes.stderr, /expected a Node or a List of Nodes/);
  const kube = await enbi(['diff', '--dir', 'examples/manifests']);
  assert.equal(kube.code, 1);
  assert.match(kube.stderr, /kubeconfig|--nodes/);
  const unknown = await enbi(['frobnicate']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
});

test('--watch plans again once per burst of writes', async () => {
  const dir = await tempRepo({
    'app.yaml': yamlDocs(deployment('web', { flake: `github:a/web/${REV_A}#image` })),
    'nodes/nodes.json': JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [rawNode('n1')] }),
  });
  const child = spawn(process.execPath, [
    ENBI,
    'diff',
    '--dir',
    dir,
    '--nodes',
    join(dir, 'nodes/nodes.json'),
    '--offline',
    '--watch',
    '-o',
    'json',
  ]);
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const plans = () => stdout.split('\n}\n').filter((s) => s.includes('"builds"')).length;
  const until = async (cond: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  };
  try {
    await until(() => plans() === 1, 15000);
    assert.equal(plans(), 1);
    await new Promise((r) => setTimeout(r, 500)); // let chokidar settle
    // A burst of five writes, 20 ms apart: one re-plan.
    for (let i = 0; i < 5; i++) {
      await writeFile(
        join(dir, `more${i}.yaml`),
        yamlDocs(deployment(`w${i}`, { flake: `github:a/w${i}/${REV_A}#image` })),
      );
      await new Promise((r) => setTimeout(r, 20));
    }
    await until(() => plans() >= 2, 15000);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(plans(), 2);
    const last = JSON.parse(`${stdout.split('\n}\n').filter((s) => s.includes('"builds"'))[1]!}\n}`);
    assert.equal(last.builds.length, 6);
  } finally {
    child.kill();
  }
});

test('--config plans as the controller would: its allow-lists refuse what they do not cover, its mode is used', async () => {
  const dir = await tempRepo({
    'config.yaml': [
      'source: { dir: examples/manifests }',
      'builderImage: b',
      'importerImage: i',
      'mode: per-node',
      'allowedImages: [registry.local/]',
      // Only the hello flake's owner: the shop flake (github:example/shop) stays outside.
      'allowedFlakes: [github:example/hello, "https://git.example.org/"]',
      '',
    ].join('\n'),
  });
  const r = await enbi([
    'diff',
    '--dir',
    'examples/manifests',
    '--nodes',
    'examples/nodes.yaml',
    '--offline',
    '--config',
    join(dir, 'config.yaml'),
    '-o',
    'json',
  ]);
  assert.equal(r.code, 6, r.stderr);
  const report = JSON.parse(r.stdout) as { mode: string; builds: { flake: string }[]; problems: { message: string }[] };
  assert.equal(report.mode, 'per-node');
  assert.ok(
    report.builds.length > 0 && report.builds.every((b) => !b.flake.includes('example/shop')),
    JSON.stringify(report.builds.map((b) => b.flake)),
  );
  assert.ok(
    report.problems.some((p) =>
      /flake source https:\/\/github.com\/example\/shop is outside the sources enbi may build/.test(p.message),
    ),
    JSON.stringify(report.problems),
  );
  // A configuration the controller would refuse is refused here too, with its message.
  await writeFile(join(dir, 'bad.yaml'), 'source: { dir: x }\nbuilderImage: b\nimporterImage: i\n');
  const bad = await enbi([
    'diff',
    '--dir',
    'examples/manifests',
    '--nodes',
    'examples/nodes.yaml',
    '--offline',
    '--config',
    join(dir, 'bad.yaml'),
  ]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /set allowedImages/);
});
