// `enbi import`: the import half of a build Job (and a tool on its own). Reads an uncompressed docker-archive
// or OCI archive from the Job's FIFO (or a file, or stdin) straight into containerd's k8s.io namespace with
// the labels Spegel needs on every blob, unpacks it, names it with every reference asked for and by digest,
// pinned, checks the result, and writes {"image","digest",…} as the container's termination message.
import { createReadStream, existsSync, statSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ContainerdClient } from '../containerd/client.ts';
import { importArchive } from '../containerd/import/importer.ts';
import { command, type Flags, UsageError } from './command.ts';
import { errorMessage } from '../async/error-message.ts';

export const IMPORT_HELP = `enbi import [--fifo PATH | --file PATH | -] [--image REF]... [--platform OS/ARCH] [--socket PATH]

Imports an uncompressed docker-archive or OCI archive into containerd (namespace k8s.io): every blob
written with its containerd.io/distribution.source labels at commit (what Spegel needs to share it), the
layers unpacked into the snapshotter, then an image record per reference and <repository>@<digest>, each
labelled io.cri-containerd.pinned=pinned. Each tag points at an OCI index listing this platform's manifest
beside the other platforms the tag already listed on this node (the node agent adds those other nodes
built), so that a tag Spegel spreads always carries each manifest's platform. Checks the result and fails
loudly when anything is missing.

  --fifo PATH             read this FIFO once it exists (the build Job's /work/image.fifo)
  --file PATH             read this file; neither: stdin
  --image REF             a reference to create (repeat; default: $ENBI_IMAGES, space-separated; none: the
                          archive's own names)
  --platform OS/ARCH      the image to take and check, e.g. linux/arm64 (default: $ENBI_PLATFORM)
  --allow-prefix P        write only names under P, e.g. registry.local/ (repeat; default: $ENBI_ALLOWED_IMAGES,
                          space-separated; none: any name)
  --owner NAME            the NixBuild this import is for, labelled enbi.hrzn.ee/nixbuild on every record
                          (default: $ENBI_NIXBUILD, else enbi-import). A record of the same name that lacks
                          that label (enbi did not write it) is never replaced: the import fails instead.
  --socket PATH           containerd's socket (default: $CONTAINERD_ADDRESS, else /run/containerd/containerd.sock)
  --namespace NS          containerd namespace (default k8s.io)
  --snapshotter NAME      unpack into this snapshotter (default: $ENBI_SNAPSHOTTER, else overlayfs)
  --no-unpack             leave unpacking to the CRI
  --failed-marker PATH    when this file exists the sender failed: import nothing, exit 1 (Job: /work/failed)
  --termination-log PATH  write the result JSON there (Job: /dev/termination-log)

Exit codes: 0 imported; 1 failed (nothing is named in containerd then) or bad flags.`;

const FIFO_WAIT_MS = 24 * 3600_000;

async function waitForFifo(path: string): Promise<void> {
  for (const t0 = Date.now(); Date.now() - t0 < FIFO_WAIT_MS; await sleep(200)) {
    try {
      if (statSync(path).isFIFO()) return;
    } catch {
      // not there yet
    }
  }
  throw new Error(`no FIFO at ${path}`);
}

/** Whether the sender failed: its marker exists now or appears within graceMs (it writes it after closing). */
async function senderFailed(marker: string | undefined, graceMs: number): Promise<boolean> {
  if (marker === undefined) return false;
  for (const t0 = Date.now(); ; await sleep(100)) {
    if (existsSync(marker)) return true;
    if (Date.now() - t0 >= graceMs) return false;
  }
}

const OPTIONS = {
  fifo: { type: 'string' },
  file: { type: 'string' },
  image: { type: 'string', multiple: true },
  platform: { type: 'string' },
  'allow-prefix': { type: 'string', multiple: true },
  owner: { type: 'string' },
  socket: { type: 'string' },
  namespace: { type: 'string' },
  snapshotter: { type: 'string' },
  'no-unpack': { type: 'boolean' },
  'failed-marker': { type: 'string' },
  'termination-log': { type: 'string' },
} as const;

export default command({
  usage: IMPORT_HELP,
  options: OPTIONS,
  positionals: true,
  run: ({ values, positionals }) => runImport(values, positionals),
});

async function runImport(values: Flags<typeof OPTIONS>, positionals: string[]): Promise<number> {
  // `-` (stdin) is the only argument.
  const stray = positionals.find((p) => p !== '-');
  if (stray !== undefined) throw new UsageError(`unexpected argument ${stray}`);
  const images = values.image ?? (process.env.ENBI_IMAGES ?? '').split(/\s+/).filter((s) => s !== '');
  const platform = values.platform ?? (process.env.ENBI_PLATFORM || undefined);
  const allowedEnv = (process.env.ENBI_ALLOWED_IMAGES ?? '').split(/\s+/).filter((s) => s !== '');
  const allowedPrefixes = values['allow-prefix'] ?? (allowedEnv.length > 0 ? allowedEnv : undefined);
  const owner = values.owner ?? (process.env.ENBI_NIXBUILD || undefined);
  const socket = values.socket ?? (process.env.CONTAINERD_ADDRESS || '/run/containerd/containerd.sock');
  const snapshotter =
    values['no-unpack'] === true ? '' : (values.snapshotter ?? (process.env.ENBI_SNAPSHOTTER || 'overlayfs'));
  const marker = values['failed-marker'];
  const log = (m: string) => console.log(m);

  let input: NodeJS.ReadableStream;
  if (values.fifo !== undefined) {
    await waitForFifo(values.fifo);
    input = createReadStream(values.fifo, { highWaterMark: 1 << 20 });
  } else if (values.file !== undefined) {
    input = createReadStream(values.file, { highWaterMark: 1 << 20 });
  } else {
    input = process.stdin;
  }
  const c = new ContainerdClient(socket, { ...(values.namespace ? { namespace: values.namespace } : {}) });
  try {
    await c.waitForReady(30_000);
    const v = await c.version();
    log(
      `enbi: importing into containerd ${v.version} at ${socket} (namespace ${c.namespace})${platform ? ` for ${platform}` : ''}: ${images.join(' ') || "(the archive's names)"}`,
    );
    const beforeNaming = async (): Promise<void> => {
      if (await senderFailed(marker, 0)) throw new Error('the sender failed after sending');
    };
    const r = await importArchive(c, input as AsyncIterable<Buffer>, {
      images,
      ...(platform ? { platform } : {}),
      ...(allowedPrefixes !== undefined ? { allowedPrefixes } : {}),
      ...(owner !== undefined ? { owner } : {}),
      snapshotter,
      log,
      beforeNaming,
    });
    const message = {
      image: r.image,
      digest: r.digest,
      mediaType: r.mediaType,
      size: r.manifestSize,
      platform: r.platform,
      index: r.index.digest,
      indexPlatforms: r.index.platforms.join(','),
      config: r.config,
      records: r.names.length,
      blobs: r.blobs,
      sourceLabels: Object.keys(r.sourceLabels).length,
      unpackedLayers: r.unpackedLayers,
      bytes: r.bytes,
      ms: r.ms,
    };
    if (values['termination-log'] !== undefined) writeFileSync(values['termination-log'], JSON.stringify(message));
    for (const n of r.names) log(`enbi: ${n}`);
    log(
      `enbi: labels on every blob: ${Object.entries(r.sourceLabels)
        .map(([k, val]) => `${k}=${val}`)
        .join(' ')}`,
    );
    log(
      `enbi: imported ${r.image} ${r.digest} (${r.platform}, ${r.blobs} blobs, ${(r.bytes / 1e6).toFixed(1)} MB in ${r.ms} ms); the tag is index ${r.index.digest} of ${r.index.platforms.join(', ')}`,
    );
    return 0;
  } catch (e) {
    // Stop reading at once, so that a sender still writing gets EPIPE instead of waiting.
    (input as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
    console.error(`enbi import: ${errorMessage(e)}`);
    if (await senderFailed(marker, 2_000)) console.error('enbi: the build failed; nothing to import');
    else console.error('enbi: import failed; no image record was created');
    return 1;
  } finally {
    c.close();
  }
}
