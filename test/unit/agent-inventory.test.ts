// The agent's pure parts: containerd records → NodeImages status (grouping, bounds), the comparison that
// decides whether to write, platform names, and the inventory as the controller and diff read it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NODE_IMAGES_LIMITS, nodeImagesStatusSchema, type NodeImagesStatus } from '../../src/api/nodeimages.ts';
import { buildInventory, sameInventory } from '../../src/agent/inventory.ts';
import { inventoryToNodeView, nodePlatform, withInventory } from '../../src/cluster/inventory.ts';
import { nodeViewOf } from '../../src/cluster/node-view.ts';
import { ContainerdClient } from '../../src/containerd/client.ts';
import { formatPlatform } from '../../src/containerd/platform.ts';

const d = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;
const rec = (name: string, digest: string) => ({ name, target: { digest } });
const plat = () => ['linux/amd64'];

describe('buildInventory', () => {
  it('groups names by digest, sorted, and counts images and names', () => {
    const inv = buildInventory(
      [rec('b.io/x:2', d(2)), rec('a.io/x:1', d(1)), rec(d(9), d(1)), rec('a.io/x:1b', d(1))],
      plat,
    );
    assert.deepEqual(inv, {
      images: [
        { digest: d(1), names: ['a.io/x:1', 'a.io/x:1b', d(9)], platforms: ['linux/amd64'] },
        { digest: d(2), names: ['b.io/x:2'], platforms: ['linux/amd64'] },
      ],
      imageCount: 2,
      nameCount: 4,
      truncated: false,
    });
  });

  it('cuts at maxImages, at the byte budget and at maxNamesPerImage, and says so', () => {
    const many = Array.from({ length: 30 }, (_, i) => rec(`r.io/img:${i}`, d(i)));
    const byCount = buildInventory(many, plat, { ...NODE_IMAGES_LIMITS, maxImages: 10 });
    assert.equal(byCount.images.length, 10);
    assert.equal(byCount.imageCount, 30);
    assert.equal(byCount.truncated, true);
    const one = Buffer.byteLength(JSON.stringify(byCount.images[0])) + 1;
    const byBytes = buildInventory(many, plat, { ...NODE_IMAGES_LIMITS, maxImagesBytes: 2 + 5 * one + 3 });
    assert.equal(byBytes.images.length, 5);
    assert.ok(Buffer.byteLength(JSON.stringify(byBytes.images)) <= 2 + 5 * one + 3);
    assert.equal(byBytes.truncated, true);
    const tagged = Array.from({ length: 5 }, (_, i) => rec(`r.io/img:${i}`, d(1)));
    const byNames = buildInventory(tagged, plat, { ...NODE_IMAGES_LIMITS, maxNamesPerImage: 3 });
    assert.deepEqual(byNames.images[0]?.names, ['r.io/img:0', 'r.io/img:1', 'r.io/img:2']);
    assert.equal(byNames.truncated, true);
  });

  it('keeps 2,500 typical images (a tag, a name@digest, the CRI id: about 400 bytes each) within 1 MiB (the documented bound)', () => {
    const many = Array.from({ length: 2500 }, (_, i) => [
      rec(`registry.example.org/team/service-${i}:v1.2.${i}`, d(i)),
      rec(`registry.example.org/team/service-${i}@${d(i)}`, d(i)),
      rec(d(i + 100_000), d(i)),
    ]).flat();
    const inv = buildInventory(many, plat);
    assert.equal(inv.truncated, false);
    assert.ok(Buffer.byteLength(JSON.stringify(inv.images)) <= NODE_IMAGES_LIMITS.maxImagesBytes);
    assert.ok(
      nodeImagesStatusSchema.safeParse({
        source: 'containerd',
        namespace: 'k8s.io',
        observedAt: 'x',
        imageCount: inv.imageCount,
        nameCount: inv.nameCount,
        truncated: inv.truncated,
        images: inv.images,
      }).success,
    );
  });
});

const status = (over: Partial<NodeImagesStatus> = {}): NodeImagesStatus => ({
  source: 'containerd',
  containerdVersion: '1.6.20',
  namespace: 'k8s.io',
  observedAt: '2026-01-01T00:00:00.000Z',
  resyncSeconds: 600,
  imageCount: 2,
  nameCount: 3,
  truncated: false,
  images: [
    { digest: d(1), names: ['docker.io/library/busybox:1', d(5)], platforms: ['linux/amd64'] },
    { digest: d(2), names: ['enbi.test/arm:1'], platforms: ['linux/arm64'] },
  ],
  ...over,
});

describe('sameInventory', () => {
  it('ignores observedAt and nothing else', () => {
    assert.ok(sameInventory(status(), status({ observedAt: '2027-01-01T00:00:00Z' })));
    assert.ok(!sameInventory(status(), status({ truncated: true })));
    assert.ok(!sameInventory(status(), status({ images: status().images.slice(1) })));
    assert.ok(!sameInventory(status(), undefined));
  });
});

describe('inventoryToNodeView', () => {
  const now = new Date('2026-01-01T00:05:00Z');
  const ni = (s: Partial<NodeImagesStatus> = {}) => ({
    apiVersion: 'enbi.hrzn.ee/v1alpha1',
    kind: 'NodeImages',
    metadata: { name: 'n1' },
    status: status(s),
  });

  it("gives the normalized names runnable on the node's platform, complete unless truncated", () => {
    const amd = inventoryToNodeView(ni(), { platform: 'linux/amd64', now });
    assert.deepEqual([...(amd?.images ?? [])].sort(), ['docker.io/library/busybox:1', d(5)]);
    assert.equal(amd?.imagesComplete, true);
    assert.equal(amd?.imageSource, 'agent');
    const arm = inventoryToNodeView(ni(), { platform: 'linux/arm64/v8', now });
    assert.deepEqual([...(arm?.images ?? [])], ['enbi.test/arm:1']);
    assert.equal(inventoryToNodeView(ni({ truncated: true }), { now })?.imagesComplete, false);
  });

  it('is undefined (use Node.status.images) without a status, or when stale', () => {
    assert.equal(inventoryToNodeView({ metadata: { name: 'n1' } }, { now }), undefined);
    assert.equal(inventoryToNodeView(ni({ observedAt: '2025-12-31T23:00:00Z' }), { now }), undefined);
    assert.ok(inventoryToNodeView(ni({ observedAt: '2025-12-31T23:50:00Z' }), { now }));
    assert.equal(
      inventoryToNodeView(ni({ observedAt: '2025-12-31T23:50:00Z', resyncSeconds: 60 }), { now }),
      undefined,
    );
  });

  it('an agent clock running ahead, or a stated resync of days, cannot keep a dead agent trusted', () => {
    // Dated a day ahead, no server record: not believed at all (its age would be negative for a day).
    assert.equal(inventoryToNodeView(ni({ observedAt: '2026-01-02T00:05:00Z' }), { now }), undefined);
    // A little ahead (clocks differ): believed.
    assert.ok(inventoryToNodeView(ni({ observedAt: '2026-01-01T00:05:30Z' }), { now }));
    // A stated resync of a week is believed as an hour: 2 h 1 min at most, not two weeks.
    const week = 7 * 24 * 3600;
    assert.ok(inventoryToNodeView(ni({ observedAt: '2025-12-31T22:05:00Z', resyncSeconds: week }), { now }));
    assert.equal(
      inventoryToNodeView(ni({ observedAt: '2025-12-31T21:00:00Z', resyncSeconds: week }), { now }),
      undefined,
    );
    // A zero or negative period is believed as 10 s.
    assert.equal(
      inventoryToNodeView(ni({ observedAt: '2026-01-01T00:03:00Z', resyncSeconds: -5 }), { now }),
      undefined,
    );
    assert.ok(inventoryToNodeView(ni({ observedAt: '2026-01-01T00:04:30Z', resyncSeconds: 0 }), { now }));
  });

  it("withInventory replaces a node-status view's images", () => {
    const node = {
      metadata: { name: 'n1', labels: { 'kubernetes.io/arch': 'amd64', 'kubernetes.io/os': 'linux' } },
      status: { images: Array.from({ length: 50 }, (_, i) => ({ names: [`x:${i}`] })) },
    };
    const view = nodeViewOf(node);
    assert.equal(view.imagesComplete, false);
    assert.equal(nodePlatform(view.labels), 'linux/amd64');
    const merged = withInventory(view, ni(), { now });
    assert.equal(merged.imageSource, 'agent');
    assert.equal(merged.imagesComplete, true);
    assert.ok(merged.images.has('docker.io/library/busybox:1'));
    assert.ok(!merged.images.has('enbi.test/arm:1'));
    assert.equal(withInventory(view, undefined, { now }), view);
  });
});

describe('containerd pieces', () => {
  it("formats platforms in containerd's normal form", () => {
    assert.equal(formatPlatform({ os: 'linux', architecture: 'arm64', variant: 'v8' }), 'linux/arm64');
    assert.equal(formatPlatform({ os: 'linux', architecture: 'arm' }), 'linux/arm/v7');
    assert.equal(formatPlatform({ os: 'linux', architecture: 'arm', variant: '6' }), 'linux/arm/v6');
    assert.equal(formatPlatform({ os: 'linux', architecture: 'amd64' }), 'linux/amd64');
  });

  it('the descriptor resolves (every type it names exists) without connecting', () => {
    const c = new ContainerdClient('/nonexistent/containerd.sock');
    assert.equal(c.namespace, 'k8s.io');
    c.close();
  });
});
