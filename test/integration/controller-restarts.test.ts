// Faults under a running build, on the real full-mode cluster: kube-apiserver killed and started again while
// a build Job runs, then etcd the same way; the node's containerd killed while the Job imports; the leading
// controller replica killed (SIGKILL) while the Job imports, with a second replica standing by. Each time the
// build ends exactly once (one NixBuild, its Jobs each an attempt), the pod runs the image, and the
// controller stays healthy: informers come back by themselves and the build's reconcile picks up where it was.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AppsV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Deployment,
  VersionApi,
} from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { parseControllerConfig } from '../../src/controller/config.ts';
import { type RunningController, startController } from '../../src/controller/controller.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { sourceState } from '../../src/controller/source-state.ts';
import { freePort } from '../cluster/ports.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { restartProcess } from '../cluster/restart.ts';
import { run as runCmd } from '../cluster/proc.ts';
import { importBuildImages } from '../support/build-images.ts';
import { createFixtureFlake, type FixtureFlake } from '../support/fixture-flake.ts';
import { type GitServer, startGitServer } from '../support/git-server.ts';
import { applyNixBuildCrd, until } from '../support/kube.ts';
import { type NixDaemon, startNixDaemon } from '../support/nix-daemon.ts';
import { assertSpegelReady } from '../support/spegel-check.ts';
import { idleAppDeployment } from '../support/fixtures.ts';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;

const run = Date.now().toString(36);
const NS = `enbi-rs-${run}`;
const APP_NS = `app-rs-${run}`;

describe(
  'control plane restarts under a running build (real cluster)',
  { skip: clusterSkipReason(), timeout: 900_000 },
  () => {
    let c: ClusterInfo;
    let git: GitServer;
    let daemon: NixDaemon | undefined;
    let controller: RunningController | undefined;
    let dir: string;
    let nodeName: string;
    let cfgInput: Record<string, unknown>;
    let socket: string;
    const logs: string[] = [];
    const timings: string[] = [];

    const deploymentOf = (name: string, flake: FixtureFlake): V1Deployment =>
      idleAppDeployment({
        name,
        namespace: APP_NS,
        flakeUrl: flake.flakeUrl,
        image: `registry.local/rs-${name}:${flake.shortRev}`,
        node: nodeName,
      });
    const builds = async () =>
      (
        (await c.kc
          .makeApiClient(CustomObjectsApi)
          .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL })) as {
          items: NixBuild[];
        }
      ).items;
    const jobs = async () => (await c.kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: NS })).items;
    const apiUp = async () =>
      (await c.kc
        .makeApiClient(VersionApi)
        .getCode()
        .then(
          () => true,
          () => false,
        ))
        ? true
        : undefined;

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
      socket = node.containerdSocket;
      cfgInput = {
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
      };
      const cfg = parseControllerConfig(cfgInput);
      controller = await startController({
        cfg,
        kc: c.kc,
        source: sourceState(cfg, join(dir, '.cache'), undefined, (m) => logs.push(m)),
        metrics: newMetrics(),
        log: (m) => logs.push(m),
        stallMs: 120_000,
      });
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
        const nb = await until(
          `the ${app} build Job to exist`,
          async () => {
            const b = (await builds()).find((x) => x.spec.flakeUrl.includes(flake.rev));
            return b !== undefined &&
              (await jobs()).some((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === b.metadata.name)
              ? b
              : undefined;
          },
          120_000,
          100,
        );
        const t0 = Date.now();
        await restartProcess(component, { crash: true, downMs: 3000 });
        await until(`the API server to answer after the ${component} restart`, apiUp, 120_000, 250);
        const tUp = Date.now();
        const done = await until(
          'the build to end',
          async () => {
            const b = (await builds()).find((x) => x.metadata.name === nb.metadata.name);
            return b?.status?.phase === 'Succeeded' || b?.status?.phase === 'Failed' ? b : undefined;
          },
          300_000,
          500,
        );
        assert.equal(done.status?.phase, 'Succeeded', JSON.stringify(done.status?.conditions));
        await until(
          'the pod to run the image',
          async () => {
            const pods = (
              await c.kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: APP_NS, labelSelector: `app=${app}` })
            ).items;
            return pods.some((p) => p.status?.phase === 'Running') ? true : undefined;
          },
          300_000,
          500,
        );
        timings.push(
          `${component} down 3 s during a build: API back ${((tUp - t0) / 1000).toFixed(1)} s after the kill; build Succeeded and pod Running ${((Date.now() - tUp) / 1000).toFixed(1)} s later`,
        );
        // Exactly once: one NixBuild for this flake, one Job, one attempt.
        assert.equal((await builds()).filter((b) => b.spec.flakeUrl.includes(flake.rev)).length, 1);
        assert.deepEqual(
          (await jobs())
            .filter((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === nb.metadata.name)
            .map((j) => j.metadata?.name),
          [`${nb.metadata.name}-1`],
        );
        assert.equal(done.status?.attempts, 1);
        assert.equal(controller!.healthy(), true);
      });
    }

    /** The Job pod's `import` container has said it is importing (its stream flowing from the build). */
    const importing = async (job: string): Promise<string | undefined> => {
      const core = c.kc.makeApiClient(CoreV1Api);
      const pods = (await core.listNamespacedPod({ namespace: NS, labelSelector: `job-name=${job}` })).items;
      for (const p of pods) {
        const log = await core
          .readNamespacedPodLog({ namespace: NS, name: p.metadata!.name!, container: 'import' })
          .catch(() => '');
        if (/enbi: importing into containerd/.test(log) && !/enbi: imported /.test(log)) return p.metadata!.name!;
      }
      return undefined;
    };
    const startApp = async (app: string, flake: FixtureFlake) => {
      const d = deploymentOf(app, flake);
      await writeFile(join(dir, `${app}.yaml`), stringify(d));
      await c.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace: APP_NS, body: d });
      return d;
    };
    const buildOf = (flake: FixtureFlake) =>
      until(
        'the build Job to exist',
        async () => {
          const b = (await builds()).find((x) => x.spec.flakeUrl.includes(flake.rev));
          return b !== undefined &&
            (await jobs()).some((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === b.metadata.name)
            ? b
            : undefined;
        },
        120_000,
        100,
      );
    const endOf = (name: string) =>
      until(
        'the build to end',
        async () => {
          const b = (await builds()).find((x) => x.metadata.name === name);
          return b?.status?.phase === 'Succeeded' ||
            (b?.status?.phase === 'Failed' &&
              b.status.conditions?.some((c) => c.type === 'Stalled' && c.status === 'True'))
            ? b
            : undefined;
        },
        300_000,
        500,
      );
    const podRuns = (app: string) =>
      until(
        `the ${app} pod to run the image`,
        async () => {
          const pods = (
            await c.kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: APP_NS, labelSelector: `app=${app}` })
          ).items;
          return pods.some((p) => p.status?.phase === 'Running') ? true : undefined;
        },
        300_000,
        500,
      );

    it("the node's containerd killed during an import: that attempt fails cleanly, the next imports, the pod runs", async () => {
      const app = 'ctrd-app';
      // 300 MiB in the layer: seconds of streaming into containerd, a window to break into.
      const flake = await createFixtureFlake(git, app, { message: `survives containerd ${run}`, bulkMiB: 300 });
      await startApp(app, flake);
      controller!.trigger(true);
      const nb = await buildOf(flake);
      const pod = await until('the import to be under way', () => importing(`${nb.metadata.name}-1`), 180_000, 100);
      // Its bytes flowing into containerd: an ingest of enbi's open on the node's content store.
      const node = c.nodes.find((n) => n.name === nodeName)!;
      await until(
        'an ingest of the import',
        async () =>
          /enbi-import|layer|manifest/.test(
            await runCmd(node.ctr, ['--address', socket, '-n', 'k8s.io', 'content', 'active']).catch(() => ''),
          )
            ? true
            : undefined,
        180_000,
        50,
      );
      const t0 = Date.now();
      await restartProcess(`${nodeName}/containerd`, { crash: true, downMs: 1000 });
      const done = await endOf(nb.metadata.name);
      assert.equal(done.status?.phase, 'Succeeded', JSON.stringify(done.status?.conditions));
      await podRuns(app);
      const first = (
        await c.kc.makeApiClient(CoreV1Api).readNamespacedPod({ namespace: NS, name: pod })
      ).status?.containerStatuses?.find((x) => x.name === 'import');
      const interrupted = first?.state?.terminated !== undefined && first.state.terminated.exitCode !== 0;
      timings.push(
        `containerd killed 1 s during the import of 300 MiB: attempt 1 ${interrupted ? `failed (import exit ${first!.state!.terminated!.exitCode})` : 'completed anyway'}; Succeeded after ${done.status?.attempts} attempt(s), pod Running ${((Date.now() - t0) / 1000).toFixed(1)} s after the kill`,
      );
      assert.ok(interrupted, `the kill interrupted the import: ${JSON.stringify(first?.state)}`);
      assert.equal(done.status?.attempts, 2, 'one failed attempt, one that imported');
      assert.equal((await builds()).filter((b) => b.spec.flakeUrl.includes(flake.rev)).length, 1);
      // What the interrupted attempt left is not an image: the tag is the second attempt's index, complete.
      await assertSpegelReady(socket, `registry.local/rs-${app}:${flake.shortRev}`, {
        digest: done.status!.imageDigest!,
        platforms: ['linux/amd64'],
      });
      assert.equal(controller!.healthy(), true);
    });

    it('the leading replica killed (SIGKILL) during an import: the standby takes over, the build ends once, the pod runs', async () => {
      // Two replicas as deploy/ runs them (subprocesses, leader election on a Lease); the in-process one stops.
      await controller?.stop();
      controller = undefined;
      const cfgFile = join(dir, '.replicas.yaml');
      const replicas: { proc: ChildProcess; out: string; port: number }[] = [];
      const startReplica = async () => {
        const port = await freePort();
        await writeFile(
          cfgFile.replace('.yaml', `-${port}.yaml`),
          stringify({
            ...cfgInput,
            leaderElection: { leaseSeconds: 4, renewSeconds: 1 },
            listen: { host: '127.0.0.1', port },
          }),
        );
        const proc = spawn(
          process.execPath,
          [
            CLI,
            'controller',
            '--config',
            cfgFile.replace('.yaml', `-${port}.yaml`),
            '--kubeconfig',
            c.kubeconfig,
            '--cache-dir',
            join(dir, `.git-${port}`),
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
        const r = { proc, out: '', port };
        proc.stdout!.on('data', (d: Buffer) => (r.out += d.toString()));
        proc.stderr!.on('data', (d: Buffer) => (r.out += d.toString()));
        replicas.push(r);
        return r;
      };
      try {
        await startReplica();
        await startReplica();
        // The Lease names the leader; each replica logs its identity when it starts.
        const leases = c.kc.makeApiClient(CoordinationV1Api);
        const leader = await until(
          'a leading replica',
          async () => {
            const lease = await leases
              .readNamespacedLease({ namespace: NS, name: 'enbi-controller' })
              .catch(() => undefined);
            const holder = lease?.spec?.holderIdentity;
            return holder ? replicas.find((r) => r.out.includes(` as ${holder}`)) : undefined;
          },
          30_000,
          200,
        );
        const app = 'kill-app';
        const flake = await createFixtureFlake(git, app, { message: `survives a killed leader ${run}`, bulkMiB: 300 });
        await startApp(app, flake);
        const nb = await buildOf(flake);
        await until('the import to be under way', () => importing(`${nb.metadata.name}-1`), 180_000, 100);
        const t0 = Date.now();
        leader.proc.kill('SIGKILL');
        const standby = replicas.find((r) => r !== leader)!;
        const done = await endOf(nb.metadata.name);
        assert.equal(done.status?.phase, 'Succeeded', JSON.stringify(done.status?.conditions));
        await podRuns(app);
        timings.push(
          `leading replica SIGKILLed during the import: build Succeeded (attempt ${done.status?.attempts}) and pod Running ${((Date.now() - t0) / 1000).toFixed(1)} s after the kill (lease 4 s)`,
        );
        // Exactly once: one NixBuild, one Job, one attempt; the standby finished it.
        assert.equal((await builds()).filter((b) => b.spec.flakeUrl.includes(flake.rev)).length, 1);
        assert.deepEqual(
          (await jobs())
            .filter((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === nb.metadata.name)
            .map((j) => j.metadata?.name),
          [`${nb.metadata.name}-1`],
        );
        assert.equal(done.status?.attempts, 1);
        assert.equal(standby.proc.exitCode, null, 'the standby runs on');
        assert.equal((await fetch(`http://127.0.0.1:${standby.port}/healthz`)).status, 200);
      } finally {
        for (const r of replicas) r.proc.kill('SIGTERM');
        if (process.env.ENBI_TEST_VERBOSE === '1') for (const r of replicas) console.log(r.out);
      }
    });
  },
);
