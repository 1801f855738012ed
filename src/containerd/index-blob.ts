// The OCI index an image record points at, read from the node's content store and parsed: what the agent's
// convergence and collection and the importer all ask of a tag before they touch it.
import { type ParsedIndex, parseIndex } from '../image/platform-index.ts';
import type { ContainerdClient } from './client.ts';
import { isIndexType } from './import/archive.ts';
import { readBlob } from './platform.ts';

/**
 * The parsed index a record's target names; undefined when the target is no index, its blob is gone, or it
 * does not parse. Index blobs are immutable, so `cache` (by digest; null for "not readable") may be kept
 * across calls.
 */
export async function parsedIndexOf(c: ContainerdClient, target: { mediaType: string; digest: string; size?: number }, cache?: Map<string, ParsedIndex | null>): Promise<ParsedIndex | undefined> {
  if (!isIndexType(target.mediaType)) return undefined;
  const cached = cache?.get(target.digest);
  if (cached !== undefined) return cached ?? undefined;
  const bytes = await readBlob(c, target.digest, target.size);
  const parsed = bytes !== undefined ? parseIndex(bytes) : undefined;
  cache?.set(target.digest, parsed ?? null);
  return parsed;
}
