// containerd's content store over gRPC (content.v1): blobs written through Write with their labels in the
// COMMIT message, so the blob and its labels appear in one transaction (a watcher that reads the labels
// when the blob is created, as Spegel does, never sees it bare); Info and Update for what exists already.
import { createHash, randomBytes } from 'node:crypto';
import { ContainerdClient, ContainerdError, isAlreadyExists } from '../client.ts';

/** Largest data per Write message (containerd accepts 16 MiB messages; small ones keep memory flat). */
const CHUNK = 1 << 20;

interface WriteRequest {
  action: 'STAT' | 'WRITE' | 'COMMIT';
  ref: string;
  total?: number;
  expected?: string;
  offset: number;
  data?: Buffer;
  labels?: Record<string, string>;
}
interface WriteResponse {
  action: string;
  offset: number;
  total: number;
  digest: string;
}

export interface WrittenBlob {
  digest: string;
  size: number;
  /** The blob was in the store already: its labels were added with Update instead. */
  existed: boolean;
}

export interface ContentInfo {
  digest: string;
  size: number;
  labels: Record<string, string>;
}

export async function contentInfo(c: ContainerdClient, digest: string): Promise<ContentInfo> {
  const r = await c.unary<{ info: ContentInfo }>('content', 'Info', { digest });
  return { digest: r.info.digest, size: r.info.size, labels: r.info.labels ?? {} };
}

const SOURCE_PREFIX = 'containerd.io/distribution.source.';

/**
 * The labels to write so that a blob keeps what it has and gains what is asked: a distribution-source label
 * is a comma-separated set of repositories (one blob, several images), so ours join the ones there. Pure.
 */
export function mergedLabels(have: Record<string, string>, want: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(want)) {
    if (!k.startsWith(SOURCE_PREFIX) || have[k] === undefined || have[k] === '') out[k] = v;
    else
      out[k] = [...new Set([...have[k]!.split(','), ...v.split(',')])]
        .filter((r) => r !== '')
        .sort()
        .join(',');
  }
  return out;
}

const holds = (have: Record<string, string>, want: Record<string, string>): boolean =>
  Object.entries(want).every(([k, v]) =>
    k.startsWith(SOURCE_PREFIX) ? v.split(',').every((r) => (have[k] ?? '').split(',').includes(r)) : have[k] === v,
  );

/**
 * Sets these labels on a committed blob, leaving its other labels as they are; distribution sources are
 * merged with those there. Two imports of the same blob under different names can race (read, then write):
 * the write is checked and done again until the blob carries ours.
 */
export async function addContentLabels(
  c: ContainerdClient,
  digest: string,
  labels: Record<string, string>,
): Promise<ContentInfo> {
  if (Object.keys(labels).length === 0) return contentInfo(c, digest);
  for (let attempt = 0; ; attempt++) {
    const now = await contentInfo(c, digest);
    if (holds(now.labels, labels)) return now;
    if (attempt >= 8)
      throw new Error(
        `blob ${digest}: its labels keep changing under enbi (another writer): ${JSON.stringify(now.labels)}`,
      );
    const next = mergedLabels(now.labels, labels);
    const paths = Object.keys(next).map((k) => `labels.${k}`);
    await c.unary('content', 'Update', { info: { digest, labels: next }, updateMask: { paths } });
  }
}

let refCounter = 0;
/** A unique ingest reference (containerd locks a ref for the duration of one Write stream). */
export const ingestRef = (what: string): string =>
  `enbi-import-${process.pid}-${randomBytes(4).toString('hex')}-${++refCounter}-${what}`.slice(0, 200);

/**
 * Writes one blob: the data as it comes (hashed on the way, never held whole), then COMMIT with the digest
 * computed here as the expected one, and the labels. When the store already has that digest, containerd
 * refuses the commit (AlreadyExists) and the labels are added with Update instead.
 */
export async function writeBlob(
  c: ContainerdClient,
  o: {
    data: AsyncIterable<Buffer> | Buffer;
    labels: Record<string, string>;
    ref?: string;
    expected?: string;
    size?: number;
  },
): Promise<WrittenBlob> {
  const ref = o.ref ?? ingestRef('blob');
  const stream = c.duplex<WriteRequest, WriteResponse>('content', 'Write');
  let failure: ContainerdError | undefined;
  let commitDigest: string | undefined;
  const finished = new Promise<void>((resolve) => {
    stream.on('data', (r: WriteResponse) => {
      if (r.action === 'COMMIT') commitDigest = r.digest;
    });
    stream.on('error', (e: ContainerdError) => {
      failure = ContainerdClient.streamError('content', 'Write', e);
      resolve();
    });
    stream.on('end', () => resolve());
  });
  const send = async (req: WriteRequest): Promise<void> => {
    if (failure) throw failure;
    if (!stream.write(req))
      await new Promise<void>((r) => {
        const done = () => {
          stream.off('drain', done);
          stream.off('error', done);
          r();
        };
        stream.on('drain', done);
        stream.on('error', done);
      });
  };
  const hash = createHash('sha256');
  let offset = 0;
  let digest: string | undefined;
  try {
    if (Buffer.isBuffer(o.data)) {
      // Small blobs (manifests, configs): one COMMIT message holding everything.
      digest = `sha256:${hash.update(o.data).digest('hex')}`;
      if (o.expected !== undefined && o.expected !== digest)
        throw new Error(`blob ${o.expected}: the data hashes to ${digest}`);
      offset = o.data.length;
      await send({ action: 'COMMIT', ref, offset: 0, total: offset, expected: digest, data: o.data, labels: o.labels });
    } else {
      for await (const chunk of o.data) {
        for (let i = 0; i < chunk.length; i += CHUNK) {
          const part = chunk.subarray(i, i + CHUNK);
          hash.update(part);
          await send({ action: 'WRITE', ref, offset, data: part });
          offset += part.length;
        }
      }
      digest = `sha256:${hash.digest('hex')}`;
      if (o.expected !== undefined && o.expected !== digest)
        throw new Error(`blob ${o.expected}: the data hashes to ${digest}`);
      if (o.size !== undefined && o.size !== offset)
        throw new Error(`blob ${digest}: ${offset} bytes, expected ${o.size}`);
      await send({ action: 'COMMIT', ref, offset, total: offset, expected: digest, labels: o.labels });
    }
    stream.end();
  } catch (e) {
    // A failure of containerd's side (the send that saw it threw) or of the data source (a truncated tar).
    const prior = failure;
    if (!(prior && isAlreadyExists(prior) && digest !== undefined)) {
      stream.cancel();
      await finished;
      await c.unary('content', 'Abort', { ref }).catch(() => undefined);
      throw prior ?? e;
    }
  }
  await finished;
  if (failure !== undefined) {
    if (!isAlreadyExists(failure) || digest === undefined) throw failure;
    await c.unary('content', 'Abort', { ref }).catch(() => undefined);
    await addContentLabels(c, digest, o.labels);
    return { digest, size: offset, existed: true };
  }
  if (commitDigest !== digest) throw new Error(`containerd committed ${commitDigest ?? 'nothing'} for blob ${digest}`);
  return { digest, size: offset, existed: false };
}
