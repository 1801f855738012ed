// The one index per tag (issue 11): deterministic bytes, one manifest per platform, the choice each node
// makes between recorded builds, and which of a node's records the agent rewrites. Pure parts; the real
// containerd and Spegel behaviour is in test/integration/import-spegel.test.ts and spegel-index.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { planAdoptions, planRewrites, type RecordFacts } from '../../src/agent/converge-index.ts';
import { planCollection } from '../../src/agent/collect-images.ts';
import { recordedManifest } from '../../src/agent/build-manifests.ts';
import { LABEL_RECORD_OWNER } from '../../src/containerd/import/labels.ts';
import {
  type Candidate,
  INDEX_ANNOTATION,
  OCI_INDEX,
  parseIndex,
  pickEntries,
  platformIndex,
  type PlatformManifest,
} from '../../src/image/platform-index.ts';

const d = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const m = (n: number, platform: string, completedAt?: string): Candidate => ({
  digest: d(n),
  size: 400 + n,
  mediaType: OCI_MANIFEST,
  platform,
  ...(completedAt ? { completedAt } : {}),
});
const strip = ({ completedAt: _, build: _b, ...e }: Candidate): PlatformManifest => e;

describe('platformIndex', () => {
  it("gives the same bytes for the same entries in any order, each with its platform, annotated as enbi's", () => {
    const a = platformIndex([m(1, 'linux/amd64'), m(2, 'linux/arm64'), m(3, 'linux/arm/v7')].map(strip));
    const b = platformIndex([m(3, 'linux/arm/v7'), m(1, 'linux/amd64'), m(2, 'linux/arm64')].map(strip));
    assert.equal(a.digest, b.digest);
    assert.deepEqual(a.bytes, b.bytes);
    const doc = JSON.parse(a.bytes.toString()) as {
      mediaType: string;
      manifests: { digest: string; platform: { os: string; architecture: string; variant?: string } }[];
      annotations: Record<string, string>;
    };
    assert.equal(doc.mediaType, OCI_INDEX);
    assert.deepEqual(
      doc.manifests.map((e) => [e.platform.os, e.platform.architecture, e.platform.variant]),
      [
        ['linux', 'amd64', undefined],
        ['linux', 'arm', 'v7'],
        ['linux', 'arm64', undefined],
      ],
    );
    assert.equal(doc.annotations[INDEX_ANNOTATION], 'v1');
    assert.deepEqual(parseIndex(a.bytes), { entries: a.entries, enbi: true });
  });

  it('is deterministic for any set of entries (property)', () => {
    const platforms = ['linux/amd64', 'linux/arm64', 'linux/arm/v7', 'linux/riscv64', 'linux/s390x'];
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.constantFrom(...platforms), { minLength: 1 }),
        fc.integer({ min: 1, max: 1e6 }),
        (ps, seed) => {
          const entries = ps.map((p, i) => strip(m(seed + i, p)));
          const shuffled = [...entries].reverse();
          assert.equal(platformIndex(entries).digest, platformIndex(shuffled).digest);
          assert.deepEqual(
            parseIndex(platformIndex(entries).bytes)?.entries.map((e) => e.platform),
            [...ps].sort(),
          );
        },
      ),
    );
  });

  it('refuses two manifests for one platform, no entries, and malformed ones', () => {
    assert.throws(
      () => platformIndex([m(1, 'linux/amd64'), m(2, 'linux/amd64')].map(strip)),
      /two manifests for linux\/amd64/,
    );
    assert.throws(() => platformIndex([]), /at least one/);
    assert.throws(() => platformIndex([{ ...strip(m(1, 'linux/amd64')), digest: 'sha256:zz' }]), /not sha256/);
    assert.throws(
      () => platformIndex([{ ...strip(m(1, 'linux/amd64')), mediaType: OCI_INDEX }]),
      /not an image manifest/,
    );
    assert.throws(() => platformIndex([{ ...strip(m(1, 'linux/amd64')), platform: 'amd64' }]), /os\/arch/);
  });

  it("reads a foreign index as not enbi's, and an index without platforms as unreadable", () => {
    const foreign = JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: OCI_MANIFEST, digest: d(1), size: 5, platform: { os: 'linux', architecture: 'amd64' } }],
    });
    assert.equal(parseIndex(foreign)?.enbi, false);
    assert.equal(
      parseIndex(JSON.stringify({ manifests: [{ mediaType: OCI_MANIFEST, digest: d(1), size: 5 }] })),
      undefined,
    );
    assert.equal(parseIndex('not json'), undefined);
  });
});

describe('pickEntries', () => {
  const none = () => false;
  it('adds the platforms builds recorded to those the index lists, and never drops one', () => {
    const got = pickEntries([m(2, 'linux/arm64')], [strip(m(1, 'linux/amd64'))], none);
    assert.deepEqual(
      got.map((e) => [e.platform, e.digest]),
      [
        ['linux/amd64', d(1)],
        ['linux/arm64', d(2)],
      ],
    );
  });
  it('keeps a manifest the node holds over a newer build of its platform elsewhere (its pods keep running)', () => {
    const held = (x: string) => x === d(1);
    assert.equal(
      pickEntries([m(5, 'linux/amd64', '2026-02-01T00:00:00Z')], [strip(m(1, 'linux/amd64'))], held)[0]!.digest,
      d(1),
    );
    assert.equal(
      pickEntries(
        [m(5, 'linux/amd64', '2026-02-01T00:00:00Z'), m(1, 'linux/amd64', '2026-01-01T00:00:00Z')],
        [],
        held,
      )[0]!.digest,
      d(1),
    );
  });
  it('takes the newest recorded build of a platform the node does not hold, the same on every node', () => {
    const cands = [
      m(5, 'linux/arm64', '2026-01-01T00:00:00Z'),
      m(6, 'linux/arm64', '2026-03-01T00:00:00Z'),
      m(7, 'linux/arm64', '2026-02-01T00:00:00Z'),
    ];
    assert.equal(pickEntries(cands, [], none)[0]!.digest, d(6));
    assert.equal(pickEntries([...cands].reverse(), [strip(m(9, 'linux/arm64'))], none)[0]!.digest, d(6));
  });
});

describe('planRewrites', () => {
  const record = (
    name: string,
    target: string,
    labels: Record<string, string> = { [LABEL_RECORD_OWNER]: 'b' },
    mediaType = OCI_INDEX,
  ) => ({ name, target: { mediaType, digest: target, size: 300 }, labels, updatedAt: 0 });
  const amd = strip(m(1, 'linux/amd64'));
  const arm = m(2, 'linux/arm64');
  const one = platformIndex([amd]);
  const both = platformIndex([amd, strip(arm)]);
  const cands = (name: string): Candidate[] => (name === 'registry.local/app:v1' ? [{ ...amd }, arm] : []);
  const held = (x: string) => x === amd.digest;

  it("moves enbi's tag to the index of every platform built, and leaves one already there", () => {
    const facts: RecordFacts[] = [
      {
        record: record('registry.local/app:v1', one.digest),
        parsed: { entries: one.entries, enbi: true },
        indexOwned: true,
      },
    ];
    const r = planRewrites(facts, cands, held);
    assert.equal(r.length, 1);
    assert.equal(r[0]!.index.digest, both.digest);
    assert.deepEqual(
      planRewrites(
        [
          {
            record: record('registry.local/app:v1', both.digest),
            parsed: { entries: both.entries, enbi: true },
            indexOwned: true,
          },
        ],
        cands,
        held,
      ),
      [],
    );
  });
  it("rewrites only records with enbi's owner label: never one without it, whatever its index says, nor a digest record or an unknown name", () => {
    // What the CRI leaves after a pull through Spegel, and what another tool imports with the annotation: no label, no rewrite.
    const pulled = {
      record: record('registry.local/app:v1', one.digest, { 'io.cri-containerd.image': 'managed' }),
      parsed: { entries: one.entries, enbi: true },
    };
    assert.deepEqual(planRewrites([pulled], cands, held), []);
    const forged = {
      record: record('registry.local/app:v1', d(99), {}),
      parsed: { entries: [strip(m(9, 'linux/amd64'))], enbi: true },
    };
    assert.deepEqual(planRewrites([forged], cands, held), []);
    const byDigest = { record: record(`registry.local/app@${amd.digest}`, amd.digest, undefined, OCI_MANIFEST) };
    assert.deepEqual(planRewrites([byDigest], cands, held), []);
    assert.deepEqual(
      planRewrites(
        [
          {
            record: record('registry.local/other:v1', one.digest),
            parsed: { entries: one.entries, enbi: true },
            indexOwned: true,
          },
        ],
        cands,
        held,
      ),
      [],
    );
  });
  it('carries over the entries of an index enbi did not write here only where a NixBuild recorded them', () => {
    // enbi's record, re-pointed (e.g. by a CRI pull with imagePullPolicy Always) at an index from elsewhere
    // listing a manifest no build of this tag recorded: that entry is dropped, the index labelled enbi's.
    const riscv = strip(m(50, 'linux/riscv64'));
    const elsewhere = platformIndex([amd, riscv]);
    const r = planRewrites(
      [
        {
          record: record('registry.local/app:v1', elsewhere.digest),
          parsed: { entries: elsewhere.entries, enbi: true },
          indexOwned: false,
        },
      ],
      cands,
      held,
    );
    assert.deepEqual(
      r[0]!.index.entries.map((e) => e.platform),
      ['linux/amd64', 'linux/arm64'],
    );
    // The same index written by enbi here keeps the platform (a deleted build's platform stays).
    const mine = planRewrites(
      [
        {
          record: record('registry.local/app:v1', elsewhere.digest),
          parsed: { entries: elsewhere.entries, enbi: true },
          indexOwned: true,
        },
      ],
      cands,
      held,
    );
    assert.deepEqual(
      mine[0]!.index.entries.map((e) => e.platform),
      ['linux/amd64', 'linux/arm64', 'linux/riscv64'],
    );
    // enbi's record at its canonical index, but the blob unlabelled (written before the label existed): rewritten in place once, to label it.
    const unlabelled = planRewrites(
      [
        {
          record: record('registry.local/app:v1', both.digest),
          parsed: { entries: both.entries, enbi: true },
          indexOwned: false,
        },
      ],
      cands,
      held,
    );
    assert.deepEqual(
      unlabelled.map((x) => [x.from, x.index.digest]),
      [[both.digest, both.digest]],
    );
  });
  it("upgrades enbi's older record at a bare manifest to an index that keeps that manifest", () => {
    const old = {
      record: record('registry.local/app:v1', amd.digest, undefined, OCI_MANIFEST),
      manifestPlatforms: ['linux/amd64'],
    };
    const r = planRewrites([old], cands, held);
    assert.deepEqual(
      r[0]!.index.entries.map((e) => e.digest),
      [amd.digest, arm.digest],
    );
  });
});

describe('planAdoptions', () => {
  const record = (name: string, target: string, labels: Record<string, string> = {}) => ({
    name,
    target: { mediaType: OCI_INDEX, digest: target, size: 300 },
    labels,
    updatedAt: 0,
  });
  const amd = { ...m(1, 'linux/amd64'), build: 'nb-amd' };
  const cands = (name: string): Candidate[] => (name === 'registry.local/app:v1' ? [amd] : []);
  const one = platformIndex([strip(amd)]);

  it("adopts a tag pulled from enbi's index (the exact bytes enbi writes for manifests a NixBuild of the tag recorded), owned by that build", () => {
    const pulled = {
      record: record('registry.local/app:v1', one.digest, { 'io.cri-containerd.image': 'managed' }),
      parsed: { entries: one.entries, enbi: true },
    };
    assert.deepEqual(planAdoptions([pulled], cands), [
      { name: 'registry.local/app:v1', target: one.digest, owner: 'nb-amd' },
    ]);
  });
  it('adopts nothing else: a forged annotation over another manifest, other bytes, another name, a labelled or digest record', () => {
    // Another tool's image whose index carries ee.hrzn.enbi.index: v1 but lists its own manifest.
    const theirs = platformIndex([strip(m(9, 'linux/amd64'))]);
    assert.equal(parseIndex(theirs.bytes)?.enbi, true, 'the mark is there');
    assert.deepEqual(
      planAdoptions(
        [{ record: record('registry.local/app:v1', theirs.digest), parsed: { entries: theirs.entries, enbi: true } }],
        cands,
      ),
      [],
    );
    // enbi's manifest, in an index that is not byte for byte enbi's (so its other fields are someone else's).
    assert.deepEqual(
      planAdoptions(
        [{ record: record('registry.local/app:v1', d(77)), parsed: { entries: one.entries, enbi: true } }],
        cands,
      ),
      [],
    );
    // A recorded manifest beside one nobody recorded.
    const mixed = platformIndex([strip(amd), strip(m(9, 'linux/arm64'))]);
    assert.deepEqual(
      planAdoptions(
        [{ record: record('registry.local/app:v1', mixed.digest), parsed: { entries: mixed.entries, enbi: true } }],
        cands,
      ),
      [],
    );
    assert.deepEqual(
      planAdoptions(
        [{ record: record('registry.local/other:v1', one.digest), parsed: { entries: one.entries, enbi: true } }],
        cands,
      ),
      [],
    );
    assert.deepEqual(
      planAdoptions(
        [
          {
            record: record('registry.local/app:v1', one.digest, { [LABEL_RECORD_OWNER]: 'nb' }),
            parsed: { entries: one.entries, enbi: true },
          },
        ],
        cands,
      ),
      [],
    );
    assert.deepEqual(
      planAdoptions(
        [
          {
            record: record(`registry.local/app@${one.digest}`, one.digest),
            parsed: { entries: one.entries, enbi: true },
          },
        ],
        cands,
      ),
      [],
    );
  });
});

describe('recordedManifest', () => {
  it('normalizes the names a NixBuild imported and takes its manifest with its completion time', () => {
    const r = recordedManifest({
      spec: { images: ['registry.local/app:v1', 'app:v1'] },
      status: {
        manifest: { digest: d(1), size: 5, mediaType: OCI_MANIFEST, platform: 'linux/amd64' },
        completionTime: '2026-01-01T00:00:00Z',
      },
    });
    assert.deepEqual(r?.names, ['registry.local/app:v1', 'docker.io/library/app:v1']);
    assert.equal(r?.candidate.completedAt, '2026-01-01T00:00:00Z');
    assert.equal(
      recordedManifest({
        metadata: { name: 'nb-1' },
        spec: { images: ['a:1'] },
        status: { manifest: { digest: d(1), size: 5, mediaType: OCI_MANIFEST, platform: 'linux/amd64' } },
      })?.candidate.build,
      'nb-1',
    );
    // A build the controller found claiming Git's image name with another flake: nothing of it is followed.
    const claimed = {
      spec: { images: ['registry.local/app:v1'] },
      status: {
        manifest: { digest: d(1), size: 5, mediaType: OCI_MANIFEST, platform: 'linux/amd64' },
        conditions: [{ type: 'Ready', status: 'False', reason: 'ImageClaimed' }],
      },
    };
    assert.equal(recordedManifest(claimed), undefined);
    assert.equal(recordedManifest({ spec: { images: ['a:1'] }, status: {} }), undefined);
    assert.equal(
      recordedManifest({ spec: { images: ['a@sha256:' + '0'.repeat(64)] }, status: { manifest: { digest: d(1) } } }),
      undefined,
    );
  });
});

describe('planCollection', () => {
  const OWN = { [LABEL_RECORD_OWNER]: 'nb' };
  const rec = (name: string, digest: string, labels: Record<string, string> = OWN, mediaType = OCI_INDEX) => ({
    name,
    target: { mediaType, digest, size: 300 },
    labels,
    updatedAt: 0,
  });
  const amd = strip(m(1, 'linux/amd64'));
  const arm = strip(m(2, 'linux/arm64'));
  const idx = platformIndex([amd, arm]);
  const other = platformIndex([strip(m(7, 'linux/amd64'))]);
  const indexOf = (d: string) =>
    d === idx.digest
      ? { entries: idx.entries, enbi: true }
      : d === other.digest
        ? { entries: other.entries, enbi: true }
        : undefined;
  const records = [
    rec('registry.local/app:v1', idx.digest),
    rec(`registry.local/app@${amd.digest}`, amd.digest, OWN, OCI_MANIFEST),
    rec(`registry.local/app@${arm.digest}`, arm.digest, OWN, OCI_MANIFEST),
    rec(`sha256:${'c'.repeat(64)}`, idx.digest, { 'io.cri-containerd.image': 'managed' }),
    rec('registry.local/app:v2', other.digest),
    rec('docker.io/library/postgres:16', d(9), {}, OCI_MANIFEST),
  ];

  it("removes an orphaned tag with its digest records and the CRI's id, nothing else", () => {
    const c = planCollection(['registry.local/app:v1'], records, indexOf, []);
    assert.deepEqual(
      c.remove.sort(),
      [
        'registry.local/app:v1',
        `registry.local/app@${amd.digest}`,
        `registry.local/app@${arm.digest}`,
        `sha256:${'c'.repeat(64)}`,
      ].sort(),
    );
    assert.deepEqual([c.inUse, c.skipped], [[], []]);
  });
  it('keeps what a container uses, by tag, by digest or by id', () => {
    for (const used of ['registry.local/app:v1', `registry.local/app@${arm.digest}`, `sha256:${'c'.repeat(64)}`]) {
      const c = planCollection(['registry.local/app:v1'], records, indexOf, [used]);
      assert.deepEqual([c.remove, c.inUse], [[], ['registry.local/app:v1']], used);
    }
  });
  it('never touches a record enbi did not write, and keeps the id while another tag holds the target', () => {
    assert.deepEqual(planCollection(['docker.io/library/postgres:16'], records, indexOf, []).skipped, [
      'docker.io/library/postgres:16',
    ]);
    // A tag without enbi's label at an index carrying the annotation (forged, or pulled and never adopted): skipped.
    const forged = [
      rec('registry.local/app:v1', idx.digest, { 'io.cri-containerd.image': 'managed' }),
      rec(`registry.local/app@${amd.digest}`, amd.digest, OWN, OCI_MANIFEST),
    ];
    assert.deepEqual(planCollection(['registry.local/app:v1'], forged, indexOf, []), {
      remove: [],
      inUse: [],
      skipped: ['registry.local/app:v1'],
    });
    // enbi's tag: a digest record its index names but enbi did not write stays.
    const theirDigest = [
      rec('registry.local/app:v1', idx.digest),
      rec(`registry.local/app@${amd.digest}`, amd.digest, {}, OCI_MANIFEST),
    ];
    assert.deepEqual(planCollection(['registry.local/app:v1'], theirDigest, indexOf, []).remove, [
      'registry.local/app:v1',
    ]);
    const shared = [...records, rec('registry.local/app:alias', idx.digest, {})];
    const c = planCollection(['registry.local/app:v1'], shared, indexOf, []);
    assert.ok(!c.remove.includes(`sha256:${'c'.repeat(64)}`), 'the id stays: app:alias still points at the image');
    // A manifest another named tag lists keeps its digest record.
    const also = [...records, rec('registry.local/app:v3', idx.digest)];
    assert.ok(
      !planCollection(['registry.local/app:v1'], also, indexOf, []).remove.includes(`registry.local/app@${amd.digest}`),
    );
  });
});
