// Which platforms (os/arch[/variant]) an image record can run on this node: those whose manifest and
// config blobs are in the content store. Read from the blobs themselves (content Info and Read): the
// index's platform entries, or a single manifest's config. Layers are not required: containerd may
// discard layer blobs once unpacked (CRI's discard_unpacked_layers, e.g. on EKS), and the image still runs.
import { type ContainerdClient, isNotFound } from './client.ts';
import type { Descriptor } from './images.ts';

const INDEX_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);
const MANIFEST_TYPES = new Set([
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
]);
/** Manifests and configs are small; refuse to read anything larger into memory. */
const MAX_BLOB_BYTES = 4 * 1024 * 1024;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** containerd's normal form: arm64's v8 and amd64's v1 are the default variants and left out; arm means arm/v7. */
export function formatPlatform(p: Platform): string {
  const os = p.os.toLowerCase();
  let arch = p.architecture.toLowerCase();
  let variant = (p.variant ?? '').toLowerCase();
  if (arch === 'aarch64') arch = 'arm64';
  if (arch === 'x86_64' || arch === 'x86-64') arch = 'amd64';
  if (arch === 'arm64' && ['8', 'v8', 'v8.0'].includes(variant)) variant = '';
  if (arch === 'amd64' && ['1', 'v1'].includes(variant)) variant = '';
  if (arch === 'arm' && variant === '') variant = 'v7';
  if (/^[0-9]/.test(variant)) variant = `v${variant}`;
  return variant !== '' ? `${os}/${arch}/${variant}` : `${os}/${arch}`;
}

export async function hasBlob(c: ContainerdClient, digest: string): Promise<boolean> {
  try {
    await c.unary('content', 'Info', { digest });
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** A whole blob, or undefined when the content store does not hold it. */
export async function readBlob(c: ContainerdClient, digest: string, size?: number): Promise<Buffer | undefined> {
  if (size !== undefined && size > MAX_BLOB_BYTES)
    throw new Error(`blob ${digest} is ${size} bytes: larger than a manifest or config should be`);
  try {
    const chunks = await c.collect<{ offset: number; data: Buffer }>('content', 'Read', { digest, offset: 0, size: 0 });
    const buf = Buffer.concat(chunks.map((ch) => ch.data));
    if (buf.length > MAX_BLOB_BYTES)
      throw new Error(`blob ${digest} is ${buf.length} bytes: larger than a manifest or config should be`);
    return buf;
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

async function readJson(
  c: ContainerdClient,
  d: { digest: string; size?: number },
): Promise<Record<string, unknown> | undefined> {
  const buf = await readBlob(c, d.digest, d.size);
  if (buf === undefined) return undefined;
  try {
    const v = JSON.parse(buf.toString('utf8')) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

interface JsonDescriptor {
  mediaType?: string;
  digest?: string;
  size?: number;
  platform?: Platform;
}

/** The manifest's config, when both are present: its platform. */
async function manifestPlatform(
  c: ContainerdClient,
  manifest: { digest: string; size?: number },
): Promise<Platform | undefined> {
  const m = await readJson(c, manifest);
  const config = m?.config as JsonDescriptor | undefined;
  if (config?.digest === undefined) return undefined;
  const cfg = await readJson(c, { digest: config.digest, ...(config.size !== undefined ? { size: config.size } : {}) });
  if (cfg === undefined || typeof cfg.os !== 'string' || typeof cfg.architecture !== 'string') return undefined;
  return {
    os: cfg.os,
    architecture: cfg.architecture,
    ...(typeof cfg.variant === 'string' ? { variant: cfg.variant } : {}),
  };
}

/** Platforms present locally for an image's target, sorted; [] for content enbi does not understand. */
export async function platformsOf(c: ContainerdClient, target: Descriptor): Promise<string[]> {
  const out = new Set<string>();
  if (INDEX_TYPES.has(target.mediaType)) {
    const index = await readJson(c, target);
    const manifests = Array.isArray(index?.manifests) ? (index.manifests as JsonDescriptor[]) : [];
    await Promise.all(
      manifests.map(async (m) => {
        if (m.digest === undefined || (m.mediaType !== undefined && !MANIFEST_TYPES.has(m.mediaType))) return;
        // Attestations and other non-runnable entries say unknown/unknown.
        if (m.platform !== undefined && (m.platform.os === 'unknown' || m.platform.architecture === 'unknown')) return;
        const p = await manifestPlatform(c, { digest: m.digest, ...(m.size !== undefined ? { size: m.size } : {}) });
        if (p === undefined) return; // this platform's manifest or config is not on the node
        out.add(formatPlatform(m.platform ?? p));
      }),
    );
  } else if (MANIFEST_TYPES.has(target.mediaType)) {
    const p = await manifestPlatform(c, target);
    if (p !== undefined) out.add(formatPlatform(p));
  }
  return [...out].sort();
}

/**
 * platformsOf with a cache by target digest (content is immutable). retain() drops what is no longer
 * referenced, so the cache never outgrows the node's images.
 */
export class PlatformCache {
  readonly #c: ContainerdClient;
  readonly #known = new Map<string, string[]>();
  readonly #pending = new Map<string, Promise<string[]>>();

  constructor(c: ContainerdClient) {
    this.#c = c;
  }

  get size(): number {
    return this.#known.size;
  }

  async get(target: Descriptor): Promise<string[]> {
    const hit = this.#known.get(target.digest);
    if (hit !== undefined) return hit;
    let p = this.#pending.get(target.digest);
    if (p === undefined) {
      p = platformsOf(this.#c, target).finally(() => this.#pending.delete(target.digest));
      this.#pending.set(target.digest, p);
    }
    const v = await p;
    // An image whose blobs are still being written (an import in progress) may show no platform yet:
    // cache only a definite answer, so that the next look asks again.
    if (v.length > 0) this.#known.set(target.digest, v);
    return v;
  }

  retain(digests: ReadonlySet<string>): void {
    for (const d of this.#known.keys()) if (!digests.has(d)) this.#known.delete(d);
  }
}
