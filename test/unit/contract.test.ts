import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { renderedSchemas } from '../../src/contract/emit-schemas.ts';
import { analyzeSource } from '../../src/pipeline/analyze.ts';
import { deployment, REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';

const analyze = (text: string, extra: { path: string; text: string }[] = []) =>
  analyzeSource([{ path: 'apps/app.yaml', text }, ...extra]);

test('a flake pinned in the reference builds the exact image the manifest names', () => {
  const a = analyze(yamlDocs(deployment('web', { flake: `github:acme/web/${REV_A}#image`, image: 'web:1.0' })));
  assert.deepEqual(a.problems, []);
  const [need] = a.workloads[0]!.needs;
  assert.equal(need!.image, 'docker.io/library/web:1.0');
  assert.equal(need!.source.rev, REV_A);
  assert.equal(need!.source.revisionFrom, 'flake-ref');
  assert.equal(need!.mode, 'on-demand');
});

test('a full-commit image tag pins an unpinned flake', () => {
  const a = analyze(
    yamlDocs(
      deployment('web', { flake: 'git+https://git.example/web.git?ref=main#image', image: `r.local/web:${REV_B}` }),
    ),
  );
  assert.deepEqual(a.problems, []);
  const need = a.workloads[0]!.needs[0]!;
  assert.equal(need.source.rev, REV_B);
  assert.equal(need.source.revisionFrom, 'image-tag');
  assert.equal(need.source.flake.ref, 'main');
});

test('an input id is pinned by the nearest flake.lock', () => {
  const lock = (rev: string) =>
    JSON.stringify({
      nodes: {
        root: { inputs: { web: 'web_2' } },
        web_2: { locked: { type: 'github', owner: 'acme', repo: 'web', rev } },
      },
      root: 'root',
      version: 7,
    });
  const a = analyze(yamlDocs(deployment('web', { flake: 'web#image' })), [
    { path: 'flake.lock', text: lock(REV_A) },
    { path: 'apps/flake.lock', text: lock(REV_B) },
  ]);
  assert.deepEqual(a.problems, []);
  const need = a.workloads[0]!.needs[0]!;
  assert.equal(need.source.rev, REV_B);
  assert.equal(need.source.lockFile, 'apps/flake.lock');
  assert.equal(need.source.flake.type, 'github');
  assert.equal(need.source.flake.attr, 'image');
});

test('a moving branch is refused with what to do instead', () => {
  const a = analyze(yamlDocs(deployment('web', { flake: 'github:acme/web/main#image', image: 'web:v2' })));
  assert.equal(a.workloads.length, 0);
  assert.match(a.problems[0]!.message, /not pinned: add \?rev=/);
  assert.equal(a.problems[0]!.file, 'apps/app.yaml');
  assert.equal(a.problems[0]!.line, 1);
});

test('bad annotations and images are reported per workload and do not hide the good ones', () => {
  const a = analyze(
    yamlDocs(
      deployment('bad-flake', { flake: 'svn:nope' }),
      deployment('bad-key', { annotations: { 'enbi.hrzn.ee/flakes': 'x' } }),
      deployment('bad-mode', { flake: `github:a/b/${REV_A}`, annotations: { 'enbi.hrzn.ee/build': 'sometimes' } }),
      deployment('latest', { flake: `github:a/b/${REV_A}`, image: 'web:latest' }),
      deployment('digest', { flake: `github:a/b/${REV_A}`, image: `web@sha256:${'0'.repeat(64)}` }),
      deployment('two', {
        flake: `github:a/b/${REV_A}`,
        containers: [
          { name: 'a', image: 'a:1' },
          { name: 'b', image: 'b:1' },
        ],
      }),
      deployment('wrong-name', { annotations: { 'enbi.hrzn.ee/flake.nope': `github:a/b/${REV_A}` } }),
      deployment('good', { flake: `github:a/b/${REV_A}#img` }),
    ),
  );
  assert.deepEqual(
    a.workloads.map((w) => w.workload.name),
    ['good'],
  );
  const byObject = new Map(a.problems.map((p) => [p.object, p.message]));
  assert.match(byObject.get('Deployment default/bad-flake')!, /unsupported scheme/);
  assert.match(byObject.get('Deployment default/bad-key')!, /unknown enbi annotation/);
  assert.match(byObject.get('Deployment default/bad-mode')!, /on-demand|eager/);
  assert.match(byObject.get('Deployment default/latest')!, /moving tag "latest"/);
  assert.match(byObject.get('Deployment default/digest')!, /pinned by digest/);
  assert.match(byObject.get('Deployment default/two')!, /2 containers/);
  assert.match(byObject.get('Deployment default/wrong-name')!, /no container named "nope"/);
  // Each problem points at its own document's line.
  assert.equal(new Set(a.problems.map((p) => p.line)).size, a.problems.length);
});

test('per-container annotations, init containers and the eager mode', () => {
  const w = deployment('multi', {
    containers: [
      { name: 'api', image: 'api:1' },
      { name: 'side', image: 'side:1' },
    ],
    annotations: { 'enbi.hrzn.ee/flake.api': `github:a/b/${REV_A}#api`, 'enbi.hrzn.ee/build': 'eager' },
  });
  const a = analyze(yamlDocs(w));
  assert.deepEqual(a.problems, []);
  assert.deepEqual(
    a.workloads[0]!.needs.map((n) => [n.container, n.mode]),
    [['api', 'eager']],
  );
});

test("the pre-alpha's annotations still work", () => {
  const a = analyze(
    yamlDocs(
      deployment('legacy', {
        image: 'registry.local/app:abc123',
        annotations: {
          'enbi.hrzn.ee/nixbuild-flakeUrl': `git+https://git.example/app.git?rev=${REV_A}`,
          'enbi.hrzn.ee/nixbuild-imageTag': 'abc123',
          'enbi.hrzn.ee/nixbuild-packageName': 'myapp-docker.stream-layered',
        },
      }),
    ),
  );
  assert.deepEqual(a.problems, []);
  const need = a.workloads[0]!.needs[0]!;
  assert.equal(need.source.flake.attr, 'myapp-docker.stream-layered');
  assert.equal(need.source.rev, REV_A);
});

test('workloads without enbi annotations are ignored silently', () => {
  const a = analyze(
    yamlDocs(deployment('plain', {}), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } }),
  );
  assert.deepEqual(a.problems, []);
  assert.deepEqual(a.workloads, []);
});

test('the committed JSON Schemas and CRD are what the zod source generates', async () => {
  for (const [name, text] of Object.entries(renderedSchemas())) {
    const committed = await readFile(new URL(`../../${name}`, import.meta.url), 'utf8');
    assert.equal(committed, text, `${name} is stale: run npm run schemas`);
  }
});
