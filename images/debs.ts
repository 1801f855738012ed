// Pinned inputs: the Debian packages (and Node's npm binary package) of images/packages.lock, downloaded
// with apt-get download / npm pack into a cache, checked against the lock's sha256, and unpacked.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256, type Entry } from './oci.ts';

/** One line of images/packages.lock: NAME ARCH VERSION SHA256 (ARCH `npm` for an npm package's tarball). */
export interface Locked {
  name: string;
  arch: string;
  version: string;
  sha256: string;
}

export const LOCK_HEADER = `# The pinned inputs of enbi's images (images/definition.ts): NAME ARCH VERSION SHA256.
# Debian packages (ARCH amd64, arm64 or all; SHA256 of the .deb) and Node's binary package from npm
# (ARCH npm; SHA256 of the .tgz). images/build.ts and the Dockerfiles download exactly these and refuse
# anything else. Rewrite with \`npm run images -- --update-lock\` (versions from dpkg-query, else apt).
`;

export function parseLock(text: string, file = 'images/packages.lock'): Locked[] {
  const out: Locked[] = [];
  text.split('\n').forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const [name, arch, version, hash, extra] = t.split(/\s+/);
    if (extra !== undefined || hash === undefined || !/^[0-9a-f]{64}$/.test(hash)) throw new Error(`${file}:${i + 1}: want NAME ARCH VERSION SHA256, got "${t}"`);
    out.push({ name: name!, arch: arch!, version: version!, sha256: hash });
  });
  return out;
}

export function formatLock(entries: Locked[]): string {
  const sorted = [...entries].sort((a, b) => (a.name === b.name ? (a.arch < b.arch ? -1 : 1) : a.name < b.name ? -1 : 1));
  return LOCK_HEADER + sorted.map((e) => `${e.name} ${e.arch} ${e.version} ${e.sha256}\n`).join('');
}

/** The lock entry of a package for a Debian architecture (or its `all` entry). */
export function lockedFor(lock: Locked[], name: string, arch: string): Locked {
  const e = lock.find((l) => l.name === name && (l.arch === arch || l.arch === 'all'));
  if (!e) throw new Error(`images/packages.lock has no entry for ${name}:${arch}: run \`npm run images -- --update-lock --platform linux/${arch}\``);
  return e;
}

const debName = (e: Locked): string => `${e.name}_${e.version.replace(/:/g, '%3a')}_${e.arch}.deb`;

function sh(cmd: string, args: string[], o: { cwd?: string } = {}): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { cwd: o.cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

/** Whether dpkg knows the architecture (its native one or an added foreign one). */
function dpkgKnows(arch: string): boolean {
  if (arch === 'all' || sh('dpkg', ['--print-architecture']).out === arch) return true;
  return sh('dpkg', ['--print-foreign-architectures']).out.split('\n').includes(arch);
}

/**
 * Runs fn with the architecture known to apt. A foreign one is added and its lists fetched only for the
 * download, then removed again (nothing of it is installed), as test/cluster/fetch-busybox.sh does.
 */
function withArch<T>(arch: string, fn: () => T): T {
  if (dpkgKnows(arch)) return fn();
  if (process.getuid?.() !== 0) throw new Error(`${arch} packages are not cached and dpkg does not know ${arch}: run as root (the build adds the architecture for the download only), or build --platform linux/amd64`);
  execFileSync('dpkg', ['--add-architecture', arch]);
  try {
    const u = sh('apt-get', ['update', '-qq']);
    if (!u.ok) process.stderr.write(`apt-get update reported errors (trying the download anyway):\n${u.out}\n`);
    return fn();
  } finally {
    const r = sh('dpkg', ['--remove-architecture', arch]);
    if (!r.ok) process.stderr.write(`could not remove architecture ${arch} from dpkg: ${r.out}\n`);
  }
}

/** What apt offers for name:arch (for error messages and --update-lock). */
function aptCandidate(name: string, arch: string): { version?: string; arch?: string } {
  let r = sh('apt-cache', ['show', '--no-all-versions', `${name}:${arch}`]);
  // Architecture-independent packages answer only to their plain name.
  if (!r.ok || !/^Version: /m.test(r.out)) r = sh('apt-cache', ['show', '--no-all-versions', name]);
  if (!r.ok || (!/^Architecture: all$/m.test(r.out) && !r.out.includes(`Architecture: ${arch}`))) return {};
  return { version: /^Version: (.+)$/m.exec(r.out)?.[1], arch: /^Architecture: (.+)$/m.exec(r.out)?.[1] };
}

/** Every version apt can download of name:arch. */
function aptVersions(name: string, arch: string): string[] {
  const r = sh('apt-cache', ['madison', arch === 'all' ? name : `${name}:${arch}`]);
  return r.ok ? r.out.split('\n').map((l) => l.split('|')[1]?.trim() ?? '').filter(Boolean) : [];
}

/** The version dpkg has installed here, if any. */
export function installedVersion(name: string, arch: string): string | undefined {
  const r = sh('dpkg-query', ['-W', '-f', '${Status} ${Version}', arch === 'all' ? name : `${name}:${arch}`]);
  const m = /install ok installed (\S+)/.exec(r.out);
  return r.ok && m ? m[1] : undefined;
}

/** Paths of the cached .debs for these lock entries, downloading the missing ones; fails naming what differs. */
export function fetchDebs(entries: Locked[], cache: string): Map<Locked, string> {
  const out = new Map<Locked, string>();
  const missing: Locked[] = [];
  mkdirSync(cache, { recursive: true });
  for (const e of entries) {
    const p = join(cache, debName(e));
    if (existsSync(p) && sha256(readFileSync(p)) === e.sha256) out.set(e, p);
    else missing.push(e);
  }
  const byArch = new Map<string, Locked[]>();
  for (const e of missing) byArch.set(e.arch, [...(byArch.get(e.arch) ?? []), e]);
  for (const [arch, list] of byArch) {
    withArch(arch, () => {
      const tmp = mkdtempSync(join(tmpdir(), 'enbi-debs-'));
      try {
        try {
          chownSync(tmp, Number(sh('id', ['-u', '_apt']).out) || 0, 0); // apt-get download writes as _apt
        } catch {
          /* no _apt user: apt downloads as the caller */
        }
        const specs = list.map((e) => (e.arch === 'all' ? `${e.name}=${e.version}` : `${e.name}:${e.arch}=${e.version}`));
        const r = sh('apt-get', ['download', '-q', ...specs], { cwd: tmp });
        if (!r.ok) {
          const why = list.map((e) => {
            const c = aptCandidate(e.name, e.arch === 'all' ? sh('dpkg', ['--print-architecture']).out : e.arch);
            return c.version === e.version ? undefined : `  ${e.name}:${e.arch}: locked ${e.version}, apt offers ${c.version ?? 'nothing'}`;
          }).filter(Boolean);
          throw new Error(`apt-get download of the locked packages failed:\n${why.join('\n') || r.out}\n` +
            `Point apt at a snapshot that holds them (deb [check-valid-until=no] http://snapshot.debian.org/archive/debian/<snapshot> bookworm main, see images/definition.ts), or update the lock: npm run images -- --update-lock`);
        }
        for (const e of list) {
          const got = join(tmp, debName(e));
          if (!existsSync(got)) throw new Error(`apt-get download gave no ${debName(e)} (got ${readdirSync(tmp).join(', ')})`);
          const hash = sha256(readFileSync(got));
          if (hash !== e.sha256) throw new Error(`${e.name}:${e.arch} ${e.version}: the downloaded .deb has sha256 ${hash}, images/packages.lock says ${e.sha256}`);
          renameSync(got, join(cache, debName(e)));
          out.set(e, join(cache, debName(e)));
        }
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    });
  }
  return out;
}

/** Lock entries for these packages on these Debian architectures: installed versions first, else apt's candidate. */
export function resolveLock(packages: string[], arches: string[], cache: string): Locked[] {
  const out: Locked[] = [];
  const seen = new Set<string>();
  for (const arch of arches) {
    withArch(arch, () => {
      for (const name of packages) {
        const c = aptCandidate(name, arch);
        if (c.arch === undefined) throw new Error(`apt knows no ${name}:${arch}`);
        const a = c.arch === 'all' ? 'all' : arch;
        if (seen.has(`${name}:${a}`)) continue;
        seen.add(`${name}:${a}`);
        // The installed version when apt can still download it (what this machine runs), else apt's candidate.
        const installed = installedVersion(name, a);
        const version = installed !== undefined && aptVersions(name, a).includes(installed) ? installed : c.version!;
        if (installed !== undefined && installed !== version) process.stderr.write(`${name}:${a}: installed ${installed} is not downloadable; locking ${version}\n`);
        // The .deb's sha256 goes into the lock: from the cache when this version was downloaded before.
        const e: Locked = { name, arch: a, version, sha256: '' };
        const cached = join(cache, debName(e));
        if (existsSync(cached)) {
          e.sha256 = sha256(readFileSync(cached));
          out.push(e);
          continue;
        }
        const tmp = mkdtempSync(join(tmpdir(), 'enbi-lock-'));
        try {
          const r = sh('apt-get', ['download', '-q', a === 'all' ? `${name}=${version}` : `${name}:${a}=${version}`], { cwd: tmp });
          if (!r.ok) throw new Error(`apt-get download ${name}:${a}=${version}: ${r.out}`);
          const data = readFileSync(join(tmp, debName(e)));
          e.sha256 = sha256(data);
          mkdirSync(cache, { recursive: true });
          writeFileSync(join(cache, debName(e)), data);
        } finally {
          rmSync(tmp, { recursive: true, force: true });
        }
        out.push(e);
      }
    });
  }
  return out;
}

/** Node's binary from its npm package (node-linux-ARCH@VERSION), fetched with `npm pack`, checked, cached. */
export function fetchNpmTarball(e: Locked, cache: string): string {
  const file = join(cache, `${e.name}-${e.version}.tgz`);
  if (existsSync(file) && sha256(readFileSync(file)) === e.sha256) return file;
  mkdirSync(cache, { recursive: true });
  const tmp = mkdtempSync(join(tmpdir(), 'enbi-npm-'));
  try {
    const r = sh('npm', ['pack', '--silent', `${e.name}@${e.version}`, '--pack-destination', tmp]);
    if (!r.ok) throw new Error(`npm pack ${e.name}@${e.version} failed (it needs the npm registry or npm's cache): ${r.out}`);
    const got = join(tmp, `${e.name}-${e.version}.tgz`);
    const hash = sha256(readFileSync(got));
    if (e.sha256 !== '' && hash !== e.sha256) throw new Error(`${e.name}@${e.version}: npm gave a tarball with sha256 ${hash}, images/packages.lock says ${e.sha256}`);
    renameSync(got, file);
    return file;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** bin/node from a node-linux-* tarball. */
export function nodeFromTarball(tgz: string): Buffer {
  return execFileSync('tar', ['-xzOf', tgz, 'package/bin/node'], { maxBuffer: 1 << 30 });
}

/** Every file, link and directory a .deb holds (as dpkg-deb -x writes them), less the excluded paths. */
export function debEntries(deb: string, exclude: string[]): Entry[] {
  const dir = mkdtempSync(join(tmpdir(), 'enbi-deb-'));
  try {
    execFileSync('dpkg-deb', ['-x', deb, dir]);
    const out: Entry[] = [];
    const walk = (rel: string): void => {
      for (const name of readdirSync(join(dir, rel)).sort()) {
        const path = rel === '' ? name : `${rel}/${name}`;
        if (exclude.some((x) => path === x || path.startsWith(`${x}/`))) continue;
        const full = join(dir, path);
        const st = lstatSync(full);
        if (st.isSymbolicLink()) out.push({ type: 'symlink', path, target: readlinkSync(full) });
        else if (st.isDirectory()) {
          out.push({ type: 'dir', path, mode: st.mode & 0o7777 });
          walk(path);
        } else if (st.isFile()) out.push({ type: 'file', path, data: readFileSync(full), mode: st.mode & 0o7777 });
        else throw new Error(`${deb}: ${path} is neither file, directory nor link`);
      }
    };
    walk('');
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
