// Deterministic tar and OCI image layout: entries sorted by path, owner 0:0, one fixed mtime, no timestamps
// in configs, gzip without a name or time. The same inputs give the same bytes, so the same digests.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';

export type Entry =
  | { type: 'file'; path: string; data: Buffer; mode: number }
  | { type: 'dir'; path: string; mode: number }
  | { type: 'symlink'; path: string; target: string };

export const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

const octal = (n: number, len: number): string => n.toString(8).padStart(len - 1, '0');

function block(
  name: string,
  type: string,
  size: number,
  mode: number,
  mtime: number,
  linkname = '',
  prefix = '',
): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(mode, 8), 100, 8);
  h.write(octal(0, 8), 108, 8);
  h.write(octal(0, 8), 116, 8);
  h.write(octal(size, 12), 124, 12);
  h.write(octal(mtime, 12), 136, 12);
  h.fill(' ', 148, 156);
  h.write(type, 156, 1);
  h.write(linkname, 157, 100, 'utf8');
  h.write('ustar', 257, 6);
  h.write('00', 263, 2);
  h.write('root', 265, 32);
  h.write('root', 297, 32);
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  return h;
}

const pad = (n: number): Buffer => Buffer.alloc((512 - (n % 512)) % 512);

/** A PAX record "LEN key=value\n", LEN counting itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len++;
  return `${len}${body}`;
}

/** ustar name/prefix split, or undefined when the path needs a PAX header. */
function split(path: string): { name: string; prefix: string } | undefined {
  if (Buffer.byteLength(path) <= 100) return { name: path, prefix: '' };
  for (let cut = path.indexOf('/'); cut > 0; cut = path.indexOf('/', cut + 1)) {
    const prefix = path.slice(0, cut);
    const name = path.slice(cut + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100) return { name, prefix };
  }
  return undefined;
}

/** A tar of the entries in the order given (callers sort), every entry owned by 0:0 with mtime `mtime`. */
export function tar(entries: Entry[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const path = e.type === 'dir' ? `${e.path}/` : e.path;
    const target = e.type === 'symlink' ? e.target : '';
    let names = split(path);
    const pax: string[] = [];
    if (names === undefined) {
      pax.push(paxRecord('path', path));
      names = { name: path.slice(0, 99), prefix: '' };
    }
    if (Buffer.byteLength(target) > 100) pax.push(paxRecord('linkpath', target));
    if (pax.length > 0) {
      const data = Buffer.from(pax.join(''));
      parts.push(
        block(`PaxHeaders/${names.name}`.slice(0, 100), 'x', data.length, 0o644, mtime),
        data,
        pad(data.length),
      );
    }
    const data = e.type === 'file' ? e.data : Buffer.alloc(0);
    const mode = e.type === 'symlink' ? 0o777 : e.mode;
    const type = e.type === 'file' ? '0' : e.type === 'dir' ? '5' : '2';
    parts.push(
      block(names.name, type, data.length, mode, mtime, target.slice(0, 100), names.prefix),
      data,
      pad(data.length),
    );
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Sorts by path bytes (a directory before what it holds) and adds the parent directories nobody listed. */
export function normalize(entries: Entry[]): Entry[] {
  const byPath = new Map<string, Entry>();
  for (const e of entries) {
    const path = e.path.replace(/^\/+|\/+$/g, '');
    if (byPath.has(path)) throw new Error(`two entries for ${path}`);
    byPath.set(path, { ...e, path });
  }
  for (const path of [...byPath.keys()]) {
    for (
      let d = path.slice(0, Math.max(0, path.lastIndexOf('/')));
      d !== '';
      d = d.slice(0, Math.max(0, d.lastIndexOf('/')))
    ) {
      if (!byPath.has(d)) byPath.set(d, { type: 'dir', path: d, mode: 0o755 });
    }
  }
  return [...byPath.values()].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
}

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface Blob {
  descriptor: Descriptor;
  data: Buffer;
}

function blob(mediaType: string, data: Buffer): Blob {
  return { descriptor: { mediaType, digest: `sha256:${sha256(data)}`, size: data.length }, data };
}

export interface PlatformImage {
  platform: { architecture: string; os: string; variant?: string };
  /** The manifest's descriptor (with platform), and every blob it needs. */
  manifest: Descriptor;
  blobs: Blob[];
  /** Uncompressed layer size and digest. */
  layerBytes: number;
  diffId: string;
}

/** One platform's image from one layer of entries: gzip'd layer, config, manifest. */
export function platformImage(
  entries: Entry[],
  o: { architecture: string; variant?: string; config: object; mtime: number; labels: Record<string, string> },
): PlatformImage {
  const layerTar = tar(normalize(entries), o.mtime);
  const diffId = `sha256:${sha256(layerTar)}`;
  // Level 9, no file name or time in the header: Node's zlib writes the same bytes every time.
  const layer = blob(MEDIA.layer, gzipSync(layerTar, { level: 9 }));
  const platform = { architecture: o.architecture, os: 'linux', ...(o.variant ? { variant: o.variant } : {}) };
  const config = blob(
    MEDIA.config,
    Buffer.from(
      JSON.stringify({
        ...platform,
        config: { ...o.config, Labels: o.labels },
        rootfs: { type: 'layers', diff_ids: [diffId] },
      }),
    ),
  );
  const manifest = blob(
    MEDIA.manifest,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA.manifest,
        config: config.descriptor,
        layers: [layer.descriptor],
        annotations: o.labels,
      }),
    ),
  );
  return {
    platform,
    manifest: { ...manifest.descriptor, platform },
    blobs: [layer, config, manifest],
    layerBytes: layerTar.length,
    diffId,
  };
}

export interface Layout {
  /** The image index over every platform: its digest is the image's (what `ctr images ls` shows). */
  index: Descriptor;
  archive: Buffer;
}

/**
 * An OCI image layout as a tar (oci-archive): index.json names the image index once per reference, with
 * io.containerd.image.name (ctr import) and org.opencontainers.image.ref.name (skopeo, podman).
 */
export function ociArchive(
  images: PlatformImage[],
  refs: string[],
  mtime: number,
  annotations: Record<string, string>,
): Layout {
  const index = blob(
    MEDIA.index,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA.index,
        manifests: images.map((i) => i.manifest),
        annotations,
      }),
    ),
  );
  const top = {
    schemaVersion: 2,
    mediaType: MEDIA.index,
    manifests: refs.map((ref) => ({
      ...index.descriptor,
      annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': ref },
    })),
  };
  const blobs = new Map<string, Buffer>();
  for (const b of [...images.flatMap((i) => i.blobs), index]) blobs.set(b.descriptor.digest.slice(7), b.data);
  const entries: Entry[] = [
    {
      type: 'file',
      path: 'oci-layout',
      data: Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })),
      mode: 0o644,
    },
    { type: 'file', path: 'index.json', data: Buffer.from(JSON.stringify(top)), mode: 0o644 },
    ...[...blobs].map(([hex, data]): Entry => ({ type: 'file', path: `blobs/sha256/${hex}`, data, mode: 0o644 })),
  ];
  return { index: index.descriptor, archive: tar(normalize(entries), mtime) };
}
