// Messages to and from protobuf bytes, driven by the compiled descriptor (schema.ts), with the JavaScript
// shapes @grpc/proto-loader gave with { longs: Number, enums: String, defaults: true }: int64 as a number,
// enums by name, bytes as a Buffer (a view into the received frame), and every field present on decode:
// '' / 0 / false / empty Buffer for absent scalars, {} for maps, [] for repeated fields, null for absent
// messages. Encoding follows protobuf.js's fromObject + encode: null and undefined fields are left out,
// every other field is written (zeros too), in field-number order.
import type { Field, MessageType, Scalar, ValueType } from './schema.ts';
import { int64Bits, Reader, WIRE_LEN, WIRE_VARINT, Writer, WireError } from './wire.ts';

type Obj = Record<string, unknown>;

export function encodeMessage(type: MessageType, msg: unknown): Buffer[] {
  const w = new Writer();
  writeMessage(w, type, msg);
  return w.finish();
}

export function decodeMessage(type: MessageType, buf: Buffer): Obj {
  return readMessage(new Reader(buf), type);
}

function writeMessage(w: Writer, type: MessageType, msg: unknown): void {
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg))
    throw new TypeError(`${type.name}: object expected`);
  for (const f of type.encodeOrder) {
    const v = (msg as Obj)[f.name];
    if (v === null || v === undefined) continue;
    if (f.mapKey !== undefined) {
      if (typeof v !== 'object') throw new TypeError(`${type.name}.${f.name}: object expected`);
      for (const [k, item] of Object.entries(v as Obj)) {
        const entry = new Writer();
        writeValue(entry, 1, { kind: 'scalar', scalar: f.mapKey }, k, `${type.name}.${f.name}`);
        writeValue(entry, 2, f.value, item, `${type.name}.${f.name}`);
        w.tag(f.id, WIRE_LEN).embed(entry);
      }
    } else if (f.repeated) {
      if (!Array.isArray(v)) throw new TypeError(`${type.name}.${f.name}: array expected`);
      for (const item of v) writeValue(w, f.id, f.value, item, `${type.name}.${f.name}`);
    } else {
      writeValue(w, f.id, f.value, v, `${type.name}.${f.name}`);
    }
  }
}

function writeValue(w: Writer, id: number, t: ValueType, v: unknown, where: string): void {
  switch (t.kind) {
    case 'message': {
      const nested = new Writer();
      writeMessage(nested, t, v);
      w.tag(id, WIRE_LEN).embed(nested);
      return;
    }
    case 'enum': {
      const n = typeof v === 'number' ? v : t.byName.get(String(v));
      if (n === undefined) throw new TypeError(`${where}: ${String(v)} is not a value of ${t.name}`);
      w.tag(id, WIRE_VARINT).int32(n | 0);
      return;
    }
    case 'scalar':
      writeScalar(w, id, t.scalar, v, where);
  }
}

function writeScalar(w: Writer, id: number, s: Scalar, v: unknown, where: string): void {
  switch (s) {
    case 'string':
      w.tag(id, WIRE_LEN).string(String(v));
      return;
    case 'bool':
      w.tag(id, WIRE_VARINT).uint32(v ? 1 : 0);
      return;
    case 'int32':
      w.tag(id, WIRE_VARINT).int32(Number(v) | 0);
      return;
    case 'int64': {
      if (typeof v !== 'number' && typeof v !== 'bigint' && typeof v !== 'string')
        throw new TypeError(`${where}: integer expected`);
      const [lo, hi] = int64Bits(v);
      w.tag(id, WIRE_VARINT).varint64(lo, hi);
      return;
    }
    case 'bytes':
      if (typeof v === 'string') w.tag(id, WIRE_LEN).bytes(Buffer.from(v, 'base64'));
      else if (v instanceof Uint8Array) w.tag(id, WIRE_LEN).bytes(v);
      else throw new TypeError(`${where}: bytes expected`);
  }
}

/** The decoded object with every field at its default, keys in proto-loader's order (repeated, maps, others). */
function defaults(type: MessageType): Obj {
  const o: Obj = {};
  for (const f of type.fields) if (f.repeated) o[f.name] = [];
  for (const f of type.fields) if (f.mapKey !== undefined) o[f.name] = {};
  for (const f of type.fields) if (!f.repeated && f.mapKey === undefined) o[f.name] = defaultValue(f.value);
  return o;
}

function defaultValue(t: ValueType): unknown {
  switch (t.kind) {
    case 'message':
      return null;
    case 'enum':
      return t.byNumber.get(0) ?? t.byNumber.values().next().value ?? 0;
    case 'scalar':
      return t.scalar === 'string' ? '' : t.scalar === 'bool' ? false : t.scalar === 'bytes' ? Buffer.alloc(0) : 0;
  }
}

const wireTypeOf = (t: ValueType): number =>
  t.kind === 'message' || (t.kind === 'scalar' && (t.scalar === 'string' || t.scalar === 'bytes'))
    ? WIRE_LEN
    : WIRE_VARINT;

/** Reads fields until the reader's end (each nested message gets a reader of its own bounds). */
function readMessage(r: Reader, type: MessageType, into?: Obj): Obj {
  const o = into ?? defaults(type);
  while (r.pos < r.end) {
    const tag = r.uint32();
    const id = tag >>> 3;
    const wt = tag & 7;
    if (id === 0) throw new WireError(`${type.name}: field number 0`);
    const f = type.byId.get(id);
    if (f === undefined) r.skip(wt, id);
    else readField(r, f, wt, o);
  }
  return o;
}

function readField(r: Reader, f: Field, wt: number, o: Obj): void {
  if (f.mapKey !== undefined) {
    if (wt !== WIRE_LEN) return r.skip(wt, f.id);
    const [start, end] = r.delimited();
    const entry = new Reader(r.buf, start, end);
    let key: unknown = defaultValue({ kind: 'scalar', scalar: f.mapKey });
    let value: unknown = f.value.kind === 'message' ? defaults(f.value) : defaultValue(f.value);
    while (entry.pos < end) {
      const tag = entry.uint32();
      const eid = tag >>> 3;
      const ewt = tag & 7;
      if (eid === 1 && ewt === WIRE_LEN) key = readScalar(entry, f.mapKey);
      else if (eid === 2 && ewt === wireTypeOf(f.value)) value = readValue(entry, f.value);
      else entry.skip(ewt, eid);
    }
    const map = o[f.name] as Obj;
    // A key named __proto__ (a containerd label may be) is an own key, not the object's prototype.
    if (key === '__proto__')
      Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
    else map[String(key)] = value;
    return;
  }
  const expected = wireTypeOf(f.value);
  if (f.repeated) {
    const list = o[f.name] as unknown[];
    if (wt === expected) list.push(readValue(r, f.value));
    else if (wt === WIRE_LEN && expected === WIRE_VARINT) {
      // Packed: one length-delimited run of varints.
      const [start, end] = r.delimited();
      const packed = new Reader(r.buf, start, end);
      while (packed.pos < end) list.push(readValue(packed, f.value));
    } else r.skip(wt, f.id);
    return;
  }
  if (wt !== expected) {
    // A field of another type under a known number: treated as unknown, as Go's protobuf does.
    r.skip(wt, f.id);
    return;
  }
  if (f.value.kind === 'message') {
    // A message field seen twice merges, as protobuf specifies.
    const [start, end] = r.delimited();
    const prior = o[f.name] as Obj | null;
    o[f.name] = readMessage(new Reader(r.buf, start, end), f.value, prior ?? undefined);
    return;
  }
  o[f.name] = readValue(r, f.value);
}

function readValue(r: Reader, t: ValueType): unknown {
  switch (t.kind) {
    case 'message': {
      const [start, end] = r.delimited();
      return readMessage(new Reader(r.buf, start, end), t);
    }
    case 'enum': {
      const n = r.uint32() | 0;
      return t.byNumber.get(n) ?? n;
    }
    case 'scalar':
      return readScalar(r, t.scalar);
  }
}

function readScalar(r: Reader, s: Scalar): unknown {
  switch (s) {
    case 'string': {
      const [start, end] = r.delimited();
      return r.buf.toString('utf8', start, end);
    }
    case 'bytes': {
      const [start, end] = r.delimited();
      return r.buf.subarray(start, end);
    }
    case 'bool':
      return r.uint32() !== 0;
    case 'int32':
      return r.uint32() | 0;
    case 'int64':
      return r.int64();
  }
}

export { WireError };
