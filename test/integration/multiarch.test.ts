// Two real nodes, two architectures (issue 7): a cluster of its own (ENBI_MULTIARCH_CLUSTER_DIR, default
// ~/.cache/enbi/cluster-multiarch) with enbi-node-1 (x86_64 only) and enbi-node-2, which the harness makes
// able to build aarch64-linux (binfmt_misc + qemu-aarch64 with the F flag, label
// enbi.hrzn.ee/builds.aarch64-linux=true). `enbi controller` (a subprocess, per-node mode) runs against it:
//   - a Deployment of two replicas spread over both nodes gets exactly one NixBuild and one Job per node,
//     and both pods run the manifest's exact image;
//   - an aarch64-linux build (`enbi build … --system aarch64-linux --follow`) waits while the only node able
//     to build it is cordoned, never going to the other node, then runs in a Job on that node: the builder
//     is an arm64 busybox run by QEMU (its `uname -m` says aarch64), the image is imported for linux/arm64,
//     the tag is enbi's index of linux/arm64 only, so a pod on that amd64 node is refused it
//     (ErrImageNeverPull: never another architecture by accident), and `ctr run --platform linux/arm64` runs it;
//   - an enbi agent per node (in this process) publishes each node's containerd exactly as ctr lists it, the
//     aarch64 image with its platform, and the controller plans from those inventories.
// It starts and stops its own cluster (the one `npm test` shares has one node); ENBI_KEEP_CLUSTER=1 keeps
// it for the next run. Under npm test it runs for real (CI=true); ENBI_SKIP_CLUSTER=1 skips it locally.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1Deployment,
  type V1Job,
} from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { adminCred, down, type NodeSpec, up } from '../cluster/cluster.ts';
import { buildsLabel, emulationMissing } from '../cluster/emulation.ts';
import { clusterSkipReason } from '../cluster/harness.ts';
import { apiMergePatch } from '../cluster/health.ts';
import { cacheDir } from '../cluster/paths.ts';
import type { ClusterState, NodeState } from '../cluster/state.ts';
import { importBuildImages } from '../support/build-images.ts';
import { createEmulatedFlake, type EmulatedFlake } from '../support/emulated-flake.ts';
import { createFixtureFlake, type FixtureFlake } from '../support/fixture-flake.ts';
import { type NixDaemon, startNixDaemon } from '../support/nix-daemon.ts';
import { type GitServer, startGitServer } from '../support/git-server.ts';
import { applyNixBuildCrd, until } from '../support/kube.ts';
import { type Agent, startAgent } from '../../src/agent/agent.ts';
import { NODE_IMAGES_PLURAL, type NodeImages } from '../../src/api/nodeimages.ts';
import { applyNodeImagesCrd, byDigest, ctrImages } from '../support/containerd.ts';
import { assertSpegelReady } from '../support/spegel-check.ts';

const pexec = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;
// The CLI from source, which is what bin/enbi.js runs in a checkout: bin/enbi.js prefers dist/ when a
// build left one, and a stale dist/ would test old code.
const CLI = join(ROOT, 'src/cli/main.ts');
const run = Date.now().toString(36);
const NS = `enbi-ma-${run}`;
const APP_NS = `app-ma-${run}`;
const DIR = process.env.ENBI_MULTIARCH_CLUSTER_DIR ?? join(cacheDir(), 'cluster-multiarch');
const ARM = 'enbi-node-2';
const AMD = 'enbi-node-1';
// `emulate: []`: a reused cluster must not have node 1 emulating anything either.
const NODES: NodeSpec[] = [
  { name: AMD, emulate: [] },
  { name: ARM, emulate: ['aarch64-linux'] },
];
const SOCKET_ANNOTATION = 'enbi.hrzn.ee/containerd-socket';

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface CtrImage {
  ref: string;
  digest: string;
  platforms: string;
  labels: string;
}

/** The `ctr -n k8s.io images ls` row of exactly this reference on a node (columns: REF TYPE DIGEST SIZE PLATFORMS LABELS). */
async function ctrImage(n: NodeState, ref: string): Promise<CtrImage | undefined> {
  const { stdout } = await pexec(n.ctr, [
    '--address',
    n.containerdSocket,
    '-n',
    'k8s.io',
    'images',
    'ls',
    `name==${ref}`,
  ]);
  for (const line of stdout.split('\n').slice(1)) {
    // SIZE has a space in it ("1.8 MiB"): match around it.
    const m =
      /^(\S+)\s+\S+\s+(sha256:[0-9a-f]{64})\s+.+?\s+((?:[a-z0-9]+\/[a-z0-9]+(?:\/[a-z0-9]+)?,?)+)\s+(\S+)\s*$/.exec(
        line.trim(),
      );
    if (m?.[1] === ref) return { ref, digest: m[2]!, platforms: m[3]!, labels: m[4]! };
  }
  return undefined;
}

function deploymentOf(name: string, flake: FixtureFlake, image: string): V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: APP_NS },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name }, annotations: { 'enbi.hrzn.ee/flake': `${flake.flakeUrl}#image` } },
        spec: {
          // One replica per node, whatever the scheduler would prefer.
          affinity: {
            podAntiAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: [
                { labelSelector: { matchLabels: { app: name } }, topologyKey: 'kubernetes.io/hostname' },
              ],
            },
          },
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: 'app',
              image,
              imagePullPolicy: 'Never',
              command: ['/bin/sh', '-c', 'exec /bin/busybox sleep 3600'],
            },
          ],
        },
      },
    },
  };
}

describe(
  'two nodes, two architectures: per-node builds and an emulated aarch64-linux build',
  { skip: clusterSkipReason(), timeout: 1_800_000 },
  () => {
    let s: ClusterState;
    let kc: KubeConfig;
    let git: GitServer;
    let controller: ChildProcess | undefined;
    let controllerLog = '';
    let port: number;
    let app: FixtureFlake;
    let arm: EmulatedFlake;
    const timings: string[] = [];
    let agents: Agent[] = [];
    let daemon: NixDaemon | undefined;
    const node = (name: string): NodeState => s.nodes.find((n) => n.name === name)!;
    const nodeImages = async (name: string) =>
      (await kc
        .makeApiClient(CustomObjectsApi)
        .getClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name })
        .catch(() => undefined)) as NodeImages | undefined;
    const builds = async () =>
      (
        (await kc
          .makeApiClient(CustomObjectsApi)
          .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL })) as {
          items: NixBuild[];
        }
      ).items;
    const jobsOf = async (build: string): Promise<V1Job[]> =>
      (
        await kc
          .makeApiClient(BatchV1Api)
          .listNamespacedJob({ namespace: NS, labelSelector: `enbi.hrzn.ee/nixbuild=${build}` })
      ).items;
    /** Where each Job's pod ran (or is bound), by Job name. */
    const jobPodNodes = async (build: string): Promise<Map<string, string | undefined>> => {
      const out = new Map<string, string | undefined>();
      for (const j of await jobsOf(build)) {
        const pods = (
          await kc
            .makeApiClient(CoreV1Api)
            .listNamespacedPod({ namespace: NS, labelSelector: `job-name=${j.metadata!.name!}` })
        ).items;
        for (const p of pods) out.set(j.metadata!.name!, p.spec?.nodeName);
      }
      return out;
    };
    const cordon = (name: string, on: boolean) =>
      apiMergePatch(s.server, adminCred(s), `/api/v1/nodes/${name}`, { spec: { unschedulable: on ? true : null } });
    const enbi = (args: string[]) => {
      const p = spawn(process.execPath, [CLI, ...args, '--namespace', NS, '--kubeconfig', s.kubeconfig], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      return new Promise<{ code: number; out: string }>((resolve) =>
        p.on('close', (code) => resolve({ code: code ?? -1, out })),
      );
    };

    before(async () => {
      let t = Date.now();
      s = await up({
        mode: 'full',
        nodes: NODES,
        dir: DIR,
        owner: process.env.ENBI_TEST_RUN_ID ?? `multiarch-${process.pid}`,
        ownerPid: process.pid,
      });
      timings.push(`two-node cluster up (or reused): ${secs(Date.now() - t)}`);
      assert.equal(emulationMissing('aarch64-linux'), undefined, 'the host runs aarch64 binaries in containers');
      kc = new KubeConfig();
      kc.loadFromFile(s.kubeconfig);
      const core = kc.makeApiClient(CoreV1Api);
      await core.createNamespace({ body: { metadata: { name: NS } } });
      await core.createNamespace({ body: { metadata: { name: APP_NS } } });
      await applyNixBuildCrd(kc);
      await applyNodeImagesCrd(kc);
      // What deploy/agent.yaml runs on every node, here in this process: each node's containerd, published.
      agents = s.nodes.map((n) =>
        startAgent({ node: n.name, socket: n.containerdSocket, api: kc, resyncMs: 3_600_000 }),
      );
      await Promise.all(agents.map((a) => a.ready));
      // And the node component's Nix daemon: one store for both nodes here (one machine, one cache dir), with
      // aarch64-linux among its platforms as on a node with binfmt emulation.
      daemon = await startNixDaemon(join(s.dir, 'enbi-nix-cache'), { extraPlatforms: ['aarch64-linux'] });
      t = Date.now();
      for (const n of s.nodes) {
        await importBuildImages(n);
        // Each node of this machine has a containerd of its own: tell enbi where, as an operator of an odd
        // distribution would (no containerdSocket in the config).
        await apiMergePatch(s.server, adminCred(s), `/api/v1/nodes/${n.name}`, {
          metadata: { annotations: { [SOCKET_ANNOTATION]: n.containerdSocket } },
        });
      }
      timings.push(`builder and importer images into both nodes: ${secs(Date.now() - t)}`);
      // Pods on both nodes reach the host through the bridge address the API server listens on.
      git = await startGitServer({ host: new URL(s.server).hostname });
      app = await createFixtureFlake(git, 'app', { message: `per-node ${run}` });
      arm = await createEmulatedFlake(git, 'arm', { message: `hello aarch64 ${run}` });
      await git.createRepo('manifests', {
        'apps/app.yaml': stringify(deploymentOf('app', app, `registry.local/ma-app:${app.shortRev}`)),
      });
      port = await freePort();
      const dir = await mkdtemp(join(tmpdir(), 'enbi-ma-'));
      const configFile = join(dir, 'config.yaml');
      await writeFile(
        configFile,
        stringify({
          source: { url: git.url('manifests'), ref: 'main', path: 'apps', intervalSeconds: 3600 },
          namespace: NS,
          watchNamespaces: [APP_NS],
          allowedImages: ['registry.local/'],
          allowedFlakes: [`${git.baseUrl}/`],
          mode: 'per-node',
          builderImage: 'enbi.local/builder:dev',
          importerImage: 'enbi.local/importer:dev',
          // One host directory for both nodes: they share this machine's disk (on a real cluster each node
          // has its own). Nix locks the store, so two builds of the same derivation do not collide.
          cache: { hostPath: join(s.dir, 'enbi-nix-cache') },
          maxAttempts: 2,
          retryBaseSeconds: 1,
          listen: { host: '127.0.0.1', port },
        }),
      );
      controller = spawn(
        process.execPath,
        [CLI, 'controller', '--config', configFile, '--kubeconfig', s.kubeconfig, '--cache-dir', join(dir, 'git')],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      controller.stdout!.on('data', (d: Buffer) => (controllerLog += d.toString()));
      controller.stderr!.on('data', (d: Buffer) => (controllerLog += d.toString()));
      await until(
        'the controller to be ready',
        async () =>
          (await fetch(`http://127.0.0.1:${port}/readyz`).then(
            (r) => r.ok,
            () => false,
          )) || undefined,
        60_000,
      );
    });

    after(async () => {
      controller?.kill('SIGKILL');
      for (const a of agents) await a.stop();
      await daemon?.stop();
      await git?.close();
      if (process.env.ENBI_TEST_VERBOSE === '1') console.log(controllerLog);
      if (s !== undefined && process.env.ENBI_KEEP_CLUSTER === '1') {
        const core = new KubeConfig();
        core.loadFromFile(s.kubeconfig);
        await core
          .makeApiClient(CoreV1Api)
          .deleteNamespace({ name: APP_NS })
          .catch(() => undefined);
        await core
          .makeApiClient(CoreV1Api)
          .deleteNamespace({ name: NS })
          .catch(() => undefined);
      } else if (s !== undefined) {
        const t = Date.now();
        await down(DIR);
        timings.push(`two-node cluster down: ${secs(Date.now() - t)}`);
      }
      console.log(`# multiarch timings:\n# ${timings.join('\n# ')}`);
    });

    it('the harness made exactly one node able to build aarch64-linux', async () => {
      const nodes = (await kc.makeApiClient(CoreV1Api).listNode()).items;
      const labelled = nodes
        .filter((n) => n.metadata?.labels?.[buildsLabel('aarch64-linux')] === 'true')
        .map((n) => n.metadata?.name);
      assert.deepEqual(labelled, [ARM]);
      assert.deepEqual(
        nodes.map((n) => n.metadata?.labels?.['kubernetes.io/arch']),
        ['amd64', 'amd64'],
      );
      assert.deepEqual(node(ARM).emulate, ['aarch64-linux']);
      assert.equal(node(AMD).emulate, undefined);
    });

    it('per-node mode: a Deployment spread over both nodes gets one NixBuild and one Job per node, and both pods run its exact image', async (t: TestContext) => {
      const image = `registry.local/ma-app:${app.shortRev}`;
      const t0 = Date.now();
      await kc
        .makeApiClient(AppsV1Api)
        .createNamespacedDeployment({ namespace: APP_NS, body: deploymentOf('app', app, image) });
      const mine = async () => (await builds()).filter((b) => b.spec.flakeUrl.includes(app.rev));
      const done = await until(
        'a succeeded build on each node',
        async () => {
          const all = await mine();
          const failed = all.find((b) => b.status?.phase === 'Failed');
          if (failed) throw new Error(`build failed: ${JSON.stringify(failed.status)}`);
          return all.length >= 2 && all.every((b) => b.status?.phase === 'Succeeded') ? all : undefined;
        },
        600_000,
        500,
      );
      const tBuilt = Date.now();
      const pods = await until(
        'both pods to run the built image',
        async () => {
          const list = (
            await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: APP_NS, labelSelector: 'app=app' })
          ).items;
          const running = list.filter(
            (p) => p.status?.phase === 'Running' && p.status.containerStatuses?.[0]?.ready === true,
          );
          return running.length === 2 ? running : undefined;
        },
        300_000,
        500,
      );
      const tRunning = Date.now();
      timings.push(
        `per-node: Deployment applied → both builds Succeeded ${secs(tBuilt - t0)} → both pods Running ${secs(tRunning - tBuilt)}`,
      );
      t.diagnostic(timings.at(-1)!);

      assert.deepEqual(done.map((b) => b.spec.node).sort(), [AMD, ARM], 'one build pinned to each node');
      assert.deepEqual(done.map((b) => b.status?.node).sort(), [AMD, ARM]);
      assert.ok(done.every((b) => b.spec.system === 'x86_64-linux'));
      for (const b of done) {
        const jobs = await jobsOf(b.metadata.name);
        assert.equal(
          jobs.length,
          1,
          `exactly one Job for ${b.metadata.name}: ${jobs.map((j) => j.metadata?.name).join(', ')}`,
        );
        assert.deepEqual(
          [...(await jobPodNodes(b.metadata.name)).values()],
          [b.spec.node],
          `${b.metadata.name}'s Job ran on its node`,
        );
        // Imported into that node's own containerd under the manifest's reference.
        const stored = await ctrImage(node(b.spec.node!), image);
        assert.ok(stored, `${image} on ${b.spec.node}`);
        await assertSpegelReady(node(b.spec.node!).containerdSocket, image, {
          digest: b.status!.imageDigest!,
          platforms: ['linux/amd64'],
        });
        assert.equal(b.status?.manifest?.platform, 'linux/amd64');
        assert.equal(stored.platforms, 'linux/amd64');
      }
      assert.deepEqual(pods.map((p) => p.spec?.nodeName).sort(), [AMD, ARM], 'one replica on each node');
      for (const p of pods) {
        assert.equal(p.spec?.containers[0]?.image, image);
        assert.equal(p.status?.containerStatuses?.[0]?.image, image);
      }
      // Quiet afterwards: nothing more is built for it.
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal((await mine()).length, 2);
      assert.equal((await kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: NS })).items.length, 2);
    });

    it('an aarch64-linux build waits while the only node able to build it is cordoned: never on the other node', async () => {
      await cordon(ARM, true);
      try {
        const r = await enbi([
          'build',
          `${arm.flakeUrl}#image`,
          '--system',
          'aarch64-linux',
          '--image',
          `registry.local/arm:${arm.shortRev}`,
        ]);
        assert.equal(r.code, 0, r.out);
        const nb = await until(
          'the aarch64 NixBuild to say that no node can build it',
          async () => {
            const b = (await builds()).find((x) => x.spec.flakeUrl.includes(arm.rev));
            return b?.status?.conditions?.some((c) => c.type === 'Ready' && c.reason === 'NoBuilderNode')
              ? b
              : undefined;
          },
          60_000,
          300,
        );
        assert.equal(nb.status?.phase, 'Pending');
        assert.match(
          nb.status?.conditions?.find((c) => c.type === 'Ready')?.message ?? '',
          /no Ready node can build aarch64-linux/,
        );
        await new Promise((r) => setTimeout(r, 3000));
        assert.deepEqual(await jobsOf(nb.metadata.name), [], 'no Job while only the other node is schedulable');
        assert.equal((await builds()).find((x) => x.metadata.name === nb.metadata.name)?.status?.node, undefined);
      } finally {
        await cordon(ARM, false);
      }
    });

    let armImage: string | undefined;

    it('enbi build --system aarch64-linux --follow: built emulated in a Job on the binfmt node, imported for linux/arm64', async (t: TestContext) => {
      const image = `registry.local/arm:${arm.shortRev}`;
      const t0 = Date.now();
      // The NixBuild exists (previous test): --follow follows it from the node's uncordoning to the end.
      const r = await enbi([
        'build',
        `${arm.flakeUrl}#image`,
        '--system',
        'aarch64-linux',
        '--image',
        image,
        '--follow',
      ]);
      const ms = Date.now() - t0;
      assert.equal(r.code, 0, `${r.out.slice(-3000)}\n--- controller:\n${controllerLog.slice(-3000)}`);
      const nb = (await builds()).find((x) => x.spec.flakeUrl.includes(arm.rev))!;
      // The builder's own `uname -m`, in the build log that --follow streamed: the build ran aarch64 code.
      assert.match(r.out, /enbi-fixture: building on aarch64/);
      assert.match(r.out, new RegExp(`Succeeded: ${image} sha256:[0-9a-f]{64} on ${ARM}`));
      assert.equal(nb.status?.phase, 'Succeeded');
      assert.equal(nb.status?.node, ARM);
      assert.equal(nb.status?.system, 'aarch64-linux');
      assert.match(nb.status?.storePath ?? '', /^\/nix\/store\/[0-9a-z]{32}-enbi-fixture-emulated$/);
      const jobs = await jobsOf(nb.metadata.name);
      assert.ok(jobs.length >= 1);
      for (const [job, where] of await jobPodNodes(nb.metadata.name))
        assert.equal(where, ARM, `Job ${job} ran on ${where}, not ${ARM}`);
      const job = jobs.find((j) => j.metadata?.name === nb.status?.buildJobName)!;
      const containers = job.spec!.template.spec!.containers;
      const env = (c: string, k: string) => containers.find((x) => x.name === c)?.env?.find((e) => e.name === k)?.value;
      // The node's daemon builds it (its extra-platforms); the Job only asks.
      assert.equal(env('build', 'NIX_REMOTE'), 'daemon');
      assert.doesNotMatch(env('build', 'NIX_CONFIG') ?? '', /extra-platforms|sandbox/);
      assert.equal(env('import', 'ENBI_PLATFORM'), 'linux/arm64', 'ctr images import --platform linux/arm64');
      const stored = await ctrImage(node(ARM), image);
      assert.ok(stored, `${image} in ${ARM}'s containerd`);
      assert.equal(stored.platforms, 'linux/arm64');
      await assertSpegelReady(node(ARM).containerdSocket, image, {
        digest: nb.status!.imageDigest!,
        platforms: ['linux/arm64'],
      });
      assert.equal(nb.status?.manifest?.platform, 'linux/arm64');
      assert.match(stored.labels, /io\.cri-containerd\.pinned=pinned/);
      assert.equal(await ctrImage(node(AMD), image), undefined, `nothing imported on ${AMD}`);
      // Nix's own time, from the build container's log timestamps (the rest is pod start-up and import).
      const pod = (
        await kc
          .makeApiClient(CoreV1Api)
          .listNamespacedPod({ namespace: NS, labelSelector: `job-name=${job.metadata!.name!}` })
      ).items[0]!;
      const log = await kc
        .makeApiClient(CoreV1Api)
        .readNamespacedPodLog({ name: pod.metadata!.name!, namespace: NS, container: 'build', timestamps: true });
      const at = (re: RegExp): number => {
        const line = log.split('\n').find((l) => re.test(l));
        assert.ok(line, `${re} in the build log`);
        // containerd's timestamps have nanoseconds, which Date.parse does not take.
        const m = /^(\S+?)(?:\.(\d+))?Z /.exec(line);
        assert.ok(m, line);
        return Date.parse(`${m[1]}Z`) + Number(`0.${m[2] ?? '0'}`) * 1000;
      };
      const nixMs = at(/ enbi: built \//) - at(/ enbi: building /);
      armImage = image;
      timings.push(
        `aarch64-linux: node uncordoned → enbi build --follow exited 0 after ${secs(ms)} (nix build, emulated, ${secs(nixMs)}; Job ${job.metadata?.name} on ${ARM})`,
      );
      t.diagnostic(timings.at(-1)!);
    });

    it("the aarch64 image runs on the binfmt node when asked for arm64, and the node's own pods never take it for amd64", async () => {
      const image = armImage;
      assert.ok(image !== undefined, 'the aarch64 build succeeded');
      // The tag is enbi's index listing linux/arm64 only: kubelet on this amd64 node asks containerd for its own
      // platform and finds none, so a pod there never runs another architecture's code by accident.
      const core = kc.makeApiClient(CoreV1Api);
      await core.createNamespacedPod({
        namespace: APP_NS,
        body: {
          metadata: { name: 'arm-echo' },
          spec: {
            nodeName: ARM,
            restartPolicy: 'Never',
            terminationGracePeriodSeconds: 1,
            automountServiceAccountToken: false,
            containers: [{ name: 'echo', image, imagePullPolicy: 'Never' }],
          },
        },
      });
      const waiting = await until(
        'the pod to be refused the arm64 image',
        async () => {
          const p = await core.readNamespacedPod({ name: 'arm-echo', namespace: APP_NS });
          if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Running')
            throw new Error(`arm-echo ran on ${ARM} (amd64): ${JSON.stringify(p.status?.containerStatuses)}`);
          const reason = p.status?.containerStatuses?.[0]?.state?.waiting?.reason;
          return reason !== undefined && reason !== 'ContainerCreating' ? reason : undefined;
        },
        60_000,
        300,
      );
      assert.equal(waiting, 'ErrImageNeverPull');
      // Asked for linux/arm64, containerd takes the arm64 manifest from the index and QEMU runs it.
      const n = node(ARM);
      const t0 = Date.now();
      const out = await pexec(n.ctr, [
        '--address',
        n.containerdSocket,
        '-n',
        'k8s.io',
        'run',
        '--rm',
        '--platform',
        'linux/arm64',
        image,
        `arm-echo-${Date.now().toString(36)}`,
      ]);
      timings.push(`aarch64 image run with ctr --platform linux/arm64 on ${ARM}: ${secs(Date.now() - t0)}`);
      assert.equal(out.stdout.trim(), arm.expectedOutput);
    });

    it("the agents publish each node's containerd exactly as ctr lists it; the aarch64 image with its platform, on its node only", async () => {
      const image = armImage;
      assert.ok(image !== undefined, 'the aarch64 build succeeded');
      for (const n of s.nodes) {
        let last = '';
        await until(
          `NodeImages/${n.name} to equal ctr images ls`,
          async () => {
            const [ni, listed] = await Promise.all([nodeImages(n.name), ctrImages(n.ctr, n.containerdSocket)]);
            const got = new Map((ni?.status?.images ?? []).map((i) => [i.digest, [...i.names].sort()]));
            const want = byDigest(listed);
            last = `${got.size} digests published, ${want.size} in containerd`;
            try {
              assert.deepEqual(got, want);
              assert.equal(ni?.status?.truncated, false);
              return true;
            } catch {
              return undefined;
            }
          },
          60_000,
          250,
        ).catch((e: Error) => {
          throw new Error(`${e.message}: ${last}`);
        });
      }
      const onArm = (await nodeImages(ARM))!.status!.images.find((i) => i.names.includes(image));
      assert.deepEqual(onArm?.platforms, ['linux/arm64']);
      assert.equal(
        (await nodeImages(AMD))!.status!.images.some((i) => i.names.includes(image)),
        false,
      );
    });
  },
);
