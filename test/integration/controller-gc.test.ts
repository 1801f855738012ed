// Garbage collection against a real API server: when a workload goes from the source (Flux pruned it, Git
// dropped it), the NixBuild enbi created for it is stamped, then deleted with its Jobs after gc.graceSeconds;
// a build still named by the source, and a hand-written NixBuild, stay; the workload back, its build is
// created again. API-object nodes; eager workloads (built as soon as they are in the source).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BatchV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import type { RunningController } from '../../src/controller/controller.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { deployment, REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';
import { applyNixBuildCrd, startApiNodeController, fakeNodes, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';

describe(
  'garbage collection of NixBuilds nothing names any more (real API server)',
  { skip: clusterSkipReason() },
  () => {
    let c: ClusterInfo;
    let controller: RunningController | undefined;
    let nodes: Awaited<ReturnType<typeof fakeNodes>> | undefined;
    let dir: string;
    const ns = `enbi-gc-${run}`;
    const logs: string[] = [];
    const metrics = newMetrics();
    const eager = (name: string, rev: string) =>
      deployment(name, {
        namespace: `apps-${run}`,
        flake: `git+http://git.invalid/${name}.git?rev=${rev}#image`,
        image: `registry.local/${name}:v1`,
        annotations: { 'enbi.hrzn.ee/build': 'eager' },
        nodeSelector: { [POOL]: run },
      });
    const builds = async () =>
      (
        (await c.kc
          .makeApiClient(CustomObjectsApi)
          .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL })) as {
          items: NixBuild[];
        }
      ).items;
    const byFlake = async (name: string) => (await builds()).find((b) => b.spec.flakeUrl.includes(`/${name}.git`));
    const jobsOf = async (build: string) =>
      (
        await c.kc
          .makeApiClient(BatchV1Api)
          .listNamespacedJob({ namespace: ns, labelSelector: `enbi.hrzn.ee/nixbuild=${build}` })
      ).items.filter((j) => j.metadata?.deletionTimestamp === undefined);

    before(async () => {
      c = await useCluster('control-plane');
      await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
      await applyNixBuildCrd(c.kc);
      nodes = await fakeNodes(c.kc, { [`gc-${run}`]: { arch: 'amd64', labels: { [POOL]: run } } });
      dir = await mkdtemp(join(tmpdir(), 'enbi-gc-'));
      await writeFile(join(dir, 'kept.yaml'), yamlDocs(eager('kept', REV_A)));
      await writeFile(join(dir, 'pruned.yaml'), yamlDocs(eager('pruned', REV_B)));
      controller = await startApiNodeController(c.kc, {
        dir,
        namespace: ns,
        pool: { [POOL]: run },
        logs,
        metrics,
        settings: { maxConcurrentBuildsPerNode: 4, gc: { graceSeconds: 2 } },
      });
      controller.trigger(true);
    });

    after(async () => {
      await controller?.stop();
      await nodes?.stop();
      await c?.kc
        .makeApiClient(CoreV1Api)
        .deleteNamespace({ name: ns })
        .catch(() => undefined);
      if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
    });

    it('a build whose workload left the source is deleted with its Jobs after the grace period; the others stay', async () => {
      const kept = await until(
        'the kept build and its Job',
        async () => {
          const b = await byFlake('kept');
          return b !== undefined && (await jobsOf(b.metadata.name)).length > 0 ? b : undefined;
        },
        30_000,
      );
      const pruned = await until(
        'the pruned build and its Job',
        async () => {
          const b = await byFlake('pruned');
          return b !== undefined && (await jobsOf(b.metadata.name)).length > 0 ? b : undefined;
        },
        30_000,
      );
      const byHand: NixBuild = {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'NixBuild',
        metadata: { name: `by-hand-${run}`, namespace: ns },
        spec: {
          flakeUrl: `git+http://git.invalid/hand.git?rev=${REV_A}`,
          packageName: 'image',
          system: 'x86_64-linux',
          images: ['registry.local/hand:v1'],
        },
      };
      await c.kc
        .makeApiClient(CustomObjectsApi)
        .createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: byHand });
      // Pruned from the source.
      await rm(join(dir, 'pruned.yaml'));
      const t0 = Date.now();
      controller!.trigger(true);
      const stamped = await until(
        'the pruned build stamped',
        async () => (await byFlake('pruned'))?.metadata.annotations?.['enbi.hrzn.ee/unreferenced-since'],
        30_000,
        100,
      );
      assert.ok(!Number.isNaN(Date.parse(stamped)));
      await until(
        'the pruned build deleted',
        async () => ((await byFlake('pruned')) === undefined ? true : undefined),
        30_000,
        200,
      );
      assert.ok(Date.now() - t0 >= 2000, 'not before the grace period');
      await until(
        'its Jobs deleted with it',
        async () => ((await jobsOf(pruned.metadata.name)).length === 0 ? true : undefined),
        60_000,
        500,
      );
      assert.equal(metrics.buildsCollected, 1);
      // The kept build and the hand-written one: untouched.
      const still = await byFlake('kept');
      assert.equal(still?.metadata.uid, kept.metadata.uid);
      assert.equal(still?.metadata.annotations?.['enbi.hrzn.ee/unreferenced-since'], undefined);
      assert.ok((await builds()).some((b) => b.metadata.name === byHand.metadata.name));
      // Back in the source: built again.
      await writeFile(join(dir, 'pruned.yaml'), yamlDocs(eager('pruned', REV_B)));
      controller!.trigger(true);
      const again = await until('the pruned build created again', async () => byFlake('pruned'), 30_000, 200);
      assert.notEqual(again.metadata.uid, pruned.metadata.uid);
    });
  },
);
