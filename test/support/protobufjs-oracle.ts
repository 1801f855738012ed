// protobuf.js as @grpc/proto-loader used it (fromObject + encode; decode + toObject with { longs: Number,
// enums: String, defaults: true }): the reference the codec in src/containerd/grpc/ is tested against, and
// the writer of its golden byte fixtures. A devDependency only; nothing in src/ loads it.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface PbType {
  fromObject(o: unknown): unknown;
  encode(m: unknown): { finish(): Uint8Array };
  decode(b: Uint8Array): unknown;
  toObject(m: unknown, o: object): Record<string, unknown>;
}
interface PbRoot {
  lookupType(name: string): PbType;
  resolveAll(): PbRoot;
}

export interface Oracle {
  encode(type: string, obj: unknown): Buffer;
  decode(type: string, buf: Buffer): Record<string, unknown>;
}

export function protobufjsOracle(descriptor: object): Oracle {
  const pb = require('protobufjs') as { Root: { fromJSON(j: object): PbRoot } };
  const root = pb.Root.fromJSON(descriptor).resolveAll();
  return {
    encode: (type, obj) => {
      const t = root.lookupType(type);
      return Buffer.from(t.encode(t.fromObject(obj)).finish());
    },
    decode: (type, buf) => {
      const t = root.lookupType(type);
      return t.toObject(t.decode(buf), { longs: Number, enums: String, defaults: true });
    },
  };
}
