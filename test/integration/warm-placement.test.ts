// Warm placement against a real API server (API-object nodes; the test plays the Job controller): revision A
// of a repository builds on node wb; revision B of the same repository then goes to wb, although wa comes
// first by name and is as idle, with the reason in status.placement; a build of another repository is placed
// by load and name as before.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BatchV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import type { RunningController } from '../../src/controller/controller.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { stringify } from 'yaml';
import { deployment, REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';
import { enbi } from '../support/enbi-cli.ts';
import { applyNixBuildCrd, completeJob, fakeNodes, startApiNodeController, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';
const SYSTEM = 'x86_64-linux';
const REV_C = 'c'.repeat(40);

describe('warm placement (real API server)', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let controller: RunningController | undefined;
  let nodes: Awaited<ReturnType<typeof fakeNodes>> | undefined;
  const ns = `enbi-warm-${run}`;
  const wa = `wa-${run}`;
  const wb = `wb-${run}`;
  const logs: string[] = [];

  const custom = () => c.kc.makeApiClient(CustomObjectsApi);
  const get = async (name: string) =>
    (await custom().getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      name,
    })) as NixBuild;
  const create = async (name: string, flakeUrl: string) => {
    await custom().createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'NixBuild',
        metadata: { name, namespace: ns },
        spec: { flakeUrl, packageName: 'image', system: SYSTEM, images: [`registry.local/${name}:v1`] },
      },
    });
    controller!.trigger();
  };
  /** Waits for the build's Job and returns the node it was placed on, with the reason. */
  const placed = async (name: string) => {
    const nb = await until(
      `${name} placed`,
      async () => {
        const b = await get(name);
        return b.status?.node !== undefined && b.status.placement !== undefined ? b : undefined;
      },
      30_000,
    );
    return { node: nb.status!.node!, placement: nb.status!.placement! };
  };
  const complete = async (name: string) => {
    // Completion times are whole seconds: one completion per second keeps "built last" unambiguous.
    await new Promise((r) => setTimeout(r, 1100));
    const job = await until(
      `${name}'s Job`,
      async () =>
        (
          await c.kc
            .makeApiClient(BatchV1Api)
            .listNamespacedJob({ namespace: ns, labelSelector: `enbi.hrzn.ee/nixbuild=${name}` })
        ).items[0],
      30_000,
    );
    await completeJob(c.kc, ns, job.metadata!.name!);
    await until(
      `${name} Succeeded`,
      async () => ((await get(name)).status?.phase === 'Succeeded' ? true : undefined),
      30_000,
    );
  };

  before(async () => {
    c = await useCluster('control-plane');
    await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    await applyNixBuildCrd(c.kc);
    const labels = { [POOL]: run };
    nodes = await fakeNodes(c.kc, { [wa]: { arch: 'amd64', labels }, [wb]: { arch: 'amd64', labels } });
    const dir = await mkdtemp(join(tmpdir(), 'enbi-warm-'));
    await writeFile(join(dir, 'empty.yaml'), '');
    controller = await startApiNodeController(c.kc, {
      dir,
      namespace: ns,
      pool: labels,
      logs,
      settings: { maxConcurrentBuildsPerNode: 2 },
    });
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

  it('revision B of a repository goes to the node that built revision A; another repository by load and name', async () => {
    // A build of another repository keeps wa busy, so revision A goes to wb, by load.
    await create(`busy-${run}`, `git+http://git.invalid/busy.git?rev=${REV_A}`);
    assert.deepEqual(await placed(`busy-${run}`), {
      node: wa,
      placement: `least loaded (0 running builds), first by name beside ${wb}`,
    });
    await create(`app-a-${run}`, `git+http://git.invalid/app.git?rev=${REV_A}`);
    assert.deepEqual(await placed(`app-a-${run}`), {
      node: wb,
      placement: `least loaded: 0 running builds, ${wa} has 1`,
    });
    await complete(`app-a-${run}`);
    await complete(`busy-${run}`);
    // Both nodes idle now: load and name alone would pick wa. Revision B goes to wb, where A was built.
    await create(`app-b-${run}`, `git+http://git.invalid/app.git?ref=main&rev=${REV_B}`);
    assert.deepEqual(await placed(`app-b-${run}`), {
      node: wb,
      placement: `warm: built git+http://git.invalid/app.git for ${SYSTEM} last (rev ${REV_A.slice(0, 12)})`,
    });
    await complete(`app-b-${run}`);
    // Another repository, nodes idle again: by name, as before; wb's warmth is for app.git only.
    await create(`other-${run}`, `git+http://git.invalid/other.git?rev=${REV_B}`);
    assert.deepEqual(await placed(`other-${run}`), {
      node: wa,
      placement: `least loaded (0 running builds), first by name beside ${wb}`,
    });
    await complete(`other-${run}`);
  });

  it('enbi diff reads the NixBuilds and shows the warm node for the next revision, with the reason', async () => {
    // Both nodes idle; app.git was built last on wb (revision B).
    const dir = await mkdtemp(join(tmpdir(), 'enbi-warm-diff-'));
    await writeFile(
      join(dir, 'app.yaml'),
      yamlDocs(
        deployment('app', {
          flake: `git+http://git.invalid/app.git?rev=${REV_C}#image`,
          image: 'registry.local/app:v3',
          annotations: { 'enbi.hrzn.ee/build': 'eager' },
          nodeSelector: { [POOL]: run },
        }),
      ),
    );
    const config = join(await mkdtemp(join(tmpdir(), 'enbi-warm-config-')), 'config.yaml');
    await writeFile(
      config,
      stringify({
        source: { dir, intervalSeconds: 3600 },
        namespace: ns,
        allowedImages: ['registry.local/'],
        allowedFlakes: ['http://git.invalid/'],
        builderImage: 'enbi.local/builder:dev',
        importerImage: 'enbi.local/importer:dev',
        containerdSocket: '/run/containerd/containerd.sock',
        builderNodeSelector: { [POOL]: run },
        maxConcurrentBuildsPerNode: 2,
      }),
    );
    const args = ['diff', '--dir', dir, '--kubeconfig', c.kubeconfig, '--config', config, '--offline'];
    const json = await enbi([...args, '-o', 'json']);
    assert.equal(json.code, 2, json.stderr);
    const report = JSON.parse(json.stdout) as { builds: { flake: string; node: string; placement?: string }[] };
    const reason = `warm: built git+http://git.invalid/app.git for ${SYSTEM} last (rev ${REV_B.slice(0, 12)})`;
    assert.deepEqual(
      report.builds.map((b) => [b.flake, b.node, b.placement]),
      [[`git+http://git.invalid/app.git?rev=${REV_C}#image`, wb, reason]],
    );
    const text = await enbi(args);
    assert.equal(text.code, 2, text.stderr);
    assert.ok(
      text.stdout.includes(
        `Why these nodes:\n  git+http://git.invalid/app.git?rev=${REV_C.slice(0, 12)}#image (${SYSTEM}) on ${wb}: ${reason}\n`,
      ),
      text.stdout,
    );
  });
});
