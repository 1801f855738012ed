// `enbi agent` against real containerds and a real API server: the test cluster's node (Debian's
// containerd 1.6, or whatever ENBI_CONTAINERD gives it), and a private containerd 2.x started from the
// harness's own flavour config (also restarted under the agent). The inventory must equal
// `ctr -n k8s.io images ls` (names, digests, platforms), follow removals through events alone, and stay
// unwritten while nothing changes. deploy/agent.yaml's RBAC and admission policy are exercised with a real
// pod-bound token.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { GROUP, NODE_IMAGES_PLURAL, type NodeImages, VERSION } from '../../src/api/nodeimages.ts';
import { type Agent, startAgent } from '../../src/agent/agent.ts';
import { inventoryToNodeView } from '../../src/cluster/inventory.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { buildBusyboxImage, importImage } from '../cluster/images.ts';
import { run } from '../cluster/proc.ts';
import {
  applyNodeImagesCrd,
  byDigest,
  containerd2Dir,
  ctrImages,
  manyImagesArchive,
  type PrivateContainerd,
  startPrivateContainerd,
} from '../support/containerd.ts';
import { until } from '../support/kube.ts';
import { renderTool } from '../support/render-tools.ts';

const tag = Date.now().toString(36);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readNodeImages(kc: KubeConfig, name: string): Promise<NodeImages | undefined> {
  try {
    return (await kc
      .makeApiClient(CustomObjectsApi)
      .getClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name })) as NodeImages;
  } catch (e) {
    if ((e as { code?: number }).code === 404) return undefined;
    throw e;
  }
}

async function deleteNodeImages(kc: KubeConfig, name: string): Promise<void> {
  await kc
    .makeApiClient(CustomObjectsApi)
    .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name })
    .catch(() => undefined);
}

/** Waits until the published inventory equals `ctr images ls` exactly (names by digest, platforms). */
async function untilMatchesCtr(
  kc: KubeConfig,
  node: string,
  ctr: string,
  socket: string,
  ms = 60_000,
): Promise<NodeImages> {
  let last = '';
  return await until(
    `NodeImages/${node} to equal ctr images ls`,
    async () => {
      const [ni, listed] = await Promise.all([readNodeImages(kc, node), ctrImages(ctr, socket)]);
      const want = byDigest(listed);
      const got = new Map((ni?.status?.images ?? []).map((i) => [i.digest, i.names]));
      const wantPlatforms = new Map(listed.map((i) => [i.digest, i.platforms]));
      const gotPlatforms = new Map((ni?.status?.images ?? []).map((i) => [i.digest, i.platforms]));
      last = `want ${want.size} digests / ${listed.length} names, got ${got.size} / ${ni?.status?.nameCount}`;
      try {
        assert.deepEqual(got, want);
        assert.deepEqual(gotPlatforms, wantPlatforms);
        assert.equal(ni?.status?.imageCount, want.size);
        assert.equal(ni?.status?.nameCount, listed.length);
      } catch {
        throw new Error(last);
      }
      return ni;
    },
    ms,
    250,
  );
}

/**
 * Images a test run added, removed at the end (a node may outlive the run): every name of their digests,
 * the CRI's sha256:<config> record included, which would otherwise stay behind.
 */
async function removeImages(ctr: string, socket: string, prefix: string, also: Iterable<string> = []): Promise<void> {
  const all = await ctrImages(ctr, socket);
  const digests = new Set([...also, ...all.filter((i) => i.name.startsWith(prefix)).map((i) => i.digest)]);
  const names = all.filter((i) => digests.has(i.digest)).map((i) => i.name);
  for (let i = 0; i < names.length; i += 50)
    await run(ctr, ['--address', socket, '-n', 'k8s.io', 'images', 'rm', ...names.slice(i, i + 50)]).catch(
      () => undefined,
    );
}

describe("enbi agent on the test cluster's node", { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let tmp: string;
  let agent: Agent | undefined;
  const prefix = `enbi.test/agent-${tag}`;
  const ours = new Set<string>();

  before(async () => {
    c = await useCluster('full');
    await applyNodeImagesCrd(c.kc);
    tmp = mkdtempSync(join(tmpdir(), 'enbi-agent-test-'));
  });

  after(async () => {
    await agent?.stop();
    if (c) {
      const n = c.nodes[0]!;
      await removeImages(n.ctr, n.containerdSocket, prefix, ours);
      await deleteNodeImages(c.kc, n.name);
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it("publishes more than 50 images exactly as ctr lists them, platforms included, beyond Node.status.images' cap", async () => {
    const n = c.nodes[0]!;
    const t0 = Date.now();
    // 55 small images that differ by their config, in one archive and one import (ctr imports ~10 images
    // a second here, unpacking excluded), and two busybox ones: one with a file of its own, one arm64.
    manyImagesArchive(
      Array.from({ length: 55 }, (_, i) => `${prefix}-${i}:1`),
      join(tmp, 'many.tar'),
    );
    await run(n.ctr, [
      '--address',
      n.containerdSocket,
      '-n',
      'k8s.io',
      'images',
      'import',
      '--no-unpack',
      join(tmp, 'many.tar'),
    ]);
    const bb = buildBusyboxImage({
      ref: `${prefix}-busybox:1`,
      out: join(tmp, 'bb.tar'),
      cmd: ['/bin/sh', '-c', 'cat /etc/motd'],
      files: [{ path: 'etc/motd', data: tag }],
    });
    await importImage(n.containerdSocket, bb.out, { ctr: n.ctr });
    const arm = buildBusyboxImage({
      ref: `${prefix}-arm:1`,
      out: join(tmp, 'arm.tar'),
      architecture: 'arm64',
      files: [{ path: 'etc/arch', data: 'arm64' }],
    });
    await importImage(n.containerdSocket, arm.out, { ctr: n.ctr, platform: 'linux/arm64' });
    const importMs = Date.now() - t0;
    for (const i of await ctrImages(n.ctr, n.containerdSocket)) if (i.name.startsWith(prefix)) ours.add(i.digest);

    await deleteNodeImages(c.kc, n.name);
    agent = startAgent({ node: n.name, socket: n.containerdSocket, api: c.kc, resyncMs: 3_600_000, debounceMs: 100 });
    await agent.ready;
    const ni = await untilMatchesCtr(c.kc, n.name, n.ctr, n.containerdSocket);
    const st = ni.status!;
    assert.equal(st.source, 'containerd');
    assert.equal(st.namespace, 'k8s.io');
    assert.equal(st.truncated, false);
    assert.ok(st.imageCount > 50, `imageCount ${st.imageCount}`);
    assert.match(st.containerdVersion ?? '', /^\d+\.\d+/);
    const armEntry = st.images.find((i) => i.names.includes(`${prefix}-arm:1`));
    assert.deepEqual(armEntry?.platforms, ['linux/arm64']);
    assert.ok(
      st.images
        .filter((i) => i.names.some((x) => x.startsWith(prefix) && !x.includes('-arm')))
        .every((i) => i.platforms.join() === 'linux/amd64'),
    );
    // The CRI's image id (the config digest) is one of the names, as ctr lists it.
    assert.ok(
      st.images.some((i) => i.names.includes(bb.configDigest)),
      'the config digest is listed as a name',
    );
    // Owned by its Node: deleting the Node deletes the inventory.
    const node = await c.kc.makeApiClient(CoreV1Api).readNode({ name: n.name });
    assert.equal(ni.metadata.ownerReferences?.[0]?.uid, node.metadata?.uid);
    // Created and written (its status too) under the agent's own field manager name, never a library default.
    const managers = new Set(
      ((ni.metadata as { managedFields?: { manager?: string }[] }).managedFields ?? []).map((f) => f.manager),
    );
    assert.deepEqual([...managers], ['enbi-agent']);
    // What the controller will read: the inventory, complete, for the node's platform (arm64 left out).
    const view = inventoryToNodeView(ni, { platform: 'linux/amd64' });
    assert.equal(view?.imagesComplete, true);
    assert.ok(view?.images.has(`${prefix}-0:1`));
    assert.ok(!view?.images.has(`${prefix}-arm:1`));
    // Node.status.images is capped at 50 (kubelet's nodeStatusMaxImages): the reason for the agent.
    assert.ok((node.status?.images?.length ?? 0) <= 50);
    console.log(
      `imported 57 images in ${importMs} ms; inventory: ${st.imageCount} images, ${st.nameCount} names, agent stats ${JSON.stringify(agent.stats())}`,
    );
  });

  it('follows a removal through the event stream alone (no resync) within a second or two', async () => {
    const n = c.nodes[0]!;
    const before = agent!.stats();
    const name = `${prefix}-7:1`;
    const t0 = Date.now();
    await run(n.ctr, ['--address', n.containerdSocket, '-n', 'k8s.io', 'images', 'rm', name]);
    const tRemoved = Date.now();
    await until(
      `${name} gone from NodeImages`,
      async () => {
        const ni = await readNodeImages(c.kc, n.name);
        return ni?.status?.images.some((i) => i.names.includes(name)) === false ? true : undefined;
      },
      10_000,
      20,
    );
    const seenMs = Date.now() - tRemoved;
    const after = agent!.stats();
    assert.ok(after.events > before.events, 'an event was received');
    assert.equal(after.subscriptions, before.subscriptions, 'the stream was not reopened');
    assert.ok(seenMs < 3_000, `seen after ${seenMs} ms`);
    await untilMatchesCtr(c.kc, n.name, n.ctr, n.containerdSocket, 10_000);
    console.log(
      `removal: ctr images rm took ${tRemoved - t0} ms, then visible in the API after ${seenMs} ms; ${after.writes - before.writes} write(s), ${after.lists - before.lists} list(s)`,
    );
  });

  it('writes nothing while nothing changes', async () => {
    const n = c.nodes[0]!;
    await sleep(500); // let a write in flight settle
    const rv = (await readNodeImages(c.kc, n.name))?.metadata.resourceVersion;
    const writes = agent!.stats().writes;
    await sleep(5_000);
    assert.equal((await readNodeImages(c.kc, n.name))?.metadata.resourceVersion, rv);
    assert.equal(agent!.stats().writes, writes);
  });

  it('a burst of changes is coalesced into one write or a few', async () => {
    const n = c.nodes[0]!;
    const before = agent!.stats();
    // 10 names removed by one ctr call: 10 delete events within milliseconds.
    const names = Array.from({ length: 10 }, (_, i) => `${prefix}-${20 + i}:1`);
    await run(n.ctr, ['--address', n.containerdSocket, '-n', 'k8s.io', 'images', 'rm', ...names]);
    const ni = await untilMatchesCtr(c.kc, n.name, n.ctr, n.containerdSocket, 10_000);
    assert.ok(names.every((nm) => !ni.status!.images.some((i) => i.names.includes(nm))));
    const after = agent!.stats();
    console.log(
      `burst: ${after.events - before.events} events → ${after.writes - before.writes} writes, ${after.lists - before.lists} lists`,
    );
    assert.ok(after.events - before.events >= 10, 'every delete was an event');
    assert.ok(after.writes - before.writes <= 3, 'one write, or a few');
  });
});

describe('enbi agent on containerd 2.x, across a containerd restart', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let cd: PrivateContainerd | undefined;
  let agent: Agent | undefined;
  let dir: string;
  const node = `enbi-agent-c2-${tag}`;
  const prefix = `enbi.test/agent2-${tag}`;
  const bin = clusterSkipReason() ? undefined : containerd2Dir();

  before(async () => {
    c = await useCluster('control-plane');
    await applyNodeImagesCrd(c.kc);
    dir = mkdtempSync('/tmp/enbi-c2-');
    if (bin === undefined) return;
    cd = await startPrivateContainerd(`containerd-2:${bin}`, dir);
  });

  after(async () => {
    await agent?.stop();
    await cd?.stop();
    if (c) await deleteNodeImages(c.kc, node);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    'publishes what containerd 2 holds, and keeps following it after containerd restarts',
    {
      skip:
        bin === undefined ? 'containerd 2 binaries unavailable (test/cluster/build-containerd2.sh needs Go)' : false,
    },
    async () => {
      const d = cd!;
      const imgs = Array.from({ length: 4 }, (_, i) =>
        buildBusyboxImage({
          ref: `${prefix}-${i}:1`,
          out: join(dir, `i${i}.tar`),
          cmd: ['/bin/sh', '-c', `echo ${i}`],
        }),
      );
      for (const b of imgs.slice(0, 2)) await importImage(d.socket, b.out, { ctr: d.ctr });
      // Layers discarded once unpacked (as CRI's discard_unpacked_layers does): still runnable, still listed.
      await run(d.ctr, [
        '--address',
        d.socket,
        '-n',
        'k8s.io',
        'images',
        'import',
        '--local',
        '--discard-unpacked-layers',
        imgs[2]!.out,
      ]);
      agent = startAgent({
        node,
        socket: d.socket,
        api: c.kc,
        resyncMs: 3_600_000,
        backoffMinMs: 100,
        backoffMaxMs: 1_000,
      });
      await agent.ready;
      const ni = await untilMatchesCtr(c.kc, node, d.ctr, d.socket);
      assert.match(ni.status?.containerdVersion ?? '', /^v?2\./);
      assert.ok(
        ni.status!.images.some((i) => i.names.includes(`${prefix}-0:1`) && i.platforms.join() === 'linux/amd64'),
      );
      assert.ok(
        ni.status!.images.some((i) => i.names.includes(`${prefix}-2:1`) && i.platforms.join() === 'linux/amd64'),
        'platform of an image whose layers were discarded',
      );

      // Removal through events on 2.x.
      await run(d.ctr, ['--address', d.socket, '-n', 'k8s.io', 'images', 'rm', `${prefix}-1:1`]);
      await untilMatchesCtr(c.kc, node, d.ctr, d.socket, 10_000);

      // containerd goes away and comes back: the agent subscribes again and sees what changed meanwhile.
      const subs = agent.stats().subscriptions;
      await d.stop();
      await sleep(1_500);
      await d.restart(); // (stop is a no-op now) starts it again
      await importImage(d.socket, imgs[3]!.out, { ctr: d.ctr });
      await untilMatchesCtr(c.kc, node, d.ctr, d.socket, 30_000);
      assert.ok(agent.stats().subscriptions > subs, 'subscribed again');
      // And events flow again on the new stream.
      await run(d.ctr, ['--address', d.socket, '-n', 'k8s.io', 'images', 'rm', `${prefix}-0:1`]);
      const after = await untilMatchesCtr(c.kc, node, d.ctr, d.socket, 10_000);
      assert.ok(!after.status!.images.some((i) => i.names.includes(`${prefix}-0:1`)));
      assert.ok(after.status!.images.some((i) => i.names.includes(`${prefix}-3:1`)));
    },
  );
});

describe(
  "deploy/agent.yaml through a kustomize namePrefix: an agent may write only its own node's NodeImages",
  { skip: clusterSkipReason() },
  () => {
    let c: ClusterInfo;
    let agent: Agent | undefined;
    let tmp: string;
    const ns = `agent-rbac-${tag}`;
    // As a user's overlay renames everything (kustomize namePrefix): the admission policy must still hold.
    const prefix = `t${tag}-`;
    const image = `enbi.test/agent-sleeper:${tag}`;
    const created: KubernetesObject[] = [];

    before(async () => {
      c = await useCluster('full');
      await applyNodeImagesCrd(c.kc);
      tmp = mkdtempSync(join(tmpdir(), 'enbi-agent-rbac-'));
    });

    after(async () => {
      await agent?.stop();
      if (!c) return;
      const api = KubernetesObjectApi.makeApiClient(c.kc);
      for (const o of created.reverse()) await api.delete(o).catch(() => undefined);
      await c.kc
        .makeApiClient(CoreV1Api)
        .deleteNamespace({ name: ns })
        .catch(() => undefined);
      const n = c.nodes[0]!;
      await removeImages(n.ctr, n.containerdSocket, image);
      await deleteNodeImages(c.kc, n.name);
      await deleteNodeImages(c.kc, `not-${n.name}`);
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    it('every object is accepted; the agent publishes with its pod-bound token and is refused other nodes', async () => {
      const n = c.nodes[0]!;
      const core = c.kc.makeApiClient(CoreV1Api);
      const api = KubernetesObjectApi.makeApiClient(c.kc);
      await core.createNamespace({ body: { metadata: { name: ns } } });
      const built = buildBusyboxImage({
        ref: image,
        out: join(tmp, 'sleeper.tar'),
        cmd: ['/bin/sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'],
      });
      await importImage(n.containerdSocket, built.out, { ctr: n.ctr });
      // The objects as shipped, in a namespace of the test's own. The DaemonSet runs a sleeper instead of
      // enbi's image (not available here) on this node only, with the node's containerd directory mounted:
      // its pod is what the agent's token is bound to.
      const overlay = join(tmp, 'overlay');
      mkdirSync(overlay);
      writeFileSync(join(overlay, 'agent.yaml'), readFileSync(new URL('../../deploy/agent.yaml', import.meta.url)));
      writeFileSync(
        join(overlay, 'kustomization.yaml'),
        `namespace: ${ns}\nnamePrefix: ${prefix}\nresources: [agent.yaml]\n`,
      );
      const rendered = await run(renderTool('kustomize'), ['build', overlay]);
      const docs = parseAllDocuments(rendered).map((d) => d.toJS() as KubernetesObject & Record<string, any>);
      assert.ok(
        docs.some((o) => o.kind === 'ServiceAccount' && o.metadata?.name === `${prefix}enbi-agent`),
        'kustomize renamed the ServiceAccount',
      );
      for (const o of docs) {
        // kustomize does not know the admission policy and its binding are cluster-scoped.
        if (o.kind === 'ValidatingAdmissionPolicy' || o.kind === 'ValidatingAdmissionPolicyBinding')
          delete o.metadata!.namespace;
        if (o.kind === 'DaemonSet') {
          const pod = o.spec.template.spec;
          pod.nodeSelector = { 'kubernetes.io/hostname': n.name };
          // The agent's container as the sleeper.
          for (const container of pod.containers) {
            container.image = image;
            container.imagePullPolicy = 'Never';
            container.command = ['/bin/sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'];
          }
          pod.volumes[0].hostPath.path = n.containerdSocket.replace(/\/[^/]+$/, '');
          pod.containers[0].volumeMounts[0].mountPath = pod.volumes[0].hostPath.path;
        }
        await api.create(o);
        created.push(o);
      }
      const pod = await until(
        "the agent DaemonSet's pod to run",
        async () => {
          const pods = await core.listNamespacedPod({ namespace: ns });
          const p = pods.items.find((x) => x.status?.phase === 'Running');
          if (!p)
            throw new Error(
              JSON.stringify(pods.items.map((x) => x.status?.containerStatuses?.[0]?.state ?? x.status?.phase)),
            );
          return p;
        },
        90_000,
        500,
      );
      assert.equal(pod.spec?.nodeName, n.name);

      // A token bound to that pod, as kubelet gives the pod itself: it carries the node's name.
      const tr = await core.createNamespacedServiceAccountToken({
        name: `${prefix}enbi-agent`,
        namespace: ns,
        body: {
          spec: {
            audiences: [],
            expirationSeconds: 3600,
            boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata!.name!, uid: pod.metadata!.uid! },
          },
        },
      });
      const cluster = c.kc.getCurrentCluster()!;
      const sa = new KubeConfig();
      sa.loadFromOptions({
        clusters: [cluster],
        users: [{ name: 'agent', token: tr.status!.token }],
        contexts: [{ name: 'sa', cluster: cluster.name, user: 'agent' }],
        currentContext: 'sa',
      });

      await deleteNodeImages(c.kc, n.name);
      const logs: string[] = [];
      agent = startAgent({
        node: n.name,
        socket: n.containerdSocket,
        api: sa,
        resyncMs: 3_600_000,
        log: (m) => logs.push(m),
      });
      await Promise.race([
        agent.ready,
        sleep(30_000).then(() => assert.fail(`no publish in 30 s: ${logs.join(' | ')}`)),
      ]);
      const ni = await readNodeImages(c.kc, n.name);
      assert.ok((ni?.status?.imageCount ?? 0) > 0);
      assert.equal(ni?.metadata.ownerReferences?.[0]?.name, n.name, 'it could read its Node');

      const custom = sa.makeApiClient(CustomObjectsApi);
      const other = { apiVersion: `${GROUP}/${VERSION}`, kind: 'NodeImages', metadata: { name: `not-${n.name}` } };
      await assert.rejects(
        custom.createClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, body: other }),
        (e: { code?: number; body?: string }) => {
          assert.equal(e.code, 403);
          assert.match(String(e.body), /only the NodeImages of its own node/);
          return true;
        },
      );
      await assert.rejects(
        custom.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name: n.name }),
        (e: { code?: number }) => e.code === 403,
      );
      // Neither may it touch anything else (RBAC): Secrets, or other nodes' status.
      await assert.rejects(
        sa.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: ns }),
        (e: { code?: number }) => e.code === 403,
      );
    });
  },
);
