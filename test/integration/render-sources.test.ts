// Issue 20: whatever a root points at, `enbi diff` ends the run with a plan. Each case is a small repository in
// test/fixtures/render/cases/<case> (its files under <case>/ and sources/, so that all cases merge into one
// repository), run through the real CLI with the real kustomize (helm where a case has a chart): the root
// that cannot be rendered gets one problem or one "not rendered: <why>" warning naming the object's file and
// the root's path, in the repository's terms, and every other root is still planned.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderTool } from '../support/render-tools.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const CASES = join(ROOT, 'test/fixtures/render/cases');
const kustomize = renderTool('kustomize');

interface Report {
  builds: { rev: string; images: string[]; workloads: string[] }[];
  problems: { file?: string; line?: number; object?: string; message: string }[];
  warnings: { file?: string; line?: number; object?: string; message: string }[];
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `enbi diff --dir` as a user runs it, with the examples' nodes (every image missing), offline. */
function enbiDiff(dir: string, args: string[] = [], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'bin/enbi.js'),
        'diff',
        '--dir',
        dir,
        '--nodes',
        join(ROOT, 'examples/nodes.yaml'),
        '--offline',
        ...args,
      ],
      {
        env: {
          ...process.env,
          KUBECONFIG: '/nonexistent',
          ENBI_KUSTOMIZE: kustomize,
          ENBI_HELM: '/nonexistent/helm',
          ...env,
        },
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The repository the fixtures' Flux GitRepository this-repo and Argo CD repoURLs name, at main. */
const THIS_REPO = ['--source-url', 'https://git.example.org/fleet.git', '--ref', 'main'];

async function diffCase(
  name: string,
  args: string[] = THIS_REPO,
): Promise<{ code: number | null; report: Report; stderr: string }> {
  const run = await enbiDiff(join(CASES, name), [...args, '-o', 'json']);
  assert.equal(run.stderr, '', `${name}: nothing on stderr`);
  return { code: run.code, report: JSON.parse(run.stdout) as Report, stderr: run.stderr };
}

const rev = (c: string) => c.repeat(40);
const revs = (r: Report) => [...new Set(r.builds.map((b) => b.rev))].sort();
const workloads = (r: Report) => [...new Set(r.builds.flatMap((b) => b.workloads))].sort();
const images = (r: Report) => [...new Set(r.builds.flatMap((b) => b.images))].sort();
const lines = (list: Report['warnings']) =>
  list.map((p) =>
    [p.file !== undefined ? `${p.file}${p.line !== undefined ? `:${p.line}` : ''}` : '', p.object, p.message]
      .filter((s) => s !== undefined && s !== '')
      .join(': '),
  );
/** Revisions that must never be planned: what a broken or foreign root would build. */
const NEVER = rev('e');

test('a Flux Kustomization whose path holds only a README: one warning, the other Kustomization planned (was ENOENT, exit 1)', async () => {
  const { code, report } = await diffCase('readme-only');
  assert.equal(code, 2);
  assert.deepEqual(report.problems, []);
  assert.deepEqual(lines(report.warnings), [
    'readme-only/flux.yaml:1: Kustomization flux-system/readme-only-docs: not rendered: readme-only/docs holds no YAML or JSON manifest (only readme-only/docs/README.md)',
  ]);
  assert.deepEqual(revs(report), [rev('1')]);
});

test('an Argo CD Application whose path holds jsonnet: one warning naming it, the other Application planned', async () => {
  const { code, report } = await diffCase('jsonnet');
  assert.equal(code, 2);
  assert.deepEqual(report.problems, []);
  assert.deepEqual(lines(report.warnings), [
    'jsonnet/argo.yaml:1: Application argocd/jsonnet: not rendered: jsonnet/main holds jsonnet (jsonnet/main/main.jsonnet), which enbi does not render',
  ]);
  assert.deepEqual(revs(report), [rev('2')]);
});

test('an Argo CD Application rendered by a config management plugin: one warning, the other Application planned', async () => {
  const { code, report } = await diffCase('plugin');
  assert.equal(code, 2);
  assert.deepEqual(report.problems, []);
  assert.deepEqual(lines(report.warnings), [
    'plugin/argo.yaml:1: Application argocd/plugin: not rendered: a config management plugin (tanka) renders plugin/cmp, and enbi cannot run it',
  ]);
  assert.deepEqual(revs(report), [rev('3')]);
});

test('a Flux Kustomization and an Application naming a directory that does not exist: one warning each, the rest planned', async () => {
  const { code, report } = await diffCase('missing-dir');
  assert.equal(code, 2);
  assert.deepEqual(report.problems, []);
  assert.deepEqual(lines(report.warnings), [
    'missing-dir/flux.yaml:1: Kustomization flux-system/missing-dir: not rendered: spec.path "./missing-dir/nowhere" is not a directory of this repository',
    'missing-dir/argo.yaml:1: Application argocd/missing-dir: not rendered: spec.source.path "missing-dir/gone" is not a directory of this repository',
  ]);
  assert.deepEqual(revs(report), [rev('4')]);
});

test('kustomizations that include each other (a → b → a): one problem saying so, nothing of them planned (was read as plain YAML, exit 2)', async () => {
  const { code, report } = await diffCase('cycle-mutual');
  assert.equal(code, 6);
  assert.deepEqual(lines(report.problems), [
    'cycle-mutual/a/kustomization.yaml: kustomize build → cycle-mutual/a: the kustomizations of cycle-mutual/a, cycle-mutual/b include each other (cycle-mutual/a → cycle-mutual/b → cycle-mutual/a): kustomize refuses a cycle: not rendered',
  ]);
  assert.deepEqual(revs(report), [rev('5')]);
  // kustomize agrees: both directories fail to build as a cycle.
  for (const dir of ['a', 'b'])
    assert.match(await kustomizeError(join(CASES, 'cycle-mutual/cycle-mutual', dir)), /cycle detected/);
});

test('a kustomization that includes its own directory: one problem saying so, the other root planned', async () => {
  const { code, report } = await diffCase('cycle-self');
  assert.equal(code, 6);
  assert.deepEqual(lines(report.problems), [
    'cycle-self/loop/kustomization.yaml: kustomize build → cycle-self/loop: cycle-self/loop/kustomization.yaml includes its own directory (cycle-self/loop → cycle-self/loop): kustomize refuses a cycle: not rendered',
  ]);
  assert.deepEqual(revs(report), [rev('6')]);
  assert.match(await kustomizeError(join(CASES, 'cycle-self/cycle-self/loop')), /cycle detected/);
});

test('a Flux Kustomization from an ExternalArtifact or an unknown kind of source: one warning each, the Kustomization of this repository planned', async () => {
  const { code, report } = await diffCase('unknown-source');
  assert.equal(code, 2);
  assert.deepEqual(report.problems, []);
  assert.deepEqual(lines(report.warnings), [
    'unknown-source/flux.yaml:1: Kustomization flux-system/unknown-source-artifact: not rendered: its source is an ExternalArtifact (made by a Flux ArtifactGenerator in the cluster), which enbi does not render',
    'unknown-source/flux.yaml:14: Kustomization flux-system/unknown-source-odd: not rendered: its sourceRef is a SomethingElse, not a kind of source enbi knows',
  ]);
  assert.deepEqual(revs(report), [rev('7')]);
});

test("kustomize's errors in the repository's terms: the kustomization that failed, never enbi's copy or overlay", async () => {
  const { code, report } = await diffCase('build-error');
  assert.equal(code, 6);
  assert.deepEqual(lines(report.problems), [
    'build-error/flux.yaml:1: Kustomization flux-system/build-error → build-error/overlay: kustomize build failed: Error: build-error/overlay/kustomization.yaml: no resource matches strategic merge patch "Deployment.v1.apps/nothing-by-this-name.[noNs]": no matches for Id Deployment.v1.apps/nothing-by-this-name.[noNs]; failed to find unique target for patch Deployment.v1.apps/nothing-by-this-name.[noNs]',
    "build-error/plain/kustomization.yaml: kustomize build → build-error/plain: kustomize build failed: Error: build-error/plain/kustomization.yaml: accumulating resources from 'broken.yaml': MalformedYAMLError: yaml: line 2: did not find expected ',' or ']' in File: broken.yaml",
  ]);
  assert.deepEqual(revs(report), [rev('8')]);
});

test("objects of other sources are not rendered from this one: team-b's Kustomization and HelmRelease, team-c's Application are listed, this repository's Kustomization planned", async () => {
  const { code, report } = await diffCase('foreign');
  assert.equal(code, 2);
  assert.deepEqual(report.problems, []);
  assert.deepEqual(lines(report.warnings), [
    'foreign/flux.yaml:17: Kustomization flux-system/team-b-apps: another source: https://github.com/team-b/fleet (GitRepository flux-system/team-b, branch main): not rendered',
    'foreign/flux.yaml:34: HelmRelease team-b/team-b-web: another source: https://github.com/team-b/fleet (GitRepository flux-system/team-b, branch main): not rendered',
    'foreign/argo.yaml:1: Application argocd/team-c-web: another source: https://github.com/team-c/fleet.git (targetRevision HEAD): not rendered',
  ]);
  // Rendered once, by this repository's Kustomization: never in team-b's namespace or with its tag.
  assert.deepEqual(images(report), ['registry.local/foreign-web:this-repo']);
});

test('--path below the GitRepository: the sources are looked for in the whole repository, so the same objects are this source or another', async () => {
  const { code, report } = await diffCase('foreign', [...THIS_REPO, '--path', 'foreign']);
  assert.equal(code, 2);
  assert.deepEqual(report.problems, []);
  assert.deepEqual(images(report), ['registry.local/foreign-web:this-repo']);
  assert.equal(
    report.warnings.filter((w) => w.message.startsWith('another source: https://github.com/team-')).length,
    3,
  );
});

test('the same repository written as ssh://…:22 (Flux) and git@host:repo.git (Argo CD): rendered, with their overrides', async () => {
  const { code, report } = await diffCase('url-forms');
  assert.equal(code, 2);
  assert.deepEqual([report.problems, report.warnings], [[], []]);
  assert.deepEqual(images(report), [
    'registry.local/url-forms-argo:this-repo',
    'registry.local/url-forms-flux:this-repo',
  ]);
});

test('this repository at another branch is another source when enbi reads main; refs are not compared when enbi does not know its own', async () => {
  const { code, report } = await diffCase('other-ref');
  assert.equal(code, 2);
  assert.deepEqual(lines(report.warnings), [
    'other-ref/flux.yaml:17: Kustomization flux-system/other-ref-staging: another source: https://git.example.org/fleet.git (GitRepository flux-system/this-repo-staging, branch staging): not rendered (enbi reads main)',
  ]);
  assert.deepEqual(images(report), ['registry.local/other-ref:this-repo']);
  // --source-url alone: the branch is not known, both Kustomizations render.
  const unknownRef = await diffCase('other-ref', ['--source-url', 'https://git.example.org/fleet.git']);
  assert.deepEqual(unknownRef.report.warnings, []);
  assert.deepEqual(images(unknownRef.report), ['registry.local/other-ref:never', 'registry.local/other-ref:this-repo']);
});

test('a sourceRef to a GitRepository that is not in the repository: not rendered, its directory read as plain manifests', async () => {
  const { code, report } = await diffCase('unresolved-source');
  assert.equal(code, 2);
  assert.deepEqual(lines(report.warnings), [
    'unresolved-source/flux.yaml:1: Kustomization flux-system/unresolved: not rendered: its source, GitRepository flux-system/elsewhere, is not in this repository, so which repository it reads is not known',
  ]);
  assert.deepEqual(images(report), [`registry.local/unresolved:${rev('d')}`]);
});

test('enbi diff --dir without --source-url: every source naming a URL is another source, with what to give', async () => {
  const { code, report } = await diffCase('foreign', []);
  assert.equal(code, 2);
  const warnings = lines(report.warnings);
  assert.equal(warnings.length, 4, warnings.join('\n'));
  for (const w of warnings)
    assert.match(
      w,
      /: another source: \S+ \(.*\): not rendered \(the URL of the directory enbi reads is not known: with enbi diff --dir, give --source-url if it is this repository\)$/,
    );
  // Nothing renders foreign/apps: it is read as the plain kustomization it is.
  assert.deepEqual(images(report), [`registry.local/foreign-web:${rev('0')}`]);
});

test('files left out by .enbiignore or --exclude are not read for Flux or Argo CD objects, and the directories they empty are not rendered', async () => {
  const { code, report } = await diffCase('excluded', [...THIS_REPO, '--exclude', 'excluded/drafts']);
  assert.equal(code, 6);
  // excluded/legacy/ (.enbiignore) held a Kustomization and an Application giving the app the tag "never".
  assert.deepEqual(images(report), ['registry.local/excluded-app:this-repo']);
  assert.deepEqual(lines(report.warnings), [
    'excluded/flux.yaml:17: Kustomization flux-system/excluded-drafts: not rendered: spec.path "./excluded/drafts" is excluded (--exclude or .enbiignore)',
  ]);
  assert.deepEqual(lines(report.problems), [
    'excluded/overlay/kustomization.yaml: kustomize build → excluded/overlay: excluded/overlay/kustomization.yaml refers to "../drafts/deployment.yaml", which is excluded (--exclude or .enbiignore): not rendered',
  ]);
});

test('exclusion in renderSource alone (no files handed over): the .enbiignore read from a Git commit or a directory, --exclude on top', async () => {
  const { execFileSync } = await import('node:child_process');
  const { RenderCache } = await import('../../src/render/cache.ts');
  const { renderSource } = await import('../../src/render/index.ts');
  const dir = await mkdtemp(join(tmpdir(), 'enbi-excluded-git-'));
  try {
    await cp(join(CASES, 'excluded'), dir, { recursive: true });
    const git = (...args: string[]) =>
      execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], {
        cwd: dir,
        encoding: 'utf8',
      }).trim();
    git('init', '-q', '-b', 'main');
    git('add', '-A');
    git('commit', '-qm', 'fixture');
    const repository = { url: 'https://git.example.org/fleet.git', ref: 'main' };
    const tools = { kustomize };
    const summary = (r: Awaited<ReturnType<typeof renderSource>>) => ({
      images: r.objects.flatMap((o) => JSON.stringify(o.object).match(/registry\.local\/[^"]+/g) ?? []).sort(),
      warnings: r.warnings.map((w) => `${w.object}: ${w.message}`),
      problems: r.problems.length,
    });
    const fromGit = summary(
      await renderSource({
        source: { kind: 'git', gitdir: join(dir, '.git'), commit: git('rev-parse', 'HEAD') },
        tools,
        cache: new RenderCache(),
        repository,
        exclude: ['excluded/drafts'],
      }),
    );
    const fromDir = summary(
      await renderSource({
        source: { kind: 'dir', root: dir },
        tools,
        cache: new RenderCache(),
        repository,
        exclude: ['excluded/drafts'],
      }),
    );
    assert.deepEqual(fromGit, {
      images: ['registry.local/excluded-app:this-repo'],
      warnings: [
        'Kustomization flux-system/excluded-drafts: not rendered: spec.path "./excluded/drafts" is excluded (--exclude or .enbiignore)',
      ],
      problems: 1,
    });
    assert.deepEqual(fromDir, fromGit);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a kustomize Component no kustomization lists is not a root (was: built alone, "expected kind != \'Component\'"), nor its files manifests; the one listed applies', async () => {
  const { code, report } = await diffCase('component');
  assert.equal(code, 2);
  assert.deepEqual([report.problems, report.warnings], [[], []]);
  assert.deepEqual(revs(report), [rev('a')]);
  // components/eager's patch made the build eager: it starts now.
  const text = await enbiDiff(join(CASES, 'component'), THIS_REPO);
  assert.match(text.stdout, /component-app\/aaaaaaaaaaaa#image\s+x86_64-linux\s+amd-1\s+now/);
  assert.match(text.stdout, /^Read: {3}0 files/m);
});

test('strategic-merge patches that look like a partial Kustomization or HelmRelease are not objects: only what they patch renders (was a phantom Kustomization of the whole repository and "chart.spec.chart is missing")', async () => {
  const { code, report } = await diffCase('patch-files');
  assert.equal(code, 2);
  assert.deepEqual(report.problems, []);
  // The HelmRelease's own warning (its chart is in a Helm repository), once, from its file and line (the
  // Kustomization renders it: traced back to where it is written); none from the patch.
  assert.deepEqual(lines(report.warnings), [
    'patch-files/base/podinfo.yaml:1: HelmRelease podinfo/podinfo: not rendered: chart "podinfo" comes from a HelmRepository, which enbi does not fetch (it renders only what this repository holds)',
  ]);
  // The Kustomization as the cluster's kustomization patches it: its images applied.
  assert.deepEqual(images(report), ['registry.local/patch-app:patched']);
});

test("Argo CD directory apps read as Argo CD reads them: plain files, no kustomize (a generateName hook Job planned), directory.recurse/include/exclude, jsonnet skipped with a warning (was a generated kustomization: 'missing metadata.name', globs ignored)", async () => {
  const { code, report } = await diffCase('argo-directory');
  assert.equal(code, 2);
  assert.deepEqual(report.problems, []);
  assert.deepEqual(lines(report.warnings), [
    "argo-directory/argo.yaml:18: Application argocd/argo-dir-tree: argo-directory/tree/lib/extra.jsonnet: jsonnet, which enbi does not run: skipped (the directory's other manifests are read)",
  ]);
  // In each app's namespace exactly the files Argo CD selects; the files it leaves out are no part of the app
  // (read, as every file no render reads, as plain manifests in "default"), and notes.yaml (not YAML) is skipped.
  assert.deepEqual(workloads(report), [
    'Deployment argo-dir-json/argo-dir-worker',
    'Deployment argo-dir-tree/argo-dir-api',
    'Deployment argo-dir/argo-dir-web',
    'Deployment default/argo-dir-deeper',
    'Deployment default/argo-dir-draft',
    'Deployment default/argo-dir-notjson',
    'Deployment default/argo-dir-tmpl',
    'Job argo-dir/argo-dir-migrate-',
  ]);
  assert.ok(images(report).includes(`registry.local/argo-dir-migrate:${rev('b')}`));
});

test('Argo CD directory mode needs no kustomize: with none installed, the directory apps are planned all the same', async () => {
  const run = await enbiDiff(join(CASES, 'argo-directory'), [...THIS_REPO, '-o', 'json'], {
    ENBI_KUSTOMIZE: '/nonexistent/kustomize',
    PATH: '/nonexistent',
  });
  const report = JSON.parse(run.stdout) as Report;
  assert.deepEqual(report.problems, []);
  assert.ok(workloads(report).includes('Job argo-dir/argo-dir-migrate-'));
});

test("Helm test hooks are no workload of a release: dropped for a plain chart, a HelmRelease and an Application (Argo CD runs no test hook), kept where Flux's spec.test.enable runs them", async () => {
  const run = await enbiDiff(join(CASES, 'helm-tests'), [...THIS_REPO, '-o', 'json'], {
    ENBI_HELM: renderTool('helm'),
  });
  assert.equal(run.stderr, '');
  assert.equal(run.code, 2);
  const report = JSON.parse(run.stdout) as Report;
  assert.deepEqual([report.problems, report.warnings], [[], []]);
  assert.deepEqual(workloads(report), [
    'Deployment default/plain',
    'Deployment helm-tests-argo/helm-tests-argo',
    'Deployment helm-tests-tested/helm-tests-tested',
    'Deployment helm-tests/helm-tests',
    'Pod helm-tests-tested/helm-tests-tested-test-connection',
  ]);
  // helm itself prints the test Pod for every release: what is dropped is enbi's choice, not helm's.
  const { execFileSync } = await import('node:child_process');
  const printed = execFileSync(renderTool('helm'), ['template', 'x', join(CASES, 'helm-tests/helm-tests/chart')], {
    encoding: 'utf8',
  });
  assert.match(printed, /"helm\.sh\/hook": test\n[\s\S]*registry\.local\/helm-tests-probe/);
});

interface Listed {
  manifests: Record<string, number>;
  workloads: {
    id: string;
    file?: string;
    line?: number;
    root: { kind: string; path: string; object?: string; file?: string; line?: number };
    annotated: boolean;
    planned: boolean;
    containers: { name: string; init: boolean; image?: string; flake?: string }[];
  }[];
  images: { image: string; workloads: string[]; flakes: string[] }[];
  problems: unknown[];
  warnings: unknown[];
}

const flake = (repo: string, c: string) => `github:example/${repo}/${rev(c)}#image`;

test('enbi diff --list: every workload and image, annotated or not, with its file and line and the root it was rendered through (plain file, kustomize overlay with images:, HelmRelease of an in-repository chart), with the real kustomize and helm', async () => {
  const env = { ENBI_HELM: renderTool('helm') };
  const args = [...THIS_REPO, '--list'];
  const json = await enbiDiff(join(CASES, 'list'), [...args, '-o', 'json'], env);
  assert.equal(json.stderr, '');
  assert.equal(json.code, 0);
  const list = JSON.parse(json.stdout) as Listed;
  assert.deepEqual([list.problems, list.warnings], [[], []]);
  const rows = list.workloads.map((w) => ({
    id: w.id,
    at: `${w.file}:${w.line ?? '-'}`,
    root: w.root,
    enbi: [w.annotated, w.planned],
    containers: w.containers.map((c) => [c.name, c.init, c.image, c.flake ?? '-']),
  }));
  assert.deepEqual(rows, [
    {
      id: 'CronJob list/list-cleanup',
      at: 'list/plain/cleanup.yaml:2',
      root: { kind: 'file', path: 'list/plain/cleanup.yaml' },
      enbi: [false, false],
      containers: [
        ['wait', true, 'docker.io/library/busybox:1.36', '-'],
        ['cleanup', false, 'docker.io/library/alpine:3.20', '-'],
      ],
    },
    {
      id: 'Deployment list/list-web',
      at: 'list/plain/web.yaml:9',
      root: { kind: 'file', path: 'list/plain/web.yaml' },
      enbi: [true, true],
      containers: [['web', false, `registry.local/list-web:${rev('1')}`, flake('list-web', '1')]],
    },
    {
      // Rendered by helm: the template is the file; a template's lines are not the object's, so no line.
      id: 'Deployment list-helm/list-chart',
      at: 'list/chart/templates/deployment.yaml:-',
      root: {
        kind: 'HelmRelease',
        path: 'list/chart',
        object: 'list-helm/list-chart',
        file: 'list/flux.yaml',
        line: 2,
        origin: 'HelmRelease list-helm/list-chart → list/chart',
      },
      enbi: [true, true],
      containers: [['chart', false, `registry.local/list-chart:${rev('3')}`, flake('list-chart', '3')]],
    },
    {
      // Renamed by the overlay's namePrefix, its tag set by its images:; traced to its line in the base.
      id: 'Deployment list-prod/prod-api',
      at: 'list/base/deployment.yaml:8',
      root: {
        kind: 'kustomization',
        path: 'list/overlay',
        file: 'list/overlay/kustomization.yaml',
        origin: 'kustomize build → list/overlay',
      },
      enbi: [true, true],
      containers: [['api', false, `registry.local/list-api:${rev('2')}`, flake('list-api', '2')]],
    },
  ]);
  assert.deepEqual(list.images, [
    { image: 'docker.io/library/alpine:3.20', workloads: ['CronJob list/list-cleanup'], flakes: [] },
    { image: 'docker.io/library/busybox:1.36', workloads: ['CronJob list/list-cleanup'], flakes: [] },
    {
      image: `registry.local/list-api:${rev('2')}`,
      workloads: ['Deployment list-prod/prod-api'],
      flakes: [flake('list-api', '2')],
    },
    {
      image: `registry.local/list-chart:${rev('3')}`,
      workloads: ['Deployment list-helm/list-chart'],
      flakes: [flake('list-chart', '3')],
    },
    {
      image: `registry.local/list-web:${rev('1')}`,
      workloads: ['Deployment list/list-web'],
      flakes: [flake('list-web', '1')],
    },
  ]);
  assert.deepEqual(
    [list.manifests.workloads, list.manifests.annotated, list.manifests.roots, list.manifests.renderedWorkloads],
    [4, 3, 2, 2],
  );
  // The same list as text, and as YAML; --list reads no cluster (no --nodes, KUBECONFIG unset).
  const text = await enbiDiff(join(CASES, 'list'), args, env);
  assert.equal(text.code, 0);
  assert.match(
    text.stdout,
    /^Read: {3}4 files, 5 documents and 2 rendered roots: 4 workloads \(2 rendered, 3 with enbi annotations\); skipped 1 Helm chart template$/m,
  );
  assert.match(text.stdout, /^Workloads \(4, 3 with enbi annotations\):$/m);
  assert.match(
    text.stdout,
    /^Deployment list-prod\/prod-api +api +registry\.local\/list-api:2{40} +list\/base\/deployment\.yaml:8 +kustomize build → list\/overlay +github:example\/list-api\/2{40}#image$/m,
  );
  assert.match(
    text.stdout,
    /^Deployment list-helm\/list-chart +chart +\S+ +list\/chart\/templates\/deployment\.yaml +HelmRelease list-helm\/list-chart \(list\/flux\.yaml:2\) → list\/chart +github:/m,
  );
  assert.match(
    text.stdout,
    /^CronJob list\/list-cleanup +wait \(init\) +docker\.io\/library\/busybox:1\.36 +list\/plain\/cleanup\.yaml:2 +file +-$/m,
  );
  assert.match(text.stdout, /^Images \(5\):$/m);
  assert.doesNotMatch(text.stdout, /Nodes:|build would start/);
  const yaml = await enbiDiff(join(CASES, 'list'), [...args, '-o', 'yaml'], env);
  assert.equal(yaml.code, 0);
  const { parse } = await import('yaml');
  assert.deepEqual(parse(yaml.stdout), list);
});

test('a HelmRelease enbi cannot render whose values carry enbi annotations: a problem saying so, exit 4 (was a warning, exit 0 and "no workload carries an enbi annotation")', async () => {
  const { code, report } = await diffCase('remote-annotated');
  assert.equal(code, 4);
  assert.deepEqual(report.warnings, []);
  assert.deepEqual(lines(report.problems), [
    'remote-annotated/flux.yaml:3: HelmRelease remote-annotated/remote-annotated: not rendered: chart "podinfo" comes from a HelmRepository, which enbi does not fetch (it renders only what this repository holds); it names enbi annotations (enbi.hrzn.ee/flake), so the workloads they annotate are not planned',
  ]);
  const text = await enbiDiff(join(CASES, 'remote-annotated'), THIS_REPO);
  assert.match(
    text.stdout,
    /^No builds: no workload carries an enbi annotation \(enbi\.hrzn\.ee\/flake\) among those enbi could read; see the problem below\.$/m,
  );
});

test("when the only annotated workload is refused the summary says so and the run exits 4; a rendered workload's problem names its file and line", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-refused-'));
  try {
    const { mkdir, writeFile } = await import('node:fs/promises');
    await mkdir(join(dir, 'base'));
    await mkdir(join(dir, 'prod'));
    await writeFile(join(dir, 'base/kustomization.yaml'), 'resources: [app.yaml]\n');
    await writeFile(
      join(dir, 'base/app.yaml'),
      `apiVersion: v1
kind: Service
metadata: {name: app}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata:
      labels: {app: app}
      annotations: {enbi.hrzn.ee/flake: "not a flake reference"}
    spec: {containers: [{name: app, image: registry.local/app:1}]}
`,
    );
    await writeFile(join(dir, 'prod/kustomization.yaml'), 'resources: [../base]\nnamePrefix: prod-\n');
    const text = await enbiDiff(dir);
    assert.equal(text.code, 4, text.stdout);
    assert.match(
      text.stdout,
      /^Read: {3}0 files, 0 documents and 1 rendered root: 1 workload \(1 rendered, 1 with enbi annotations\); skipped nothing$/m,
    );
    assert.match(
      text.stdout,
      /^No builds: nothing is planned, 1 workload with enbi annotations refused \(see Problems\)\.$/m,
    );
    assert.doesNotMatch(text.stdout, /every image is where it is needed/);
    assert.match(
      text.stdout,
      /^ {2}base\/app\.yaml:5: Deployment default\/prod-app: annotation enbi\.hrzn\.ee\/flake: .*\(rendered by kustomize build → prod\)$/m,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** What `kustomize build DIR` says when it fails. */
function kustomizeError(dir: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(kustomize, ['build', dir]);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve(code === 0 ? '(built)' : stderr));
  });
}

/** Every case merged into one repository (their paths do not overlap; sources/ is the same in each). */
async function mixedRepository(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-mixed-'));
  // helm-tests and list need helm, which the mixed run leaves out (their HelmReleases would each be "helm is needed").
  for (const name of await readdir(CASES))
    if (name !== 'helm-tests' && name !== 'list') await cp(join(CASES, name), dir, { recursive: true });
  return dir;
}

test('enbi diff over one repository mixing every case: exit 6, nothing on stderr, every good root planned, each bad one named once', async () => {
  const dir = await mixedRepository();
  try {
    const args = [...THIS_REPO, '--exclude', 'excluded/drafts'];
    const text = await enbiDiff(dir, args);
    assert.equal(text.code, 6, text.stdout + text.stderr);
    assert.equal(text.stderr, '');
    assert.doesNotMatch(text.stdout, /enbi-render-|\.\.\/\.\.\/tree|ENOENT/);
    // Rendered roots and their workloads are counted apart from the files read as written.
    assert.match(
      text.stdout,
      /^Read: {3}\d+ files, \d+ documents and \d+ rendered roots: \d+ workloads \(\d+ rendered, \d+ with enbi annotations\)/m,
    );
    const { report } = { report: JSON.parse((await enbiDiff(dir, [...args, '-o', 'json'])).stdout) as Report };
    assert.deepEqual(revs(report), ['0', '1', '2', '3', '4', '5', '6', '7', '8', 'a', 'b', 'd', 'f'].map(rev));
    assert.ok(
      !report.builds.some((b) => b.rev === NEVER || b.images.some((i) => i.endsWith(':never'))),
      JSON.stringify(images(report)),
    );
    assert.deepEqual(
      images(report).filter((i) => i.endsWith(':this-repo')),
      ['excluded-app', 'foreign-web', 'other-ref', 'url-forms-argo', 'url-forms-flux'].map(
        (n) => `registry.local/${n}:this-repo`,
      ),
    );
    assert.ok(images(report).includes('registry.local/patch-app:patched'));

    const problems = lines(report.problems);
    const warnings = lines(report.warnings);
    // One line per root that could not be rendered, each also in the text output.
    const expected = [
      /^cycle-mutual\/a\/kustomization\.yaml: kustomize build → cycle-mutual\/a: the kustomizations of cycle-mutual\/a, cycle-mutual\/b include each other/,
      /^cycle-self\/loop\/kustomization\.yaml: kustomize build → cycle-self\/loop: cycle-self\/loop\/kustomization\.yaml includes its own directory/,
      /^build-error\/flux\.yaml:1: Kustomization flux-system\/build-error → build-error\/overlay: kustomize build failed: Error: build-error\/overlay\/kustomization\.yaml: no resource matches/,
      /^build-error\/plain\/kustomization\.yaml: kustomize build → build-error\/plain: kustomize build failed/,
      /^excluded\/overlay\/kustomization\.yaml: kustomize build → excluded\/overlay: .* which is excluded/,
      /^remote-annotated\/flux\.yaml:3: HelmRelease remote-annotated\/remote-annotated: not rendered: .*; it names enbi annotations \(enbi\.hrzn\.ee\/flake\)/,
    ];
    assert.equal(problems.length, expected.length, problems.join('\n'));
    for (const e of expected) assert.equal(problems.filter((p) => e.test(p)).length, 1, `${e}\n${problems.join('\n')}`);
    for (const w of [
      'readme-only/flux.yaml:1: Kustomization flux-system/readme-only-docs: not rendered: readme-only/docs holds no YAML or JSON manifest',
      'jsonnet/argo.yaml:1: Application argocd/jsonnet: not rendered: jsonnet/main holds jsonnet',
      'plugin/argo.yaml:1: Application argocd/plugin: not rendered: a config management plugin (tanka) renders plugin/cmp',
      'missing-dir/flux.yaml:1: Kustomization flux-system/missing-dir: not rendered: spec.path "./missing-dir/nowhere" is not a directory',
      'missing-dir/argo.yaml:1: Application argocd/missing-dir: not rendered: spec.source.path "missing-dir/gone" is not a directory',
      'unknown-source/flux.yaml:1: Kustomization flux-system/unknown-source-artifact: not rendered: its source is an ExternalArtifact',
      'unknown-source/flux.yaml:14: Kustomization flux-system/unknown-source-odd: not rendered: its sourceRef is a SomethingElse',
      'foreign/flux.yaml:17: Kustomization flux-system/team-b-apps: another source: https://github.com/team-b/fleet',
      'foreign/flux.yaml:34: HelmRelease team-b/team-b-web: another source: https://github.com/team-b/fleet',
      'foreign/argo.yaml:1: Application argocd/team-c-web: another source: https://github.com/team-c/fleet.git',
      'other-ref/flux.yaml:17: Kustomization flux-system/other-ref-staging: another source: https://git.example.org/fleet.git (GitRepository flux-system/this-repo-staging, branch staging): not rendered (enbi reads main)',
      'unresolved-source/flux.yaml:1: Kustomization flux-system/unresolved: not rendered: its source, GitRepository flux-system/elsewhere, is not in this repository',
      'excluded/flux.yaml:17: Kustomization flux-system/excluded-drafts: not rendered: spec.path "./excluded/drafts" is excluded',
      'patch-files/base/podinfo.yaml:1: HelmRelease podinfo/podinfo: not rendered: chart "podinfo" comes from a HelmRepository',
      'argo-directory/argo.yaml:18: Application argocd/argo-dir-tree: argo-directory/tree/lib/extra.jsonnet: jsonnet, which enbi does not run: skipped',
    ]) {
      assert.equal(warnings.filter((x) => x.startsWith(w)).length, 1, `${w}\n${warnings.join('\n')}`);
      assert.ok(text.stdout.includes(w), w);
    }
    // Every warning is one of those listed (each root once): nothing from a patch file, nothing twice.
    assert.equal(warnings.length, 15, warnings.join('\n'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
