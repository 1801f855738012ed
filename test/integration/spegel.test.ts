// A real Spegel v0.7.4 on three real nodes (issue 11), in a cluster of its own (test/support/spegel-cluster.ts:
// enbi-node-1 on Debian's containerd 1.6, enbi-node-2 on containerd 2.x emulating aarch64-linux, enbi-node-3
// on containerd 2.x). Images are imported as `enbi import` does (importArchive: distribution-source labels
// on every blob at commit) and pulled by tag through each node's own Spegel, by `ctr images pull
// --hosts-dir` and by the CRI for a pod; Spegel's metrics show who served what. What differs on 1.6:
//   - as a puller it works (CRI and ctr read the same hosts.toml);
//   - as a source, Spegel v0.7.4 advertises the tag of an image imported while it runs, never its blobs:
//     containerd 1.6 sends no /content/create events, and an image event only indexes. No other node can
//     pull such an image until that node's Spegel restarts and lists the labelled content.
// On both, unlabelled blobs (plain `ctr import`) are never served, and neither is a blob enbi labels after
// it was stored unlabelled (a label update raises no event).
// Other files share the cluster through spegelCluster() (it counts its users); the last one out stops it,
// unless ENBI_KEEP_CLUSTER=1.
import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { CoreV1Api } from '@kubernetes/client-node';
import { ContainerdClient } from '../../src/containerd/client.ts';
import { listImages, nameFilter } from '../../src/containerd/images.ts';
import { importArchive } from '../../src/containerd/import/importer.ts';
import { contentInfo } from '../../src/containerd/import/content.ts';
import { clusterSkipReason } from '../cluster/harness.ts';
import { buildBusyboxImage, importImage } from '../cluster/images.ts';
import type { NodeState } from '../cluster/state.ts';
import { until } from '../support/kube.ts';
import { assertSpegelReady, reachableBlobs } from '../support/spegel-check.ts';
import { REGISTRY_PORT, type SpegelMetrics, type SpegelNode } from '../support/spegel.ts';
import { type SpegelCluster, spegelCluster } from '../support/spegel-cluster.ts';

const RUN = Date.now().toString(36);
const NS = `spegel-${RUN}`;
const REPOSITORY = 'enbi-spegel-test';
const N1 = 'enbi-node-1'; // containerd 1.6
const N2 = 'enbi-node-2'; // containerd 2.x
const N3 = 'enbi-node-3'; // containerd 2.x
const secs = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

interface Imported {
  ref: string;
  tag: string;
  /** The tag's target: the OCI index enbi writes for every tag. */
  index: string;
  /** The platform manifest the index lists. */
  manifest: string;
  config: string;
  /** Index, manifest, config, layers. */
  blobs: { digest: string; size: number; mediaType: string }[];
}

describe(
  'Spegel v0.7.4 on three real nodes, containerd 1.6 and 2.x',
  { skip: clusterSkipReason(), timeout: 900_000 },
  () => {
    let c: SpegelCluster;
    const tmp = mkdtempSync(join(tmpdir(), 'enbi-spegel-'));
    const figures: string[] = [];
    const node = (name: string): NodeState => c.state.nodes.find((n) => n.name === name)!;
    const sp = (name: string): SpegelNode => c.spegel.node(name);
    const metrics = (name: string): Promise<SpegelMetrics> => c.spegel.metrics(name);

    /** The file that makes an image's layer its own: images with the same seed share their one layer. */
    const layerFiles = (seed: string): { path: string; data: string }[] => [
      { path: 'etc/spegel-test', data: `${seed} ${RUN}\n` },
    ];

    /** Builds a busybox image with a layer of its own (or seed's) and imports it as `enbi import` does. */
    async function enbiImport(on: string, name: string, o: { layerSeed?: string } = {}): Promise<Imported> {
      const tag = `${name}-${RUN}`;
      const ref = `registry.local/${REPOSITORY}:${tag}`;
      const img = buildBusyboxImage({
        ref,
        out: join(tmp, `${name}.tar`),
        cmd: ['/bin/sh', '-c', `uname -m; echo ${name}; exec sleep 3600`],
        files: layerFiles(o.layerSeed ?? name),
      });
      const cc = new ContainerdClient(node(on).containerdSocket);
      try {
        const r = await importArchive(cc, createReadStream(img.out), { images: [ref] });
        const blobs = (
          await reachableBlobs(cc, {
            mediaType: 'application/vnd.oci.image.index.v1+json',
            digest: r.index.digest,
            size: r.index.size,
          })
        ).map((b) => ({ digest: b.desc.digest, size: b.desc.size, mediaType: b.desc.mediaType }));
        return { ref, tag, index: r.index.digest, manifest: r.digest, config: r.config, blobs };
      } finally {
        cc.close();
      }
    }

    /** HEAD through a node's Spegel, as its containerd asks (`?ns=registry.local`): the status. */
    const head = async (via: string, path: string): Promise<number> =>
      (await c.spegel.head(via, REPOSITORY, path)).status;
    const paths = (i: Imported): string[] => [
      `manifests/${i.tag}`,
      ...i.blobs.map((b) => `${/manifest|index/.test(b.mediaType) ? 'manifests' : 'blobs'}/${b.digest}`),
    ];

    /** Waits until the tag and every blob of i resolve through `via`'s Spegel (from a peer): ms it took. */
    async function servedVia(via: string, i: Imported, ms = 30_000): Promise<number> {
      const t = Date.now();
      await until(
        `${i.ref} served through ${via}'s Spegel`,
        async () => {
          for (const p of paths(i)) if ((await head(via, p)) !== 200) throw new Error(`${p}: not served`);
          return true;
        },
        ms,
        300,
      );
      return Date.now() - t;
    }

    const ctrPull = (on: string, ref: string): Promise<number> => c.spegel.ctrPull(on, ref);

    async function digestOn(on: string, ref: string): Promise<string | undefined> {
      const cc = new ContainerdClient(node(on).containerdSocket);
      try {
        return (await listImages(cc, [nameFilter(ref)]))[0]?.target.digest;
      } finally {
        cc.close();
      }
    }

    async function runPod(on: string, name: string, image: string): Promise<{ ms: number; log: string }> {
      const core = c.kc.makeApiClient(CoreV1Api);
      const t = Date.now();
      await core.createNamespacedPod({
        namespace: NS,
        body: {
          metadata: { name },
          spec: {
            nodeName: on,
            restartPolicy: 'Never',
            terminationGracePeriodSeconds: 1,
            containers: [{ name: 'app', image, imagePullPolicy: 'IfNotPresent' }],
          },
        },
      });
      await until(
        `pod ${name} Running on ${on}`,
        async () => {
          const p = await core.readNamespacedPod({ namespace: NS, name });
          const waiting = p.status?.containerStatuses?.[0]?.state?.waiting;
          if (waiting?.reason === 'ErrImagePull' || waiting?.reason === 'ImagePullBackOff')
            throw new Error(`${waiting.reason}: ${waiting.message}`);
          return p.status?.phase === 'Running' ? true : undefined;
        },
        120_000,
        250,
      );
      const ms = Date.now() - t;
      const log = await until(
        `pod ${name}'s output`,
        async () => (await core.readNamespacedPodLog({ namespace: NS, name })) || undefined,
        30_000,
        250,
      );
      return { ms, log };
    }

    before(async () => {
      const t = Date.now();
      c = await spegelCluster();
      figures.push(`cluster with Spegel up (or reused): ${secs(Date.now() - t)}`);
      await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
    });

    after(async () => {
      await c?.kc
        .makeApiClient(CoreV1Api)
        .deleteNamespace({ name: NS })
        .catch(() => undefined);
      await c?.release();
      rmSync(tmp, { recursive: true, force: true });
      for (const f of figures) console.log(`# ${f}`);
    });

    it("runs on each node as its DaemonSet does: ready, connected to both others, hosts.toml naming the node's own mirror with tags resolved", async (t: TestContext) => {
      for (const n of c.state.nodes) {
        const hosts = readFileSync(join(sp(n.name).hostsDir, 'registry.local', 'hosts.toml'), 'utf8');
        assert.match(hosts, /^server = 'https:\/\/registry\.local'/m, `${n.name} hosts.toml`);
        assert.ok(
          hosts.includes(`[host.'http://${n.ip}:${REGISTRY_PORT}']`),
          `${n.name}'s mirror is its own Spegel: ${hosts}`,
        );
        assert.match(hosts, /capabilities = \['pull', 'resolve'\]/, `${n.name} resolves tags through Spegel`);
        const ready = await fetch(`${sp(n.name).registry}/readyz`);
        assert.equal(ready.status, 200, `${n.name} /readyz`);
        const stats = await (await fetch(`http://${n.ip}:9090/debug/web/stats`)).text();
        for (const o of c.spegel.nodes.filter((x) => x.node.name !== n.name))
          assert.ok(stats.includes(o.peerId), `${n.name} connected to ${o.node.name}`);
        const rss = c.spegel.rss(n.name);
        figures.push(`Spegel RSS on ${n.name} (${n.containerd}): ${(rss / 1048576).toFixed(1)} MiB`);
        t.diagnostic(`${n.name} (${n.containerd}): Spegel RSS ${(rss / 1048576).toFixed(1)} MiB`);
        assert.ok(rss < 128 << 20, `${n.name}'s Spegel holds ${rss} bytes`);
      }
    });

    it('an image enbi imports on containerd 2.x (node-2) is pulled by tag through Spegel on node-3 (2.x) and node-1 (1.6); 2.x re-serves its blobs, 1.6 only the tag', async (t: TestContext) => {
      const m0 = { n2: await metrics(N2) };
      const a = await enbiImport(N2, 'a');
      await assertSpegelReady(node(N2).containerdSocket, a.ref, { digest: a.manifest });
      const advertise = await servedVia(N3, a);
      for (const via of [N1, N3]) {
        const r = await c.spegel.head(via, REPOSITORY, `manifests/${a.tag}`);
        assert.deepEqual(
          [r.status, r.digest, r.mediaType],
          [200, a.index, 'application/vnd.oci.image.index.v1+json'],
          `the tag resolves to enbi's index through ${via}`,
        );
      }
      const m2 = await metrics(N2);
      assert.equal(
        m2.advertisedDigests - m0.n2.advertisedDigests,
        a.blobs.length,
        'node-2 advertised every blob of the import (content events)',
      );
      assert.equal(m2.advertisedTags - m0.n2.advertisedTags, 1, 'node-2 advertised the tag');

      const before3 = await metrics(N3);
      const pull3 = await ctrPull(N3, a.ref);
      const after3 = await metrics(N3);
      const after2 = await metrics(N2);
      assert.equal(await digestOn(N3, a.ref), a.index, 'node-3 holds the same index under the tag');
      assert.ok(
        after3.mirrorHits - before3.mirrorHits >= a.blobs.length,
        `node-3's Spegel answered the pull from a peer (${after3.mirrorHits - before3.mirrorHits} hits)`,
      );
      assert.equal(after3.mirrorMisses - before3.mirrorMisses, 0, 'no miss on node-3');
      const total = a.blobs.reduce((s, b) => s + b.size, 0);
      assert.ok(
        after2.registryBytes - m2.registryBytes >= total,
        `node-2 served the image's ${total} bytes (${after2.registryBytes - m2.registryBytes})`,
      );
      // containerd 2.x labels what it pulled and reports each blob created: node-3 now serves it too.
      await until(
        'node-3 advertising what it pulled',
        async () =>
          (await metrics(N3)).advertisedDigests - before3.advertisedDigests === a.blobs.length ? true : undefined,
        10_000,
        200,
      );

      const before1 = await metrics(N1);
      const before23 = (await metrics(N2)).registryBytes + (await metrics(N3)).registryBytes;
      const pull1 = await ctrPull(N1, a.ref);
      await new Promise((r) => setTimeout(r, 2_000)); // a content event would have been handled by now
      const after1 = await metrics(N1);
      assert.equal(await digestOn(N1, a.ref), a.index, 'node-1 (1.6) holds the same index under the tag');
      assert.ok(
        after1.mirrorHits - before1.mirrorHits >= a.blobs.length,
        `node-1's Spegel answered its containerd 1.6 from a peer (${after1.mirrorHits - before1.mirrorHits} hits)`,
      );
      assert.equal(after1.mirrorMisses - before1.mirrorMisses, 0, 'no miss on node-1');
      assert.ok(
        (await metrics(N2)).registryBytes + (await metrics(N3)).registryBytes - before23 >= total,
        'node-2 or node-3 served node-1',
      );
      // containerd 1.6: the image event advertises the tag; there is no content event for the blobs.
      assert.equal(after1.advertisedTags - before1.advertisedTags, 1, 'node-1 advertised the tag it pulled');
      assert.equal(
        after1.advertisedDigests - before1.advertisedDigests,
        0,
        'node-1 (1.6) advertised none of the blobs it pulled',
      );
      figures.push(
        `import on node-2 → served through node-3's Spegel: ${secs(advertise)}; ctr pull by tag on node-3 (2.x): ${secs(pull3)}, on node-1 (1.6): ${secs(pull1)}`,
      );
      t.diagnostic(figures.at(-1)!);
    });

    it('pods with imagePullPolicy IfNotPresent on node-3 (2.x CRI) and node-1 (1.6 CRI) run an image imported on node-2, pulled through Spegel', async (t: TestContext) => {
      const b = await enbiImport(N2, 'b');
      await servedVia(N3, b);
      const before3 = await metrics(N3);
      const p3 = await runPod(N3, 'b-node-3', b.ref);
      const after3 = await metrics(N3);
      assert.match(p3.log, /^x86_64$/m, 'the container ran the host architecture');
      assert.equal(await digestOn(N3, b.ref), b.index);
      assert.ok(
        after3.mirrorHits - before3.mirrorHits >= b.blobs.length,
        `the CRI on node-3 pulled through its Spegel (${after3.mirrorHits - before3.mirrorHits} hits)`,
      );
      assert.equal(after3.mirrorMisses - before3.mirrorMisses, 0);

      const before1 = await metrics(N1);
      const p1 = await runPod(N1, 'b-node-1', b.ref);
      const after1 = await metrics(N1);
      assert.match(p1.log, /^x86_64$/m);
      assert.equal(await digestOn(N1, b.ref), b.index);
      assert.ok(
        after1.mirrorHits - before1.mirrorHits >= b.blobs.length,
        `the CRI on node-1 (1.6) pulled through its Spegel (${after1.mirrorHits - before1.mirrorHits} hits)`,
      );
      figures.push(
        `pod Running (pull through Spegel) on node-3 (2.x): ${secs(p3.ms)}, on node-1 (1.6): ${secs(p1.ms)}`,
      );
      t.diagnostic(figures.at(-1)!);
    });

    it("containerd 1.6 as the source: an image enbi imports on node-1 has its tag advertised but no blob, so no node can pull it until node-1's Spegel restarts", async (t: TestContext) => {
      const before1 = await metrics(N1);
      const cImg = await enbiImport(N1, 'c');
      // The labels Spegel needs are there, exactly as on 2.x.
      await assertSpegelReady(node(N1).containerdSocket, cImg.ref, { digest: cImg.manifest });
      const tag = await until(
        'the tag resolved through node-3',
        async () => ((await head(N3, `manifests/${cImg.tag}`)) === 200 ? true : undefined),
        30_000,
        300,
      );
      assert.ok(tag);
      // Well past Spegel's label retries (under a second): still nothing but the tag.
      await new Promise((r) => setTimeout(r, 3_000));
      const after1 = await metrics(N1);
      assert.equal(after1.advertisedTags - before1.advertisedTags, 1, 'node-1 advertised the tag (its image event)');
      assert.equal(
        after1.advertisedDigests - before1.advertisedDigests,
        0,
        'node-1 advertised no blob: containerd 1.6 sends no content events',
      );
      for (const via of [N2, N3]) {
        for (const p of paths(cImg).slice(1))
          assert.equal(await head(via, p), 404, `${p} through ${via} before node-1's Spegel restarts`);
      }
      assert.equal(await digestOn(N3, cImg.ref), undefined);

      // At start Spegel lists the content store and advertises every labelled blob.
      let ts = Date.now();
      await c.spegel.restart(N1);
      const restart = Date.now() - ts;
      const served = await servedVia(N3, cImg);
      const restarted = await metrics(N1);
      assert.ok(
        restarted.advertisedDigests >= cImg.blobs.length,
        `node-1 advertised its labelled blobs at start (${restarted.advertisedDigests})`,
      );
      ts = Date.now();
      const before3 = await metrics(N3);
      await ctrPull(N3, cImg.ref);
      const pull = Date.now() - ts;
      assert.equal(await digestOn(N3, cImg.ref), cImg.index);
      assert.ok((await metrics(N3)).mirrorHits - before3.mirrorHits >= cImg.blobs.length);
      figures.push(
        `node-1 (1.6) as source: Spegel restart ${secs(restart)}, then served through node-3 after ${secs(served)}, ctr pull ${secs(pull)}`,
      );
      t.diagnostic(figures.at(-1)!);
    });

    it('what Spegel v0.7.4 does not advertise on 2.x either: blobs of a plain `ctr import` (no labels), and a blob that was in the store unlabelled before enbi labelled it', async () => {
      /** `ctr images import` (what the cluster does for its pause image): no distribution-source labels. */
      const plainImport = async (on: string, name: string): Promise<{ tag: string; digest: string }> => {
        const tag = `${name}-${RUN}`;
        const ref = `registry.local/${REPOSITORY}:${tag}`;
        const img = buildBusyboxImage({
          ref,
          out: join(tmp, `${name}.tar`),
          cmd: ['/bin/sh', '-c', 'exec sleep 3600'],
          files: layerFiles(name),
        });
        await importImage(node(on).containerdSocket, img.out, { ctr: node(on).ctr });
        const digest = await digestOn(on, ref);
        assert.ok(digest, `${ref} on ${on}`);
        return { tag, digest };
      };
      const plain = await plainImport(N3, 'plain');
      await until(
        "the plain import's tag resolved through node-2",
        async () => ((await head(N2, `manifests/${plain.tag}`)) === 200 ? true : undefined),
        30_000,
        300,
      );
      await new Promise((r) => setTimeout(r, 3_000));
      assert.equal(await head(N2, `manifests/${plain.digest}`), 404, 'its manifest is not served to node-2');
      // Nor after a restart: at start Spegel advertises every tag but only labelled blobs.
      await c.spegel.restart(N3);
      await new Promise((r) => setTimeout(r, 3_000)); // past Spegel's 2.5 s cache of a lookup that found no peer
      assert.equal(await head(N2, `manifests/${plain.tag}`), 200, "the tag, after node-3's Spegel restarted");
      assert.equal(await head(N2, `manifests/${plain.digest}`), 404, "its manifest, after node-3's Spegel restarted");

      // enbi's import of an image whose layer a plain import put in node-2's store unlabelled: enbi adds the
      // label with an update, which raises no event, so Spegel never hears of that layer.
      const unlabelled = await plainImport(N2, 'unlabelled');
      const isSource = (k: string): boolean => k.startsWith('containerd.io/distribution.source.');
      const cc = new ContainerdClient(node(N2).containerdSocket);
      try {
        const blobs = await reachableBlobs(cc, {
          mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
          digest: unlabelled.digest,
          size: 0,
        });
        assert.deepEqual(
          blobs.filter((b) => Object.keys(b.labels).some(isSource)),
          [],
          'ctr import labels nothing',
        );
        // Spegel reads a new blob's labels for under a second: a label added later, after that, is never read.
        await new Promise((r) => setTimeout(r, 3_000));
        const e = await enbiImport(N2, 'e', { layerSeed: 'unlabelled' });
        const layer = e.blobs.at(-1)!;
        assert.equal(layer.digest, blobs.at(-1)!.desc.digest, 'the same layer');
        assert.ok(Object.keys((await contentInfo(cc, layer.digest)).labels).some(isSource), 'enbi labelled the layer');
        await until(
          "e's manifest served through node-3",
          async () => ((await head(N3, `manifests/${e.manifest}`)) === 200 ? true : undefined),
          30_000,
          300,
        );
        await new Promise((r) => setTimeout(r, 3_000));
        assert.equal(await head(N3, `manifests/${e.index}`), 200, 'the index (new, labelled at commit) is served');
        assert.equal(await head(N3, `blobs/${e.config}`), 200, 'the config (new, labelled at commit) is served');
        assert.equal(await head(N3, `blobs/${layer.digest}`), 404, 'the layer that was there unlabelled is not');
      } finally {
        cc.close();
      }
    });
  },
);
