// The labels containerd's own pull puts on content, which enbi's importer writes itself: where a blob comes
// from (Spegel advertises only blobs that say so), what keeps a blob from garbage collection (the gc.ref
// labels of manifests, indexes and configs), and the names of the image records.
import { createHash } from 'node:crypto';
import { parseImageRef } from '../../image/reference.ts';

export const LABEL_DISTRIBUTION_SOURCE = 'containerd.io/distribution.source';
export const LABEL_GC_CONFIG = 'containerd.io/gc.ref.content.config';
export const LABEL_GC_LAYER = 'containerd.io/gc.ref.content.l';
export const LABEL_GC_MANIFEST = 'containerd.io/gc.ref.content.m';
export const LABEL_GC_SNAPSHOT = 'containerd.io/gc.ref.snapshot';
export const LABEL_UNCOMPRESSED = 'containerd.io/uncompressed';
export const LABEL_GC_EXPIRE = 'containerd.io/gc.expire';
/** Honoured by containerd ≥ 1.7 (kubelet's image GC leaves the image alone); 1.6 ignores it. */
export const LABEL_PINNED = 'io.cri-containerd.pinned';
/** What the CRI plugin puts on the images it pulls (and `ctr images import` in k8s.io). */
export const LABEL_CRI_MANAGED = 'io.cri-containerd.image';
/**
 * On every image record enbi creates: the NixBuild it came from. The one proof that a record is enbi's: a
 * record without it is never replaced, converged or collected, whatever its target says. A label lives in
 * this node's containerd metadata only: no image content (an archive, a pull) can carry it.
 */
export const LABEL_RECORD_OWNER = 'enbi.hrzn.ee/nixbuild';
/**
 * On every index blob enbi writes on a node (content label, node-local as the record's): its entries are
 * enbi's to carry into the tag's next index. An index without it (pulled, imported by another tool, or
 * re-pointed to by the CRI) passes on only the manifests enbi's NixBuilds recorded.
 */
export const LABEL_INDEX_OWNER = 'enbi.hrzn.ee/index';
export const INDEX_OWNER_VALUE = 'v1';

/** Whether a record's labels say enbi wrote it on this node (LABEL_RECORD_OWNER, non-empty). */
export function isEnbiRecord(labels: Readonly<Record<string, string>> | null | undefined): boolean {
  const owner = labels?.[LABEL_RECORD_OWNER];
  return owner !== undefined && owner !== '';
}

export interface ImageName {
  /** The full reference as given, normalized (`app:1` → `docker.io/library/app:1`). */
  name: string;
  registry: string;
  repository: string;
}

/**
 * The image references to create, normalized as containerd's CRI names them. Each must carry a tag (a digest
 * cannot be promised by a build) and no digest; duplicates are dropped, the order kept.
 */
export function imageNames(refs: string[]): ImageName[] {
  const out = new Map<string, ImageName>();
  for (const raw of refs) {
    const r = parseImageRef(raw);
    if (r.digest !== undefined)
      throw new Error(`image "${raw}" names a digest: give a tag, the digest is the image's own`);
    const name = `${r.registry}/${r.repository}:${r.tag ?? 'latest'}`;
    if (!out.has(name)) out.set(name, { name, registry: r.registry, repository: r.repository });
  }
  return [...out.values()];
}

/**
 * `containerd.io/distribution.source.<registry host>` = the repositories of that registry, comma-separated
 * and sorted, as containerd writes them when it pulls (`registry.local/app:v1` → `…source.registry.local=app`).
 */
export function distributionSourceLabels(names: ImageName[]): Record<string, string> {
  const byHost = new Map<string, Set<string>>();
  for (const n of names) {
    const set = byHost.get(n.registry) ?? new Set<string>();
    set.add(n.repository);
    byHost.set(n.registry, set);
  }
  const labels: Record<string, string> = {};
  for (const [host, repos] of [...byHost].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    labels[`${LABEL_DISTRIBUTION_SOURCE}.${host}`] = [...repos].sort().join(',');
  }
  return labels;
}

/** `<repository>@<digest>` for every repository named: the records that let Spegel and kubelet name it by digest. */
export function digestNames(names: ImageName[], digest: string): string[] {
  return [...new Set(names.map((n) => `${n.registry}/${n.repository}@${digest}`))];
}

export interface Desc {
  mediaType: string;
  digest: string;
  size: number;
}

/** The gc references of a manifest: its config and each layer, as containerd labels them. */
export function manifestGcLabels(config: Desc, layers: Desc[]): Record<string, string> {
  const labels: Record<string, string> = { [LABEL_GC_CONFIG]: config.digest };
  layers.forEach((l, i) => (labels[`${LABEL_GC_LAYER}.${i}`] = l.digest));
  return labels;
}

/** The gc references of an index: each manifest it lists. */
export function indexGcLabels(manifests: Desc[]): Record<string, string> {
  const labels: Record<string, string> = {};
  manifests.forEach((m, i) => (labels[`${LABEL_GC_MANIFEST}.${i}`] = m.digest));
  return labels;
}

const sha256 = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

/** Chain ids of a layer stack (OCI image spec): the snapshot names of each unpacked prefix. */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) out.push(out.length === 0 ? d : sha256(`${out.at(-1)!} ${d}`));
  return out;
}
