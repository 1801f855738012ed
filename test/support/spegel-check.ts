// What Spegel needs to share an image, checked on a containerd: every blob reachable from the image record
// (index, manifests, config, layers) carries containerd.io/distribution.source.<registry>=<repository>,
// the record `<repository>@<digest>` exists, and the records are pinned.
import assert from 'node:assert/strict';
import { ContainerdClient } from '../../src/containerd/client.ts';
import { listImages, nameFilter } from '../../src/containerd/images.ts';
import { readBlob } from '../../src/containerd/platform.ts';
import { contentInfo } from '../../src/containerd/import/content.ts';
import { parseImageRef } from '../../src/image/reference.ts';

interface Desc { mediaType: string; digest: string; size: number }

/** Every blob reachable from a descriptor, with its labels (missing blobs of other platforms skipped). */
export async function reachableBlobs(c: ContainerdClient, target: Desc): Promise<{ desc: Desc; labels: Record<string, string> }[]> {
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
      const doc = JSON.parse((await readBlob(c, d.digest))!.toString('utf8')) as { manifests?: Desc[]; config?: Desc; layers?: Desc[] };
      for (const m of doc.manifests ?? []) await walk(m, true);
      if (doc.config) await walk(doc.config, false);
      for (const l of doc.layers ?? []) await walk(l, false);
    }
  };
  await walk(target, false);
  return out;
}

/** Asserts that `ref` (a tag) is shareable by Spegel on this containerd; returns the record's target digest. */
export async function assertSpegelReady(socket: string, ref: string, o: { digest?: string; namespace?: string } = {}): Promise<{ digest: string; blobs: number }> {
  const c = new ContainerdClient(socket, { namespace: o.namespace ?? 'k8s.io' });
  try {
    const r = parseImageRef(ref);
    const [img] = await listImages(c, [nameFilter(ref)]);
    assert.ok(img, `${ref} in containerd`);
    if (o.digest !== undefined) assert.equal(img.target.digest, o.digest, `${ref} points at the reported digest`);
    assert.equal(img.labels['io.cri-containerd.pinned'], 'pinned', `${ref} is pinned`);
    const byDigest = `${r.registry}/${r.repository}@${img.target.digest}`;
    const [dig] = await listImages(c, [nameFilter(byDigest)]);
    assert.ok(dig, `${byDigest} in containerd`);
    assert.equal(dig.target.digest, img.target.digest);
    assert.equal(dig.labels['io.cri-containerd.pinned'], 'pinned', `${byDigest} is pinned`);
    const key = `containerd.io/distribution.source.${r.registry}`;
    const blobs = await reachableBlobs(c, img.target);
    assert.ok(blobs.length >= 3, `manifest, config and at least one layer (${blobs.length} blobs)`);
    for (const b of blobs) {
      assert.ok((b.labels[key] ?? '').split(',').includes(r.repository), `blob ${b.desc.digest} (${b.desc.mediaType}) has ${key} including ${r.repository}: ${JSON.stringify(b.labels)}`);
    }
    return { digest: img.target.digest, blobs: blobs.length };
  } finally {
    c.close();
  }
}
