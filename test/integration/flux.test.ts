// enbi beside a real Flux: kustomize-controller v1.7.3 (built from Go modules, run as a process against the
// full-mode test cluster) applies manifests from a GitRepository artifact with `wait: true`, and judges
// NixBuilds with kstatus, its health library; enbi's controller (a subprocess) really builds on the node.
// What must hold: a NixBuild nobody has observed is never healthy; a NixBuild the controller stalls fails
// the Kustomization, named, and it is never Ready first; a NixBuild that builds plus a Deployment running
// its image make it Ready only once both are; Flux's next reconcile finds nothing to re-apply (no field
// fight), and enbi's writes carry enbi's field manager names.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  AppsV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1ManagedFieldsEntry,
} from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { freePort } from '../cluster/ports.ts';
import {
  type BuildingNode,
  buildingNode,
  type ControllerProcess,
  startControllerProcess,
} from '../support/controller-process.ts';
import { createFixtureFlake, type FixtureFlake } from '../support/fixture-flake.ts';
import {
  applyFluxCrds,
  type ArtifactServer,
  conditionOf,
  createKustomization,
  fluxDir,
  type KustomizeController,
  type Kustomization,
  KUSTOMIZE,
  publishGitRepository,
  readKustomization,
  requestReconcile,
  startArtifactServer,
  startKustomizeController,
} from '../support/flux.ts';
import { type GitServer, startGitServer } from '../support/git-server.ts';
import { applyNixBuildCrd, until } from '../support/kube.ts';
import { idleAppDeployment } from '../support/fixtures.ts';

const run = Date.now().toString(36);
const NS = `enbi-flux-${run}`;
const APP_NS = `app-flux-${run}`;
const FLUX_NS = `flux-system-${run}`;
const FLUX_MANAGER = 'kustomize-controller';

const nixBuild = (name: string, flake: FixtureFlake, packageName: string, image: string) => ({
  apiVersion: `${GROUP}/${VERSION}`,
  kind: 'NixBuild',
  metadata: { name, namespace: NS },
  spec: { flakeUrl: flake.flakeUrl, packageName, system: 'x86_64-linux', images: [image] },
});

const deployment = (name: string, flake: FixtureFlake, image: string, node: string) =>
  idleAppDeployment({ name, namespace: APP_NS, flakeUrl: flake.flakeUrl, image, node });

/** Polls a Kustomization until `done` says so, keeping every Ready condition seen on the way. */
async function watchReady(
  c: ClusterInfo,
  name: string,
  done: (k: Kustomization) => boolean,
  ms: number,
): Promise<{ final: Kustomization; readySeen: string[] }> {
  const readySeen: string[] = [];
  const final = await until(
    `Kustomization ${name}`,
    async () => {
      const k = await readKustomization(c.kc, FLUX_NS, name);
      const ready = conditionOf(k, 'Ready');
      if (ready !== undefined) readySeen.push(`${ready.status}/${ready.reason}`);
      return done(k) ? k : undefined;
    },
    ms,
    250,
  );
  return { final, readySeen };
}

/** docs/flux.md's healthCheckExprs for NixBuild, so that what users copy is what runs here. */
function readmeHealthCheckExprs(): unknown[] {
  const readme = readFileSync(new URL('../../docs/flux.md', import.meta.url), 'utf8');
  const block = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)]
    .map((m) => m[1]!)
    .find((b) => b.includes('healthCheckExprs:'));
  assert.ok(block !== undefined, 'docs/flux.md shows healthCheckExprs for NixBuild');
  const exprs = (parse(block) as { spec: { healthCheckExprs: { kind: string }[] } }).spec.healthCheckExprs;
  assert.equal(exprs[0]?.kind, 'NixBuild');
  return exprs;
}

/** Flux has judged: failed, or (what must not happen first) Ready. */
const settled = (k: Kustomization) =>
  conditionOf(k, 'Ready')?.reason === 'HealthCheckFailed' || conditionOf(k, 'Ready')?.status === 'True';

const revisionOf = (text: string) => createHash('sha1').update(text).digest('hex');

describe('beside a real Flux kustomize-controller (v1.7.3)', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let flux: KustomizeController | undefined;
  let artifacts: ArtifactServer | undefined;
  let git: GitServer | undefined;
  let node: BuildingNode | undefined;
  let controller: ControllerProcess | undefined;
  let flake: FixtureFlake;
  const timings: string[] = [];

  /** Publishes `objects` as a new artifact of GitRepository `name` and applies them with a Kustomization `name`. */
  const apply = async (name: string, objects: unknown[], timeout: string, cel = false) => {
    const text = objects.map((o) => stringify(o)).join('---\n');
    const artifact = artifacts!.publish(name, revisionOf(text), { 'manifests.yaml': text });
    await publishGitRepository(c.kc, FLUX_NS, name, artifact);
    await createKustomization(c.kc, FLUX_NS, name, name, {
      timeout,
      ...(cel ? { healthCheckExprs: readmeHealthCheckExprs() } : {}),
    });
    return artifact;
  };
  /** A NixBuild's status and Events, for a failure message. */
  const why = async (name: string) => {
    const events = (
      await c.kc
        .makeApiClient(CoreV1Api)
        .listNamespacedEvent({ namespace: NS, fieldSelector: `involvedObject.name=${name}` })
    ).items;
    return `${JSON.stringify((await getBuild(name)).status)}\n${events.map((e) => `${e.reason}: ${e.message}`).join('\n')}`;
  };
  const getBuild = async (name: string) =>
    (await c.kc
      .makeApiClient(CustomObjectsApi)
      .getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL, name })) as NixBuild;

  before(async () => {
    c = await useCluster('full');
    const dir = fluxDir();
    const core = c.kc.makeApiClient(CoreV1Api);
    for (const name of [NS, APP_NS, FLUX_NS]) await core.createNamespace({ body: { metadata: { name } } });
    await applyNixBuildCrd(c.kc);
    await applyFluxCrds(c.kc, dir);
    const host = new URL(c.server).hostname;
    artifacts = await startArtifactServer(host);
    flux = await startKustomizeController(dir, c.kubeconfig, FLUX_NS, {
      metrics: await freePort(),
      health: await freePort(),
    });
    // Pods (the build Jobs) fetch the fixture flake through the bridge address the API server listens on.
    git = await startGitServer({ host });
    flake = await createFixtureFlake(git, 'app', { message: 'hello from flux' });
    // Fixture commits are deterministic: a cluster kept from an earlier run may hold this run's images already.
    const n = c.nodes[0]!;
    const stale = execFileSync(n.ctr, ['--address', n.containerdSocket, '-n', 'k8s.io', 'images', 'ls', '-q'], {
      encoding: 'utf8',
    })
      .split('\n')
      .filter((x) => x.startsWith('registry.local/flux-'));
    if (stale.length > 0)
      execFileSync(n.ctr, ['--address', n.containerdSocket, '-n', 'k8s.io', 'images', 'rm', ...stale]);
  });

  after(async () => {
    await controller?.stop();
    await flux?.stop();
    await node?.daemon.stop();
    await artifacts?.close();
    await git?.close();
    const core = c?.kc.makeApiClient(CoreV1Api);
    // Kustomizations carry Flux's finalizer, which no one would remove once Flux is stopped.
    const custom = c?.kc.makeApiClient(CustomObjectsApi);
    const ks =
      (
        (await custom?.listNamespacedCustomObject({ ...KUSTOMIZE, namespace: FLUX_NS }).catch(() => undefined)) as
          { items: Kustomization[] } | undefined
      )?.items ?? [];
    for (const k of ks)
      await custom
        ?.patchNamespacedCustomObject({
          ...KUSTOMIZE,
          namespace: FLUX_NS,
          name: k.metadata.name,
          body: [{ op: 'remove', path: '/metadata/finalizers' }],
        })
        .catch(() => undefined);
    if (process.env.ENBI_TEST_VERBOSE === '1') {
      const events = (await core?.listNamespacedEvent({ namespace: NS }).catch(() => undefined))?.items ?? [];
      console.log(
        flux?.log(),
        controller?.log(),
        events.map((e) => `${e.involvedObject.name} ${e.reason}: ${e.message}`).join('\n'),
      );
    }
    for (const name of [APP_NS, NS, FLUX_NS]) await core?.deleteNamespace({ name }).catch(() => undefined);
    console.log(`# timings:\n# ${timings.join('\n# ')}`);
  });

  it('a NixBuild no controller has observed is not healthy: with enbi down, wait: true times out on it, never Ready', async () => {
    const t0 = Date.now();
    await apply('unseen', [nixBuild('unseen', flake, 'image', `registry.local/flux-unseen:${flake.shortRev}`)], '15s');
    const nb = await until('Flux to apply the NixBuild', () => getBuild('unseen').catch(() => undefined), 60_000);
    // The CRD's status defaults, filled in by the API server: kstatus reads generation 1 ≠ -1 as InProgress.
    assert.equal(nb.status?.observedGeneration, -1);
    assert.equal(nb.metadata.generation, 1);
    const { final, readySeen } = await watchReady(c, 'unseen', settled, 90_000);
    timings.push(
      `enbi down: Kustomization failed its health check after ${((Date.now() - t0) / 1000).toFixed(1)} s (timeout 15 s)`,
    );
    assert.ok(
      !readySeen.some((r) => r.startsWith('True')),
      `Ready was True before the health check ended: ${readySeen.join(', ')}`,
    );
    const ready = conditionOf(final, 'Ready')!;
    assert.equal(ready.status, 'False');
    assert.match(ready.message, new RegExp(`NixBuild/${NS}/unseen status: 'InProgress'`));
    // Prune on delete: the NixBuild goes with its Kustomization, so the controller started next never builds it.
    await c.kc
      .makeApiClient(CustomObjectsApi)
      .deleteNamespacedCustomObject({ ...KUSTOMIZE, namespace: FLUX_NS, name: 'unseen' });
    await until(
      'Flux to prune the NixBuild',
      async () =>
        (await getBuild('unseen').then(
          () => false,
          () => true,
        ))
          ? true
          : undefined,
      60_000,
    );
  });

  it('a NixBuild the controller stalls fails the Kustomization, named, and it is never Ready first', async () => {
    node = await buildingNode(c.nodes[0]!);
    await git!.createRepo('manifests', {
      'apps/app.yaml': stringify(
        deployment('app', flake, `registry.local/flux-app:${flake.shortRev}`, c.nodes[0]!.name),
      ),
    });
    controller = await startControllerProcess(c.kubeconfig, {
      source: { url: git!.url('manifests'), ref: 'main', path: 'apps', intervalSeconds: 3600 },
      namespace: NS,
      watchNamespaces: [APP_NS],
      allowedImages: ['registry.local/'],
      allowedFlakes: [`${git!.baseUrl}/`],
      maxAttempts: 2,
      retryBaseSeconds: 1,
      leaderElection: { leaseSeconds: 6, renewSeconds: 2 },
      ...node.settings,
    });
    // The same case judged by kstatus itself and by docs/flux.md's CEL healthCheckExprs.
    const cases = [
      { name: 'broken', build: 'nope', cel: false },
      { name: 'broken-cel', build: 'nope-cel', cel: true },
    ];
    await Promise.all(
      cases.map(async ({ name, build, cel }) => {
        const t0 = Date.now();
        await apply(
          name,
          [nixBuild(build, flake, 'nope', `registry.local/flux-${build}:${flake.shortRev}`)],
          '3m',
          cel,
        );
        const { final, readySeen } = await watchReady(c, name, settled, 240_000);
        timings.push(
          `broken NixBuild${cel ? ' (CEL)' : ''}: Kustomization failed ${((Date.now() - t0) / 1000).toFixed(1)} s after it was created (timeout 3 min: Flux failed fast on Stalled)`,
        );
        assert.ok(
          !readySeen.some((r) => r.startsWith('True')),
          `${name}: Ready was True before the failure: ${readySeen.join(', ')}`,
        );
        const ready = conditionOf(final, 'Ready')!;
        assert.equal(ready.status, 'False');
        assert.match(ready.message, new RegExp(`NixBuild/${NS}/${build} status: 'Failed'`));
        const nb = await getBuild(build);
        assert.equal(nb.status?.phase, 'Failed');
        assert.equal(nb.status?.observedGeneration, 1);
        assert.equal(nb.status?.conditions?.find((x) => x.type === 'Stalled')?.reason, 'NixError');
        // Flux says so in an Event on the Kustomization too, naming the NixBuild.
        const events = (
          await c.kc
            .makeApiClient(CoreV1Api)
            .listNamespacedEvent({ namespace: FLUX_NS, fieldSelector: `involvedObject.name=${name}` })
        ).items;
        assert.ok(
          events.some((e) => e.type === 'Warning' && e.message?.includes(`NixBuild/${NS}/${build}`)),
          events.map((e) => e.message).join('\n'),
        );
      }),
    );
  });

  let good: Kustomization;

  it('over a NixBuild that builds and a Deployment running its image, Flux is Ready only once both are', async () => {
    const image = `registry.local/flux-app:${flake.shortRev}`;
    const t0 = Date.now();
    const artifact = await apply(
      'good',
      [nixBuild('app-image', flake, 'image', image), deployment('app', flake, image, c.nodes[0]!.name)],
      '5m',
    );
    const { final, readySeen } = await watchReady(c, 'good', settled, 330_000);
    const tReady = Date.now();
    const ready = conditionOf(final, 'Ready')!;
    assert.equal(ready.status, 'True', `${ready.message}\n${await why('app-image')}`);
    assert.ok(
      readySeen.some((r) => !r.startsWith('True')),
      'Flux was seen waiting before Ready',
    );
    // Server timestamps: the NixBuild completed and the Deployment became Available before Flux said Ready.
    const nb = await getBuild('app-image');
    assert.equal(nb.status?.phase, 'Succeeded');
    assert.equal(nb.status?.observedGeneration, 1);
    assert.ok(
      Date.parse(nb.status!.completionTime!) <= Date.parse(ready.lastTransitionTime),
      `built ${nb.status?.completionTime}, Ready ${ready.lastTransitionTime}`,
    );
    const dep = await c.kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'app', namespace: APP_NS });
    assert.equal(dep.status?.availableReplicas, 1);
    const available = dep.status?.conditions?.find((x) => x.type === 'Available' && x.status === 'True');
    assert.ok(
      available !== undefined &&
        new Date(available.lastTransitionTime!).getTime() <= Date.parse(ready.lastTransitionTime),
      `Available ${available?.lastTransitionTime}, Ready ${ready.lastTransitionTime}`,
    );
    assert.equal(final.status?.lastAppliedRevision, `main@sha1:${artifact.revision}`);
    timings.push(
      `NixBuild + Deployment: Kustomization Ready ${((tReady - t0) / 1000).toFixed(1)} s after it was created (NixBuild completed ${((Date.parse(nb.status!.completionTime!) - t0) / 1000).toFixed(1)} s)`,
    );
    good = final;
  });

  it("no field fight: Flux's next reconcile re-applies nothing, and enbi's writes carry enbi's field manager names", async () => {
    assert.ok(good !== undefined, 'the previous test made the Kustomization Ready');
    const logFrom = flux!.log().length;
    const eventsBefore = new Set(
      (
        await c.kc
          .makeApiClient(CoreV1Api)
          .listNamespacedEvent({ namespace: FLUX_NS, fieldSelector: 'involvedObject.name=good' })
      ).items.map((e) => e.metadata?.uid),
    );
    const at = new Date().toISOString();
    await requestReconcile(c.kc, FLUX_NS, 'good', at);
    const { final } = await watchReady(
      c,
      'good',
      (k) => k.status?.lastHandledReconcileAt === at && conditionOf(k, 'Ready')?.status === 'True',
      120_000,
    );
    assert.equal(final.status?.lastAppliedRevision, good.status?.lastAppliedRevision);
    assert.deepEqual(final.status?.inventory, good.status?.inventory);
    // kustomize-controller logs each apply's change set: every object of this one unchanged.
    const applied = flux!
      .log()
      .slice(logFrom)
      .split('\n')
      .filter((l) => l.includes('"server-side apply completed"') && l.includes('"name":"good"'));
    assert.ok(
      applied.length >= 1,
      `no apply logged after the reconcile request:\n${flux!.log().slice(logFrom).slice(-3000)}`,
    );
    for (const line of applied) {
      const output = (JSON.parse(line) as { output?: Record<string, string> }).output ?? {};
      assert.deepEqual(
        Object.entries(output).filter(([, v]) => v !== 'unchanged'),
        [],
        line,
      );
      assert.ok(Object.keys(output).includes(`NixBuild/${NS}/app-image`), line);
    }
    const newEvents = (
      await c.kc
        .makeApiClient(CoreV1Api)
        .listNamespacedEvent({ namespace: FLUX_NS, fieldSelector: 'involvedObject.name=good' })
    ).items.filter((e) => !eventsBefore.has(e.metadata?.uid));
    assert.deepEqual(
      newEvents.filter((e) => /configured|created/.test(e.message ?? '')).map((e) => e.message),
      [],
    );

    // managedFields: the hand-written NixBuild's spec is Flux's, its status enbi's; what enbi created is enbi's alone.
    const managers = (fields: V1ManagedFieldsEntry[] | undefined, pick: (f: V1ManagedFieldsEntry) => boolean) =>
      [...new Set((fields ?? []).filter(pick).map((f) => f.manager))].sort();
    const hand = (await getBuild('app-image')) as NixBuild & { metadata: { managedFields?: V1ManagedFieldsEntry[] } };
    assert.deepEqual(
      managers(hand.metadata.managedFields, (f) => f.subresource !== 'status'),
      [FLUX_MANAGER],
    );
    assert.deepEqual(
      managers(hand.metadata.managedFields, (f) => f.subresource === 'status'),
      ['enbi-controller'],
    );
    const builds = (
      (await c.kc
        .makeApiClient(CustomObjectsApi)
        .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL })) as {
        items: (NixBuild & { metadata: { managedFields?: V1ManagedFieldsEntry[] } })[];
      }
    ).items;
    const planned = builds.filter((b) => b.metadata.labels?.['app.kubernetes.io/managed-by'] === 'enbi');
    for (const b of planned)
      assert.deepEqual(
        managers(b.metadata.managedFields, () => true),
        ['enbi-controller'],
        b.metadata.name,
      );
    const jobs = (await c.kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: NS })).items;
    assert.ok(jobs.length >= 2, 'the build Jobs of nope and app-image');
    // A Job's status is the job controller's (kube-controller-manager); everything else of it, enbi's.
    for (const j of jobs)
      assert.deepEqual(
        managers(j.metadata?.managedFields, (f) => f.subresource !== 'status'),
        ['enbi-controller'],
        j.metadata?.name,
      );
    const enbiEvents = [NS, APP_NS].map(async (namespace) =>
      (await c.kc.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace })).items.filter(
        (e) => e.reportingComponent === 'enbi.hrzn.ee/controller',
      ),
    );
    const events = (await Promise.all(enbiEvents)).flat();
    assert.ok(events.length >= 2, 'enbi recorded Events');
    assert.deepEqual(
      managers(
        events.flatMap((e) => e.metadata?.managedFields ?? []),
        () => true,
      ),
      ['enbi-controller'],
    );
    const leases = (await c.kc.makeApiClient(CoordinationV1Api).listNamespacedLease({ namespace: NS })).items;
    assert.equal(leases.length, 1);
    assert.deepEqual(
      managers(leases[0]!.metadata?.managedFields, () => true),
      ['enbi-controller'],
    );
  });

  it("docs/flux.md's CEL healthCheckExprs judge a NixBuild that builds: Ready only once it is", async () => {
    const t0 = Date.now();
    await apply(
      'good-cel',
      [nixBuild('app-image-cel', flake, 'image', `registry.local/flux-app-cel:${flake.shortRev}`)],
      '5m',
      true,
    );
    const { final, readySeen } = await watchReady(c, 'good-cel', settled, 330_000);
    const ready = conditionOf(final, 'Ready')!;
    assert.equal(ready.status, 'True', `${ready.message}\n${await why('app-image-cel')}`);
    assert.ok(
      readySeen.some((r) => !r.startsWith('True')),
      'Flux (CEL) was seen waiting before Ready',
    );
    const nb = await getBuild('app-image-cel');
    assert.equal(nb.status?.phase, 'Succeeded');
    assert.ok(
      Date.parse(nb.status!.completionTime!) <= Date.parse(ready.lastTransitionTime),
      `built ${nb.status?.completionTime}, Ready ${ready.lastTransitionTime}`,
    );
    timings.push(`NixBuild (CEL): Kustomization Ready ${((Date.now() - t0) / 1000).toFixed(1)} s after it was created`);
  });
});
