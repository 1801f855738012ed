// Writes test/unit/fixtures/containerd-wire.json: messages of the containerd descriptor with every field
// set, the bytes protobuf.js (as @grpc/proto-loader used it) encodes them to, and the object it decodes
// those bytes to. The codec's unit test checks both directions against them, so its behaviour stays pinned
// to what grpc-js gave even where protobuf.js is not installed.
//   node test/support/wire-fixtures.ts
import { writeFileSync } from 'node:fs';
import { CONTAINERD_DESCRIPTOR } from '../../src/containerd/descriptor.ts';
import { protobufjsOracle } from './protobufjs-oracle.ts';

export interface WireFixture {
  type: string;
  /** What a caller passes (Buffers as { $bytes: base64 }). */
  input: unknown;
  hex: string;
  /** What proto-loader's deserializer returned for those bytes (Buffers as { $bytes: base64 }). */
  decoded: unknown;
}

const img = 'containerd.services.images.v1.';
const content = 'containerd.services.content.v1.';
const desc = {
  mediaType: 'application/vnd.oci.image.index.v1+json',
  digest: `sha256:${'ab'.repeat(32)}`,
  size: 1234,
  annotations: { 'org.opencontainers.image.ref.name': 'v1' },
};
const inputs: [string, unknown][] = [
  [`${img}ListImagesRequest`, { filters: ['name=="registry.local/app:v1"', 'labels."enbi.hrzn.ee/nixbuild"'] }],
  [
    `${img}ListImagesResponse`,
    {
      images: [
        {
          name: 'registry.local/app:v1',
          labels: { 'enbi.hrzn.ee/nixbuild': 'app-1', 'io.cri-containerd.pinned': 'pinned' },
          target: desc,
          createdAt: { seconds: 1764547200, nanos: 123456789 },
          updatedAt: { seconds: 1764547201, nanos: 0 },
        },
        { name: 'sha256:00', labels: {}, target: { mediaType: 'm', digest: 'd', size: 0 } },
      ],
    },
  ],
  [`${img}GetImageResponse`, { image: { name: 'ünïcode/ℵ:v1', target: { ...desc, size: 2 ** 53 - 1 } } }],
  [
    `${img}UpdateImageRequest`,
    { image: { name: 'a', labels: { k: '' }, target: desc }, updateMask: { paths: ['labels.k'] } },
  ],
  [`${img}DeleteImageRequest`, { name: 'a', sync: true }],
  [
    `${content}WriteContentRequest`,
    {
      action: 'COMMIT',
      ref: 'enbi-import-1',
      total: 5,
      expected: 'sha256:x',
      offset: 0,
      data: { $bytes: Buffer.from('hello').toString('base64') },
      labels: { 'containerd.io/distribution.source.registry.local': 'app' },
    },
  ],
  [
    `${content}WriteContentRequest`,
    { action: 'WRITE', ref: 'r', offset: 3 * 2 ** 32 + 7, data: { $bytes: Buffer.alloc(600, 7).toString('base64') } },
  ],
  [`${content}WriteContentResponse`, { action: 'COMMIT', offset: 5, total: 5, digest: 'sha256:x' }],
  [`${content}ReadContentRequest`, { digest: 'sha256:x', offset: 0, size: -1 }],
  [
    `${content}ReadContentResponse`,
    { offset: 1048576, data: { $bytes: Buffer.from([0, 1, 2, 255]).toString('base64') } },
  ],
  [
    `${content}InfoResponse`,
    { info: { digest: 'sha256:x', size: 42, createdAt: { seconds: -1, nanos: -5 }, labels: { a: 'b' } } },
  ],
  [
    'containerd.types.Envelope',
    {
      timestamp: { seconds: 1764547200, nanos: 5 },
      namespace: 'k8s.io',
      topic: '/images/create',
      event: { typeUrl: 'containerd.events.ImageCreate', value: { name: 'registry.local/app:v1' } },
    },
  ],
  [
    'containerd.services.snapshots.v1.PrepareSnapshotResponse',
    { mounts: [{ type: 'overlay', source: 'overlay', target: '', options: ['index=off', 'lowerdir=/a:/b'] }] },
  ],
  [
    'containerd.services.snapshots.v1.StatSnapshotResponse',
    { info: { name: 'sha256:c', parent: '', kind: 'COMMITTED', labels: {} } },
  ],
  [
    'containerd.services.containers.v1.ListContainersResponse',
    {
      containers: [
        { id: 'abc123', image: 'registry.local/app:v1' },
        { id: 'pause', image: '' },
      ],
    },
  ],
  ['containerd.services.version.v1.VersionResponse', { version: '2.1.4', revision: '75cb2b7' }],
  ['google.protobuf.Empty', {}],
];

/** Buffers to { $bytes } and back, so that fixtures are JSON. */
export const toJsonable = (v: unknown): unknown =>
  Buffer.isBuffer(v)
    ? { $bytes: v.toString('base64') }
    : Array.isArray(v)
      ? v.map(toJsonable)
      : v !== null && typeof v === 'object'
        ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJsonable(x)]))
        : v;
export const fromJsonable = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(fromJsonable)
    : v !== null && typeof v === 'object'
      ? '$bytes' in v
        ? Buffer.from((v as { $bytes: string }).$bytes, 'base64')
        : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromJsonable(x)]))
      : v;

if (import.meta.filename === process.argv[1]) {
  const pb = protobufjsOracle(CONTAINERD_DESCRIPTOR);
  const fixtures: WireFixture[] = inputs.map(([type, input]) => {
    const bytes = pb.encode(type, fromJsonable(input));
    return { type, input, hex: bytes.toString('hex'), decoded: toJsonable(pb.decode(type, bytes)) };
  });
  const out = new URL('../unit/fixtures/containerd-wire.json', import.meta.url);
  writeFileSync(out, `${JSON.stringify(fixtures, null, 1)}\n`);
  console.log(`${fixtures.length} fixtures written to ${out.pathname}`);
}
