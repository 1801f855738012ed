// The two images of a build Job, assembled from this machine's files (nothing can be pulled here) with
// test/cluster/images.ts's docker-archive writer, cached by content, and imported into a node's containerd.
//
//   enbi.local/builder:dev   Debian's nix (2.8) with every library ldd names, /usr/libexec/nix/build-remote,
//                            git with git-remote-http(s) for git+http(s) flakes, CA certificates, a static
//                            busybox as /bin/sh and its applets (what BUILD_SCRIPT and fixture builders run).
//                            Nix's binaries stay outside /nix: the node's cache volume is mounted there.
//   enbi.local/importer:dev  what runs `enbi import` as production's controller image does: the Node 24
//                            binary these tests run (node_modules/.bin/node) as /nodejs/bin/node with its
//                            libraries, the repo's src/ and package.json under /app (`enbi import` loads no
//                            package from node_modules); entrypoint node /app/src/cli/main.ts
//                            (Node strips the types), so the Job passes `import …` as arguments. No ctr.
//
// The images keep the host's paths (/usr/bin/nix, /lib/x86_64-linux-gnu/libc.so.6, /lib64/ld-linux…) as
// real directories beside busybox's /bin; the writer has no symlinks in `files`, so the two links of the
// host (build-remote → nix, git-remote-https → git-remote-http) are copies, which run the same.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { buildBusyboxImage, importImage, type BuiltImage } from '../cluster/images.ts';
import { cacheDir, hostBin } from '../cluster/paths.ts';

export const BUILDER_IMAGE = 'enbi.local/builder:dev';
export const IMPORTER_IMAGE = 'enbi.local/importer:dev';

/** A file of the image: its path there, and where its bytes come from on this machine. */
interface ImageFile {
  path: string;
  from: string;
  mode: number;
}

export interface CachedImage extends BuiltImage {
  /** Whether the archive came from the cache rather than being written now. */
  cached: boolean;
  /** Layer size in bytes (sum of the files, before tar). */
  bytes: number;
}

/** Libraries a dynamically linked ELF loads, as ldd names them (the loader included); [] for static ones. */
export function sharedLibraries(binary: string): string[] {
  let out: string;
  try {
    out = execFileSync('ldd', [binary], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const text = `${(e as { stdout?: string }).stdout ?? ''}${(e as { stderr?: string }).stderr ?? ''}`;
    if (/not a dynamic executable|statically linked/.test(text)) return [];
    throw new Error(`ldd ${binary} failed: ${text.trim()}`);
  }
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    if (/=> not found/.test(line)) throw new Error(`ldd ${binary}: ${line.trim()}`);
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1] !== undefined) libs.push(m[1]);
  }
  return libs;
}

/** The binaries at their host paths plus every library they load, deduplicated, sorted by image path. */
function withLibraries(binaries: string[], extra: ImageFile[] = []): ImageFile[] {
  const byPath = new Map<string, ImageFile>();
  const add = (path: string, from = path): void => {
    if (!byPath.has(path)) byPath.set(path, { path, from, mode: statSync(from).mode & 0o7777 });
  };
  for (const b of binaries) {
    add(b);
    for (const lib of sharedLibraries(b)) add(lib);
  }
  for (const f of extra) byPath.set(f.path, f);
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function builderFiles(): ImageFile[] {
  const nix = hostBin('nix');
  const git = hostBin('git');
  const gitCore = '/usr/lib/git-core';
  const remoteHttp = join(gitCore, 'git-remote-http');
  for (const f of [remoteHttp, '/etc/ssl/certs/ca-certificates.crt']) {
    if (!existsSync(f)) throw new Error(`${f} is missing: run \`bash test/support/install-build-deps.sh\` (as root)`);
  }
  const libc = sharedLibraries(nix).find((l) => basename(l) === 'libc.so.6');
  if (libc === undefined) throw new Error(`ldd ${nix} names no libc.so.6`);
  const libDir = dirname(libc);
  return withLibraries(
    [nix, git, remoteHttp],
    [
      // Nix runs itself under this name for remote builds; a copy of nix behaves the same as the link.
      { path: '/usr/libexec/nix/build-remote', from: nix, mode: 0o755 },
      { path: join(gitCore, 'git-remote-https'), from: remoteHttp, mode: 0o755 },
      { path: '/etc/ssl/certs/ca-certificates.crt', from: realpathSync('/etc/ssl/certs/ca-certificates.crt'), mode: 0o644 },
      // glibc loads these by name for host and user look-ups (Nix preloads nss_dns and warns without it).
      ...['libnss_dns.so.2', 'libnss_files.so.2'].map((l) => ({ path: join(libDir, l), from: join(libDir, l), mode: 0o644 })),
      // Nix's git cache runs `git init`, which warns without templates; the two that are not hook samples.
      ...['description', 'info/exclude'].map((t) => ({ path: `/usr/share/git-core/templates/${t}`, from: `/usr/share/git-core/templates/${t}`, mode: 0o644 })),
    ],
  );
}

const BUILDER_EXTRA: { path: string; data: string }[] = [
  // Nix reads it when present; a build Job passes its client settings in NIX_CONFIG, the node daemon reads its own.
  { path: 'etc/nix/nix.conf', data: '# enbi builder: settings come from NIX_CONFIG (clients) or NIX_CONF_DIR (the daemon)\n' },
  { path: 'etc/nsswitch.conf', data: 'passwd: files\ngroup: files\nhosts: files dns\n' },
  // The build container's user (BUILD_UID): not root, so the node's Nix daemon does not trust it.
  { path: 'etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\nbuild:x:65532:65532:enbi build:/home/build:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' },
  { path: 'etc/group', data: 'root:x:0:\nbuild:x:65532:\nnobody:x:65534:\n' },
];

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

interface Recipe {
  ref: string;
  files: ImageFile[];
  data?: { path: string; data: string }[];
  env: string[];
  entrypoint?: string[];
}

/** Writes the archive of a recipe, or returns the cached one whose inputs had the same content. */
function assemble(name: string, r: Recipe, dir = join(cacheDir(), 'images')): CachedImage {
  const busybox = readFileSync(hostBin('busybox'));
  const contents = r.files.map((f) => readFileSync(f.from));
  const key = sha256(
    JSON.stringify({
      v: 1,
      ref: r.ref,
      env: r.env,
      entrypoint: r.entrypoint ?? null,
      busybox: sha256(busybox),
      files: r.files.map((f, i) => [f.path, f.mode, sha256(contents[i]!)]),
      data: r.data ?? [],
    }),
  ).slice(0, 20);
  const out = join(dir, `${name}-${key}.tar`);
  const meta = `${out}.json`;
  const bytes = contents.reduce((n, c) => n + c.length, busybox.length);
  if (existsSync(out) && existsSync(meta)) return { ...(JSON.parse(readFileSync(meta, 'utf8')) as BuiltImage), out, cached: true, bytes };
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const built = buildBusyboxImage({
    ref: r.ref,
    out: tmp,
    env: r.env,
    ...(r.entrypoint ? { entrypoint: r.entrypoint, cmd: [] } : { cmd: ['/bin/sh'] }),
    files: [
      ...r.files.map((f, i) => ({ path: f.path, data: contents[i]!, mode: f.mode })),
      ...(r.data ?? []).map((d) => ({ path: d.path, data: d.data, mode: 0o644 })),
    ],
  });
  renameSync(tmp, out);
  const result: BuiltImage = { ...built, out };
  writeFileSync(meta, JSON.stringify(result, null, 2) + '\n');
  return { ...result, cached: false, bytes };
}

/** enbi.local/builder:dev as a docker-archive (cached). */
export function builderImage(options: { ref?: string; dir?: string } = {}): CachedImage {
  return assemble(
    'builder',
    {
      ref: options.ref ?? BUILDER_IMAGE,
      files: builderFiles(),
      data: BUILDER_EXTRA,
      env: ['PATH=/usr/bin:/bin', 'NIX_SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt', 'GIT_SSL_CAINFO=/etc/ssl/certs/ca-certificates.crt'],
    },
    options.dir,
  );
}

const REPO = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');

/** Every file below dir (symlinks followed, nested node_modules and .bin left out). */
function filesBelow(dir: string, skip: (rel: string) => boolean = () => false): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, e.name);
      const rel = relative(dir, full);
      if (e.name === 'node_modules' || e.name === '.bin' || skip(rel)) continue;
      const st = statSync(full);
      if (st.isDirectory()) walk(full);
      else if (st.isFile()) out.push(full);
    }
  };
  walk(dir);
  return out;
}

/** The Node binary the tests run (node_modules/.bin/node: Node 24 from the `node` devDependency). */
export function nodeBinary(): string {
  const local = join(REPO, 'node_modules', '.bin', 'node');
  return existsSync(local) ? realpathSync(local) : process.execPath;
}

function importerFiles(): ImageFile[] {
  const node = nodeBinary();
  const app: ImageFile[] = [];
  const add = (from: string): void => {
    app.push({ path: join('/app', relative(REPO, from)), from, mode: statSync(from).mode & 0o7777 });
  };
  for (const f of filesBelow(join(REPO, 'src'))) add(f);
  add(join(REPO, 'package.json'));
  // No node_modules: `enbi import` loads nothing but src/ and Node's own modules (gRPC is src/containerd/grpc/).
  // The binary at /nodejs/bin/node, as in the distroless nodejs image production uses.
  return withLibraries([node], app).map((f) => (f.path === node ? { ...f, path: '/nodejs/bin/node' } : f));
}

/** enbi.local/importer:dev as a docker-archive (cached by the content of every file in it). */
export function importerImage(options: { ref?: string; dir?: string } = {}): CachedImage {
  return assemble(
    'importer',
    { ref: options.ref ?? IMPORTER_IMAGE, files: importerFiles(), env: ['PATH=/nodejs/bin:/bin'], entrypoint: ['/nodejs/bin/node', '/app/src/cli/main.ts'] },
    options.dir,
  );
}

export interface BuildImages {
  builder: CachedImage;
  importer: CachedImage;
}

/** Assembles both images and imports them into a node's containerd (with the node's ctr). */
export async function importBuildImages(node: { containerdSocket: string; ctr: string }): Promise<BuildImages> {
  const builder = builderImage();
  const importer = importerImage();
  for (const img of [builder, importer]) await importImage(node.containerdSocket, img.out, { ctr: node.ctr });
  return { builder, importer };
}

// `node test/support/build-images.ts [SOCKET [CTR]]`: writes both archives and prints them; imports them
// into SOCKET's containerd when given.
if (import.meta.filename === process.argv[1]) {
  const [socket, ctr] = process.argv.slice(2);
  const t0 = Date.now();
  const images = socket !== undefined ? await importBuildImages({ containerdSocket: socket, ctr: ctr ?? hostBin('ctr') }) : { builder: builderImage(), importer: importerImage() };
  for (const img of Object.values(images)) {
    console.log(`${img.ref}  ${img.configDigest}  ${(img.bytes / 1e6).toFixed(1)} MB  ${img.cached ? 'cached' : 'written'}  ${img.out}`);
  }
  console.log(`${Date.now() - t0} ms`);
}
