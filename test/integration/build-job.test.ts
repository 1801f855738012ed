// The build Job (src/build/job.ts + scripts.ts) on a real node of the test cluster: Debian's Nix builds an
// offline fixture flake fetched over git+http from a server on the cluster bridge, through the node's Nix
// daemon (sandboxed builds; the Job unprivileged with the store read-only), and the import half streams the
// image into the node's containerd under the exact reference asked for. Then a pod runs that image with
// imagePullPolicy Never. Builds cannot reach each other's outputs or the daemon's settings, and the Job's
// pod meets Pod Security `restricted` but for what it must have (host paths, the importer's uid 0).
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BatchV1Api, CoreV1Api, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { buildJob, type JobSettings } from '../../src/build/job.ts';
import { permanentNixError } from '../../src/build/nix-errors.ts';
import type { NixBuild } from '../../src/api/nixbuild.ts';
import { clusterSkipReason, useCluster, type ClusterInfo, type NodeState } from '../cluster/harness.ts';
import { importBuildImages } from '../support/build-images.ts';
import { randomBytes } from 'node:crypto';
import {
  BROKEN_MESSAGE,
  createFixtureFlake,
  SCRIPT_FAILS_MESSAGE,
  SNOOP_ATTEMPTS,
  type FixtureFlake,
} from '../support/fixture-flake.ts';
import { type NixDaemon, startNixDaemon } from '../support/nix-daemon.ts';
import { run, startGitServer, type GitServer } from '../support/git-server.ts';
import { until } from '../support/kube.ts';
import { assertSpegelReady } from '../support/spegel-check.ts';

const NS_PREFIX = 'build-job-test';
/** deploy/namespace.yaml's Pod Security labels. */
const PSA_LABELS = {
  'pod-security.kubernetes.io/enforce': 'privileged',
  'pod-security.kubernetes.io/warn': 'restricted',
};
// Unique per run: the node's containerd and Nix cache may outlive a run (a cluster kept up by hand), and a
// new message gives a new flake revision, so the first build of a run is really cold.
const tag = Date.now().toString(36);

interface Finished {
  job: V1Job;
  pod: V1Pod;
  ok: boolean;
  /** From the Job's creation to its Complete or Failed condition, as this test saw it. */
  ms: number;
  terminated(container: 'build' | 'import'): { exitCode: number; message: string } | undefined;
}

/** `ctr images ls` rows of this exact reference in the node's k8s.io namespace. */
async function ctrImage(
  n: NodeState,
  ref: string,
): Promise<{ ref: string; digest: string; labels: string } | undefined> {
  const r = await run(n.ctr, ['--address', n.containerdSocket, '-n', 'k8s.io', 'images', 'ls', `name==${ref}`], {
    env: process.env,
  });
  if (r.code !== 0) throw new Error(`ctr images ls failed: ${r.stderr}`);
  const row = r.stdout
    .toString('utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .find((cols) => cols[0] === ref);
  return row === undefined ? undefined : { ref: row[0]!, digest: row[2]!, labels: row.at(-1)! };
}

describe('build Job on a real node', { skip: clusterSkipReason(), timeout: 1_800_000 }, () => {
  let c: ClusterInfo;
  let core: CoreV1Api;
  let batch: BatchV1Api;
  let node: NodeState;
  let server: GitServer;
  let settings: JobSettings;
  let app: FixtureFlake;
  let daemon: NixDaemon | undefined;
  const ns = `${NS_PREFIX}-${tag}`;
  const durations: Record<string, number> = {};

  before(async () => {
    c = await useCluster('full');
    core = c.kc.makeApiClient(CoreV1Api);
    batch = c.kc.makeApiClient(BatchV1Api);
    const first = c.nodes[0];
    assert.ok(first && c.state.subnet, 'a full-mode cluster with a node and a bridge');
    node = first;
    // The bridge's own address in the root namespace: pods and nodes reach it (it carries the API server).
    const gateway = c.state.subnet.replace(/\.0\/24$/, '.1');
    const images = await importBuildImages(node);
    server = await startGitServer({ host: gateway });
    // Labelled as deploy/namespace.yaml labels enbi-system: Pod Security enforced, restricted warned.
    await core.createNamespace({ body: { metadata: { name: ns, labels: PSA_LABELS } } });
    settings = {
      namespace: ns,
      builderImage: images.builder.ref,
      importerImage: images.importer.ref,
      cacheHostPath: join(c.state.dir, 'nix-cache', node.name),
      containerdSocket: node.containerdSocket,
      builderTolerations: [],
      nixOptions: {},
      activeDeadlineSeconds: 600,
    };
    // The node component's Nix daemon owns the node's store; the Jobs only ask it to build.
    daemon = await startNixDaemon(settings.cacheHostPath);
    app = await createFixtureFlake(server, 'app', { message: `hello from the enbi fixture flake ${tag}` });
    await until(
      'the default ServiceAccount',
      () => core.readNamespacedServiceAccount({ name: 'default', namespace: ns }),
      90_000,
    );
  });

  after(async () => {
    if (Object.keys(durations).length > 0) console.log(`build Job durations: ${JSON.stringify(durations)}`);
    await server?.close();
    await daemon?.stop();
    if (core) await core.deleteNamespace({ name: ns }).catch(() => undefined);
    for (const level of ['restricted', 'baseline', 'privileged'])
      await core?.deleteNamespace({ name: `${ns}-${level}` }).catch(() => undefined);
  });

  const nixBuild = (name: string, f: FixtureFlake, image: string): NixBuild => ({
    apiVersion: 'enbi.hrzn.ee/v1alpha1',
    kind: 'NixBuild',
    metadata: { name, namespace: ns },
    spec: { flakeUrl: f.flakeUrl, packageName: f.attr, system: f.system, images: [image] },
  });

  async function runBuild(nb: NixBuild, timeoutMs = 600_000, with_: JobSettings = settings): Promise<Finished> {
    const body = buildJob(nb, node.name, 1, with_);
    const name = body.metadata!.name!;
    const t0 = Date.now();
    await batch.createNamespacedJob({ namespace: ns, body });
    const { job, ok } = await until(
      `Job ${name} to finish`,
      async () => {
        const j = await batch.readNamespacedJob({ name, namespace: ns });
        const cond = (t: string) => j.status?.conditions?.some((x) => x.type === t && x.status === 'True') === true;
        return cond('Complete') ? { job: j, ok: true } : cond('Failed') ? { job: j, ok: false } : undefined;
      },
      timeoutMs,
      250,
    );
    const ms = Date.now() - t0;
    const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: `batch.kubernetes.io/job-name=${name}` });
    assert.equal(pods.items.length, 1, `one pod for Job ${name}`);
    // The Job can be Failed before the kubelet has reported both containers' final states.
    const pod = await until(
      `both containers of ${name} to be terminated`,
      async () => {
        const p = await core.readNamespacedPod({ name: pods.items[0]!.metadata!.name!, namespace: ns });
        return (p.status?.containerStatuses ?? []).filter((s) => s.state?.terminated).length === 2 ? p : undefined;
      },
      120_000,
    );
    return {
      job,
      pod,
      ok,
      ms,
      terminated: (container) => {
        const t = pod.status?.containerStatuses?.find((s) => s.name === container)?.state?.terminated;
        return t ? { exitCode: t.exitCode, message: t.message ?? '' } : undefined;
      },
    };
  }

  const log = (pod: V1Pod, container: string): Promise<string> =>
    core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: ns, container });

  /**
   * Milliseconds `nix build` ran inside the build container: between BUILD_SCRIPT's "enbi: building" and
   * "enbi: built" lines, by the timestamps containerd gave them (nanoseconds; the Job's and the containers'
   * own times have 1 s resolution and include pod start-up).
   */
  async function nixMs(pod: V1Pod): Promise<number> {
    return logMs(pod, / enbi: building /, / enbi: built \//);
  }

  /** Milliseconds between the first build-log lines matching `from` and `to`, by containerd's timestamps. */
  async function logMs(pod: V1Pod, from: RegExp, to: RegExp): Promise<number> {
    const lines = (
      await core.readNamespacedPodLog({
        name: pod.metadata!.name!,
        namespace: ns,
        container: 'build',
        timestamps: true,
      })
    ).split('\n');
    const at = (re: RegExp): number => {
      const line = lines.find((l) => re.test(l));
      assert.ok(line, `${re} in the build log`);
      const m = /^(\S+)\.(\d+)Z /.exec(line);
      assert.ok(m, line);
      return Date.parse(`${m[1]}Z`) + Number(`0.${m[2]}`) * 1000;
    };
    return Math.round(at(to) - at(from));
  }

  async function explain(f: Finished): Promise<string> {
    const logs = await Promise.all(
      ['build', 'import'].map(async (x) => `--- ${x}:\n${await log(f.pod, x).catch((e: unknown) => String(e))}`),
    );
    return `Job ${f.job.metadata?.name} ${f.ok ? 'completed' : 'failed'}: ${JSON.stringify(f.job.status?.conditions)}\n${logs.join('\n')}`;
  }

  async function runImage(podName: string, image: string): Promise<string> {
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: podName },
        spec: {
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: 1,
          automountServiceAccountToken: false,
          nodeName: node.name,
          containers: [{ name: 'main', image, imagePullPolicy: 'Never' }],
        },
      },
    });
    await until(
      `pod ${podName} to succeed`,
      async () => {
        const p = await core.readNamespacedPod({ name: podName, namespace: ns });
        if (p.status?.phase === 'Failed') throw new Error(`pod ${podName} failed: ${JSON.stringify(p.status)}`);
        const waiting = p.status?.containerStatuses?.[0]?.state?.waiting?.reason;
        if (waiting === 'ErrImageNeverPull') throw new Error(`${image} is not on ${node.name}`);
        return p.status?.phase === 'Succeeded' ? p : undefined;
      },
      120_000,
    );
    return core.readNamespacedPodLog({ name: podName, namespace: ns });
  }

  const image = `registry.local/app:${tag}`;
  let cold: Finished;

  it('builds a flake from git+http and imports the image under the exact reference, pinned', async (t: TestContext) => {
    cold = await runBuild(nixBuild('app', app, image));
    assert.ok(cold.ok, await explain(cold));
    durations.coldJob = cold.ms;
    durations.coldNix = await nixMs(cold.pod);
    t.diagnostic(`cold build Job: ${cold.ms} ms (nix build ${durations.coldNix} ms)`);
    const stored = await ctrImage(node, image);
    assert.ok(stored, `${image} in ${node.name}'s containerd`);
    assert.match(stored.labels, /(^|,)io\.cri-containerd\.pinned=pinned(,|$)/);
    // The archive's own name (enbi.test/fixture-archive:<rev>) was replaced by the reference asked for.
    assert.equal(await ctrImage(node, app.repoTag), undefined);
    const imported = JSON.parse(cold.terminated('import')!.message) as {
      image: string;
      digest: string;
      index: string;
      indexPlatforms: string;
      records: number;
      blobs: number;
    };
    // The tag is the index of the platforms built; the manifest the build made is in it.
    assert.deepEqual(
      { image: imported.image, index: imported.index, platforms: imported.indexPlatforms },
      { image, index: stored.digest, platforms: 'linux/amd64' },
    );
    assert.match(imported.digest, /^sha256:[0-9a-f]{64}$/);
    // enbi import: every blob labelled for Spegel, the digest reference, pinned — on the node's containerd.
    const spegel = await assertSpegelReady(node.containerdSocket, image, {
      digest: imported.digest,
      platforms: ['linux/amd64'],
    });
    assert.equal(imported.records, 2, 'the tag and registry.local/app@<digest>');
    assert.equal(imported.blobs, spegel.blobs);
    assert.match(
      await log(cold.pod, 'import'),
      /enbi: labels on every blob: containerd\.io\/distribution\.source\.registry\.local=app/,
    );
    const built = JSON.parse(cold.terminated('build')!.message) as { storePath: string };
    assert.match(built.storePath, /^\/nix\/store\/[0-9a-z]{32}-enbi-fixture-archive$/);
    const buildLog = await log(cold.pod, 'build');
    assert.match(buildLog, /enbi: sending the image \(docker-archive or OCI archive\)/);
    assert.match(buildLog, /building '\/nix\/store\/[0-9a-z]{32}-enbi-fixture-archive\.drv'/);
  });

  it('runs the image in a pod with imagePullPolicy Never; the log shows the flake message and revision', async () => {
    assert.ok(cold?.ok, 'the cold build succeeded');
    const out = await runImage('app', image);
    assert.equal(out, `${app.expectedOutput}\n`);
    assert.match(out, new RegExp(`rev ${app.rev.slice(0, 7)}`));
  });

  it('builds the same flake again on the same node from the node store, building nothing', async (t: TestContext) => {
    assert.ok(cold?.ok, 'the cold build succeeded');
    const warm = await runBuild(nixBuild('app-again', app, image));
    assert.ok(warm.ok, await explain(warm));
    durations.warmJob = warm.ms;
    durations.warmNix = await nixMs(warm.pod);
    const coldNix = durations.coldNix!;
    t.diagnostic(
      `build Job cold ${cold.ms} ms, warm ${warm.ms} ms; nix build cold ${coldNix} ms, warm ${durations.warmNix} ms`,
    );
    const buildLog = await log(warm.pod, 'build');
    // A cache hit: Nix neither fetched nor built anything, and gave the same store path.
    assert.doesNotMatch(buildLog, /building '/);
    assert.deepEqual(JSON.parse(warm.terminated('build')!.message), JSON.parse(cold.terminated('build')!.message));
    const same = (m: string) => {
      const { image: i, digest, config } = JSON.parse(m) as Record<string, string>;
      return { image: i, digest, config };
    };
    assert.deepEqual(same(warm.terminated('import')!.message), same(cold.terminated('import')!.message));
    // The layers were unpacked by the cold import already.
    assert.equal((JSON.parse(warm.terminated('import')!.message) as { unpackedLayers: number }).unpackedLayers, 0);
    // What the node's store saves is the build itself (asserted above: nothing built, same output). Each Job
    // still fetches and evaluates the flake (its HOME, and so Nix's fetcher cache, is its own), so for a
    // fixture this small the two times are alike: they are reported, not compared.
  });

  /** The tarball a Job's image script wrote in Nix's sandbox, from its build log; and that it left the store. */
  function sandboxedTarball(buildLog: string): { bytes: number; storePath: string; onHost: string } {
    const m = /enbi: streaming the image \((\d+) bytes in (\/nix\/store\/[0-9a-z]{32}-enbi-image\.tar)\)/.exec(
      buildLog,
    );
    assert.ok(m, buildLog);
    // The wrapper derivation is enbi's (scripts.ts), built by the node's daemon in its sandbox.
    assert.match(buildLog, /building '\/nix\/store\/[0-9a-z]{32}-enbi-image\.tar\.drv'/);
    assert.match(buildLog, new RegExp(`enbi: deleted ${m[2]} from the node's store`));
    const onHost = join(settings.cacheHostPath, m[2]!.slice('/nix'.length));
    assert.ok(!existsSync(onHost), `${m[2]} was deleted from the node's store after the import`);
    return { bytes: Number(m[1]), storePath: m[2]!, onHost };
  }

  it("streams the image of a streamLayeredImage-like script into containerd, running the script in Nix's sandbox", async (t: TestContext) => {
    const stream = await createFixtureFlake(server, 'app-stream', { variant: 'stream', message: `streamed ${tag}` });
    const ref = `registry.local/app-stream:${tag}`;
    const f = await runBuild(nixBuild('app-stream', stream, ref));
    assert.ok(f.ok, await explain(f));
    durations.streamJob = f.ms;
    const buildLog = await log(f.pod, 'build');
    assert.match(buildLog, /enbi: running the image script in Nix's sandbox \(streamLayeredImage script\)/);
    // What running it in the sandbox costs: the uncompressed image in the node's store until it was sent.
    const tarball = sandboxedTarball(buildLog);
    durations.streamSandboxMs = await logMs(f.pod, /enbi: running the image script/, /enbi: streaming the image/);
    durations.streamTarballBytes = tarball.bytes;
    t.diagnostic(
      `image script in the sandbox: ${durations.streamSandboxMs} ms, ${tarball.bytes} bytes in the store until sent`,
    );
    const stored = await ctrImage(node, ref);
    assert.ok(stored, `${ref} in containerd`);
    assert.match(stored.labels, /io\.cri-containerd\.pinned=pinned/);
    const imported = JSON.parse(f.terminated('import')!.message) as { digest: string; index: string };
    assert.equal(imported.index, stored.digest);
    await assertSpegelReady(node.containerdSocket, ref, { digest: imported.digest, platforms: ['linux/amd64'] });
    assert.equal(await runImage('app-stream', ref), `${stream.expectedOutput}\n`);
  });

  it("an image script cannot read the Nix Secret or the build container's settings, nor reach the network: it runs in Nix's sandbox", async (t: TestContext) => {
    // A real Secret, mounted into the build container as deployments mount theirs (nixSecretName).
    const secret = `enbi-secret-${randomBytes(12).toString('hex')}`;
    const secretName = `nix-secret-${tag}`;
    await core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: { name: secretName },
        stringData: { 'nix.conf': `access-tokens = secret.invalid=${secret}\n` },
      },
    });
    const api = new URL(c.kc.getCurrentCluster()!.server);
    const snooping = await createFixtureFlake(server, 'snoop', {
      variant: 'stream',
      message: `snooped ${tag}`,
      // The flake's own Git server, and the API server: both reachable from the pod's network.
      snoop: { gitUrl: server.url('snoop'), apiServer: api.host },
    });
    const ref = `registry.local/snoop:${tag}`;
    const f = await runBuild(nixBuild('snoop', snooping, ref), 600_000, { ...settings, nixSecretName: secretName });
    assert.ok(f.ok, await explain(f));
    const build = f.pod.spec!.containers.find((x) => x.name === 'build')!;
    assert.ok(
      build.volumeMounts?.some((m) => m.mountPath === '/etc/enbi/nix-secret') &&
        build.env?.some((e) => e.name === 'NIX_USER_CONF_FILES'),
      'the Secret is mounted in the build container and named by NIX_USER_CONF_FILES',
    );
    const buildLog = await log(f.pod, 'build');
    t.diagnostic(
      buildLog
        .split('\n')
        .filter((l) => l.includes('enbi-snoop:'))
        .join('\n'),
    );
    const outcome = (attempt: string) =>
      new RegExp(`enbi-snoop: ${attempt}: (done|refused): (.*)$`, 'm').exec(buildLog)?.slice(1, 3);
    for (const attempt of SNOOP_ATTEMPTS) assert.equal(outcome(attempt)?.[0], 'refused', `${attempt}\n${buildLog}`);
    // Each for the reason the sandbox gives: nothing of the container is there, and there is no network but lo.
    assert.match(outcome('read-secret-file')![1]!, /can't open '\/etc\/enbi\/nix-secret\/nix\.conf': No such file/);
    assert.match(outcome('read-nix-user-conf')![1]!, /NIX_USER_CONF_FILES: is not set/);
    assert.match(outcome('read-build-home')![1]!, /\/home\/build: No such file or directory/);
    for (const attempt of ['reach-git-server', 'reach-api-server'])
      assert.match(outcome(attempt)![1]!, /can't connect to remote host \([0-9.]+\): Network is unreachable/);
    // The Secret's token is in no log of the Job.
    for (const container of ['build', 'import'])
      assert.ok(!(await log(f.pod, container)).includes(secret), `the secret is not in the ${container} log`);
    assert.ok(!daemon!.log().includes(secret), "the secret is not in the Nix daemon's log");
    // And the script still made the image, which was imported and runs.
    sandboxedTarball(buildLog);
    const stored = await ctrImage(node, ref);
    assert.ok(stored, `${ref} in containerd`);
    const imported = JSON.parse(f.terminated('import')!.message) as { image: string; index: string };
    assert.deepEqual({ image: imported.image, index: imported.index }, { image: ref, index: stored.digest });
    assert.equal(await runImage('snoop', ref), `${snooping.expectedOutput}\n`);
  });

  it("fails the Job of an image script that fails in Nix's sandbox, with its own words in the build log; a retry may fix it", async () => {
    const failing = await createFixtureFlake(server, 'app-script-fails', {
      variant: 'stream',
      message: `script fails ${tag}`,
      scriptFails: true,
    });
    const ref = `registry.local/app-script-fails:${tag}`;
    const f = await runBuild(nixBuild('app-script-fails', failing, ref));
    assert.equal(f.ok, false, await explain(f));
    const buildLog = await log(f.pod, 'build');
    // The script's stderr, prefixed by the wrapper derivation's name, then Nix's and enbi's lines.
    assert.ok(buildLog.includes(`enbi-image.tar> ${SCRIPT_FAILS_MESSAGE}`), buildLog);
    assert.match(
      buildLog,
      /error: builder for '\/nix\/store\/[0-9a-z]{32}-enbi-image\.tar\.drv' failed with exit code 4/,
    );
    assert.match(buildLog, /enbi: the image script failed in Nix's sandbox$/m);
    // Not a flake that cannot be evaluated: the controller retries it (src/build/nix-errors.ts).
    assert.equal(permanentNixError(buildLog), undefined);
    assert.notEqual(f.terminated('build')?.exitCode, 0);
    assert.match(await log(f.pod, 'import'), /enbi: the build failed; nothing to import/);
    assert.equal(await ctrImage(node, ref), undefined);
  });

  it('fails the Job of a broken flake with the Nix error in the build log, and imports nothing', async () => {
    const broken = await createFixtureFlake(server, 'app-broken', { variant: 'broken' });
    const ref = `registry.local/app-broken:${tag}`;
    const f = await runBuild(nixBuild('app-broken', broken, ref));
    durations.brokenJob = f.ms;
    assert.equal(f.ok, false, await explain(f));
    const buildLog = await log(f.pod, 'build');
    assert.ok(buildLog.includes(BROKEN_MESSAGE), buildLog);
    assert.match(
      buildLog,
      /error: builder for '\/nix\/store\/[0-9a-z]{32}-enbi-fixture-broken\.drv' failed with exit code 3/,
    );
    assert.match(buildLog, /enbi: nix build failed/);
    assert.notEqual(f.terminated('build')?.exitCode, 0);
    assert.notEqual(f.terminated('import')?.exitCode, 0);
    assert.match(await log(f.pod, 'import'), /enbi: the build failed; nothing to import/);
    assert.equal(await ctrImage(node, ref), undefined);
    assert.equal(await ctrImage(node, broken.repoTag), undefined);
  });

  it('fails fast when the package is not an image: the build half stops once the import half gives up', async () => {
    const notImage = await createFixtureFlake(server, 'app-not-image', { variant: 'not-image', message: tag });
    const ref = `registry.local/app-not-image:${tag}`;
    // Well before activeDeadlineSeconds (600 s): the build half must not wait for a reader that is gone.
    // (A few seconds on an idle machine; the bound leaves room for a loaded one.)
    const f = await runBuild(nixBuild('app-not-image', notImage, ref), 300_000);
    durations.notImageJob = f.ms;
    assert.equal(f.ok, false, await explain(f));
    assert.match(await log(f.pod, 'build'), /enbi: reading the image failed/);
    assert.notEqual(f.terminated('import')?.exitCode, 0);
    assert.match(await log(f.pod, 'import'), /enbi import: not a tar archive|enbi import: the stream is empty/);
    assert.equal(await ctrImage(node, ref), undefined);
  });

  it("two builds on one node: one tries to overwrite the other's output and to plant a post-build-hook; both fail, the other image is unchanged", async () => {
    assert.ok(cold?.ok, 'the victim (the cold build) succeeded');
    const victim = (JSON.parse(cold.terminated('build')!.message) as { storePath: string }).storePath;
    const onHost = join(settings.cacheHostPath, victim.slice('/nix'.length));
    const before = { digest: (await ctrImage(node, image))!.digest, file: readFileSync(onHost).toString('base64') };
    const hook = join(settings.cacheHostPath, '..', `hook-${tag}.sh`);
    const marker = `${hook}.ran`;
    writeFileSync(hook, `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
    const hostile = await createFixtureFlake(server, 'hostile', {
      message: `hostile ${tag}`,
      attack: { victim, hook },
    });
    const ref = `registry.local/hostile:${tag}`;
    // The client side too: a post-build-hook in the build's own Nix settings, as if its client were hostile.
    const f = await runBuild({ ...nixBuild('hostile', hostile, ref) }, 600_000, {
      ...settings,
      nixOptions: { 'post-build-hook': hook },
    });
    assert.ok(f.ok, await explain(f));
    const buildLog = await log(f.pod, 'build');
    // Inside Nix's sandbox the other build's output does not exist, and writes land in the sandbox only.
    assert.match(buildLog, /enbi-attack: victim not visible/);
    // What counts is outside: the victim's store path and image as they were, no hook run, no config planted.
    assert.equal(readFileSync(onHost).toString('base64'), before.file, 'the victim store path is unchanged');
    assert.ok(!existsSync(join(onHost, 'pwned')) && statSync(onHost).isFile());
    assert.equal((await ctrImage(node, image))!.digest, before.digest, 'the victim image is unchanged');
    for (const planted of ['var/enbi/home/.config/nix/nix.conf', 'etc/nix/nix.conf'])
      assert.ok(!existsSync(join(settings.cacheHostPath, planted)), planted);
    // A later, unrelated build: still no hook.
    const again = await runBuild(nixBuild('app-after-hostile', app, image));
    assert.ok(again.ok, await explain(again));
    assert.ok(!existsSync(marker), 'the post-build-hook never ran');
    assert.equal(await runImage('app-after', image), `${app.expectedOutput}\n`);
    // Every Job reached the daemon as uid 65532, never as a trusted user (a trusted client's hook would run).
    assert.match(daemon!.log(), /accepted connection from pid \d+, user 65532$/m);
    assert.doesNotMatch(daemon!.log(), /\(trusted\)/);
  });

  it("a build that lists another build's output as its input cannot change it: its build user is not root, the victim stays byte for byte and valid", async () => {
    // The victim: an image built and imported by one NixBuild. The attacker: another NixBuild whose derivation
    // takes that output as an input (here from the same flake; from any flake whose outputs it names, alike).
    const flake = await createFixtureFlake(server, 'poison', { message: `victim ${tag}`, poison: 'poison' });
    const victimRef = `registry.local/victim:${tag}`;
    const built = await runBuild(nixBuild('victim', flake, victimRef));
    assert.ok(built.ok, await explain(built));
    const victim = (JSON.parse(built.terminated('build')!.message) as { storePath: string }).storePath;
    const onHost = join(settings.cacheHostPath, victim.slice('/nix'.length));
    const before = {
      digest: (await ctrImage(node, victimRef))!.digest,
      bytes: readFileSync(onHost).toString('base64'),
      mode: statSync(onHost).mode,
    };

    const f = await runBuild({ ...nixBuild('poison', { ...flake, attr: 'poison' }, `registry.local/poison:${tag}`) });
    assert.ok(f.ok, await explain(f));
    const buildLog = await log(f.pod, 'build');
    const outcome = (attempt: string) => new RegExp(`enbi-poison: ${attempt}: (done|refused)`).exec(buildLog)?.[1];
    // Inside the sandbox the victim is there (an input) but its owner is not the builder: every write refused.
    const uidMap = /enbi-poison: builder uid \d+, uid_map\s+(\d+)\s+(\d+)\s+(\d+)/.exec(buildLog);
    assert.ok(uidMap, buildLog);
    assert.notEqual(uidMap[2], '0', `the builder is mapped to a build user, not the daemon's root: ${uidMap[0]}`);
    for (const attempt of ['chmod-victim', 'append-victim', 'replace-victim', 'write-db', 'write-daemon-conf'])
      assert.equal(outcome(attempt), 'refused', `${attempt}\n${buildLog}`);
    // Outside: the store path's bytes and mode, nothing planted beside it or in the store, Nix still finds it valid.
    assert.equal(readFileSync(onHost).toString('base64'), before.bytes, 'the victim store path is unchanged');
    assert.equal(statSync(onHost).mode, before.mode, 'and its mode (still read-only)');
    assert.ok(!existsSync(`${onHost}.planted`), 'nothing planted beside the victim');
    assert.ok(
      !existsSync(join(settings.cacheHostPath, 'store', 'enbi-poison-planted')),
      'nothing planted in the store',
    );
    await daemon!.client(['nix-store', '--verify-path', victim]); // exits non-zero with "was modified!" otherwise
    assert.equal((await ctrImage(node, victimRef))!.digest, before.digest, 'the victim image is unchanged');
  });

  it("the build pod meets Pod Security restricted but for the host paths and the importer's uid 0; privileged admits it", async () => {
    const template = buildJob(nixBuild('psa', app, image), node.name, 1, settings).spec!.template.spec!;
    const admit = async (level: string) => {
      const name = `${ns}-${level}`;
      await core
        .createNamespace({ body: { metadata: { name, labels: { 'pod-security.kubernetes.io/enforce': level } } } })
        .catch(() => undefined);
      try {
        await core.createNamespacedPod({
          namespace: name,
          body: { metadata: { name: 'psa-check' }, spec: template },
          dryRun: 'All',
        });
        return 'admitted';
      } catch (err) {
        return String((err as { body?: string }).body ?? err);
      }
    };
    const restricted = await admit('restricted');
    assert.match(restricted, /violates PodSecurity \\?"restricted:latest\\?"/);
    assert.match(
      restricted,
      /restricted volume types \(volumes \\?"nix\\?", \\?"containerd\\?" use restricted volume type \\?"hostPath\\?"\)/,
    );
    assert.match(restricted, /runAsUser=0 \(container \\?"import\\?" must not set runAsUser=0\)/);
    // Nothing else: no capabilities, no escalation, seccomp set, the build container non-root.
    for (const absent of [
      /allowPrivilegeEscalation/,
      /unrestricted capabilities/,
      /seccompProfile/,
      /container \\?"build\\?"/,
    ])
      assert.doesNotMatch(restricted, absent);
    const baseline = await admit('baseline');
    assert.match(baseline, /hostPath volumes/);
    assert.doesNotMatch(baseline, /runAsUser|capabilities|privileged/);
    // And the namespace enbi runs builds in (deploy/namespace.yaml's labels) admitted every Job of this file.
    assert.equal(await admit('privileged'), 'admitted');
  });
});
