// What Spegel needs to share an image, checked on a containerd: every blob reachable from the image record
// (index, manifests, config, layers) carries containerd.io/distribution.source.<registry>=<repository>,
// the record `<repository>@<digest>` exists, and the records are pinned.
import assert from 'node:assert/strict';
import { ContainerdClient } from '../../src/containerd/client.ts';
import { listImages, nameFilter } from '../../src/containerd/images.ts';
import { readBlob } from '../../src/containerd/platform.ts';
import { contentInfo } from '../../src/containerd/import/content.ts';
import { parseImageRef } from '../../src/image/reference.ts';
import { OCI_INDEX, parseIndex } from '../../src/image/platform-index.ts';

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
}

/** Every blob reachable from a descriptor, with its labels (missing blobs of other platforms skipped). */
export async function reachableBlobs(
  c: ContainerdClient,
  target: Desc,
): Promise<{ desc: Desc; labels: Record<string, string> }[]> {
  const out: { desc: Desc; labels: Record<string, string> }[] = [];
  const walk = async (d: Desc, optional: boolean): Promise<void> => {
    let labels: Record<string, string>;
    try {
      labels = (await contentInfo(c, d.digest)).labels;
    } catch (e) {
      if (optional) return;
      throw e;
    }
    out.push({ desc: d, labels });
    if (/manifest|index/.test(d.mediaType)) {
      const doc = JSON.parse((await readBlob(c, d.digest))!.toString('utf8')) as {
        manifests?: Desc[];
        config?: Desc;
        layers?: Desc[];
      };
      for (const m of doc.manifests ?? []) await walk(m, true);
      if (doc.config) await walk(doc.config, false);
      for (const l of doc.layers ?? []) await walk(l, false);
    }
  };
  await walk(target, false);
  return out;
}

/**
 * Asserts that `ref` (a tag) is shareable by Spegel on this containerd and safe to spread: the tag points at
 * an OCI index enbi wrote (every entry names its platform), listing `digest` (the platform manifest) when
 * given; `<repository>@<manifest>` exists for each listed manifest held here; every blob reachable carries
 * the distribution-source label; the records are pinned. Returns the index digest and the held manifests.
 */
export async function assertSpegelReady(
  socket: string,
  ref: string,
  o: { digest?: string; platforms?: string[]; namespace?: string } = {},
): Promise<{ digest: string; index: string; manifests: string[]; blobs: number }> {
  const c = new ContainerdClient(socket, { namespace: o.namespace ?? 'k8s.io' });
  try {
    const r = parseImageRef(ref);
    const [img] = await listImages(c, [nameFilter(ref)]);
    assert.ok(img, `${ref} in containerd`);
    assert.equal(img.target.mediaType, OCI_INDEX, `${ref} points at an OCI index, never a bare manifest`);
    assert.equal(img.labels['io.cri-containerd.pinned'], 'pinned', `${ref} is pinned`);
    const parsed = parseIndex((await readBlob(c, img.target.digest))!);
    assert.ok(parsed?.enbi, `${ref}'s index is enbi's, each entry with its platform`);
    if (o.digest !== undefined)
      assert.ok(
        parsed.entries.some((e) => e.digest === o.digest),
        `${ref}'s index lists ${o.digest}: ${JSON.stringify(parsed.entries)}`,
      );
    if (o.platforms !== undefined)
      assert.deepEqual(
        parsed.entries.map((e) => e.platform),
        o.platforms,
      );
    const held: string[] = [];
    for (const e of parsed.entries) {
      if ((await readBlob(c, e.digest)) === undefined) continue;
      held.push(e.digest);
      const byDigest = `${r.registry}/${r.repository}@${e.digest}`;
      const [dig] = await listImages(c, [nameFilter(byDigest)]);
      assert.ok(dig, `${byDigest} in containerd`);
      assert.equal(dig.target.digest, e.digest);
      assert.equal(dig.labels['io.cri-containerd.pinned'], 'pinned', `${byDigest} is pinned`);
    }
    assert.ok(held.length > 0, `${ref}: some manifest of its index is held here`);
    const key = `containerd.io/distribution.source.${r.registry}`;
    const blobs = await reachableBlobs(c, img.target);
    assert.ok(blobs.length >= 4, `index, manifest, config and at least one layer (${blobs.length} blobs)`);
    for (const b of blobs) {
      assert.ok(
        (b.labels[key] ?? '').split(',').includes(r.repository),
        `blob ${b.desc.digest} (${b.desc.mediaType}) has ${key} including ${r.repository}: ${JSON.stringify(b.labels)}`,
      );
    }
    return { digest: held[0]!, index: img.target.digest, manifests: held, blobs: blobs.length };
  } finally {
    c.close();
  }
}
