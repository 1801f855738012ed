// Protobuf's wire format: varints, tags and length-delimited values, read from one Buffer and written into
// a list of Buffers (large byte fields are kept by reference, so a 1 MiB Write chunk is copied once, into
// the gRPC frame).

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_START_GROUP = 3;
export const WIRE_END_GROUP = 4;
export const WIRE_FIXED32 = 5;

const TWO_32 = 4294967296;
/** Byte fields at least this long are referenced rather than copied into the scratch buffer. */
const REF_BYTES = 512;

export class WireError extends Error {
  override name = 'WireError';
}

export class Reader {
  readonly buf: Buffer;
  pos: number;
  readonly end: number;

  constructor(buf: Buffer, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  #byte(): number {
    if (this.pos >= this.end) throw new WireError('truncated message');
    return this.buf[this.pos++]!;
  }

  /** A varint's low 32 bits (unsigned); the rest of a longer varint is read and dropped. */
  uint32(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.#byte();
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value >>> 0;
    }
    for (let i = 5; i < 10; i++) if (this.#byte() < 0x80) return value >>> 0;
    throw new WireError('varint longer than 10 bytes');
  }

  /** A varint as two's complement int64, converted to a JS number as protobuf.js's LongBits.toNumber does. */
  int64(): number {
    let lo = 0;
    let hi = 0;
    let b = 0;
    let i = 0;
    for (; i < 4; i++) {
      b = this.#byte();
      lo = (lo | ((b & 0x7f) << (i * 7))) >>> 0;
      if (b < 0x80) return toNumber(lo, hi);
    }
    b = this.#byte(); // bits 28..34: four into lo, three into hi
    lo = (lo | ((b & 0x7f) << 28)) >>> 0;
    hi = (b & 0x7f) >> 4;
    if (b < 0x80) return toNumber(lo, hi);
    for (i = 0; i < 5; i++) {
      b = this.#byte();
      hi = (hi | ((b & 0x7f) << (i * 7 + 3))) >>> 0;
      if (b < 0x80) return toNumber(lo, hi);
    }
    throw new WireError('varint longer than 10 bytes');
  }

  /** The bounds of a length-delimited value, which is then skipped. */
  delimited(): [number, number] {
    const len = this.uint32();
    const start = this.pos;
    if (len > this.end - start) throw new WireError('truncated length-delimited field');
    this.pos = start + len;
    return [start, this.pos];
  }

  skip(wireType: number, fieldNumber: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        while (this.#byte() >= 0x80);
        return;
      case WIRE_FIXED64:
        this.#advance(8);
        return;
      case WIRE_LEN:
        this.delimited();
        return;
      case WIRE_FIXED32:
        this.#advance(4);
        return;
      case WIRE_START_GROUP:
        for (;;) {
          const tag = this.uint32();
          if ((tag & 7) === WIRE_END_GROUP) {
            if (tag >>> 3 !== fieldNumber) throw new WireError('mismatched end of group');
            return;
          }
          this.skip(tag & 7, tag >>> 3);
        }
      default:
        throw new WireError(`invalid wire type ${wireType}`);
    }
  }

  #advance(n: number): void {
    if (n > this.end - this.pos) throw new WireError('truncated message');
    this.pos += n;
  }
}

function toNumber(lo: number, hi: number): number {
  if (hi >>> 31) {
    // Negative: the magnitude of the two's complement, negated (protobuf.js's rounding).
    let nlo = (~lo + 1) >>> 0;
    let nhi = ~hi >>> 0;
    if (!nlo) nhi = (nhi + 1) >>> 0;
    return -(nlo + nhi * TWO_32);
  }
  return lo + hi * TWO_32;
}

/** Two 32-bit halves of an int64 given as a number, bigint or decimal string (protobuf.js's fromObject accepts all three). */
export function int64Bits(v: number | bigint | string): [number, number] {
  if (typeof v === 'number') {
    // protobuf.js goes through Long.fromNumber: fractions truncated, NaN is 0, out of range saturates.
    if (Number.isNaN(v)) return [0, 0];
    if (v <= -(2 ** 63)) return [0, 0x80000000];
    if (v >= 2 ** 63) return [0xffffffff, 0x7fffffff];
    const neg = v < 0;
    const abs = Math.trunc(Math.abs(v));
    let lo = abs >>> 0;
    let hi = ((abs - lo) / TWO_32) >>> 0;
    if (neg) {
      hi = ~hi >>> 0;
      lo = ~lo >>> 0;
      if (++lo > 0xffffffff) {
        lo = 0;
        hi = (hi + 1) >>> 0;
      }
    }
    return [lo, hi];
  }
  const u = BigInt.asUintN(64, typeof v === 'bigint' ? v : BigInt(v));
  return [Number(u & 0xffffffffn), Number(u >> 32n)];
}

export class Writer {
  readonly #parts: Buffer[] = [];
  #scratch = Buffer.allocUnsafe(64);
  #pos = 0;
  #flushed = 0;

  get length(): number {
    return this.#flushed + this.#pos;
  }

  #room(n: number): void {
    if (this.#pos + n <= this.#scratch.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#scratch.length * 2, this.#pos + n));
    this.#scratch.copy(next, 0, 0, this.#pos);
    this.#scratch = next;
  }

  uint32(v: number): this {
    this.#room(5);
    v >>>= 0;
    while (v > 0x7f) {
      this.#scratch[this.#pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.#scratch[this.#pos++] = v;
    return this;
  }

  /** A varint of 64 bits given as two 32-bit halves. */
  varint64(lo: number, hi: number): this {
    this.#room(10);
    while (hi !== 0 || lo > 0x7f) {
      this.#scratch[this.#pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.#scratch[this.#pos++] = lo;
    return this;
  }

  /** int32 as protobuf writes it: a negative value is sign-extended to ten bytes. */
  int32(v: number): this {
    return v < 0 ? this.varint64(v >>> 0, 0xffffffff) : this.uint32(v);
  }

  tag(field: number, wireType: number): this {
    return this.uint32(((field << 3) | wireType) >>> 0);
  }

  /** Length, then the bytes. */
  bytes(b: Uint8Array): this {
    this.uint32(b.length);
    if (b.length >= REF_BYTES) {
      this.#flush();
      this.#parts.push(Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length));
      this.#flushed += b.length;
    } else {
      this.#room(b.length);
      this.#scratch.set(b, this.#pos);
      this.#pos += b.length;
    }
    return this;
  }

  string(s: string): this {
    const n = Buffer.byteLength(s);
    this.uint32(n);
    this.#room(n);
    this.#pos += this.#scratch.write(s, this.#pos, 'utf8');
    return this;
  }

  /** Another writer's output as a length-delimited value. */
  embed(w: Writer): this {
    this.uint32(w.length);
    this.#flush();
    for (const p of w.finish()) this.#parts.push(p);
    this.#flushed += w.length;
    return this;
  }

  #flush(): void {
    if (this.#pos === 0) return;
    this.#parts.push(this.#scratch.subarray(0, this.#pos));
    this.#flushed += this.#pos;
    this.#scratch = this.#scratch.subarray(this.#pos);
    this.#pos = 0;
  }

  /** The bytes written, as parts to be concatenated. */
  finish(): Buffer[] {
    this.#flush();
    return this.#parts;
  }
}
