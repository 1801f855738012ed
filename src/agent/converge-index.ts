// Every node holding a tag converges to the same index (issue 11): when a build adds a platform, the agent
// of every node that holds the tag rewrites the index blob (a few hundred bytes: no build, no transfer) and
// points the tag at it. Whatever peer Spegel then asks for the tag, the answer lists every platform built
// so far and containerd takes its own. Records enbi did not write are never touched, except one the CRI
// pulled from an index enbi wrote (the same image, now with more platforms).
import { randomBytes } from 'node:crypto';
import type { ContainerdClient } from '../containerd/client.ts';
import type { ContainerdImage } from '../containerd/images.ts';
import { hasBlob } from '../containerd/platform.ts';
import { isIndexType } from '../containerd/import/archive.ts';
import { ingestRef, writeBlob } from '../containerd/import/content.ts';
import { distributionSourceLabels, imageNames, indexGcLabels, LABEL_GC_EXPIRE, LABEL_RECORD_OWNER } from '../containerd/import/labels.ts';
import { type Candidate, type ParsedIndex, pickEntries, platformIndex, type PlatformIndex, type PlatformManifest } from '../image/platform-index.ts';
import { parsedIndexOf } from '../containerd/index-blob.ts';

export interface Rewrite {
  name: string;
  from: string;
  index: PlatformIndex;
}

export interface RecordFacts {
  record: ContainerdImage;
  /** Its target parsed when it is an index, else undefined. */
  parsed?: ParsedIndex;
  /** Platforms of a bare manifest target (an enbi record written before indexes). */
  manifestPlatforms?: readonly string[];
}

/**
 * The rewrites a node needs: tags (not digest records) whose builds are known, that enbi may rewrite (its
 * own record, or one at enbi's index), and whose index is not the one their entries give. Pure.
 */
export function planRewrites(facts: readonly RecordFacts[], candidates: (name: string) => readonly Candidate[], heldHere: (digest: string) => boolean): Rewrite[] {
  const out: Rewrite[] = [];
  for (const { record, parsed, manifestPlatforms } of facts) {
    if (record.name.includes('@') || record.name.startsWith('sha256:')) continue;
    const cands = candidates(record.name);
    if (cands.length === 0) continue;
    const owned = record.labels[LABEL_RECORD_OWNER] !== undefined;
    if (!owned && parsed?.enbi !== true) continue;
    let current: PlatformManifest[] = parsed?.entries ?? [];
    // An older enbi record at a bare manifest: that manifest stays, under its platform, in the new index.
    if (parsed === undefined && manifestPlatforms?.length === 1) current = [{ digest: record.target.digest, size: record.target.size, mediaType: record.target.mediaType, platform: manifestPlatforms[0]! }];
    const index = platformIndex(pickEntries(cands, current, heldHere));
    if (index.digest !== record.target.digest) out.push({ name: record.name, from: record.target.digest, index });
  }
  return out;
}

/** Reads what planRewrites needs for the records that have candidates. */
export async function gatherFacts(c: ContainerdClient, records: Iterable<ContainerdImage>, hasCandidates: (name: string) => boolean, manifestPlatforms: (target: ContainerdImage['target']) => Promise<readonly string[]>, cache: Map<string, ParsedIndex | null>): Promise<RecordFacts[]> {
  const out: RecordFacts[] = [];
  for (const record of records) {
    if (!hasCandidates(record.name)) continue;
    const t = record.target;
    if (isIndexType(t.mediaType)) {
      const parsed = await parsedIndexOf(c, t, cache);
      out.push(parsed !== undefined ? { record, parsed } : { record });
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
export async function applyRewrites(c: ContainerdClient, rewrites: readonly Rewrite[], log: (m: string) => void): Promise<number> {
  if (rewrites.length === 0) return 0;
  const leaseId = `enbi-agent-index-${Date.now()}-${randomBytes(4).toString('hex')}`;
  await c.unary('leases', 'Create', { id: leaseId, labels: { [LABEL_GC_EXPIRE]: new Date(Date.now() + 600_000).toISOString() } });
  c.lease = leaseId;
  let done = 0;
  try {
    for (const r of rewrites) {
      const labels = { ...distributionSourceLabels(imageNames([r.name])), ...indexGcLabels(r.index.entries) };
      await writeBlob(c, { data: r.index.bytes, labels, expected: r.index.digest, ref: ingestRef('index') });
      const now = await c.unary<{ image: { name: string; target: { digest: string } | null; labels: Record<string, string> | null; createdAt?: unknown } | null }>('images', 'Get', { name: r.name });
      if (now.image?.target?.digest !== r.from) continue; // changed meanwhile: the next run decides again
      await c.unary('images', 'Update', { image: { name: r.name, labels: now.image.labels ?? {}, target: { mediaType: r.index.mediaType, digest: r.index.digest, size: r.index.size } } });
      log(`${r.name}: now index ${r.index.digest} of ${r.index.entries.map((e) => e.platform).join(', ')} (was ${r.from})`);
      done++;
    }
  } finally {
    c.lease = undefined;
    await c.unary('leases', 'Delete', { id: leaseId }).catch(() => undefined);
  }
  return done;
}
