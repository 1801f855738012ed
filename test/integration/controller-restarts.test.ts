// Faults of the control plane under a running build, on the real full-mode cluster: kube-apiserver killed
// and started again while a build Job runs, then etcd the same way. Each time the build ends exactly once (one
// NixBuild, one Job), the pod runs the image, and the controller (in this process) stays healthy: its
// informers come back by themselves and the build's reconcile picks up where it was.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AppsV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi, type V1Deployment, VersionApi } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { parseControllerConfig } from '../../src/controller/config.ts';
import { type RunningController, startController } from '../../src/controller/controller.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { sourceState } from '../../src/controller/source-state.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { restartProcess } from '../cluster/restart.ts';
import { importBuildImages } from '../support/build-images.ts';
import { createFixtureFlake, type FixtureFlake } from '../support/fixture-flake.ts';
import { type GitServer, startGitServer } from '../support/git-server.ts';
import { applyNixBuildCrd, until } from '../support/kube.ts';
import { type NixDaemon, startNixDaemon } from '../support/nix-daemon.ts';

const run = Date.now().toString(36);
const NS = `enbi-rs-${run}`;
const APP_NS = `app-rs-${run}`;

describe('control plane restarts under a running build (real cluster)', { skip: clusterSkipReason(), timeout: 900_000 }, () => {
  let c: ClusterInfo;
  let git: GitServer;
  let daemon: NixDaemon | undefined;
  let controller: RunningController | undefined;
  let dir: string;
  let nodeName: string;
  const logs: string[] = [];
  const timings: string[] = [];

  const deploymentOf = (name: string, flake: FixtureFlake): V1Deployment => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: APP_NS },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name }, annotations: { 'enbi.hrzn.ee/flake': `${flake.flakeUrl}#image` } },
        spec: { nodeSelector: { 'kubernetes.io/hostname': nodeName }, containers: [{ name: 'app', image: `registry.local/rs-${name}:${flake.shortRev}`, imagePullPolicy: 'Never', command: ['/bin/sh', '-c', 'exec /bin/busybox sleep 3600'] }] },
      },
    },
  });
  const builds = async () => ((await c.kc.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL })) as { items: NixBuild[] }).items;
  const jobs = async () => (await c.kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: NS })).items;
  const apiUp = async () => ((await c.kc.makeApiClient(VersionApi).getCode().then(() => true, () => false)) ? true : undefined);

  before(async () => {
    c = await useCluster('full');
    const node = c.nodes[0]!;
    nodeName = node.name;
    const core = c.kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    await core.createNamespace({ body: { metadata: { name: APP_NS } } });
    await applyNixBuildCrd(c.kc);
    const images = await importBuildImages(node);
    const cache = join(node.dir, 'enbi-nix-cache');
    daemon = await startNixDaemon(cache);
    git = await startGitServer({ host: new URL(c.server).hostname });
    dir = await mkdtemp(join(tmpdir(), 'enbi-rs-'));
    await writeFile(join(dir, 'empty.yaml'), '');
    const cfg = parseControllerConfig({
      source: { dir, intervalSeconds: 3600 },
      namespace: NS,
      watchNamespaces: [APP_NS],
      allowedImages: ['registry.local/'],
      allowedFlakes: [`${git.baseUrl}/`],
      builderImage: images.builder.ref,
      importerImage: images.importer.ref,
      cache: { hostPath: cache },
      containerdSocket: node.containerdSocket,
      maxAttempts: 2,
      retryBaseSeconds: 1,
    });
    controller = await startController({ cfg, kc: c.kc, source: sourceState(cfg, join(dir, '.cache'), undefined, (m) => logs.push(m)), metrics: newMetrics(), log: (m) => logs.push(m), stallMs: 120_000 });
  });

  after(async () => {
    await controller?.stop();
    await daemon?.stop();
    await git?.close();
    const core = c?.kc.makeApiClient(CoreV1Api);
    await core?.deleteNamespace({ name: APP_NS }).catch(() => undefined);
    await core?.deleteNamespace({ name: NS }).catch(() => undefined);
    if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
    console.log(`# timings:\n# ${timings.join('\n# ')}`);
  });

  for (const component of ['kube-apiserver', 'etcd'] as const) {
    it(`${component} killed and started again while a build runs: the build ends once, the pod runs`, async () => {
      const app = component === 'etcd' ? 'etcd-app' : 'api-app';
      const flake = await createFixtureFlake(git, app, { message: `survives ${component} ${run}` });
      const d = deploymentOf(app, flake);
      // In Git (the source directory) and applied, as Flux would.
      await writeFile(join(dir, `${app}.yaml`), stringify(d));
      controller!.trigger(true);
      await c.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace: APP_NS, body: d });
      const nb = await until(`the ${app} build Job to exist`, async () => {
        const b = (await builds()).find((x) => x.spec.flakeUrl.includes(flake.rev));
        return b !== undefined && (await jobs()).some((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === b.metadata.name) ? b : undefined;
      }, 120_000, 100);
      const t0 = Date.now();
      await restartProcess(component, { crash: true, downMs: 3000 });
      await until(`the API server to answer after the ${component} restart`, apiUp, 120_000, 250);
      const tUp = Date.now();
      const done = await until('the build to end', async () => {
        const b = (await builds()).find((x) => x.metadata.name === nb.metadata.name);
        return b?.status?.phase === 'Succeeded' || b?.status?.phase === 'Failed' ? b : undefined;
      }, 300_000, 500);
      assert.equal(done.status?.phase, 'Succeeded', JSON.stringify(done.status?.conditions));
      await until('the pod to run the image', async () => {
        const pods = (await c.kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: APP_NS, labelSelector: `app=${app}` })).items;
        return pods.some((p) => p.status?.phase === 'Running') ? true : undefined;
      }, 300_000, 500);
      timings.push(`${component} down 3 s during a build: API back ${((tUp - t0) / 1000).toFixed(1)} s after the kill; build Succeeded and pod Running ${((Date.now() - tUp) / 1000).toFixed(1)} s later`);
      // Exactly once: one NixBuild for this flake, one Job, one attempt.
      assert.equal((await builds()).filter((b) => b.spec.flakeUrl.includes(flake.rev)).length, 1);
      assert.deepEqual((await jobs()).filter((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === nb.metadata.name).map((j) => j.metadata?.name), [`${nb.metadata.name}-1`]);
      assert.equal(done.status?.attempts, 1);
      assert.equal(controller!.healthy(), true);
    });
  }
});
