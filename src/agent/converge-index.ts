// Every node holding a tag converges to the same index (issue 11): when a build adds a platform, the agent
// of every node that holds the tag rewrites the index blob (a few hundred bytes: no build, no transfer) and
// points the tag at it. Whatever peer Spegel then asks for the tag, the answer lists every platform built
// so far and containerd takes its own. Only records carrying enbi's owner label are rewritten: that label is
// written on this node by enbi, never read from content. A record the CRI pulled through Spegel has no
// label; it is adopted (labelled) only when it points at exactly the index enbi writes for manifests the
// NixBuilds of that tag recorded — enbi's own build, checked against the API, not against the index's
// say-so (an `ee.hrzn.enbi.index` annotation proves nothing: anyone can write it into an image).
import { randomBytes } from 'node:crypto';
import type { ContainerdClient } from '../containerd/client.ts';
import type { ContainerdImage } from '../containerd/images.ts';
import { hasBlob } from '../containerd/platform.ts';
import { isIndexType } from '../containerd/import/archive.ts';
import { addContentLabels, ingestRef, writeBlob } from '../containerd/import/content.ts';
import {
  distributionSourceLabels,
  imageNames,
  INDEX_OWNER_VALUE,
  indexGcLabels,
  isEnbiRecord,
  LABEL_GC_EXPIRE,
  LABEL_INDEX_OWNER,
  LABEL_RECORD_OWNER,
} from '../containerd/import/labels.ts';
import {
  type Candidate,
  type ParsedIndex,
  pickEntries,
  platformIndex,
  type PlatformIndex,
  type PlatformManifest,
} from '../image/platform-index.ts';
import { indexIsEnbis, parsedIndexOf } from '../containerd/index-blob.ts';

export interface Rewrite {
  name: string;
  from: string;
  index: PlatformIndex;
}

export interface RecordFacts {
  record: ContainerdImage;
  /** Its target parsed when it is an index, else undefined. */
  parsed?: ParsedIndex;
  /** Its target index blob carries enbi's content label on this node (LABEL_INDEX_OWNER). */
  indexOwned?: boolean;
  /** Platforms of a bare manifest target (an enbi record written before indexes). */
  manifestPlatforms?: readonly string[];
}

/** Whether a manifest is one of the candidates (the same digest for the same platform, as a NixBuild recorded it). */
const recorded = (e: PlatformManifest, cands: readonly Candidate[]): boolean =>
  cands.some(
    (c) => c.digest === e.digest && c.platform === e.platform && c.size === e.size && c.mediaType === e.mediaType,
  );

const isTag = (name: string): boolean => !name.includes('@') && !name.startsWith('sha256:');

export interface Adoption {
  name: string;
  /** The target the record must still have when it is labelled. */
  target: string;
  /** The NixBuild named in its owner label: the one that recorded its first entry. */
  owner: string;
}

/**
 * Tags without enbi's owner label that hold exactly enbi's build (what the CRI leaves when it pulls a tag
 * through Spegel): the target is an index byte for byte as enbi writes it, and every manifest it lists is
 * one the NixBuilds of that tag recorded. Nothing else is adopted: a record whose index names any other
 * manifest, whatever its annotations, stays someone else's. Pure.
 */
export function planAdoptions(
  facts: readonly RecordFacts[],
  candidates: (name: string) => readonly Candidate[],
): Adoption[] {
  const out: Adoption[] = [];
  for (const { record, parsed } of facts) {
    if (!isTag(record.name) || isEnbiRecord(record.labels) || parsed === undefined || parsed.entries.length === 0)
      continue;
    const cands = candidates(record.name);
    if (!parsed.entries.every((e) => recorded(e, cands))) continue;
    let canonical: string;
    try {
      canonical = platformIndex(parsed.entries).digest;
    } catch {
      continue;
    }
    if (canonical !== record.target.digest) continue;
    const first = cands.find((c) => c.digest === parsed.entries[0]!.digest && c.build !== undefined);
    out.push({ name: record.name, target: record.target.digest, owner: first?.build ?? 'enbi-agent' });
  }
  return out;
}

/**
 * The rewrites a node needs: tags (not digest records) whose builds are known, that carry enbi's owner
 * label, and whose index is not the one their entries give. The current index's entries are carried over
 * when enbi wrote that index on this node (indexOwned); otherwise only those a NixBuild recorded. Pure.
 */
export function planRewrites(
  facts: readonly RecordFacts[],
  candidates: (name: string) => readonly Candidate[],
  heldHere: (digest: string) => boolean,
): Rewrite[] {
  const out: Rewrite[] = [];
  for (const { record, parsed, indexOwned, manifestPlatforms } of facts) {
    if (!isTag(record.name)) continue;
    const cands = candidates(record.name);
    if (cands.length === 0) continue;
    if (!isEnbiRecord(record.labels)) continue;
    let current: PlatformManifest[] = (parsed?.entries ?? []).filter((e) => indexOwned === true || recorded(e, cands));
    // An older enbi record at a bare manifest: that manifest stays, under its platform, in the new index.
    if (parsed === undefined && manifestPlatforms?.length === 1)
      current = [
        {
          digest: record.target.digest,
          size: record.target.size,
          mediaType: record.target.mediaType,
          platform: manifestPlatforms[0]!,
        },
      ];
    const index = platformIndex(pickEntries(cands, current, heldHere));
    if (index.digest !== record.target.digest || (parsed !== undefined && indexOwned !== true))
      out.push({ name: record.name, from: record.target.digest, index });
  }
  return out;
}

/** Reads what planRewrites needs for the records that have candidates. */
export async function gatherFacts(
  c: ContainerdClient,
  records: Iterable<ContainerdImage>,
  hasCandidates: (name: string) => boolean,
  manifestPlatforms: (target: ContainerdImage['target']) => Promise<readonly string[]>,
  cache: Map<string, ParsedIndex | null>,
): Promise<RecordFacts[]> {
  const out: RecordFacts[] = [];
  for (const record of records) {
    if (!hasCandidates(record.name)) continue;
    const t = record.target;
    if (isIndexType(t.mediaType)) {
      const parsed = await parsedIndexOf(c, t, cache);
      out.push(parsed !== undefined ? { record, parsed, indexOwned: await indexIsEnbis(c, t.digest) } : { record });
    } else {
      out.push({ record, manifestPlatforms: await manifestPlatforms(t) });
    }
  }
  return out;
}

/** Which of these manifest digests the node's content store holds. */
export async function heldDigests(c: ContainerdClient, digests: Iterable<string>): Promise<Set<string>> {
  const out = new Set<string>();
  for (const d of new Set(digests)) if (await hasBlob(c, d)) out.add(d);
  return out;
}

/**
 * Writes each new index (with the labels Spegel and containerd's GC need) and points its tag at it, under a
 * lease so that GC cannot take the blob before the record references it. A record changed meanwhile is
 * rewritten only if it still points where it did (compare-and-swap by re-reading).
 */
export async function applyRewrites(
  c: ContainerdClient,
  rewrites: readonly Rewrite[],
  log: (m: string) => void,
): Promise<number> {
  if (rewrites.length === 0) return 0;
  const leaseId = `enbi-agent-index-${Date.now()}-${randomBytes(4).toString('hex')}`;
  await c.unary('leases', 'Create', {
    id: leaseId,
    labels: { [LABEL_GC_EXPIRE]: new Date(Date.now() + 600_000).toISOString() },
  });
  c.lease = leaseId;
  let done = 0;
  try {
    for (const r of rewrites) {
      const labels = {
        ...distributionSourceLabels(imageNames([r.name])),
        ...indexGcLabels(r.index.entries),
        [LABEL_INDEX_OWNER]: INDEX_OWNER_VALUE,
      };
      await writeBlob(c, { data: r.index.bytes, labels, expected: r.index.digest, ref: ingestRef('index') });
      const now = await c.unary<{
        image: {
          name: string;
          target: { digest: string } | null;
          labels: Record<string, string> | null;
          createdAt?: unknown;
        } | null;
      }>('images', 'Get', { name: r.name });
      // Changed meanwhile (another target, or no longer enbi's): the next run decides again.
      if (now.image?.target?.digest !== r.from || !isEnbiRecord(now.image.labels)) continue;
      await c.unary('images', 'Update', {
        image: {
          name: r.name,
          labels: now.image.labels ?? {},
          target: { mediaType: r.index.mediaType, digest: r.index.digest, size: r.index.size },
        },
      });
      log(
        `${r.name}: now index ${r.index.digest} of ${r.index.entries.map((e) => e.platform).join(', ')} (was ${r.from})`,
      );
      done++;
    }
  } finally {
    c.lease = undefined;
    await c.unary('leases', 'Delete', { id: leaseId }).catch(() => undefined);
  }
  return done;
}

/**
 * Labels each adopted record as enbi's (and its index blob with enbi's content label), only if it still
 * points where it did and is still unlabelled. Returns the names adopted.
 */
export async function applyAdoptions(
  c: ContainerdClient,
  adoptions: readonly Adoption[],
  log: (m: string) => void,
): Promise<string[]> {
  const done: string[] = [];
  for (const a of adoptions) {
    const now = await c.unary<{
      image: {
        name: string;
        target: { mediaType: string; digest: string; size: number } | null;
        labels: Record<string, string> | null;
      } | null;
    }>('images', 'Get', { name: a.name });
    const image = now.image;
    if (image?.target?.digest !== a.target || isEnbiRecord(image.labels)) continue;
    await addContentLabels(c, a.target, { [LABEL_INDEX_OWNER]: INDEX_OWNER_VALUE });
    await c.unary('images', 'Update', {
      image: { name: a.name, labels: { ...image.labels, [LABEL_RECORD_OWNER]: a.owner }, target: image.target },
      updateMask: { paths: [`labels.${LABEL_RECORD_OWNER}`] },
    });
    log(
      `${a.name}: adopted (it points at enbi's index ${a.target} of manifests NixBuilds recorded; pulled, e.g. through Spegel)`,
    );
    done.push(a.name);
  }
  return done;
}
