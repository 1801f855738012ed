// enbi reads YAML as the Go readers that apply it do: the same fixture files given to the real `kustomize build`
// (what Flux and Argo CD build with) and to enbi's scan give the same objects — merge keys (one map, a list,
// explicit keys over merged ones, nested maps, containers), Go's integers, YAML 1.1 words, string maps — and
// the same pod-template annotations, images and nodeSelectors. No cluster; kustomize from the build cache.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { scanFile } from '../../src/manifests/scan.ts';
import { extractWorkloads } from '../../src/manifests/workloads.ts';
import { renderTool } from '../support/render-tools.ts';

const kustomize = renderTool('kustomize');
const FLAKE = 'github:o/r/0123456789abcdef0123456789abcdef01234567#web';

const FILES: Record<string, string> = {
  // The case: an anchor holding the flake annotation, merged into the pod template beside `team: a`.
  'web.yaml': `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations: &enbi
    enbi.hrzn.ee/flake: "${FLAKE}"
    team: base
spec:
  replicas: 010
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations:
        <<: *enbi
        team: a
    spec:
      containers:
      - name: web
        image: nix/web:1
`,
  // A list of merges (the first map holding a key wins), explicit keys written before and after, nested maps,
  // a container built from a merged map.
  'jobs.yaml': `apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  labels: &common {tier: batch, team: ops}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      parallelism: 0x10
      template:
        metadata:
          labels: {<<: *common, app: nightly}
          annotations:
            team: explicit-before
            <<:
            - &flakes
              enbi.hrzn.ee/flake.main: "${FLAKE}"
              enbi.hrzn.ee/build: eager
              team: from-first
            - {enbi.hrzn.ee/build: on-demand, team: from-second, extra: "1"}
        spec:
          nodeSelector:
            <<: [{zone: z1, disk: ssd}, {zone: z2, arch: amd64}]
            disk: nvme
          containers:
          - <<: &main {name: main, image: "nix/main:1", imagePullPolicy: Never}
          - {<<: *main, name: side, image: "nix/side:2"}
          initContainers:
          - {<<: *main, name: init}
          restartPolicy: Never
`,
  // YAML 1.1 words and Go's integers where enbi reads them: the object's own annotations keep the text; its
  // labels, pod templates and nodeSelectors are typed like any value (kustomize writes numbers there).
  'yaml11.yaml': `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  labels: {version: 010, on: yes}
  annotations: {n: 0777, e: ~, hex: 0x1F, alias: &v 010, again: *v}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata:
      labels: {app: agent, version: 010}
      annotations:
        enbi.hrzn.ee/flake: "${FLAKE}"
        n: 0777
        e: ~
        b: yes
        "<<x": y
    spec:
      nodeSelector: {gpu: 010, big: 1e3, on: yes, hex: 0x1F, off: n}
      containers:
      - name: agent
        image: nix/agent:1
        args: [yes, on, off, y, n, 0x1F, 0o17, 010, 1_000, +12, .5, 1e3, "0777"]
        ports: [{containerPort: 0x50}]
`,
  // Flux and Argo CD objects enbi reads fields of: the same readings, merge keys included.
  'gitops.yaml': `apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system}
spec:
  <<: &flux {interval: 10m, prune: yes, sourceRef: {kind: GitRepository, name: repo}}
  path: ./apps
  images:
  - {<<: &img {name: nix/web}, newTag: "010"}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: web, namespace: default}
spec:
  chart: {spec: {chart: ./charts/web, sourceRef: {kind: GitRepository, name: repo, namespace: flux-system}}}
  values:
    defaults: &defaults {replicas: 010, mode: 0o17, debug: on, color: 0x1F, big: 1_000}
    web: {<<: *defaults, replicas: 3}
    list: {<<: [{a: 1}, {a: 2, b: 2}]}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web, namespace: argocd}
spec:
  project: default
  source:
    <<: {repoURL: "https://git.example/repo.git", targetRevision: main}
    path: apps/web
    directory: {recurse: true}
  destination: {server: "https://kubernetes.default.svc", namespace: web}
`,
};

async function fixture(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-yaml-reading-'));
  for (const [path, text] of Object.entries(FILES)) await writeFile(join(dir, path), text);
  await writeFile(join(dir, 'kustomization.yaml'), `resources: [${Object.keys(FILES).join(', ')}]\n`);
  return dir;
}

type Obj = Record<string, unknown>;
const idOf = (o: Obj) => `${String(o.kind)}/${String((o.metadata as Obj).name)}`;
const byId = (objects: Obj[]) => new Map(objects.map((o) => [idOf(o), o]));

/** What kustomize applies: its output, which it writes with every string quoted (nothing left to a reader). */
function kustomizeObjects(dir: string): Obj[] {
  const out = execFileSync(kustomize, ['build', dir], { encoding: 'utf8' });
  return parseAllDocuments(out).map((d) => d.toJS() as Obj);
}

function enbiObjects(): Obj[] {
  return Object.entries(FILES).flatMap(([path, text]) => {
    const scan = scanFile({ path, text });
    assert.deepEqual(scan.problems, [], path);
    return scan.objects.map((o) => o.object);
  });
}

test('the objects enbi reads equal what kustomize builds from the same files, merge keys and YAML 1.1 included', async () => {
  const built = byId(kustomizeObjects(await fixture()));
  const read = byId(enbiObjects());
  assert.deepEqual([...read.keys()].sort(), [...built.keys()].sort());
  for (const [id, object] of read) assert.deepEqual(object, built.get(id), id);
  // The readings the comparison covers, spelled out.
  const web = read.get('Deployment/web') as any;
  assert.deepEqual(web.spec.template.metadata.annotations, { 'enbi.hrzn.ee/flake': FLAKE, team: 'a' });
  assert.equal(web.spec.replicas, 8);
  const job = (read.get('CronJob/nightly') as any).spec.jobTemplate.spec;
  assert.equal(job.parallelism, 16);
  assert.deepEqual(job.template.metadata.annotations, {
    team: 'explicit-before',
    'enbi.hrzn.ee/flake.main': FLAKE,
    'enbi.hrzn.ee/build': 'eager',
    extra: '1',
  });
  assert.deepEqual(job.template.spec.nodeSelector, { zone: 'z1', disk: 'nvme', arch: 'amd64' });
  const daemonSet = read.get('DaemonSet/agent') as any;
  assert.deepEqual(daemonSet.metadata.labels, { version: 8, on: 'yes' });
  assert.deepEqual(daemonSet.metadata.annotations, { n: '0777', e: '~', hex: '0x1F', alias: '010', again: '010' });
  const agent = daemonSet.spec.template;
  assert.deepEqual(agent.metadata.annotations, { 'enbi.hrzn.ee/flake': FLAKE, n: 511, e: null, b: 'yes', '<<x': 'y' });
  assert.deepEqual(agent.spec.nodeSelector, { gpu: 8, big: 1000, on: 'yes', hex: 31, off: 'n' });
  assert.deepEqual(agent.spec.containers[0].args, [
    'yes',
    'on',
    'off',
    'y',
    'n',
    31,
    15,
    8,
    1000,
    12,
    0.5,
    1000,
    '0777',
  ]);
  const values = (read.get('HelmRelease/web') as any).spec.values;
  assert.deepEqual(values.web, { replicas: 3, mode: 15, debug: 'on', color: 31, big: 1000 });
  assert.deepEqual(values.list, { a: 1, b: 2 });
});

test('pod-template annotations, images and nodeSelectors: the same from enbi as from the kustomize build', async () => {
  const seen = (objects: Obj[]) =>
    extractWorkloads(objects.map((object, i) => ({ file: 'x', line: i, object })))
      .workloads.map((w) => ({
        id: `${w.kind}/${w.name}`,
        annotations: w.annotations,
        images: w.containers.map((c) => `${c.name}=${c.image}`),
        nodeSelector: w.scheduling.nodeSelector,
      }))
      .sort((a, b) => a.id.localeCompare(b.id));
  const fromKustomize = seen(kustomizeObjects(await fixture()));
  const fromEnbi = seen(enbiObjects());
  assert.equal(fromEnbi.length, 3);
  assert.deepEqual(fromEnbi, fromKustomize);
  assert.deepEqual(fromEnbi.find((w) => w.id === 'CronJob/nightly')?.images, [
    'init=nix/main:1',
    'main=nix/main:1',
    'side=nix/side:2',
  ]);
});
