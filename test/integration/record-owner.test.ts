// Ownership of a containerd record is a node-local fact (issue 19): the label enbi writes on the record
// (enbi.hrzn.ee/nixbuild) and on its index blob (enbi.hrzn.ee/index), never the `ee.hrzn.enbi.index`
// annotation inside an index, which anyone can put in an image. Against a private containerd 1.6 (Debian's)
// and 2.x: another tool (`ctr images import`) brings in an image whose index is byte for byte the kind enbi
// writes, annotation included, under a name; `enbi import` under that name refuses before reading its
// stream and leaves it as it was, byte for byte; the node agent, following NixBuilds that name the tag on
// the real API server, neither converges nor (once they are deleted) collects it. The one record without
// the label the agent takes on: a tag pointing at exactly enbi's index of manifests those NixBuilds
// recorded (what the CRI leaves after a pull through Spegel), which it labels, converges and collects.
// Records another tool wrote at the very manifest enbi imports (a tag, `<repository>@<manifest>`) are left
// as they are by `enbi import` (never relabelled) and by the agent's collection of enbi's tag.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { CoreV1Api, CustomObjectsApi, setHeaderOptions } from '@kubernetes/client-node';
import { type Agent, startAgent } from '../../src/agent/agent.ts';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { NODE_IMAGES_PLURAL } from '../../src/api/nodeimages.ts';
import { ContainerdClient } from '../../src/containerd/client.ts';
import { type ContainerdImage, listImages, nameFilter } from '../../src/containerd/images.ts';
import { contentInfo } from '../../src/containerd/import/content.ts';
import { hasBlob, readBlob } from '../../src/containerd/platform.ts';
import { OCI_INDEX, parseIndex, platformIndex, type PlatformManifest } from '../../src/image/platform-index.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { hostBin } from '../cluster/paths.ts';
import { run } from '../cluster/proc.ts';
import { tar } from '../cluster/tar.ts';
import {
  applyNodeImagesCrd,
  containerd2Dir,
  type PrivateContainerd,
  startPrivateContainerd,
} from '../support/containerd.ts';
import { applyNixBuildCrd, until } from '../support/kube.ts';

const REPO = new URL('../..', import.meta.url).pathname;
const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** A busybox layer with a message: what `ctr run` of the image prints. */
function layerOf(message: string): Buffer {
  return tar([
    { type: 'dir', path: 'bin' },
    { type: 'file', path: 'bin/busybox', data: readFileSync(hostBin('busybox')), mode: 0o755 },
    { type: 'symlink', path: 'bin/cat', target: 'busybox' },
    { type: 'file', path: 'hello.txt', data: Buffer.from(`${message}\n`) },
  ]);
}

/**
 * An OCI archive as another tool writes it, for `ctr images import`: index.json names `name` at an index
 * blob that is exactly what enbi writes (platformIndex: sorted entries, the `ee.hrzn.enbi.index: v1`
 * annotation) over one amd64 manifest of its own.
 */
function indexArchive(
  out: string,
  name: string,
  message: string,
): { manifest: PlatformManifest; index: { digest: string; bytes: Buffer } } {
  const blobs = new Map<string, Buffer>();
  const put = (data: Buffer) => {
    const digest = `sha256:${sha256(data)}`;
    blobs.set(digest, data);
    return { digest, size: data.length };
  };
  const layerBytes = layerOf(message);
  const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar', ...put(layerBytes) };
  const config = {
    mediaType: 'application/vnd.oci.image.config.v1+json',
    ...put(
      Buffer.from(
        JSON.stringify({
          architecture: 'amd64',
          os: 'linux',
          config: { Cmd: ['/bin/cat', '/hello.txt'] },
          rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(layerBytes)}`] },
        }),
      ),
    ),
  };
  const m = put(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] })));
  const manifest: PlatformManifest = {
    digest: m.digest,
    size: m.size,
    mediaType: OCI_MANIFEST,
    platform: 'linux/amd64',
  };
  const index = platformIndex([manifest]);
  put(index.bytes);
  const top = {
    schemaVersion: 2,
    manifests: [
      {
        mediaType: OCI_INDEX,
        digest: index.digest,
        size: index.size,
        annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': name.split(':').pop() },
      },
    ],
  };
  writeFileSync(
    out,
    tar([
      { type: 'file', path: 'oci-layout', data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
      { type: 'dir', path: 'blobs' },
      { type: 'dir', path: 'blobs/sha256' },
      ...[...blobs].map(([d, data]) => ({ type: 'file' as const, path: `blobs/sha256/${d.slice(7)}`, data })),
      { type: 'file', path: 'index.json', data: Buffer.from(JSON.stringify(top)) },
    ]),
  );
  return { manifest, index: { digest: index.digest, bytes: index.bytes } };
}

/** A docker-archive of one amd64 image, as a build's streamLayeredImage gives enbi import. */
function dockerArchive(out: string, message: string, repoTags: string[] = []): { config: string } {
  const layer = layerOf(message);
  const diffId = `sha256:${sha256(layer)}`;
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/cat', '/hello.txt'] },
      rootfs: { type: 'layers', diff_ids: [diffId] },
    }),
  );
  writeFileSync(
    out,
    tar([
      { type: 'dir', path: diffId.slice(7) },
      { type: 'file', path: `${diffId.slice(7)}/layer.tar`, data: layer },
      { type: 'file', path: `${sha256(config)}.json`, data: config },
      {
        type: 'file',
        path: 'manifest.json',
        data: Buffer.from(
          JSON.stringify([
            { Config: `${sha256(config)}.json`, RepoTags: repoTags, Layers: [`${diffId.slice(7)}/layer.tar`] },
          ]),
        ),
      },
    ]),
  );
  return { config: `sha256:${sha256(config)}` };
}

/** `enbi import` as the build Job runs it. */
async function enbiImport(socket: string, dir: string, args: string[]): Promise<{ code: number; stderr: string }> {
  const p = spawn(
    join(REPO, 'node_modules/.bin/node'),
    [
      join(REPO, 'src/cli/main.ts'),
      'import',
      '--socket',
      socket,
      '--termination-log',
      join(dir, `term-${randomBytes(3).toString('hex')}`),
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  p.stdout.resume();
  const code = await new Promise<number>((r) => p.on('exit', (c) => r(c ?? 1)));
  return { code, stderr };
}

interface RawRecord {
  name: string;
  target: { mediaType: string; digest: string; size: number };
  labels: Record<string, string>;
  createdAt: unknown;
  updatedAt: unknown;
}

const flavors: { name: string; spec: () => string | undefined }[] = [
  { name: 'containerd 1.6 (Debian)', spec: () => 'debian-1.6' },
  {
    name: 'containerd 2.x',
    spec: () => {
      const d = containerd2Dir();
      return d ? `containerd-2:${d}` : undefined;
    },
  },
];

for (const [i, flavor] of flavors.entries()) {
  const spec = clusterSkipReason() ? undefined : flavor.spec();
  describe(
    `a record without enbi's label is never enbi's, whatever its index says (${flavor.name})`,
    {
      skip:
        clusterSkipReason() ||
        (spec === undefined ? 'containerd 2 binaries unavailable (test/cluster/build-containerd2.sh needs Go)' : false),
      timeout: 300_000,
    },
    () => {
      const tag = `${randomBytes(3).toString('hex')}-${i}`;
      const NS = `enbi-owner-${tag}`;
      const NODE = `enbi-owner-${tag}`;
      const FORGED = `registry.local/owner-forged-${tag}:v1`;
      const PULLED = `registry.local/owner-pulled-${tag}:v1`;
      const SHARED = `registry.local/owner-shared-${tag}:v1`;
      const SHARED_OTHER = `registry.local/owner-shared-${tag}:other`;
      let c: ClusterInfo;
      let dir: string;
      let cd: PrivateContainerd;
      let client: ContainerdClient;
      let agent: Agent | undefined;
      const agentLog: string[] = [];
      let forged: ReturnType<typeof indexArchive>;
      let pulled: ReturnType<typeof indexArchive>;
      const custom = () => c.kc.makeApiClient(CustomObjectsApi);

      /** The record, its index blob's bytes and its index blob's content labels: what must stay byte for byte. */
      const snapshot = async (
        name: string,
      ): Promise<{
        record: ContainerdImage | undefined;
        bytes: string | undefined;
        labels: Record<string, string> | undefined;
      }> => {
        const [record] = await listImages(client, [nameFilter(name)]);
        if (record === undefined) return { record, bytes: undefined, labels: undefined };
        const bytes = (await readBlob(client, record.target.digest))?.toString('base64');
        return { record, bytes, labels: (await contentInfo(client, record.target.digest)).labels };
      };
      /** A record as containerd keeps it: name, target, labels, createdAt, updatedAt. */
      const rawRecord = async (name: string): Promise<RawRecord | undefined> =>
        (await client.unary<{ image: RawRecord | null }>('images', 'Get', { name }).catch(() => ({ image: null })))
          .image ?? undefined;
      const ctrImport = async (archive: string, name: string) => {
        await run(cd.ctr, ['--address', cd.socket, '-n', 'k8s.io', 'images', 'import', archive]);
        await criSettled(name);
      };
      /** The CRI labels a record created in k8s.io just after (its own write): wait for it, so that "before" is settled. */
      const criSettled = async (name: string) => {
        await until(
          `${name} as the CRI leaves it`,
          async () =>
            (await listImages(client, [nameFilter(name)]))[0]?.labels['io.cri-containerd.image'] !== undefined
              ? true
              : undefined,
          10_000,
          100,
        ).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 500));
      };
      const nixBuild = async (name: string, image: string, manifest: PlatformManifest, system = 'x86_64-linux') => {
        const body: NixBuild = {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: 'NixBuild',
          metadata: { name, namespace: NS },
          spec: {
            flakeUrl: `git+https://example/app?rev=${'a'.repeat(40)}`,
            packageName: 'image',
            system,
            images: [image],
          },
        };
        await custom().createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NS,
          plural: PLURAL,
          body,
        });
        // As the controller leaves a NixBuild once its import is done.
        await custom().patchNamespacedCustomObjectStatus(
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
      };
      const deleteBuild = (name: string) =>
        custom().deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL, name });

      before(async () => {
        c = await useCluster('control-plane');
        await applyNodeImagesCrd(c.kc);
        await applyNixBuildCrd(c.kc);
        await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
        dir = mkdtempSync('/tmp/enbi-owner-');
        cd = await startPrivateContainerd(spec!, join(dir, 'cd'));
        client = new ContainerdClient(cd.socket);
        // Another tool's image under FORGED: an index exactly like enbi's, annotation included, over its own manifest.
        forged = indexArchive(join(dir, 'forged.tar'), FORGED, "not enbi's build");
        await ctrImport(join(dir, 'forged.tar'), FORGED);
        // What a pull through Spegel leaves under PULLED: enbi's index of a manifest a NixBuild recorded, no label.
        pulled = indexArchive(join(dir, 'pulled.tar'), PULLED, "enbi's build, pulled");
        await ctrImport(join(dir, 'pulled.tar'), PULLED);
      });

      after(async () => {
        await agent?.stop();
        client?.close();
        await cd?.stop();
        await custom()
          ?.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_IMAGES_PLURAL, name: NODE })
          .catch(() => undefined);
        await c?.kc
          .makeApiClient(CoreV1Api)
          .deleteNamespace({ name: NS })
          .catch(() => undefined);
        if (dir) rmSync(dir, { recursive: true, force: true });
        if (process.env.ENBI_TEST_VERBOSE === '1') console.log(agentLog.join('\n'));
      });

      it("ctr imported the forged image: an index carrying the annotation, without enbi's labels, runnable", async () => {
        const s = await snapshot(FORGED);
        assert.equal(s.record?.target.digest, forged.index.digest);
        assert.equal(
          parseIndex(Buffer.from(s.bytes!, 'base64'))?.enbi,
          true,
          'the mark enbi once trusted is in its index',
        );
        assert.equal(s.record?.labels['enbi.hrzn.ee/nixbuild'], undefined);
        assert.equal(s.labels?.['enbi.hrzn.ee/index'], undefined);
        assert.equal(
          await run(cd.ctr, ['--address', cd.socket, '-n', 'k8s.io', 'run', '--rm', FORGED, `forged-${tag}`]),
          "not enbi's build\n",
        );
      });

      it('enbi import under that name refuses before reading its stream, and the record stays byte for byte', async () => {
        const before = await snapshot(FORGED);
        const archive = join(dir, 'build.tar');
        const { config } = dockerArchive(archive, 'a build that wants the name');
        const r = await enbiImport(cd.socket, dir, [
          '--file',
          archive,
          '--image',
          FORGED,
          '--allow-prefix',
          'registry.local/',
          '--owner',
          `nb-${tag}`,
        ]);
        assert.equal(r.code, 1, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(
            `image ${FORGED.replace(/[.]/g, '\\.')} exists on this node and enbi did not write it \\(it points at ${forged.index.digest} and has no enbi\\.hrzn\\.ee/nixbuild label\\).*enbi never replaces it`,
          ),
        );
        assert.deepEqual(
          await snapshot(FORGED),
          before,
          'record (name, target, labels, time), index bytes and index labels unchanged',
        );
        assert.equal(
          await hasBlob(client, config),
          false,
          'nothing of the build was written: refused before its stream was read',
        );
        assert.equal(
          await run(cd.ctr, ['--address', cd.socket, '-n', 'k8s.io', 'run', '--rm', FORGED, `forged2-${tag}`]),
          "not enbi's build\n",
        );
      });

      it('the agent converges and collects neither the forged record nor its index; it adopts, converges and collects the pulled one', async (t: TestContext) => {
        const forgedBefore = await snapshot(FORGED);
        agent = startAgent({
          node: NODE,
          socket: cd.socket,
          api: c.kc,
          buildsNamespace: NS,
          resyncMs: 3_600_000,
          debounceMs: 50,
          log: (m) => agentLog.push(m),
        });
        await agent.ready;
        // NixBuilds name both tags: an arm64 build of each recorded elsewhere (what makes the agent rewrite a
        // tag's index), and the amd64 manifest of PULLED recorded here (its pull is enbi's own build).
        const arm = (n: number): PlatformManifest => ({
          digest: `sha256:${n.toString(16).padStart(64, '0')}`,
          size: 500 + n,
          mediaType: OCI_MANIFEST,
          platform: 'linux/arm64',
        });
        await nixBuild(`forged-arm-${tag}`, FORGED, arm(1), 'aarch64-linux');
        await nixBuild(`pulled-amd-${tag}`, PULLED, pulled.manifest);
        await nixBuild(`pulled-arm-${tag}`, PULLED, arm(2), 'aarch64-linux');
        const t0 = Date.now();
        const adopted = await until(
          'the pulled tag at the two-platform index',
          async () => {
            const s = await snapshot(PULLED);
            const platforms =
              s.bytes !== undefined
                ? parseIndex(Buffer.from(s.bytes, 'base64'))
                    ?.entries.map((e) => e.platform)
                    .join(',')
                : undefined;
            return platforms === 'linux/amd64,linux/arm64' ? s : undefined;
          },
          30_000,
          100,
        );
        t.diagnostic(`pulled tag adopted and converged in ${Date.now() - t0} ms`);
        // The forged tag, named by a NixBuild the same way and seen in the same pass: untouched.
        await new Promise((r) => setTimeout(r, 1_000));
        assert.deepEqual(await snapshot(FORGED), forgedBefore, 'the forged record is not converged');
        assert.ok(
          !agentLog.some((l) => l.includes(FORGED)),
          `the agent did nothing to ${FORGED}: ${agentLog.filter((l) => l.includes(FORGED)).join('; ')}`,
        );
        // The pulled one was labelled enbi's on this node before it was converged.
        assert.equal(
          adopted.record!.labels['enbi.hrzn.ee/nixbuild'],
          `pulled-amd-${tag}`,
          'owned by the build that recorded its manifest',
        );
        assert.equal(adopted.labels!['enbi.hrzn.ee/index'], 'v1', "its new index blob labelled enbi's on this node");
        assert.equal(
          (await contentInfo(client, pulled.index.digest)).labels['enbi.hrzn.ee/index'],
          'v1',
          'and the pulled index blob it adopted',
        );
        assert.deepEqual(
          Object.fromEntries(
            parseIndex(Buffer.from(adopted.bytes!, 'base64'))!.entries.map((e) => [e.platform, e.digest]),
          ),
          { 'linux/amd64': pulled.manifest.digest, 'linux/arm64': arm(2).digest },
        );

        // The NixBuilds deleted (the controller's GC): the adopted tag leaves the node, the forged one stays.
        for (const n of [`forged-arm-${tag}`, `pulled-amd-${tag}`, `pulled-arm-${tag}`]) await deleteBuild(n);
        const t1 = Date.now();
        await until(
          'the adopted tag collected',
          async () => ((await listImages(client, [nameFilter(PULLED)])).length === 0 ? true : undefined),
          30_000,
          100,
        );
        t.diagnostic(`adopted tag collected ${Date.now() - t1} ms after its NixBuilds went`);
        await new Promise((r) => setTimeout(r, 1_500));
        assert.deepEqual(await snapshot(FORGED), forgedBefore, 'the forged record is not collected either');
        assert.equal(
          await run(cd.ctr, ['--address', cd.socket, '-n', 'k8s.io', 'run', '--rm', FORGED, `forged3-${tag}`]),
          "not enbi's build\n",
        );
        assert.ok(!agentLog.some((l) => l.includes(FORGED)), 'still nothing done to it');
      });

      it("records another tool wrote at enbi's very manifest are neither relabelled by enbi import nor collected by the agent", async (t: TestContext) => {
        // Another tool (ctr, then an API client as the CRI writes them) names the manifest enbi is about to
        // import: a tag, and `<repository>@<manifest digest>`, the very name enbi import writes beside its tag.
        const archive = join(dir, 'shared.tar');
        dockerArchive(archive, 'one image, two owners', [SHARED_OTHER]);
        await ctrImport(archive, SHARED_OTHER);
        const manifest = (await listImages(client, [nameFilter(SHARED_OTHER)]))[0]!.target;
        const byDigest = `${SHARED_OTHER.split(':')[0]}@${manifest.digest}`;
        await client.unary('images', 'Create', {
          image: { name: byDigest, labels: { 'example.org/written-by': 'another-tool' }, target: manifest },
        });
        await criSettled(byDigest);
        const foreignBefore = { tag: await rawRecord(SHARED_OTHER), byDigest: await rawRecord(byDigest) };
        assert.equal(foreignBefore.byDigest?.labels['example.org/written-by'], 'another-tool');

        // enbi imports the same image under its own tag of that repository.
        const r = await enbiImport(cd.socket, dir, [
          '--file',
          archive,
          '--image',
          SHARED,
          '--allow-prefix',
          'registry.local/',
          '--owner',
          `shared-${tag}`,
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(
          (await rawRecord(SHARED))?.labels['enbi.hrzn.ee/nixbuild'],
          `shared-${tag}`,
          "enbi's tag is enbi's",
        );
        assert.deepEqual(
          { tag: await rawRecord(SHARED_OTHER), byDigest: await rawRecord(byDigest) },
          foreignBefore,
          'after enbi import: the foreign records (name, target, labels, createdAt, updatedAt) unchanged',
        );

        // A NixBuild records the import; once it is deleted, the agent collects enbi's tag, and only that.
        await nixBuild(`shared-${tag}`, SHARED, {
          digest: manifest.digest,
          size: manifest.size,
          mediaType: manifest.mediaType,
          platform: 'linux/amd64',
        });
        await new Promise((r) => setTimeout(r, 1_000));
        await deleteBuild(`shared-${tag}`);
        const t0 = Date.now();
        await until(
          "enbi's tag collected",
          async () => ((await listImages(client, [nameFilter(SHARED)])).length === 0 ? true : undefined),
          30_000,
          100,
        );
        t.diagnostic(`enbi's tag collected ${Date.now() - t0} ms after its NixBuild went`);
        await new Promise((r) => setTimeout(r, 1_500));
        assert.deepEqual(
          { tag: await rawRecord(SHARED_OTHER), byDigest: await rawRecord(byDigest) },
          foreignBefore,
          'after collection: the foreign records still there, unchanged',
        );
        assert.equal(
          await run(cd.ctr, ['--address', cd.socket, '-n', 'k8s.io', 'run', '--rm', byDigest, `shared-${tag}`]),
          'one image, two owners\n',
        );
      });
    },
  );
}
