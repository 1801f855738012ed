// Spegel mode end to end with a real Spegel (issue 11), on the three-node Spegel cluster
// (test/support/spegel-cluster.ts: enbi-node-1 on containerd 1.6, enbi-node-2 on 2.x able to build
// aarch64-linux through QEMU, enbi-node-3 on 2.x). `enbi controller` (a subprocess, spegel mode) plans from
// a Git repository holding one Deployment with a replica on every node; an enbi agent per node (in this
// process) publishes each containerd and keeps enbi's tags at one index. Shown:
//   - one build for the one system the pods need (x86_64-linux), a Job on one node only; the pods on the two
//     other nodes start without any build there, their image pulled through Spegel (its mirror metrics),
//     each printing the architecture it runs;
//   - after an aarch64-linux build of the same image (a hand-written NixBuild), every node's tag is the same
//     index of both platforms; 50 resolutions of the tag through each node's Spegel give that one digest;
//     a `--platform linux/arm64` pull through Spegel on every node gets the arm64 manifest the build
//     recorded, and an amd64 pull never does.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { type Agent, startAgent } from '../../src/agent/agent.ts';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { ContainerdClient, isNotFound } from '../../src/containerd/client.ts';
import { listImages, nameFilter } from '../../src/containerd/images.ts';
import { readBlob } from '../../src/containerd/platform.ts';
import { OCI_INDEX, parseIndex } from '../../src/image/platform-index.ts';
import { adminCred } from '../cluster/cluster.ts';
import { foreignBusybox, requireEmulation } from '../cluster/emulation.ts';
import { freePort } from '../cluster/ports.ts';
import { clusterSkipReason } from '../cluster/harness.ts';
import { apiMergePatch } from '../cluster/health.ts';
import { hostBin } from '../cluster/paths.ts';
import { run as runCmd } from '../cluster/proc.ts';
import type { ClusterState, NodeState } from '../cluster/state.ts';
import { importBuildImages } from '../support/build-images.ts';
import { applyNodeImagesCrd } from '../support/containerd.ts';
import { createEmulatedFlake, type EmulatedFlake } from '../support/emulated-flake.ts';
import { type GitServer, startGitServer } from '../support/git-server.ts';
import { applyNixBuildCrd, until } from '../support/kube.ts';
import { type NixDaemon, startNixDaemon } from '../support/nix-daemon.ts';
import { type SpegelCluster, spegelCluster } from '../support/spegel-cluster.ts';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const run = Date.now().toString(36);
const NS = `enbi-sp-${run}`;
const APP_NS = `app-sp-${run}`;
const SOCKET_ANNOTATION = 'enbi.hrzn.ee/containerd-socket';
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe(
  'spegel mode with a real Spegel on three nodes (containerd 1.6 and 2.x)',
  { skip: clusterSkipReason(), timeout: 1_200_000 },
  () => {
    let sc: SpegelCluster;
    let s: ClusterState;
    let kc: KubeConfig;
    let git: GitServer;
    let flake: EmulatedFlake;
    let image: string;
    let daemon: NixDaemon | undefined;
    let controller: ChildProcess | undefined;
    let controllerLog = '';
    const agents: Agent[] = [];
    const timings: string[] = [];

    const builds = async () =>
      (
        (await kc
          .makeApiClient(CustomObjectsApi)
          .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL })) as {
          items: NixBuild[];
        }
      ).items;
    const appPods = async () =>
      (await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: APP_NS, labelSelector: 'app=sp' })).items;
    const withClient = async <T>(
      n: NodeState,
      f: (c: ContainerdClient) => Promise<T>,
      namespace = 'k8s.io',
    ): Promise<T> => {
      const c = new ContainerdClient(n.containerdSocket, { namespace });
      try {
        return await f(c);
      } finally {
        c.close();
      }
    };
    /** The tag's index on a node: its digest and entries, or undefined. */
    const tagIndex = (n: NodeState) =>
      withClient(n, async (c) => {
        const [r] = await listImages(c, [nameFilter(image)]);
        if (r === undefined) return undefined;
        return {
          digest: r.target.digest,
          mediaType: r.target.mediaType,
          parsed: parseIndex((await readBlob(c, r.target.digest))!),
        };
      });
    const hasBlob = (n: NodeState, digest: string, namespace: string) =>
      withClient(
        n,
        (c) =>
          c.unary('content', 'Info', { digest }).then(
            () => true,
            (e: unknown) => (isNotFound(e) ? false : Promise.reject(e)),
          ),
        namespace,
      );

    before(async () => {
      await requireEmulation('aarch64-linux'); // the aarch64-linux build runs through QEMU
      let t = Date.now();
      sc = await spegelCluster();
      s = sc.state;
      kc = sc.kc;
      timings.push(`three-node Spegel cluster up (or reused): ${secs(Date.now() - t)}`);
      const core = kc.makeApiClient(CoreV1Api);
      await core.createNamespace({ body: { metadata: { name: NS } } });
      await core.createNamespace({ body: { metadata: { name: APP_NS } } });
      await applyNixBuildCrd(kc);
      await applyNodeImagesCrd(kc);
      for (const n of s.nodes) {
        const a = startAgent({
          node: n.name,
          socket: n.containerdSocket,
          api: kc,
          buildsNamespace: NS,
          resyncMs: 3_600_000,
        });
        agents.push(a);
      }
      await Promise.all(agents.map((a) => a.ready));
      // One Nix store for the three nodes (one machine), aarch64-linux among its platforms as on a binfmt node.
      daemon = await startNixDaemon(join(s.dir, 'enbi-nix-cache'), { extraPlatforms: ['aarch64-linux'] });
      t = Date.now();
      for (const n of s.nodes) {
        await importBuildImages(n);
        await apiMergePatch(s.server, adminCred(s), `/api/v1/nodes/${n.name}`, {
          metadata: { annotations: { [SOCKET_ANNOTATION]: n.containerdSocket } },
        });
      }
      timings.push(`builder and importer images into three nodes: ${secs(Date.now() - t)}`);
      git = await startGitServer({ host: new URL(s.server).hostname });
      // One flake revision, one image per platform: x86_64 built natively, aarch64 by an arm64 busybox (QEMU).
      flake = await createEmulatedFlake(git, 'sp', {
        message: `spread by Spegel ${run}`,
        targets: [
          { system: 'x86_64-linux', architecture: 'amd64', busybox: hostBin('busybox') },
          { system: 'aarch64-linux', architecture: 'arm64', busybox: foreignBusybox('arm64') },
        ],
      });
      image = `registry.local/sp-app:${flake.shortRev}`;
      const deployment: V1Deployment = {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'sp', namespace: APP_NS },
        spec: {
          replicas: 3,
          selector: { matchLabels: { app: 'sp' } },
          template: {
            metadata: { labels: { app: 'sp' }, annotations: { 'enbi.hrzn.ee/flake': `${flake.flakeUrl}#image` } },
            spec: {
              // One replica per node.
              affinity: {
                podAntiAffinity: {
                  requiredDuringSchedulingIgnoredDuringExecution: [
                    { labelSelector: { matchLabels: { app: 'sp' } }, topologyKey: 'kubernetes.io/hostname' },
                  ],
                },
              },
              // Pulled when missing: through the node's Spegel (containerd's hosts.toml), else nowhere.
              containers: [
                {
                  name: 'app',
                  image,
                  imagePullPolicy: 'IfNotPresent',
                  command: [
                    '/bin/sh',
                    '-c',
                    'echo "$(cat /etc/enbi-message), built on $(cat /etc/enbi-build-machine), running on $(uname -m)"; exec /bin/busybox sleep 3600',
                  ],
                },
              ],
            },
          },
        },
      };
      await git.createRepo('manifests', { 'apps/sp.yaml': stringify(deployment) });
      const port = await freePort();
      const dir = await mkdtemp(join(tmpdir(), 'enbi-sp-'));
      const configFile = join(dir, 'config.yaml');
      await writeFile(
        configFile,
        stringify({
          source: { url: git.url('manifests'), ref: 'main', path: 'apps', intervalSeconds: 3600 },
          namespace: NS,
          watchNamespaces: [APP_NS],
          allowedImages: ['registry.local/'],
          allowedFlakes: [`${git.baseUrl}/`],
          mode: 'spegel',
          builderImage: 'enbi.local/builder:dev',
          importerImage: 'enbi.local/importer:dev',
          cache: { hostPath: join(s.dir, 'enbi-nix-cache') },
          maxAttempts: 2,
          retryBaseSeconds: 1,
          leaderElection: { leaseSeconds: 6, renewSeconds: 2 },
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
      // Applied as Flux would apply the repository.
      await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace: APP_NS, body: deployment });
    });

    after(async () => {
      controller?.kill('SIGKILL');
      for (const a of agents) await a.stop();
      await daemon?.stop();
      await git?.close();
      if (process.env.ENBI_TEST_VERBOSE === '1') console.log(controllerLog);
      if (kc !== undefined) {
        await kc
          .makeApiClient(CoreV1Api)
          .deleteNamespace({ name: APP_NS })
          .catch(() => undefined);
        await kc
          .makeApiClient(CoreV1Api)
          .deleteNamespace({ name: NS })
          .catch(() => undefined);
      }
      await sc?.release();
      console.log(`# spegel e2e timings:\n# ${timings.join('\n# ')}`);
    });

    let x86: NixBuild;

    it('one x86_64 build on one node; the pods on the two others start through Spegel, with no build there', async (t: TestContext) => {
      const t0 = Date.now();
      const before = new Map(
        await Promise.all(s.nodes.map(async (n) => [n.name, await sc.spegel.metrics(n.name)] as const)),
      );
      x86 = await until(
        'the build to succeed',
        async () => {
          const mine = (await builds()).filter((b) => b.spec.flakeUrl.includes(flake.rev));
          const failed = mine.find((b) => b.status?.phase === 'Failed');
          if (failed) throw new Error(`build failed: ${JSON.stringify(failed.status)}`);
          return mine.length === 1 && mine[0]!.status?.phase === 'Succeeded' ? mine[0] : undefined;
        },
        600_000,
        500,
      );
      const builder = x86.status!.node!;
      timings.push(`Deployment applied → the one build Succeeded on ${builder}: ${secs(Date.now() - t0)}`);
      assert.equal(x86.spec.system, 'x86_64-linux');
      assert.equal(x86.status?.manifest?.platform, 'linux/amd64');
      // Pods that tried to pull before the image existed wait out kubelet's backoff (10 s, doubling): recreate
      // them, so what is timed is the pull through Spegel, not that backoff.
      const tBuilt = Date.now();
      for (const p of await appPods()) {
        if (p.spec?.nodeName !== builder && p.status?.phase !== 'Running')
          await kc
            .makeApiClient(CoreV1Api)
            .deleteNamespacedPod({ namespace: APP_NS, name: p.metadata!.name!, gracePeriodSeconds: 0 });
      }
      const pods = await until(
        'a pod Running on every node',
        async () => {
          const running = (await appPods()).filter(
            (p) => p.status?.phase === 'Running' && p.metadata?.deletionTimestamp === undefined,
          );
          return new Set(running.map((p) => p.spec?.nodeName)).size === 3 ? running : undefined;
        },
        300_000,
        500,
      );
      timings.push(`build Succeeded → pods Running on all three nodes: ${secs(Date.now() - tBuilt)}`);
      t.diagnostic(timings.join('; '));

      // One build, one Job, on the builder only; nothing ran on the other two nodes.
      assert.equal((await builds()).filter((b) => b.spec.flakeUrl.includes(flake.rev)).length, 1);
      const jobPods = (
        await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: NS, labelSelector: 'enbi.hrzn.ee/nixbuild' })
      ).items;
      assert.deepEqual(
        [...new Set(jobPods.map((p) => p.spec?.nodeName))],
        [builder],
        'build pods ran on the builder only',
      );
      assert.equal((await kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: NS })).items.length, 1);
      // Each pod runs x86_64 code, the build's.
      for (const p of pods as V1Pod[]) {
        const log = await until(
          `${p.metadata!.name} to log`,
          async () =>
            (
              await kc.makeApiClient(CoreV1Api).readNamespacedPodLog({ namespace: APP_NS, name: p.metadata!.name! })
            ).trim() || undefined,
          30_000,
        );
        assert.equal(log, `spread by Spegel ${run}, built on x86_64, running on x86_64`, `${p.spec?.nodeName}: ${log}`);
      }
      // The two other nodes' pulls went to their Spegel and were answered by a peer; the builder served bytes.
      for (const n of s.nodes.filter((x) => x.name !== builder)) {
        const m = await sc.spegel.metrics(n.name);
        assert.ok(
          m.mirrorHits > before.get(n.name)!.mirrorHits,
          `${n.name} (${n.containerd}) pulled through its Spegel: mirror hits ${before.get(n.name)!.mirrorHits} → ${m.mirrorHits}`,
        );
        const idx = await tagIndex(n);
        assert.equal(idx?.mediaType, OCI_INDEX);
        assert.ok(idx?.parsed?.enbi, `${n.name} holds enbi's index under the tag (pulled through Spegel)`);
      }
      const served = await sc.spegel.metrics(builder);
      assert.ok(served.registryBytes > before.get(builder)!.registryBytes, `${builder}'s Spegel served the image`);
    });

    it('after an aarch64 build of the same image: one two-platform index on every node, arm64 pulls get arm64, amd64 pulls never do', async (t: TestContext) => {
      assert.ok(x86?.status?.manifest, 'the x86_64 build (previous test)');
      // A cluster admin's NixBuild for the other platform of the same image (what an arm64 node would trigger).
      const nb: NixBuild = {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'NixBuild',
        metadata: { name: `sp-arm-${run}`, namespace: NS },
        spec: { flakeUrl: flake.flakeUrl, packageName: 'image', system: 'aarch64-linux', images: [image] },
      };
      await kc
        .makeApiClient(CustomObjectsApi)
        .createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL, body: nb });
      const t0 = Date.now();
      const arm = await until(
        'the aarch64 build to succeed',
        async () => {
          const b = (await builds()).find((x) => x.metadata.name === nb.metadata.name);
          if (b?.status?.phase === 'Failed') throw new Error(`aarch64 build failed: ${JSON.stringify(b.status)}`);
          return b?.status?.phase === 'Succeeded' ? b : undefined;
        },
        600_000,
        500,
      );
      assert.equal(arm.status?.node, 'enbi-node-2', 'the only node able to build aarch64-linux');
      assert.equal(arm.status?.manifest?.platform, 'linux/arm64');
      const tBuilt = Date.now();
      const want = { 'linux/amd64': x86.status!.manifest!.digest, 'linux/arm64': arm.status!.manifest!.digest };
      const indexes = await until(
        'every node to hold the two-platform index',
        async () => {
          const all = await Promise.all(s.nodes.map(tagIndex));
          return all.every(
            (i) =>
              i?.parsed !== undefined &&
              JSON.stringify(Object.fromEntries(i.parsed.entries.map((e) => [e.platform, e.digest]))) ===
                JSON.stringify(want),
          )
            ? all
            : undefined;
        },
        60_000,
        100,
      );
      timings.push(
        `aarch64 build ${secs(tBuilt - t0)}; then every node at the two-platform index ${secs(Date.now() - tBuilt)} later`,
      );
      const digest = indexes[0]!.digest;
      assert.ok(
        indexes.every((i) => i!.digest === digest),
        'the same index digest on every node',
      );

      // 50 resolutions of the tag through each node's Spegel: always that index.
      for (const n of s.nodes) {
        const seen = new Map<string, number>();
        let misses = 0;
        for (let ok = 0; ok < 50;) {
          const r = await fetch(`http://${n.ip}:5000/v2/sp-app/manifests/${flake.shortRev}?ns=registry.local`, {
            method: 'HEAD',
            headers: { Accept: `${OCI_INDEX}, application/vnd.oci.image.manifest.v1+json` },
          });
          const d = r.headers.get('docker-content-digest');
          if (r.status !== 200 || d === null) {
            // Spegel's peer iterator can stick for a few seconds on back-to-back requests: space the retry.
            if (++misses > 50) throw new Error(`${n.name}: ${misses} failed resolutions (last ${r.status})`);
            await new Promise((res) => setTimeout(res, 300));
            continue;
          }
          seen.set(d, (seen.get(d) ?? 0) + 1);
          ok++;
        }
        assert.deepEqual([...seen], [[digest, 50]], `${n.name}: 50 resolutions, one digest`);
        t.diagnostic(`${n.name}: 50 resolutions → ${digest} (${misses} retried)`);
      }

      // Pulls through Spegel into namespaces of their own: each gets its own platform's image (its manifest
      // and its layers), never the other's layers. (containerd 2.x fetches every manifest and config of an
      // index as metadata, 1.6 only the platform's: what a pull would run is told by the layers it fetched.)
      const builderNode = s.nodes.find((n) => n.name === arm.status!.node)!;
      const layerOf = (digest: string) =>
        withClient(
          builderNode,
          async (c) =>
            (JSON.parse((await readBlob(c, digest))!.toString()) as { layers: { digest: string }[] }).layers[0]!.digest,
        );
      const layers = {
        'linux/amd64': await layerOf(want['linux/amd64']),
        'linux/arm64': await layerOf(want['linux/arm64']),
      };
      assert.notEqual(layers['linux/amd64'], layers['linux/arm64']);
      for (const n of s.nodes) {
        const hostsDir = sc.spegel.node(n.name).hostsDir;
        for (const [platform, ns] of [
          ['linux/arm64', `pull-arm-${run}`],
          ['linux/amd64', `pull-amd-${run}`],
        ] as const) {
          await runCmd(n.ctr, [
            '--address',
            n.containerdSocket,
            '-n',
            ns,
            'images',
            'pull',
            '--hosts-dir',
            hostsDir,
            '--platform',
            platform,
            image,
          ]);
          const other = platform === 'linux/arm64' ? 'linux/amd64' : 'linux/arm64';
          assert.equal(
            await hasBlob(n, want[platform], ns),
            true,
            `${n.name} (${n.containerd}): a ${platform} pull got the ${platform} manifest`,
          );
          assert.equal(await hasBlob(n, layers[platform], ns), true, `${n.name} (${n.containerd}): and its layer`);
          assert.equal(
            await hasBlob(n, layers[other], ns),
            false,
            `${n.name} (${n.containerd}): a ${platform} pull never took the ${other} image's layer`,
          );
        }
      }
    });
  },
);
