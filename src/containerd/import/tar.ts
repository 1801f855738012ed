// A streaming tar reader: entries one after the other, each body as chunks in the order they arrive, so a
// layer of any size passes through without being held. ustar, GNU (long names, base-256 sizes) and PAX
// (path, linkpath, size) headers, as docker save, nixpkgs' dockerTools (Python's tarfile) and Go write them.
// The only bytes it holds are those of PAX and GNU long-name headers, each at most MAX_META_BYTES.

export class TarError extends Error {
  override name = 'TarError';
}

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';

export interface TarHeader {
  /** Path inside the archive, without a leading `./` or `/`. */
  path: string;
  type: TarEntryType;
  size: number;
  /** Target of a symlink or hardlink. */
  linkname: string;
  /** Offset of the header in the stream. */
  offset: number;
}

export interface TarEntry extends TarHeader {
  /** The body; read it fully or not at all (the reader skips what is left before the next entry). */
  body: AsyncIterable<Buffer>;
}

/** Reads exact byte counts from a stream of chunks. */
export class ByteReader {
  readonly #it: AsyncIterator<Buffer | Uint8Array | string>;
  #buf: Buffer = Buffer.alloc(0);
  #eof = false;
  /** Bytes handed out so far. */
  position = 0;

  constructor(source: AsyncIterable<Buffer | Uint8Array | string>) {
    this.#it = source[Symbol.asyncIterator]();
  }

  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const r = await this.#it.next();
    if (r.done === true) {
      this.#eof = true;
      return false;
    }
    const chunk =
      typeof r.value === 'string'
        ? Buffer.from(r.value)
        : Buffer.isBuffer(r.value)
          ? r.value
          : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    return true;
  }

  /** Exactly n bytes, or fewer only at the end of the stream. */
  async read(n: number): Promise<Buffer> {
    while (this.#buf.length < n && (await this.#fill()));
    const out = this.#buf.subarray(0, Math.min(n, this.#buf.length));
    this.#buf = this.#buf.subarray(out.length);
    this.position += out.length;
    return out;
  }

  /** n bytes as they arrive; throws when the stream ends first. */
  async *chunks(n: number, what: () => string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.#buf.length === 0 && !(await this.#fill()))
        throw new TarError(`the archive ends inside ${what()} (${left} of ${n} bytes missing): truncated stream`);
      const out = this.#buf.subarray(0, Math.min(left, this.#buf.length));
      this.#buf = this.#buf.subarray(out.length);
      this.position += out.length;
      left -= out.length;
      yield out;
    }
  }

  /** Whether anything but zero bytes is left. */
  async restIsZero(): Promise<boolean> {
    for (;;) {
      if (this.#buf.some((b) => b !== 0)) return false;
      this.position += this.#buf.length;
      this.#buf = Buffer.alloc(0);
      if (!(await this.#fill())) return true;
    }
  }
}

const BLOCK = 512;

function cString(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const end = s.indexOf(0);
  return s.subarray(0, end < 0 ? s.length : end).toString('utf8');
}

/** A numeric field: octal text, or GNU base-256 when the high bit of the first byte is set. */
export function tarNumber(b: Buffer, off: number, len: number): number {
  const f = b.subarray(off, off + len);
  if ((f[0]! & 0x80) !== 0) {
    if ((f[0]! & 0x40) !== 0) throw new TarError('negative number in a tar header');
    let n = f[0]! & 0x3f;
    for (let i = 1; i < f.length; i++) n = n * 256 + f[i]!;
    if (!Number.isSafeInteger(n)) throw new TarError('number in a tar header is too large');
    return n;
  }
  const text = cString(f, 0, len).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarError(`bad octal number ${JSON.stringify(text)} in a tar header`);
  return parseInt(text, 8);
}

function checksumOk(h: Buffer): boolean {
  let want: number;
  try {
    want = tarNumber(h, 148, 8);
  } catch {
    return false;
  }
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return want === unsigned || want === signed;
}

/**
 * Most bytes one PAX extended header or GNU long name/link may declare: 1 MiB, the limit of Go's
 * archive/tar (`maxSpecialFileSize`, "the limit used by libarchive"), which containerd's and Docker's own
 * importers read archives with, so no archive they accept is refused here. Real ones hold a path (at most
 * 4 KiB on Linux) or a few xattrs; the outer archive of an image holds only short blob paths. Larger is
 * refused at the header, before a byte of it is read.
 */
export const MAX_META_BYTES = 1 << 20;

/** PAX extended header records: `<len> <key>=<value>\n`, strictly (as Go's archive/tar reads them). */
export function parsePax(data: Buffer, what = 'PAX header'): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    const bad = (why: string) => new TarError(`malformed ${what}: ${why} at byte ${i} of its ${data.length}`);
    const sp = data.indexOf(0x20, i);
    if (sp < 0 || sp - i > 16) throw bad('a record without its length');
    const lenText = data.subarray(i, sp).toString('latin1');
    if (!/^[1-9][0-9]*$/.test(lenText)) throw bad(`record length ${JSON.stringify(lenText)} is not a decimal number`);
    const len = Number(lenText);
    if (i + len > data.length || sp + 1 >= i + len) throw bad(`a record of ${len} bytes overruns the header`);
    if (data[i + len - 1] !== 0x0a) throw bad('a record not ending in a newline');
    const rec = data.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq <= 0) throw bad('a record without key=value');
    const key = rec.slice(0, eq);
    const value = rec.slice(eq + 1);
    if ((key === 'path' || key === 'linkpath') && value.includes('\0')) throw bad(`${key} holds a NUL byte`);
    // Only what the reader uses is kept: the rest (mtime, xattrs, comments, …) costs nothing after this.
    if (key === 'path' || key === 'linkpath' || key === 'size') out[key] = value;
    i += len;
  }
  return out;
}

/**
 * A PAX `size`: decimal digits only (no sign, exponent, fraction, hex or blanks), at most 2^53 - 1 bytes
 * (what a tar number field can give too). It decides how many bytes the reader streams on, never what it holds.
 */
export function paxSize(value: string, what: string): number {
  if (!/^[0-9]{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new TarError(
      `the PAX size ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)} of ${what} is not a byte count (decimal digits, at most ${Number.MAX_SAFE_INTEGER}): corrupt or crafted archive`,
    );
  }
  return Number(value);
}

export const cleanPath = (p: string): string => {
  let s = p;
  while (s.startsWith('./')) s = s.slice(2);
  s = s.replace(/^\/+/, '').replace(/\/+$/, '');
  return s === '.' ? '' : s;
};

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '5': 'dir',
  '2': 'symlink',
  '1': 'hardlink',
};

async function readAll(it: AsyncIterable<Buffer>, size: number): Promise<Buffer> {
  const out = Buffer.alloc(size);
  let at = 0;
  for await (const c of it) at += c.copy(out, at);
  return out;
}

const META: Record<string, string> = {
  x: 'PAX extended header',
  g: 'PAX global header',
  L: 'GNU long name',
  K: 'GNU long link name',
};

/**
 * The entries of a tar stream. The stream must end with the end-of-archive blocks: a stream cut short (the
 * writer died) is an error, never a shorter archive. Anything not a tar archive fails at the first header.
 */
export async function* readTar(source: AsyncIterable<Buffer | Uint8Array | string>): AsyncGenerator<TarEntry> {
  const r = new ByteReader(source);
  let pax: Record<string, string> = {};
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const offset = r.position;
    const h = await r.read(BLOCK);
    if (h.length === 0) {
      if (offset === 0) throw new TarError('the stream is empty: no image was sent');
      throw new TarError(`the archive ends at byte ${offset} without its end-of-archive blocks: truncated stream`);
    }
    if (h.length < BLOCK) throw new TarError(`the archive ends inside a header at byte ${offset}: truncated stream`);
    if (h.every((b) => b === 0)) {
      // End of archive (two zero blocks; some writers pad further). Whatever follows must be zeros too.
      if (!(await r.restIsZero())) throw new TarError(`data after the end-of-archive block at byte ${offset}`);
      return;
    }
    if (!checksumOk(h)) {
      throw new TarError(
        offset === 0
          ? 'not a tar archive (bad header checksum at byte 0): send an uncompressed docker-archive or OCI archive'
          : `bad tar header checksum at byte ${offset}: corrupt stream`,
      );
    }
    const flag = String.fromCharCode(h[156]!);
    const name = cString(h, 0, 100);
    let size = tarNumber(h, 124, 12);
    const meta = META[flag];
    if (meta !== undefined) {
      // Refused at the header, before a byte of it is read or held.
      if (size > MAX_META_BYTES) {
        throw new TarError(
          `the ${meta} ${JSON.stringify(name)} at byte ${offset} declares ${size} bytes: more than 1 MiB (${MAX_META_BYTES}), the most a tar reader accepts (Go's archive/tar too): corrupt or crafted archive`,
        );
      }
      const what = (): string => `the ${meta} at byte ${offset}`;
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      if (flag === 'g') {
        for await (const _ of r.chunks(padded, what));
        continue;
      }
      const body = (await readAll(r.chunks(padded, what), padded)).subarray(0, size);
      if (flag === 'x') pax = { ...pax, ...parsePax(body, `${meta} ${JSON.stringify(name)} at byte ${offset}`) };
      else if (flag === 'L') longName = cString(body, 0, body.length);
      else longLink = cString(body, 0, body.length);
      continue;
    }
    const magic = h.subarray(257, 263).toString('latin1');
    const prefix = magic.startsWith('ustar') && magic !== 'ustar ' ? cString(h, 345, 155) : '';
    const path = cleanPath(pax.path ?? longName ?? (prefix !== '' ? `${prefix}/${name}` : name));
    const linkname = cleanPath(pax.linkpath ?? longLink ?? cString(h, 157, 100));
    // A PAX size applies to the entry the header describes, never to another meta header.
    if (pax.size !== undefined) size = paxSize(pax.size, `${JSON.stringify(path)} at byte ${offset}`);
    pax = {};
    longName = undefined;
    longLink = undefined;
    const type = TYPES[flag] ?? 'other';
    const bodySize = type === 'file' || type === 'other' ? size : 0;
    let consumed = false;
    const body = (async function* (): AsyncGenerator<Buffer> {
      consumed = true;
      yield* r.chunks(bodySize, () => `"${path}"`);
    })();
    yield { path, type, size: bodySize, linkname, offset, body };
    if (!consumed) for await (const _ of r.chunks(bodySize, () => `"${path}"`));
    // A consumer that stopped early leaves the rest: the position says how much.
    const end = offset + BLOCK + bodySize;
    if (r.position < end) for await (const _ of r.chunks(end - r.position, () => `"${path}"`));
    const pad = Math.ceil(bodySize / BLOCK) * BLOCK - bodySize;
    if (pad > 0) for await (const _ of r.chunks(pad, () => `the padding of "${path}"`));
  }
}
