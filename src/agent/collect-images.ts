// The images of collected builds leave the nodes (issue 14): when the last NixBuild naming a tag is deleted
// (the controller's garbage collection, after its grace period, or an admin), each node's agent removes
// that tag's records (the tag, `<repository>@<manifest>` of each platform, the CRI's `sha256:<id>` name),
// so that containerd's GC frees the content. Never an image a container of the node was made from, never a
// tag or digest record without enbi's owner label (whatever its index says), never a target another name
// still holds. The CRI's own `sha256:<id>` name of an image goes with enbi's records that alone hold it.
import type { ContainerdClient } from '../containerd/client.ts';
import type { ContainerdImage } from '../containerd/images.ts';
import { isEnbiRecord } from '../containerd/import/labels.ts';
import { parseImageRef } from '../image/reference.ts';
import type { ParsedIndex } from '../image/platform-index.ts';

const IMAGE_ID = /^sha256:[0-9a-f]{64}$/;

export interface Collection {
  /** Records to delete. */
  remove: string[];
  /** Orphaned tags kept because a container uses them: asked again later. */
  inUse: string[];
  /** Orphaned tags that are not enbi's to remove (or gone already): forgotten. */
  skipped: string[];
}

/**
 * What to delete for tags no NixBuild names any more. `records` are all of the node's image records,
 * `indexOf` the parsed index a target is (when it is one), `containerImages` the image names the node's
 * containers were created from. Pure.
 */
export function planCollection(
  orphans: Iterable<string>,
  records: readonly ContainerdImage[],
  indexOf: (digest: string) => ParsedIndex | undefined,
  containerImages: readonly string[],
): Collection {
  const byName = new Map(records.map((r) => [r.name, r]));
  // A container names its image by tag, by `repo@digest` or by the CRI's id: what it uses is that record's target.
  const used = new Set(containerImages.map((i) => byName.get(i)?.target.digest ?? i));
  const out: Collection = { remove: [], inUse: [], skipped: [] };
  const orphanSet = new Set(orphans);
  // Manifests that tags still named list in their index: their `repo@digest` records stay.
  const kept = new Set<string>();
  for (const x of records)
    if (!orphanSet.has(x.name) && !x.name.includes('@') && !IMAGE_ID.test(x.name))
      for (const e of indexOf(x.target.digest)?.entries ?? []) kept.add(e.digest);
  for (const name of orphanSet) {
    const r = byName.get(name);
    const parsed = r !== undefined ? indexOf(r.target.digest) : undefined;
    if (r === undefined || !isEnbiRecord(r.labels)) {
      out.skipped.push(name);
      continue;
    }
    const target = r.target.digest;
    const manifests = parsed?.entries.map((e) => e.digest) ?? [target];
    if (used.has(target) || manifests.some((d) => used.has(d))) {
      out.inUse.push(name);
      continue;
    }
    const ref = parseImageRef(name);
    const byDigest = manifests
      .filter((d) => !kept.has(d))
      .map((d) => `${ref.registry}/${ref.repository}@${d}`)
      .filter((n) => isEnbiRecord(byName.get(n)?.labels));
    // The CRI's id names (and other tags of enbi's) go only when nothing but orphans holds the target.
    const holders = records.filter((x) => x.target.digest === target);
    const others = holders.filter((x) => !orphanSet.has(x.name) && !IMAGE_ID.test(x.name));
    const ids = others.length === 0 ? holders.filter((x) => IMAGE_ID.test(x.name)).map((x) => x.name) : [];
    out.remove.push(name, ...byDigest, ...ids);
  }
  out.remove = [...new Set(out.remove)];
  return out;
}

/** The image names this node's containers (in the client's namespace) were made from. */
export async function containerImages(c: ContainerdClient): Promise<string[]> {
  const r = await c.unary<{ containers: { id: string; image: string }[] }>('containers', 'List', { filters: [] });
  return r.containers.map((x) => x.image).filter((i) => i !== '');
}

/** Deletes the records; returns those deleted (a record already gone is not an error). */
export async function removeRecords(c: ContainerdClient, names: readonly string[]): Promise<string[]> {
  const done: string[] = [];
  for (const name of names) {
    try {
      await c.unary('images', 'Delete', { name, sync: false });
      done.push(name);
    } catch (e) {
      if ((e as { code?: number }).code !== 5) throw e; // NOT_FOUND: gone already
    }
  }
  return done;
}
