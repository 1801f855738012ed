// The one multi-platform index every tag enbi writes resolves to (issue 11). Spegel routes a tag to any
// peer holding it and keeps no digest per tag, so whatever a node holds under a tag must name every
// platform's manifest explicitly: then containerd on any node picks its own platform, whichever peer
// answered, and a node never runs another architecture's image. Pure: no I/O.
import { createHash } from 'node:crypto';

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
/**
 * On every index enbi writes, so that its bytes (and digest) stay what they were. Informational only: it
 * proves nothing about who made an index (anyone can write it into an image they import), and no decision
 * reads it. Ownership is the node-local labels of src/containerd/import/labels.ts.
 */
export const INDEX_ANNOTATION = 'ee.hrzn.enbi.index';
const MANIFEST_TYPES = new Set([
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
]);

/** A platform's manifest as a build recorded it (NixBuild status.manifest, `enbi import`'s result). */
export interface PlatformManifest {
  digest: string;
  size: number;
  mediaType: string;
  /** os/arch[/variant], containerd's normal form (linux/amd64, linux/arm64, linux/arm/v7). */
  platform: string;
}

export interface PlatformIndex {
  bytes: Buffer;
  digest: string;
  size: number;
  mediaType: typeof OCI_INDEX;
  entries: PlatformManifest[];
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const PLATFORM = /^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9.]+)?$/;
const order = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Why an entry cannot go into an index, or undefined. */
export function entryProblem(e: PlatformManifest): string | undefined {
  if (!DIGEST.test(e.digest)) return `manifest digest "${e.digest}" is not sha256:<64 hex>`;
  if (!Number.isSafeInteger(e.size) || e.size <= 0) return `manifest ${e.digest} has size ${e.size}`;
  if (!MANIFEST_TYPES.has(e.mediaType))
    return `manifest ${e.digest} has media type ${e.mediaType}, not an image manifest`;
  if (!PLATFORM.test(e.platform)) return `manifest ${e.digest} has platform "${e.platform}", not os/arch[/variant]`;
  return undefined;
}

/**
 * The index of these manifests, one per platform: sorted by platform, fixed key order, no annotations, so
 * the same entries give the same bytes (and digest) on every node. Throws on a malformed entry or two
 * manifests for one platform (the caller picks one first: pickEntries).
 */
export function platformIndex(entries: readonly PlatformManifest[]): PlatformIndex {
  if (entries.length === 0) throw new Error('an index needs at least one manifest');
  const sorted = [...entries].sort((a, b) => order(a.platform, b.platform));
  for (const [i, e] of sorted.entries()) {
    const p = entryProblem(e);
    if (p !== undefined) throw new Error(p);
    if (i > 0 && sorted[i - 1]!.platform === e.platform)
      throw new Error(`two manifests for ${e.platform}: ${sorted[i - 1]!.digest} and ${e.digest}`);
  }
  const manifests = sorted.map((e) => {
    const [os, architecture, variant] = e.platform.split('/');
    return {
      mediaType: e.mediaType,
      digest: e.digest,
      size: e.size,
      platform: { architecture, os, ...(variant !== undefined ? { variant } : {}) },
    };
  });
  const bytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests, annotations: { [INDEX_ANNOTATION]: 'v1' } }),
  );
  return {
    bytes,
    digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
    size: bytes.length,
    mediaType: OCI_INDEX,
    entries: sorted,
  };
}

export interface ParsedIndex {
  entries: PlatformManifest[];
  /** It carries INDEX_ANNOTATION: says nothing about who wrote it (see there); never used to decide. */
  enbi: boolean;
}

/** The platform entries of an index document, or undefined when it is not an index enbi can read. */
export function parseIndex(bytes: Buffer | string): ParsedIndex | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  const manifests = (doc as { manifests?: unknown } | null)?.manifests;
  if (!Array.isArray(manifests)) return undefined;
  const out: PlatformManifest[] = [];
  for (const m of manifests as {
    mediaType?: unknown;
    digest?: unknown;
    size?: unknown;
    platform?: { os?: unknown; architecture?: unknown; variant?: unknown };
  }[]) {
    const p = m?.platform;
    if (typeof p?.os !== 'string' || typeof p.architecture !== 'string') return undefined;
    const platform = `${p.os}/${p.architecture}${typeof p.variant === 'string' && p.variant !== '' ? `/${p.variant}` : ''}`;
    const e = { digest: String(m.digest), size: Number(m.size), mediaType: String(m.mediaType), platform };
    if (entryProblem(e) !== undefined) return undefined;
    out.push(e);
  }
  const annotations = (doc as { annotations?: Record<string, unknown> }).annotations;
  return { entries: out, enbi: annotations?.[INDEX_ANNOTATION] === 'v1' };
}

export interface Candidate extends PlatformManifest {
  /** When the build that recorded it finished (RFC 3339): the newest wins among manifests not held here. */
  completedAt?: string;
  /** The NixBuild that recorded it. */
  build?: string;
}

/**
 * The entries a node should hold under a tag: for each platform, a candidate the node itself holds (its
 * own build stays runnable there), else the newest candidate, else what the current index lists. Platforms
 * only the current index knows are kept: enbi adds and replaces, never drops a platform a pod may use.
 */
export function pickEntries(
  candidates: readonly Candidate[],
  current: readonly PlatformManifest[],
  heldHere: (digest: string) => boolean,
): PlatformManifest[] {
  const byPlatform = new Map<string, Candidate[]>();
  for (const c of candidates) {
    if (entryProblem(c) !== undefined) continue;
    const list = byPlatform.get(c.platform) ?? [];
    list.push(c);
    byPlatform.set(c.platform, list);
  }
  const out = new Map<string, PlatformManifest>();
  for (const e of current) if (entryProblem(e) === undefined) out.set(e.platform, strip(e));
  for (const [platform, list] of byPlatform) {
    // Newest first, then by digest: the same answer on every node given the same candidates.
    list.sort((a, b) => order(b.completedAt ?? '', a.completedAt ?? '') || order(a.digest, b.digest));
    const cur = out.get(platform);
    const chosen = list.find((c) => heldHere(c.digest)) ?? (cur !== undefined && heldHere(cur.digest) ? cur : list[0]!);
    out.set(platform, strip(chosen));
  }
  return [...out.values()].sort((a, b) => order(a.platform, b.platform));
}

const strip = (e: PlatformManifest): PlatformManifest => ({
  digest: e.digest,
  size: e.size,
  mediaType: e.mediaType,
  platform: e.platform,
});

/** Whether two entry lists name the same manifests for the same platforms. */
export function sameEntries(a: readonly PlatformManifest[], b: readonly PlatformManifest[]): boolean {
  if (a.length !== b.length) return false;
  const key = (l: readonly PlatformManifest[]) =>
    l
      .map((e) => `${e.platform} ${e.digest}`)
      .sort()
      .join('\n');
  return key(a) === key(b);
}
