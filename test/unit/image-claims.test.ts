// One owner per image name (issue 19), pure parts: an image name the Git source declares is built only
// from the flake Git declares it with. A pod of a trusted namespace declaring another flake for it, and a
// NixBuild of another flake naming it, are refused, the refusal naming both claimants; the same flake is
// no claim at all; names Git does not declare are not guarded here. The same against the real API server:
// test/integration/image-claims.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import type { NixBuild } from '../../src/api/nixbuild.ts';
import { nodeViewOf } from '../../src/cluster/node-view.ts';
import { nextState, Reason } from '../../src/controller/build-state.ts';
import { desiredBuilds, type DesiredInput } from '../../src/controller/desired.ts';
import { analyzeSource } from '../../src/pipeline/analyze.ts';
import { collidingClaims, gitClaims, nixBuildClaimProblem } from '../../src/plan/claims.ts';
import { podWorkloads } from '../../src/plan/on-demand.ts';
import { deployment, rawNode, REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';

const FLAKE = `github:team/app/${REV_A}#image`;
const IMAGE = `registry.local/app:${REV_A.slice(0, 7)}`;
const POLICY = { images: ['registry.local/'], flakes: ['https://github.com/team/'] };
const git = analyzeSource([
  { path: 'apps/app.yaml', text: yamlDocs(deployment('app', { namespace: 'shop', flake: FLAKE, image: IMAGE })) },
]);
const nodes = new Map([['n1', nodeViewOf(rawNode('n1', {}))]]);
const trust = { analysis: git, locks: git.locks, trustedNamespaces: ['lab'], policy: POLICY };

/** A bare pod of trusted namespace lab declaring its own flake for an image, waiting for it on n1. */
function labPod(
  name: string,
  image: string,
  flake: string,
  containers: { name: string; image: string }[] = [{ name: 'app', image }],
): V1Pod {
  const annotations =
    containers.length === 1
      ? { 'enbi.hrzn.ee/flake': flake }
      : Object.fromEntries(containers.map((c) => [`enbi.hrzn.ee/flake.${c.name}`, flake]));
  return {
    metadata: { name, namespace: 'lab', uid: `uid-${name}`, annotations },
    spec: { nodeName: 'n1', containers: containers.map((c) => ({ ...c, imagePullPolicy: 'Never' })) },
    status: {
      phase: 'Pending',
      containerStatuses: containers.map((c) => ({
        name: c.name,
        image: c.image,
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { waiting: { reason: 'ErrImageNeverPull' } },
      })),
    },
  };
}

test("Git's claims: every image name a Git workload declares, with its flake and workload", () => {
  const claims = gitClaims(git.workloads);
  assert.deepEqual([...claims.keys()], [IMAGE]);
  assert.equal(claims.get(IMAGE)![0]!.workload, 'Deployment shop/app');
  assert.equal(claims.get(IMAGE)![0]!.flake, FLAKE);
  // The same flake (however written: attribute path, no attribute) is the same claimant; another flake,
  // revision or attribute is another.
  const key = (flake: string, attr: string) => `${flake}\0${attr}`;
  assert.equal(collidingClaims(claims, IMAGE, claims.get(IMAGE)![0]!.key).length, 0);
  assert.equal(
    collidingClaims(claims, 'registry.local/other:v1', key('x', 'y')).length,
    0,
    'a name Git does not declare collides with nothing',
  );
  assert.equal(collidingClaims(claims, IMAGE, undefined).length, 1, 'an unreadable flake collides');
  assert.equal(
    nixBuildClaimProblem(
      'ns/a',
      { flakeUrl: `github:team/app/${REV_A}`, packageName: 'packages.x86_64-linux.image', images: [IMAGE] },
      claims,
    ),
    undefined,
  );
  assert.equal(
    nixBuildClaimProblem(
      'ns/a',
      { flakeUrl: `github:team/app/${REV_A}`, packageName: 'image', images: ['registry.local/app:other'] },
      claims,
    ),
    undefined,
  );
  for (const spec of [
    { flakeUrl: `github:team/app/${REV_B}`, packageName: 'image' },
    { flakeUrl: `github:team/app/${REV_A}`, packageName: 'debug-image' },
    { flakeUrl: `github:team/tool/${REV_A}`, packageName: 'image' },
  ]) {
    const why = nixBuildClaimProblem(
      'enbi-system/hand',
      { ...spec, images: ['registry.local/tool:v1', IMAGE] },
      claims,
    );
    assert.match(
      why ?? '',
      new RegExp(
        `image ${IMAGE} is claimed twice: Deployment shop/app in Git builds it from ${FLAKE.replace(/[/#]/g, '.')}, and NixBuild enbi-system/hand builds it from ${spec.flakeUrl.replace(/[/#]/g, '.')}#${spec.packageName}`,
      ),
    );
  }
  // No Git source: no claims.
  assert.equal(gitClaims(undefined).size, 0);
});

test("a trusted pod declaring another flake for Git's image name is refused, naming both; its other containers and the same flake are not", () => {
  const evil = `github:team/tool/${REV_B}#image`;
  const r = podWorkloads([labPod('claim', IMAGE, evil)], nodes, trust);
  assert.equal(r.workloads.length, 0, 'nothing planned for the claimant');
  assert.equal(r.refused.length, 1);
  assert.equal(r.refused[0]!.uid, 'uid-claim', 'the Event goes to the claiming pod');
  assert.match(
    r.refused[0]!.reason,
    new RegExp(
      `image ${IMAGE} is claimed twice: Deployment shop/app in Git builds it from ${FLAKE.replace(/[/#]/g, '.')}, and pod lab/claim \\(trusted namespace\\) declares ${evil.replace(/[/#]/g, '.')} for container app`,
    ),
  );
  // The same flake Git declares: no claim, the build Git declares.
  const same = podWorkloads([labPod('same', IMAGE, FLAKE)], nodes, trust);
  assert.deepEqual(same.refused, []);
  assert.equal(same.workloads[0]!.needs[0]!.image, IMAGE);
  // Two containers: the one on Git's name is refused, the other (a name of its own) is planned.
  const two = podWorkloads(
    [
      labPod('two', IMAGE, evil, [
        { name: 'app', image: IMAGE },
        { name: 'tool', image: 'registry.local/tool:v1' },
      ]),
    ],
    nodes,
    trust,
  );
  assert.deepEqual(
    two.refused.map((x) => x.container),
    ['app'],
  );
  assert.deepEqual(
    two.workloads[0]!.needs.map((n) => [n.container, n.image]),
    [['tool', 'registry.local/tool:v1']],
  );
  // A name Git does not declare stays the trusted namespace's to declare.
  assert.equal(podWorkloads([labPod('own', 'registry.local/tool:v1', evil)], nodes, trust).workloads.length, 1);
});

test('while a configured Git source is unread, trusted pods wait: no claim is granted before Git says what it declares', () => {
  const r = podWorkloads([labPod('early', 'registry.local/tool:v1', `github:team/tool/${REV_B}#image`)], nodes, {
    ...trust,
    analysis: undefined,
    sourcePending: true,
  });
  assert.equal(r.workloads.length, 0);
  assert.match(r.refused[0]!.reason, /the Git source has not been read yet/);
});

test("the plan creates no NixBuild for the claimant's flake under Git's name, and the GC does not count it referenced", () => {
  const input: DesiredInput = {
    analysis: git,
    locks: git.locks,
    pods: [labPod('claim', IMAGE, `github:team/tool/${REV_B}#image`)],
    nodes: [...nodes.values()],
    existing: [],
    mode: 'spegel',
    defaultBuildMode: 'on-demand',
    builderTolerations: [],
    namespace: 'enbi-system',
    maxConcurrentBuildsPerNode: 4,
    now: new Date(),
    rebuildGraceSeconds: 120,
    trustedNamespaces: ['lab'],
    policy: POLICY,
  };
  const d = desiredBuilds(input);
  assert.deepEqual(d.create, []);
  assert.equal(d.refused.length, 1);
  assert.ok(![...d.referenced].some((k) => k.includes('tool')), "the claimant's flake is not referenced");
});

test('the state machine: a NixBuild whose image Git claims is Failed and Stalled (ImageClaimed), no Job; an unstarted one waits for an unread source', () => {
  const nb: NixBuild = {
    apiVersion: 'enbi.hrzn.ee/v1alpha1',
    kind: 'NixBuild',
    metadata: { name: 'hand', generation: 1 },
    spec: { flakeUrl: `github:team/tool/${REV_B}`, packageName: 'image', system: 'x86_64-linux', images: [IMAGE] },
  };
  const base = {
    nb,
    jobs: [],
    pods: [],
    nodes: new Map([['n1', { ready: true }]]),
    candidate: () => 'n1',
    now: new Date(100_000),
    maxAttempts: 3,
    retryBaseSeconds: 10,
    nodeLostSeconds: 300,
    maxRebuilds: 1,
  };
  const claimed = nixBuildClaimProblem('enbi-system/hand', nb.spec, gitClaims(git.workloads))!;
  const s = nextState({ ...base, claimed });
  assert.equal(s.status.phase, 'Failed');
  assert.deepEqual(s.action, { kind: 'none' });
  const ready = s.status.conditions!.find((c) => c.type === 'Ready')!;
  assert.equal(ready.reason, Reason.ImageClaimed);
  assert.match(
    ready.message,
    /Deployment shop\/app in Git builds it from .*NixBuild enbi-system\/hand builds it from github:team\/tool/,
  );
  assert.equal(s.status.conditions!.find((c) => c.type === 'Stalled')?.status, 'True');
  // A Succeeded build whose name Git declares later is flagged the same way (and never rebuilt).
  assert.equal(
    nextState({ ...base, nb: { ...nb, status: { phase: 'Succeeded' } }, claimed, rebuild: 'missing' }).status.phase,
    'Failed',
  );
  // Source not read yet: an unstarted build waits, with no Job; once read it starts.
  const waiting = nextState({ ...base, sourcePending: 'the Git source has not been read yet' });
  assert.equal(waiting.status.phase, 'Pending');
  assert.equal(waiting.status.conditions!.find((c) => c.type === 'Ready')!.reason, Reason.SourcePending);
  assert.deepEqual(waiting.action, { kind: 'none' });
  assert.equal(nextState({ ...base, nb: { ...nb, status: waiting.status } }).action.kind, 'create-job');
});
