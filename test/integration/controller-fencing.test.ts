// docs/controller.md: "a status is written only over the copy it was decided from" and "a leader that was
// paused past its lease writes nothing". Against a real API server, with the strongest inputs there are:
// - a reconcile handed a copy of its NixBuild that another writer has since moved on (Succeeded): what it
//   decides from the old copy is refused, and the newer status stays as that writer left it;
// - two controllers and no election at all, both reconciling the same NixBuilds through failure, retry and
//   success: every status they write is watched, and none goes back (attempts never fall, nothing follows
//   Succeeded), one Job per attempt;
// - a leader whose event loop is frozen for twice its lease while another replica (its own process) takes
//   the Lease over: when it wakes, with a retry due in its queue, no write of it reaches the API server (every
//   request it sends is recorded below the fence), and it gives up the lead. Its controller is left running
//   after that (enbi's CLI exits instead), so that the fence alone is what stops the retry's writes.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  BatchV1Api,
  CoordinationV1Api,
  PatchStrategy,
  setHeaderOptions,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type RequestContext,
  Watch,
} from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { buildReconciler, type World } from '../../src/controller/build-reconciler.ts';
import { parseControllerConfig, policyOf } from '../../src/controller/config.ts';
import type { RunningController } from '../../src/controller/controller.ts';
import { type LeaderElection, startLeaderElection } from '../../src/controller/leader.ts';
import { jsonLogger } from '../../src/controller/log.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { applyNixBuildCrd, completeJob, failJob, fakeNodes, startApiNodeController, until } from '../support/kube.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';

/** `kc`, recording every request that changes the cluster as it is sent (after any fence in front of it). */
function recordingWrites(kc: KubeConfig, sent: { at: number; what: string }[]): KubeConfig {
  const recording = Object.create(kc) as KubeConfig;
  recording.applySecurityAuthentication = async (ctx: RequestContext) => {
    const method = String(ctx.getHttpMethod());
    if (method !== 'GET' && method !== 'HEAD') sent.push({ at: Date.now(), what: `${method} ${ctx.getUrl()}` });
    await kc.applySecurityAuthentication(ctx);
  };
  return recording;
}

/** Blocks this process's event loop, as SIGSTOP or a frozen VM would: no timer, no I/O callback runs. */
function freeze(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('optimistic writes and the leader fence (real API server)', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let nodes: Awaited<ReturnType<typeof fakeNodes>> | undefined;
  const ns = `enbi-fence-${run}`;
  const controllers: RunningController[] = [];
  const logs: string[] = [];
  let dir: string;

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
  const createBuild = (name: string) =>
    custom().createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'NixBuild',
        metadata: { name, namespace: ns },
        spec: {
          flakeUrl: `git+http://git.invalid/${name}.git?rev=${'d'.repeat(40)}`,
          packageName: 'image',
          system: 'x86_64-linux',
          images: [`registry.local/${name}:v1`],
          maxAttempts: 3,
        },
      },
    });
  const jobNamed = (name: string, attempt: number) =>
    until(
      `${name}'s Job of attempt ${attempt}`,
      async () => ((await jobsOf(name)).some((j) => j.metadata?.name === `${name}-${attempt}`) ? true : undefined),
      30_000,
      100,
    );

  before(async () => {
    c = await useCluster('control-plane');
    await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    await applyNixBuildCrd(c.kc);
    nodes = await fakeNodes(c.kc, { [`fence-${run}`]: { arch: 'amd64', labels: { [POOL]: run } } });
    dir = await mkdtemp(join(tmpdir(), 'enbi-fence-'));
    await writeFile(join(dir, 'empty.yaml'), '');
  });

  after(async () => {
    for (const ctl of controllers) await ctl.stop();
    await nodes?.stop();
    await c?.kc
      .makeApiClient(CoreV1Api)
      .deleteNamespace({ name: ns })
      .catch(() => undefined);
    if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
  });

  it('a status decided from a copy another writer has moved on from is refused; the newer status stays', async () => {
    const name = `stale-${run}`;
    await createBuild(name);
    const stale = await build(name);
    // Another writer (a second controller, a human) finishes the build meanwhile.
    const theirs = {
      phase: 'Succeeded',
      attempts: 1,
      node: `fence-${run}`,
      image: `registry.local/${name}:v1`,
      imageDigest: `sha256:${'e'.repeat(64)}`,
      completionTime: new Date().toISOString(),
    };
    await custom().patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name, body: { status: theirs } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const cfg = parseControllerConfig({
      source: { dir, intervalSeconds: 3600 },
      namespace: ns,
      allowedImages: ['registry.local/'],
      allowedFlakes: ['http://git.invalid/'],
      builderImage: 'enbi.local/builder:dev',
      importerImage: 'enbi.local/importer:dev',
      containerdSocket: '/run/containerd/containerd.sock',
    });
    const metrics = newMetrics();
    const reconcile = buildReconciler({
      cfg,
      policy: policyOf(cfg),
      core: c.kc.makeApiClient(CoreV1Api),
      batch: c.kc.makeApiClient(BatchV1Api),
      custom: custom(),
      metrics,
      log: jsonLogger((l) => logs.push(l)),
      // The cache has not seen the other write: the copy from before it.
      latest: () => stale,
    });
    const world: World = {
      now: new Date(),
      builds: new Map([[name, stale]]),
      jobsByBuild: new Map(),
      podsByJob: new Map(),
      rawNodes: new Map(),
      views: new Map(),
      placement: new Map(),
      rebuild: new Map(),
      rebuildOf: new Map(),
      notAdopted: new Map(),
      planned: new Set(),
      claims: new Map(),
      placedWhy: new Map(),
      candidate: () => ({ node: `fence-${run}`, reason: 'the only node' }),
    };
    // From the old copy (no status, no Job) the decision is to start attempt 1: a status that would erase theirs.
    const outcome = await reconcile(name, world);
    assert.ok(outcome !== undefined && outcome.requeueAfterMs > 0, 'refused, and reconciled again soon');
    assert.equal(metrics.statusConflicts, 1);
    assert.deepEqual(await jobsOf(name), [], 'no Job started from the old copy');
    const now = await build(name);
    for (const [k, v] of Object.entries(theirs))
      assert.equal(now.status?.[k as keyof typeof theirs], v, `status.${k} as the other writer left it`);
    // From the newer copy the decision is accepted: it keeps their result (and adds its conditions).
    const fresh = buildReconciler({
      cfg,
      policy: policyOf(cfg),
      core: c.kc.makeApiClient(CoreV1Api),
      batch: c.kc.makeApiClient(BatchV1Api),
      custom: custom(),
      metrics,
      log: jsonLogger((l) => logs.push(l)),
      latest: () => now,
    });
    await fresh(name, { ...world, builds: new Map([[name, now]]) });
    assert.equal(metrics.statusConflicts, 1, 'no conflict from the newer copy');
    const last = await build(name);
    assert.equal(last.status?.phase, 'Succeeded');
    assert.equal(last.status?.imageDigest, theirs.imageDigest);
    assert.equal(last.status?.conditions?.find((x) => x.type === 'Ready')?.status, 'True');
  });

  it('two controllers with no election: no status goes back, one Job per attempt', async () => {
    const metrics = [newMetrics(), newMetrics()];
    const names = Array.from({ length: 6 }, (_, i) => `two-${i}-${run}`);
    // Every status either controller writes, in the order the API server made them.
    const seen = new Map<string, { phase?: string; attempts?: number; rv: number }[]>();
    const abort = await new Watch(c.kc).watch(
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`,
      {},
      (type, obj: NixBuild) => {
        if (type !== 'MODIFIED' && type !== 'ADDED') return;
        const list = seen.get(obj.metadata.name) ?? [];
        list.push({
          ...(obj.status?.phase !== undefined ? { phase: obj.status.phase } : {}),
          ...(obj.status?.attempts !== undefined ? { attempts: obj.status.attempts } : {}),
          rv: Number(obj.metadata.resourceVersion),
        });
        seen.set(obj.metadata.name, list);
      },
      () => undefined,
    );
    for (const m of metrics)
      controllers.push(
        await startApiNodeController(c.kc, {
          dir,
          namespace: ns,
          pool: { [POOL]: run },
          logs,
          metrics: m,
          settings: { maxConcurrentBuildsPerNode: 10, retryBaseSeconds: 1 },
        }),
      );
    for (const name of names) await createBuild(name);
    for (const ctl of controllers) ctl.trigger();
    for (const name of names) {
      await jobNamed(name, 1);
      await failJob(c.kc, ns, `${name}-1`);
    }
    for (const name of names) {
      await jobNamed(name, 2);
      await completeJob(c.kc, ns, `${name}-2`);
    }
    for (const name of names)
      await until(
        `${name} Succeeded`,
        async () => ((await build(name)).status?.phase === 'Succeeded' ? true : undefined),
        30_000,
        100,
      );
    // Both have had every event by now; give a late stale write the time to land, if there is one.
    await new Promise((r) => setTimeout(r, 2000));
    abort.abort();
    for (const name of names) {
      const history = seen.get(name) ?? [];
      assert.ok(history.length >= 3, `${name}: statuses seen ${JSON.stringify(history)}`);
      for (let i = 1; i < history.length; i++) {
        const [was, now] = [history[i - 1]!, history[i]!];
        assert.ok((now.attempts ?? 0) >= (was.attempts ?? 0), `${name}: attempts fell: ${JSON.stringify(history)}`);
        assert.ok(
          was.phase !== 'Succeeded' || now.phase === 'Succeeded',
          `${name}: left Succeeded: ${JSON.stringify(history)}`,
        );
      }
      const final = await build(name);
      assert.equal(final.status?.phase, 'Succeeded');
      assert.equal(final.status?.attempts, 2);
      assert.deepEqual(
        (await jobsOf(name)).map((j) => j.metadata?.name).sort(),
        [`${name}-1`, `${name}-2`],
        'one Job per attempt',
      );
    }
    const conflicts = metrics.map((m) => m.statusConflicts);
    console.log(`# two controllers, ${names.length} builds: status writes refused as stale ${conflicts.join(' + ')}`);
    for (const ctl of controllers.splice(0)) await ctl.stop();
  });

  it('a leader frozen past its lease sends no write when it wakes, with a retry due, and gives up the lead', async () => {
    const lease = 'enbi-fenced';
    const LEASE_SECONDS = 3;
    const RETRY_SECONDS = 6;
    const sent: { at: number; what: string }[] = [];
    const metrics = newMetrics();
    let controller: RunningController | undefined;
    let stoppedLeading = 0;
    const election: LeaderElection = startLeaderElection({
      kc: c.kc,
      namespace: ns,
      name: lease,
      identity: 'frozen',
      leaseSeconds: LEASE_SECONDS,
      renewSeconds: 1,
      retrySeconds: 0.25,
      log: jsonLogger((l) => logs.push(l), { fields: { id: 'frozen' } }),
      onStartedLeading: () => {
        void startApiNodeController(recordingWrites(c.kc, sent), {
          dir,
          namespace: ns,
          pool: { [POOL]: run },
          logs,
          metrics,
          settings: { maxConcurrentBuildsPerNode: 10, retryBaseSeconds: RETRY_SECONDS },
          writeRefusal: () => election.writeRefusal(),
        }).then((ctl) => (controller = ctl));
      },
      // The controller is left running once the lead is given up (enbi's CLI exits instead): what stops its
      // writes here is the fence alone.
      onStoppedLeading: () => stoppedLeading++,
    });
    let standby: ChildProcess | undefined;
    try {
      await until('the frozen-to-be replica leads, its controller running', async () =>
        controller !== undefined ? true : undefined,
      );
      assert.equal(election.writeRefusal(), undefined, 'a leader that renews may write');
      // Another replica, in its own process, contends for the Lease from now on.
      const kubeconfig = join(dir, 'kubeconfig');
      await writeFile(kubeconfig, c.kc.exportConfig());
      standby = spawn(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import { KubeConfig } from '@kubernetes/client-node';
           import { startLeaderElection } from '${ROOT}src/controller/leader.ts';
           import { jsonLogger } from '${ROOT}src/controller/log.ts';
           const kc = new KubeConfig(); kc.loadFromFile(${JSON.stringify(kubeconfig)});
           startLeaderElection({ kc, namespace: ${JSON.stringify(ns)}, name: ${JSON.stringify(lease)}, identity: 'standby',
             leaseSeconds: ${LEASE_SECONDS}, renewSeconds: 1, retrySeconds: 0.25, log: jsonLogger(() => {}),
             onStartedLeading: () => console.log('standby leads'), onStoppedLeading: () => {} });
           console.log('contending');`,
        ],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let standbyOut = '';
      standby.stdout!.on('data', (d: Buffer) => (standbyOut += d.toString()));
      // Frozen only once the standby contends: it takes the Lease over while this process cannot renew.
      await until(
        'the standby contends',
        async () => (standbyOut.includes('contending') ? true : undefined),
        30_000,
        50,
      );
      assert.ok(!standbyOut.includes('standby leads'), 'the standby waits while the leader renews');
      const name = `frozen-${run}`;
      await createBuild(name);
      controller!.trigger();
      await jobNamed(name, 1);
      await failJob(c.kc, ns, `${name}-1`);
      const retryDue = Date.now() + RETRY_SECONDS * 1000;
      // The failure is seen and its retry queued: status says so.
      await until(
        'the retry is queued',
        async () =>
          (await build(name)).status?.conditions?.some((x) => x.reason === 'RetryingAfterFailure') ? true : undefined,
        15_000,
        100,
      );
      const writesBefore = sent.length;
      assert.ok(writesBefore > 0, 'the controller wrote before the freeze (Job, status)');
      // Frozen past the lease (twice over) and past the retry's due time: it is the first thing to run on waking.
      freeze(Math.max(LEASE_SECONDS * 2 * 1000, retryDue - Date.now() + 1000));
      const woke = Date.now();
      await until(
        'the frozen replica gives up the lead',
        async () => (stoppedLeading > 0 ? true : undefined),
        15_000,
        50,
      );
      await until(
        'the standby leads',
        async () => (standbyOut.includes('standby leads') ? true : undefined),
        15_000,
        100,
      );
      // The due retry runs on waking (after reading its NixBuild again): its Job creation meets the fence.
      await until(
        'the due retry tries to write',
        async () => (metrics.writesFenced > 0 ? true : undefined),
        10_000,
        25,
      );
      const after = sent.filter((s) => s.at >= woke).map((s) => s.what);
      assert.deepEqual(after, [], 'no write of the frozen leader reached the API server after it woke');
      assert.ok(metrics.writesFenced > 0, 'its due retry tried to write, and the fence stopped it');
      assert.ok(
        logs.some((l) => /not sent: (the lease .* was last renewed \d+ s ago|not the leader)/.test(l)),
        'the log says why the write was not sent',
      );
      const holder = (await c.kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: lease, namespace: ns }))
        .spec?.holderIdentity;
      assert.equal(holder, 'standby');
    } finally {
      standby?.kill();
      await election.stop(false);
      await controller?.stop();
    }
  });
});
