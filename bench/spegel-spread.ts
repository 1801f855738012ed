// What Spegel buys: time from an image's import (enbi's importer, as a build Job runs it) on node A to a pod
// Running with it on node B, pulled through B's Spegel from A, against the same pod on a node that imported
// the image itself (the same node B, another image). Real Spegel v0.7.4 on the three-node Spegel cluster
// (test/support/spegel-cluster.ts), A and B on containerd 2.4.2.
// Each round uses a fresh image (a busybox layer and MB of random bytes), so nothing is cached.
//
//   node bench/spegel-spread.ts [--mb 32] [--rounds 3]
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { ContainerdClient } from '../src/containerd/client.ts';
import { importArchive } from '../src/containerd/import/importer.ts';
import { buildBusyboxImage } from '../test/cluster/images.ts';
import { spegelCluster } from '../test/support/spegel-cluster.ts';

const { values } = parseArgs({
  options: { mb: { type: 'string', default: '32' }, rounds: { type: 'string', default: '3' } },
});
const MB = Number(values.mb);
const ROUNDS = Number(values.rounds);
const NS = `bench-spegel-${randomBytes(3).toString('hex')}`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const sc = await spegelCluster();
const core = sc.kc.makeApiClient(CoreV1Api);
const dir = mkdtempSync('/tmp/enbi-bench-spegel-');
// A and B on containerd 2.x: Spegel spreads nothing imported on 1.6 while it runs (README, Spegel). C = B, so
// both ways end in a pod on the same kind of node: only where the image came from differs.
const byName = (n: string) => sc.state.nodes.find((x) => x.name === n)!;
const a = byName('enbi-node-2');
const b = byName('enbi-node-3');
const c = b;
console.log(
  `spegel spread bench: ${MB} MB images, ${ROUNDS} rounds; import on ${a.name} (${a.containerd}) → pod on ${b.name} (${b.containerd}) through Spegel, against import and pod on ${c.name} (${c.containerd})`,
);

async function importOn(node: typeof a, archive: string, ref: string): Promise<number> {
  const client = new ContainerdClient(node.containerdSocket);
  try {
    const t = performance.now();
    await importArchive(client, createReadStream(archive), { images: [ref], platform: 'linux/amd64', owner: 'bench' });
    return performance.now() - t;
  } finally {
    client.close();
  }
}

async function podRunning(node: typeof a, ref: string, name: string): Promise<number> {
  const t = performance.now();
  const pod: V1Pod = {
    metadata: { name, namespace: NS },
    spec: {
      nodeName: node.name,
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 0,
      containers: [
        { name: 'c', image: ref, imagePullPolicy: 'IfNotPresent', command: ['/bin/busybox', 'sleep', '3600'] },
      ],
    },
  };
  await core.createNamespacedPod({ namespace: NS, body: pod });
  for (;;) {
    const p = await core.readNamespacedPod({ namespace: NS, name });
    if (p.status?.phase === 'Running') return performance.now() - t;
    const waiting = p.status?.containerStatuses?.[0]?.state?.waiting;
    if (waiting?.reason === 'ErrImageNeverPull' || waiting?.reason === 'InvalidImageName')
      throw new Error(`${name}: ${waiting.reason}: ${waiting.message}`);
    if (performance.now() - t > 180_000)
      throw new Error(`${name}: not Running after 180 s (${JSON.stringify(waiting)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

try {
  await core.createNamespace({ body: { metadata: { name: NS } } });
  const spread: number[] = [];
  const self: number[] = [];
  const podSpread: number[] = [];
  const podSelf: number[] = [];
  const served0 = await sc.spegel.metrics(a.name);
  const hits0 = await sc.spegel.metrics(b.name);
  for (let i = 0; i < ROUNDS; i++) {
    const files = [{ path: 'data/bulk.bin', data: randomBytes(MB << 20) }];
    const refA = `registry.local/bench-spread-${NS}-${i}:v1`;
    const refC = `registry.local/bench-self-${NS}-${i}:v1`;
    const archA = buildBusyboxImage({ ref: refA, out: join(dir, `a${i}.tar`), files }).out;
    const archC = buildBusyboxImage({
      ref: refC,
      out: join(dir, `c${i}.tar`),
      files: [{ path: 'data/bulk.bin', data: randomBytes(MB << 20) }],
    }).out;
    // Through Spegel: the import on A, then the pod on B (which holds nothing of it).
    let t = performance.now();
    const impA = await importOn(a, archA, refA);
    const runB = await podRunning(b, refA, `spread-${i}`);
    spread.push(performance.now() - t);
    podSpread.push(runB);
    // Built where it runs: the import on C, then the pod on C.
    t = performance.now();
    const impC = await importOn(c, archC, refC);
    const runC = await podRunning(c, refC, `self-${i}`);
    self.push(performance.now() - t);
    podSelf.push(runC);
    console.log(
      `round ${i + 1}: import on A ${impA.toFixed(0)} ms + pod on B ${runB.toFixed(0)} ms = ${spread.at(-1)!.toFixed(0)} ms; import on C ${impC.toFixed(0)} ms + pod on C ${runC.toFixed(0)} ms = ${self.at(-1)!.toFixed(0)} ms`,
    );
  }
  const served = await sc.spegel.metrics(a.name);
  const hits = await sc.spegel.metrics(b.name);
  console.log(`import on A → pod Running on B through Spegel: median ${median(spread).toFixed(0)} ms`);
  console.log(`import on C → pod Running on C (no transfer):   median ${median(self).toFixed(0)} ms`);
  console.log(`ratio (through Spegel / built where it runs):   ${(median(spread) / median(self)).toFixed(2)}×`);
  console.log(
    `the pod step alone: ${median(podSpread).toFixed(0)} ms pulling through Spegel, ${median(podSelf).toFixed(0)} ms with the image local (${(median(podSpread) / median(podSelf)).toFixed(2)}×)`,
  );
  console.log(
    `Spegel on A served ${((served.registryBytes - served0.registryBytes) / 1e6).toFixed(1)} MB in ${served.registryResponses - served0.registryResponses} answers; B's mirror hits ${hits0.mirrorHits} → ${hits.mirrorHits}, misses ${hits0.mirrorMisses} → ${hits.mirrorMisses}`,
  );
} finally {
  await core.deleteNamespace({ name: NS }).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
  await sc.release();
}
