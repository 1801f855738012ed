// The protobuf codec of enbi's gRPC client (src/containerd/grpc/): bytes and JS shapes as protobuf.js gave
// them through @grpc/proto-loader (golden fixtures, and protobuf.js itself as an oracle under fast-check),
// unknown fields skipped, packed and unpacked repeated scalars, truncated input refused; the gRPC framing
// however the bytes are cut; status parsing.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CONTAINERD_DESCRIPTOR } from '../../src/containerd/descriptor.ts';
import { decodeMessage, encodeMessage } from '../../src/containerd/grpc/codec.ts';
import { frame, FrameReader } from '../../src/containerd/grpc/frame.ts';
import { compileSchema, type MessageType, type ValueType } from '../../src/containerd/grpc/schema.ts';
import { decodeGrpcMessage, grpcTimeout, statusFromMetadata } from '../../src/containerd/grpc/status.ts';
import { WireError } from '../../src/containerd/grpc/wire.ts';
import { protobufjsOracle } from '../support/protobufjs-oracle.ts';
import { fromJsonable, type WireFixture } from '../support/wire-fixtures.ts';

const schema = compileSchema(CONTAINERD_DESCRIPTOR);
const oracle = protobufjsOracle(CONTAINERD_DESCRIPTOR);
const bytes = (parts: Buffer[]): Buffer => Buffer.concat(parts);
const fixtures = JSON.parse(
  readFileSync(new URL('fixtures/containerd-wire.json', import.meta.url), 'utf8'),
) as WireFixture[];

describe('protobuf codec: golden bytes written by protobuf.js', () => {
  for (const f of fixtures) {
    it(`${f.type.split('.').pop()}: encodes to the same bytes and decodes them to proto-loader's object`, () => {
      const type = schema.message(f.type);
      assert.equal(bytes(encodeMessage(type, fromJsonable(f.input))).toString('hex'), f.hex);
      assert.deepStrictEqual(decodeMessage(type, Buffer.from(f.hex, 'hex')), fromJsonable(f.decoded));
    });
  }

  it('decodes absent fields as proto-loader did: empty strings, 0, false, empty Buffer, {} , [], null', () => {
    const list = decodeMessage(
      schema.message('containerd.services.images.v1.ListImagesResponse'),
      Buffer.from('0a00', 'hex'),
    );
    assert.deepStrictEqual(list, {
      images: [{ labels: {}, name: '', target: null, createdAt: null, updatedAt: null }],
    });
    const read = decodeMessage(schema.message('containerd.services.content.v1.ReadContentResponse'), Buffer.alloc(0));
    assert.deepStrictEqual(read, { offset: 0, data: Buffer.alloc(0) });
    const write = decodeMessage(schema.message('containerd.services.content.v1.WriteContentResponse'), Buffer.alloc(0));
    assert.deepStrictEqual(write, { action: 'STAT', offset: 0, total: 0, digest: '' });
  });
});

/** Objects a caller could pass for this message: any subset of its fields, each with a value of its type. */
function arbitraryMessage(t: MessageType, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const entries = t.fields.map((f) => {
    let a: fc.Arbitrary<unknown>;
    if (f.mapKey !== undefined)
      a = fc.dictionary(
        fc.string({ unit: 'grapheme', maxLength: 12 }).filter((k) => k !== '__proto__'),
        arbitraryValue(f.value, depth),
        { maxKeys: 4 },
      );
    else if (f.repeated) a = fc.array(arbitraryValue(f.value, depth), { maxLength: 4 });
    else a = arbitraryValue(f.value, depth);
    return [f.name, a] as const;
  });
  return fc.record(Object.fromEntries(entries), { requiredKeys: [] }) as fc.Arbitrary<Record<string, unknown>>;
}

function arbitraryValue(t: ValueType, depth: number): fc.Arbitrary<unknown> {
  if (t.kind === 'message') return depth > 4 ? fc.constant({}) : arbitraryMessage(t, depth + 1);
  if (t.kind === 'enum') return fc.constantFrom(...t.byName.keys());
  switch (t.scalar) {
    case 'string':
      return fc.string({ unit: 'grapheme', maxLength: 40 });
    case 'bool':
      return fc.boolean();
    case 'int32':
      return fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
    case 'int64':
      return fc.oneof(fc.maxSafeInteger(), fc.integer({ min: -1000, max: 1000 }));
    case 'bytes':
      return fc
        .oneof(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ minLength: 500, maxLength: 2000 }))
        .map((u) => Buffer.from(u));
  }
}

/** Every request and response type of the descriptor's methods, plus the event envelope. */
const methodTypes: string[] = (() => {
  const names = new Set<string>(['containerd.types.Envelope']);
  const services = CONTAINERD_DESCRIPTOR.nested.containerd.nested.services.nested as Record<
    string,
    {
      nested: {
        v1: { nested: Record<string, { methods?: Record<string, { requestType: string; responseType: string }> }> };
      };
    }
  >;
  for (const [pkg, svc] of Object.entries(services)) {
    for (const [svcName, node] of Object.entries(svc.nested.v1.nested)) {
      for (const m of Object.keys(node.methods ?? {})) {
        const method = schema.method(`containerd.services.${pkg}.v1.${svcName}`, m);
        names.add(method.request.name).add(method.response.name);
      }
    }
  }
  return [...names].sort();
})();

describe('protobuf codec: against protobuf.js, for any message of the descriptor', () => {
  it('names every request and response type', () => assert.ok(methodTypes.length >= 30, methodTypes.join(' ')));

  for (const name of methodTypes) {
    it(`${name.split('.').slice(-2).join('.')}: same bytes as protobuf.js, decoded as proto-loader did, round trip stable`, () => {
      const type = schema.message(name);
      fc.assert(
        fc.property(arbitraryMessage(type), (msg) => {
          const ours = bytes(encodeMessage(type, msg));
          assert.equal(ours.toString('hex'), oracle.encode(name, msg).toString('hex'));
          const decoded = decodeMessage(type, ours);
          assert.deepStrictEqual(decoded, oracle.decode(name, ours));
          assert.deepStrictEqual(
            bytes(encodeMessage(type, decoded)),
            bytes(encodeMessage(type, decodeMessage(type, bytes(encodeMessage(type, decoded))))),
          );
        }),
        { numRuns: 60 },
      );
    });
  }
});

describe('protobuf codec: wire details', () => {
  const info = schema.message('containerd.services.content.v1.Info');

  it('skips unknown fields of every wire type, also between known ones', () => {
    const known = bytes(encodeMessage(info, { digest: 'sha256:x', size: 7, labels: { a: 'b' } }));
    const extra = Buffer.concat([
      Buffer.from('a006ac02', 'hex'), // field 100, varint 300
      Buffer.from('a9060102030405060708', 'hex'), // field 101, fixed64
      Buffer.from('b20603616263', 'hex'), // field 102, length-delimited "abc"
      Buffer.from('bd0601020304', 'hex'), // field 103, fixed32
      Buffer.from('c306a00601c406', 'hex'), // field 104, a group holding field 100 = 1, then its end
    ]);
    const split = known.indexOf(0x10); // before field 2 (size)
    const withUnknown = Buffer.concat([known.subarray(0, split), extra, known.subarray(split), extra]);
    assert.deepStrictEqual(decodeMessage(info, withUnknown), decodeMessage(info, known));
    assert.deepStrictEqual(
      decodeMessage(info, withUnknown),
      oracle.decode('containerd.services.content.v1.Info', withUnknown),
    );
  });

  it('reads repeated scalars packed and unpacked (a descriptor of its own, protobuf.js writing both)', () => {
    const nums = (packed: boolean) => ({
      nested: {
        t: {
          nested: {
            Nums: {
              fields: {
                small: { rule: 'repeated', type: 'int32', id: 1, options: { packed } },
                big: { rule: 'repeated', type: 'int64', id: 2, options: { packed } },
                flags: { rule: 'repeated', type: 'bool', id: 3, options: { packed } },
                kinds: { rule: 'repeated', type: 'Kind', id: 4, options: { packed } },
              },
            },
            Kind: { values: { ZERO: 0, ONE: 1, TWO: 2 } },
          },
        },
      },
    });
    const ours = compileSchema(nums(false)).message('t.Nums');
    const value = {
      small: [0, -1, 2 ** 31 - 1],
      big: [-(2 ** 53) + 1, 2 ** 40, 0],
      flags: [true, false, true],
      kinds: ['TWO', 'ZERO', 'ONE'],
    };
    const packed = protobufjsOracle(nums(true)).encode('t.Nums', value);
    const unpacked = protobufjsOracle(nums(false)).encode('t.Nums', value);
    assert.notDeepStrictEqual(packed, unpacked);
    assert.deepStrictEqual(decodeMessage(ours, packed), value);
    assert.deepStrictEqual(decodeMessage(ours, unpacked), value);
    assert.deepStrictEqual(decodeMessage(ours, Buffer.concat([packed, unpacked])), {
      small: [...value.small, ...value.small],
      big: [...value.big, ...value.big],
      flags: [...value.flags, ...value.flags],
      kinds: [...value.kinds, ...value.kinds],
    });
  });

  it('gives an enum number it does not know as the number, as proto-loader did', () => {
    const res = schema.message('containerd.services.content.v1.WriteContentResponse');
    assert.deepStrictEqual(decodeMessage(res, Buffer.from('0807', 'hex')), {
      action: 7,
      offset: 0,
      total: 0,
      digest: '',
    });
  });

  it('keeps a label named __proto__ as a label', () => {
    const lease = schema.message('containerd.services.leases.v1.Lease');
    const buf = bytes(encodeMessage(lease, { id: 'l', labels: JSON.parse('{"__proto__":"x","b":"y"}') }));
    const d = decodeMessage(lease, buf) as { labels: Record<string, string> };
    assert.deepStrictEqual(Object.keys(d.labels), ['__proto__', 'b']);
    assert.equal(Object.getPrototypeOf(d.labels), Object.prototype);
  });

  it('refuses truncated messages with a WireError', () => {
    const full = bytes(encodeMessage(info, { digest: 'sha256:abc', size: 2 ** 40, labels: { k: 'v' } }));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: full.length - 1 }), (cut) => {
        // A cut that ends exactly between fields is a shorter valid message; any other cut must throw.
        try {
          decodeMessage(info, full.subarray(0, cut));
        } catch (e) {
          assert.ok(e instanceof WireError, String(e));
        }
      }),
    );
    assert.throws(() => decodeMessage(info, full.subarray(0, 3)), WireError);
  });

  it('refuses values of the wrong JS type on encode', () => {
    const req = schema.message('containerd.services.images.v1.ListImagesRequest');
    assert.throws(() => encodeMessage(req, { filters: 'name==x' }), /array expected/);
    const w = schema.message('containerd.services.content.v1.WriteContentRequest');
    assert.throws(() => encodeMessage(w, { action: 'FLUSH' }), /not a value of/);
  });

  it('a broken descriptor fails when compiled, naming the type', () => {
    assert.throws(
      () => compileSchema({ nested: { a: { nested: { M: { fields: { x: { type: 'Missing', id: 1 } } } } } } }),
      /type Missing \(used in a\.M\) does not resolve/,
    );
  });
});

describe('gRPC framing and status', () => {
  it('reassembles messages however the stream cuts the bytes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
        (messages, cuts) => {
          const wire = Buffer.concat(messages.map((m) => frame([Buffer.from(m)])));
          const r = new FrameReader(1 << 20);
          const got: Buffer[] = [];
          for (let at = 0, i = 0; at < wire.length; i++) {
            const n = cuts[i % cuts.length]!;
            got.push(...r.push(wire.subarray(at, at + n)));
            at += n;
          }
          assert.deepStrictEqual(
            got.map((b) => [...b]),
            messages.map((m) => [...m]),
          );
          assert.equal(r.pending, 0);
        },
      ),
    );
  });

  it('refuses a message over the limit and a compressed one', () => {
    assert.throws(() => new FrameReader(10).push(frame([Buffer.alloc(11)])), /larger than the limit of 10/);
    assert.throws(() => new FrameReader(10).push(Buffer.from([1, 0, 0, 0, 1, 0])), /compressed/);
  });

  it('reads grpc-status and a percent-encoded grpc-message', () => {
    assert.deepStrictEqual(statusFromMetadata({ 'grpc-status': '5', 'grpc-message': 'image %22a%22: not found' }), {
      code: 5,
      details: 'image "a": not found',
    });
    assert.deepStrictEqual(statusFromMetadata({ 'grpc-status': '0' }), { code: 0, details: '' });
    assert.equal(statusFromMetadata({ ':status': '200' }), undefined);
    assert.equal(decodeGrpcMessage('100%25 %E2%9C%93 %zz'), '100% ✓ %zz');
    assert.equal(statusFromMetadata({ 'grpc-status': 'x' })?.code, 2);
  });

  it('writes grpc-timeout in at most eight digits', () => {
    assert.equal(grpcTimeout(30_000), '30000m');
    assert.equal(grpcTimeout(0.2), '1m');
    assert.equal(grpcTimeout(1e9), '1000000S');
    assert.match(grpcTimeout(1e15), /^\d{1,8}[MH]$/);
  });
});
