// The node agent's loop: list containerd's images once, publish them as the node's NodeImages, then follow
// containerd's image events. Events only mark names dirty; a short window (debounceMs) gathers a burst,
// then the dirty names are listed again (one filtered List) and the status is written if it changed.
// Nothing changed, nothing written, except a resync every resyncMs (a full List, and a write of observedAt
// alone when the list is the same: it tells readers the inventory is fresh). When the event stream breaks
// (containerd restarting), it subscribes again with backoff and lists everything again.
import { performance } from 'node:perf_hooks';
import { type KubeConfigLike, LiteApi, targetFromKubeConfig } from '../kube/lite.ts';
import { NODE_IMAGES_LIMITS, type NodeImagesStatus } from '../api/nodeimages-names.ts';
import { ContainerdClient, K8S_NAMESPACE } from '../containerd/client.ts';
import { type ImageEvent, type Subscription, subscribeImageEvents } from '../containerd/events.ts';
import { type ContainerdImage, listImages, nameFilter } from '../containerd/images.ts';
import { PlatformCache } from '../containerd/platform.ts';
import { buildInventory, type Limits, sameInventory } from './inventory.ts';
import { NodeImagesWriter } from './publish.ts';
import { type BuildManifests, watchBuildManifests } from './build-manifests.ts';
import {
  applyAdoptions,
  applyRewrites,
  gatherFacts,
  heldDigests,
  planAdoptions,
  planRewrites,
} from './converge-index.ts';
import { LABEL_RECORD_OWNER } from '../containerd/import/labels.ts';
import type { ParsedIndex } from '../image/platform-index.ts';
import { containerImages, planCollection, removeRecords } from './collect-images.ts';
import { parsedIndexOf } from '../containerd/index-blob.ts';
import { backoff } from '../async/backoff.ts';
import { errorMessage } from '../async/error-message.ts';

export interface AgentOptions {
  node: string;
  socket: string;
  /** The API server: a small client (the agent's own), or a client-node KubeConfig's current context (tests). */
  api: LiteApi | KubeConfigLike;
  /** containerd namespace (default k8s.io). */
  namespace?: string;
  /** Window gathering a burst of events into one List and one write (default 100 ms). */
  debounceMs?: number;
  /** Full List and observedAt refresh (default 10 min). */
  resyncMs?: number;
  /** A second full List this long after each (re)subscription, for a change racing the subscription (default 2 s). */
  settleMs?: number;
  /** Reconnect backoff bounds (default 500 ms to 30 s, doubling). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  limits?: Limits;
  /**
   * enbi's namespace: the agent follows its NixBuilds and keeps every tag they built, on this node, at the
   * one index of all platforms built so far (src/agent/converge-index.ts). Absent: it only publishes.
   */
  buildsNamespace?: string;
  log?: (msg: string) => void;
}

export interface AgentStats {
  /** Requests that changed the NodeImages object. */
  writes: number;
  /** containerd List calls (full and filtered). */
  lists: number;
  /** Image events received. */
  events: number;
  /** Event stream (re)subscriptions. */
  subscriptions: number;
  /** Image records (names) known. */
  names: number;
  /** Time of the last successful write (ms since the epoch). */
  lastWriteAt: number;
  /** Tags pointed at a new index (a platform added elsewhere). */
  indexRewrites: number;
  /** Image records removed because the NixBuilds that made them were deleted. */
  imagesRemoved: number;
  /** Phases of the last run, in ms: containerd (lists and blob reads), building the status, the API write. */
  lastRun: { containerd: number; build: number; write: number };
}

export interface Agent {
  /** Resolves after the first successful publish. */
  readonly ready: Promise<void>;
  stats(): AgentStats;
  /** Stops following and closes the connection; resolves when an in-flight write is done. */
  stop(): Promise<void>;
}

/** Names beyond this in one window are refreshed by a full List rather than a filtered one. */
const MAX_FILTERED_NAMES = 256;
/** Blob reads for platforms in flight at once. */
const PLATFORM_CONCURRENCY = 16;

export function startAgent(o: AgentOptions): Agent {
  const log = o.log ?? (() => {});
  const debounceMs = o.debounceMs ?? 100;
  const resyncMs = o.resyncMs ?? 10 * 60_000;
  const settleMs = o.settleMs ?? 2_000;
  const backoffMin = o.backoffMinMs ?? 500;
  const backoffMax = o.backoffMaxMs ?? 30_000;
  const limits = o.limits ?? NODE_IMAGES_LIMITS;
  const client = new ContainerdClient(o.socket, { namespace: o.namespace ?? K8S_NAMESPACE });
  const platforms = new PlatformCache(client);
  const api = o.api instanceof LiteApi ? o.api : new LiteApi(targetFromKubeConfig(o.api));
  const writer = new NodeImagesWriter(api, o.node);
  const indexCache = new Map<string, ParsedIndex | null>();
  /** Tags whose last NixBuild went: their records leave the node once no container uses them. */
  const orphans = new Set<string>();
  const builds =
    o.buildsNamespace !== undefined
      ? watchBuildManifests(
          api,
          o.buildsNamespace,
          (names, gone) => {
            for (const n of [...names, ...gone]) dirty.add(n);
            for (const n of gone) orphans.add(n);
            if (running === undefined) schedule();
          },
          log,
        )
      : undefined;

  const images = new Map<string, ContainerdImage>();
  const dirty = new Set<string>();
  let needFullList = true; // the first run lists everything
  let forceWrite = true; // and writes, whatever is stored (observedAt says the agent is there)
  let written: NodeImagesStatus | undefined;
  let containerdVersion: string | undefined;
  let lastPlatforms = new Map<string, string[]>();

  let stopped = false;
  let running: Promise<void> | undefined;
  let windowTimer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let resyncTimer: NodeJS.Timeout | undefined;
  let settleTimer: NodeJS.Timeout | undefined;
  let subscription: Subscription | undefined;
  let subscribeTimer: NodeJS.Timeout | undefined;
  let subscribeFailures = 0;
  let runFailures = 0;
  const stats: AgentStats = {
    writes: 0,
    lists: 0,
    events: 0,
    subscriptions: 0,
    names: 0,
    indexRewrites: 0,
    imagesRemoved: 0,
    lastWriteAt: 0,
    lastRun: { containerd: 0, build: 0, write: 0 },
  };

  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));

  const retryIn = (failures: number): number => backoff(failures, { baseMs: backoffMin, maxMs: backoffMax });

  /** Opens a window: what arrives within debounceMs is handled by one run. */
  function schedule(delay = debounceMs): void {
    if (stopped || windowTimer !== undefined || retryTimer !== undefined) return;
    windowTimer = setTimeout(() => {
      windowTimer = undefined;
      void runOnce();
    }, delay);
  }

  function onEvent(e: ImageEvent): void {
    stats.events++;
    dirty.add(e.name);
    if (running === undefined) schedule();
    // else: runOnce() schedules again when it finds names dirty after its run
  }

  function subscribe(): void {
    if (stopped) return;
    subscribeTimer = undefined;
    stats.subscriptions++;
    subscription = subscribeImageEvents(client, onEvent, (err) => {
      subscription = undefined;
      if (stopped) return;
      subscribeFailures++;
      const delay = retryIn(subscribeFailures);
      log(`${err.message}; subscribing again in ${delay} ms`);
      subscribeTimer = setTimeout(subscribe, delay);
    });
    // Events may have been missed while there was no subscription: list everything.
    needFullList = true;
    schedule(0);
    clearTimeout(settleTimer);
    settleTimer = setTimeout(() => {
      needFullList = true;
      schedule(0);
    }, settleMs);
  }

  async function refresh(): Promise<void> {
    if (needFullList || dirty.size > MAX_FILTERED_NAMES) {
      needFullList = false;
      dirty.clear();
      stats.lists++;
      const all = await listImages(client);
      images.clear();
      for (const i of all) images.set(i.name, i);
      if (containerdVersion === undefined) containerdVersion = (await client.version()).version;
    } else if (dirty.size > 0) {
      const names = [...dirty];
      dirty.clear();
      stats.lists++;
      const found = await listImages(client, names.map(nameFilter));
      for (const n of names) images.delete(n);
      for (const i of found) images.set(i.name, i);
    }
    stats.names = images.size;
    // Platforms of digests not seen yet (content is immutable: cached by digest).
    const digests = new Set([...images.values()].map((i) => i.target.digest));
    platforms.retain(digests);
    const targets = new Map<string, ContainerdImage['target']>();
    for (const i of images.values()) targets.set(i.target.digest, i.target);
    const todo = [...targets.values()];
    const resolved = new Map<string, string[]>();
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(PLATFORM_CONCURRENCY, todo.length) }, async () => {
        while (next < todo.length) {
          const t = todo[next++]!;
          resolved.set(t.digest, await platforms.get(t));
        }
      }),
    );
    lastPlatforms = resolved;
    if (builds !== undefined) await converge(builds);
    if (builds !== undefined && orphans.size > 0) await collect(builds);
  }

  /** Removes the records of tags whose last NixBuild was deleted (src/agent/collect-images.ts). */
  async function collect(b: BuildManifests): Promise<void> {
    for (const n of [...orphans]) if (b.candidates(n).length > 0) orphans.delete(n); // named again meanwhile
    if (orphans.size === 0) return;
    const all = [...images.values()];
    const parsed = new Map<string, ParsedIndex>();
    for (const r of all) {
      const p = await parsedIndexOf(client, r.target, indexCache);
      if (p !== undefined) parsed.set(r.target.digest, p);
    }
    const plan = planCollection(orphans, all, (d) => parsed.get(d), await containerImages(client));
    const removed = await removeRecords(client, plan.remove);
    for (const n of [...plan.skipped, ...plan.remove]) orphans.delete(n);
    if (removed.length > 0) log(`removed the images of collected builds: ${removed.join(', ')}`);
    if (plan.inUse.length > 0)
      log(`kept (a container uses them; asked again at the next resync): ${plan.inUse.join(', ')}`);
    stats.imagesRemoved += removed.length;
    for (const n of removed) dirty.add(n);
  }

  /** Tags whose builds know more (or other) platforms than their index lists: rewritten, then listed again. */
  async function converge(b: BuildManifests): Promise<void> {
    if (indexCache.size > 4096) indexCache.clear();
    const facts = await gatherFacts(
      client,
      images.values(),
      (n) => b.candidates(n).length > 0,
      (t) => platforms.get(t),
      indexCache,
    );
    if (facts.length === 0) return;
    // Tags pulled from enbi's own index (Spegel): labelled enbi's here, then converged like the rest.
    const adoptions = planAdoptions(facts, (n) => b.candidates(n));
    if (adoptions.length > 0) {
      const adopted = new Map(adoptions.map((a) => [a.name, a]));
      for (const name of await applyAdoptions(client, adoptions, log)) {
        const f = facts.find((x) => x.record.name === name)!;
        f.record = { ...f.record, labels: { ...f.record.labels, [LABEL_RECORD_OWNER]: adopted.get(name)!.owner } };
        f.indexOwned = true;
        dirty.add(name);
      }
    }
    const digests = facts.flatMap((f) => [
      ...b.candidates(f.record.name).map((c) => c.digest),
      ...(f.parsed?.entries.map((e) => e.digest) ?? []),
    ]);
    const held = await heldDigests(client, digests);
    const rewrites = planRewrites(
      facts,
      (n) => b.candidates(n),
      (d) => held.has(d),
    );
    stats.indexRewrites += await applyRewrites(client, rewrites, log);
    for (const r of rewrites) dirty.add(r.name);
  }

  function statusNow(): NodeImagesStatus {
    const inv = buildInventory(images.values(), (d) => lastPlatforms.get(d) ?? [], limits);
    return {
      source: 'containerd',
      ...(containerdVersion !== undefined ? { containerdVersion } : {}),
      namespace: client.namespace,
      observedAt: new Date().toISOString(),
      resyncSeconds: Math.round(resyncMs / 1000),
      imageCount: inv.imageCount,
      nameCount: inv.nameCount,
      truncated: inv.truncated,
      images: inv.images,
    };
  }

  async function run(): Promise<void> {
    const force = forceWrite;
    try {
      const t0 = performance.now();
      await refresh();
      const t1 = performance.now();
      const status = statusNow();
      const same = sameInventory(status, written);
      const t2 = performance.now();
      if (!same) {
        await writer.writeStatus(status);
        written = status;
        stats.lastWriteAt = Date.now();
        log(
          `published ${status.imageCount} images (${status.nameCount} names${status.truncated ? ', truncated' : ''})`,
        );
      } else if (force) {
        await writer.touch(status.observedAt);
        written = { ...written!, observedAt: status.observedAt };
        stats.lastWriteAt = Date.now();
      }
      stats.lastRun = {
        containerd: Math.round(t1 - t0),
        build: Math.round(t2 - t1),
        write: Math.round(performance.now() - t2),
      };
      if (force) forceWrite = false;
      stats.writes = writer.writes;
      runFailures = 0;
      resolveReady();
    } catch (e) {
      // containerd or the API server failed: try again with backoff, with everything still to do.
      if (force) forceWrite = true;
      runFailures++;
      const delay = retryIn(runFailures);
      log(`refresh failed (${errorMessage(e).split('\n')[0]}); again in ${delay} ms`);
      // A filtered refresh that failed lost its names from `dirty`: a full list covers them.
      needFullList = true;
      retryTimer = setTimeout(() => {
        retryTimer = undefined;
        schedule(0);
      }, delay);
    }
  }

  async function runOnce(): Promise<void> {
    if (stopped || running !== undefined) return;
    running = run().finally(() => {
      running = undefined;
    });
    await running;
    if (!stopped && (dirty.size > 0 || needFullList) && retryTimer === undefined) schedule();
  }

  function resync(): void {
    needFullList = true;
    forceWrite = true;
    schedule(0);
    resyncTimer = setTimeout(resync, resyncMs);
  }

  resyncTimer = setTimeout(resync, resyncMs);
  void (async () => {
    // The object as stored: a restarted agent compares with it (and writes at once anyway: see forceWrite).
    try {
      const stored = await writer.read();
      if (stored?.status !== undefined) written = stored.status;
    } catch (e) {
      log(`reading NodeImages/${o.node} failed: ${errorMessage(e).split('\n')[0]}`);
    }
    subscribe();
  })();

  return {
    ready,
    stats: () => ({ ...stats, lastRun: { ...stats.lastRun }, writes: writer.writes }),
    async stop(): Promise<void> {
      stopped = true;
      for (const t of [windowTimer, retryTimer, resyncTimer, settleTimer, subscribeTimer]) clearTimeout(t);
      subscription?.cancel();
      builds?.stop();
      await running?.catch(() => {});
      client.close();
    },
  };
}
