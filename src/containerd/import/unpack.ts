// Unpacking an image's layers into a snapshotter over gRPC, as containerd's own unpacker does: per layer,
// Prepare an active snapshot on the parent chain, Diff.Apply the layer blob onto its mounts, Commit it under
// its chain id. Layers already unpacked (same chain id) are skipped. Run under the import's lease, so the
// snapshots outlive GC until the config's gc.ref.snapshot label references the top one.
import { randomBytes } from 'node:crypto';
import { isAlreadyExists, isNotFound, type ContainerdClient } from '../client.ts';
import { chainIds, type Desc } from './labels.ts';

interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

async function snapshotExists(c: ContainerdClient, snapshotter: string, key: string): Promise<boolean> {
  try {
    await c.unary('snapshots', 'Stat', { snapshotter, key });
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

export interface UnpackResult {
  /** Chain id of the whole stack: the snapshot a container of this image starts from. */
  chainId: string;
  /** Layers applied now (the others were unpacked already). */
  applied: number;
}

/**
 * Unpacks `layers` (whose uncompressed digests are `diffIds`, from the config) into `snapshotter`.
 * Fails when a layer's content does not match its diff id.
 */
export async function unpackLayers(
  c: ContainerdClient,
  snapshotter: string,
  layers: Desc[],
  diffIds: string[],
): Promise<UnpackResult> {
  if (layers.length !== diffIds.length)
    throw new Error(`the config lists ${diffIds.length} diff ids for ${layers.length} layers`);
  if (layers.length === 0) throw new Error('the image has no layers');
  const chain = chainIds(diffIds);
  let applied = 0;
  for (let i = 0; i < layers.length; i++) {
    const chainId = chain[i]!;
    if (await snapshotExists(c, snapshotter, chainId)) continue;
    const parent = i === 0 ? '' : chain[i - 1]!;
    // containerd's unpack key format ("extract-<unique> <chain id>"): recognisable as an unfinished unpack.
    const key = `extract-${Date.now()}${randomBytes(3).toString('hex')} ${chainId}`;
    let mounts: Mount[];
    try {
      mounts = (
        await c.unary<{ mounts: Mount[] }>('snapshots', 'Prepare', {
          snapshotter,
          key,
          parent,
          labels: { 'containerd.io/snapshot.ref': chainId },
        })
      ).mounts;
    } catch (e) {
      if (isAlreadyExists(e) && (await snapshotExists(c, snapshotter, chainId))) continue;
      throw e;
    }
    try {
      const res = await c.unary<{ applied: Desc | null }>('diff', 'Apply', { diff: layers[i], mounts }, 30 * 60_000);
      if (res.applied?.digest !== diffIds[i])
        throw new Error(
          `layer ${layers[i]!.digest} unpacks to ${res.applied?.digest ?? 'nothing'}, but the config says diff id ${diffIds[i]}`,
        );
      try {
        await c.unary('snapshots', 'Commit', { snapshotter, name: chainId, key });
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
        await c.unary('snapshots', 'Remove', { snapshotter, key }).catch(() => undefined);
      }
      applied++;
    } catch (e) {
      await c.unary('snapshots', 'Remove', { snapshotter, key }).catch(() => undefined);
      throw e;
    }
  }
  return { chainId: chain.at(-1)!, applied };
}
