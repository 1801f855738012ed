// Container images assembled locally (nothing can be pulled here): a static busybox in one layer, written
// as a docker-archive that `ctr images import` takes. Used for the pod sandbox image and by tests.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { hostBin } from './paths.ts';
import { run } from './proc.ts';
import { tar, type TarEntry } from './tar.ts';

export interface BusyboxImageOptions {
  /** Image reference written into the archive's RepoTags, e.g. 'enbi.test/hello:1'. */
  ref: string;
  /** Where to write the docker-archive tarball. */
  out: string;
  cmd?: string[];
  entrypoint?: string[];
  env?: string[];
  /** A static busybox binary; default the host's (busybox-static). Give an arm64 one for arm64 images. */
  busybox?: string;
  /** OCI architecture of the busybox given: amd64 (default) or arm64, ... */
  architecture?: string;
  /** Extra files in the image, e.g. { path: 'etc/motd', data: 'hi' }. */
  files?: { path: string; data: string | Buffer; mode?: number }[];
}

export interface BuiltImage {
  ref: string;
  out: string;
  /** sha256:… of the image config, the image ID containerd and the CRI report. */
  configDigest: string;
  /** sha256:… of the uncompressed layer. */
  diffId: string;
}

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

let applets: string[] | undefined;
/** Applet names of the host's busybox-static (the arm64 build of the same package has the same set). */
function busyboxApplets(): string[] {
  applets ??= execFileSync(hostBin('busybox'), ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((a) => a && a !== 'busybox');
  return applets;
}

function layer(o: BusyboxImageOptions): Buffer {
  const entries: TarEntry[] = [
    { type: 'dir', path: 'bin' },
    { type: 'file', path: 'bin/busybox', data: readFileSync(o.busybox ?? hostBin('busybox')), mode: 0o755 },
    ...busyboxApplets().map((a): TarEntry => ({ type: 'symlink', path: `bin/${a}`, target: 'busybox' })),
    { type: 'dir', path: 'etc' },
    // An image's own files replace these two (the builder image adds its unprivileged user).
    ...(o.files?.some((f) => f.path.replace(/^\/+/, '') === 'etc/passwd')
      ? []
      : [
          {
            type: 'file' as const,
            path: 'etc/passwd',
            data: Buffer.from('root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n'),
          },
        ]),
    ...(o.files?.some((f) => f.path.replace(/^\/+/, '') === 'etc/group')
      ? []
      : [{ type: 'file' as const, path: 'etc/group', data: Buffer.from('root:x:0:\nnobody:x:65534:\n') }]),
    { type: 'dir', path: 'root', mode: 0o700 },
    { type: 'dir', path: 'tmp', mode: 0o1777 },
  ];
  const dirs = new Set(entries.filter((e) => e.type === 'dir').map((e) => e.path));
  for (const f of o.files ?? []) {
    const path = f.path.replace(/^\/+/, '');
    for (let d = dirname(path); d !== '.' && !dirs.has(d); d = dirname(d)) {
      dirs.add(d);
      entries.push({ type: 'dir', path: d });
    }
    entries.push({ type: 'file', path, data: Buffer.from(f.data), mode: f.mode ?? 0o644 });
  }
  return tar(entries);
}

/** Writes a docker-archive of a busybox image; the same options always give the same bytes. */
export function buildBusyboxImage(o: BusyboxImageOptions): BuiltImage {
  const layerTar = layer(o);
  const diffId = `sha256:${sha256(layerTar)}`;
  const config = JSON.stringify({
    architecture: o.architecture ?? 'amd64',
    os: 'linux',
    created: '1970-01-01T00:00:00Z',
    config: {
      Env: o.env ?? ['PATH=/bin'],
      ...(o.entrypoint ? { Entrypoint: o.entrypoint } : {}),
      Cmd: o.cmd ?? ['/bin/sh'],
      WorkingDir: '/',
    },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created: '1970-01-01T00:00:00Z', created_by: 'enbi test/cluster/images.ts: static busybox' }],
  });
  const configHex = sha256(config);
  const layerPath = `${diffId.slice(7)}/layer.tar`;
  const manifest = JSON.stringify([{ Config: `${configHex}.json`, RepoTags: [o.ref], Layers: [layerPath] }]);
  const archive = tar([
    { type: 'dir', path: diffId.slice(7) },
    { type: 'file', path: layerPath, data: layerTar },
    { type: 'file', path: `${configHex}.json`, data: Buffer.from(config) },
    { type: 'file', path: 'manifest.json', data: Buffer.from(manifest) },
  ]);
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, archive);
  return { ref: o.ref, out: o.out, configDigest: `sha256:${configHex}`, diffId };
}

export interface ImportOptions {
  /** ctr binary matching the node's containerd (NodeState.ctr); default Debian's. */
  ctr?: string;
  /** containerd namespace; Kubernetes' images live in k8s.io. */
  namespace?: string;
  /** e.g. 'linux/arm64' for an image of another architecture than the host's. */
  platform?: string;
}

/** Imports a docker-archive or OCI archive into a containerd, where the CRI (and kubelet) sees it. */
export async function importImage(socket: string, archive: string, o: ImportOptions = {}): Promise<void> {
  await run(o.ctr ?? hostBin('ctr'), [
    '--address',
    socket,
    '-n',
    o.namespace ?? 'k8s.io',
    'images',
    'import',
    ...(o.platform ? ['--platform', o.platform] : []),
    archive,
  ]);
}
