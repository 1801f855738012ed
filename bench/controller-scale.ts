// The controller with a big cluster in its caches: 5,000 Nodes and 50,000 bound Pods, real objects in a real
// API server (a control-plane test cluster of its own, ENBI_CLUSTER_DIR, default /tmp/enbi-bench-ctl, torn
// down at the end unless KEEP=1). Prints the controller's start-up (informer lists), its reconcile times
// (the first, which creates the builds, and quiet ones) and its memory, and what slimming the pods it does
// not plan from saves. Asserts nothing.
// Run: node bench/controller-scale.ts   (shape: NODES=5000 PODS=50000 APPS=100 ENBI_EVERY=10 WAITING_EVERY=2 RUNNING=1;
//      CONTROLLER_FLAGS='flags;flags' the V8 flag sets the controller runs with, one child each;
//      CONTROLLER_MEMORY_LIMIT=384Mi|deploy each child in a memory cgroup with that limit (root);
//      HEAP_PROFILE=alloc|live allocation sites per phase, or of what is alive at the end; KEEP=1 keeps
//      the cluster, REUSE=1 runs against a kept one without creating its nodes and pods again)
//
// The controller runs in a child process (this file with --child), so its memory is its own. The cluster's
// kube-controller-manager is stopped once the cluster is up: API-object nodes have no kubelet to renew their
// Leases, and the node lifecycle controller would otherwise mark all 5,000 NotReady and evict their pods.
import { fork } from 'node:child_process';
import https from 'node:https';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics, writeHeapSnapshot } from 'node:v8';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { printSites, Session, startSampling, topSites } from './heap-profile.ts';
import { parseAllDocuments, stringify } from 'yaml';

const NODES = Number(process.env.NODES ?? 5000);
const PODS = Number(process.env.PODS ?? 50000);
const APPS = Number(process.env.APPS ?? 100);
const ENBI_EVERY = Number(process.env.ENBI_EVERY ?? 10); // every 10th pod has enbi annotations
const WAITING_EVERY = Number(process.env.WAITING_EVERY ?? 2); // of those, every 2nd waits for its image
const QUIET = Number(process.env.QUIET ?? 10);
/** V8 flag sets the controller runs with, one child each, `;`-separated ('' = Node's defaults); by default Node's and deploy/'s. */
const CONTROLLER_FLAGS = (process.env.CONTROLLER_FLAGS ?? `;${deployedNodeOptions()}`).split(';');

/** NODE_OPTIONS of the controller container in deploy/controller.yaml. */
function deployedNodeOptions(): string {
  const docs = parseAllDocuments(readFileSync(new URL('../deploy/controller.yaml', import.meta.url), 'utf8')).map(
    (d) =>
      d.toJS() as {
        kind?: string;
        spec?: { template?: { spec?: { containers?: { env?: { name: string; value?: string }[] }[] } } };
      },
  );
  const env = docs.find((d) => d.kind === 'Deployment')?.spec?.template?.spec?.containers?.[0]?.env ?? [];
  return env.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '';
}
/**
 * CONTROLLER_MEMORY_LIMIT: each controller child runs in a memory cgroup with this limit, as a container
 * would ('384Mi', '1Gi', or 'deploy': the controller's limit in deploy/controller.yaml). Needs root.
 */
const MEMORY_LIMIT = ((v) => (v === undefined ? undefined : quantity(v === 'deploy' ? deployedMemoryLimit() : v)))(
  process.env.CONTROLLER_MEMORY_LIMIT,
);

function quantity(q: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(q);
  if (m === null) throw new Error(`CONTROLLER_MEMORY_LIMIT ${q}: a number of bytes, Ki, Mi or Gi`);
  return Number(m[1]) * { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[m[2] ?? '']!;
}

/** The controller container's memory limit in deploy/controller.yaml. */
function deployedMemoryLimit(): string {
  const doc = parseAllDocuments(readFileSync(new URL('../deploy/controller.yaml', import.meta.url), 'utf8'))
    .map(
      (d) =>
        d.toJS() as {
          kind?: string;
          spec?: { template?: { spec?: { containers?: { resources?: { limits?: { memory?: string } } }[] } } };
        },
    )
    .find((d) => d.kind === 'Deployment');
  const limit = doc?.spec?.template?.spec?.containers?.[0]?.resources?.limits?.memory;
  if (limit === undefined) throw new Error('deploy/controller.yaml: no memory limit on the controller');
  return limit;
}

/**
 * A memory cgroup with this limit (v2 where the memory controller is on the unified hierarchy, else v1, as
 * on this machine) and a wrapper that moves itself into it before it runs node: Node sizes its heap from
 * the limit at start, so the process must be inside before it starts.
 */
function memoryCgroup(limit: number, dir: string) {
  const v2 =
    existsSync('/sys/fs/cgroup/cgroup.controllers') &&
    readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').split(/\s+/).includes('memory');
  const path = v2 ? `/sys/fs/cgroup/enbi-bench-${process.pid}` : `/sys/fs/cgroup/memory/enbi-bench-${process.pid}`;
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, v2 ? 'memory.max' : 'memory.limit_in_bytes'), String(limit));
  if (!v2) writeFileSync(join(path, 'memory.max_usage_in_bytes'), '0');
  const wrapper = join(dir, 'in-cgroup.sh');
  writeFileSync(wrapper, `#!/bin/sh\necho $$ > ${path}/cgroup.procs\nexec ${process.execPath} "$@"\n`, { mode: 0o755 });
  const read = (f: string) => readFileSync(join(path, f), 'utf8');
  return {
    version: v2 ? 'cgroup v2' : 'cgroup v1',
    wrapper,
    peak: () => Number(read(v2 ? 'memory.peak' : 'memory.max_usage_in_bytes')),
    oomKills: () =>
      v2
        ? Number(/oom_kill (\d+)/.exec(read('memory.events'))?.[1] ?? 0)
        : Number(/oom_kill (\d+)/.exec(read('memory.oom_control'))?.[1] ?? 0),
    remove: () => rmdirSync(path),
  };
}

/** The pods that do not wait are Running, as kubelet reports them (RUNNING=0 leaves them Pending without status). */
const RUNNING = process.env.RUNNING !== '0';
const REV = 'c'.repeat(40);
const NS = 'enbi-bench';
const APPS_NS = 'bench-apps';
const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;
const appOf = (i: number) => Math.floor(i / ENBI_EVERY) % APPS;
const flakeOf = (k: number) => `git+http://git.invalid/app-${k}.git?rev=${REV}#image`;
const imageOf = (k: number) => `registry.local/app-${k}:${REV.slice(0, 12)}`;
const nodeName = (n: number) => `bench-node-${String(n).padStart(5, '0')}`;

if (process.argv[2] === '--child') await child(process.argv[3]!, process.argv[4]!);
else await main();

async function main(): Promise<void> {
  process.env.ENBI_CLUSTER_DIR ??= '/tmp/enbi-bench-ctl';
  const { useCluster } = await import('../test/cluster/harness.ts');
  const { readState } = await import('../test/cluster/state.ts');
  const { down } = await import('../test/cluster/cluster.ts');
  const { applyNixBuildCrd } = await import('../test/support/kube.ts');
  const { slimPod } = await import('../src/kube/slim-pod.ts');
  const dir = mkdtempSync(join(tmpdir(), 'enbi-bcs-'));
  let t = performance.now();
  // REUSE=1 takes the kept cluster as it is: the harness would find its kube-controller-manager stopped (by
  // this bench, below), call it unhealthy and replace it, nodes and pods with it.
  const kept = process.env.REUSE === '1' ? readState(process.env.ENBI_CLUSTER_DIR) : undefined;
  if (process.env.REUSE === '1' && kept === undefined)
    throw new Error(`REUSE=1: no cluster recorded in ${process.env.ENBI_CLUSTER_DIR}`);
  const c =
    kept !== undefined
      ? { state: kept, server: kept.server, kubeconfig: kept.kubeconfig, kc: kubeConfigOf(kept.kubeconfig) }
      : await useCluster('control-plane');
  console.log(
    `controller scale bench: ${NODES} nodes, ${PODS} pods (every ${ENBI_EVERY}th with enbi annotations over ${APPS} apps, every ${WAITING_EVERY}th of those waiting), node ${process.version}`,
  );
  console.log(
    `cluster up                                   ${((performance.now() - t) / 1000).toFixed(1)} s (${c.server})`,
  );
  try {
    const cm = c.state.procs.find((p) => p.name === 'kube-controller-manager');
    if (cm !== undefined) {
      try {
        process.kill(cm.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    await applyNixBuildCrd(c.kc);
    const core = c.kc.makeApiClient(CoreV1Api);
    for (const name of [NS, APPS_NS])
      await core.createNamespace({ body: { metadata: { name } } }).catch(() => undefined);
    await core
      .createNamespacedServiceAccount({ namespace: APPS_NS, body: { metadata: { name: 'default' } } })
      .catch(() => undefined);

    // Nodes: 70 % amd64, 30 % arm64, a kubelet-like image list each. The API server's TaintNodesByCondition
    // admission adds node.kubernetes.io/not-ready to each new node; kube-controller-manager (stopped) would
    // lift it once Ready, so the bench lifts it itself.
    t = performance.now();
    const api = rawApi(c.kc);
    // REUSE=1: a cluster kept by an earlier run (KEEP=1) already holds the nodes and pods.
    const create = process.env.REUSE !== '1';
    await pool(create ? NODES : 0, 32, async (n) => {
      const arch = n % 10 < 7 ? 'amd64' : 'arm64';
      const labels = { 'kubernetes.io/arch': arch, 'kubernetes.io/os': 'linux', 'kubernetes.io/hostname': nodeName(n) };
      const images = Array.from({ length: 20 }, (_, i) => ({
        names: [`docker.io/library/filler-${i}:v${n % 7}`],
        sizeBytes: 1_000_000 * (i + 1),
      }));
      await api('POST', '/api/v1/nodes', { metadata: { name: nodeName(n), labels } });
      const now = new Date().toISOString();
      const status = {
        conditions: [
          { type: 'Ready', status: 'True', reason: 'KubeletReady', lastHeartbeatTime: now, lastTransitionTime: now },
        ],
        images,
        nodeInfo: nodeInfo(arch),
      };
      await api('PATCH', `/api/v1/nodes/${nodeName(n)}/status`, { status });
      await api('PATCH', `/api/v1/nodes/${nodeName(n)}`, { spec: { taints: null } });
    });
    const nodesS = (performance.now() - t) / 1000;
    console.log(
      `created ${NODES} nodes (+ status)               ${nodesS.toFixed(1)} s (${(NODES / nodesS).toFixed(0)}/s)`,
    );

    // Pods: bound, tolerating everything; every ENBI_EVERY-th with enbi annotations, some waiting for the image.
    t = performance.now();
    let waiting = 0;
    await pool(create ? PODS : 0, 32, async (i) => {
      const enbi = i % ENBI_EVERY === 0;
      const k = appOf(i);
      const name = `pod-${String(i).padStart(6, '0')}`;
      const body: V1Pod = {
        metadata: {
          name,
          labels: { app: enbi ? `app-${k}` : `plain-${i % 500}` },
          ...(enbi ? { annotations: { 'enbi.hrzn.ee/flake': flakeOf(k) } } : {}),
        },
        spec: {
          // Shifted by one node every ENBI_EVERY pods: enbi's pods land on both architectures (each app's on one).
          nodeName: nodeName((i + Math.floor(i / ENBI_EVERY)) % NODES),
          tolerations: [{ operator: 'Exists' }],
          containers: [
            {
              name: 'app',
              image: enbi ? imageOf(k) : `docker.io/library/plain:${i % 50}`,
              imagePullPolicy: enbi ? 'Never' : 'IfNotPresent',
              env: [{ name: 'ROLE', value: 'bench' }],
            },
          ],
        },
      };
      await api('POST', `/api/v1/namespaces/${APPS_NS}/pods`, body);
      if (enbi && (i / ENBI_EVERY) % WAITING_EVERY === 0) {
        waiting++;
        const status = {
          phase: 'Pending',
          containerStatuses: [
            {
              name: 'app',
              image: imageOf(k),
              imageID: '',
              ready: false,
              restartCount: 0,
              state: { waiting: { reason: 'ErrImageNeverPull', message: 'not present' } },
            },
          ],
        };
        await api('PATCH', `/api/v1/namespaces/${APPS_NS}/pods/${name}/status`, { status });
      } else if (RUNNING) {
        // As on a real cluster, the rest run (kubelet's status): the controller's field selector leaves them out.
        const image = enbi ? imageOf(k) : `docker.io/library/plain:${i % 50}`;
        const status = {
          phase: 'Running',
          containerStatuses: [
            {
              name: 'app',
              image,
              imageID: image,
              ready: true,
              restartCount: 0,
              state: { running: { startedAt: new Date().toISOString() } },
            },
          ],
        };
        await api('PATCH', `/api/v1/namespaces/${APPS_NS}/pods/${name}/status`, { status });
      }
    });
    const podsS = (performance.now() - t) / 1000;
    console.log(
      `created ${PODS} pods (${waiting} waiting)       ${podsS.toFixed(1)} s (${(PODS / podsS).toFixed(0)}/s)`,
    );

    // The cost of a full pod cache against a slim one, in this process (heap after GC).
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc !== undefined) {
      // Copies (structuredClone) so that nothing is shared between the two, or with the client's response.
      const list = async () =>
        structuredClone((await core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName!=' })).items);
      gc();
      const h0 = process.memoryUsage().heapUsed;
      let full: V1Pod[] | undefined = await list();
      gc();
      const h1 = process.memoryUsage().heapUsed;
      const slim = structuredClone(full.map(slimPod));
      full = undefined;
      // An async function keeps the value of its last await reachable until the next one: await again, so
      // the full list (that value) can go.
      await new Promise((r) => setImmediate(r));
      gc();
      const h2 = process.memoryUsage().heapUsed;
      console.log(`pod cache, full objects (${slim.length})          ${mib(h1 - h0)} of heap`);
      console.log(
        `pod cache, slimmed as the controller keeps it  ${mib(h2 - h0)} of heap (ratio slim/full ${((h2 - h0) / (h1 - h0)).toFixed(2)})`,
      );
    } else console.log('(run with node --expose-gc for the full/slim pod cache comparison)');

    writeFileSync(
      join(dir, 'apps.yaml'),
      Array.from({ length: APPS }, (_, k) => stringify(deployment(k))).join('---\n'),
    );
    // The controller once per set of V8 flags, each in a fresh process against the same cluster: Node's
    // defaults, and the flags deploy/ gives the controller (NODE_OPTIONS), side by side.
    for (const flags of CONTROLLER_FLAGS) {
      // Each child starts from the same cluster: no NixBuilds or Jobs left by the one before, so that its
      // first pass creates the builds again.
      for (const path of [
        `/apis/enbi.hrzn.ee/v1alpha1/namespaces/${NS}/nixbuilds`,
        `/apis/batch/v1/namespaces/${NS}/jobs?propagationPolicy=Background`,
      ])
        await api('DELETE', path, {});
      const cg = MEMORY_LIMIT !== undefined ? memoryCgroup(MEMORY_LIMIT, dir) : undefined;
      // A child that dies (heap out of memory under a cap, or killed at the cgroup's limit) is reported, and
      // the next flag set still runs.
      const result = await new Promise<Record<string, number[] | number> | undefined>((resolve) => {
        const ch = fork(new URL(import.meta.url).pathname, ['--child', c.kubeconfig, dir], {
          execArgv: ['--expose-gc', ...flags.split(' ').filter(Boolean)],
          ...(cg !== undefined ? { execPath: cg.wrapper } : {}),
        });
        // Answered on exit, so that the cgroup is empty when it is removed.
        let answer: Record<string, number[] | number> | undefined;
        ch.once('message', (m) => (answer = m as Record<string, number[] | number>));
        ch.once('exit', (code, signal) => {
          if (answer !== undefined) return resolve(answer);
          console.log(
            `--- controller with ${flags || "Node's default heap flags"} EXITED (code ${code}, signal ${signal})`,
          );
          resolve(undefined);
        });
      });
      if (cg !== undefined) {
        console.log(
          `${cg.version} memory cgroup, limit ${mib(MEMORY_LIMIT!)}: the cgroup's peak ${mib(cg.peak())}, OOM kills ${cg.oomKills()}`,
        );
        cg.remove();
      }
      if (result === undefined) continue;
      const q = (xs: number[], p: number) =>
        [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;
      const quiet = result.quiet as number[];
      console.log(`--- controller with ${flags === '' ? "Node's default heap flags" : flags}`);
      console.log(`controller start (informers listed)          ${(result.startMs as number).toFixed(0)} ms`);
      console.log(
        `first reconcile (plans, creates builds)      ${(result.firstMs as number).toFixed(0)} ms, ${result.builds} NixBuilds + Jobs created`,
      );
      console.log(
        `quiet reconcile, ${QUIET} runs                    median ${q(quiet, 50).toFixed(0)} ms, p99 ${q(quiet, 99).toFixed(0)} ms`,
      );
      console.log(`API writes during the quiet reconciles        ${result.quietWrites}`);
      console.log(
        `memory, modules loaded (baseline)            RSS ${mib(result.baseRss as number)}, heap ${mib(result.baseHeap as number)}`,
      );
      console.log(
        `memory, peak RSS (the process's high-water mark) ${mib(result.peakRss as number)} (after start ${mib(result.peakAfterStart as number)}, after the first passes ${mib(result.peakAfterFirst as number)})`,
      );
      console.log(`V8 heap_size_limit                           ${mib(result.heapLimit as number)}`);
      console.log(
        `memory, caches full                          RSS ${mib(result.rss as number)}, heap ${mib(result.heap as number)} (after GC; +${mib((result.heap as number) - (result.baseHeap as number))} of heap over the baseline)`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    if (process.env.KEEP !== '1') await down(process.env.ENBI_CLUSTER_DIR, () => undefined);
  }
}

async function child(kubeconfig: string, dir: string): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const { parseControllerConfig } = await import('../src/controller/config.ts');
  const { startController } = await import('../src/controller/controller.ts');
  const { newMetrics } = await import('../src/controller/metrics.ts');
  const { sourceState } = await import('../src/controller/source-state.ts');
  gc();
  const base = process.memoryUsage();
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const cfg = parseControllerConfig({
    source: { dir, intervalSeconds: 3600 },
    namespace: NS,
    allowedImages: ['registry.local/'],
    allowedFlakes: ['http://git.invalid/'],
    // The bench's pods are bare pods declaring their flake: planned as a trusted namespace's.
    trustedNamespaces: [APPS_NS],
    builderImage: 'enbi.local/builder:dev',
    importerImage: 'enbi.local/importer:dev',
    containerdSocket: '/run/containerd/containerd.sock',
    maxConcurrentBuildsPerNode: 2,
  });
  const metrics = newMetrics();
  const logs: string[] = [];
  // HEAP_PROFILE=alloc: every sampled allocation of each phase by site (garbage included); =live: what
  // is still alive at the end of the run, by the site that allocated it (what the caches hold).
  const profiling = process.env.HEAP_PROFILE;
  const session = profiling !== undefined ? new Session() : undefined;
  session?.connect();
  const profilePhase = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    if (session === undefined || profiling !== 'alloc') return fn();
    const stop = await startSampling(session, { includeCollected: true });
    const out = await fn();
    printSites(`allocated during ${name}`, topSites(await stop(), 14));
    return out;
  };
  const stopLive =
    session !== undefined && profiling === 'live'
      ? await startSampling(session, { includeCollected: false })
      : undefined;
  const hwm = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;
  let t = performance.now();
  const ctl = await profilePhase('start (informers listed)', () =>
    startController({
      cfg,
      kc,
      source: sourceState(cfg, join(dir, '.cache'), undefined, (m) => logs.push(m)),
      metrics,
      log: (m) => logs.push(m),
    }),
  );
  const startMs = performance.now() - t;
  const peakAfterStart = hwm();
  const reconcile = async () => {
    const done = ctl.reconciled();
    ctl.trigger(true);
    await done;
    return metrics.lastReconcileSeconds * 1000;
  };
  // The first pass can run before the source is read (informer events start one), and a trusted namespace's
  // pods are planned only once it is: the pass measured as "first" is the one that creates the builds.
  let firstMs = 0;
  await profilePhase('the first passes (until builds are created)', async () => {
    firstMs = await reconcile();
    for (let i = 0; i < 20 && metrics.buildsCreated === 0; i++) firstMs = await reconcile();
  });
  const builds = metrics.buildsCreated;
  const peakAfterFirst = hwm();
  // Let the informers see what the first reconcile wrote, then time quiet ones.
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    await reconcile();
  }
  const before = metrics.buildsCreated;
  const quiet: number[] = [];
  await profilePhase(`${QUIET} quiet passes`, async () => {
    for (let i = 0; i < QUIET; i++) quiet.push(await reconcile());
  });
  gc();
  if (stopLive !== undefined)
    printSites('alive at the end (after GC), by allocation site', topSites(await stopLive(), 14));
  if (process.env.HEAP_SNAPSHOT !== undefined)
    console.error(`heap snapshot: ${writeHeapSnapshot(process.env.HEAP_SNAPSHOT)}`);
  const mem = process.memoryUsage();
  const peakRss = hwm();
  const heapLimit = getHeapStatistics().heap_size_limit;
  if (process.env.VERBOSE === '1') console.error(logs.slice(0, 40).join('\n'));
  process.send!({
    startMs,
    firstMs,
    builds,
    quiet,
    quietWrites: metrics.buildsCreated - before,
    baseRss: base.rss,
    baseHeap: base.heapUsed,
    rss: mem.rss,
    heap: mem.heapUsed,
    peakRss,
    peakAfterStart,
    peakAfterFirst,
    heapLimit,
  });
  await ctl.stop();
  process.exit(0);
}

function deployment(k: number): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: `app-${k}`, namespace: APPS_NS },
    spec: {
      selector: { matchLabels: { app: `app-${k}` } },
      template: {
        metadata: { labels: { app: `app-${k}` }, annotations: { 'enbi.hrzn.ee/flake': flakeOf(k) } },
        spec: { containers: [{ name: 'app', image: imageOf(k) }] },
      },
    },
  };
}

function kubeConfigOf(file: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

function nodeInfo(arch: string) {
  return {
    architecture: arch,
    operatingSystem: 'linux',
    bootID: '',
    containerRuntimeVersion: 'containerd://1.6.20',
    kernelVersion: '6.1.0',
    kubeProxyVersion: '',
    kubeletVersion: 'v1.34.4',
    machineID: '',
    osImage: 'Debian GNU/Linux 12',
    systemUUID: '',
  };
}

async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let i = next++; i < n; i = next++) await fn(i);
    }),
  );
}

/**
 * JSON requests over one keep-alive connection pool (client-node's generated clients pay for more per call),
 * retried on overload; POST of an object that exists is fine (KEEP=1 and a second run). PATCH is a merge patch.
 */
function rawApi(kc: KubeConfig): (method: string, path: string, body: unknown) => Promise<void> {
  const server = new URL(kc.getCurrentCluster()!.server);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 32 });
  const base: https.RequestOptions = { hostname: server.hostname, port: server.port, agent };
  const ready = kc.applyToHTTPSOptions(base);
  const once = (method: string, path: string, body: unknown) =>
    new Promise<number>((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = https.request(
        {
          ...base,
          method,
          path,
          headers: {
            'Content-Type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json',
            'Content-Length': Buffer.byteLength(data),
          },
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => {
            const code = res.statusCode ?? 0;
            if (code < 300 || (code === 409 && method === 'POST')) resolve(code);
            else if (code === 429 || code >= 500 || code === 409) resolve(-code);
            else reject(new Error(`${method} ${path}: ${code} ${text.slice(0, 300)}`));
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  return async (method, path, body) => {
    await ready;
    for (let i = 1; ; i++) {
      const code = await once(method, path, body);
      if (code > 0) return;
      if (i >= 8) throw new Error(`${method} ${path}: ${-code} after ${i} tries`);
      await new Promise((r) => setTimeout(r, 200 * i));
    }
  };
}
