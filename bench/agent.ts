// The node agent with 1,000 images: time from a change in containerd to the inventory in the API, and the
// agent's memory. Real parts: a private containerd (Debian's 1.6 by default; ENBI_CONTAINERD=containerd-2:DIR
// for 2.x) and the test cluster's API server (started if needed; ENBI_CLUSTER_DIR picks which).
// Run: node bench/agent.ts   (shape: IMAGES=1000 CHANGES=50 GAP_MS=300 IDLE_S=10) — prints figures, asserts nothing.
//
// The agent runs in a child process (bench/agent-child.mjs), so that its RSS and heap are its own;
// AGENT_DIST=DIR runs the compiled JavaScript there (see that file), AGENT_NODE_OPTIONS adds Node flags.
// Each change is `ctr images tag` (create) or `ctr images rm` (delete) of one name; its latency is timed from
// containerd's own event timestamp (the envelope's, read by a second subscriber here) to the moment a watch
// on the NodeImages object delivers the new state, and also from the moment ctr was started.
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Watch } from '@kubernetes/client-node';
import { GROUP, NODE_IMAGES_PLURAL, type NodeImages, VERSION } from '../src/api/nodeimages.ts';
import { ContainerdClient } from '../src/containerd/client.ts';
import { type ImageEvent, subscribeImageEvents } from '../src/containerd/events.ts';
import { run } from '../test/cluster/proc.ts';
import { applyNodeImagesCrd, manyImagesArchive, startPrivateContainerd } from '../test/support/containerd.ts';

await main();

async function main(): Promise<void> {
  const IMAGES = Number(process.env.IMAGES ?? 1000);
  const CHANGES = Number(process.env.CHANGES ?? 50);
  const GAP_MS = Number(process.env.GAP_MS ?? 300);
  const IDLE_S = Number(process.env.IDLE_S ?? 10);
  const { useCluster } = await import('../test/cluster/harness.ts');
  const c = await useCluster('control-plane');
  await applyNodeImagesCrd(c.kc);
  // BENCH_DIR=/tmp/x keeps the containerd (and its images) for the next run, which then skips the import.
  const dir = process.env.BENCH_DIR ?? mkdtempSync(join(tmpdir(), 'enbi-ab-'));
  mkdirSync(dir, { recursive: true });
  const cd = await startPrivateContainerd(process.env.ENBI_CONTAINERD ?? 'debian-1.6', dir);
  const node = `bench-agent-${Date.now().toString(36)}`;
  const ctr = (...args: string[]) => run(cd.ctr, ['--address', cd.socket, '-n', 'k8s.io', ...args]);
  const cleanup: (() => Promise<unknown>)[] = [];
  try {
    const client = new ContainerdClient(cd.socket);
    cleanup.push(async () => client.close());
    const version = (await client.version()).version;

    let t = performance.now();
    const have = (await ctr('images', 'ls', '-q')).split('\n').filter((n) => n.startsWith('bench.local/app-')).length;
    if (have !== IMAGES) {
      manyImagesArchive(
        Array.from({ length: IMAGES }, (_, i) => `bench.local/app-${i}:v1`),
        join(dir, 'many.tar'),
      );
      await ctr('images', 'import', '--no-unpack', join(dir, 'many.tar'));
    }
    const importMs = performance.now() - t;
    // The CRI plugin adds a sha256:<config> name to each image in the background: let it finish first.
    let names = 0;
    for (let stable = 0; stable < 3;) {
      const n = (await ctr('images', 'ls', '-q')).split('\n').filter(Boolean).length;
      stable = n === names ? stable + 1 : 0;
      names = n;
      await new Promise((r) => setTimeout(r, 1_000));
    }
    const how = `${process.env.AGENT_DIST ? 'compiled JS' : 'TypeScript sources (type stripping)'}${process.env.AGENT_NODE_OPTIONS ? `, ${process.env.AGENT_NODE_OPTIONS}` : ''}`;
    console.log(
      `agent bench: ${IMAGES} images (${names} names) on containerd ${version} (${cd.flavor}), ${CHANGES} changes, node ${process.version}; agent from ${how}`,
    );
    console.log(
      `import (one ctr import --no-unpack)           ${have === IMAGES ? 'kept from the last run (BENCH_DIR)' : `${(importMs / 1000).toFixed(1)} s`}`,
    );

    // The watch: when the API server has the object, and what it says.
    const seen: { at: number; names: Set<string>; bytes: number }[] = [];
    const watch = new Watch(c.kc);
    // A CRD just created answers watches 429 until the API server's watch cache for it is ready: retry.
    let req: AbortController | undefined;
    for (let attempt = 0; req === undefined; attempt++) {
      let failed: unknown;
      const r = await watch.watch(
        `/apis/${GROUP}/${VERSION}/${NODE_IMAGES_PLURAL}`,
        { fieldSelector: `metadata.name=${node}` },
        (_type: string, obj: NodeImages) => {
          const at = Date.now();
          const all = new Set((obj.status?.images ?? []).flatMap((i) => i.names));
          seen.push({ at, names: all, bytes: Buffer.byteLength(JSON.stringify(obj)) });
        },
        (err: unknown) => {
          failed = err;
          if (err && !String(err).includes('abort') && !String(err).includes('Too Many Requests'))
            console.error(`watch ended: ${String(err)}`);
        },
      );
      await new Promise((resolve) => setTimeout(resolve, 1000));
      if (failed === undefined) req = r;
      else if (attempt >= 30) throw new Error(`the NodeImages watch keeps failing: ${String(failed)}`);
    }
    cleanup.push(async () => req!.abort());

    // Events as containerd stamps them.
    const events: ImageEvent[] = [];
    const sub = subscribeImageEvents(
      client,
      (e) => events.push(e),
      () => {},
    );
    cleanup.push(async () => sub.cancel());

    t = performance.now();
    const child = fork(
      new URL('agent-child.mjs', import.meta.url).pathname,
      ['--child', node, cd.socket, c.kubeconfig],
      { execArgv: ['--expose-gc', ...(process.env.AGENT_NODE_OPTIONS ?? '').split(' ').filter(Boolean)] },
    );
    cleanup.push(async () => {
      if (child.exitCode === null) {
        child.send({ cmd: 'stop' });
        await new Promise((r) => child.once('exit', r));
      }
    });
    const ask = <T>(msg: object | undefined, key: string): Promise<T> =>
      new Promise((resolve) => {
        const on = (m: Record<string, unknown>) => {
          if (key in m) {
            child.off('message', on);
            resolve(m as T);
          }
        };
        child.on('message', on);
        if (msg) child.send(msg);
      });
    const { ready } = await ask<{ ready: number }>(undefined, 'ready');
    const spawnToReady = performance.now() - t;
    await new Promise((r) => setTimeout(r, 2_500)); // the agent's settle list after subscribing
    const first = seen.at(-1);
    console.log(
      `first publish: list, platforms of ${IMAGES}, write   ${ready.toFixed(0)} ms in the agent (${spawnToReady.toFixed(0)} ms from spawn, Node start-up included)`,
    );
    console.log(`NodeImages object                            ${((first?.bytes ?? 0) / 1024).toFixed(0)} KiB as JSON`);
    const m0 = await ask<{
      mem: NodeJS.MemoryUsage;
      stats: { writes: number; lists: number; lastRun: { containerd: number; build: number; write: number } };
    }>({ cmd: 'mem' }, 'mem');
    const r = m0.stats.lastRun;
    console.log(
      `a full list again (platforms cached)          containerd ${r.containerd} ms, status ${r.build} ms, write ${r.write} ms (none when unchanged)`,
    );

    // Changes, one at a time: alternately a new name and its removal.
    const fromEvent: number[] = [];
    const fromCtr: number[] = [];
    const phases = { containerd: [] as number[], build: [] as number[], write: [] as number[] };
    for (let i = 0; i < CHANGES; i++) {
      const name = `bench.local/change:${Math.floor(i / 2)}`;
      const create = i % 2 === 0;
      const evCount = events.length;
      const seenCount = seen.length;
      const start = Date.now();
      if (create) await ctr('images', 'tag', 'bench.local/app-0:v1', name);
      else await ctr('images', 'rm', name);
      const deadline = Date.now() + 30_000;
      let hit: (typeof seen)[number] | undefined;
      while (!hit && Date.now() < deadline) {
        hit = seen.slice(seenCount).find((s) => s.names.has(name) === create);
        if (!hit) await new Promise((r) => setTimeout(r, 2));
      }
      const ev = events.slice(evCount).find((e) => e.name === name);
      if (!hit || !ev) throw new Error(`change ${i} (${create ? 'tag' : 'rm'} ${name}) not seen`);
      fromEvent.push(hit.at - ev.at);
      fromCtr.push(hit.at - start);
      const { stats } = await ask<{ stats: { lastRun: { containerd: number; build: number; write: number } } }>(
        { cmd: 'mem' },
        'mem',
      );
      for (const k of ['containerd', 'build', 'write'] as const) phases[k].push(stats.lastRun[k]);
      await new Promise((r) => setTimeout(r, GAP_MS));
    }
    const m1 = await ask<{ mem: NodeJS.MemoryUsage; stats: { writes: number; lists: number } }>({ cmd: 'mem' }, 'mem');
    const q = (xs: number[], p: number) =>
      [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;
    const line = (label: string, xs: number[]) =>
      console.log(
        `${label.padEnd(45)}median ${q(xs, 50)} ms, p99 ${q(xs, 99)} ms (min ${Math.min(...xs)}, max ${Math.max(...xs)})`,
      );
    line("change → API, from containerd's event", fromEvent);
    line("change → API, from ctr's start", fromCtr);
    line('  of which: containerd (filtered list)', phases.containerd);
    line('  of which: status built and compared', phases.build);
    line('  of which: API write (merge patch)', phases.write);
    console.log(
      `writes for ${CHANGES} changes                         ${m1.stats.writes - m0.stats.writes} (lists ${m1.stats.lists - m0.stats.lists})`,
    );

    // Idle: no writes, and how much CPU the agent burns doing nothing.
    const cpu = async () => {
      const stat = (await import('node:fs')).readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, clock ticks of 10 ms
    };
    const seenBefore = seen.length;
    const c0 = await cpu();
    await new Promise((r) => setTimeout(r, IDLE_S * 1000));
    const c1 = await cpu();
    console.log(
      `idle ${IDLE_S} s                                      ${seen.length - seenBefore} writes, ${c1 - c0} ms CPU`,
    );
    const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;
    const m2 = await ask<{ mem: NodeJS.MemoryUsage }>({ cmd: 'mem' }, 'mem');
    const base = await new Promise<NodeJS.MemoryUsage>((resolve) => {
      const b = fork(new URL('agent-child.mjs', import.meta.url).pathname, ['--baseline'], {
        execArgv: ['--expose-gc', ...(process.env.AGENT_NODE_OPTIONS ?? '').split(' ').filter(Boolean)],
      });
      b.once('message', (m: { mem: NodeJS.MemoryUsage }) => resolve(m.mem));
    });
    console.log(
      `modules loaded, no agent (baseline)           RSS ${mib(base.rss)}, heap used ${mib(base.heapUsed)} of ${mib(base.heapTotal)} (after GC), external ${mib(base.external)}`,
    );
    console.log(
      `agent memory after first publish              RSS ${mib(m0.mem.rss)}, heap used ${mib(m0.mem.heapUsed)} of ${mib(m0.mem.heapTotal)} (after GC), external ${mib(m0.mem.external)}`,
    );
    console.log(
      `agent memory after ${CHANGES} changes + idle           RSS ${mib(m2.mem.rss)}, heap used ${mib(m2.mem.heapUsed)} of ${mib(m2.mem.heapTotal)} (after GC), external ${mib(m2.mem.external)}`,
    );
    // The peer on the same node: the containerd it watches (holding the same 1,000 images).
    const ctrdPid = cd.pid();
    const ctrdRss =
      ctrdPid !== undefined
        ? Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${ctrdPid}/status`, 'utf8'))?.[1] ?? 0) * 1024
        : 0;
    if (ctrdRss > 0)
      console.log(
        `containerd beside it (${cd.flavor})             RSS ${mib(ctrdRss)}; agent/containerd ${(m2.mem.rss / ctrdRss).toFixed(2)}×`,
      );
    // The agent's resident memory as the kernel splits it: anonymous (its own) and file-backed (mostly the node
    // binary's pages).
    const own = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    const kib = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(own)?.[1] ?? 0) * 1024;
    console.log(
      `agent RSS (kernel)                            ${mib(kib('VmRSS'))}: anonymous ${mib(kib('RssAnon'))}, file-backed ${mib(kib('RssFile'))}`,
    );
  } finally {
    for (const f of cleanup.reverse()) await f().catch(() => undefined);
    await c.kc
      .makeApiClient((await import('@kubernetes/client-node')).CustomObjectsApi)
      .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name: node })
      .catch(() => undefined);
    await cd.stop();
    if (process.env.BENCH_DIR === undefined) rmSync(dir, { recursive: true, force: true });
  }
}
