// Builds enbi's two images as OCI archives from images/definition.ts and the pinned inputs, reproducibly
// (sorted entries, owner 0:0, mtime SOURCE_DATE_EPOCH or 0, no timestamps in configs): the same inputs give
// the same digests. Also writes the Dockerfiles and the lock. Usage: `npm run images -- --help`.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { appEntries, REPO } from './app.ts';
import { DEBIAN, IMAGES, labels, packagesFor, PLATFORMS, type ImageDef } from './definition.ts';
import { aptDir, cacheDir, fetchNpmTarball, formatLock, parseLock, resolveLock, type Locked } from './debs.ts';
import { dockerfile } from './dockerfile.ts';
import { ociArchive, platformImage, type Entry } from './oci.ts';
import { hostPlatform, IMAGES_DIR, rootfs } from './rootfs.ts';

export const REGISTRY = 'ghcr.io/hrzn';
export const LOCK_FILE = join(IMAGES_DIR, 'packages.lock');

export const version = (): string =>
  (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

/** Node's version: package-lock.json's `node` devDependency, the Node the tests run. */
export function nodeVersion(): string {
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string }>;
  };
  const v = lock.packages['node_modules/node']?.version;
  if (v === undefined) throw new Error('package-lock.json has no node_modules/node (the `node` devDependency)');
  return v;
}

/** The reference an image gets: REGISTRY/REPOSITORY:TAG (deploy/ names these with the defaults). */
export const imageRef = (def: ImageDef, registry = REGISTRY, tag = version()): string =>
  `${registry}/${def.repository}:${tag}`;

export { cacheDir };

export interface BuildOptions {
  images?: ImageDef['name'][];
  platforms?: string[];
  /** Directory of the archives (NAME.oci.tar); with `cache`, archives are kept there under their input key. */
  out?: string;
  registry?: string;
  tag?: string;
  /** More references for every image (ctr import creates each), e.g. the tests' enbi.local/builder:dev. */
  extraRefs?: Partial<Record<ImageDef['name'], string[]>>;
  /** Reuse an archive built from the same inputs (file contents, options) instead of building again. */
  cache?: boolean;
  log?: (line: string) => void;
}

export interface PlatformResult {
  platform: string;
  manifest: string;
  /** Uncompressed layer (the root file system as tar) and compressed (the blob) bytes. */
  layerBytes: number;
  blobBytes: number;
}

export interface ImageResult {
  name: ImageDef['name'];
  refs: string[];
  archive: string;
  /** sha256 of the image index: the image's digest in a registry and in `ctr images ls`. */
  digest: string;
  archiveBytes: number;
  platforms: PlatformResult[];
  cached: boolean;
  ms: number;
}

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** Every file an image's content depends on (the controller's also enbi's sources and modules' lock). */
function inputFiles(def: ImageDef): string[] {
  const files: string[] = [];
  const walk = (dir: string, skip: (rel: string) => boolean): void => {
    for (const n of readdirSync(dir).sort()) {
      const full = join(dir, n);
      if (skip(relative(REPO, full))) continue;
      if (statSync(full).isDirectory()) walk(full, skip);
      else files.push(full);
    }
  };
  walk(IMAGES_DIR, (rel) => rel === 'images/out' || rel.endsWith('.Dockerfile') || /\.test\.ts$/.test(rel));
  files.push(join(REPO, 'package.json'));
  if (def.app) {
    walk(join(REPO, 'src'), () => false);
    files.push(...['package-lock.json', 'tsconfig.json', 'tsconfig.build.json'].map((f) => join(REPO, f)));
  }
  return files;
}

export const mtime = (): number => {
  const s = process.env.SOURCE_DATE_EPOCH;
  if (s === undefined || s === '') return 0;
  if (!/^\d+$/.test(s)) throw new Error(`SOURCE_DATE_EPOCH must be seconds since 1970, not ${s}`);
  return Number(s);
};

export async function buildImages(o: BuildOptions = {}): Promise<ImageResult[]> {
  const log = o.log ?? (() => {});
  const platforms = o.platforms ?? [hostPlatform()];
  for (const p of platforms)
    if (!PLATFORMS[p]) throw new Error(`unknown platform ${p} (${Object.keys(PLATFORMS).join(', ')})`);
  const defs = IMAGES.filter((d) => (o.images ?? IMAGES.map((i) => i.name)).includes(d.name));
  const out = o.out ?? join(IMAGES_DIR, 'out');
  const lock = parseLock(readFileSync(LOCK_FILE, 'utf8'));
  const time = mtime();
  const tag = o.tag ?? version();
  const node = nodeVersion();
  let app: Entry[] | undefined;
  const appOnce = (): Entry[] => (app ??= appEntries());
  mkdirSync(out, { recursive: true });
  const results: ImageResult[] = [];
  for (const def of defs) {
    const t0 = Date.now();
    const refs = [imageRef(def, o.registry, tag), ...(o.extraRefs?.[def.name] ?? [])];
    const key = sha(
      JSON.stringify({
        v: 1,
        refs,
        platforms,
        time,
        files: inputFiles(def).map((f) => [relative(REPO, f), sha(readFileSync(f))]),
      }),
    ).slice(0, 16);
    const archive = join(out, o.cache ? `${def.name}-${key}.oci.tar` : `${def.name}.oci.tar`);
    const meta = `${archive}.json`;
    if (o.cache && existsSync(archive) && existsSync(meta)) {
      const r = { ...(JSON.parse(readFileSync(meta, 'utf8')) as ImageResult), cached: true, ms: Date.now() - t0 };
      log(`${def.name}: cached ${archive}`);
      results.push(r);
      continue;
    }
    const images = platforms.map((p) => {
      log(`${def.name} ${p}: assembling`);
      const entries = rootfs(def, p, PLATFORMS[p]!, { lock, cache: cacheDir(), app: appOnce, nodeVersion: node });
      const info = PLATFORMS[p]!;
      return {
        p,
        img: platformImage(entries, {
          architecture: info.architecture,
          ...(info.variant ? { variant: info.variant } : {}),
          config: def.config,
          mtime: time,
          labels: labels(def, tag),
        }),
      };
    });
    const layout = ociArchive(
      images.map((i) => i.img),
      refs,
      time,
      labels(def, tag),
    );
    const tmp = `${archive}.${process.pid}.tmp`;
    writeFileSync(tmp, layout.archive);
    renameSync(tmp, archive);
    const result: ImageResult = {
      name: def.name,
      refs,
      archive,
      digest: layout.index.digest,
      archiveBytes: layout.archive.length,
      platforms: images.map(({ p, img }) => ({
        platform: p,
        manifest: img.manifest.digest,
        layerBytes: img.layerBytes,
        blobBytes: img.blobs[0]!.descriptor.size,
      })),
      cached: false,
      ms: Date.now() - t0,
    };
    if (o.cache) writeFileSync(meta, JSON.stringify(result, null, 2) + '\n');
    log(
      `${def.name}: ${result.digest} ${archive} (${(result.archiveBytes / 1e6).toFixed(1)} MB, ${(result.ms / 1000).toFixed(1)} s)`,
    );
    results.push(result);
  }
  return results;
}

/** Dockerfile path and generated text of each image. */
export function dockerfiles(registry = REGISTRY, tag = version()): { path: string; text: string }[] {
  return IMAGES.map((def) => ({
    path: join(IMAGES_DIR, `${def.name}.Dockerfile`),
    text: dockerfile(def, imageRef(def, registry, tag), tag, nodeVersion()),
  }));
}

/**
 * Rewrites images/packages.lock for these platforms with apt's current versions in DEBIAN.suite; other
 * platforms' entries are kept, these platforms' (and the `all` packages') are replaced, so packages no image
 * holds any more leave the lock.
 */
export function updateLock(platforms: string[]): Locked[] {
  const fresh: Locked[] = [];
  for (const p of platforms) {
    const deb = PLATFORMS[p]!.deb;
    const packages = [...new Set(IMAGES.flatMap((d) => packagesFor(d, deb)))].sort();
    fresh.push(...resolveLock(packages, [deb], join(cacheDir(), 'debs')));
  }
  const replaced = new Set([
    'all',
    ...platforms.map((p) => PLATFORMS[p]!.deb),
    ...platforms.map((p) => `npm:node-linux-${PLATFORMS[p]!.npm}`),
  ]);
  const node = nodeVersion();
  for (const p of platforms) {
    const e: Locked = { name: `node-linux-${PLATFORMS[p]!.npm}`, arch: 'npm', version: node, sha256: '' };
    e.sha256 = sha(readFileSync(fetchNpmTarball(e, join(cacheDir(), 'npm'))));
    fresh.push(e);
  }
  const old = (existsSync(LOCK_FILE) ? parseLock(readFileSync(LOCK_FILE, 'utf8')) : []).filter(
    (e) => !replaced.has(e.arch) && !replaced.has(`${e.arch}:${e.name}`),
  );
  const key = (e: Locked): string => `${e.name} ${e.arch}`;
  const merged = new Map(old.map((e) => [key(e), e]));
  for (const e of fresh) merged.set(key(e), e);
  writeFileSync(LOCK_FILE, formatLock([...merged.values()]));
  return fresh;
}

const USAGE = `usage: npm run images -- [--platform linux/amd64,linux/arm64] [--out DIR] [--registry PREFIX] [--tag TAG]
                          [--image builder|controller]... [--dockerfiles | --update-lock]

Builds enbi's images as OCI archives (OUT/builder.oci.tar, OUT/controller.oci.tar) from images/definition.ts,
the Debian packages pinned in images/packages.lock and this checkout's sources; building twice gives the same
digests. Load them with skopeo, podman load, ctr images import, k3s ctr images import, kind load image-archive.

  --platform LIST    platforms in the image index (default: ${hostPlatform()}, this machine's)
  --out DIR          where the archives go (default images/out)
  --registry PREFIX  image names PREFIX/enbi:TAG and PREFIX/enbi-builder:TAG (default ${REGISTRY})
  --tag TAG          default: package.json's version (${version()}), the tag deploy/ names
  --image NAME       only this image (repeatable)
  --dockerfiles      write images/*.Dockerfile from the definition (a unit test checks they are current)
  --update-lock      pin apt's current versions in Debian ${DEBIAN.suite} for --platform into images/packages.lock

The Debian packages (${DEBIAN.suite}, images/definition.ts) are read through an apt state of enbi's own,
${aptDir()} (sources.list, lists, cache), from the Debian mirror of this machine's apt
sources; apt-get download fetches them into ${join(cacheDir(), 'debs')}. This machine's apt and dpkg state
is not touched, and no root is needed.
  ENBI_DEBIAN_MIRROR, ENBI_DEBIAN_SECURITY_MIRROR  other mirrors (e.g. snapshot.debian.org/archive/debian/TIME)
  ENBI_CACHE_DIR     instead of ~/.cache/enbi
  SOURCE_DATE_EPOCH  mtime of every file in the images (default 0)`;

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        platform: { type: 'string' },
        out: { type: 'string' },
        registry: { type: 'string' },
        tag: { type: 'string' },
        image: { type: 'string', multiple: true },
        dockerfiles: { type: 'boolean' },
        'update-lock': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const platforms = values.platform?.split(',').filter(Boolean);
  for (const p of platforms ?? [])
    if (!PLATFORMS[p]) return (console.error(`--platform ${p}: want one of ${Object.keys(PLATFORMS).join(', ')}`), 2);
  for (const n of values.image ?? [])
    if (!IMAGES.some((d) => d.name === n)) return (console.error(`--image ${n}: want builder or controller`), 2);
  if (values.dockerfiles) {
    for (const d of dockerfiles(values.registry, values.tag)) {
      writeFileSync(d.path, d.text);
      console.log(`wrote ${relative(process.cwd(), d.path)}`);
    }
    return 0;
  }
  if (values['update-lock']) {
    const fresh = updateLock(platforms ?? [hostPlatform()]);
    console.log(`images/packages.lock: ${fresh.length} entries for ${(platforms ?? [hostPlatform()]).join(', ')}`);
    return 0;
  }
  const t0 = Date.now();
  const results = await buildImages({
    platforms,
    ...(values.out ? { out: resolve(values.out) } : {}),
    ...(values.registry ? { registry: values.registry } : {}),
    ...(values.tag ? { tag: values.tag } : {}),
    ...(values.image ? { images: values.image as ImageDef['name'][] } : {}),
    log: (l) => console.error(l),
  });
  for (const r of results) {
    console.log(
      `${r.refs.join(' ')}\n  archive  ${relative(process.cwd(), r.archive)} (${(r.archiveBytes / 1e6).toFixed(1)} MB)\n  digest   ${r.digest}`,
    );
    for (const p of r.platforms)
      console.log(
        `  ${p.platform.padEnd(12)} ${p.manifest}  layer ${(p.layerBytes / 1e6).toFixed(1)} MB, ${(p.blobBytes / 1e6).toFixed(1)} MB gzip`,
      );
  }
  console.log(`${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return 0;
}

if (import.meta.filename === process.argv[1]) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: Error) => {
      console.error(`error: ${e.message}`);
      process.exit(1);
    },
  );
}
