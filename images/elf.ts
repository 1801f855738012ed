// What a 64-bit little-endian ELF file (amd64, arm64) asks the loader for: its interpreter, DT_NEEDED
// libraries and DT_RUNPATH. Read from the bytes, so it works for another architecture's files too.

export interface ElfInfo {
  interpreter?: string;
  needed: string[];
  runpath: string[];
}

export function isElf(data: Buffer): boolean {
  return data.length > 64 && data.readUInt32BE(0) === 0x7f454c46;
}

export function readElf(data: Buffer, what: string): ElfInfo {
  if (!isElf(data)) throw new Error(`${what} is not an ELF file`);
  if (data[4] !== 2 || data[5] !== 1) throw new Error(`${what}: only 64-bit little-endian ELF is read`);
  const phoff = Number(data.readBigUInt64LE(0x20));
  const phentsize = data.readUInt16LE(0x36);
  const phnum = data.readUInt16LE(0x38);
  const segments: { type: number; offset: number; vaddr: number; filesz: number }[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    segments.push({
      type: data.readUInt32LE(o),
      offset: Number(data.readBigUInt64LE(o + 8)),
      vaddr: Number(data.readBigUInt64LE(o + 16)),
      filesz: Number(data.readBigUInt64LE(o + 32)),
    });
  }
  const cstr = (off: number): string => data.toString('latin1', off, data.indexOf(0, off));
  const info: ElfInfo = { needed: [], runpath: [] };
  const interp = segments.find((s) => s.type === 3); // PT_INTERP
  if (interp) info.interpreter = cstr(interp.offset);
  const dyn = segments.find((s) => s.type === 2); // PT_DYNAMIC
  if (!dyn) return info;
  // Dynamic entries hold string-table offsets; DT_STRTAB is a virtual address, mapped back through PT_LOAD.
  const tags: [number, number][] = [];
  for (let o = dyn.offset; o + 16 <= dyn.offset + dyn.filesz; o += 16) {
    const tag = Number(data.readBigInt64LE(o));
    if (tag === 0) break;
    tags.push([tag, Number(data.readBigUInt64LE(o + 8))]);
  }
  const strtabAddr = tags.find(([t]) => t === 5)?.[1];
  if (strtabAddr === undefined) return info;
  const load = segments.find((s) => s.type === 1 && strtabAddr >= s.vaddr && strtabAddr < s.vaddr + s.filesz);
  if (!load) throw new Error(`${what}: DT_STRTAB outside every PT_LOAD`);
  const strtab = strtabAddr - load.vaddr + load.offset;
  for (const [tag, val] of tags) {
    if (tag === 1) info.needed.push(cstr(strtab + val)); // DT_NEEDED
    if (tag === 29 || tag === 15)
      info.runpath.push(
        ...cstr(strtab + val)
          .split(':')
          .filter(Boolean),
      ); // DT_RUNPATH, DT_RPATH
  }
  return info;
}
