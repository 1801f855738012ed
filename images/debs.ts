// Pinned inputs: the Debian packages (and Node's npm binary package) of images/packages.lock, downloaded
// with apt-get download / npm pack into a cache, checked against the lock's sha256, and unpacked. The
// packages come from the images' Debian release (images/definition.ts DEBIAN.suite), read through an apt
// state of enbi's own (~/.cache/enbi/apt/SUITE: its sources.list, lists and cache) from the Debian mirror
// this machine's apt sources name: the machine's own apt state, release and architectures are never touched.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
  chownSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DEBIAN, PLATFORMS } from './definition.ts';
import { sha256, type Entry } from './oci.ts';

/** One line of images/packages.lock: NAME ARCH VERSION SHA256 (ARCH `npm` for an npm package's tarball). */
export interface Locked {
  name: string;
  arch: string;
  version: string;
  sha256: string;
}

export const cacheDir = (): string => resolve(process.env.ENBI_CACHE_DIR ?? join(homedir(), '.cache', 'enbi'));

/** The lock's header: the format, and the Debian release whose packages it pins (so the suite is part of the lock). */
export const lockHeader = (
  suite = DEBIAN.suite,
): string => `# The pinned inputs of enbi's images (images/definition.ts): NAME ARCH VERSION SHA256.
# Debian packages of ${suite} (images/definition.ts DEBIAN.suite; from ${suite}, ${suite}-updates and
# ${suite}-security; ARCH amd64, arm64 or all; SHA256 of the .deb) and Node's binary package from npm
# (ARCH npm; SHA256 of the .tgz). images/build.ts and the Dockerfiles download exactly these and refuse
# anything else. Rewrite with \`npm run images -- --update-lock\` (apt's current versions in ${suite}).
`;

export function parseLock(text: string, file = 'images/packages.lock'): Locked[] {
  const out: Locked[] = [];
  text.split('\n').forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const [name, arch, version, hash, extra] = t.split(/\s+/);
    if (extra !== undefined || hash === undefined || !/^[0-9a-f]{64}$/.test(hash))
      throw new Error(`${file}:${i + 1}: want NAME ARCH VERSION SHA256, got "${t}"`);
    out.push({ name: name!, arch: arch!, version: version!, sha256: hash });
  });
  return out;
}

export function formatLock(entries: Locked[], suite = DEBIAN.suite): string {
  const sorted = [...entries].sort((a, b) =>
    a.name === b.name ? (a.arch < b.arch ? -1 : 1) : a.name < b.name ? -1 : 1,
  );
  return lockHeader(suite) + sorted.map((e) => `${e.name} ${e.arch} ${e.version} ${e.sha256}\n`).join('');
}

/** The lock entry of a package for a Debian architecture (or its `all` entry). */
export function lockedFor(lock: Locked[], name: string, arch: string): Locked {
  const e = lock.find((l) => l.name === name && (l.arch === arch || l.arch === 'all'));
  if (!e)
    throw new Error(
      `images/packages.lock has no entry for ${name}:${arch}: run \`npm run images -- --update-lock --platform linux/${arch}\``,
    );
  return e;
}

const debName = (e: Locked): string => `${e.name}_${e.version.replace(/:/g, '%3a')}_${e.arch}.deb`;

function sh(cmd: string, args: string[], o: { cwd?: string } = {}): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { cwd: o.cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

/** Debian's release names: how a machine's apt sources tell Debian's own archive from other repositories. */
const DEBIAN_SUITES =
  /^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable)(-updates|-security|-backports|-proposed-updates)?$/;

/**
 * The URIs of Debian's archive and security archive in this machine's apt sources (sources.list and
 * sources.list.d/*.list one-line entries, sources.list.d/*.sources deb822 stanzas): the mirror this machine
 * reaches. ENBI_DEBIAN_MIRROR and ENBI_DEBIAN_SECURITY_MIRROR override them.
 */
export function debianMirrors(etc = '/etc/apt'): { archive: string; security: string } {
  const found: { uri: string; suites: string[] }[] = [];
  const files = [
    join(etc, 'sources.list'),
    ...(existsSync(join(etc, 'sources.list.d'))
      ? readdirSync(join(etc, 'sources.list.d'))
          .sort()
          .map((f) => join(etc, 'sources.list.d', f))
      : []),
  ];
  for (const f of files) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    if (f.endsWith('.list')) {
      for (const line of text.split('\n')) {
        const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
        if (m) found.push({ uri: m[1]!, suites: [m[2]!] });
      }
    } else if (f.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (k: string): string[] =>
          new RegExp(`^${k}:[ \\t]*(.*)$`, 'mi').exec(stanza)?.[1]?.trim().split(/\s+/).filter(Boolean) ?? [];
        if (!field('Types').includes('deb') || field('Enabled')[0] === 'no') continue;
        for (const uri of field('URIs')) found.push({ uri, suites: field('Suites') });
      }
    }
  }
  const pick = (security: boolean): string | undefined =>
    found
      .find((s) => s.suites.some((x) => DEBIAN_SUITES.test(x) && x.endsWith('-security') === security))
      ?.uri.replace(/\/+$/, '');
  const archive = process.env.ENBI_DEBIAN_MIRROR ?? pick(false);
  if (archive === undefined)
    throw new Error(
      `no Debian archive in ${etc}/sources.list or ${etc}/sources.list.d/: set ENBI_DEBIAN_MIRROR (e.g. http://deb.debian.org/debian)`,
    );
  const security =
    process.env.ENBI_DEBIAN_SECURITY_MIRROR ?? pick(true) ?? archive.replace(/\/debian$/, '/debian-security');
  return { archive, security };
}

/** Where enbi's own apt state for a Debian suite lives (sources.list, lists, cache). */
export const aptDir = (suite = DEBIAN.suite): string => join(cacheDir(), 'apt', suite);

/**
 * apt-get/apt-cache options that read SUITE (and its -updates and -security) for every platform's
 * architecture from enbi's own state: nothing of this machine's sources, lists, dpkg status, preferences
 * or architectures. The machine's apt.conf.d still applies (how it reaches its mirror).
 */
export function aptOptions(suite = DEBIAN.suite): string[] {
  const dir = aptDir(suite);
  const { archive, security } = debianMirrors();
  mkdirSync(join(dir, 'lists'), { recursive: true });
  mkdirSync(join(dir, 'cache'), { recursive: true });
  // A snapshot's Release files are past their Valid-Until by design.
  const o = (uri: string): string =>
    `[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg${uri.includes('snapshot.debian.org') ? ' check-valid-until=no' : ''}]`;
  const list =
    [
      `deb ${o(archive)} ${archive} ${suite} main`,
      `deb ${o(archive)} ${archive} ${suite}-updates main`,
      `deb ${o(security)} ${security} ${suite}-security main`,
    ].join('\n') + '\n';
  const file = join(dir, 'sources.list');
  if (!existsSync(file) || readFileSync(file, 'utf8') !== list) writeFileSync(file, list);
  return [
    '-o',
    `Dir::Etc::SourceList=${file}`,
    '-o',
    'Dir::Etc::SourceParts=/dev/null',
    '-o',
    `Dir::State::Lists=${join(dir, 'lists')}`,
    '-o',
    `Dir::Cache=${join(dir, 'cache')}`,
    '-o',
    'Dir::State::status=/dev/null',
    '-o',
    'Dir::Etc::Preferences=/dev/null',
    '-o',
    'Dir::Etc::PreferencesParts=/dev/null',
    ...[...new Set(Object.values(PLATFORMS).map((p) => p.deb))].flatMap((a) => ['-o', `APT::Architectures::=${a}`]),
  ];
}

const updated = new Set<string>();

/** apt-get update of enbi's own lists for the suite, once per process (again with `force`). */
export function aptUpdate(suite = DEBIAN.suite, force = false): void {
  if (updated.has(suite) && !force) return;
  const r = sh('apt-get', [...aptOptions(suite), 'update', '-q']);
  if (!r.ok) throw new Error(`apt-get update of ${suite} (${aptDir(suite)}/sources.list) failed:\n${r.out}`);
  // A list that could not be fetched leaves the one before it: said, and the download tried anyway.
  if (/^(Err:|W:)/m.test(r.out))
    process.stderr.write(
      `apt-get update of ${suite} reported:\n${r.out
        .split('\n')
        .filter((l) => /^(Err:|W:)/.test(l))
        .join('\n')}\n`,
    );
  updated.add(suite);
}

const apt = (cmd: 'apt-get' | 'apt-cache', args: string[], o: { cwd?: string } = {}): { ok: boolean; out: string } =>
  sh(cmd, [...aptOptions(), ...args], o);

/** What apt offers for each name on arch (one apt-cache call: each parses every list): version and architecture. */
function aptCandidates(names: string[], arch: string): Map<string, { version: string; arch: string }> {
  const out = new Map<string, { version: string; arch: string }>();
  const read = (specs: string[]): void => {
    // apt-cache show fails as a whole when one name is unknown: each missing name is then left out.
    for (const stanza of apt('apt-cache', ['show', '--no-all-versions', ...specs]).out.split(/\n\s*\n/)) {
      const f = (k: string): string | undefined => new RegExp(`^${k}: (.+)$`, 'm').exec(stanza)?.[1]?.trim();
      const [name, version, a] = [f('Package'), f('Version'), f('Architecture')];
      if (
        name !== undefined &&
        version !== undefined &&
        a !== undefined &&
        (a === arch || a === 'all') &&
        !out.has(name)
      )
        out.set(name, { version, arch: a });
    }
  };
  read(names.map((n) => `${n}:${arch}`));
  // Architecture-independent packages answer only to their plain name.
  const rest = names.filter((n) => !out.has(n));
  if (rest.length > 0) read(rest);
  return out;
}

/** apt-get download of these packages into dir (as _apt where it exists, as apt downloads). */
function aptDownload(specs: string[], dir: string): { ok: boolean; out: string } {
  try {
    chownSync(dir, Number(sh('id', ['-u', '_apt']).out) || 0, 0);
  } catch {
    /* no _apt user, or not root: apt downloads as the caller */
  }
  return apt('apt-get', ['download', '-q', ...specs], { cwd: dir });
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
  if (missing.length === 0) return out;
  aptUpdate();
  const tmp = mkdtempSync(join(tmpdir(), 'enbi-debs-'));
  try {
    const specs = missing.map((e) =>
      e.arch === 'all' ? `${e.name}=${e.version}` : `${e.name}:${e.arch}=${e.version}`,
    );
    const r = aptDownload(specs, tmp);
    if (!r.ok) {
      const why = missing
        .map((e) => {
          const c = aptCandidates([e.name], e.arch === 'all' ? PLATFORMS['linux/amd64']!.deb : e.arch).get(e.name);
          return c?.version === e.version
            ? undefined
            : `  ${e.name}:${e.arch}: locked ${e.version}, apt offers ${c?.version ?? 'nothing'}`;
        })
        .filter(Boolean);
      throw new Error(
        `apt-get download of the locked packages (Debian ${DEBIAN.suite}) failed:\n${why.join('\n') || r.out}\n` +
          `Point ENBI_DEBIAN_MIRROR at a snapshot that holds them (http://snapshot.debian.org/archive/debian/${DEBIAN.snapshot}, see images/definition.ts), or update the lock: npm run images -- --update-lock`,
      );
    }
    for (const e of missing) {
      const got = join(tmp, debName(e));
      if (!existsSync(got))
        throw new Error(`apt-get download gave no ${debName(e)} (got ${readdirSync(tmp).join(', ')})`);
      const hash = sha256(readFileSync(got));
      if (hash !== e.sha256)
        throw new Error(
          `${e.name}:${e.arch} ${e.version}: the downloaded .deb has sha256 ${hash}, images/packages.lock says ${e.sha256}`,
        );
      renameSync(got, join(cache, debName(e)));
      out.set(e, join(cache, debName(e)));
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

/** Lock entries for these packages on these Debian architectures: apt's candidate in DEBIAN.suite (lists updated first). */
export function resolveLock(packages: string[], arches: string[], cache: string): Locked[] {
  aptUpdate(DEBIAN.suite, true);
  const out: Locked[] = [];
  const seen = new Set<string>();
  for (const arch of arches) {
    const candidates = aptCandidates(packages, arch);
    for (const name of packages) {
      const c = candidates.get(name);
      if (c === undefined) throw new Error(`apt knows no ${name}:${arch} in ${DEBIAN.suite}`);
      const a = c.arch === 'all' ? 'all' : arch;
      if (seen.has(`${name}:${a}`)) continue;
      seen.add(`${name}:${a}`);
      out.push({ name, arch: a, version: c.version, sha256: '' });
    }
  }
  // The .deb's sha256 goes into the lock: from the cache when this version was downloaded before.
  const missing = out.filter((e) => !existsSync(join(cache, debName(e))));
  if (missing.length > 0) {
    const tmp = mkdtempSync(join(tmpdir(), 'enbi-lock-'));
    try {
      const r = aptDownload(
        missing.map((e) => (e.arch === 'all' ? `${e.name}=${e.version}` : `${e.name}:${e.arch}=${e.version}`)),
        tmp,
      );
      if (!r.ok) throw new Error(`apt-get download of ${missing.length} packages failed: ${r.out}`);
      mkdirSync(cache, { recursive: true });
      for (const e of missing) renameSync(join(tmp, debName(e)), join(cache, debName(e)));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  for (const e of out) e.sha256 = sha256(readFileSync(join(cache, debName(e))));
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
    if (!r.ok)
      throw new Error(`npm pack ${e.name}@${e.version} failed (it needs the npm registry or npm's cache): ${r.out}`);
    const got = join(tmp, `${e.name}-${e.version}.tgz`);
    const hash = sha256(readFileSync(got));
    if (e.sha256 !== '' && hash !== e.sha256)
      throw new Error(
        `${e.name}@${e.version}: npm gave a tarball with sha256 ${hash}, images/packages.lock says ${e.sha256}`,
      );
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
