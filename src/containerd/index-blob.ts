// The OCI index an image record points at, read from the node's content store and parsed: what the agent's
// convergence and collection and the importer all ask of a tag before they touch it; and whether enbi wrote
// that index blob on this node (its content label: a node-local fact, never read from the bytes).
import { type ParsedIndex, parseIndex } from '../image/platform-index.ts';
import { type ContainerdClient, isNotFound } from './client.ts';
import { isIndexType } from './import/archive.ts';
import { contentInfo } from './import/content.ts';
import { INDEX_OWNER_VALUE, LABEL_INDEX_OWNER } from './import/labels.ts';
import { readBlob } from './platform.ts';

/**
 * The parsed index a record's target names; undefined when the target is no index, its blob is gone, or it
 * does not parse. Index blobs are immutable, so `cache` (by digest; null for "not readable") may be kept
 * across calls.
 */
export async function parsedIndexOf(
  c: ContainerdClient,
  target: { mediaType: string; digest: string; size?: number },
  cache?: Map<string, ParsedIndex | null>,
): Promise<ParsedIndex | undefined> {
  if (!isIndexType(target.mediaType)) return undefined;
  const cached = cache?.get(target.digest);
  if (cached !== undefined) return cached ?? undefined;
  const bytes = await readBlob(c, target.digest, target.size);
  const parsed = bytes !== undefined ? parseIndex(bytes) : undefined;
  cache?.set(target.digest, parsed ?? null);
  return parsed;
}

/** Whether this node's content store says enbi wrote this index blob here (LABEL_INDEX_OWNER). */
export async function indexIsEnbis(c: ContainerdClient, digest: string): Promise<boolean> {
  try {
    return (await contentInfo(c, digest)).labels[LABEL_INDEX_OWNER] === INDEX_OWNER_VALUE;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}
