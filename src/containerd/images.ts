// containerd's image records (images.v1 List): name → target descriptor, with labels.
import type { ContainerdClient } from './client.ts';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface ContainerdImage {
  /** The full reference containerd keys the record by, e.g. docker.io/library/busybox:1.36 or sha256:… */
  name: string;
  /** The index or manifest the name points at. */
  target: Descriptor;
  labels: Record<string, string>;
  /** When the record last changed (ms since the epoch), 0 when containerd did not say. */
  updatedAt: number;
}

interface WireTimestamp {
  seconds: number;
  nanos: number;
}
interface WireImage {
  name: string;
  labels: Record<string, string>;
  target: Descriptor | null;
  updatedAt: WireTimestamp | null;
}

export const timestampMs = (t: WireTimestamp | null | undefined): number =>
  t ? t.seconds * 1000 + Math.floor(t.nanos / 1e6) : 0;

/**
 * A containerd filter selecting one image by name. The value is double-quoted: containerd's filter syntax
 * unquotes it with Go's rules, which JSON's quoting of an image reference (ASCII, no control characters) meets.
 */
export const nameFilter = (name: string): string => `name==${JSON.stringify(name)}`;

/** Image records of the client's namespace matching any of the filters (all of them without filters). */
export async function listImages(c: ContainerdClient, filters: string[] = []): Promise<ContainerdImage[]> {
  const res = await c.unary<{ images: WireImage[] }>('images', 'List', { filters });
  return res.images.map((i) => ({
    name: i.name,
    target: { mediaType: i.target?.mediaType ?? '', digest: i.target?.digest ?? '', size: i.target?.size ?? 0 },
    labels: i.labels,
    updatedAt: timestampMs(i.updatedAt),
  }));
}
