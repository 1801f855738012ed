// deploy/ as shipped, running in the cluster (issue 13): a real node set up as k3s sets up its containerd
// (socket /run/k3s/containerd/containerd.sock), enbi's images from images/build.ts imported into it under
// the names deploy/ uses, and deploy/ applied through a kustomize overlay that holds only what a user
// writes (their config, the webhook Secret, the daemon's extra nix.conf, docs/install.md's k3s patch).
// Then, through the controller and agent pods alone (their ServiceAccounts, probes, read-only roots, the
// agent's admission policy and Nix daemon): a Deployment whose image is missing runs once enbi built it
// (on demand), and a push announced by webhook builds the next revision before any pod asks (eager).
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AppsV1Api,
  AuthorizationV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
} from '@kubernetes/client-node';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { renderTool } from '../support/render-tools.ts';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { NODE_IMAGES_KIND, NODE_IMAGES_PLURAL } from '../../src/api/nodeimages.ts';
import { imageRef } from '../../images/build.ts';
import { IMAGES } from '../../images/definition.ts';
import { down, up } from '../cluster/cluster.ts';
import { clusterSkipReason } from '../cluster/harness.ts';
import { cacheDir } from '../cluster/paths.ts';
import type { ClusterState, NodeState } from '../cluster/state.ts';
import { importBuildImages } from '../support/build-images.ts';
import { createFixtureFlake, SNOOP_ATTEMPTS, type FixtureFlake } from '../support/fixture-flake.ts';
import { type GitServer, startGitServer } from '../support/git-server.ts';
import {
  applyAll,
  DEPLOY_DIR,
  INSTALL_NS,
  K3S_SOCKET,
  K3S_SOCKET_DIR,
  kustomizeBuild,
  waitInstalled,
  writeOverlay,
} from '../support/install.ts';
import { until } from '../support/kube.ts';
import { idleAppDeployment } from '../support/fixtures.ts';

const run = Date.now().toString(36);
const APP_NS = `app-install-${run}`;
const SECRET = `install-webhook-${run}`;
/** The Nix Secret (nixSecretName) every build Job of the install mounts, and the token in it. */
const NIX_SECRET = 'install-nix-secret';
const NIX_TOKEN = `enbi-secret-${randomBytes(12).toString('hex')}`;
const NODE = 'enbi-k3s-1';
const dir = process.env.ENBI_INSTALL_CLUSTER_DIR ?? join(cacheDir(), 'cluster-install');

/** The resident memory of this machine's processes whose command line matches: what the pods' processes hold. */
function rssOf(cmdline: RegExp, label: string): string {
  const figures: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!cmdline.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))) continue;
      const kb = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
      figures.push(`${(kb / 1024).toFixed(1)} MiB`);
    } catch {
      // gone meanwhile
    }
  }
  return `${label} ${figures.join(', ') || 'not found'}`;
}

function appDeployment(name: string, flake: FixtureFlake, eager: boolean): V1Deployment {
  return idleAppDeployment({
    name,
    namespace: APP_NS,
    flakeUrl: flake.flakeUrl,
    image: `registry.local/install-app:${flake.shortRev}`,
    eager,
  });
}

describe(
  'deploy/ installed in the cluster on a k3s-style node',
  { skip: clusterSkipReason(), timeout: 1_500_000 },
  () => {
    let state: ClusterState;
    let kc: KubeConfig;
    let node: NodeState;
    let git: GitServer;
    const timings: string[] = [];

    const core = () => kc.makeApiClient(CoreV1Api);
    const builds = async () =>
      (
        (await kc
          .makeApiClient(CustomObjectsApi)
          .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: INSTALL_NS, plural: PLURAL })) as {
          items: NixBuild[];
        }
      ).items;
    const podsOf = async (component: string) =>
      (
        await core().listNamespacedPod({
          namespace: INSTALL_NS,
          labelSelector: `app.kubernetes.io/component=${component}`,
        })
      ).items;
    /** What the installed pods say: their phase, container states and last log lines (for failures). */
    const diagnose = async (): Promise<string> => {
      const lines: string[] = [];
      const pods = (await core().listNamespacedPod({ namespace: INSTALL_NS })).items;
      for (const p of pods) {
        lines.push(
          `${p.metadata?.name}: ${p.status?.phase} ${JSON.stringify(p.status?.containerStatuses?.map((c) => [c.name, c.ready, c.state]))}`,
        );
        for (const c of p.spec?.containers ?? []) {
          const log = await core()
            .readNamespacedPodLog({ name: p.metadata!.name!, namespace: INSTALL_NS, container: c.name, tailLines: 15 })
            .catch((e: unknown) => `(no log: ${String(e).split('\n')[0]})`);
          lines.push(`--- ${p.metadata?.name}/${c.name}\n${log}`);
        }
      }
      const events = (await core().listNamespacedEvent({ namespace: INSTALL_NS })).items.filter(
        (e) => e.type === 'Warning',
      );
      lines.push(
        ...events
          .slice(-15)
          .map((e) => `event ${e.involvedObject.kind}/${e.involvedObject.name}: ${e.reason} ${e.message}`),
      );
      return lines.join('\n');
    };
    const runningPod = async (app: string, image: string) => {
      const pods = (await core().listNamespacedPod({ namespace: APP_NS, labelSelector: `app=${app}` })).items;
      return pods.find((p) => p.status?.phase === 'Running' && p.spec?.containers[0]?.image === image);
    };
    const succeeded = (rev: string) =>
      until(
        `the build of ${rev.slice(0, 7)} to succeed`,
        async () => {
          const b = (await builds()).find((x) => x.spec.flakeUrl.includes(rev));
          if (b?.status?.phase === 'Failed')
            throw new Error(`build failed: ${JSON.stringify(b.status)}\n${await diagnose()}`);
          return b?.status?.phase === 'Succeeded' ? b : undefined;
        },
        400_000,
        1000,
      ).catch(async (err: unknown) => {
        throw new Error(`${(err as Error).message}\n${await diagnose()}`);
      });

    before(async () => {
      state = await up({
        mode: 'full',
        dir,
        nodes: [{ name: NODE, emulate: [], socket: K3S_SOCKET }],
        owner: process.env.ENBI_TEST_RUN_ID ?? `install-${process.pid}`,
        ownerPid: Number(process.env.ENBI_TEST_RUN_PID) || process.pid,
      });
      kc = new KubeConfig();
      kc.loadFromFile(state.kubeconfig);
      node = state.nodes[0]!;
      // k3s's kubelet reports "+k3s" in its version and enbi infers the socket from it; this kubelet is a
      // plain v1.34.4, so the node says where its socket is, as docs/install.md tells other distributions.
      await core().patchNode(
        { name: NODE, body: { metadata: { annotations: { 'enbi.hrzn.ee/containerd-socket': K3S_SOCKET } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      await core()
        .createNamespace({ body: { metadata: { name: APP_NS } } })
        .catch(() => undefined);
      await importBuildImages(node);
      // A cluster kept from an earlier run (ENBI_KEEP_CLUSTER=1) holds that run's builds and images, and the
      // fixture commits are deterministic: start from none of them.
      const ctr = (...args: string[]) =>
        execFileSync(node.ctr, ['--address', node.containerdSocket, '-n', 'k8s.io', ...args], { encoding: 'utf8' });
      const stale = ctr('images', 'ls', '-q')
        .split('\n')
        .filter((n) => n.startsWith('registry.local/install-app'));
      if (stale.length > 0) ctr('images', 'rm', ...stale);
      // Its install too: a controller reads its configuration once, at start.
      const leftover = (await core().listNamespace()).items
        .map((n) => n.metadata!.name!)
        .filter((n) => n === INSTALL_NS || (n.startsWith('app-install-') && n !== APP_NS));
      for (const name of leftover)
        await core()
          .deleteNamespace({ name })
          .catch(() => undefined);
      await until(
        'leftover namespaces gone',
        async () =>
          (await core().listNamespace()).items.some((n) => leftover.includes(n.metadata!.name!)) ? undefined : true,
        120_000,
        1000,
      );
      git = await startGitServer({ host: new URL(state.server).hostname });
    });

    after(async () => {
      await git?.close();
      if (state !== undefined && process.env.ENBI_KEEP_CLUSTER !== '1') await down(dir);
      console.log(`# timings:\n# ${timings.join('\n# ')}`);
    });

    let v1: FixtureFlake;
    let userConfig: Record<string, unknown>;
    let objects: KubernetesObject[] = [];
    const webhook = async (ip: string | undefined, body = '{"ref":"refs/heads/main"}') =>
      fetch(`http://${ip}:8081/hooks/git`, {
        method: 'POST',
        body,
        headers: {
          'X-Hub-Signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`,
          'Content-Type': 'application/json',
        },
      });

    it('names the images images/build.ts builds', async () => {
      const refs = new Set<string>();
      for (const file of ['controller.yaml', 'agent.yaml', 'nix-daemon.yaml']) {
        for (const doc of parseAllDocuments(await readFile(join(DEPLOY_DIR, file), 'utf8'))) {
          const text = JSON.stringify(doc.toJS());
          for (const m of text.matchAll(/ghcr\.io\/hrzn\/[a-z-]+:[0-9.]+/g)) refs.add(m[0]);
        }
      }
      assert.deepEqual([...refs].sort(), IMAGES.map((d) => imageRef(d)).sort());
    });

    it("installs from deploy/ with a user's overlay: controller replicas and the agent Ready under their ServiceAccounts", async () => {
      v1 = await createFixtureFlake(git, 'app', { message: 'hello from the installed enbi' });
      // Git declares the app (enbi builds only what Git names); the test applies it, as Argo CD or Flux would.
      await git.createRepo('manifests', { 'apps/app.yaml': JSON.stringify(appDeployment('app', v1, false)) });
      // The shipped configuration, with what a user must set: their source, what may be built, and per-node
      // mode (no Spegel here). Everything else as deploy/controller.yaml has it.
      const shipped = parseAllDocuments(await readFile(join(DEPLOY_DIR, 'controller.yaml'), 'utf8')).map(
        (d) => d.toJS() as { kind: string; data?: Record<string, string> },
      );
      const config = parse(shipped.find((d) => d.kind === 'ConfigMap')!.data!['config.yaml']!) as Record<
        string,
        unknown
      >;
      Object.assign(config, {
        source: { url: git.url('manifests'), ref: 'main', path: 'apps', intervalSeconds: 3600 },
        allowedImages: ['registry.local/'],
        allowedFlakes: [`${git.baseUrl}/`],
        mode: 'per-node',
        retryBaseSeconds: 1,
        // Two builds at once on the node: the poisoning build runs while another build is in progress.
        maxConcurrentBuildsPerNode: 2,
        // As a user with private flakes has it: every build container mounts the Secret.
        nixSecretName: NIX_SECRET,
      });
      const overlay = writeOverlay(await mkdtemp(join(tmpdir(), 'enbi-install-')), {
        config,
        webhookSecret: SECRET,
        containerdDir: K3S_SOCKET_DIR,
        // This machine is offline: no substituter.
        nixConf: 'substituters =\n',
      });
      userConfig = config;
      objects = await kustomizeBuild(overlay);
      const t0 = Date.now();
      await applyAll(kc, objects);
      // Not among the overlay's objects: it stays in the namespace when the Helm chart replaces the install.
      await core().createNamespacedSecret({
        namespace: INSTALL_NS,
        body: {
          metadata: { name: NIX_SECRET },
          stringData: { 'nix.conf': `access-tokens = secret.invalid=${NIX_TOKEN}\n` },
        },
      });
      await waitInstalled(kc, 300_000, diagnose);
      timings.push(`installed and Ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const controllers = await podsOf('controller');
      assert.equal(controllers.length, 2);
      for (const p of controllers) assert.equal(p.spec?.serviceAccountName, 'enbi-controller');
      const [agent] = await podsOf('agent');
      assert.equal(agent?.spec?.serviceAccountName, 'enbi-agent');
      assert.equal(agent?.spec?.volumes?.find((v) => v.name === 'containerd')?.hostPath?.path, K3S_SOCKET_DIR);
      // The agent's inventory of its own node, written through the admission policy with its pod-bound token.
      const inventory = await until(
        "the agent's NodeImages of its node",
        async () => {
          const list = (await kc
            .makeApiClient(CustomObjectsApi)
            .listClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL })) as {
            items: { metadata: { name: string }; status?: { images?: unknown[] } }[];
          };
          return list.items.find((n) => n.metadata.name === NODE && (n.status?.images?.length ?? 0) > 0);
        },
        60_000,
        1000,
      );
      assert.ok((inventory.status?.images?.length ?? 0) >= 2, "the inventory lists at least enbi's two images");
      timings.push(
        `RSS once Ready: ${rssOf(/\bcontroller\0--config\0\/etc\/enbi\/config\.yaml/, 'controller')}, ${rssOf(/\bagent\0--node\0/, 'agent')}`,
      );
    });

    it('each ServiceAccount may do what its job needs and nothing else (SubjectAccessReview, as kubectl auth can-i --as asks)', async () => {
      const authz = kc.makeApiClient(AuthorizationV1Api);
      const can = async (
        sa: string,
        verb: string,
        resource: string,
        o: { group?: string; namespace?: string; subresource?: string; name?: string } = {},
      ) => {
        const r = await authz.createSubjectAccessReview({
          body: {
            spec: {
              user: `system:serviceaccount:${INSTALL_NS}:${sa}`,
              groups: ['system:serviceaccounts', `system:serviceaccounts:${INSTALL_NS}`, 'system:authenticated'],
              resourceAttributes: {
                verb,
                resource,
                group: o.group ?? '',
                namespace: o.namespace,
                subresource: o.subresource,
                name: o.name,
              },
            },
          },
        });
        return r.status?.allowed === true;
      };
      const expect: [string, string, string, Parameters<typeof can>[3], boolean][] = [
        ['enbi-controller', 'create', 'jobs', { group: 'batch', namespace: INSTALL_NS }, true],
        ['enbi-controller', 'create', 'nixbuilds', { group: GROUP, namespace: INSTALL_NS }, true],
        ['enbi-controller', 'patch', 'nixbuilds', { group: GROUP, namespace: INSTALL_NS, subresource: 'status' }, true],
        ['enbi-controller', 'list', 'pods', {}, true],
        ['enbi-controller', 'get', 'pods', { namespace: INSTALL_NS, subresource: 'log' }, true],
        [
          'enbi-controller',
          'update',
          'leases',
          { group: 'coordination.k8s.io', namespace: INSTALL_NS, name: 'enbi-controller' },
          true,
        ],
        [
          'enbi-controller',
          'update',
          'leases',
          { group: 'coordination.k8s.io', namespace: INSTALL_NS, name: 'another-lease' },
          false,
        ],
        ['enbi-controller', 'create', 'jobs', { group: 'batch', namespace: APP_NS }, false],
        ['enbi-controller', 'create', 'pods', { namespace: INSTALL_NS }, false],
        ['enbi-controller', 'get', 'secrets', { namespace: INSTALL_NS }, false],
        ['enbi-controller', 'patch', 'nodes', {}, false],
        ['enbi-controller', 'delete', 'pods', { namespace: APP_NS }, false],
        ['enbi-agent', 'get', 'nodes', {}, true],
        ['enbi-agent', 'create', 'nodeimages', { group: GROUP }, true],
        ['enbi-agent', 'watch', 'nixbuilds', { group: GROUP, namespace: INSTALL_NS }, true],
        ['enbi-agent', 'create', 'nixbuilds', { group: GROUP, namespace: INSTALL_NS }, false],
        ['enbi-agent', 'list', 'secrets', { namespace: INSTALL_NS }, false],
        ['enbi-agent', 'create', 'jobs', { group: 'batch', namespace: INSTALL_NS }, false],
        ['enbi-agent', 'patch', 'nodes', {}, false],
        ['enbi-agent', 'list', 'pods', {}, false],
      ];
      const wrong: string[] = [];
      for (const [sa, verb, resource, o, allowed] of expect) {
        if ((await can(sa, verb, resource, o)) !== allowed)
          wrong.push(
            `${sa} ${allowed ? 'cannot' : 'can'} ${verb} ${resource}${o?.subresource ? `/${o.subresource}` : ''}${o?.name ? ` ${o.name}` : ''} in ${o?.namespace ?? 'the cluster'}`,
          );
      }
      assert.deepEqual(wrong, []);
      // RBAC lets the agent create NodeImages; the admission policy keeps it to its own node's: a token of the
      // agent's ServiceAccount bound to its pod (what the pod itself holds) is refused another node's name.
      const [agent] = await podsOf('agent');
      const token = await core().createNamespacedServiceAccountToken({
        name: 'enbi-agent',
        namespace: INSTALL_NS,
        body: {
          spec: {
            audiences: [],
            expirationSeconds: 600,
            boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: agent!.metadata!.name!, uid: agent!.metadata!.uid! },
          },
        },
      });
      const cluster = kc.getCurrentCluster()!;
      const asAgent = new KubeConfig();
      asAgent.loadFromOptions({
        clusters: [cluster],
        users: [{ name: 'agent', token: token.status?.token ?? '' }],
        contexts: [{ name: 'agent', cluster: cluster.name, user: 'agent' }],
        currentContext: 'agent',
      });
      await assert.rejects(
        asAgent.makeApiClient(CustomObjectsApi).createClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: NODE_IMAGES_PLURAL,
          body: { apiVersion: `${GROUP}/${VERSION}`, kind: NODE_IMAGES_KIND, metadata: { name: 'another-node' } },
        }),
        (err: { code?: number; body?: string }) =>
          err.code === 403 && /may write only the NodeImages of its own node \(enbi-k3s-1\)/.test(String(err.body)),
      );
    });

    it('on demand: a Deployment whose image no node holds runs once the installed enbi built and imported it', async () => {
      const t0 = Date.now();
      await kc
        .makeApiClient(AppsV1Api)
        .createNamespacedDeployment({ namespace: APP_NS, body: appDeployment('app', v1, false) });
      const done = await succeeded(v1.rev);
      const tBuilt = Date.now();
      const pod = await until(
        'the pod to run the built image',
        () => runningPod('app', `registry.local/install-app:${v1.shortRev}`),
        300_000,
        1000,
      );
      timings.push(
        `on demand: applied → built and imported ${((tBuilt - t0) / 1000).toFixed(1)} s → pod Running ${((Date.now() - tBuilt) / 1000).toFixed(1)} s`,
      );
      assert.equal(done.status?.node, NODE);
      assert.match(done.status?.imageDigest ?? '', /^sha256:[0-9a-f]{64}$/);
      assert.equal(pod.spec?.nodeName, NODE);
      // The Job ran the shipped builder and importer images, with the importer on the k3s socket.
      const job = (await kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: INSTALL_NS })).items.find(
        (j) => j.metadata?.name === done.status?.buildJobName,
      );
      const images = [
        ...(job?.spec?.template.spec?.initContainers ?? []),
        ...(job?.spec?.template.spec?.containers ?? []),
      ].map((c) => c.image);
      assert.deepEqual([...new Set(images)].sort(), IMAGES.map((d) => imageRef(d)).sort());
      assert.ok(
        job?.spec?.template.spec?.volumes?.some(
          (v) => v.hostPath?.path === K3S_SOCKET || v.hostPath?.path === K3S_SOCKET_DIR,
        ),
        'the importer mounts the k3s socket',
      );
    });

    it("the installed Nix daemon: its version and nix.conf; a build that takes another build's output as its input cannot change it", async (t) => {
      const [daemonPod] = await podsOf('nix-daemon');
      assert.ok(daemonPod, 'a Nix daemon pod on the builder node');
      assert.equal(daemonPod.spec?.automountServiceAccountToken, false, 'no API token in the privileged container');
      const id = daemonPod.status?.containerStatuses
        ?.find((c) => c.name === 'nix-daemon')
        ?.containerID?.replace(/^containerd:\/\//, '');
      assert.ok(id, 'the daemon container runs');
      let n = 0;
      const inDaemon = (...args: string[]) =>
        execFileSync(
          node.ctr,
          [
            '--address',
            node.containerdSocket,
            '-n',
            'k8s.io',
            'tasks',
            'exec',
            '--exec-id',
            `enbi-test-${run}-${n++}`,
            id,
            ...args,
          ],
          { encoding: 'utf8' },
        );
      const version = inDaemon('nix', '--version').trim();
      const conf = inDaemon('cat', '/etc/enbi/nix-daemon/nix.conf');
      t.diagnostic(`installed daemon: ${version}\n${conf}`);
      console.log(`# installed Nix daemon: ${version}\n# nix.conf:\n${conf.replace(/^/gm, '#   ')}`);
      assert.match(conf, /^build-users-group = nixbld$/m);
      assert.match(conf, /^sandbox-fallback = false$/m);
      assert.match(inDaemon('cat', '/etc/group'), /^nixbld:x:30000:nixbld1,/m);

      // The victim, then the attacker: two NixBuilds, the second's derivation lists the first's output as an input.
      // This run's own derivations: the node's store (/var/lib/enbi/nix) outlives runs, and a path already
      // valid there would be served, not built, so the attacker's build would never run.
      const flake = await createFixtureFlake(git, 'poison', {
        message: `victim of the installed daemon ${run}`,
        poison: 'poison',
      });
      const custom = kc.makeApiClient(CustomObjectsApi);
      const submit = (name: string, attr: string) =>
        custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: INSTALL_NS,
          plural: PLURAL,
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'NixBuild',
            metadata: { name },
            spec: {
              flakeUrl: flake.flakeUrl,
              packageName: attr,
              system: flake.system,
              images: [`registry.local/install-${name}:${run}`],
            },
          },
        });
      const finished = (name: string) =>
        until(
          `NixBuild ${name} to finish`,
          async () => {
            const b = (await builds()).find((x) => x.metadata?.name === name);
            return b?.status?.phase === 'Succeeded' || b?.status?.phase === 'Failed' ? b : undefined;
          },
          400_000,
          1000,
        );
      await submit(`victim-${run}`, 'image');
      const victim = await finished(`victim-${run}`);
      assert.equal(victim.status?.phase, 'Succeeded', JSON.stringify(victim.status));
      const storePath = victim.status!.storePath!;
      const onHost = join('/var/lib/enbi/nix', storePath.slice('/nix'.length));
      const before = { bytes: readFileSync(onHost).toString('base64'), mode: statSync(onHost).mode };
      // A build's log, from its Job's build container (empty until that container runs).
      const buildLogOf = async (name: string): Promise<string> => {
        const job = (await builds()).find((x) => x.metadata?.name === name)?.status?.buildJobName;
        if (job === undefined) return '';
        const pod = (
          await core().listNamespacedPod({
            namespace: INSTALL_NS,
            labelSelector: `batch.kubernetes.io/job-name=${job}`,
          })
        ).items[0];
        if (pod?.metadata?.name === undefined) return '';
        return core()
          .readNamespacedPodLog({ name: pod.metadata.name, namespace: INSTALL_NS, container: 'build' })
          .catch(() => '');
      };
      // Another build in progress: the slow package writes its output, then holds it for 25 s.
      await submit(`slow-${run}`, 'slow');
      await until(
        'the slow build to hold its output',
        async () => ((await buildLogOf(`slow-${run}`)).includes('enbi-slow: holding the output') ? true : undefined),
        300_000,
        500,
      );
      await submit(`poison-${run}`, 'poison');
      const poison = await finished(`poison-${run}`);
      assert.equal(poison.status?.phase, 'Succeeded', JSON.stringify(poison.status));
      const slow = await finished(`slow-${run}`);
      assert.equal(slow.status?.phase, 'Succeeded', JSON.stringify(slow.status));
      const buildLog = await buildLogOf(`poison-${run}`);
      const slowLog = await buildLogOf(`slow-${run}`);
      t.diagnostic(
        buildLog
          .split('\n')
          .filter((l) => l.includes('enbi-poison'))
          .join('\n'),
      );
      const uidMap = /enbi-poison: builder uid \d+, uid_map\s+(\d+)\s+(\d+)\s+(\d+)/.exec(buildLog);
      assert.ok(uidMap, buildLog);
      assert.notEqual(uidMap[2], '0', `a build user, not the daemon's root: ${uidMap[0]}`);
      for (const attempt of [
        'chmod-victim',
        'append-victim',
        'replace-victim',
        'write-db',
        'write-daemon-conf',
        'append-pending-output',
        'read-pending-chroot',
        'read-pending-build-dir',
      ])
        assert.match(buildLog, new RegExp(`enbi-poison: ${attempt}: refused`), attempt);
      // The attempts on the slow build ran while it held its output, not before or after.
      const held = Number(/enbi-slow: holding the output from (\d+)/.exec(slowLog)?.[1]);
      const released = Number(/enbi-slow: released at (\d+)/.exec(slowLog)?.[1]);
      const at = Number(/enbi-poison: at (\d+)/.exec(buildLog)?.[1]);
      assert.ok(held <= at && at <= released, `poison at ${at}, slow held its output ${held}..${released}\n${slowLog}`);
      // Its output is what it built: the same image as the victim, byte for byte, and valid to Nix.
      const slowPath = slow.status!.storePath!;
      assert.notEqual(slowPath, storePath);
      assert.equal(
        readFileSync(join('/var/lib/enbi/nix', slowPath.slice('/nix'.length))).toString('base64'),
        before.bytes,
        'the build in progress during the attack ended with the bytes it wrote',
      );
      inDaemon('nix-store', '--verify-path', slowPath);
      assert.equal(readFileSync(onHost).toString('base64'), before.bytes, 'the victim store path is unchanged');
      assert.equal(statSync(onHost).mode, before.mode);
      assert.ok(
        !existsSync(`${onHost}.planted`) && !existsSync('/var/lib/enbi/nix/store/enbi-poison-planted'),
        'nothing planted in the store',
      );
      inDaemon('nix-store', '--verify-path', storePath); // fails with "was modified!" otherwise
    });

    it("the installed Nix daemon runs a streamLayeredImage script in its sandbox: it cannot read the Nix Secret or the build container's settings, nor reach the network", async (t) => {
      const flake = await createFixtureFlake(git, 'snoop', {
        message: `snooped by the installed daemon ${run}`,
        variant: 'stream',
        snoop: { gitUrl: git.url('snoop'), apiServer: new URL(state.server).host },
      });
      const name = `snoop-${run}`;
      const ref = `registry.local/install-snoop:${run}`;
      await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: INSTALL_NS,
        plural: PLURAL,
        body: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: 'NixBuild',
          metadata: { name },
          spec: { flakeUrl: flake.flakeUrl, packageName: flake.attr, system: flake.system, images: [ref] },
        },
      });
      const done = await until(
        `NixBuild ${name} to finish`,
        async () => {
          const b = (await builds()).find((x) => x.metadata?.name === name);
          return b?.status?.phase === 'Succeeded' || b?.status?.phase === 'Failed' ? b : undefined;
        },
        400_000,
        1000,
      );
      assert.equal(done.status?.phase, 'Succeeded', `${JSON.stringify(done.status)}\n${await diagnose()}`);
      const [pod] = (
        await core().listNamespacedPod({
          namespace: INSTALL_NS,
          labelSelector: `batch.kubernetes.io/job-name=${done.status!.buildJobName}`,
        })
      ).items;
      assert.ok(pod, 'the build pod');
      const build = pod.spec!.containers.find((c) => c.name === 'build')!;
      assert.ok(
        build.volumeMounts?.some((m) => m.mountPath === '/etc/enbi/nix-secret'),
        'the build container mounts the Nix Secret',
      );
      const logOf = (container: string) =>
        core().readNamespacedPodLog({ name: pod.metadata!.name!, namespace: INSTALL_NS, container });
      const buildLog = await logOf('build');
      t.diagnostic(
        buildLog
          .split('\n')
          .filter((l) => l.includes('enbi-snoop:'))
          .join('\n'),
      );
      const outcome = (attempt: string) =>
        new RegExp(`enbi-snoop: ${attempt}: (done|refused): (.*)$`, 'm').exec(buildLog)?.slice(1, 3);
      for (const attempt of SNOOP_ATTEMPTS) assert.equal(outcome(attempt)?.[0], 'refused', `${attempt}\n${buildLog}`);
      assert.match(outcome('read-secret-file')![1]!, /can't open '\/etc\/enbi\/nix-secret\/nix\.conf': No such file/);
      assert.match(outcome('read-nix-user-conf')![1]!, /NIX_USER_CONF_FILES: is not set/);
      for (const attempt of ['reach-git-server', 'reach-api-server'])
        assert.match(outcome(attempt)![1]!, /can't connect to remote host \([0-9.]+\): Network is unreachable/);
      for (const container of ['build', 'import'])
        assert.ok(!(await logOf(container)).includes(NIX_TOKEN), `the secret is not in the ${container} log`);
      // The tarball the script wrote in the sandbox left the node's store once it was sent.
      const tarball = /enbi: streaming the image \(\d+ bytes in (\/nix\/store\/[0-9a-z]{32}-enbi-image\.tar)\)/.exec(
        buildLog,
      )?.[1];
      assert.ok(tarball, buildLog);
      assert.match(buildLog, new RegExp(`enbi: deleted ${tarball} from the node's store`));
      assert.ok(!existsSync(join('/var/lib/enbi/nix', tarball.slice('/nix'.length))), `${tarball} deleted`);
      // And the image is the script's: imported under the name asked for, and it runs.
      assert.match(done.status?.imageDigest ?? '', /^sha256:[0-9a-f]{64}$/);
      const app = `snoop-${run}`;
      await kc.makeApiClient(CoreV1Api).createNamespacedPod({
        namespace: APP_NS,
        body: {
          metadata: { name: app },
          spec: {
            restartPolicy: 'Never',
            nodeName: NODE,
            automountServiceAccountToken: false,
            containers: [{ name: 'main', image: ref, imagePullPolicy: 'Never' }],
          },
        },
      });
      await until(
        `pod ${app} to succeed`,
        async () => {
          const p = await core().readNamespacedPod({ name: app, namespace: APP_NS });
          if (p.status?.phase === 'Failed') throw new Error(`pod ${app} failed: ${JSON.stringify(p.status)}`);
          return p.status?.phase === 'Succeeded' ? true : undefined;
        },
        120_000,
        1000,
      );
      assert.equal(await core().readNamespacedPodLog({ name: app, namespace: APP_NS }), `${flake.expectedOutput}\n`);
    });

    it('a push announced by webhook (to either replica) builds the new revision before any pod asks; the pod then runs at once', async () => {
      const v2 = await createFixtureFlake(git, 'app', { message: 'hello v2 from the installed enbi' });
      await git.commit('manifests', { 'apps/app.yaml': JSON.stringify(appDeployment('app', v2, true)) });
      // Every replica answers the webhook: the standby forwards it to the leader.
      const controllers = await podsOf('controller');
      const body = '{"ref":"refs/heads/main"}';
      const t0 = Date.now();
      for (const p of controllers) {
        const res = await webhook(p.status?.podIP);
        assert.equal(res.status, 202, `${p.metadata?.name} answered ${res.status}`);
      }
      const unsigned = await fetch(`http://${controllers[0]!.status?.podIP}:8081/hooks/git`, {
        method: 'POST',
        body,
        headers: { 'X-Hub-Signature-256': 'sha256=00' },
      });
      assert.equal(unsigned.status, 401);
      await succeeded(v2.rev);
      const tBuilt = Date.now();
      // Now the GitOps tool applies the new revision: the image is on the node already.
      await kc
        .makeApiClient(AppsV1Api)
        .replaceNamespacedDeployment({ name: 'app', namespace: APP_NS, body: appDeployment('app', v2, true) });
      await until(
        'the pod to run v2',
        () => runningPod('app', `registry.local/install-app:${v2.shortRev}`),
        120_000,
        500,
      );
      timings.push(
        `RSS after two builds: ${rssOf(/\bcontroller\0--config\0\/etc\/enbi\/config\.yaml/, 'controller')}, ${rssOf(/\bagent\0--node\0/, 'agent')}`,
      );
      timings.push(
        `push: webhook → built ${((tBuilt - t0) / 1000).toFixed(1)} s → v2 pod Running ${((Date.now() - tBuilt) / 1000).toFixed(1)} s`,
      );
      assert.equal(
        (await builds()).filter((b) => b.spec.flakeUrl.includes('/app')).length,
        2,
        'one build per revision of the app, nothing else',
      );
    });

    it('the Helm chart, installed in its place with the same settings as values, does the same: Ready, a push builds and runs; uninstall keeps CRDs and NixBuilds', async () => {
      // Out with the kustomize install (helm adopts nothing it did not make); CRDs, the namespace and the
      // NixBuilds stay, as they would for a user moving to the chart.
      const api = KubernetesObjectApi.makeApiClient(kc);
      const removed = objects.filter((o) => o.kind !== 'CustomResourceDefinition' && o.kind !== 'Namespace');
      for (const o of removed)
        await api.delete(o, undefined, undefined, undefined, undefined, 'Foreground').catch(() => undefined);
      await until(
        'the kustomize install gone',
        async () => {
          for (const o of removed)
            if (
              await api.read(o as never).then(
                () => true,
                () => false,
              )
            )
              return undefined;
          return (await podsOf('controller')).length === 0 && (await podsOf('agent')).length === 0 ? true : undefined;
        },
        120_000,
        1000,
      );
      const values = {
        config: Object.fromEntries(
          Object.entries(userConfig).filter(([k]) => !['namespace', 'builderImage', 'importerImage'].includes(k)),
        ),
        webhook: { secret: SECRET },
        agent: { containerdSocketDir: K3S_SOCKET_DIR },
        nixDaemon: { extraConfig: 'substituters =' },
      };
      const work = await mkdtemp(join(tmpdir(), 'enbi-helm-'));
      await writeFile(join(work, 'values.yaml'), stringify(values));
      const helm = (...args: string[]) =>
        promisify(execFile)(renderTool('helm'), [...args, '--kubeconfig', state.kubeconfig], {
          env: {
            ...process.env,
            HELM_CACHE_HOME: join(work, 'cache'),
            HELM_CONFIG_HOME: join(work, 'config'),
            HELM_DATA_HOME: join(work, 'data'),
          },
        });
      const t0 = Date.now();
      await helm(
        'install',
        'enbi',
        join(DEPLOY_DIR, 'chart'),
        '--namespace',
        INSTALL_NS,
        '--values',
        join(work, 'values.yaml'),
        '--wait',
        '--timeout',
        '5m',
      );
      await waitInstalled(kc, 120_000, diagnose);
      timings.push(`helm install → Ready ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const dep = await kc
        .makeApiClient(AppsV1Api)
        .readNamespacedDeployment({ name: 'enbi-controller', namespace: INSTALL_NS });
      assert.equal(dep.metadata?.annotations?.['meta.helm.sh/release-name'], 'enbi');
      const [agent] = await podsOf('agent');
      assert.equal(agent?.spec?.volumes?.find((v) => v.name === 'containerd')?.hostPath?.path, K3S_SOCKET_DIR);

      const v3 = await createFixtureFlake(git, 'app', { message: 'hello v3 from the chart' });
      await git.commit('manifests', { 'apps/app.yaml': JSON.stringify(appDeployment('app', v3, true)) });
      const controllers = await podsOf('controller');
      assert.equal((await webhook(controllers[0]?.status?.podIP)).status, 202);
      await succeeded(v3.rev);
      await kc
        .makeApiClient(AppsV1Api)
        .replaceNamespacedDeployment({ name: 'app', namespace: APP_NS, body: appDeployment('app', v3, true) });
      await until(
        'the pod to run v3',
        () => runningPod('app', `registry.local/install-app:${v3.shortRev}`),
        120_000,
        500,
      );

      await helm('uninstall', 'enbi', '--namespace', INSTALL_NS, '--wait', '--timeout', '2m');
      await assert.rejects(
        kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'enbi-controller', namespace: INSTALL_NS }),
        (e: { code?: number }) => e.code === 404,
      );
      assert.equal(
        (await builds()).filter((b) => b.spec.flakeUrl.includes('/app')).length,
        3,
        'the NixBuilds, a record of what was built, stay with their CRD',
      );
    });
  },
);
