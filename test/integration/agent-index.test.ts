// One index per tag on every node (issue 11), without Spegel: two real containerds (Debian's 1.6 and 2.x),
// each with its own enbi agent following the NixBuilds of a namespace on the real API server. One node
// imports the arm64 build of a tag, the other the amd64 build of the same tag (what spegel mode does for a
// workload on a two-architecture cluster). Once the NixBuilds record their manifests, both agents move the
// tag to the same index (same bytes, same digest) listing both platforms; each node runs its own platform
// from it; a record enbi did not write is never touched; a deleted build drops no platform.
import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, CustomObjectsApi, setHeaderOptions } from '@kubernetes/client-node';
import { type Agent, startAgent } from '../../src/agent/agent.ts';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { NODE_IMAGES_PLURAL, type NodeImages } from '../../src/api/nodeimages.ts';
import { ContainerdClient } from '../../src/containerd/client.ts';
import { listImages, nameFilter } from '../../src/containerd/images.ts';
import { importArchive } from '../../src/containerd/import/importer.ts';
import { readBlob } from '../../src/containerd/platform.ts';
import { parseIndex } from '../../src/image/platform-index.ts';
import { foreignBusybox, requireEmulation } from '../cluster/emulation.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { buildBusyboxImage } from '../cluster/images.ts';
import { run } from '../cluster/proc.ts';
import {
  applyNodeImagesCrd,
  containerd2Dir,
  type PrivateContainerd,
  startPrivateContainerd,
} from '../support/containerd.ts';
import { applyNixBuildCrd, until } from '../support/kube.ts';
import { assertSpegelReady } from '../support/spegel-check.ts';

const tag = randomBytes(3).toString('hex');
const NS = `enbi-index-${tag}`;
const TAG = `registry.local/idx-${tag}:v1`;

describe(
  'agents converge every node to one index per tag (containerd 1.6 and 2.x)',
  { skip: clusterSkipReason(), timeout: 300_000 },
  () => {
    let c: ClusterInfo;
    let dir: string;
    const nodes: { name: string; cd: PrivateContainerd; client: ContainerdClient; agent?: Agent; platform: string }[] =
      [];
    let custom: CustomObjectsApi;

    before(async () => {
      await requireEmulation('aarch64-linux'); // the arm64 node's image runs through QEMU
      c = await useCluster('control-plane');
      await applyNodeImagesCrd(c.kc);
      await applyNixBuildCrd(c.kc);
      custom = c.kc.makeApiClient(CustomObjectsApi);
      await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
      dir = mkdtempSync('/tmp/enbi-idx-');
      const c2 = containerd2Dir();
      assert.ok(c2, 'containerd 2 binaries (test/cluster/build-containerd2.sh)');
      for (const [i, [spec, platform]] of (
        [
          ['debian-1.6', 'linux/arm64'],
          [`containerd-2:${c2}`, 'linux/amd64'],
        ] as const
      ).entries()) {
        const cd = await startPrivateContainerd(spec, join(dir, `n${i}`));
        nodes.push({ name: `enbi-idx-${tag}-${i}`, cd, client: new ContainerdClient(cd.socket), platform });
      }
    });

    after(async () => {
      for (const n of nodes) {
        await n.agent?.stop();
        n.client.close();
        await n.cd.stop();
        await custom
          ?.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name: n.name })
          .catch(() => undefined);
      }
      await c?.kc
        .makeApiClient(CoreV1Api)
        .deleteNamespace({ name: NS })
        .catch(() => undefined);
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const record = async (n: (typeof nodes)[number], name: string) =>
      (await listImages(n.client, [nameFilter(name)]))[0];
    const entriesOf = async (n: (typeof nodes)[number], name: string) => {
      const r = await record(n, name);
      return r === undefined
        ? undefined
        : { digest: r.target.digest, parsed: parseIndex((await readBlob(n.client, r.target.digest))!) };
    };

    it('a tag built for arm64 on one node and amd64 on the other ends as the same two-platform index on both', async (t: TestContext) => {
      const imported: Record<string, { digest: string; size: number; mediaType: string; platform: string }> = {};
      for (const n of nodes) {
        const arm = n.platform === 'linux/arm64';
        const img = buildBusyboxImage({
          ref: 'enbi.test/idx:src',
          out: join(dir, `${n.name}.tar`),
          cmd: ['/bin/sh', '-c', 'uname -m'],
          ...(arm ? { busybox: foreignBusybox('arm64'), architecture: 'arm64' } : {}),
        });
        const r = await importArchive(n.client, createReadStream(img.out), {
          images: [TAG],
          platform: n.platform,
          owner: `nb-${n.platform.split('/')[1]}`,
        });
        assert.deepEqual(r.index.platforms, [n.platform], 'each import alone: its own platform only');
        imported[n.platform] = { digest: r.digest, size: r.manifestSize, mediaType: r.mediaType, platform: r.platform };
      }
      // A record of the same kind enbi did not write, named by a NixBuild too: never touched.
      const foreign = `registry.local/idx-foreign-${tag}:v1`;
      const theirs = buildBusyboxImage({ ref: foreign, out: join(dir, 'foreign.tar'), cmd: ['/bin/true'] });
      await run(nodes[1]!.cd.ctr, ['--address', nodes[1]!.cd.socket, '-n', 'k8s.io', 'images', 'import', theirs.out]);
      await new Promise((r) => setTimeout(r, 1_000)); // the CRI labels what ctr imported into k8s.io, just after
      const foreignBefore = await record(nodes[1]!, foreign);
      assert.ok(foreignBefore);

      for (const n of nodes) {
        n.agent = startAgent({
          node: n.name,
          socket: n.cd.socket,
          api: c.kc,
          buildsNamespace: NS,
          resyncMs: 3_600_000,
          log: (m) => t.diagnostic(`${n.name}: ${m}`),
        });
        await n.agent.ready;
      }
      // The NixBuilds, as the controller leaves them once their imports are done.
      const t0 = Date.now();
      for (const p of ['linux/arm64', 'linux/amd64']) {
        const name = `nb-${p.split('/')[1]}`;
        const nb: NixBuild = {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: 'NixBuild',
          metadata: { name, namespace: NS },
          spec: {
            flakeUrl: 'git+https://example/app?rev=' + 'a'.repeat(40),
            packageName: 'image',
            system: p === 'linux/arm64' ? 'aarch64-linux' : 'x86_64-linux',
            images: [TAG, foreign],
          },
        };
        await custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NS,
          plural: PLURAL,
          body: nb,
        });
        const manifest = imported[p]!;
        await custom.patchNamespacedCustomObjectStatus(
          {
            group: GROUP,
            version: VERSION,
            namespace: NS,
            plural: PLURAL,
            name,
            body: {
              status: {
                phase: 'Succeeded',
                imageDigest: manifest.digest,
                manifest,
                completionTime: new Date().toISOString(),
              },
            },
          },
          setHeaderOptions('Content-Type', 'application/merge-patch+json'),
        );
      }
      const converged = await until(
        'both nodes to list both platforms under the tag',
        async () => {
          const got = await Promise.all(nodes.map((n) => entriesOf(n, TAG)));
          const platforms = got.map((g) => g?.parsed?.entries.map((e) => e.platform).join(','));
          return platforms.every((p) => p === 'linux/amd64,linux/arm64') ? got : undefined;
        },
        30_000,
        100,
      );
      t.diagnostic(`converged in ${Date.now() - t0} ms`);
      assert.equal(converged[0]!.digest, converged[1]!.digest, 'the same index, byte for byte, on both nodes');
      assert.deepEqual(Object.fromEntries(converged[0]!.parsed!.entries.map((e) => [e.platform, e.digest])), {
        'linux/amd64': imported['linux/amd64']!.digest,
        'linux/arm64': imported['linux/arm64']!.digest,
      });
      for (const n of nodes)
        await assertSpegelReady(n.cd.socket, TAG, {
          digest: imported[n.platform]!.digest,
          platforms: ['linux/amd64', 'linux/arm64'],
        });
      assert.ok(nodes.every((n) => n.agent!.stats().indexRewrites >= 1));

      // Each node runs its own build from the index: the amd64 node natively, the arm64 one when asked for arm64.
      const ctr = (n: (typeof nodes)[number], ...a: string[]) =>
        run(n.cd.ctr, ['--address', n.cd.socket, '-n', 'k8s.io', ...a]);
      assert.equal(await ctr(nodes[1]!, 'run', '--rm', TAG, `idx-${tag}-a`), 'x86_64\n');
      assert.equal(await ctr(nodes[0]!, 'run', '--rm', '--platform', 'linux/arm64', TAG, `idx-${tag}-b`), 'aarch64\n');

      // The inventory reports what each node holds, per platform: not what the index lists.
      const inv = async (n: (typeof nodes)[number]) => {
        const o = (await custom.getClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: NODE_IMAGES_PLURAL,
          name: n.name,
        })) as NodeImages;
        return o.status?.images.find((i) => i.names.includes(TAG))?.platforms;
      };
      await until(
        'the inventories to show the new index',
        async () =>
          ((await inv(nodes[0]!))?.join() === 'linux/arm64' && (await inv(nodes[1]!))?.join() === 'linux/amd64') ||
          undefined,
        10_000,
      );

      assert.deepEqual(await record(nodes[1]!, foreign), foreignBefore, 'a record enbi did not write stays as it was');

      // A build deleted (garbage-collected): its platform stays in the index, which pods elsewhere may use.
      await custom.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: PLURAL,
        name: 'nb-amd64',
      });
      await new Promise((r) => setTimeout(r, 1_500));
      for (const n of nodes) assert.equal((await entriesOf(n, TAG))?.digest, converged[0]!.digest);

      // The last build naming the tag deleted: its records leave the node whose containers do not use it; the
      // amd64 node keeps it while a container made from it exists (kubelet keeps exited containers too).
      await ctr(nodes[1]!, 'run', TAG, `idx-${tag}-kept`);
      await custom.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: PLURAL,
        name: 'nb-arm64',
      });
      const t1 = Date.now();
      await until(
        'the arm64 node to drop the tag and its digest records',
        async () => {
          const left = (await listImages(nodes[0]!.client, ['name~="^registry.local/idx-"'])).map((r) => r.name);
          return left.length === 0 ? true : undefined;
        },
        20_000,
        100,
      );
      t.diagnostic(`records removed ${Date.now() - t1} ms after the last NixBuild went`);
      assert.equal(
        nodes[0]!.agent!.stats().imagesRemoved >= 2,
        true,
        'the tag and registry.local/idx-…@<arm64 manifest>',
      );
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal((await entriesOf(nodes[1]!, TAG))?.digest, converged[0]!.digest, 'kept where a container uses it');
      assert.deepEqual(
        await record(nodes[1]!, foreign),
        foreignBefore,
        'and a record enbi did not write is never removed',
      );
    });
  },
);
