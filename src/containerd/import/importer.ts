// enbi's image importer: an uncompressed docker-archive or OCI archive stream into containerd, in a way
// Spegel can share. Every blob is written through the content API with its distribution-source labels in
// the commit (Spegel reads them when containerd reports the blob created), under a lease so that GC cannot
// take a blob before an image record references it; the layers are unpacked into the snapshotter; then the
// image records are created, pinned: each tag asked for at a multi-platform index (this platform's manifest
// beside those the tag listed already: src/image/platform-index.ts), `<repository>@<manifest digest>` at the
// manifest.
//
// Large files (layers) are streamed straight into containerd as the tar goes by, hashed on the way; small
// ones (JSON, tiny layers) are held in memory until the archive's manifest says what they are.
import { createHash, randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { isAlreadyExists, isNotFound, type ContainerdClient } from '../client.ts';
import { readBlob } from '../platform.ts';
import {
  ArchiveError,
  archivePath,
  checkIndex,
  configPlatform,
  dockerManifest,
  formatPlatform,
  layerMediaType,
  MT,
  normalizePlatform,
  parseConfig,
  parseDockerManifestJson,
  parseJson,
  parsePlatform,
  platformMatches,
  selectOciManifest,
  type ImageConfig,
  type OciIndex,
  type Platform,
} from './archive.ts';
import { addContentLabels, contentInfo, ingestRef, writeBlob } from './content.ts';
import {
  digestNames,
  distributionSourceLabels,
  imageNames,
  INDEX_OWNER_VALUE,
  isEnbiRecord,
  LABEL_CRI_MANAGED,
  LABEL_GC_EXPIRE,
  LABEL_INDEX_OWNER,
  LABEL_GC_SNAPSHOT,
  LABEL_PINNED,
  LABEL_RECORD_OWNER,
  LABEL_UNCOMPRESSED,
  indexGcLabels,
  manifestGcLabels,
  type Desc,
  type ImageName,
} from './labels.ts';
import { readTar } from './tar.ts';
import { pickEntries, platformIndex, type PlatformIndex, type PlatformManifest } from '../../image/platform-index.ts';
import { unpackLayers } from './unpack.ts';
import { indexIsEnbis, parsedIndexOf } from '../index-blob.ts';
import { errorMessage } from '../../async/error-message.ts';

export interface ImportOptions {
  /** References to create (tags); none: the names the archive gives. */
  images: string[];
  /** e.g. linux/arm64: the image to take from a multi-platform archive, and what a single one must be. */
  platform?: string;
  /** Unpack into this snapshotter (default overlayfs, as the CRI uses); '' skips unpacking. */
  snapshotter?: string;
  /** Files up to this size are held in memory (default 4 MiB), larger ones streamed into containerd. */
  smallFileBytes?: number;
  /** At most this much is held in memory in all (default 256 MiB); past it every file is streamed. */
  memoryBudgetBytes?: number;
  /** Called once the whole archive is in, before anything is named: throw to import nothing. */
  beforeNaming?: () => Promise<void>;
  /** The NixBuild this import is for: labelled on every record (LABEL_RECORD_OWNER). Default: `enbi import`. */
  owner?: string;
  /** Only names under these prefixes (`registry.local/`) may be written; absent: any. */
  allowedPrefixes?: readonly string[];
  /** The lease expires after this long even if enbi dies (default 1 h). */
  leaseSeconds?: number;
  log?: (line: string) => void;
}

export interface ImportResult {
  /** The first name created (the first of `images`). */
  image: string;
  /** The platform manifest's digest (`<repository>@<digest>` records point at it). */
  digest: string;
  mediaType: string;
  manifestSize: number;
  /** The index the first tag points at now: this manifest beside the platforms the tag listed already. */
  index: { digest: string; size: number; platforms: string[] };
  /** Every record enbi wrote: tags (at their index), then `<repository>@<manifest digest>`. */
  names: string[];
  /** Records another tool wrote at the very target enbi wanted: left as they are, and not enbi's. */
  foreignKept: string[];
  config: string;
  platform: string;
  /** Blobs of the image (manifest, config, layers) and distribution-source labels on each. */
  blobs: number;
  sourceLabels: Record<string, string>;
  /** Bytes of the archive stream. */
  bytes: number;
  /** Layers unpacked now; chain id of the top snapshot (empty when not unpacked). */
  unpackedLayers: number;
  chainId: string;
  ms: number;
}

export class ImportError extends Error {
  override name = 'ImportError';
}

interface ArchiveFile {
  path: string;
  size: number;
  digest: string;
  /** First bytes (compression magic). */
  head: Buffer;
  /** Held in memory (small files); undefined once streamed into containerd. */
  data?: Buffer;
  /** Committed to containerd during the stream, with the labels known then. */
  written: boolean;
}

const sha256hex = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Imports an archive stream; on failure nothing is named (no image record) and the lease lets GC clean up. */
export async function importArchive(
  c: ContainerdClient,
  source: AsyncIterable<Buffer | Uint8Array | string>,
  o: ImportOptions,
): Promise<ImportResult> {
  const t0 = Date.now();
  const log = o.log ?? (() => undefined);
  const snapshotter = o.snapshotter ?? 'overlayfs';
  const small = o.smallFileBytes ?? 4 << 20;
  const budget = o.memoryBudgetBytes ?? 256 << 20;
  const want: Platform | undefined = o.platform ? parsePlatform(o.platform) : undefined;
  let names: ImageName[] = imageNames(o.images);
  // Known before the first byte when the references are given: every blob is committed with them.
  let sourceLabels = distributionSourceLabels(names);
  const owner = o.owner !== undefined && o.owner !== '' ? o.owner : 'enbi-import';
  // Refused before a byte is read: a name outside the allowed prefixes, or one whose record enbi did not
  // write (checked again when the records are written: it may appear meanwhile).
  checkAllowed(
    names.map((n) => n.name),
    o.allowedPrefixes,
  );
  await checkOwned(c, names);

  const leaseId = `enbi-import-${Date.now()}-${randomBytes(4).toString('hex')}`;
  const expire = new Date(Date.now() + (o.leaseSeconds ?? 3600) * 1000).toISOString();
  await c.unary('leases', 'Create', { id: leaseId, labels: { [LABEL_GC_EXPIRE]: expire } });
  c.lease = leaseId;
  const created: string[] = [];
  try {
    // 1. The stream: every file by path; large ones go to containerd right away.
    const files = new Map<string, ArchiveFile>();
    const links = new Map<string, string>();
    let held = 0;
    let bytes = 0;
    for await (const e of readTar(source)) {
      bytes = e.offset + 512 + e.size;
      if (e.type === 'symlink') links.set(e.path, archivePath(posix.join(posix.dirname(e.path), e.linkname)));
      else if (e.type === 'hardlink') links.set(e.path, archivePath(e.linkname));
      if (e.type !== 'file') continue;
      if (e.size <= small && held + e.size <= budget) {
        const parts: Buffer[] = [];
        for await (const chunk of e.body) parts.push(Buffer.from(chunk));
        const data = Buffer.concat(parts);
        held += data.length;
        files.set(e.path, {
          path: e.path,
          size: data.length,
          digest: `sha256:${sha256hex(data)}`,
          head: data.subarray(0, 8),
          data,
          written: false,
        });
      } else {
        let head: Buffer | undefined;
        const body = (async function* () {
          for await (const chunk of e.body) {
            head ??= Buffer.from(chunk.subarray(0, 8));
            yield chunk;
          }
        })();
        const t = Date.now();
        const w = await writeBlob(c, {
          data: body,
          labels: sourceLabels,
          ref: ingestRef(e.path.replace(/[^A-Za-z0-9._-]/g, '_').slice(-60)),
          size: e.size,
        });
        log(
          `enbi: wrote ${e.path} (${(e.size / 1e6).toFixed(1)} MB) as ${w.digest}${w.existed ? ' (already stored)' : ''} in ${Date.now() - t} ms`,
        );
        files.set(e.path, {
          path: e.path,
          size: w.size,
          digest: w.digest,
          head: head ?? Buffer.alloc(0),
          written: true,
        });
      }
    }
    const file = (p: string): ArchiveFile | undefined => {
      let path = archivePath(p);
      for (let i = 0; i < 16 && !files.has(path) && links.has(path); i++) path = links.get(path)!;
      return files.get(path);
    };
    const dataOf = async (f: ArchiveFile): Promise<Buffer> =>
      f.data ?? (await readBlob(c, f.digest, f.size)) ?? Buffer.alloc(0);

    // 2. What the archive is, and which image of it.
    let manifestDesc: Desc;
    let manifestBytes: Buffer;
    let config: ImageConfig;
    let configDesc: Desc;
    let configFile: ArchiveFile;
    let layers: { desc: Desc; file: ArchiveFile }[];
    let archiveNames: string[];
    const index = file('index.json');
    const dockerJson = file('manifest.json');
    if (index !== undefined) {
      const blobFile = (d: Desc): ArchiveFile => {
        const [alg, hex] = d.digest.split(':');
        const f = file(`blobs/${alg}/${hex}`);
        if (f === undefined) throw new ArchiveError(`the archive lacks blob ${d.digest}`);
        if (f.digest !== d.digest) throw new ArchiveError(`blobs/${alg}/${hex} hashes to ${f.digest}: corrupt archive`);
        if (f.size !== d.size)
          throw new ArchiveError(`blob ${d.digest} has ${f.size} bytes, its descriptor says ${d.size}`);
        return f;
      };
      const ix = checkIndex(parseJson<OciIndex>(await dataOf(index), 'index.json'), 'index.json');
      const sel = await selectOciManifest(ix, async (d) => dataOf(blobFile(d)), want);
      manifestDesc = sel.desc;
      manifestBytes = await dataOf(blobFile(sel.desc));
      config = sel.config;
      configDesc = {
        mediaType: sel.manifest.config.mediaType ?? MT.ociConfig,
        digest: sel.manifest.config.digest,
        size: sel.manifest.config.size,
      };
      configFile = blobFile(configDesc);
      layers = sel.manifest.layers.map((l) => ({
        desc: { mediaType: l.mediaType, digest: l.digest, size: l.size },
        file: blobFile(l),
      }));
      archiveNames = sel.names;
    } else if (dockerJson !== undefined) {
      const entries = parseDockerManifestJson(await dataOf(dockerJson));
      const seen: string[] = [];
      let chosen: { entry: (typeof entries)[number]; config: ImageConfig; file: ArchiveFile } | undefined;
      for (const entry of entries) {
        const f = file(entry.Config);
        if (f === undefined)
          throw new ArchiveError(`manifest.json names config ${entry.Config}, which is not in the archive`);
        const cfg = parseConfig(await dataOf(f), entry.Config);
        const p = configPlatform(cfg);
        if (want === undefined || platformMatches(want, p)) {
          chosen = { entry, config: cfg, file: f };
          break;
        }
        seen.push(
          p.architecture
            ? formatPlatform(
                normalizePlatform({
                  os: p.os ?? 'linux',
                  architecture: p.architecture,
                  ...(p.variant ? { variant: p.variant } : {}),
                }),
              )
            : '?',
        );
      }
      if (chosen === undefined)
        throw new ArchiveError(`no image for ${formatPlatform(want!)} in the archive (it holds ${seen.join(', ')})`);
      config = chosen.config;
      configDesc = { mediaType: MT.dockerConfig, digest: chosen.file.digest, size: chosen.file.size };
      configFile = chosen.file;
      layers = chosen.entry.Layers.map((p) => {
        const f = file(p);
        if (f === undefined) throw new ArchiveError(`manifest.json names layer ${p}, which is not in the archive`);
        return { desc: { mediaType: layerMediaType(f.head, true), digest: f.digest, size: f.size }, file: f };
      });
      manifestBytes = dockerManifest(
        configDesc,
        layers.map((l) => l.desc),
      );
      manifestDesc = {
        mediaType: MT.dockerManifest,
        digest: `sha256:${sha256hex(manifestBytes)}`,
        size: manifestBytes.length,
      };
      archiveNames = chosen.entry.RepoTags ?? [];
    } else {
      throw new ArchiveError('neither manifest.json (docker-archive) nor index.json (OCI image layout) in the archive');
    }
    if (names.length === 0) {
      names = imageNames(archiveNames);
      if (names.length === 0)
        throw new ImportError('no image name: give --image (ENBI_IMAGES), the archive names none');
      checkAllowed(
        names.map((n) => n.name),
        o.allowedPrefixes,
      );
      await checkOwned(c, names);
      sourceLabels = distributionSourceLabels(names);
      // Blobs streamed before the names were known get their labels now.
      for (const f of files.values()) if (f.written) await addContentLabels(c, f.digest, sourceLabels);
    }
    const diffIds = config.rootfs?.diff_ids ?? [];
    const platform = configPlatform(config);
    const platformText = platform.architecture
      ? formatPlatform(
          normalizePlatform({
            os: platform.os ?? 'linux',
            architecture: platform.architecture,
            ...(platform.variant ? { variant: platform.variant } : {}),
          }),
        )
      : '';

    // 3. The layers held in memory, then the unpack (Diff.Apply reads the layers from the content store).
    for (const l of layers) {
      if (l.file.written) continue;
      await writeBlob(c, {
        data: l.file.data!,
        labels: sourceLabels,
        expected: l.desc.digest,
        ref: ingestRef('layer'),
      });
      l.file.written = true;
    }
    let chainId = '';
    let unpackedLayers = 0;
    if (snapshotter !== '') {
      const t = Date.now();
      const u = await unpackLayers(
        c,
        snapshotter,
        layers.map((l) => l.desc),
        diffIds,
      );
      chainId = u.chainId;
      unpackedLayers = u.applied;
      // As containerd's unpacker: the uncompressed digest, verified by the apply, on each layer blob.
      for (const [i, l] of layers.entries())
        await addContentLabels(c, l.desc.digest, { [LABEL_UNCOMPRESSED]: diffIds[i]! });
      log(`enbi: unpacked ${u.applied} of ${layers.length} layers into ${snapshotter} in ${Date.now() - t} ms`);
    }

    // 4. Config, then manifest: each with its gc references, so the records' targets hold everything.
    const configLabels = {
      ...sourceLabels,
      ...(chainId !== '' ? { [`${LABEL_GC_SNAPSHOT}.${snapshotter}`]: chainId } : {}),
    };
    if (configFile.written) await addContentLabels(c, configDesc.digest, configLabels);
    else
      await writeBlob(c, {
        data: configFile.data!,
        labels: configLabels,
        expected: configDesc.digest,
        ref: ingestRef('config'),
      });
    const manifestLabels = {
      ...sourceLabels,
      ...manifestGcLabels(
        configDesc,
        layers.map((l) => l.desc),
      ),
    };
    await writeBlob(c, {
      data: manifestBytes,
      labels: manifestLabels,
      expected: manifestDesc.digest,
      ref: ingestRef('manifest'),
    });

    // 5. The index each tag resolves to (src/image/platform-index.ts): this platform's manifest beside the
    // other platforms that tag already lists on this node. Spegel may hand any node's answer for a tag to
    // any other node: an index names each manifest's platform, so containerd always takes its own.
    if (platformText === '' && want === undefined)
      throw new ImportError("the image's config names no os/architecture: give --platform");
    const own: PlatformManifest = {
      digest: manifestDesc.digest,
      size: manifestDesc.size,
      mediaType: manifestDesc.mediaType,
      platform: platformText || formatPlatform(want!),
    };
    const tagTargets = new Map<string, PlatformIndex>();
    const written = new Map<string, Record<string, string>>();
    for (const n of names) {
      const rec = await existingRecord(c, n.name);
      const current = rec !== undefined ? await replaceableEntries(c, n.name, rec) : [];
      const index = platformIndex(pickEntries([own], current, (d) => d === own.digest));
      tagTargets.set(n.name, index);
      if (written.has(index.digest)) continue;
      const labels = { ...sourceLabels, ...indexGcLabels(index.entries), [LABEL_INDEX_OWNER]: INDEX_OWNER_VALUE };
      await writeBlob(c, { data: index.bytes, labels, expected: index.digest, ref: ingestRef('index') });
      written.set(index.digest, labels);
    }

    // 6. The image records: each tag at its index, `<repository>@<manifest digest>` at the manifest. enbi
    // replaces only records carrying its owner label. Another tool's record of the name stays as it is,
    // whatever its target's content says: refused when it points elsewhere, left unlabelled (so never
    // collected) when it already points where enbi would point it.
    await o.beforeNaming?.();
    const records: { name: string; target: Desc }[] = [
      ...names.map((n) => ({ name: n.name, target: descOf(tagTargets.get(n.name)!) })),
      ...digestNames(names, manifestDesc.digest).map((name) => ({ name, target: manifestDesc })),
    ];
    const recordLabels = { [LABEL_PINNED]: 'pinned', [LABEL_CRI_MANAGED]: 'managed', [LABEL_RECORD_OWNER]: owner };
    const foreignKept: string[] = [];
    for (const r of records) {
      const image = { name: r.name, labels: recordLabels, target: r.target };
      try {
        await c.unary('images', 'Create', { image });
        created.push(r.name);
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
        // Read again: the record seen in step 5 may have been replaced by another writer since.
        const rec = await existingRecord(c, r.name);
        if (rec !== undefined && !isEnbiRecord(rec.labels)) {
          if (rec.target?.digest !== r.target.digest) throw foreign(r.name, rec);
          foreignKept.push(r.name);
          log(`enbi: ${r.name} already points at ${r.target.digest} and is not enbi's: left as it is`);
          continue;
        }
        await c.unary('images', 'Update', { image: { ...image, labels: { ...rec?.labels, ...recordLabels } } });
      }
    }

    // 7. Everything is referenced from the records now: the lease can go.
    c.lease = undefined;
    await c.unary('leases', 'Delete', { id: leaseId });

    const blobs = [manifestDesc, configDesc, ...layers.map((l) => l.desc)];
    const indexes = [...new Map([...tagTargets.values()].map((i) => [i.digest, i])).values()];
    await verifyImport(c, {
      records: records.map((r) => ({
        name: r.name,
        digest: r.target.digest,
        pinned: !foreignKept.includes(r.name),
      })),
      blobs: [
        ...indexes.map((i) => ({ desc: descOf(i), labels: written.get(i.digest)! })),
        { desc: manifestDesc, labels: manifestLabels },
        { desc: configDesc, labels: configLabels },
        ...layers.map((l) => ({ desc: l.desc, labels: sourceLabels })),
      ],
    });
    const firstIndex = tagTargets.get(names[0]!.name)!;
    return {
      image: names[0]!.name,
      digest: manifestDesc.digest,
      mediaType: manifestDesc.mediaType,
      manifestSize: manifestDesc.size,
      index: { digest: firstIndex.digest, size: firstIndex.size, platforms: firstIndex.entries.map((e) => e.platform) },
      names: records.map((r) => r.name).filter((n) => !foreignKept.includes(n)),
      foreignKept,
      config: configDesc.digest,
      platform: own.platform,
      blobs:
        new Set([manifestDesc, configDesc, ...layers.map((l) => l.desc)].map((b) => b.digest)).size + indexes.length,
      sourceLabels,
      bytes,
      unpackedLayers,
      chainId,
      ms: Date.now() - t0,
    };
  } catch (e) {
    // Records this import created point at content that may be incomplete: remove them. Then the lease.
    c.lease = undefined;
    for (const name of created) await c.unary('images', 'Delete', { name }).catch(() => undefined);
    await c.unary('leases', 'Delete', { id: leaseId }).catch(() => undefined);
    throw e;
  }
}

/** Throws when a name is outside the allowed prefixes. */
function checkAllowed(names: readonly string[], prefixes: readonly string[] | undefined): void {
  if (prefixes === undefined) return;
  const outside = names.filter((n) => !prefixes.some((p) => n.startsWith(p)));
  if (outside.length > 0)
    throw new ImportError(
      `refusing to write ${outside.join(', ')}: outside the allowed prefixes (${prefixes.join(', ') || 'none'})`,
    );
}

interface ExistingRecord {
  labels: Record<string, string>;
  target: Desc | undefined;
}

async function existingRecord(c: ContainerdClient, name: string): Promise<ExistingRecord | undefined> {
  try {
    const r = await c.unary<{ image: { target: Desc | null; labels: Record<string, string> | null } | null }>(
      'images',
      'Get',
      { name },
    );
    return { labels: r.image?.labels ?? {}, target: r.image?.target ?? undefined };
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

/** Throws for the first tag whose record exists and is not enbi's (its owner label, a node-local fact). */
async function checkOwned(c: ContainerdClient, names: readonly ImageName[]): Promise<void> {
  for (const n of names) {
    const rec = await existingRecord(c, n.name);
    if (rec !== undefined && !isEnbiRecord(rec.labels)) throw foreign(n.name, rec);
  }
}

function foreign(name: string, rec: ExistingRecord): ImportError {
  return new ImportError(
    `image ${name} exists on this node and enbi did not write it (it points at ${rec.target?.digest ?? 'nothing'} and has no ${LABEL_RECORD_OWNER} label): ` +
      `enbi never replaces it. Remove it first (ctr -n k8s.io images rm ${name}) if enbi should own this name, or name another image`,
  );
}

/**
 * The platforms a tag lists now, when enbi may replace its record: those of the index it points at when
 * enbi wrote that index on this node (LABEL_INDEX_OWNER on the blob), else none (an older enbi record at a
 * bare manifest, or an index from elsewhere: the agent adds the platforms NixBuilds recorded). Throws for
 * a record enbi must leave alone.
 */
async function replaceableEntries(c: ContainerdClient, name: string, rec: ExistingRecord): Promise<PlatformManifest[]> {
  if (!isEnbiRecord(rec.labels)) throw foreign(name, rec);
  const parsed = rec.target !== undefined ? await parsedIndexOf(c, rec.target) : undefined;
  if (parsed === undefined || !(await indexIsEnbis(c, rec.target!.digest))) return [];
  return parsed.entries;
}

const descOf = (i: PlatformIndex): Desc => ({ mediaType: i.mediaType, digest: i.digest, size: i.size });

/**
 * After an import: every blob carries the labels it was written with (distribution sources, gc
 * references), and every record exists with its target, pinned (enbi's own; another tool's is as it was). Throws otherwise, naming what is wrong.
 */
export async function verifyImport(
  c: ContainerdClient,
  v: {
    records: { name: string; digest: string; pinned?: boolean }[];
    blobs: { desc: Desc; labels: Record<string, string> }[];
  },
): Promise<void> {
  const problems: string[] = [];
  for (const { desc: b, labels: must } of v.blobs) {
    let labels: Record<string, string>;
    try {
      labels = (await contentInfo(c, b.digest)).labels;
    } catch (e) {
      problems.push(`blob ${b.digest}: ${isNotFound(e) ? 'not in the content store' : errorMessage(e)}`);
      continue;
    }
    for (const [k, want] of Object.entries(must)) {
      const have = labels[k];
      const ok = k.startsWith('containerd.io/distribution.source.')
        ? have !== undefined && want.split(',').every((r) => have.split(',').includes(r))
        : have === want;
      if (!ok)
        problems.push(
          `blob ${b.digest} (${b.mediaType}): label ${k} is ${have === undefined ? 'missing' : JSON.stringify(have)}, want ${JSON.stringify(want)}`,
        );
    }
  }
  for (const { name, digest, pinned = true } of v.records) {
    try {
      const r = await c.unary<{ image: { target: Desc | null; labels: Record<string, string> } | null }>(
        'images',
        'Get',
        { name },
      );
      if (r.image?.target?.digest !== digest)
        problems.push(`image ${name} points at ${r.image?.target?.digest ?? 'nothing'}, not ${digest}`);
      if (pinned && r.image?.labels?.[LABEL_PINNED] !== 'pinned')
        problems.push(`image ${name} lacks ${LABEL_PINNED}=pinned`);
    } catch (e) {
      problems.push(`image ${name}: ${isNotFound(e) ? 'no such record' : errorMessage(e)}`);
    }
  }
  if (problems.length > 0)
    throw new ImportError(`the import did not leave what Spegel and kubelet need:\n  ${problems.join('\n  ')}`);
}
