// On demand at scale, against a real API server: 300 pods bound across 40 API-object nodes (amd64,
// arm64, amd64 nodes that also build aarch64, tainted, cordoned, not Ready, riscv64 without pods), all
// needing the same image. Spegel mode: exactly one build per system that pods need, on a native node
// that can build; per-node mode: exactly one build per node that needs the image and can build it.
// Prints the time from the last pod's waiting status to its build Job.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BatchV1Api, CoreV1Api, CustomObjectsApi, type V1Job } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { jobNodeOf } from '../../src/build/job.ts';
import { parseControllerConfig } from '../../src/controller/config.ts';
import { type RunningController, startController } from '../../src/controller/controller.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { sourceState } from '../../src/controller/source-state.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import type { NodeOptions } from '../support/fixtures.ts';
import { REV_A } from '../support/fixtures.ts';
import { applyNixBuildCrd, fakeNodes, setPodWaiting, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';
const pool = { [POOL]: `scale-${run}` };
const PODS = Number(process.env.ENBI_SCALE_PODS ?? 300);
const FLAKE = `git+http://git.invalid/fleet.git?rev=${REV_A}#image`;
const IMAGE = 'registry.local/fleet:v1';

const n = (kind: string, i: number) => `sc-${kind}-${String(i).padStart(2, '0')}-${run}`;
const range = (k: number) => Array.from({ length: k }, (_, i) => i);
const groups = {
  amd: range(15).map((i) => n('amd', i)),
  arm: range(10).map((i) => n('arm', i)),
  emu: range(4).map((i) => n('emu', i)),
  taint: range(3).map((i) => n('taint', i)),
  cord: range(3).map((i) => n('cord', i)),
  down: range(3).map((i) => n('down', i)),
  rv: range(2).map((i) => n('rv', i)),
};
// The last plain amd64 node gets no pod until the end: its build then starts from one pod alone.
const fresh = groups.amd.at(-1)!;
const specs: Record<string, NodeOptions> = {};
for (const name of groups.amd) specs[name] = { arch: 'amd64', labels: pool };
for (const name of groups.arm) specs[name] = { arch: 'arm64', labels: pool };
for (const name of groups.emu) specs[name] = { arch: 'amd64', labels: pool, extraSystems: ['aarch64-linux'] };
for (const name of groups.taint)
  specs[name] = { arch: 'amd64', labels: pool, taints: [{ key: 'dedicated', value: 'db', effect: 'NoSchedule' }] };
for (const name of groups.cord) specs[name] = { arch: 'arm64', labels: pool, unschedulable: true };
for (const name of groups.down) specs[name] = { arch: 'amd64', labels: pool, ready: false };
for (const name of groups.rv) specs[name] = { arch: 'riscv64', labels: pool };
const withPods = Object.keys(specs).filter((name) => name !== fresh && !groups.rv.includes(name));

/** Runs `fn` over `items`, `width` at a time. */
async function inParallel<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    range(width).map(async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

describe(`on demand at scale: ${PODS} pods on 40 nodes (real API server)`, { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let appNs: string;
  let dir: string;
  let nodes: Awaited<ReturnType<typeof fakeNodes>>;
  const controllers: RunningController[] = [];
  const namespaces: string[] = [];
  const logs: string[] = [];

  const start = async (ns: string, mode: 'spegel' | 'per-node') => {
    const cfg = parseControllerConfig({
      source: { dir, intervalSeconds: 3600 },
      namespace: ns,
      watchNamespaces: [appNs],
      trustedNamespaces: [appNs],
      allowedImages: ['registry.local/'],
      allowedFlakes: ['http://git.invalid/'],
      mode,
      builderImage: 'enbi.local/builder:dev',
      importerImage: 'enbi.local/importer:dev',
      containerdSocket: '/run/containerd/containerd.sock',
      builderNodeSelector: pool,
      maxConcurrentBuildsPerNode: 1,
      maxNodeImages: 1000,
    });
    const ctl = await startController({
      cfg,
      kc: c.kc,
      source: sourceState(cfg, join(dir, '.cache'), undefined, (m) => logs.push(`[${mode}] ${m}`)),
      metrics: newMetrics(),
      log: (m) => logs.push(`[${mode}] ${m}`),
    });
    controllers.push(ctl);
    const done = ctl.reconciled();
    ctl.trigger(true);
    await done;
    return ctl;
  };
  const builds = async (ns: string) =>
    (
      (await c.kc
        .makeApiClient(CustomObjectsApi)
        .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL })) as {
        items: NixBuild[];
      }
    ).items;
  const jobs = async (ns: string) => (await c.kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: ns })).items;
  const settle = async (ctl: RunningController) => {
    for (const _ of [1, 2, 3]) {
      const done = ctl.reconciled();
      ctl.trigger();
      await done;
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const bindWaitingPod = async (name: string, node: string) => {
    await c.kc.makeApiClient(CoreV1Api).createNamespacedPod({
      namespace: appNs,
      body: {
        metadata: { name, namespace: appNs, annotations: { 'enbi.hrzn.ee/flake': FLAKE } },
        // Bound by name, as the scheduler would have; tolerating not-ready so no eviction interferes.
        spec: {
          nodeName: node,
          containers: [{ name: 'app', image: IMAGE, imagePullPolicy: 'Never' }],
          tolerations: [{ operator: 'Exists', effect: 'NoExecute' }],
        },
      },
    });
  };

  before(async () => {
    c = await useCluster('control-plane');
    appNs = `apps-sc-${run}`;
    const core = c.kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: appNs } } });
    await applyNixBuildCrd(c.kc);
    const t = performance.now();
    nodes = await fakeNodes(c.kc, specs);
    dir = await mkdtemp(join(tmpdir(), 'enbi-scale-'));
    await writeFile(join(dir, 'empty.yaml'), '');
    console.log(`# 40 nodes created in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  });

  after(async () => {
    for (const ctl of controllers) await ctl.stop();
    await nodes?.stop();
    const core = c?.kc.makeApiClient(CoreV1Api);
    for (const ns of [...namespaces, appNs]) await core?.deleteNamespace({ name: ns }).catch(() => undefined);
    if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
  });

  it('Spegel mode: one build per system the pods need, on a native node able to build, exactly once', async () => {
    const ns = `enbi-sc-spegel-${run}`;
    namespaces.push(ns);
    await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    const ctl = await start(ns, 'spegel');
    const names = range(PODS).map((i) => `fleet-${i}`);
    const nodeOf = (name: string) => withPods[Number(name.split('-')[1]) % withPods.length]!;
    // When each system's first pod is bound, and when its Job appears. A bound pod whose node's complete
    // image list lacks its image counts as waiting before kubelet says so: binding is the trigger.
    const firstBound = new Map<string, number>();
    const firstJob = new Map<string, number>();
    const systemOf = (text: string) => (/aarch64|sc-arm-|sc-cord-/.test(text) ? 'aarch64' : 'x86_64');
    let polling = true;
    const poller = (async () => {
      while (polling) {
        for (const j of await jobs(ns).catch(() => []))
          if (!firstJob.has(systemOf(j.metadata!.name!))) firstJob.set(systemOf(j.metadata!.name!), performance.now());
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const t0 = performance.now();
    await inParallel(names, 8, async (name) => {
      await bindWaitingPod(name, nodeOf(name));
      if (!firstBound.has(systemOf(nodeOf(name)))) firstBound.set(systemOf(nodeOf(name)), performance.now());
    });
    const created = performance.now();
    let lastWrite = 0;
    await inParallel(names, 8, async (name) => {
      await setPodWaiting(c.kc, appNs, name, 'ErrImageNeverPull');
      lastWrite = performance.now();
    });
    const all = await until(
      'both Jobs',
      async () => ((await jobs(ns)).length >= 2 ? await jobs(ns) : undefined),
      60_000,
      50,
    );
    polling = false;
    await poller;
    const lag = (system: string) =>
      `${((firstJob.get(system) ?? NaN) - (firstBound.get(system) ?? NaN)).toFixed(0)} ms`;
    console.log(
      `# ${PODS} pods bound in ${((created - t0) / 1000).toFixed(1)} s (8 at a time), waiting statuses written in ${((lastWrite - created) / 1000).toFixed(1)} s; ` +
        `first pod bound → its system's Job: x86_64 ${lag('x86_64')}, aarch64 ${lag('aarch64')} (Jobs polled every 50 ms)`,
    );
    await settle(ctl);
    const nbs = await builds(ns);
    assert.deepEqual(
      nbs.map((b) => b.spec.system).sort(),
      ['aarch64-linux', 'x86_64-linux'],
      'nothing for riscv64: no pod needs it',
    );
    const js = await jobs(ns);
    assert.equal(js.length, 2, 'one Job each');
    const x86 = nbs.find((b) => b.spec.system === 'x86_64-linux')!;
    const arm = nbs.find((b) => b.spec.system === 'aarch64-linux')!;
    assert.ok([...groups.amd, ...groups.emu].includes(x86.status!.node!), `x86_64 on ${x86.status?.node}`);
    assert.ok(
      groups.arm.includes(arm.status!.node!),
      `aarch64 natively, not emulated, not cordoned: ${arm.status?.node}`,
    );
    for (const b of nbs)
      assert.equal(
        jobNodeOf(js.find((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === b.metadata.name)!),
        b.status?.node,
      );
    assert.equal(all.length, 2);
    await ctl.stop();
  });

  it('per-node mode: one build on each node that needs the image and can build it; the last pod to land starts its own', async () => {
    const ns = `enbi-sc-node-${run}`;
    namespaces.push(ns);
    await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    const tStart = performance.now();
    const ctl = await start(ns, 'per-node');
    const able = [...groups.amd.filter((x) => x !== fresh), ...groups.arm, ...groups.emu];
    await until(
      `${able.length} builds`,
      async () => ((await builds(ns)).length >= able.length ? true : undefined),
      60_000,
    );
    console.log(
      `# per-node controller started with ${PODS} waiting pods in its cache: ${able.length} builds in ${((performance.now() - tStart) / 1000).toFixed(1)} s`,
    );
    await settle(ctl);
    // The last pod lands on a node with nothing yet.
    let seen = 0;
    const jobSeen = until(
      "the last pod's Job",
      async () =>
        (await jobs(ns)).some((j: V1Job) => jobNodeOf(j) === fresh) ? (seen = performance.now()) : undefined,
      30_000,
      20,
    );
    await bindWaitingPod('fleet-last', fresh);
    const bound = performance.now();
    await setPodWaiting(c.kc, appNs, 'fleet-last', 'ErrImageNeverPull');
    const waiting = performance.now();
    await jobSeen;
    console.log(
      `# last pod bound → its build Job existed: ${(seen - bound).toFixed(0)} ms; from its waiting status write (${(waiting - bound).toFixed(0)} ms after binding): ${(seen - waiting).toFixed(0)} ms (${PODS + 1} pods, 40 nodes)`,
    );
    await settle(ctl);
    const nbs = await builds(ns);
    const js = await jobs(ns);
    assert.deepEqual(
      nbs.map((b) => b.spec.node).sort(),
      [...able, fresh].sort(),
      'not on tainted, cordoned or not-Ready nodes, nor riscv64',
    );
    for (const b of nbs)
      assert.equal(b.spec.system, groups.arm.includes(b.spec.node!) ? 'aarch64-linux' : 'x86_64-linux');
    assert.equal(js.length, nbs.length, 'exactly one Job per build');
    assert.deepEqual(js.map((j) => jobNodeOf(j)).sort(), [...able, fresh].sort());
  });
});
