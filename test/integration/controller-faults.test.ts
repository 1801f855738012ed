// Faults the controller must survive, against a real API server: a build whose Job an admission policy
// refuses sits beside a good build, which still gets its Job and completes (each NixBuild is its own key in
// the work queue, with its own backoff); the refused one is retried, never blocks, and succeeds once the
// policy goes. The test plays the Job controller's completion (API-object nodes).
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AdmissionregistrationV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import type { RunningController } from '../../src/controller/controller.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { REV_A, REV_B } from '../support/fixtures.ts';
import { applyNixBuildCrd, startApiNodeController, completeJob, failJob, fakeNodes, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';

describe('controller faults (real API server)', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let controller: RunningController | undefined;
  let nodes: Awaited<ReturnType<typeof fakeNodes>> | undefined;
  const ns = `enbi-faults-${run}`;
  const policy = `enbi-test-refuse-${run}`;
  const logs: string[] = [];
  const metrics = newMetrics();

  const custom = () => c.kc.makeApiClient(CustomObjectsApi);
  const jobsOf = async (name: string) =>
    (
      await c.kc
        .makeApiClient(BatchV1Api)
        .listNamespacedJob({ namespace: ns, labelSelector: `enbi.hrzn.ee/nixbuild=${name}` })
    ).items;
  const build = async (name: string) =>
    (await custom().getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      name,
    })) as NixBuild;

  before(async () => {
    c = await useCluster('control-plane');
    await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    await applyNixBuildCrd(c.kc);
    nodes = await fakeNodes(c.kc, { [`faults-${run}`]: { arch: 'amd64', labels: { [POOL]: run } } });
    // An admission policy refusing the Jobs of one build, as a quota or a site policy would.
    const admission = c.kc.makeApiClient(AdmissionregistrationV1Api);
    await admission.createValidatingAdmissionPolicy({
      body: {
        metadata: { name: policy },
        spec: {
          failurePolicy: 'Fail',
          matchConstraints: {
            resourceRules: [{ apiGroups: ['batch'], apiVersions: ['v1'], operations: ['CREATE'], resources: ['jobs'] }],
          },
          matchConditions: [{ name: 'this-test', expression: `object.metadata.namespace == '${ns}'` }],
          validations: [
            {
              expression: `!has(object.metadata.labels) || !('enbi.hrzn.ee/nixbuild' in object.metadata.labels) || object.metadata.labels['enbi.hrzn.ee/nixbuild'] != 'a-refused-${run}'`,
              message: 'refused by the site policy',
            },
          ],
        },
      },
    });
    await admission.createValidatingAdmissionPolicyBinding({
      body: { metadata: { name: policy }, spec: { policyName: policy, validationActions: ['Deny'] } },
    });
    const dir = await mkdtemp(join(tmpdir(), 'enbi-faults-'));
    await writeFile(join(dir, 'empty.yaml'), '');
    controller = await startApiNodeController(c.kc, {
      dir,
      namespace: ns,
      pool: { [POOL]: run },
      logs,
      metrics,
      // A failed attempt is retried a second after its failure (attempt n waits retryBaseSeconds × 2^(n-2)).
      settings: { maxConcurrentBuildsPerNode: 4, retryBaseSeconds: 1 },
    });
  });

  after(async () => {
    await controller?.stop();
    await nodes?.stop();
    const admission = c?.kc.makeApiClient(AdmissionregistrationV1Api);
    await admission?.deleteValidatingAdmissionPolicyBinding({ name: policy }).catch(() => undefined);
    await admission?.deleteValidatingAdmissionPolicy({ name: policy }).catch(() => undefined);
    await c?.kc
      .makeApiClient(CoreV1Api)
      .deleteNamespace({ name: ns })
      .catch(() => undefined);
    if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
  });

  it('a build whose Job is refused does not hold up the build beside it; it is retried and runs once allowed', async () => {
    // Named so that the refused one comes first in every listing.
    const nb = (name: string, rev: string): NixBuild => ({
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'NixBuild',
      metadata: { name, namespace: ns },
      spec: {
        flakeUrl: `git+http://git.invalid/f.git?rev=${rev}`,
        packageName: 'image',
        system: 'x86_64-linux',
        images: [`registry.local/${name}:v1`],
      },
    });
    const bad = `a-refused-${run}`;
    const good = `b-good-${run}`;
    // The admission policy takes a moment to be enforced: wait until it refuses a Job of the bad build.
    await until(
      'the admission policy to be enforced',
      async () => {
        try {
          await c.kc.makeApiClient(BatchV1Api).createNamespacedJob({
            namespace: ns,
            body: {
              metadata: { name: `probe-${run}`, labels: { 'enbi.hrzn.ee/nixbuild': bad } },
              spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'x', image: 'x' }] } } },
            },
            dryRun: 'All',
          });
          return undefined;
        } catch (err) {
          return /refused by the site policy/.test(String((err as { body?: string }).body)) ? true : undefined;
        }
      },
      30_000,
      500,
    );
    for (const [name, rev] of [
      [bad, REV_A],
      [good, REV_B],
    ] as const)
      await custom().createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        body: nb(name, rev),
      });
    controller!.trigger();
    const [goodJob] = await until(
      "the good build's Job",
      async () => {
        const js = await jobsOf(good);
        return js.length > 0 ? js : undefined;
      },
      30_000,
    );
    await completeJob(c.kc, ns, goodJob!.metadata!.name!);
    await until(
      'the good build Succeeded',
      async () => ((await build(good)).status?.phase === 'Succeeded' ? true : undefined),
      30_000,
    );
    // The refused one: no Job, errors counted and logged with its identity, retried with backoff.
    assert.deepEqual(await jobsOf(bad), []);
    await until(
      "two refusals of the bad build's Job",
      async () =>
        logs.filter((l) => l.includes(`"nixbuild":"${ns}/${bad}"`) && /reconcile failed, retried in/.test(l)).length >=
        2
          ? true
          : undefined,
      30_000,
    );
    assert.ok(metrics.reconcileErrors >= 2);
    assert.ok(
      logs.some((l) => /refused by the site policy/.test(l)),
      "the API server's reason is in the log",
    );
    // The policy goes: the next retry starts its Job, within the backoff the last failure set (every pass
    // that re-ran the key while it was refused doubled it) and the moment the binding's removal takes.
    const lastWait = Math.max(
      ...logs.map((l) => Number(/reconcile failed, retried in (\d+) s/.exec(l)?.[1] ?? 0)).filter((n) => n > 0),
    );
    await c.kc.makeApiClient(AdmissionregistrationV1Api).deleteValidatingAdmissionPolicyBinding({ name: policy });
    await until(
      "the refused build's Job once allowed",
      async () => ((await jobsOf(bad)).length > 0 ? true : undefined),
      lastWait * 2 * 1000 + 30_000,
      500,
    );
    assert.equal(controller!.healthy(), true);
  });

  it('a failed attempt is retried once its backoff runs out, though nothing else in the cluster moves', async () => {
    const name = `c-retried-${run}`;
    await custom().createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'NixBuild',
        metadata: { name, namespace: ns },
        spec: {
          flakeUrl: `git+http://git.invalid/f.git?rev=${'c'.repeat(40)}`,
          packageName: 'image',
          system: 'x86_64-linux',
          images: [`registry.local/${name}:v1`],
          maxAttempts: 3,
        },
      },
    });
    controller!.trigger();
    const [first] = await until(
      'attempt 1',
      async () => {
        const js = await jobsOf(name);
        return js.length > 0 ? js : undefined;
      },
      30_000,
    );
    // Its pod never ran (API-object nodes): the Job fails as the Job controller would mark it.
    await failJob(c.kc, ns, first!.metadata!.name!);
    const t0 = Date.now();
    // retryBaseSeconds is 1 here: attempt 2 comes a second after the failure, on the reconcile's own requeue
    // (the plan pass that saw the failure ran long before the wait ran out).
    await until('attempt 2', async () => ((await jobsOf(name)).length === 2 ? true : undefined), 15_000, 100);
    const ms = Date.now() - t0;
    // The resync is an hour away and nothing else changes: only the reconcile's own requeue can start it.
    assert.ok(ms < 5_000, `attempt 2 ${ms} ms after the failure`);
    // ... and not before the backoff ran out, by the API server's own times (both in whole seconds).
    const failed = await c.kc
      .makeApiClient(BatchV1Api)
      .readNamespacedJob({ namespace: ns, name: first!.metadata!.name! });
    const second = (await jobsOf(name)).find((j) => j.metadata?.name !== first!.metadata!.name)!;
    const failedAt = failed.status?.conditions?.find((x) => x.type === 'Failed')?.lastTransitionTime;
    const waited = new Date(second.metadata!.creationTimestamp!).getTime() - new Date(failedAt!).getTime();
    assert.ok(waited >= 1_000, `attempt 2 created ${waited} ms after attempt 1 failed: its backoff is 1 s`);
    // The reconcile creates the Job first and writes status after it: the status follows within the pass.
    await until(
      'status.attempts 2',
      async () => ((await build(name)).status?.attempts === 2 ? true : undefined),
      10_000,
      100,
    );
    assert.equal((await jobsOf(name)).length, 2, 'one Job per attempt, no third');
  });
});
