// One image's root file system for one platform, from images/definition.ts: the locked packages' files,
// links, busybox's applets, the CA bundle, the static files under images/NAME/rootfs, and (controller)
// Node and enbi. Then the check that every executable finds every library it loads.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { CA_BUNDLE, EXCLUDE, packagesFor, type ImageDef, type PlatformInfo } from './definition.ts';
import { debEntries, fetchDebs, fetchNpmTarball, lockedFor, nodeFromTarball, type Locked } from './debs.ts';
import { isElf, readElf } from './elf.ts';
import { goTool } from './gotools.ts';
import type { Entry } from './oci.ts';

export const IMAGES_DIR = new URL('.', import.meta.url).pathname.replace(/\/$/, '');

/** Where busybox-static puts busybox (merged /usr: /bin is a link to usr/bin); its applets go beside it. */
export const BUSYBOX = 'usr/bin/busybox';

export interface RootfsInputs {
  lock: Locked[];
  /** Where .debs and npm tarballs are cached. */
  cache: string;
  /** The /app entries (compiled once for every platform). */
  app?: () => Entry[];
  /** Node's version (package-lock.json's `node`). */
  nodeVersion: string;
  /** false: leave the Go programs out (they come from another Dockerfile stage). */
  goTools?: boolean;
}

/** Files under images/NAME/rootfs, as image entries. */
export function staticFiles(name: string): Entry[] {
  const root = join(IMAGES_DIR, name, 'rootfs');
  const out: Entry[] = [];
  const walk = (rel: string): void => {
    for (const n of readdirSync(join(root, rel)).sort()) {
      const r = rel === '' ? n : `${rel}/${n}`;
      const st = statSync(join(root, r));
      if (st.isDirectory()) walk(r);
      else
        out.push({ type: 'file', path: r, data: readFileSync(join(root, r)), mode: st.mode & 0o111 ? 0o755 : 0o644 });
    }
  };
  if (existsSync(root)) walk('');
  return out;
}

export function applets(name: string): string[] {
  return readFileSync(join(IMAGES_DIR, name, 'busybox.applets'), 'utf8')
    .split('\n')
    .filter(Boolean);
}

/** Concatenates the certificates as update-ca-certificates does (sorted, each ending in a newline). */
export function caBundle(entries: Map<string, Entry>): Buffer {
  const certs = [...entries.values()]
    .filter(
      (e): e is Extract<Entry, { type: 'file' }> =>
        e.type === 'file' && e.path.startsWith('usr/share/ca-certificates/') && e.path.endsWith('.crt'),
    )
    .sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  if (certs.length === 0) throw new Error('caBundle: ca-certificates holds no usr/share/ca-certificates/*.crt');
  return Buffer.concat(certs.flatMap((c) => (c.data.at(-1) === 0x0a ? [c.data] : [c.data, Buffer.from('\n')])));
}

/** Adds an entry; the same path twice is an error unless both are the same directory, link or bytes. */
function put(map: Map<string, Entry>, e: Entry, from: string): void {
  const old = map.get(e.path);
  if (old !== undefined) {
    const same =
      (old.type === 'dir' && e.type === 'dir') ||
      (old.type === 'symlink' && e.type === 'symlink' && old.target === e.target) ||
      (old.type === 'file' && e.type === 'file' && old.data.equals(e.data));
    if (!same) throw new Error(`${e.path} comes twice, differently (the second from ${from})`);
    if (old.type === 'dir' && e.type === 'dir') return;
  }
  map.set(e.path, e);
}

/** Follows links inside the image to a file entry. */
function resolve(map: Map<string, Entry>, path: string): Extract<Entry, { type: 'file' }> | undefined {
  let p = path.replace(/^\/+/, '');
  for (let i = 0; i < 40; i++) {
    // Links may sit on any directory of the path (e.g. /lib64 → …): resolve component by component.
    const parts = p.split('/');
    let changed = false;
    for (let k = 1; k <= parts.length; k++) {
      const head = parts.slice(0, k).join('/');
      const e = map.get(head);
      if (e?.type === 'symlink') {
        const base = e.target.startsWith('/') ? e.target.slice(1) : posix.join(posix.dirname(head), e.target);
        p = posix.normalize([base, ...parts.slice(k)].join('/')).replace(/^\/+/, '');
        changed = true;
        break;
      }
    }
    if (!changed) {
      const e = map.get(p);
      return e?.type === 'file' ? e : undefined;
    }
  }
  return undefined;
}

/** What the loader would fail to find for these executables, as "file: needs lib" lines. */
export function missingLibraries(map: Map<string, Entry>, executables: string[], triplet: string): string[] {
  const missing: string[] = [];
  const seen = new Set<string>();
  const check = (path: string, by: string): void => {
    if (seen.has(path)) return;
    seen.add(path);
    const f = resolve(map, path);
    if (!f) return void missing.push(`${by}: needs ${path}, which is not in the image`);
    if (!isElf(f.data)) return;
    const elf = readElf(f.data, path);
    if (elf.interpreter !== undefined && !resolve(map, elf.interpreter))
      missing.push(`${path}: its loader ${elf.interpreter} is not in the image`);
    const origin = posix.dirname(f.path);
    const dirs = [
      ...elf.runpath.map((d) => d.replace('$ORIGIN', `/${origin}`)),
      `/lib/${triplet}`,
      `/usr/lib/${triplet}`,
      '/lib',
      '/usr/lib',
    ];
    for (const lib of elf.needed) {
      const hit = dirs.map((d) => posix.join(d, lib).slice(1)).find((c) => resolve(map, c) !== undefined);
      if (hit === undefined) missing.push(`${path}: needs ${lib}, which no package of the image holds`);
      else check(hit, path);
    }
  };
  for (const x of executables) check(x.replace('TRIPLET', triplet), 'the definition');
  return missing;
}

/** The entries of one image for one platform. */
export function rootfs(def: ImageDef, platform: string, info: PlatformInfo, inputs: RootfsInputs): Entry[] {
  const map = new Map<string, Entry>();
  const locked = packagesFor(def, info.deb).map((p) => lockedFor(inputs.lock, p, info.deb));
  const debs = fetchDebs(locked, join(inputs.cache, 'debs'));
  for (const e of locked) for (const entry of debEntries(debs.get(e)!, EXCLUDE)) put(map, entry, `${e.name}:${e.arch}`);
  for (const l of def.links) put(map, { type: 'symlink', ...l }, 'definition links');
  if (def.busyboxApplets) {
    const bb = map.get(BUSYBOX);
    if (bb?.type !== 'file') throw new Error(`${def.name}: busyboxApplets but no ${BUSYBOX} (add busybox-static)`);
    const list = applets(def.name);
    // busybox lists its applets only where it runs: checked on the host's own architecture.
    if (platform === hostPlatform()) {
      const actual = busyboxList(bb.data);
      if (actual.join('\n') !== list.join('\n')) {
        const diff = [
          ...actual.filter((a) => !list.includes(a)).map((a) => `+${a}`),
          ...list.filter((a) => !actual.includes(a)).map((a) => `-${a}`),
        ];
        throw new Error(
          `images/${def.name}/busybox.applets differs from what the locked busybox lists (${diff.join(' ')}): write \`busybox --list | grep -vx busybox | LC_ALL=C sort\` there`,
        );
      }
    }
    for (const a of list)
      put(map, { type: 'symlink', path: posix.join(posix.dirname(BUSYBOX), a), target: 'busybox' }, 'busybox applets');
  }
  if (def.caBundle) put(map, { type: 'file', path: CA_BUNDLE, data: caBundle(map), mode: 0o644 }, 'CA bundle');
  for (const d of def.dirs) put(map, { type: 'dir', path: d.path, mode: d.mode }, 'definition dirs');
  if (def.app) {
    const tgz = fetchNpmTarball(lockedFor(inputs.lock, `node-linux-${info.npm}`, 'npm'), join(inputs.cache, 'npm'));
    put(
      map,
      { type: 'file', path: 'nodejs/bin/node', data: nodeFromTarball(tgz), mode: 0o755 },
      `node-linux-${info.npm}`,
    );
    for (const e of inputs.app!()) put(map, e, 'enbi');
  }
  for (const tool of inputs.goTools === false ? [] : def.goTools) {
    put(
      map,
      { type: 'file', path: tool.path, data: goTool(tool, info.architecture, inputs.cache), mode: 0o755 },
      `${tool.module}@${tool.version}`,
    );
  }
  // Static files replace what packages ship (e.g. an /etc/passwd of the image's own users).
  for (const f of staticFiles(def.name)) map.set(f.path, f);
  const missing = missingLibraries(map, def.executables, info.triplet);
  if (missing.length > 0)
    throw new Error(
      `${def.name} for ${platform}: the loader would fail:\n  ${missing.join('\n  ')}\nAdd the packages that ship them to images/definition.ts, then npm run images -- --update-lock`,
    );
  return [...map.values()];
}

export function hostPlatform(): string {
  return process.arch === 'x64' ? 'linux/amd64' : process.arch === 'arm64' ? 'linux/arm64' : `linux/${process.arch}`;
}

/** busybox --list of this binary (host architecture), sorted, without busybox itself. */
function busyboxList(data: Buffer): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'enbi-bb-'));
  try {
    writeFileSync(join(dir, 'busybox'), data);
    chmodSync(join(dir, 'busybox'), 0o755);
    const out = execFileSync(join(dir, 'busybox'), ['--list'], { encoding: 'utf8' });
    return out
      .split('\n')
      .filter((a) => a !== '' && a !== 'busybox')
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
