// gRPC's length-prefixed messages on an HTTP/2 stream: one byte "compressed" (always 0 here: enbi asks for no
// compression and containerd sends none), four bytes big-endian length, then the message.

/** The 5-byte prefix of a message of this length. */
export function framePrefix(len: number): Buffer {
  const out = Buffer.allocUnsafe(5);
  out[0] = 0;
  out.writeUInt32BE(len, 1);
  return out;
}

/** One frame from a message's encoded parts: the prefix and the parts in one buffer (one copy). */
export function frame(parts: readonly Buffer[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = Buffer.allocUnsafe(5 + len);
  out[0] = 0;
  out.writeUInt32BE(len, 1);
  let at = 5;
  for (const p of parts) at += p.copy(out, at);
  return out;
}

export class FrameError extends Error {
  override name = 'FrameError';
}

/** A message over the receive limit (RESOURCE_EXHAUSTED, as gRPC reports it). */
export class FrameTooLargeError extends FrameError {
  override name = 'FrameTooLargeError';
}

/** Collects DATA chunks and hands out whole messages, however the chunks cut them. */
export class FrameReader {
  readonly #maxBytes: number;
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Length of the message being collected, once its prefix is read. */
  #need = -1;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Adds a chunk; returns the messages it completes. */
  push(chunk: Buffer): Buffer[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.#need < 0) {
        if (this.#buffered < 5) break;
        const prefix = this.#take(5);
        if (prefix[0] !== 0) throw new FrameError(`compressed message (flag ${prefix[0]}) though none was asked for`);
        this.#need = prefix.readUInt32BE(1);
        if (this.#need > this.#maxBytes)
          throw new FrameTooLargeError(`message of ${this.#need} bytes is larger than the limit of ${this.#maxBytes}`);
      }
      if (this.#buffered < this.#need) break;
      out.push(this.#take(this.#need));
      this.#need = -1;
    }
    return out;
  }

  /** Bytes of an unfinished message (a stream that ends with some is broken). */
  get pending(): number {
    return this.#buffered + (this.#need >= 0 ? 5 : 0);
  }

  #take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.#chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      // Most messages sit inside one chunk: a view, no copy.
      out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.#chunks[0]!;
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.#chunks.shift();
        else this.#chunks[0] = c.subarray(k);
      }
    }
    this.#buffered -= n;
    return out;
  }
}
