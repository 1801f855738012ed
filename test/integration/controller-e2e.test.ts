// The product, end to end, on the real full-mode cluster: a Git server holds a manifests repository and an
// app flake; `enbi controller` (a subprocess) runs against the cluster; a Deployment applied by the test (as
// Argo CD or Flux would) starts on a missing image; enbi builds it with real Nix in a Job on the node,
// imports it into the node's containerd, and the pod runs it. Then: a quiet reconcile builds nothing; a push
// through the webhook builds exactly one new image; an image removed from the node while its pod needs it
// is rebuilt once; a broken flake ends Failed with a readable reason; a controller killed mid-build starts
// no second build when it comes back.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AppsV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi, type V1Deployment } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { importBuildImages } from '../support/build-images.ts';
import { BROKEN_MESSAGE, createFixtureFlake, type FixtureFlake } from '../support/fixture-flake.ts';
import { type GitServer, startGitServer } from '../support/git-server.ts';
import { type NixDaemon, startNixDaemon } from '../support/nix-daemon.ts';
import { applyNixBuildCrd, until } from '../support/kube.ts';
import { idleAppDeployment } from '../support/fixtures.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const run = Date.now().toString(36);
const NS = `enbi-e2e-${run}`;
const APP_NS = `app-e2e-${run}`;
const SECRET = 'e2e-webhook-secret';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

// The image's own Cmd prints a line and exits (the 'echo' pod below reads it); the app idles in it.
function deploymentOf(name: string, flake: FixtureFlake, node: string, eager: boolean): V1Deployment {
  return idleAppDeployment({
    name,
    namespace: APP_NS,
    flakeUrl: flake.flakeUrl,
    image: `registry.local/e2e-app:${flake.shortRev}`,
    node,
    eager,
  });
}

describe(
  'controller end to end: git push to a running pod whose image Nix built in the cluster',
  { skip: clusterSkipReason() },
  () => {
    let c: ClusterInfo;
    let git: GitServer;
    let controller: ChildProcess | undefined;
    let port: number;
    let hookPort: number;
    let controllerLog = '';
    let configFile: string;
    let nodeName: string;
    let daemon: NixDaemon | undefined;
    const timings: string[] = [];

    const startControllerProcess = () => {
      controller = spawn(
        process.execPath,
        [
          join(ROOT, 'bin/enbi.js'),
          'controller',
          '--config',
          configFile,
          '--kubeconfig',
          c.kubeconfig,
          '--cache-dir',
          join(tmpdir(), `enbi-e2e-git-${run}`),
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      controller.stdout!.on('data', (d: Buffer) => (controllerLog += d.toString()));
      controller.stderr!.on('data', (d: Buffer) => (controllerLog += d.toString()));
    };
    const healthy = async () =>
      (await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.ok,
        () => false,
      )) || undefined;
    const builds = async () =>
      (
        (await c.kc
          .makeApiClient(CustomObjectsApi)
          .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL })) as {
          items: NixBuild[];
        }
      ).items;
    const jobs = async () => (await c.kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: NS })).items;
    // Each call a new delivery, as a Git host sends them (its own id and body): the controller answers a
    // delivery it already accepted 200 and does nothing (test/integration/webhook-replay.test.ts).
    // A delivery answered 429 (over the repository's rate, after the burst test) is sent again after its
    // Retry-After, as one redelivers it from the Git host, unless `once`.
    let deliveries = 0;
    const webhook = async (once = false): Promise<Response> => {
      const body = JSON.stringify({
        ref: 'refs/heads/main',
        after: (++deliveries).toString(16).padStart(40, '0'),
        repository: { full_name: 'e2e/manifests' },
      });
      const sig = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
      const headers = {
        'X-Hub-Signature-256': sig,
        'X-GitHub-Delivery': randomUUID(),
        'X-GitHub-Event': 'push',
        'Content-Type': 'application/json',
      };
      for (let i = 0; ; i++) {
        const res = await fetch(`http://127.0.0.1:${hookPort}/hooks/git`, { method: 'POST', body, headers });
        if (once || res.status !== 429 || i === 5) return res;
        await new Promise((r) => setTimeout(r, Number(res.headers.get('retry-after') ?? '1') * 1000));
      }
    };
    const runningPod = async (app: string, image: string) => {
      const pods = (
        await c.kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: APP_NS, labelSelector: `app=${app}` })
      ).items;
      return pods.find((p) => p.status?.phase === 'Running' && p.spec?.containers[0]?.image === image);
    };

    before(async () => {
      c = await useCluster('full');
      const node = c.nodes[0]!;
      nodeName = node.name;
      const core = c.kc.makeApiClient(CoreV1Api);
      await core.createNamespace({ body: { metadata: { name: NS } } });
      await core.createNamespace({ body: { metadata: { name: APP_NS } } });
      await applyNixBuildCrd(c.kc);
      const images = await importBuildImages(node);
      // Fixture commits are deterministic: a cluster kept from an earlier run may hold this run's images already.
      const stale = execFileSync(node.ctr, ['--address', node.containerdSocket, '-n', 'k8s.io', 'images', 'ls', '-q'], {
        encoding: 'utf8',
      })
        .split('\n')
        .filter((n) => n.startsWith('registry.local/e2e-app'));
      if (stale.length > 0)
        execFileSync(node.ctr, ['--address', node.containerdSocket, '-n', 'k8s.io', 'images', 'rm', ...stale]);
      // The node component's Nix daemon, which owns the node's store (the config's cache.hostPath).
      daemon = await startNixDaemon(join(node.dir, 'enbi-nix-cache'));
      // Pods reach the host through the bridge address the API server listens on.
      git = await startGitServer({ host: new URL(c.server).hostname });
      port = await freePort();
      hookPort = await freePort();
      const dir = await mkdtemp(join(tmpdir(), 'enbi-e2e-'));
      await writeFile(join(dir, 'secret'), SECRET);
      configFile = join(dir, 'config.yaml');
      await writeFile(
        configFile,
        stringify({
          source: { url: git.url('manifests'), ref: 'main', path: 'apps', intervalSeconds: 3600 },
          namespace: NS,
          watchNamespaces: [APP_NS],
          allowedImages: ['registry.local/'],
          allowedFlakes: [`${git.baseUrl}/`],
          builderImage: images.builder.ref,
          importerImage: images.importer.ref,
          cache: { hostPath: join(node.dir, 'enbi-nix-cache') },
          containerdSocket: node.containerdSocket,
          maxAttempts: 2,
          retryBaseSeconds: 1,
          // Longer than kubelet takes to refresh its image list (the evidence a rebuild needs), shorter than the default.
          rebuildGraceSeconds: 40,
          listen: { host: '127.0.0.1', port },
          webhook: { secretFile: join(dir, 'secret'), listen: { host: '127.0.0.1', port: hookPort } },
          // A short lease: the controller killed below comes back and takes its own lease over soon.
          leaderElection: { leaseSeconds: 6, renewSeconds: 2 },
        }),
      );
    });

    after(async () => {
      controller?.kill('SIGKILL');
      await daemon?.stop();
      await git?.close();
      const core = c?.kc.makeApiClient(CoreV1Api);
      await core?.deleteNamespace({ name: APP_NS }).catch(() => undefined);
      await core?.deleteNamespace({ name: NS }).catch(() => undefined);
      if (process.env.ENBI_TEST_VERBOSE === '1') console.log(controllerLog);
      console.log(`# timings:\n# ${timings.join('\n# ')}`);
    });

    let v1: FixtureFlake;

    it('a Deployment whose image is missing runs once enbi has built and imported it', async () => {
      v1 = await createFixtureFlake(git, 'app', { message: 'hello v1' });
      await git.createRepo('manifests', { 'apps/app.yaml': stringify(deploymentOf('app', v1, nodeName, false)) });
      startControllerProcess();
      await until('the controller to be ready', healthy, 60_000);
      const t0 = Date.now();
      await c.kc
        .makeApiClient(AppsV1Api)
        .createNamespacedDeployment({ namespace: APP_NS, body: deploymentOf('app', v1, nodeName, false) });
      const nb = await until('a NixBuild', async () => (await builds())[0], 60_000);
      const tBuild = Date.now();
      const done = await until(
        'the build to succeed',
        async () => {
          const b = (await builds()).find((x) => x.metadata.name === nb.metadata.name);
          if (b?.status?.phase === 'Failed') throw new Error(`build failed: ${JSON.stringify(b.status)}`);
          return b?.status?.phase === 'Succeeded' ? b : undefined;
        },
        300_000,
        500,
      );
      const tImported = Date.now();
      const pod = await until(
        'the pod to run the built image',
        () => runningPod('app', `registry.local/e2e-app:${v1.shortRev}`),
        300_000,
        500,
      );
      const tRunning = Date.now();
      timings.push(
        `v1 (on demand): Deployment applied → NixBuild ${((tBuild - t0) / 1000).toFixed(1)} s → built and imported ${((tImported - tBuild) / 1000).toFixed(1)} s → pod Running ${((tRunning - tImported) / 1000).toFixed(1)} s (kubelet's image pull back-off)`,
      );
      assert.equal(done.spec.system, 'x86_64-linux');
      assert.equal(done.status?.node, nodeName);
      assert.match(done.status?.imageDigest ?? '', /^sha256:[0-9a-f]{64}$/);
      assert.match(done.status?.storePath ?? '', /^\/nix\/store\/[0-9a-z]{32}-enbi-fixture-archive$/);
      assert.equal(done.status?.conditions?.find((x) => x.type === 'Ready')?.status, 'True');
      assert.equal(pod.spec?.containers[0]?.image, `registry.local/e2e-app:${v1.shortRev}`);
    });

    it('the image runs what the flake built: its output is in the pod log', async () => {
      // A plain pod of the same image, whose command is the image's own.
      const core = c.kc.makeApiClient(CoreV1Api);
      await core.createNamespacedPod({
        namespace: APP_NS,
        body: {
          metadata: { name: 'echo' },
          spec: {
            nodeName,
            restartPolicy: 'Never',
            containers: [{ name: 'echo', image: `registry.local/e2e-app:${v1.shortRev}`, imagePullPolicy: 'Never' }],
          },
        },
      });
      await until(
        'the echo pod to finish',
        async () =>
          (await core.readNamespacedPod({ name: 'echo', namespace: APP_NS })).status?.phase === 'Succeeded'
            ? true
            : undefined,
        120_000,
      );
      const log = await core.readNamespacedPodLog({ name: 'echo', namespace: APP_NS });
      assert.equal(log.trim(), v1.expectedOutput);
    });

    it('a reconcile that finds nothing missing starts nothing', async () => {
      const before = await builds();
      const jobsBefore = await jobs();
      const res = await webhook();
      assert.equal(res.status, 202);
      await new Promise((r) => setTimeout(r, 3000));
      assert.deepEqual(
        (await builds()).map((b) => [b.metadata.name, b.metadata.resourceVersion]),
        before.map((b) => [b.metadata.name, b.metadata.resourceVersion]),
      );
      assert.equal((await jobs()).length, jobsBefore.length);
      const rejected = await fetch(`http://127.0.0.1:${hookPort}/hooks/git`, {
        method: 'POST',
        body: '{}',
        headers: { 'X-Hub-Signature-256': 'sha256=00' },
      });
      assert.equal(rejected.status, 401);
    });

    it("1,000 push webhooks in a burst: the repository's burst accepted, the rest 429, a sync a second at most, nothing built", async () => {
      const buildsBefore = (await builds()).map((b) => b.metadata.name).sort();
      git.resetStats();
      const t0 = Date.now();
      const answers = await Promise.all(
        Array.from({ length: 1000 }, () =>
          webhook(true).then(
            (r) => r.status,
            () => 0,
          ),
        ),
      );
      const ms = Date.now() - t0;
      // 1,000 distinct deliveries of one repository from one client: its burst (20) and one more every 3 s
      // accepted (202), the rest answered 429 (webhook-guard.ts); none failed.
      const accepted = answers.filter((s) => s === 202).length;
      assert.deepEqual([...new Set(answers)].sort(), [202, 429]);
      assert.ok(accepted >= 19 && accepted <= 20 + Math.ceil(ms / 3000), `accepted ${accepted} in ${ms} ms`);
      await new Promise((r) => setTimeout(r, 2000));
      const fetches = git.stats.log.filter((r) => r.method === 'POST' && r.path.endsWith('/git-upload-pack')).length;
      const refs = git.stats.log.filter((r) => r.path.includes('info/refs')).length;
      timings.push(
        `1,000 webhooks answered in ${ms} ms: ${accepted} accepted, ${1000 - accepted} answered 429; ${refs} ref listings, ${fetches} fetches`,
      );
      // At most one sync a second however many webhooks (source loop's spacing), and at least one.
      const most = 2 + Math.ceil(ms / 1000);
      assert.ok(refs >= 1 && refs <= most, `ref listings: ${refs} (at most ${most})`);
      assert.ok(fetches <= most, `fetches: ${fetches} (at most ${most})`);
      assert.deepEqual((await builds()).map((b) => b.metadata.name).sort(), buildsBefore);
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    });

    it('a tenant pod choosing its own flake and a well-known image name gets nothing built, an Event saying why, and the node no record', async () => {
      const core = c.kc.makeApiClient(CoreV1Api);
      const node = c.nodes[0]!;
      const ctr = (...args: string[]) =>
        execFileSync(node.ctr, ['--address', node.containerdSocket, '-n', 'k8s.io', ...args], { encoding: 'utf8' });
      const buildsBefore = (await builds()).map((b) => b.metadata.name).sort();
      const jobsBefore = (await jobs()).length;
      const tenantPod = (name: string, image: string, pull: string) => ({
        metadata: { name, annotations: { 'enbi.hrzn.ee/flake': `${v1.flakeUrl}#image` } },
        spec: { nodeName, restartPolicy: 'Never', containers: [{ name: 'db', image, imagePullPolicy: pull }] },
      });
      // The attack: the tenant's own flake (here the app's, a flake enbi may build) under postgres's name.
      await core.createNamespacedPod({ namespace: APP_NS, body: tenantPod('tenant', 'postgres:16.4', 'Never') });
      // And another team's image with imagePullPolicy Always: the pull fails (no registry), the node holds it.
      await core.createNamespacedPod({
        namespace: APP_NS,
        body: tenantPod('puller', `registry.local/e2e-app:${v1.shortRev}`, 'Always'),
      });
      const event = await until(
        'a BuildRefused Event on the tenant pod',
        async () => {
          const events = (await core.listNamespacedEvent({ namespace: APP_NS })).items;
          return events.find((e) => e.involvedObject.name === 'tenant' && e.reason === 'BuildRefused');
        },
        60_000,
        500,
      );
      assert.equal(event.type, 'Warning');
      assert.match(
        event.message ?? '',
        /no workload of the Git source matches this pod .* enbi builds what Git declares/,
      );
      await until(
        'the puller pod to fail its pull',
        async () => {
          const st = (await core.readNamespacedPod({ name: 'puller', namespace: APP_NS })).status
            ?.containerStatuses?.[0]?.state?.waiting?.reason;
          return st === 'ErrImagePull' || st === 'ImagePullBackOff' ? st : undefined;
        },
        120_000,
        500,
      );
      const res = await webhook();
      assert.equal(res.status, 202);
      await new Promise((r) => setTimeout(r, 3000));
      assert.deepEqual((await builds()).map((b) => b.metadata.name).sort(), buildsBefore, 'no NixBuild for either pod');
      assert.equal((await jobs()).length, jobsBefore);
      assert.ok(
        !ctr('images', 'ls', '-q')
          .split('\n')
          .some((n) => n.includes('postgres')),
        'no postgres record on the node',
      );
      const events = (await core.listNamespacedEvent({ namespace: APP_NS })).items;
      assert.ok(!events.some((e) => e.involvedObject.name === 'puller' && e.reason === 'BuildPlanned'));
      for (const name of ['tenant', 'puller'])
        await core.deleteNamespacedPod({ name, namespace: APP_NS, gracePeriodSeconds: 0 }).catch(() => undefined);
    });

    it('a malformed request line and a 10 MB header are answered, and the controller keeps serving', async () => {
      const raw = (p: number, text: string) =>
        new Promise<string>((resolve) => {
          const socket = connect(p, '127.0.0.1');
          let got = '';
          socket.on('data', (d) => (got += d.toString()));
          socket.on('error', () => resolve(got));
          socket.on('close', () => resolve(got));
          socket.write(text, () => undefined);
          setTimeout(() => socket.destroy(), 5000);
        });
      for (const p of [port, hookPort]) {
        assert.match(await raw(p, 'GET //[ HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 400/);
        assert.match(await raw(p, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400/);
        const answer = await raw(
          p,
          `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10 * 1024 * 1024)}\r\n\r\n`,
        );
        assert.ok(answer === '' || /^HTTP\/1\.1 431/.test(answer), `answered or dropped: ${answer.slice(0, 80)}`);
      }
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200, 'still alive');
      assert.equal(
        (await fetch(`http://127.0.0.1:${hookPort}/healthz`)).status,
        404,
        'the webhook port serves only the webhook',
      );
      assert.equal(
        (await fetch(`http://127.0.0.1:${port}/hooks/git`, { method: 'POST', body: '{}' })).status,
        405,
        'and the probe port no webhook',
      );
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(metrics, /enbi_http_bad_requests_total [1-9]/);
      assert.match(metrics, /enbi_pods_refused_total [1-9]/);
    });

    it('an image removed from the node while its pod still needs it is rebuilt once, and the pod runs again', async () => {
      const node = c.nodes[0]!;
      const image = `registry.local/e2e-app:${v1.shortRev}`;
      const ctr = (...args: string[]) =>
        execFileSync(node.ctr, ['--address', node.containerdSocket, '-n', 'k8s.io', ...args], { encoding: 'utf8' });
      const before = await builds();
      const jobsBefore = (await jobs()).length;
      const nb = before.find((b) => b.status?.image === image);
      assert.ok(nb, `no NixBuild imported ${image}`);
      // What kubelet's image GC or a wiped node does: every name of the image goes (its digest reference too).
      const names = ctr('images', 'ls', '-q')
        .split('\n')
        .filter((n) => n.startsWith('registry.local/e2e-app'));
      assert.ok(names.includes(image), names.join(' '));
      ctr('images', 'rm', ...names);
      const core = c.kc.makeApiClient(CoreV1Api);
      const old = await runningPod('app', image);
      await core.deleteNamespacedPod({ name: old!.metadata!.name!, namespace: APP_NS, gracePeriodSeconds: 0 });
      const t0 = Date.now();
      const rebuilt = await until(
        'the NixBuild to rebuild and succeed again',
        async () => {
          const b = (await builds()).find((x) => x.metadata.name === nb.metadata.name);
          return b?.status?.rebuilds === 1 &&
            b.status.phase === 'Succeeded' &&
            b.status.attempts !== nb.status?.attempts
            ? b
            : undefined;
        },
        300_000,
        500,
      );
      const tBuilt = Date.now();
      await until(
        'a new pod to run the rebuilt image',
        async () => {
          const p = await runningPod('app', image);
          return p !== undefined && p.metadata?.name !== old!.metadata!.name ? p : undefined;
        },
        300_000,
        500,
      );
      timings.push(
        `image removed with ctr and its pod recreated → rebuilt and imported ${((tBuilt - t0) / 1000).toFixed(1)} s → pod Running ${((Date.now() - tBuilt) / 1000).toFixed(1)} s`,
      );
      assert.ok(ctr('images', 'ls', '-q').split('\n').includes(image));
      // Once: the same NixBuild, one more Job, no other build.
      assert.deepEqual((await builds()).map((b) => b.metadata.name).sort(), before.map((b) => b.metadata.name).sort());
      assert.equal((await jobs()).length, jobsBefore + 1);
      assert.equal(rebuilt.status?.conditions?.find((x) => x.type === 'Ready')?.status, 'True');
    });

    it('a push of a new revision through the webhook builds exactly one new image, and the new pod runs it', async () => {
      const v2 = await createFixtureFlake(git, 'app', { message: 'hello v2' });
      const deployment = deploymentOf('app', v2, nodeName, true);
      await git.commit('manifests', { 'apps/app.yaml': stringify(deployment) }, { branch: 'main' });
      const t0 = Date.now();
      const res = await webhook();
      assert.equal(res.status, 202);
      const nb = await until(
        'one new NixBuild',
        async () => {
          const all = await builds();
          return all.length === 2 ? all.find((b) => b.spec.flakeUrl.includes(v2.rev)) : undefined;
        },
        60_000,
        200,
      );
      const tBuild = Date.now();
      await until(
        'the v2 build to succeed',
        async () =>
          (await builds()).find((b) => b.metadata.name === nb.metadata.name)?.status?.phase === 'Succeeded'
            ? true
            : undefined,
        300_000,
        500,
      );
      const tImported = Date.now();
      // Flux or Argo CD applies the same manifest.
      await c.kc.makeApiClient(AppsV1Api).replaceNamespacedDeployment({
        name: 'app',
        namespace: APP_NS,
        body: {
          ...deployment,
          metadata: {
            ...deployment.metadata,
            resourceVersion: (
              await c.kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'app', namespace: APP_NS })
            ).metadata?.resourceVersion,
          },
        },
      });
      await until('the v2 pod to run', () => runningPod('app', `registry.local/e2e-app:${v2.shortRev}`), 180_000, 500);
      const tRunning = Date.now();
      timings.push(
        `v2 (eager, webhook): push → NixBuild ${((tBuild - t0) / 1000).toFixed(1)} s → built and imported ${((tImported - tBuild) / 1000).toFixed(1)} s → applied and Running ${((tRunning - tImported) / 1000).toFixed(1)} s`,
      );
      assert.equal((await builds()).length, 2, 'exactly one new build');
      assert.equal(
        (await jobs()).filter((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === nb.metadata.name).length,
        1,
      );
    });

    it('a broken flake ends Failed with a readable reason and its log, and enbi build --follow exits 1', async () => {
      const broken = await createFixtureFlake(git, 'broken', { variant: 'broken' });
      const cli = spawn(
        process.execPath,
        [
          join(ROOT, 'bin/enbi.js'),
          'build',
          `${broken.flakeUrl}#image`,
          '--system',
          'x86_64-linux',
          '--image',
          `registry.local/broken:${broken.shortRev}`,
          '--namespace',
          NS,
          '--kubeconfig',
          c.kubeconfig,
          '--follow',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      cli.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      cli.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number>((resolve) => cli.on('close', (n) => resolve(n ?? -1)));
      assert.equal(code, 1, out);
      assert.match(out, new RegExp(BROKEN_MESSAGE));
      const nb = (await builds()).find((b) => b.spec.flakeUrl.includes(broken.rev))!;
      assert.equal(nb.status?.phase, 'Failed');
      assert.equal(nb.status?.attempts, 2, 'stops after maxAttempts: no crash loop');
      const ready = nb.status?.conditions?.find((x) => x.type === 'Ready');
      assert.equal(ready?.status, 'False');
      assert.equal(ready?.reason, 'BuildFailed');
      assert.match(ready?.message ?? '', /build exited/);
      assert.equal(nb.status?.conditions?.find((x) => x.type === 'Stalled')?.status, 'True');
      assert.match(nb.status?.logExcerpt ?? '', new RegExp(BROKEN_MESSAGE));
      assert.ok(await healthy(), 'the controller is still up');
    });

    it("a flake attribute that does not exist is Stalled after one attempt, with Nix's own error line", async () => {
      const cli = spawn(
        process.execPath,
        [
          join(ROOT, 'bin/enbi.js'),
          'build',
          `${v1.flakeUrl}#nope`,
          '--system',
          'x86_64-linux',
          '--image',
          `registry.local/nope:${v1.shortRev}`,
          '--namespace',
          NS,
          '--kubeconfig',
          c.kubeconfig,
          '--follow',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      cli.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      cli.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      assert.equal(await new Promise<number>((resolve) => cli.on('close', (n) => resolve(n ?? -1))), 1, out);
      const nb = (await builds()).find((b) => b.spec.packageName === 'nope')!;
      assert.equal(nb.status?.phase, 'Failed');
      assert.equal(nb.status?.attempts, 1, 'not retried');
      const stalled = nb.status?.conditions?.find((x) => x.type === 'Stalled');
      assert.equal(stalled?.reason, 'NixError');
      assert.match(stalled?.message ?? '', /error: flake '[^']+' does not provide attribute '[^']*\bnope'/);
    });

    it('a controller killed mid-build starts no second build when it comes back', async () => {
      const v3 = await createFixtureFlake(git, 'other', { message: 'hello v3', variant: 'stream' });
      const cli = spawn(process.execPath, [
        join(ROOT, 'bin/enbi.js'),
        'build',
        `${v3.flakeUrl}#image`,
        '--system',
        'x86_64-linux',
        '--image',
        `registry.local/other:${v3.shortRev}`,
        '--namespace',
        NS,
        '--kubeconfig',
        c.kubeconfig,
      ]);
      await new Promise((resolve) => cli.on('close', resolve));
      const nb = await until(
        'the build Job to run',
        async () => {
          const b = (await builds()).find((x) => x.spec.flakeUrl.includes(v3.rev));
          return b?.status?.phase === 'Building' &&
            (await jobs()).some((j) => j.metadata?.name === `${b.metadata.name}-1`)
            ? b
            : undefined;
        },
        60_000,
        100,
      );
      controller!.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 500));
      startControllerProcess();
      await until('the restarted controller to be ready', healthy, 60_000);
      const done = await until(
        'the build to succeed',
        async () => {
          const b = (await builds()).find((x) => x.metadata.name === nb.metadata.name);
          return b?.status?.phase === 'Succeeded' || b?.status?.phase === 'Failed' ? b : undefined;
        },
        300_000,
        500,
      );
      assert.equal(done.status?.phase, 'Succeeded', JSON.stringify(done.status));
      assert.equal(done.status?.attempts, 1);
      assert.deepEqual(
        (await jobs())
          .filter((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === nb.metadata.name)
          .map((j) => j.metadata?.name),
        [`${nb.metadata.name}-1`],
      );
      assert.equal((await builds()).filter((b) => b.spec.flakeUrl.includes(v3.rev)).length, 1);
    });
  },
);
