// Rendering as Flux and Argo CD do, with the real kustomize and helm (from the build cache; no cluster): on
// fixture repositories in the layouts both projects document, enbi's workloads equal what `kustomize build`
// and `helm template` produce from the same input, and `enbi diff` plans from the rendered image tags.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { cp, mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { extractWorkloads } from '../../src/manifests/workloads.ts';
import { analyzeSource } from '../../src/pipeline/analyze.ts';
import { RenderCache } from '../../src/render/cache.ts';
import { type ReadRepository, renderSource } from '../../src/render/index.ts';
import { readDirSource } from '../../src/source/dir.ts';
import { renderTools } from '../support/render-tools.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const FIXTURES = join(ROOT, 'test/fixtures/render');
const tools = renderTools();

interface Seen {
  kind: string;
  namespace: string;
  name: string;
  images: (string | undefined)[];
  annotations: Record<string, unknown>;
}

const sortSeen = (list: Seen[]) =>
  list.sort((a, b) => `${a.kind}/${a.namespace}/${a.name}`.localeCompare(`${b.kind}/${b.namespace}/${b.name}`));

/** Workloads of a kustomize/helm output, as enbi sees them, with `namespace` for objects that name none. */
function workloadsOfYaml(text: string, namespace = 'default'): Seen[] {
  const objects = parseAllDocuments(text).flatMap((d, i) => {
    const o = d.toJS() as Record<string, unknown> | null;
    return o === null ? [] : [{ file: 'out', line: i, object: o }];
  });
  return sortSeen(
    extractWorkloads(objects, namespace).workloads.map((w) => ({
      kind: w.kind,
      namespace: w.namespace,
      name: w.name,
      images: w.containers.map((c) => c.image),
      annotations: w.annotations,
    })),
  );
}

/** The repositories the fixtures' Flux GitRepository (flux/) and Argo CD repoURLs (argocd/) name. */
const FLEET = { url: 'https://git.example.org/fleet.git', ref: 'main' };
const APPS = { url: 'https://git.example.org/apps.git' };

/** The Flux source the tempRepo fixtures' Kustomizations and HelmReleases name: the repository enbi reads. */
const GIT_REPOSITORY = `apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: flux-system, namespace: flux-system}
spec: {url: "${FLEET.url}", ref: {branch: main}}
`;

async function enbiWorkloads(
  dir: string,
  scope = '',
  repository: ReadRepository = FLEET,
): Promise<{ seen: Seen[]; origins: string[]; analysis: ReturnType<typeof analyzeSource> }> {
  const rendered = await renderSource({
    source: { kind: 'dir', root: dir },
    scope,
    tools,
    cache: new RenderCache(),
    repository,
  });
  const analysis = analyzeSource(await readDirSource(dir, scope), { rendered });
  const seen = analysis.workloads.map(({ workload: w }) => ({
    kind: w.kind,
    namespace: w.namespace,
    name: w.name,
    images: w.containers.map((c) => c.image),
    annotations: w.annotations,
  }));
  return {
    seen: sortSeen(seen),
    origins: analysis.workloads
      .map((w) => `${w.workload.kind} ${w.workload.name} ← ${w.workload.origin ?? 'plain'} (${w.workload.file})`)
      .sort(),
    analysis,
  };
}

const kustomize = (cwd: string, dir: string) =>
  execFileSync(tools.kustomize, ['build', dir], { cwd, encoding: 'utf8' });
const helm = (cwd: string, args: string[]) =>
  execFileSync(tools.helm, ['template', ...args, '--kube-version', '1.34.0'], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, HELM_CACHE_HOME: join(tmpdir(), 'enbi-test-helm') },
  });

/** A copy of a fixture with a hand-written overlay, as the Flux/Argo CD documentation describes the override. */
async function withOverlay(fixture: string, overlay: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-render-expect-'));
  await cp(join(FIXTURES, fixture), dir, { recursive: true });
  await mkdir(join(dir, 'expected-overlay'));
  await writeFile(join(dir, 'expected-overlay/kustomization.yaml'), overlay);
  return dir;
}

test('kustomize base with two overlays: each overlay is rendered with its own newTag, the base and patch are not read as manifests', async () => {
  const dir = join(FIXTURES, 'kustomize');
  const { seen, origins, analysis } = await enbiWorkloads(dir);
  const expected = sortSeen([
    ...workloadsOfYaml(kustomize(dir, 'apps/hello/overlays/staging')),
    ...workloadsOfYaml(kustomize(dir, 'apps/hello/overlays/production')),
    ...workloadsOfYaml(execFileSync('cat', ['plain/job.yaml'], { cwd: dir, encoding: 'utf8' })),
  ]);
  assert.deepEqual(seen, expected);
  // The overlays' tags, never the base's 1111…
  assert.deepEqual(
    seen.map((s) => s.images[0]),
    ['registry.local/hello:' + '3'.repeat(40), 'registry.local/hello:' + '2'.repeat(40), 'registry.local/migrate:v1'],
  );
  assert.deepEqual(origins, [
    'Deployment hello ← kustomize build → apps/hello/overlays/production (apps/hello/base/deployment.yaml)',
    'Deployment hello-staging ← kustomize build → apps/hello/overlays/staging (apps/hello/base/deployment.yaml)',
    'Job migrate ← plain (plain/job.yaml)',
  ]);
  assert.deepEqual(analysis.problems, []);
  assert.equal(analysis.rendered?.roots, 2);
});

test('Flux: a Kustomization applies targetNamespace, images, patches and postBuild.substitute; a HelmRelease renders its in-repo chart with valuesFiles and values', async () => {
  const { seen, origins, analysis } = await enbiWorkloads(join(FIXTURES, 'flux'));
  assert.deepEqual(analysis.problems, []);
  // flux-system, apps, releases and the HelmRelease: each once, though the HelmRelease and apps are found
  // both as written and in what flux-system and releases apply.
  assert.deepEqual([analysis.rendered?.roots, analysis.rendered?.fromCache], [4, 0]);
  // What Flux's kustomize-controller builds: its generated overlay over spec.path, then the substitution.
  const flux = await withOverlay(
    'flux',
    [
      'resources: [../apps/production]',
      'namespace: hello',
      'images: [{name: registry.local/hello, newTag: "5555555555555555555555555555555555555555"}]',
      'patches:',
      '  - target: {kind: Deployment, name: hello}',
      '    patch: |',
      '      - op: add',
      '        path: /spec/template/metadata/annotations/enbi.hrzn.ee~1build',
      '        value: eager',
    ].join('\n'),
  );
  const built = kustomize(flux, 'expected-overlay')
    .replace('${HELLO_BRANCH}', 'release')
    .replace('${CLUSTER_NAME:=production}', 'production');
  const chart = helm(join(FIXTURES, 'flux'), [
    'web',
    './charts/web',
    '--namespace',
    'web',
    '-f',
    'charts/web/values.yaml',
    '-f',
    'charts/web/values-production.yaml',
    '--set',
    'replicaCount=2',
    '--set',
    'image.tag=7777777777777777777777777777777777777777',
    '--set',
    'flake=github:example/web/7777777777777777777777777777777777777777#image',
  ]);
  assert.deepEqual(seen, sortSeen([...workloadsOfYaml(built), ...workloadsOfYaml(chart, 'web')]));
  const hello = seen.find((s) => s.name === 'hello')!;
  assert.equal(hello.namespace, 'hello');
  assert.equal(hello.images[0], 'registry.local/hello:5555555555555555555555555555555555555555');
  assert.equal(hello.annotations['enbi.hrzn.ee/flake'], 'git+https://git.example.org/hello.git?ref=release#image');
  assert.equal(hello.annotations.cluster, 'production');
  assert.equal(hello.annotations['enbi.hrzn.ee/build'], 'eager');
  assert.deepEqual(origins, [
    'Deployment hello ← Kustomization flux-system/apps → apps/production (apps/base/hello/deployment.yaml)',
    'Deployment web ← HelmRelease web/web → charts/web (charts/web/templates/deployment.yaml)',
    'StatefulSet web-worker ← HelmRelease web/web → charts/web (charts/web/templates/worker.yaml)',
  ]);
  await rm(flux, { recursive: true, force: true });
});

test('Argo CD: an Application with kustomize.images and one with helm valueFiles and valuesObject', async () => {
  const { seen, origins, analysis } = await enbiWorkloads(join(FIXTURES, 'argocd'), '', APPS);
  assert.deepEqual(analysis.problems, []);
  const argo = await withOverlay(
    'argocd',
    'resources: [../apps/hello/overlays/prod]\ncommonAnnotations: {team: shop}\nimages: [{name: registry.local/hello, newTag: "8888888888888888888888888888888888888888"}]\n',
  );
  const chart = helm(join(FIXTURES, 'argocd'), [
    'web-prod',
    './charts/web',
    '--namespace',
    'web',
    '-f',
    'charts/web/values-production.yaml',
    '--set',
    'replicaCount=4',
  ]);
  // Argo CD applies objects that name no namespace to destination.namespace.
  assert.deepEqual(
    seen,
    sortSeen([...workloadsOfYaml(kustomize(argo, 'expected-overlay'), 'hello'), ...workloadsOfYaml(chart, 'web')]),
  );
  assert.equal(
    seen.find((s) => s.name === 'hello')?.images[0],
    'registry.local/hello:8888888888888888888888888888888888888888',
  );
  // kustomize puts commonAnnotations on the pod template as well.
  assert.equal(seen.find((s) => s.name === 'hello')?.annotations.team, 'shop');
  assert.deepEqual(origins, [
    'Deployment hello ← Application argocd/hello → apps/hello/overlays/prod (apps/hello/base/deployment.yaml)',
    'Deployment web-prod ← Application argocd/web → charts/web (charts/web/templates/deployment.yaml)',
    'StatefulSet web-prod-worker ← Application argocd/web → charts/web (charts/web/templates/worker.yaml)',
  ]);
  await rm(argo, { recursive: true, force: true });
});

/** enbi diff as a user runs it (a subprocess; asynchronous, so a Git server in this process keeps answering). */
function enbiDiff(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; report: any; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'bin/enbi.js'),
        'diff',
        ...args,
        '--nodes',
        join(ROOT, 'examples/nodes.yaml'),
        '--offline',
        '-o',
        'json',
      ],
      {
        env: {
          ...process.env,
          KUBECONFIG: '/nonexistent',
          ENBI_KUSTOMIZE: tools.kustomize,
          ENBI_HELM: tools.helm,
          ...env,
        },
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, report: stdout === '' ? undefined : JSON.parse(stdout), stderr }));
  });
}

test('enbi diff --dir plans the rendered tags: one build per overlay revision, none for the base tag', async () => {
  const { code, report, stderr } = await enbiDiff(['--dir', join(FIXTURES, 'kustomize')]);
  assert.equal(code, 2, stderr);
  const revs = new Set(report.builds.map((b: { rev: string }) => b.rev));
  assert.deepEqual([...revs].sort(), [
    '2222222222222222222222222222222222222222',
    '3333333333333333333333333333333333333333',
    '4444444444444444444444444444444444444444',
  ]);
  assert.deepEqual(report.problems, []);
});

test('enbi diff on the Flux and Argo CD repositories: no problems, builds from the rendered values', async () => {
  const flux = await enbiDiff(['--dir', join(FIXTURES, 'flux'), '--source-url', FLEET.url, '--ref', FLEET.ref]);
  assert.equal(flux.code, 2, flux.stderr);
  assert.deepEqual(flux.report.problems, []);
  const fluxRevs = new Set(flux.report.builds.map((b: { rev: string }) => b.rev));
  assert.ok(fluxRevs.has('5555555555555555555555555555555555555555'), JSON.stringify([...fluxRevs]));
  assert.ok(fluxRevs.has('7777777777777777777777777777777777777777'), JSON.stringify([...fluxRevs]));
  const argo = await enbiDiff(['--dir', join(FIXTURES, 'argocd'), '--source-url', APPS.url]);
  assert.equal(argo.code, 2, argo.stderr);
  const argoRevs = new Set(argo.report.builds.map((b: { rev: string }) => b.rev));
  assert.deepEqual([...argoRevs].sort(), [
    '6666666666666666666666666666666666666666',
    '8888888888888888888888888888888888888888',
  ]);
});

test('no kustomize: a problem naming the root and what to install; the plain manifests are still planned', async () => {
  const { code, report } = await enbiDiff(['--dir', join(FIXTURES, 'kustomize')], {
    ENBI_KUSTOMIZE: '/nonexistent/kustomize',
  });
  assert.equal(code, 6);
  const messages = report.problems.map((p: { message: string }) => p.message);
  assert.equal(messages.length, 2);
  for (const m of messages)
    assert.match(
      m,
      /^kustomize build → apps\/hello\/overlays\/(staging|production): kustomize is needed, and \/nonexistent\/kustomize \(ENBI_KUSTOMIZE\) is not an executable file$/,
    );
  assert.deepEqual(
    report.builds.map((b: { rev: string }) => b.rev).filter((r: string) => r.startsWith('4')).length > 0,
    true,
  );
});

async function tempRepo(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-render-repo-'));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

const annotated = (name: string, image: string) => `apiVersion: apps/v1
kind: Deployment
metadata: {name: ${name}}
spec:
  template:
    metadata: {annotations: {enbi.hrzn.ee/flake: "github:example/${name}/${'9'.repeat(40)}#image"}}
    spec: {containers: [{name: app, image: "${image}"}]}
`;

test('bad input: a failing build, a remote base, a missing chart dependency; each a problem naming its root, the rest still planned', async () => {
  const dir = await tempRepo({
    'broken/kustomization.yaml': 'resources: [../missing]\n',
    'remote/kustomization.yaml': 'resources:\n  - https://github.com/example/manifests//base?ref=v1\n  - deploy.yaml\n',
    'remote/deploy.yaml': annotated('remote', 'registry.local/remote:v1'),
    'failing/kustomization.yaml': 'resources: [deploy.yaml]\npatches: [{path: patch.yaml}]\n',
    'failing/deploy.yaml': annotated('failing', 'registry.local/failing:v1'),
    'failing/patch.yaml':
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nothing-by-this-name}\nspec: {replicas: 2}\n',
    'chart/Chart.yaml':
      'apiVersion: v2\nname: chart\nversion: 0.1.0\ndependencies:\n  - {name: redis, version: 1.0.0, repository: https://charts.example.org}\n',
    'chart/templates/d.yaml': annotated('chart', 'registry.local/chart:v1'),
    'plain/deploy.yaml': annotated('plain', 'registry.local/plain:v1'),
  });
  const { seen, analysis } = await enbiWorkloads(dir);
  assert.deepEqual(
    seen.map((s) => s.name),
    ['plain'],
  );
  const messages = analysis.problems.map((p) => p.message).sort();
  assert.equal(messages.length, 4, messages.join('\n'));
  assert.match(messages[0]!, /^helm template → chart: helm template failed: .*missing in charts\/ directory: redis/);
  assert.match(
    messages[1]!,
    /^kustomize build → broken: broken\/kustomization\.yaml refers to "\.\.\/missing", which does not exist: not rendered$/,
  );
  assert.match(messages[2]!, /^kustomize build → failing: kustomize build failed: .*nothing-by-this-name/);
  assert.match(
    messages[3]!,
    /^kustomize build → remote: remote\/kustomization\.yaml refers to the remote "https:\/\/github\.com\/example\/manifests\/\/base\?ref=v1", which enbi does not fetch \(vendor it into the repository\): not rendered$/,
  );
  // Files of roots that could not render are not read as plain manifests either (their templates are not YAML).
  assert.equal(analysis.filesScanned, 1);
  await rm(dir, { recursive: true, force: true });
});

test('a render that runs too long or writes too much is stopped: a problem for that root only', async () => {
  const dir = await tempRepo({
    'app/kustomization.yaml': 'resources: [deploy.yaml]\n',
    'app/deploy.yaml': annotated('app', 'registry.local/app:v1'),
  });
  const slow = await renderSource({
    source: { kind: 'dir', root: dir },
    tools,
    cache: new RenderCache(),
    limits: { timeoutMs: 1, maxOutputBytes: 1 << 20 },
  });
  assert.deepEqual(
    slow.problems.map((p) => p.message),
    ['kustomize build → app: kustomize build failed: took longer than 0.001 s'],
  );
  const big = await renderSource({
    source: { kind: 'dir', root: dir },
    tools,
    cache: new RenderCache(),
    limits: { timeoutMs: 30_000, maxOutputBytes: 100 },
  });
  assert.deepEqual(
    big.problems.map((p) => p.message),
    ['kustomize build → app: kustomize build failed: output exceeds 100 bytes'],
  );
  await rm(dir, { recursive: true, force: true });
});

test('Flux objects whose inputs are not in the repository: warnings saying what is not resolvable offline', async () => {
  const dir = await tempRepo({
    'clusters/prod/flux-system/gotk-sync.yaml': GIT_REPOSITORY,
    'clusters/prod/apps.yaml': `apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system}
spec:
  path: ./apps
  sourceRef: {kind: GitRepository, name: flux-system}
  postBuild:
    substituteFrom: [{kind: ConfigMap, name: cluster-vars}]
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: redis, namespace: data}
spec:
  chart:
    spec: {chart: redis, sourceRef: {kind: HelmRepository, name: bitnami}}
`,
    'apps/deploy.yaml': annotated('app', 'registry.local/app:v1'),
  });
  const { seen, analysis } = await enbiWorkloads(dir);
  assert.deepEqual(
    seen.map((s) => `${s.namespace}/${s.name}`),
    ['default/app'],
  );
  assert.deepEqual(
    analysis.warnings.map((w) => `${w.object}: ${w.message}`).filter((m) => !m.includes('flake')),
    [
      'Kustomization flux-system/apps: postBuild.substituteFrom reads ConfigMaps/Secrets from the cluster, which enbi does not read: only postBuild.substitute is applied, variables from substituteFrom stay as written',
      'HelmRelease data/redis: not rendered: chart "redis" comes from a HelmRepository, which enbi does not fetch (it renders only what this repository holds)',
    ],
  );
  assert.deepEqual(analysis.problems, []);
  await rm(dir, { recursive: true, force: true });
});

test('the render cache: a second pass renders nothing; changing one overlay renders only that overlay', async () => {
  const dir = await tempRepo({});
  await cp(join(FIXTURES, 'kustomize'), dir, { recursive: true });
  const cache = new RenderCache();
  const first = await renderSource({ source: { kind: 'dir', root: dir }, tools, cache });
  assert.deepEqual([first.stats.renders, first.stats.fromCache], [2, 0]);
  const again = await renderSource({ source: { kind: 'dir', root: dir }, tools, cache });
  assert.deepEqual([again.stats.renders, again.stats.fromCache], [0, 2]);
  assert.deepEqual(again.objects, first.objects);
  await writeFile(
    join(dir, 'apps/hello/overlays/staging/kustomization.yaml'),
    'resources: [../../base]\nimages: [{name: registry.local/hello, newTag: "' + 'a'.repeat(40) + '"}]\n',
  );
  const changed = await renderSource({ source: { kind: 'dir', root: dir }, tools, cache });
  assert.deepEqual([changed.stats.renders, changed.stats.fromCache], [1, 1]);
  assert.ok(changed.objects.some((o) => JSON.stringify(o.object).includes('a'.repeat(40))));
  // A change to the base is an input of both overlays.
  await writeFile(join(dir, 'apps/hello/base/deployment.yaml'), annotated('hello', 'registry.local/hello:v9'));
  const base = await renderSource({ source: { kind: 'dir', root: dir }, tools, cache });
  assert.deepEqual([base.stats.renders, base.stats.fromCache], [2, 0]);
  await rm(dir, { recursive: true, force: true });
});

test('a Git source renders from the commit tree: the same workloads as the directory, symlinks not followed', async () => {
  const dir = await tempRepo({});
  await cp(join(FIXTURES, 'argocd'), dir, { recursive: true });
  const { symlink } = await import('node:fs/promises');
  await symlink('/etc', join(dir, 'apps/hello/base/etc'));
  const git = (...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: dir, encoding: 'utf8' }).trim();
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-qm', 'fixture');
  const commit = git('rev-parse', 'HEAD');
  const fromGit = await renderSource({
    source: { kind: 'git', gitdir: join(dir, '.git'), commit },
    tools,
    cache: new RenderCache(),
    repository: { ...APPS, ref: 'main', commit },
  });
  const fromDir = await renderSource({
    source: { kind: 'dir', root: join(FIXTURES, 'argocd') },
    tools,
    cache: new RenderCache(),
    repository: APPS,
  });
  assert.deepEqual(fromGit.problems, []);
  assert.deepEqual(fromGit.objects, fromDir.objects);
  assert.deepEqual([...fromGit.consumed].sort(), [...fromDir.consumed].sort());
  await rm(dir, { recursive: true, force: true });
});

test('a HelmRelease with postRenderers: the kustomize images and patches apply over the chart output, files still named', async () => {
  const dir = await tempRepo({
    'flux-system/gotk-sync.yaml': GIT_REPOSITORY,
    'releases/web.yaml': `apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: web, namespace: web}
spec:
  chart:
    spec: {chart: ./charts/web, sourceRef: {kind: GitRepository, name: flux-system, namespace: flux-system}}
  postRenderers:
    - kustomize:
        images: [{name: registry.local/web, newTag: "${'c'.repeat(40)}"}]
        patches:
          - target: {kind: Deployment}
            patch: |
              - {op: add, path: /spec/template/metadata/annotations/enbi.hrzn.ee~1build, value: eager}
`,
  });
  await cp(join(FIXTURES, 'flux/charts'), join(dir, 'charts'), { recursive: true });
  const { seen, origins, analysis } = await enbiWorkloads(dir);
  assert.deepEqual(analysis.problems, []);
  assert.deepEqual(
    seen.map((s) => [s.name, s.images[0], s.annotations['enbi.hrzn.ee/build']]),
    [['web', `registry.local/web:${'c'.repeat(40)}`, 'eager']],
  );
  assert.deepEqual(origins, [
    'Deployment web ← HelmRelease web/web → charts/web (charts/web/templates/deployment.yaml)',
  ]);
  await rm(dir, { recursive: true, force: true });
});

test("the controller's source state plans from rendered objects, with render.* from its configuration and the Applications of its Git source", async () => {
  const { parseControllerConfig } = await import('../../src/controller/config.ts');
  const { sourceState } = await import('../../src/controller/source-state.ts');
  const { readdir, readFile } = await import('node:fs/promises');
  const { startGitServer } = await import('../support/git-server.ts');
  const base = {
    allowedImages: ['registry.local/'],
    allowedFlakes: ['github:example', 'https://git.example.org/'],
    builderImage: 'enbi.local/builder:dev',
    importerImage: 'enbi.local/importer:dev',
  };
  const server = await startGitServer();
  const cacheDir = await mkdtemp(join(tmpdir(), 'enbi-render-controller-'));
  try {
    // The argocd fixture served as the controller's source: its Applications name the URL it clones, so they
    // are this source's and render with their overrides (the controller passes its source.url and ref).
    const files: Record<string, string> = {};
    const walk = async (dir: string, rel = ''): Promise<void> => {
      for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
        const path = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) await walk(dir, path);
        else files[path] = (await readFile(join(dir, path), 'utf8')).replace(APPS.url, server.url('apps'));
      }
    };
    await walk(join(FIXTURES, 'argocd'));
    await server.createRepo('apps', files);
    const logs: string[] = [];
    const cfg = parseControllerConfig({
      ...base,
      source: { url: server.url('apps') },
      render: { kustomize: tools.kustomize, helm: tools.helm },
    });
    const state = sourceState(cfg, cacheDir, undefined, (m) => logs.push(m));
    assert.equal(await state.refresh(true), true);
    const workloads = state
      .current()!
      .analysis.workloads.map((w) => `${w.workload.namespace}/${w.workload.name} ${w.workload.containers[0]?.image}`)
      .sort();
    assert.deepEqual(workloads, [
      `hello/hello registry.local/hello:${'8'.repeat(40)}`,
      `web/web-prod registry.local/web:${'6'.repeat(40)}`,
      `web/web-prod-worker registry.local/web-worker:${'6'.repeat(40)}`,
    ]);
    assert.deepEqual(
      state.current()!.analysis.warnings.filter((w) => w.message.includes('another source')),
      [],
    );
    // Nothing changed: the same revision, no new analysis.
    assert.equal(await state.refresh(true), false);
    // A configured helm that is not there: a problem for the chart's root, the kustomize app still planned.
    const broken = sourceState(
      parseControllerConfig({
        ...base,
        source: { url: server.url('apps') },
        render: { kustomize: tools.kustomize, helm: '/nonexistent/helm' },
      }),
      cacheDir,
      undefined,
      () => {},
    );
    await broken.refresh(true);
    assert.deepEqual(
      broken.current()!.analysis.workloads.map((w) => w.workload.name),
      ['hello'],
    );
    assert.deepEqual(
      broken.current()!.analysis.problems.map((p) => p.message),
      [
        'Application argocd/web → charts/web: helm is needed, and /nonexistent/helm (render.helm) is not an executable file',
      ],
    );
  } finally {
    await server.close();
    await rm(cacheDir, { recursive: true, force: true });
  }
});

test("the controller's directory source has no URL: its Applications are another source, its kustomize and chart directories rendered as roots", async () => {
  const { parseControllerConfig } = await import('../../src/controller/config.ts');
  const { sourceState } = await import('../../src/controller/source-state.ts');
  const cfg = parseControllerConfig({
    allowedImages: ['registry.local/'],
    allowedFlakes: ['github:example', 'https://git.example.org/'],
    builderImage: 'enbi.local/builder:dev',
    importerImage: 'enbi.local/importer:dev',
    source: { dir: join(FIXTURES, 'argocd') },
    render: { kustomize: tools.kustomize, helm: tools.helm },
  });
  const state = sourceState(cfg, tmpdir(), undefined, () => {});
  assert.equal(await state.refresh(true), true);
  const analysis = state.current()!.analysis;
  assert.deepEqual(
    analysis.warnings
      .filter((w) => w.message.startsWith('another source: https://git.example.org/apps.git'))
      .map((w) => w.object)
      .sort(),
    ['Application argocd/hello', 'Application argocd/web'],
  );
  // Without the Applications' overrides: the overlay's own tag, the chart's default release and values.
  const expected = sortSeen([
    ...workloadsOfYaml(kustomize(join(FIXTURES, 'argocd'), 'apps/hello/overlays/prod')),
    ...workloadsOfYaml(helm(join(FIXTURES, 'argocd'), ['web', './charts/web'])),
  ]);
  assert.deepEqual(
    sortSeen(
      analysis.workloads.map(({ workload: w }) => ({
        kind: w.kind,
        namespace: w.namespace,
        name: w.name,
        images: w.containers.map((c) => c.image),
        annotations: w.annotations,
      })),
    ),
    expected,
  );
});

test('Flux from its cluster directory (--path clusters/production): the HelmRelease outside the path is found in what the releases Kustomization applies', async () => {
  const { seen, origins, analysis } = await enbiWorkloads(join(FIXTURES, 'flux'), 'clusters/production');
  assert.deepEqual(analysis.problems, []);
  assert.deepEqual(seen, (await enbiWorkloads(join(FIXTURES, 'flux'))).seen);
  assert.ok(
    origins.includes('Deployment web ← HelmRelease web/web → charts/web (charts/web/templates/deployment.yaml)'),
    origins.join('\n'),
  );
});

test('a HelmRelease is rendered as its Kustomization applies it: postBuild.substitute in its values counts', async () => {
  const dir = await tempRepo({
    'clusters/prod/flux-system/gotk-sync.yaml': GIT_REPOSITORY,
    'clusters/prod/releases.yaml': `apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: releases, namespace: flux-system}
spec:
  path: ./releases
  sourceRef: {kind: GitRepository, name: flux-system}
  postBuild:
    substitute: {WEB_REV: "${'d'.repeat(40)}"}
`,
    'releases/web.yaml': `apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: web, namespace: web}
spec:
  chart:
    spec: {chart: ./charts/web, sourceRef: {kind: GitRepository, name: flux-system, namespace: flux-system}}
  values:
    image: {tag: "\${WEB_REV}"}
`,
  });
  await cp(join(FIXTURES, 'flux/charts'), join(dir, 'charts'), { recursive: true });
  const { seen, analysis } = await enbiWorkloads(dir);
  assert.deepEqual(analysis.problems, []);
  assert.deepEqual(
    seen.map((s) => s.images[0]),
    [`registry.local/web:${'d'.repeat(40)}`],
  );
  await rm(dir, { recursive: true, force: true });
});

test('at most maxRendersPerPass renders run in one pass; the next pass renders the rest from where it stopped', async () => {
  const cache = new RenderCache();
  const source = { kind: 'dir' as const, root: join(FIXTURES, 'kustomize') };
  const first = await renderSource({ source, tools, cache, maxRendersPerPass: 1 });
  assert.equal(first.stats.renders, 1);
  assert.equal(first.problems.length, 1);
  assert.match(
    first.problems[0]!.message,
    /not rendered in this pass \(more than 1 renders to run\); the next sync renders it$/,
  );
  const second = await renderSource({ source, tools, cache, maxRendersPerPass: 1 });
  assert.deepEqual([second.stats.renders, second.stats.fromCache, second.problems.length], [1, 1, 0]);
});

test('enbi diff on a Git repository (real smart-HTTP server): rendered from the commit, --path finds what its Flux objects apply, a new commit: its tag is planned', async () => {
  const { readdir, readFile } = await import('node:fs/promises');
  const { startGitServer } = await import('../support/git-server.ts');
  const files: Record<string, string> = {};
  const walk = async (dir: string, rel = ''): Promise<void> => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const path = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(dir, path);
      else files[path] = await readFile(join(dir, path), 'utf8');
    }
  };
  await walk(join(FIXTURES, 'flux'));
  const server = await startGitServer();
  const cacheDir = await mkdtemp(join(tmpdir(), 'enbi-render-git-'));
  try {
    // The repository's own GitRepository names it by the URL enbi clones: its Kustomizations are this source's.
    files['clusters/production/flux-system/gotk-sync.yaml'] = files[
      'clusters/production/flux-system/gotk-sync.yaml'
    ]!.replace(FLEET.url, server.url('fleet'));
    await server.createRepo('fleet', files);
    const diff = () => enbiDiff([server.url('fleet'), '--path', 'clusters/production', '--cache-dir', cacheDir]);
    const first = await diff();
    assert.equal(first.code, 2, first.stderr);
    assert.deepEqual(first.report.problems, []);
    const revs = async () => [...new Set((await diff()).report.builds.map((b: { rev: string }) => b.rev))].sort();
    assert.deepEqual([...new Set(first.report.builds.map((b: { rev: string }) => b.rev))].sort(), [
      '5'.repeat(40),
      '7'.repeat(40),
    ]);
    await server.commit('fleet', {
      'clusters/production/apps.yaml': files['clusters/production/apps.yaml']!.replace('5'.repeat(40), 'e'.repeat(40)),
    });
    assert.deepEqual(await revs(), ['7'.repeat(40), 'e'.repeat(40)]);
  } finally {
    await server.close();
    await rm(cacheDir, { recursive: true, force: true });
  }
});

test('a pass starts no render after passTimeoutMs: the rest are problems, nothing is cached for them', async () => {
  const cache = new RenderCache();
  const source = { kind: 'dir' as const, root: join(FIXTURES, 'kustomize') };
  const late = await renderSource({ source, tools, cache, passTimeoutMs: -1 });
  assert.equal(late.stats.renders, 0);
  assert.deepEqual(late.problems.map((p) => p.message).sort(), [
    'kustomize build → apps/hello/overlays/production: not rendered in this pass (renders took longer than 0 s in all); the next sync goes on from the cache',
    'kustomize build → apps/hello/overlays/staging: not rendered in this pass (renders took longer than 0 s in all); the next sync goes on from the cache',
  ]);
  const next = await renderSource({ source, tools, cache });
  assert.deepEqual([next.stats.renders, next.problems.length], [2, 0]);
});

test("a HelmRelease's valuesFiles replace the chart's values.yaml, as Flux merges them: its defaults count only when listed", async () => {
  const release = (valuesFiles: string[]) => `apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: web, namespace: web}
spec:
  chart:
    spec:
      chart: ./charts/web
      sourceRef: {kind: GitRepository, name: flux-system}
      valuesFiles: [${valuesFiles.join(', ')}]
`;
  const flakeOf = async (valuesFiles: string[]) => {
    const dir = await tempRepo({
      'flux-system/gotk-sync.yaml': GIT_REPOSITORY.replace('namespace: flux-system', 'namespace: web'),
      'releases/web.yaml': release(valuesFiles),
    });
    await cp(join(FIXTURES, 'flux/charts'), join(dir, 'charts'), { recursive: true });
    const out = await renderSource({
      source: { kind: 'dir', root: dir },
      tools,
      cache: new RenderCache(),
      repository: FLEET,
    });
    await rm(dir, { recursive: true, force: true });
    assert.deepEqual(out.problems, []);
    const deployment = out.objects.find((o) => o.object.kind === 'Deployment')!.object as {
      spec: { template: { metadata: { annotations: Record<string, string> } } };
    };
    return deployment.spec.template.metadata.annotations['enbi.hrzn.ee/flake'];
  };
  // Without the chart's values.yaml there is no default flake: the template renders none.
  assert.equal(await flakeOf(['./charts/web/values-production.yaml']), null);
  assert.equal(
    await flakeOf(['./charts/web/values.yaml', './charts/web/values-production.yaml']),
    'git+https://git.example.org/web.git?ref=main#image',
  );
});

test('no kustomize anywhere (not in env, PATH or the cache): the problem says what to install', async () => {
  const { code, report } = await enbiDiff(['--dir', join(FIXTURES, 'kustomize')], {
    ENBI_KUSTOMIZE: '',
    ENBI_CACHE_DIR: '/nonexistent',
    PATH: '/usr/bin:/bin',
  });
  assert.equal(code, 6);
  assert.deepEqual(
    report.problems.map((p: { message: string }) => p.message).sort(),
    ['production', 'staging'].map(
      (o) =>
        `kustomize build → apps/hello/overlays/${o}: kustomize is needed and was not found: install it on PATH (go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.1, or bash test/cluster/build-kustomize.sh in enbi's repository) or set ENBI_KUSTOMIZE to its path`,
    ),
  );
});
