// The pure steps of rendering: kustomization references, root detection and inputs, Flux/Argo CD objects as
// render requests, overlays, image specs, postBuild substitution, reading rendered output. Each has a
// real-tool counterpart in test/integration/render.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import type { ManifestObject } from '../../src/manifests/scan.ts';
import { parseArgoImage } from '../../src/render/argo-image.ts';
import { kustomizeClosure } from '../../src/render/closure.ts';
import { substitute } from '../../src/render/envsubst.ts';
import { isRemoteRef, kustomizationRefs } from '../../src/render/kustomization.ts';
import { generatedKustomization, overlayKustomization } from '../../src/render/kustomization-text.ts';
import { objectsOfOutput } from '../../src/render/output.ts';
import { joinInside, normalizeDir } from '../../src/render/paths.ts';
import { planRenders } from '../../src/render/plan.ts';
import type { TreeIndex } from '../../src/render/tree-index.ts';

function treeOf(files: Record<string, string>): TreeIndex {
  const paths = Object.keys(files).sort();
  return { paths, hashes: new Map(paths.map((p) => [p, `h:${files[p]}`])), texts: new Map(Object.entries(files)) };
}

const obj = (text: string, file = 'x.yaml'): ManifestObject => ({
  file,
  line: 1,
  object: parse(text) as Record<string, unknown>,
});

/** The repository enbi reads in these tests, and the Flux source that names it. */
const REPO = { url: 'https://git.example.org/fleet.git', ref: 'main' };
const THIS_REPO = obj(
  'apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: flux-system, namespace: flux-system}\nspec: {url: "https://git.example.org/fleet.git", ref: {branch: main}}',
  'flux-system/gotk-sync.yaml',
);

test('kustomizationRefs: local inputs of every field, remote references apart, inline patches not taken for paths', () => {
  const refs = kustomizationRefs(`
resources: [deploy.yaml, ../base, https://github.com/x/y//base?ref=v1, github.com/x/y/base?ref=main]
components: [../components/a]
patches: [{path: p.yaml}, {patch: "- op: remove"}]
patchesStrategicMerge: [psm.yaml, "apiVersion: v1\\nkind: X"]
configMapGenerator: [{name: c, files: [key=conf.txt, other.txt], envs: [a.env]}]
helmCharts: [{name: redis}]
`);
  assert.ok(!('error' in refs));
  assert.deepEqual(refs.local, [
    'deploy.yaml',
    '../base',
    '../components/a',
    'psm.yaml',
    'p.yaml',
    'conf.txt',
    'other.txt',
    'a.env',
  ]);
  assert.deepEqual(refs.remote, ['https://github.com/x/y//base?ref=v1', 'github.com/x/y/base?ref=main']);
  assert.deepEqual(refs.patches, ['psm.yaml', 'p.yaml']);
  assert.equal(refs.unsupported.length, 1);
  assert.ok('error' in kustomizationRefs('resources: [a'));
  assert.equal(isRemoteRef('git@github.com:x/y.git'), true);
  assert.equal(isRemoteRef('../../base'), false);
});

test('paths: references that leave the source are refused', () => {
  assert.equal(joinInside('apps/prod', '../base'), 'apps/base');
  assert.equal(joinInside('apps', '../../etc'), undefined);
  assert.equal(joinInside('apps', '/etc/passwd'), undefined);
  assert.equal(normalizeDir('./apps/prod/'), 'apps/prod');
  assert.equal(normalizeDir('.'), '');
});

test('kustomizeClosure: follows bases and components; a missing or escaping reference refuses the root', () => {
  const tree = treeOf({
    'base/kustomization.yaml': 'resources: [d.yaml]',
    'base/d.yaml': '',
    'base/unused.yaml': '',
    'prod/kustomization.yaml': 'resources: [../base]\npatches: [{path: patches/p.yaml}]',
    'prod/patches/p.yaml': '',
    'bad/kustomization.yaml': 'resources: [../nowhere, ../../outside]',
  });
  const prod = kustomizeClosure(tree, 'prod');
  assert.deepEqual(prod.dirs, ['prod', 'base']);
  assert.deepEqual(prod.files, [
    'base/d.yaml',
    'base/kustomization.yaml',
    'base/unused.yaml',
    'prod/kustomization.yaml',
    'prod/patches/p.yaml',
  ]);
  assert.deepEqual(prod.refusals, []);
  assert.deepEqual(kustomizeClosure(tree, 'bad').refusals, [
    'bad/kustomization.yaml refers to "../nowhere", which does not exist',
    'bad/kustomization.yaml refers to "../../outside", outside the source',
  ]);
});

test('kustomizeClosure: kustomizations that include each other or their own directory are a cycle, said once', () => {
  const tree = treeOf({
    'a/kustomization.yaml': 'resources: [../b]',
    'b/kustomization.yaml': 'resources: [../a, d.yaml]',
    'b/d.yaml': '',
    'self/kustomization.yaml': 'resources: [d.yaml, ../self]',
    'self/d.yaml': '',
    'dot/kustomization.yaml': 'resources: [.]',
    'diamond/kustomization.yaml': 'resources: [../left, ../right]',
    'left/kustomization.yaml': 'resources: [../shared]',
    'right/kustomization.yaml': 'resources: [../shared]',
    'shared/kustomization.yaml': 'resources: []',
  });
  const a = kustomizeClosure(tree, 'a');
  assert.deepEqual(
    [a.dirs, a.cycle, a.refusals],
    [
      ['a', 'b'],
      ['a', 'b', 'a'],
      ['the kustomizations of a, b include each other (a → b → a): kustomize refuses a cycle'],
    ],
  );
  assert.deepEqual(kustomizeClosure(tree, 'self').refusals, [
    'self/kustomization.yaml includes its own directory (self → self): kustomize refuses a cycle',
  ]);
  assert.deepEqual(kustomizeClosure(tree, 'dot').cycle, ['dot', 'dot']);
  // Two ways to one base is no cycle.
  assert.deepEqual(kustomizeClosure(tree, 'diamond').refusals, []);
  // One root for the cycle (its files consumed, so b/d.yaml is not read as a plain manifest), one per self-cycle.
  const plan = planRenders(tree, '', [], REPO);
  assert.deepEqual(
    plan.renders.map((r) => `${r.request.dir}: ${r.refusals.length}`),
    ['a: 1', 'diamond: 0', 'dot: 1', 'self: 1'],
  );
  assert.ok(plan.consumed.has('b/d.yaml'));
  // A root that includes the cycle from outside is the one root.
  const outer = planRenders(
    treeOf({
      ...Object.fromEntries(tree.paths.map((p) => [p, tree.texts.get(p)!])),
      'outer/kustomization.yaml': 'resources: [../a]',
    }),
    '',
    [],
    REPO,
  );
  assert.deepEqual(
    outer.renders.map((r) => r.request.dir).filter((d) => ['a', 'b', 'outer'].includes(d)),
    ['outer'],
  );
});

test("kustomize's messages in the repository's terms: no copy or overlay path, the innermost kustomization named once", async () => {
  const { inRepositoryTerms } = await import('../../src/render/messages.ts');
  const paths = { work: '/tmp/enbi-render-x1', tree: 'tree', overlays: 'overlays' };
  const tree = treeOf({ 'c/kustomization.yaml': '', 'a/kustomization.yaml': '' });
  assert.equal(
    inRepositoryTerms(
      "accumulating resources: accumulation err='accumulating resources from '../../tree/c': '/tmp/enbi-render-x1/tree/c' must resolve to a file': recursed accumulation of path '/tmp/enbi-render-x1/tree/c': accumulating resources: accumulating resources from 'bad.yaml': MalformedYAMLError: yaml: line 1",
      paths,
      tree,
    ),
    "c/kustomization.yaml: accumulating resources from 'bad.yaml': MalformedYAMLError: yaml: line 1",
  );
  assert.equal(
    inRepositoryTerms(
      "recursed accumulation of path '/tmp/enbi-render-x1/tree/a': recursed accumulation of path '/tmp/enbi-render-x1/tree/b': x",
      paths,
      tree,
    ),
    'b: x',
  );
  assert.equal(
    inRepositoryTerms(
      "open /tmp/enbi-render-x1/tree/docs/kustomization.yaml: no such file; lstat '../../tree': x; /tmp/enbi-render-x1/overlays/r3 and /tmp/enbi-render-x1/tree",
      paths,
      tree,
    ),
    "open docs/kustomization.yaml: no such file; lstat '.': x; enbi's overlay and .",
  );
});

test('planRenders: a directory Flux or Argo CD would generate a kustomization for, holding nothing to render, is a warning, not a render', () => {
  const tree = treeOf({
    'docs/README.md': '',
    'jsonnet/main.jsonnet': '',
    'flat/sub/d.yaml': '',
    'nested/app/kustomization.yaml': 'resources: []',
  });
  const ks = (name: string, path: string) =>
    obj(
      `apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: ${name}, namespace: flux-system}\nspec: {path: ${path}, sourceRef: {kind: GitRepository, name: flux-system}}`,
    );
  const app = (name: string, path: string) =>
    obj(
      `apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: ${name}, namespace: argocd}\nspec: {source: {repoURL: ${REPO.url}, path: ${path}}, destination: {namespace: x}}`,
    );
  const plan = planRenders(
    tree,
    '',
    [THIS_REPO, ks('docs', './docs'), app('jsonnet', 'jsonnet'), app('flat', 'flat'), ks('nested', './nested')],
    REPO,
  );
  assert.deepEqual(
    plan.warnings.map((w) => `${w.object}: ${w.message}`),
    [
      'Kustomization flux-system/docs: not rendered: docs holds no YAML or JSON manifest (only docs/README.md)',
      'Application argocd/jsonnet: not rendered: jsonnet holds jsonnet (jsonnet/main.jsonnet), which enbi does not render',
      'Application argocd/flat: not rendered: flat holds no YAML or JSON manifest directly (directory.recurse is off)',
    ],
  );
  // A directory whose only content is a kustomization below it renders (Flux builds it as a resource).
  assert.deepEqual(
    plan.renders.map((r) => `${r.request.by} ${r.request.dir}`),
    ['Kustomization flux-system/nested nested'],
  );
});

test('planRenders: overlays are roots, their bases are not; charts (not subcharts) are roots; an unreferenced directory stays plain', () => {
  const tree = treeOf({
    'base/kustomization.yaml': 'resources: [d.yaml]',
    'base/d.yaml': '',
    'overlays/a/kustomization.yaml': 'resources: [../../base]',
    'overlays/b/kustomization.yaml': 'resources: [../../base]',
    'charts/web/Chart.yaml': '',
    'charts/web/templates/d.yaml': '',
    'charts/web/charts/sub/Chart.yaml': '',
    'plain/job.yaml': '',
  });
  const plan = planRenders(tree, '', [], REPO);
  assert.deepEqual(
    plan.renders.map((r) => `${r.request.kind} ${r.request.dir}`),
    ['kustomize overlays/a', 'kustomize overlays/b', 'helm charts/web'],
  );
  assert.ok(plan.consumed.has('base/d.yaml') && plan.consumed.has('charts/web/charts/sub/Chart.yaml'));
  assert.ok(!plan.consumed.has('plain/job.yaml'));
  // Scoped to overlays/a: the other roots are not rendered.
  assert.deepEqual(
    planRenders(tree, 'overlays/a', [], REPO).renders.map((r) => r.request.dir),
    ['overlays/a'],
  );
});

test('planRenders: a directory a Flux Kustomization or an Argo CD Application renders is rendered through it only, with its overrides', () => {
  const tree = treeOf({
    'apps/prod/kustomization.yaml': 'resources: [d.yaml]',
    'apps/prod/d.yaml': '',
    'apps/raw/d.yaml': '',
    'charts/web/Chart.yaml': '',
    'charts/web/values-prod.yaml': '',
  });
  const objects = [
    obj(
      'apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: apps, namespace: flux-system}\nspec: {path: ./apps/prod, targetNamespace: shop, sourceRef: {kind: GitRepository, name: flux-system}, images: [{name: a, newTag: v2}], postBuild: {substitute: {X: "1"}}}',
    ),
    obj(
      'apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: raw, namespace: flux-system}\nspec: {path: ./apps/raw, sourceRef: {kind: GitRepository, name: flux-system}}',
    ),
    obj(
      'apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: web, namespace: argocd}\nspec: {source: {repoURL: https://git.example.org/fleet.git, path: charts/web, helm: {valueFiles: [values-prod.yaml], values: "a: 1", valuesObject: {b: 2}, parameters: [{name: c, value: "3"}]}}, destination: {namespace: web}}',
    ),
  ];
  const plan = planRenders(tree, '', [THIS_REPO, ...objects], REPO);
  const [apps, raw, web] = plan.renders.map((r) => r.request);
  assert.equal(plan.renders.length, 3);
  assert.deepEqual(apps, {
    kind: 'kustomize',
    by: 'Kustomization flux-system/apps',
    dir: 'apps/prod',
    overlay: { namespace: 'shop', images: [{ name: 'a', newTag: 'v2' }] },
    defaultNamespace: 'shop',
    file: 'x.yaml',
    line: 1,
    substitute: { X: '1' },
  });
  assert.deepEqual(raw?.kind === 'kustomize' ? raw.generate : undefined, { recurse: true });
  assert.deepEqual(web, {
    kind: 'helm',
    by: 'Application argocd/web',
    dir: 'charts/web',
    defaultNamespace: 'web',
    file: 'x.yaml',
    line: 1,
    overlay: {},
    release: 'web',
    valueFiles: ['charts/web/values-prod.yaml'],
    values: [{ a: 1 }, { b: 2 }],
    set: ['c=3'],
  });
  assert.ok(plan.consumed.has('apps/raw/d.yaml'));
});

test('overlays: the generated kustomization carries the overrides and asks for origin annotations', () => {
  const overlay = parse(
    overlayKustomization(['../../apps/prod'], {
      namespace: 'shop',
      images: [{ name: 'a', newTag: 'v2' }],
      patches: [{ patch: 'x', target: { kind: 'Deployment' } }],
    }),
  );
  assert.deepEqual(overlay, {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    resources: ['../../apps/prod'],
    buildMetadata: ['originAnnotations'],
    namespace: 'shop',
    images: [{ name: 'a', newTag: 'v2' }],
    patches: [{ patch: 'x', target: { kind: 'Deployment' } }],
  });
  assert.deepEqual(parse(overlayKustomization(['x'], {})).namespace, undefined);
  assert.deepEqual(parse(generatedKustomization(['a.yaml', 'sub'])).resources, ['a.yaml', 'sub']);
});

test('Argo CD image specs: [old=]new[:tag|@digest]', () => {
  assert.deepEqual(parseArgoImage('registry.local/hello:v2'), { name: 'registry.local/hello', newTag: 'v2' });
  assert.deepEqual(parseArgoImage('hello=registry.local/hello:v2'), {
    name: 'hello',
    newName: 'registry.local/hello',
    newTag: 'v2',
  });
  assert.deepEqual(parseArgoImage('localhost:5000/hello@sha256:abc'), {
    name: 'localhost:5000/hello',
    digest: 'sha256:abc',
  });
  assert.deepEqual(parseArgoImage('localhost:5000/hello'), { name: 'localhost:5000/hello' });
});

test('postBuild.substitute: ${var}, defaults, escapes; unset without default becomes empty', () => {
  const vars = { A: 'x', EMPTY: '' };
  assert.equal(substitute('${A} ${B} ${B:=d} ${EMPTY:-e} ${EMPTY-e} $${A} $A', vars), 'x  d e  ${A} $A');
});

test('rendered output: origin file from kustomize origin annotations (then removed) or helm Source comments; default namespace; substitution skipped when disabled', () => {
  const kustomized = objectsOfOutput(
    'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  annotations:\n    config.kubernetes.io/origin: |\n      path: ../../apps/base/cm.yaml\n  name: c\ndata: {v: "${V}"}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n  namespace: other\n  labels: {kustomize.toolkit.fluxcd.io/substitute: disabled}\ndata: {v: "${V}"}\n',
    {
      origin: 'Kustomization f/apps → apps/prod',
      defaultNamespace: 'shop',
      overlayDir: '.enbi-render/r0',
      substitute: { V: 'set' },
    },
  );
  assert.deepEqual(kustomized.objects, [
    {
      object: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', namespace: 'shop' }, data: { v: 'set' } },
      origin: 'Kustomization f/apps → apps/prod',
      file: 'apps/base/cm.yaml',
    },
    {
      object: {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'd', namespace: 'other', labels: { 'kustomize.toolkit.fluxcd.io/substitute': 'disabled' } },
        data: { v: '${V}' },
      },
      origin: 'Kustomization f/apps → apps/prod',
    },
  ]);
  const helm = objectsOfOutput(
    '---\n# Source: web/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n',
    { origin: 'o', defaultNamespace: 'web', chartDir: 'charts/web' },
  );
  assert.equal(helm.objects[0]?.file, 'charts/web/templates/deployment.yaml');
  assert.equal(objectsOfOutput('a: [', { origin: 'o', defaultNamespace: 'x' }).problems.length, 1);
});

test('helm template arguments: values as --flag=value; a release name or namespace that could be a flag is refused', async () => {
  const { helmTemplateArgs } = await import('../../src/render/helm-args.ts');
  const base = {
    kind: 'helm' as const,
    by: 'b',
    dir: 'charts/web',
    overlay: {},
    defaultNamespace: 'web',
    release: 'web',
    valueFiles: ['charts/web/v.yaml'],
    values: [],
    set: ['a=b'],
  };
  assert.deepEqual(helmTemplateArgs(base, ['.enbi-render/r0/values-0.json'], '1.34.0'), [
    'template',
    'web',
    './charts/web',
    '--namespace=web',
    '--kube-version=1.34.0',
    '--values=./charts/web/v.yaml',
    '--values=./.enbi-render/r0/values-0.json',
    '--set=a=b',
  ]);
  assert.match(
    (helmTemplateArgs({ ...base, release: '--post-renderer=/bin/sh' }, [], '1.34.0') as { error: string }).error,
    /not a valid Helm release name/,
  );
  assert.match(
    (helmTemplateArgs({ ...base, defaultNamespace: '-x' }, [], '1.34.0') as { error: string }).error,
    /not a valid namespace/,
  );
});

test('planRenders: a HelmRelease chartRef to an in-repository HelmChart; a chart from a registry is a warning', () => {
  const tree = treeOf({ 'charts/web/Chart.yaml': '', 'charts/web/values-prod.yaml': '' });
  const objects = [
    obj(
      'apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmChart\nmetadata: {name: web, namespace: flux-system}\nspec: {chart: ./charts/web, sourceRef: {kind: GitRepository, name: flux-system}, valuesFiles: [./charts/web/values-prod.yaml]}',
    ),
    obj(
      'apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: web, namespace: flux-system}\nspec: {targetNamespace: shop, chartRef: {kind: HelmChart, name: web}, values: {a: 1}}',
    ),
    obj(
      'apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: oci, namespace: flux-system}\nspec: {chartRef: {kind: OCIRepository, name: podinfo}}',
    ),
  ];
  const plan = planRenders(tree, '', [THIS_REPO, ...objects], REPO);
  assert.deepEqual(
    plan.renders.map((r) => r.request),
    [
      {
        kind: 'helm',
        by: 'HelmRelease flux-system/web',
        dir: 'charts/web',
        overlay: {},
        defaultNamespace: 'shop',
        release: 'shop-web',
        valueFiles: ['charts/web/values-prod.yaml'],
        withoutChartValues: true,
        values: [{ a: 1 }],
        set: [],
        file: 'x.yaml',
        line: 1,
      },
    ],
  );
  assert.deepEqual(
    plan.warnings.map((w) => `${w.object}: ${w.message}`),
    [
      'HelmRelease flux-system/oci: not rendered: its chartRef is an OCIRepository, a chart in a registry, which enbi does not fetch (it renders only what this repository holds)',
    ],
  );
});

test('discovery: a rendered Flux object replaces the written one it was built from; new ones are added', async () => {
  const { gitopsOfRendered, mergeGitops, sameGitops } = await import('../../src/render/discover.ts');
  const hr = (tag: string) => ({
    apiVersion: 'helm.toolkit.fluxcd.io/v2',
    kind: 'HelmRelease',
    metadata: { name: 'web', namespace: 'web' },
    spec: { values: { tag } },
  });
  const written = [{ file: 'releases/web.yaml', line: 1, object: hr('${REV}') }];
  const rendered = gitopsOfRendered([
    { object: hr('abc'), file: 'releases/web.yaml', origin: 'Kustomization f/releases → releases' },
    { object: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }, origin: 'o' },
    { object: { ...hr('x'), metadata: { name: 'other' } }, file: 'releases/other.yaml', origin: 'o' },
  ]);
  const merged = mergeGitops(written, rendered);
  assert.deepEqual(
    merged.map((m) => [m.file, m.line, (m.object.spec as { values: { tag: string } }).values.tag]),
    [
      ['releases/web.yaml', 0, 'abc'],
      ['releases/other.yaml', 0, 'x'],
    ],
  );
  assert.equal(sameGitops(merged, mergeGitops(written, rendered)), true);
  assert.equal(sameGitops(merged, written), false);
});

test('planRenders: a kustomization inside a Flux path without one is built by that Kustomization only, not again on its own', () => {
  const tree = treeOf({
    'clusters/prod/apps.yaml': '',
    'clusters/prod/flux-system/kustomization.yaml': 'resources: [gotk-sync.yaml]',
    'clusters/prod/flux-system/gotk-sync.yaml': '',
  });
  const plan = planRenders(
    tree,
    '',
    [
      THIS_REPO,
      obj(
        'apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: flux-system, namespace: flux-system}\nspec: {path: ./clusters/prod, sourceRef: {kind: GitRepository, name: flux-system}}',
      ),
    ],
    REPO,
  );
  assert.deepEqual(
    plan.renders.map((r) => `${r.request.by} ${r.request.dir}`),
    ['Kustomization flux-system/flux-system clusters/prod'],
  );
  assert.deepEqual(plan.renders[0]!.inputs, [
    'clusters/prod/apps.yaml',
    'clusters/prod/flux-system/gotk-sync.yaml',
    'clusters/prod/flux-system/kustomization.yaml',
  ]);
});

test('render cache keys: the same request hashes alike whatever its key order', async () => {
  const { canonicalJson, renderKey } = await import('../../src/render/cache.ts');
  assert.equal(canonicalJson({ b: [1, { d: 1, c: undefined, a: 2 }], a: 'x' }), '{"a":"x","b":[1,{"a":2,"d":1}]}');
  const hashes = new Map([['a.yaml', 'h1']]);
  const key = (request: unknown, h = hashes) => renderKey({ request, tool: 'k', inputs: ['a.yaml'], hashes: h });
  assert.equal(key({ x: 1, y: 2 }), key({ y: 2, x: 1 }));
  assert.notEqual(key({ x: 1 }), key({ x: 1 }, new Map([['a.yaml', 'h2']])));
});

test('rendered output: a List is its items; an ApplicationSet is a warning that its Applications are not rendered', () => {
  const out = objectsOfOutput(
    'apiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n  - {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n',
    { origin: 'o', defaultNamespace: 'n' },
  );
  assert.deepEqual(
    out.objects.map((o) => (o.object.metadata as { name: string }).name),
    ['a', 'b'],
  );
  const plan = planRenders(
    treeOf({}),
    '',
    [
      obj(
        'apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {name: apps, namespace: argocd}\nspec: {}',
      ),
    ],
    REPO,
  );
  assert.match(plan.warnings[0]!.message, /ApplicationSet generators .* are not rendered/);
});

test('rendered output: an alias bomb or a substitution that breaks the YAML is a problem for that object, the others still read', () => {
  const aliases = Array.from({ length: 150 }, () => '*a').join(', ');
  const bomb = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata: {x: &a "y", list: [${aliases}]}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n`;
  const out = objectsOfOutput(bomb, { origin: 'o', defaultNamespace: 'n' });
  assert.deepEqual(
    out.objects.map((o) => (o.object.metadata as { name: string }).name),
    ['fine'],
  );
  assert.match(out.problems[0]!.message, /^rendered output: .*alias/i);
  const broken = objectsOfOutput('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  v: ${V}\n', {
    origin: 'o',
    defaultNamespace: 'n',
    substitute: { V: '{unclosed' },
  });
  assert.deepEqual(broken.objects, []);
  assert.match(broken.problems[0]!.message, /^ConfigMap c: not valid YAML after postBuild.substitute/);
});

test('repository URLs compared whatever their form: scheme, user, port, .git, trailing slash, case, scp-like ssh, Azure DevOps', async () => {
  const { normalizeRepoUrl, sameRepository } = await import('../../src/render/source-match.ts');
  const forms = [
    'https://github.com/Org/Repo',
    'https://github.com/org/repo.git',
    'https://github.com/org/repo/',
    'http://user@github.com:443/org/repo.git/',
    'ssh://git@github.com/org/repo.git',
    'ssh://git@github.com:22/org/repo',
    'git@github.com:org/repo.git',
    'git@github.com:org/repo',
    'https://www.github.com/org/repo',
  ];
  for (const f of forms) assert.equal(normalizeRepoUrl(f), 'github.com/org/repo', f);
  assert.equal(
    sameRepository('https://dev.azure.com/org/proj/_git/repo', 'git@ssh.dev.azure.com:v3/org/proj/repo'),
    true,
  );
  assert.equal(
    sameRepository('https://org.visualstudio.com/proj/_git/repo', 'https://org@dev.azure.com/org/proj/_git/repo'),
    true,
  );
  assert.equal(sameRepository('https://github.com/org/repo', 'https://github.com/org/repo-b'), false);
  assert.equal(sameRepository('https://github.com/team-b/apps', 'https://gitlab.com/team-b/apps'), false);
  assert.equal(sameRepository('oci://ghcr.io/org/manifests', 'oci://ghcr.io/org/manifests'), true);
});

test('Flux sourceRefs and Argo CD repoURLs: rendered only from the repository and ref enbi reads; anything else is another source', async () => {
  const { argoSourceVerdict, fluxSourceVerdict } = await import('../../src/render/source-match.ts');
  const git = (name: string, url: string, ref: string) =>
    obj(
      `apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: ${name}, namespace: flux-system}\nspec: {url: "${url}", ref: ${ref}}`,
    );
  const objects = [
    git('ssh', 'ssh://git@git.example.org/fleet', '{branch: main}'),
    git('team-b', 'https://github.com/team-b/apps', '{branch: main}'),
    git('staging', 'https://git.example.org/fleet.git', '{branch: staging}'),
    git('tag', 'https://git.example.org/fleet.git', '{tag: v1, branch: main}'),
    git('semver', 'https://git.example.org/fleet.git', '{semver: ">=1.0.0"}'),
    git('pinned', 'https://git.example.org/fleet.git', `{commit: ${'a'.repeat(40)}}`),
    git('named', 'https://git.example.org/fleet.git', '{name: refs/heads/main}'),
    git('no-ref', 'https://git.example.org/fleet.git', '{}'),
    obj(
      'apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata: {name: oci, namespace: flux-system}\nspec: {url: "oci://ghcr.io/org/manifests"}',
    ),
    obj(
      'apiVersion: source.toolkit.fluxcd.io/v1\nkind: Bucket\nmetadata: {name: bucket, namespace: flux-system}\nspec: {endpoint: minio.example.org, bucketName: fleet}',
    ),
  ];
  const repo = { url: 'https://git.example.org/fleet.git', ref: 'main', commit: 'a'.repeat(40) };
  const flux = (name: string, kind = 'GitRepository', r: object = repo) =>
    fluxSourceVerdict({ kind, name }, 'flux-system', objects, r);
  assert.equal(flux('ssh'), undefined);
  assert.equal(flux('named'), undefined);
  assert.equal(flux('semver'), undefined, 'a semver range is not compared');
  assert.equal(flux('pinned'), undefined);
  assert.equal(
    flux('team-b'),
    'another source: https://github.com/team-b/apps (GitRepository flux-system/team-b, branch main): not rendered',
  );
  assert.equal(
    flux('staging'),
    'another source: https://git.example.org/fleet.git (GitRepository flux-system/staging, branch staging): not rendered (enbi reads main)',
  );
  assert.equal(
    flux('tag'),
    'another source: https://git.example.org/fleet.git (GitRepository flux-system/tag, tag v1): not rendered (enbi reads main)',
  );
  // Without spec.ref, Flux reads master.
  assert.equal(
    flux('no-ref'),
    'another source: https://git.example.org/fleet.git (GitRepository flux-system/no-ref, branch master): not rendered (enbi reads main)',
  );
  assert.equal(
    flux('pinned', 'GitRepository', { ...repo, commit: 'b'.repeat(40) }),
    `another source: https://git.example.org/fleet.git (GitRepository flux-system/pinned, commit ${'a'.repeat(40)}): not rendered (enbi reads commit ${'b'.repeat(40)})`,
  );
  assert.equal(
    flux('oci', 'OCIRepository'),
    'another source: oci://ghcr.io/org/manifests (OCIRepository flux-system/oci): not rendered',
  );
  assert.equal(
    flux('bucket', 'Bucket'),
    'another source: s3://minio.example.org/fleet (Bucket flux-system/bucket): not rendered',
  );
  assert.equal(
    flux('gone'),
    'not rendered: its source, GitRepository flux-system/gone, is not in this repository, so which repository it reads is not known',
  );
  // A ref enbi does not know (a directory given --source-url only) is not compared.
  assert.equal(flux('staging', 'GitRepository', { url: repo.url }), undefined);
  // No URL known (a directory without --source-url): every source that names one is another.
  assert.match(
    flux('ssh', 'GitRepository', {})!,
    /^another source: ssh:\/\/git@git\.example\.org\/fleet \(GitRepository flux-system\/ssh, branch main\): not rendered \(the URL of the directory enbi reads is not known: with enbi diff --dir, give --source-url if it is this repository\)$/,
  );
  const argo = (repoURL: string | undefined, targetRevision?: string, r: object = repo) =>
    argoSourceVerdict(
      {
        ...(repoURL !== undefined ? { repoURL } : {}),
        ...(targetRevision !== undefined ? { targetRevision } : {}),
        path: 'apps',
      },
      r,
    );
  assert.equal(argo('git@git.example.org:fleet.git'), undefined);
  assert.equal(argo('https://git.example.org/fleet', 'HEAD'), undefined);
  assert.equal(argo('https://git.example.org/fleet', 'refs/heads/main'), undefined);
  assert.equal(argo('https://git.example.org/fleet', '1.*'), undefined);
  assert.equal(
    argo('https://github.com/team-c/apps.git'),
    'another source: https://github.com/team-c/apps.git (targetRevision HEAD): not rendered',
  );
  assert.equal(
    argo('https://git.example.org/fleet', 'staging'),
    'another source: https://git.example.org/fleet (targetRevision staging): not rendered (enbi reads main)',
  );
  assert.equal(argo(undefined), 'not rendered: its source has no repoURL');
});

test('exclusion: left-out files leave the index, directories they empty are remembered as excluded, a reference to them says so', async () => {
  const { withoutExcluded } = await import('../../src/render/tree-index.ts');
  const tree = treeOf({
    'apps/a/kustomization.yaml': 'resources: [../drafts, d.yaml]',
    'apps/a/d.yaml': '',
    'apps/drafts/d.yaml': '',
    'apps/drafts/sub/e.yaml': '',
    'legacy/flux.yaml': '',
  });
  const kept = withoutExcluded(tree, (p) => p.startsWith('apps/drafts/') || p.startsWith('legacy/'));
  assert.deepEqual(kept.paths, ['apps/a/d.yaml', 'apps/a/kustomization.yaml']);
  assert.deepEqual([...kept.excluded!].sort(), [
    'apps/drafts',
    'apps/drafts/d.yaml',
    'apps/drafts/sub',
    'apps/drafts/sub/e.yaml',
    'legacy',
    'legacy/flux.yaml',
  ]);
  assert.deepEqual(kustomizeClosure(kept, 'apps/a').refusals, [
    'apps/a/kustomization.yaml refers to "../drafts", which is excluded (--exclude or .enbiignore)',
  ]);
  assert.equal(
    withoutExcluded(tree, () => false),
    tree,
  );
});

test('planRenders: a kustomize Component nothing lists is not a root and its files are not manifests; one an overlay lists is its input', () => {
  const component = 'apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches: [{path: patch.yaml}]';
  const tree = treeOf({
    'components/unused/kustomization.yaml': component,
    'components/unused/patch.yaml': '',
    'components/used/kustomization.yaml': component,
    'components/used/patch.yaml': '',
    'app/kustomization.yaml': 'resources: [d.yaml]\ncomponents: [../components/used]',
    'app/d.yaml': '',
  });
  const plan = planRenders(tree, '', [], REPO);
  assert.deepEqual(
    plan.renders.map((r) => r.request.dir),
    ['app'],
  );
  assert.ok(plan.renders[0]!.inputs.includes('components/used/patch.yaml'));
  assert.ok(
    plan.consumed.has('components/unused/patch.yaml') && plan.consumed.has('components/unused/kustomization.yaml'),
  );
});

test('patchOnlyFiles: files kustomizations use only as patches, never one also listed as a resource', async () => {
  const { patchOnlyFiles } = await import('../../src/render/closure.ts');
  const tree = treeOf({
    'clusters/kustomization.yaml':
      'resources: [../base]\npatches: [{path: values.yaml, target: {kind: HelmRelease}}, {path: ../shared/both.yaml}]\npatchesStrategicMerge: [psm.yaml]',
    'clusters/values.yaml': '',
    'clusters/psm.yaml': '',
    'base/kustomization.yaml': 'resources: [release.yaml, ../shared/both.yaml]',
    'base/release.yaml': '',
    'shared/both.yaml': '',
  });
  assert.deepEqual([...patchOnlyFiles(tree)].sort(), ['clusters/psm.yaml', 'clusters/values.yaml']);
});
