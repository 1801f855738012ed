// The two images of a build Job for the tests: exactly what `npm run images` builds (images/build.ts from
// images/definition.ts and the pinned packages; no test-only recipe), for this machine's platform, cached
// by the content of their inputs, and imported into a node's containerd under two names each:
//
//   ghcr.io/hrzn/enbi-builder:<version>   and enbi.local/builder:dev    Nix, git, busybox (deploy/'s builder)
//   ghcr.io/hrzn/enbi:<version>           and enbi.local/importer:dev   the controller image, whose entrypoint
//                                                                       is enbi's CLI (the Job runs `import …`)
//
// The enbi.local names are the ones the tests' controller configurations use; the index digest is the same.
import { buildImages, type ImageResult } from '../../images/build.ts';
import { hostPlatform } from '../../images/rootfs.ts';
import { importImage } from '../cluster/images.ts';
import { cacheDir, hostBin } from '../cluster/paths.ts';
import { join } from 'node:path';

export const BUILDER_IMAGE = 'enbi.local/builder:dev';
export const IMPORTER_IMAGE = 'enbi.local/importer:dev';

export interface CachedImage {
  /** The name the tests use (BUILDER_IMAGE, IMPORTER_IMAGE). */
  ref: string;
  /** Every name the archive carries (the release name first). */
  refs: string[];
  /** The OCI archive. */
  out: string;
  /** sha256 of the image index (what `ctr images ls` shows as the digest). */
  digest: string;
  /** Whether the archive came from the cache rather than being written now. */
  cached: boolean;
  /** Archive size in bytes. */
  bytes: number;
}

export interface BuildImages {
  builder: CachedImage;
  importer: CachedImage;
}

const toCached = (r: ImageResult, ref: string): CachedImage => ({
  ref,
  refs: r.refs,
  out: r.archive,
  digest: r.digest,
  cached: r.cached,
  bytes: r.archiveBytes,
});

let built: Promise<BuildImages> | undefined;

/** Both archives (built once per process, and cached across runs by the content of their inputs). */
export function buildTestImages(): Promise<BuildImages> {
  built ??= buildImages({
    platforms: [hostPlatform()],
    out: join(cacheDir(), 'images'),
    cache: true,
    extraRefs: { builder: [BUILDER_IMAGE], controller: [IMPORTER_IMAGE] },
  }).then((results) => {
    const by = (n: string): ImageResult => results.find((r) => r.name === n)!;
    return { builder: toCached(by('builder'), BUILDER_IMAGE), importer: toCached(by('controller'), IMPORTER_IMAGE) };
  });
  return built;
}

/** Builds (or reuses) both images and imports them into a node's containerd (with the node's ctr). */
export async function importBuildImages(node: { containerdSocket: string; ctr: string }): Promise<BuildImages> {
  const images = await buildTestImages();
  for (const img of [images.builder, images.importer])
    await importImage(node.containerdSocket, img.out, { ctr: node.ctr });
  return images;
}

// `node test/support/build-images.ts [SOCKET [CTR]]`: writes both archives and prints them; imports them
// into SOCKET's containerd when given.
if (import.meta.filename === process.argv[1]) {
  const [socket, ctr] = process.argv.slice(2);
  const t0 = Date.now();
  const images =
    socket !== undefined
      ? await importBuildImages({ containerdSocket: socket, ctr: ctr ?? hostBin('ctr') })
      : await buildTestImages();
  for (const img of Object.values(images)) {
    console.log(
      `${img.refs.join(' ')}  ${img.digest}  ${(img.bytes / 1e6).toFixed(1)} MB  ${img.cached ? 'cached' : 'written'}  ${img.out}`,
    );
  }
  console.log(`${Date.now() - t0} ms`);
}
