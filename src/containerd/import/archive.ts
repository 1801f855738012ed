// What an image archive holds, once its files are known: a docker-archive (manifest.json, config JSON and
// layer tars, as docker save and nixpkgs' dockerTools write it) or an OCI image layout (oci-layout,
// index.json, blobs/sha256/*). Pure: the files are looked up through a callback, the importer streams them.
import { posix } from 'node:path';
import type { Desc } from './labels.ts';
import { errorMessage } from '../../async/error-message.ts';

export const MT = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
} as const;

export const isIndexType = (mt: string | undefined): boolean => mt === MT.ociIndex || mt === MT.dockerManifestList;
export const isManifestType = (mt: string | undefined): boolean => mt === MT.ociManifest || mt === MT.dockerManifest;

export class ArchiveError extends Error {
  override name = 'ArchiveError';
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const ARCH_ALIASES: Record<string, string> = {
  x86_64: 'amd64',
  'x86-64': 'amd64',
  aarch64: 'arm64',
  armhf: 'arm',
  armel: 'arm',
  i386: '386',
};

/** `linux/arm64`, `linux/arm/v7` → a platform, with containerd's normalization of names and variants. */
export function parsePlatform(s: string): Platform {
  const [os, architecture, variant] = s.split('/');
  if (!os || !architecture) throw new ArchiveError(`platform "${s}": expected os/arch[/variant], e.g. linux/arm64`);
  return normalizePlatform({ os, architecture, ...(variant ? { variant } : {}) });
}

export function normalizePlatform(p: Platform): Platform {
  const architecture = ARCH_ALIASES[p.architecture] ?? p.architecture;
  let variant = p.variant ?? '';
  if (architecture === 'arm64' && variant === 'v8') variant = '';
  if (architecture === 'amd64' && variant === 'v1') variant = '';
  if (architecture === 'arm' && variant === '') variant = 'v7';
  return { os: p.os.toLowerCase(), architecture, ...(variant !== '' ? { variant } : {}) };
}

export const formatPlatform = (p: Platform): string => `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;

/** Whether an image of platform `have` runs where `want` is asked for (absent fields match anything). */
export function platformMatches(want: Platform, have: Partial<Platform>): boolean {
  if (!have.os && !have.architecture) return true;
  const h = normalizePlatform({
    os: have.os ?? want.os,
    architecture: have.architecture ?? want.architecture,
    ...(have.variant ? { variant: have.variant } : {}),
  });
  return h.os === want.os && h.architecture === want.architecture && (h.variant ?? '') === (want.variant ?? '');
}

/** This machine's platform, as containerd's default matcher sees it. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
    loong64: 'loong64',
  };
  return normalizePlatform({ os: process.platform, architecture: arch[process.arch] ?? process.arch });
}

/** Media type of a layer from its first bytes (what ctr's importer does for docker-archives). */
export function layerMediaType(head: Buffer, docker: boolean): string {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return docker ? MT.dockerLayerGzip : MT.ociLayerGzip;
  if (head.length >= 4 && head.readUInt32BE(0) === 0x28b52ffd) return MT.ociLayerZstd;
  return docker ? MT.dockerLayer : MT.ociLayer;
}

/** One entry of a docker-archive's manifest.json. */
export interface DockerArchiveEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

export function parseDockerManifestJson(data: Buffer): DockerArchiveEntry[] {
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch (e) {
    throw new ArchiveError(`manifest.json is not JSON: ${errorMessage(e)}`);
  }
  if (!Array.isArray(v) || v.length === 0) throw new ArchiveError('manifest.json lists no image');
  for (const [i, e] of v.entries()) {
    const ok =
      typeof e === 'object' &&
      e !== null &&
      typeof (e as DockerArchiveEntry).Config === 'string' &&
      Array.isArray((e as DockerArchiveEntry).Layers) &&
      (e as DockerArchiveEntry).Layers.every((l) => typeof l === 'string');
    if (!ok) throw new ArchiveError(`manifest.json entry ${i} lacks Config or Layers`);
  }
  return v as DockerArchiveEntry[];
}

/** The parts of an image config that matter here. */
export interface ImageConfig {
  os?: string;
  architecture?: string;
  variant?: string;
  rootfs?: { type?: string; diff_ids?: string[] };
}

export function parseConfig(data: Buffer, what: string): ImageConfig {
  try {
    const c = JSON.parse(data.toString('utf8')) as ImageConfig;
    if (typeof c !== 'object' || c === null) throw new Error('not an object');
    return c;
  } catch (e) {
    throw new ArchiveError(`${what} is not an image config: ${errorMessage(e)}`);
  }
}

export const configPlatform = (c: ImageConfig): Partial<Platform> => ({
  ...(c.os ? { os: c.os } : {}),
  ...(c.architecture ? { architecture: c.architecture } : {}),
  ...(c.variant ? { variant: c.variant } : {}),
});

/**
 * The docker schema2 manifest of a docker-archive image, byte for byte what containerd's own archive importer
 * (`ctr images import`) writes (Go's json.Marshal of the same struct), so the digest is the same as before.
 */
export function dockerManifest(config: Desc, layers: Desc[]): Buffer {
  const d = (x: Desc) => ({ mediaType: x.mediaType, digest: x.digest, size: x.size });
  return Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MT.dockerManifest, config: d(config), layers: layers.map(d) }),
  );
}

/** A path named inside a docker-archive (manifest.json entries are relative to the archive root). */
export const archivePath = (p: string): string => posix.normalize(p).replace(/^(\.\/|\/)+/, '');

/** An OCI descriptor as index.json and manifests write it. */
export interface OciDescriptor extends Desc {
  platform?: Partial<Platform>;
  annotations?: Record<string, string>;
}

export interface OciManifest {
  mediaType?: string;
  config: OciDescriptor;
  layers: OciDescriptor[];
}

export interface OciIndex {
  mediaType?: string;
  manifests: OciDescriptor[];
}

export function parseJson<T>(data: Buffer, what: string): T {
  try {
    return JSON.parse(data.toString('utf8')) as T;
  } catch (e) {
    throw new ArchiveError(`${what} is not JSON: ${errorMessage(e)}`);
  }
}

const isDesc = (d: unknown): d is OciDescriptor =>
  typeof d === 'object' &&
  d !== null &&
  typeof (d as Desc).digest === 'string' &&
  /^sha256:[0-9a-f]{64}$/.test((d as Desc).digest) &&
  typeof (d as Desc).size === 'number';

export function checkManifest(m: OciManifest, what: string): OciManifest {
  if (!isDesc(m.config) || !Array.isArray(m.layers) || !m.layers.every(isDesc))
    throw new ArchiveError(`${what} is not an image manifest (config and layers with sha256 digests)`);
  return m;
}

export function checkIndex(i: OciIndex, what: string): OciIndex {
  if (!Array.isArray(i.manifests) || !i.manifests.every(isDesc))
    throw new ArchiveError(`${what} is not an image index (manifests with sha256 digests)`);
  return i;
}

export interface SelectedManifest {
  /** The manifest's descriptor (mediaType, digest, size). */
  desc: Desc;
  manifest: OciManifest;
  config: ImageConfig;
  /** Names the archive gave it (io.containerd.image.name, or a full org.opencontainers.image.ref.name). */
  names: string[];
  /** Platforms of every manifest seen, for the error when none matches. */
  seen: string[];
}

/**
 * The manifest of an OCI layout for `want`: walks index.json (nested indexes too); a descriptor's platform
 * decides when it has one, the manifest's config otherwise. Several matches: the first. `want` undefined:
 * the only manifest, or the host's platform among several.
 */
export async function selectOciManifest(
  index: OciIndex,
  blob: (d: Desc) => Promise<Buffer>,
  want: Platform | undefined,
): Promise<SelectedManifest> {
  const candidates: { desc: OciDescriptor; names: string[] }[] = [];
  const walk = async (ix: OciIndex, names: string[], depth: number): Promise<void> => {
    if (depth > 4) throw new ArchiveError('image indexes nested too deep');
    for (const d of ix.manifests) {
      const own = [...names];
      const a = d.annotations ?? {};
      if (a['io.containerd.image.name']) own.push(a['io.containerd.image.name']);
      else if (a['org.opencontainers.image.ref.name']?.includes('/')) own.push(a['org.opencontainers.image.ref.name']);
      if (isIndexType(d.mediaType))
        await walk(
          checkIndex(parseJson<OciIndex>(await blob(d), `index ${d.digest}`), `index ${d.digest}`),
          own,
          depth + 1,
        );
      else if (isManifestType(d.mediaType) || d.mediaType === undefined) candidates.push({ desc: d, names: own });
    }
  };
  await walk(index, [], 0);
  if (candidates.length === 0) throw new ArchiveError('index.json lists no image manifest');
  const target = want ?? (candidates.length === 1 ? undefined : hostPlatform());
  const seen: string[] = [];
  for (const c of candidates) {
    if (target !== undefined && c.desc.platform?.architecture && !platformMatches(target, c.desc.platform)) {
      seen.push(
        formatPlatform(
          normalizePlatform({
            os: c.desc.platform.os ?? '?',
            architecture: c.desc.platform.architecture,
            ...(c.desc.platform.variant ? { variant: c.desc.platform.variant } : {}),
          }),
        ),
      );
      continue;
    }
    const manifest = checkManifest(
      parseJson<OciManifest>(await blob(c.desc), `manifest ${c.desc.digest}`),
      `manifest ${c.desc.digest}`,
    );
    const config = parseConfig(await blob(manifest.config), `config ${manifest.config.digest}`);
    const p = configPlatform(config);
    if (target !== undefined && !platformMatches(target, p)) {
      seen.push(`${p.os ?? '?'}/${p.architecture ?? '?'}`);
      continue;
    }
    const mediaType = c.desc.mediaType ?? manifest.mediaType ?? MT.ociManifest;
    return { desc: { mediaType, digest: c.desc.digest, size: c.desc.size }, manifest, config, names: c.names, seen };
  }
  throw new ArchiveError(
    `no image for ${target ? formatPlatform(target) : 'this platform'} in the archive (it holds ${seen.join(', ')})`,
  );
}
