// The trust model, pure parts: Git decides what is built and a pod only says where; the allow-lists for
// image names and flake sources; NixBuilds squatting a planned build's name; what proves an image absent.
// The same rules against the real API server and containerd: test/integration/trust.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import type { NixBuild } from '../../src/api/nixbuild.ts';
import { nodeViewOf } from '../../src/cluster/node-view.ts';
import { ConfigError, parseControllerConfig, policyOf } from '../../src/controller/config.ts';
import { adoptionProblem, desiredBuilds, type DesiredInput } from '../../src/controller/desired.ts';
import { specProblem } from '../../src/controller/spec-check.ts';
import { parseFlakeRef } from '../../src/flake/ref.ts';
import { analyzeSource } from '../../src/pipeline/analyze.ts';
import { flakeRefusal, imageRefusal, normalizeFlakeSource, normalizeImagePrefix } from '../../src/plan/allow.ts';
import { imageWaits, ownerWorkloads, podWorkloads } from '../../src/plan/on-demand.ts';
import { deployment, rawNode, REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';

const FLAKE = `github:team/app/${REV_A}#image`;
const IMAGE = `registry.local/app:${REV_A.slice(0, 7)}`;
const POLICY = { images: ['registry.local/'], flakes: ['https://github.com/team/'] };
const git = analyzeSource([
  { path: 'apps/app.yaml', text: yamlDocs(deployment('app', { namespace: 'shop', flake: FLAKE, image: IMAGE })) },
]);
const nodes = new Map([['n1', nodeViewOf(rawNode('n1', {}))]]);

/** A pod of Deployment shop/app as the ReplicaSet controller makes it, waiting for its image. */
function pod(
  o: {
    name?: string;
    namespace?: string;
    image?: string;
    container?: string;
    flake?: string;
    owner?: { kind: string; name: string } | null;
    hash?: string;
    reason?: string;
  } = {},
): V1Pod {
  const hash = o.hash ?? '5d4f8b7c9';
  const owner = o.owner === undefined ? { kind: 'ReplicaSet', name: `app-${hash}` } : o.owner;
  const container = o.container ?? 'app';
  const image = o.image ?? IMAGE;
  return {
    metadata: {
      name: o.name ?? `app-${hash}-x2x9q`,
      namespace: o.namespace ?? 'shop',
      uid: `uid-${o.name ?? 'p'}`,
      labels: { app: 'app', 'pod-template-hash': hash },
      annotations: { 'enbi.hrzn.ee/flake': o.flake ?? FLAKE },
      ...(owner !== null
        ? {
            ownerReferences: [
              { apiVersion: 'apps/v1', kind: owner.kind, name: owner.name, uid: 'o', controller: true },
            ],
          }
        : {}),
    },
    spec: { nodeName: 'n1', containers: [{ name: container, image, imagePullPolicy: 'Never' }] },
    status: {
      phase: 'Pending',
      containerStatuses: [
        {
          name: container,
          image,
          imageID: '',
          ready: false,
          restartCount: 0,
          state: { waiting: { reason: o.reason ?? 'ErrImageNeverPull' } },
        },
      ],
    },
  };
}
const trust = { analysis: git, locks: git.locks, trustedNamespaces: [] as string[], policy: POLICY };

test('a pod of a Git Deployment (ReplicaSet → Deployment by pod-template-hash) builds what Git names, whatever the pod says', () => {
  // The pod's own annotation names another flake: ignored, the flake comes from Git.
  const r = podWorkloads([pod({ flake: `github:evil/payload/${REV_B}#image` })], nodes, trust);
  assert.deepEqual(r.refused, []);
  assert.equal(r.workloads.length, 1);
  assert.equal(r.workloads[0]!.needs[0]!.source.flake.owner, 'team');
  assert.equal(r.workloads[0]!.needs[0]!.image, IMAGE);
  assert.deepEqual(
    r.waiting.map((w) => [w.name, w.via]),
    [[pod().metadata!.name, 'Deployment shop/app']],
  );
});

test('a tenant pod is refused: another image than Git names, a container Git does not build, no Git workload, another namespace', () => {
  const cases: [V1Pod, RegExp][] = [
    // The attack of the issue: a pod naming postgres with its own flake, on a node of its choosing.
    [
      pod({ name: 'evil', owner: null, image: 'postgres:16.4', flake: `github:evil/payload/${REV_B}#image` }),
      /no workload of the Git source matches this pod \(looked for Pod shop\/evil\)/,
    ],
    [
      pod({ image: 'registry.local/app:other' }),
      /runs registry.local\/app:other, but Deployment shop\/app in Git names registry.local\/app:/,
    ],
    [pod({ container: 'sidecar' }), /Deployment shop\/app in Git builds no image for container sidecar/],
    [pod({ namespace: 'tenant' }), /namespace tenant is not among trustedNamespaces/],
    // A ReplicaSet whose name does not end in the pod's hash is not taken for the Deployment's.
    [pod({ owner: { kind: 'ReplicaSet', name: 'app-0000000' } }), /looked for ReplicaSet shop\/app-0000000\)/],
  ];
  for (const [p, why] of cases) {
    const r = podWorkloads([p], nodes, trust);
    assert.equal(r.workloads.length, 0, `${p.metadata?.name}: nothing built`);
    assert.equal(r.refused.length, 1);
    assert.match(r.refused[0]!.reason, why);
    assert.equal(r.refused[0]!.uid, p.metadata?.uid, 'the Event goes to this pod');
  }
});

test("a pod with a forged owner reference on a node Git's placement excludes is refused; the workload's own node still builds", () => {
  const placed = analyzeSource([
    {
      path: 'apps/app.yaml',
      text: yamlDocs(
        deployment('app', {
          namespace: 'shop',
          flake: FLAKE,
          image: IMAGE,
          nodeSelector: { 'kubernetes.io/arch': 'amd64' },
        }),
        deployment('zoned', {
          namespace: 'shop',
          flake: FLAKE,
          image: IMAGE,
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }],
              },
            },
          },
        }),
      ),
    },
  ]);
  const fleet = new Map(
    [
      rawNode('amd', { arch: 'amd64', labels: { zone: 'a' } }),
      rawNode('arm', { arch: 'arm64', labels: { zone: 'b' } }),
    ].map((n) => {
      const v = nodeViewOf(n);
      return [v.name, v];
    }),
  );
  const on = (p: V1Pod, node: string): V1Pod => ({ ...p, spec: { ...p.spec!, nodeName: node } });
  const t = { ...trust, analysis: placed, locks: placed.locks };
  const cases: [V1Pod, RegExp][] = [
    [
      on(pod(), 'arm'),
      /claims to belong to Deployment shop\/app in Git, but its nodeSelector \{"kubernetes.io\/arch":"amd64"\} excludes node arm/,
    ],
    [
      on(pod({ owner: { kind: 'ReplicaSet', name: 'zoned-5d4f8b7c9' } }), 'arm'),
      /Deployment shop\/zoned in Git, but its required node affinity excludes node arm/,
    ],
    [on(pod(), 'gone'), /its node gone is not known to enbi/],
  ];
  for (const [p, why] of cases) {
    const r = podWorkloads([p], fleet, t);
    assert.deepEqual(r.workloads, [], 'nothing planned for that node');
    assert.deepEqual(r.waiting, []);
    assert.equal(r.refused.length, 1);
    assert.match(r.refused[0]!.reason, why);
  }
  const own = podWorkloads([on(pod(), 'amd')], fleet, t);
  assert.deepEqual(own.refused, []);
  assert.deepEqual(
    own.workloads.map((w) => [w.workload.scheduling.nodeName, w.needs.map((n) => n.image)]),
    [['amd', [IMAGE]]],
  );
});

test('trusted namespaces (opt-in) may declare their own flake, still within the allow-lists', () => {
  const mine = pod({
    namespace: 'lab',
    owner: null,
    name: 'p1',
    flake: `github:team/tool/${REV_B}#image`,
    image: 'registry.local/tool:v1',
  });
  const r = podWorkloads([mine], nodes, { ...trust, trustedNamespaces: ['lab'] });
  assert.equal(r.workloads[0]!.needs[0]!.source.flake.repo, 'tool');
  const outside = podWorkloads(
    [pod({ namespace: 'lab', owner: null, flake: `github:evil/payload/${REV_B}#image` })],
    nodes,
    { ...trust, trustedNamespaces: ['lab'] },
  );
  assert.equal(outside.workloads.length, 0);
  assert.match(
    outside.refused[0]!.reason,
    /flake source https:\/\/github.com\/evil\/payload is outside the sources enbi may build/,
  );
  const system = podWorkloads(
    [pod({ namespace: 'lab', owner: null, image: 'registry.k8s.io/kube-proxy:v1.32.0' })],
    nodes,
    { ...trust, trustedNamespaces: ['lab'] },
  );
  assert.match(
    system.refused[0]!.reason,
    /image registry.k8s.io\/kube-proxy:v1.32.0 is outside the prefixes enbi may write/,
  );
});

test('owner chains Kubernetes derives: StatefulSet, DaemonSet, Job, CronJob; unknown owners match nothing', () => {
  const owned = (kind: string, name: string) =>
    ownerWorkloads({
      metadata: { name: 'p', ownerReferences: [{ apiVersion: 'v1', kind, name, uid: 'u', controller: true }] },
    });
  assert.deepEqual(owned('StatefulSet', 'db'), [{ kind: 'StatefulSet', name: 'db' }]);
  assert.deepEqual(owned('DaemonSet', 'agent'), [{ kind: 'DaemonSet', name: 'agent' }]);
  assert.deepEqual(owned('Job', 'backup-29012345'), [
    { kind: 'Job', name: 'backup-29012345' },
    { kind: 'CronJob', name: 'backup' },
  ]);
  assert.deepEqual(owned('Something', 'x'), []);
  assert.deepEqual(ownerWorkloads({ metadata: { name: 'solo' } }), [{ kind: 'Pod', name: 'solo' }]);
});

test('only ErrImageNeverPull or a complete image list proves an image absent; a failed pull never does', () => {
  const cut = new Map([['n1', { ...nodeViewOf(rawNode('n1', {})), imagesComplete: false }]]);
  const complete = new Map([
    ['n1', { ...nodeViewOf(rawNode('n1', { images: ['postgres:16.4'] })), imagesComplete: true }],
  ]);
  const pulling = (reason: string, image = 'postgres:16.4') => ({
    ...pod({ reason, image }),
    spec: { nodeName: 'n1', containers: [{ name: 'app', image, imagePullPolicy: 'Always' }] },
  });
  // imagePullPolicy Always naming someone else's image: the pull fails, the node holds it (or cannot say).
  assert.deepEqual(imageWaits(pulling('ErrImagePull'), cut), []);
  assert.deepEqual(imageWaits(pulling('ImagePullBackOff'), complete), []);
  // A complete list that lacks it is proof; kubelet's ErrImageNeverPull always is.
  assert.equal(imageWaits(pulling('ImagePullBackOff', 'registry.local/x:1'), complete)[0]?.reported, false);
  assert.equal(imageWaits(pod(), cut)[0]?.reported, true);
  // A pod being deleted waits for nothing.
  assert.deepEqual(imageWaits({ ...pod(), metadata: { ...pod().metadata, deletionTimestamp: new Date() } }, cut), []);
});

test('allow-lists: prefixes end in "/", start with a registry; flake sources by whole path segments', () => {
  assert.throws(() => normalizeImagePrefix('registry.local'), /must end with "\/"/);
  assert.throws(() => normalizeImagePrefix('myteam/'), /must start with a registry host/);
  assert.equal(imageRefusal('registry.local/app:v1', ['registry.local/']), undefined);
  assert.match(imageRefusal('nginx:1', ['registry.local/']) ?? '', /docker.io\/library\/nginx:1 is outside/);
  // registry.local.evil.com is not registry.local.
  assert.match(imageRefusal('registry.local.evil.com/app:v1', ['registry.local/']) ?? '', /outside/);
  assert.equal(normalizeFlakeSource('github:team'), 'https://github.com/team/');
  assert.equal(normalizeFlakeSource('git+https://git.example.com/infra'), 'https://git.example.com/infra/');
  assert.throws(
    () => normalizeFlakeSource('https://user:pw@git.example.com/x'),
    /without query, fragment or credentials/,
  );
  const sources = ['https://github.com/team/', 'https://git.example.com/infra/'];
  assert.equal(flakeRefusal(parseFlakeRef(`github:team/app/${REV_A}`), sources), undefined);
  assert.equal(
    flakeRefusal(parseFlakeRef(`git+https://git.example.com/infra/app.git?rev=${REV_A}`), sources),
    undefined,
  );
  assert.match(flakeRefusal(parseFlakeRef(`github:teamevil/app/${REV_A}`), sources) ?? '', /outside the sources/);
  assert.match(
    flakeRefusal(parseFlakeRef(`git+https://git.example.com/infra-evil/app?rev=${REV_A}`), sources) ?? '',
    /outside the sources/,
  );
  assert.match(
    flakeRefusal(parseFlakeRef(`github:team/app/${REV_A}?host=evil.com`), sources) ?? '',
    /https:\/\/evil.com\/team\/app is outside/,
  );
});

test('configuration: no allow-lists, no source and no trusted namespace, credentials in the URL: refused with what to set', () => {
  const base = { builderImage: 'b', importerImage: 'i' };
  assert.throws(
    () => parseControllerConfig({ ...base, source: { url: 'https://git.example/m.git' } }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /set allowedImages: the image reference prefixes/.test(e.message) &&
      /set allowedFlakes/.test(e.message),
  );
  const allowed = { allowedImages: ['registry.local/'], allowedFlakes: ['github:team'] };
  assert.throws(() => parseControllerConfig({ ...base, ...allowed }), /set source .* or list trustedNamespaces/);
  assert.throws(
    () => parseControllerConfig({ ...base, ...allowed, source: { url: 'https://bot:s3cret@git.example/m.git' } }),
    /credentials in source.url .* source.credentialsFile/,
  );
  assert.throws(
    () =>
      parseControllerConfig({
        ...base,
        allowedImages: ['nginx'],
        allowedFlakes: ['ftp://x'],
        trustedNamespaces: ['lab'],
      }),
    (e: unknown) =>
      /allowedImages\[0\]|allowedImages/.test((e as Error).message) &&
      /only http\(s\) flake sources/.test((e as Error).message),
  );
  const ok = parseControllerConfig({ ...base, ...allowed, trustedNamespaces: ['lab'] });
  assert.deepEqual(policyOf(ok), { images: ['registry.local/'], flakes: ['https://github.com/team/'] });
});

const nixBuild = (spec: Partial<NixBuild['spec']>): NixBuild => ({
  apiVersion: 'enbi.hrzn.ee/v1alpha1',
  kind: 'NixBuild',
  metadata: { name: 'x' },
  spec: {
    flakeUrl: `github:team/app/${REV_A}`,
    packageName: 'image',
    system: 'x86_64-linux',
    images: [IMAGE],
    ...spec,
  },
});

test('a hand-written NixBuild outside the allow-lists, or naming latest, a digest or no image, is InvalidSpec', () => {
  assert.equal(specProblem(nixBuild({}), POLICY), undefined);
  assert.match(
    specProblem(nixBuild({ images: ['registry.k8s.io/pause:3.10'] }), POLICY) ?? '',
    /^spec.images: image registry.k8s.io\/pause:3.10 is outside/,
  );
  assert.match(specProblem(nixBuild({ images: ['registry.local/app:latest'] }), POLICY) ?? '', /the moving tag latest/);
  assert.match(
    specProblem(nixBuild({ images: [`registry.local/app@sha256:${'a'.repeat(64)}`] }), POLICY) ?? '',
    /pinned by digest/,
  );
  assert.match(specProblem(nixBuild({ images: [] }), POLICY) ?? '', /spec.images is empty/);
  assert.match(
    specProblem(nixBuild({ flakeUrl: `github:evil/payload/${REV_A}` }), POLICY) ?? '',
    /^spec.flakeUrl: flake source https:\/\/github.com\/evil\/payload is outside/,
  );
  // A full attribute path of another system would make the Job builder throw: caught before any Job.
  assert.match(
    specProblem(nixBuild({ packageName: 'packages.aarch64-linux.image' }), POLICY) ?? '',
    /^spec.packageName: attribute "packages.aarch64-linux.image" is for aarch64-linux, not x86_64-linux/,
  );
});

test('a NixBuild squatting the name of a planned build is not adopted; the planned build is', () => {
  const input: DesiredInput = {
    analysis: git,
    locks: git.locks,
    pods: [pod()],
    nodes: [...nodes.values()],
    existing: [],
    mode: 'spegel',
    defaultBuildMode: 'on-demand',
    builderTolerations: [],
    namespace: 'enbi-system',
    maxConcurrentBuildsPerNode: 1,
    now: new Date(),
    rebuildGraceSeconds: 120,
    trustedNamespaces: [],
    policy: POLICY,
  };
  const planned = desiredBuilds(input).create[0]!;
  assert.equal(adoptionProblem(planned, planned), undefined);
  // Same build, fewer images: the same build (the planned set only grows).
  assert.equal(adoptionProblem({ ...planned, spec: { ...planned.spec, images: [] } }, planned), undefined);
  const squat = { ...planned, spec: { ...planned.spec, images: [IMAGE, 'registry.local/other-team:v3'] } };
  assert.match(
    adoptionProblem(squat, planned) ?? '',
    /spec.images has registry.local\/other-team:v3, which the planned build does not import/,
  );
  const d = desiredBuilds({ ...input, existing: [squat] });
  assert.equal(d.create.length, 0, 'the name is taken: nothing is created under it');
  assert.match(d.notAdopted.get(planned.metadata.name) ?? '', /enbi neither builds nor adopts it/);
  const flake = { ...planned, spec: { ...planned.spec, flakeUrl: `github:team/app/${REV_B}` } };
  assert.match(
    desiredBuilds({ ...input, existing: [flake] }).notAdopted.get(planned.metadata.name) ?? '',
    /spec.flakeUrl is/,
  );
});

test('eager workloads of Git outside the allow-lists are problems, not builds', () => {
  const eager = analyzeSource([
    {
      path: 'a.yaml',
      text: yamlDocs(
        deployment('sys', {
          namespace: 'kube-system',
          flake: FLAKE,
          image: 'registry.k8s.io/kube-proxy:v1.32.0',
          annotations: { 'enbi.hrzn.ee/build': 'eager' },
        }),
      ),
    },
  ]);
  const d = desiredBuilds({
    analysis: eager,
    locks: eager.locks,
    pods: [],
    nodes: [...nodes.values()],
    existing: [],
    mode: 'spegel',
    defaultBuildMode: 'on-demand',
    builderTolerations: [],
    namespace: 'enbi-system',
    maxConcurrentBuildsPerNode: 1,
    now: new Date(),
    rebuildGraceSeconds: 120,
    trustedNamespaces: [],
    policy: POLICY,
  });
  assert.equal(d.create.length, 0);
  assert.match(d.problems[0]?.message ?? '', /registry.k8s.io\/kube-proxy:v1.32.0 is outside the prefixes/);
});

test('credentials in a flake URL are refused wherever a flake comes from, pointing at nixSecretName, never repeated', () => {
  const SECRET = 'glpat-S3cr3tT0ken';
  const carries =
    /carries credentials .*: remove them, and put the token in the Secret that the controller setting nixSecretName names/;
  const clean = (s: string) => assert.ok(!s.includes(SECRET), `the secret is repeated: ${s}`);
  // A NixBuild: InvalidSpec before any Job.
  for (const flakeUrl of [
    `git+https://ci:${SECRET}@github.com/team/app.git?rev=${REV_A}`,
    `git+https://github.com/team/app.git?rev=${REV_A}&access_token=${SECRET}`,
  ]) {
    const why = specProblem(nixBuild({ flakeUrl }), POLICY) ?? '';
    assert.match(why, /^spec\.flakeUrl: flake reference ".*" carries credentials/);
    assert.match(why, carries);
    clean(why);
  }
  // A NixBuild under a planned build's name, or claiming an image Git declares: those refusals name its flake, without the secret.
  const squat =
    adoptionProblem(
      nixBuild({ flakeUrl: `git+https://ci:${SECRET}@github.com/team/app.git?rev=${REV_A}` }),
      nixBuild({}),
    ) ?? '';
  assert.match(squat, /spec.flakeUrl is "git\+https:\/\/\*\*\*@github.com\/team\/app.git\?rev=[0-9a-f]{40}"/);
  clean(squat);
  // A pod of a trusted namespace declaring its own flake.
  const r = podWorkloads(
    [
      pod({
        namespace: 'lab',
        owner: null,
        name: 'p1',
        flake: `git+https://${SECRET}@github.com/team/tool.git?rev=${REV_B}#image`,
        image: 'registry.local/tool:v1',
      }),
    ],
    nodes,
    { ...trust, trustedNamespaces: ['lab'] },
  );
  assert.deepEqual(
    r.workloads.flatMap((w) => w.needs),
    [],
  );
  assert.match(r.problems.map((p) => p.message).join('\n'), carries);
  clean(JSON.stringify(r));
  // A Git manifest, in the annotation and in the pre-alpha's flakeUrl annotation.
  const a = analyzeSource([
    {
      path: 'apps/app.yaml',
      text: yamlDocs(
        deployment('app', {
          namespace: 'shop',
          flake: `git+https://u:${SECRET}@github.com/team/app.git?rev=${REV_A}#image`,
          image: IMAGE,
        }),
      ),
    },
  ]);
  assert.equal(a.workloads.flatMap((w) => w.needs).length, 0);
  assert.match(a.problems.map((p) => p.message).join('\n'), carries);
  clean(JSON.stringify(a));
  // An input of a committed flake.lock whose locked URL carries a token.
  const lock = JSON.stringify({
    nodes: {
      root: { inputs: { app: 'app' } },
      app: { locked: { type: 'git', url: `https://x-access-token:${SECRET}@github.com/team/app.git`, rev: REV_A } },
    },
    root: 'root',
    version: 7,
  });
  const locked = analyzeSource([
    {
      path: 'apps/app.yaml',
      text: yamlDocs(deployment('app', { namespace: 'shop', flake: 'app#image', image: IMAGE })),
    },
    { path: 'apps/flake.lock', text: lock },
  ]);
  assert.equal(locked.workloads.flatMap((w) => w.needs).length, 0);
  assert.match(
    locked.problems.map((p) => p.message).join('\n'),
    /flake input "app" locked in apps\/flake.lock: flake reference "git\+https:\/\/\*\*\*@github.com\/team\/app.git\?rev=[0-9a-f]{40}" carries credentials \(a password in the URL\)/,
  );
  clean(locked.problems.map((p) => p.message).join('\n'));
});
