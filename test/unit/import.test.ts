// The pure parts of `enbi import`: label keys from image references, the docker-archive manifest, platform
// selection in OCI indexes, and the streaming tar reader (any chunking, long names, PAX, bad streams).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { tar, type TarEntry } from '../cluster/tar.ts';
import {
  chainIds,
  digestNames,
  distributionSourceLabels,
  imageNames,
  indexGcLabels,
  manifestGcLabels,
} from '../../src/containerd/import/labels.ts';
import {
  dockerManifest,
  layerMediaType,
  MT,
  parsePlatform,
  platformMatches,
  selectOciManifest,
  type OciIndex,
} from '../../src/containerd/import/archive.ts';
import { MAX_META_BYTES, parsePax, readTar, TarError } from '../../src/containerd/import/tar.ts';

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('labels from image references', () => {
  it('normalizes references as the CRI names them, drops duplicates, refuses digests', () => {
    assert.deepEqual(
      imageNames(['registry.local/app:v1', 'nginx:1', 'registry.local/app:v1', 'localhost:5000/a/b:2']),
      [
        { name: 'registry.local/app:v1', registry: 'registry.local', repository: 'app' },
        { name: 'docker.io/library/nginx:1', registry: 'docker.io', repository: 'library/nginx' },
        { name: 'localhost:5000/a/b:2', registry: 'localhost:5000', repository: 'a/b' },
      ],
    );
    assert.throws(() => imageNames([`registry.local/app@sha256:${'a'.repeat(64)}`]), /names a digest/);
  });

  it('one distribution-source label per registry host, its repositories comma-separated', () => {
    const names = imageNames([
      'registry.local/app:v1',
      'registry.local/other/x:v1',
      'registry.local/app:v2',
      'docker.io/acme/web:1',
      'ghcr.io:443/o/p:1',
    ]);
    assert.deepEqual(distributionSourceLabels(names), {
      'containerd.io/distribution.source.docker.io': 'acme/web',
      'containerd.io/distribution.source.ghcr.io:443': 'o/p',
      'containerd.io/distribution.source.registry.local': 'app,other/x',
    });
  });

  it('digest references: one per repository', () => {
    const d = `sha256:${'b'.repeat(64)}`;
    assert.deepEqual(digestNames(imageNames(['registry.local/app:v1', 'registry.local/app:v2', 'nginx:1']), d), [
      `registry.local/app@${d}`,
      `docker.io/library/nginx@${d}`,
    ]);
  });

  it('gc references and chain ids as containerd writes them', () => {
    const c = { mediaType: MT.dockerConfig, digest: sha('c'), size: 1 };
    const l = [sha('l0'), sha('l1')].map((digest) => ({ mediaType: MT.dockerLayer, digest, size: 2 }));
    assert.deepEqual(manifestGcLabels(c, l), {
      'containerd.io/gc.ref.content.config': sha('c'),
      'containerd.io/gc.ref.content.l.0': sha('l0'),
      'containerd.io/gc.ref.content.l.1': sha('l1'),
    });
    assert.deepEqual(indexGcLabels(l), {
      'containerd.io/gc.ref.content.m.0': sha('l0'),
      'containerd.io/gc.ref.content.m.1': sha('l1'),
    });
    const [a, b] = [sha('a'), sha('b')];
    assert.deepEqual(chainIds([a, b]), [a, sha(`${a} ${b}`)]);
  });
});

describe('docker-archive manifest and platforms', () => {
  it('writes the docker schema2 manifest as Go marshals containerd importer struct (same digest as ctr import)', () => {
    const c = { mediaType: MT.dockerConfig, digest: sha('c'), size: 372 };
    const l = { mediaType: MT.dockerLayer, digest: sha('l'), size: 2125312 };
    assert.equal(
      dockerManifest(c, [l]).toString(),
      `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"${c.digest}","size":372},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar","digest":"${l.digest}","size":2125312}]}`,
    );
  });

  it('layer media type from the first bytes', () => {
    assert.equal(layerMediaType(Buffer.from([0x1f, 0x8b, 8]), true), MT.dockerLayerGzip);
    assert.equal(layerMediaType(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), true), MT.ociLayerZstd);
    assert.equal(layerMediaType(Buffer.from('bin/'), true), MT.dockerLayer);
    assert.equal(layerMediaType(Buffer.from('bin/'), false), MT.ociLayer);
  });

  it('platforms match with containerd normalization', () => {
    assert.ok(platformMatches(parsePlatform('linux/arm64'), { os: 'linux', architecture: 'arm64', variant: 'v8' }));
    assert.ok(platformMatches(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'x86_64' }));
    assert.ok(platformMatches(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm' }));
    assert.ok(!platformMatches(parsePlatform('linux/arm64'), { os: 'linux', architecture: 'amd64' }));
    assert.ok(platformMatches(parsePlatform('linux/arm64'), {}), 'a config without platform fields is taken');
    assert.throws(() => parsePlatform('arm64'), /os\/arch/);
  });

  it('selects the manifest of the platform asked for in an OCI index, through nested indexes', async () => {
    const blobs = new Map<string, Buffer>();
    const put = (o: unknown, mediaType: string) => {
      const b = Buffer.from(JSON.stringify(o));
      blobs.set(sha(b), b);
      return { mediaType, digest: sha(b), size: b.length };
    };
    const manifestFor = (arch: string) => {
      const config = put({ os: 'linux', architecture: arch, rootfs: { type: 'layers', diff_ids: [] } }, MT.ociConfig);
      return put({ schemaVersion: 2, mediaType: MT.ociManifest, config, layers: [] }, MT.ociManifest);
    };
    const amd = manifestFor('amd64');
    const arm = manifestFor('arm64');
    const inner = put(
      { schemaVersion: 2, manifests: [{ ...amd, platform: { os: 'linux', architecture: 'amd64' } }, arm] },
      MT.ociIndex,
    );
    const index: OciIndex = {
      manifests: [{ ...inner, annotations: { 'io.containerd.image.name': 'registry.local/app:v1' } }],
    };
    const blob = async (d: { digest: string }) => blobs.get(d.digest)!;
    const a = await selectOciManifest(index, blob, parsePlatform('linux/arm64'));
    assert.equal(a.desc.digest, arm.digest);
    assert.equal(a.config.architecture, 'arm64');
    assert.deepEqual(a.names, ['registry.local/app:v1']);
    assert.equal((await selectOciManifest(index, blob, parsePlatform('linux/amd64'))).desc.digest, amd.digest);
    await assert.rejects(
      selectOciManifest(index, blob, parsePlatform('linux/s390x')),
      /no image for linux\/s390x in the archive \(it holds linux\/amd64, linux\/arm64\)/,
    );
  });
});

async function entriesOf(chunks: Buffer[]): Promise<{ path: string; type: string; linkname: string; data: string }[]> {
  const out = [];
  for await (const e of readTar(
    (async function* () {
      yield* chunks;
    })(),
  )) {
    const parts: Buffer[] = [];
    for await (const c of e.body) parts.push(c);
    out.push({ path: e.path, type: e.type, linkname: e.linkname, data: Buffer.concat(parts).toString('latin1') });
  }
  return out;
}

function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of [...points, buf.length]) {
    if (p > at) out.push(buf.subarray(at, p));
    at = p;
  }
  return out;
}

/** A raw header block with a given type flag and body (for PAX and GNU entries the writer lacks). */
function rawEntry(name: string, flag: string, body: Buffer): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.fill(' ', 148, 156);
  h.write(flag, 156);
  h.write('ustar\u000000', 257);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return Buffer.concat([h, body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
}

describe('streaming tar reader', () => {
  const long = `${'d'.repeat(90)}/${'e'.repeat(40)}/layer.tar`;
  const entries: TarEntry[] = [
    { type: 'dir', path: 'abc' },
    { type: 'file', path: 'abc/layer.tar', data: Buffer.alloc(70_000, 7) },
    { type: 'file', path: 'manifest.json', data: Buffer.from('[]') },
    { type: 'file', path: 'empty', data: Buffer.alloc(0) },
    { type: 'symlink', path: 'def/layer.tar', target: '../abc/layer.tar' },
    { type: 'file', path: long, data: Buffer.from('x'.repeat(513)) },
  ];
  const archive = tar(entries);
  const want = [
    { path: 'abc', type: 'dir', linkname: '', data: '' },
    { path: 'abc/layer.tar', type: 'file', linkname: '', data: Buffer.alloc(70_000, 7).toString('latin1') },
    { path: 'manifest.json', type: 'file', linkname: '', data: '[]' },
    { path: 'empty', type: 'file', linkname: '', data: '' },
    { path: 'def/layer.tar', type: 'symlink', linkname: '../abc/layer.tar', data: '' },
    { path: long, type: 'file', linkname: '', data: 'x'.repeat(513) },
  ];

  it('gives the same entries however the stream is chunked', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat(), { maxLength: 40 }), async (cuts) => {
        assert.deepEqual(await entriesOf(split(archive, cuts)), want);
      }),
      { numRuns: 60 },
    );
  });

  it('skips bodies the reader does not read', async () => {
    const paths: string[] = [];
    for await (const e of readTar(
      (async function* () {
        yield archive;
      })(),
    ))
      paths.push(e.path);
    assert.deepEqual(
      paths,
      want.map((w) => w.path),
    );
  });

  it('PAX path and GNU long names', async () => {
    const paxName = `blobs/sha256/${'f'.repeat(200)}`;
    const rec = (k: string, v: string) => {
      const body = ` ${k}=${v}\n`;
      let n = body.length + 1;
      while (`${n}${body}`.length !== n) n = `${n}${body}`.length;
      return `${n}${body}`;
    };
    const buf = Buffer.concat([
      rawEntry('PaxHeader', 'x', Buffer.from(rec('path', paxName))),
      rawEntry('short', '0', Buffer.from('pax!')),
      rawEntry('././@LongLink', 'L', Buffer.from(`${'g'.repeat(150)}\0`)),
      rawEntry('trunc', '0', Buffer.from('gnu!')),
      Buffer.alloc(1024),
    ]);
    assert.deepEqual(await entriesOf([buf]), [
      { path: paxName, type: 'file', linkname: '', data: 'pax!' },
      { path: 'g'.repeat(150), type: 'file', linkname: '', data: 'gnu!' },
    ]);
  });

  const paxRec = (k: string, v: string) => {
    const body = ` ${k}=${v}\n`;
    let n = Buffer.byteLength(body) + 1;
    while (Buffer.byteLength(`${n}${body}`) !== n) n = Buffer.byteLength(`${n}${body}`);
    return `${n}${body}`;
  };

  /** A header that declares `size` bytes and is followed by none: the reader must refuse it from the header alone. */
  function declaredOnly(name: string, flag: string, size: number): Buffer {
    const h = rawEntry(name, flag, Buffer.alloc(0)).subarray(0, 512);
    h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
    h.fill(' ', 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    return h;
  }

  it('PAX and GNU long-name headers over 1 MiB are refused at their header, naming it, before their bytes are read', async () => {
    for (const [flag, kind, name] of [
      ['x', 'PAX extended header', 'PaxHeaders.0/x'],
      ['g', 'PAX global header', 'GlobalHead.0'],
      ['L', 'GNU long name', '././@LongLink'],
      ['K', 'GNU long link name', '././@LongLink'],
    ] as const) {
      let pulled = 0;
      const source = (async function* () {
        yield Buffer.concat([
          tar([{ type: 'file', path: 'first', data: Buffer.from('ok') }]).subarray(0, 1024),
          declaredOnly(name, flag, 400 << 20),
        ]);
        // Only reached if the reader wants the header's body.
        for (;;) {
          pulled++;
          yield Buffer.alloc(1 << 20);
        }
      })();
      const seen: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const e of readTar(source)) seen.push(e.path);
        })(),
        (e: unknown) =>
          e instanceof TarError &&
          e.message ===
            `the ${kind} ${JSON.stringify(name)} at byte 1024 declares 419430400 bytes: more than 1 MiB (1048576), the most a tar reader accepts (Go's archive/tar too): corrupt or crafted archive`,
        flag,
      );
      assert.deepEqual(seen, ['first'], flag);
      assert.equal(pulled, 0, `${flag}: not a byte of the header's body read`);
    }
    // A base-256 size (GNU) is refused the same way.
    const b256 = declaredOnly('././@LongLink', 'L', 0);
    b256.fill(0, 124, 136);
    b256[124] = 0x80;
    b256.writeUIntBE(2 ** 40, 130, 6);
    b256.fill(' ', 148, 156);
    let sum = 0;
    for (const b of b256) sum += b;
    b256.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    await assert.rejects(
      entriesOf([b256]),
      /GNU long name "\.\/\.\/@LongLink" at byte 0 declares 1099511627776 bytes: more than 1 MiB/,
    );
  });

  it('headers of exactly 1 MiB are read (what Go accepts), and only path, linkpath and size are kept', async () => {
    const path = `blobs/sha256/${'p'.repeat(300)}`;
    const filler = paxRec('comment', 'c'.repeat(MAX_META_BYTES - 2000));
    const body = Buffer.from(filler + paxRec('path', path) + paxRec('SCHILY.xattr.user.x', 'y'));
    const pad = paxRec('comment', 'z'.repeat(MAX_META_BYTES - body.length - 20));
    const full = Buffer.concat([body, Buffer.from(pad)]);
    assert.ok(full.length <= MAX_META_BYTES && full.length > MAX_META_BYTES - 40, `${full.length}`);
    const long = Buffer.alloc(MAX_META_BYTES, 'l');
    const buf = Buffer.concat([
      rawEntry('PaxHeaders.0/p', 'x', full),
      rawEntry('p', '0', Buffer.from('pax')),
      rawEntry('././@LongLink', 'L', long),
      rawEntry('l', '0', Buffer.from('gnu')),
      Buffer.alloc(1024),
    ]);
    assert.deepEqual(await entriesOf(split(buf, [700, 5000, 1 << 19])), [
      { path, type: 'file', linkname: '', data: 'pax' },
      { path: 'l'.repeat(MAX_META_BYTES), type: 'file', linkname: '', data: 'gnu' },
    ]);
    assert.deepEqual(parsePax(full), { path });
  });

  it('a PAX size must be decimal digits within 2^53 - 1; it sizes the entry it describes, not the next meta header', async () => {
    const archive = (size: string, bodyLen: number) =>
      Buffer.concat([
        rawEntry('PaxHeaders.0/layer.tar', 'x', Buffer.from(paxRec('size', size))),
        rawEntry('layer.tar', '0', Buffer.alloc(bodyLen, 'b')),
        Buffer.alloc(1024),
      ]);
    for (const bad of [
      '1e3',
      '-512',
      '0x10',
      '4.5',
      '',
      ' 4',
      '4 ',
      '+4',
      '99999999999999999',
      '9007199254740993',
      'NaN',
      'Infinity',
      '４',
    ]) {
      await assert.rejects(
        entriesOf([archive(bad, 4)]),
        (e: unknown) =>
          e instanceof TarError &&
          /^the PAX size ".*" of "layer\.tar" at byte 1024 is not a byte count \(decimal digits, at most 9007199254740991\): corrupt or crafted archive$/.test(
            (e as Error).message,
          ),
        JSON.stringify(bad),
      );
    }
    // A valid one overrides the header's own size field (which says 4 here, the body is 700).
    const ok = Buffer.concat([
      rawEntry('PaxHeaders.0/layer.tar', 'x', Buffer.from(paxRec('size', '700'))),
      rawEntry('layer.tar', '0', Buffer.alloc(4, 'b')).subarray(0, 512),
      Buffer.alloc(700, 'b'),
      Buffer.alloc(324),
      Buffer.alloc(1024),
    ]);
    assert.deepEqual(await entriesOf([ok]), [{ path: 'layer.tar', type: 'file', linkname: '', data: 'b'.repeat(700) }]);
    // A PAX size before a GNU long name: the long name's own size field sizes it, the PAX size the file.
    const mixed = Buffer.concat([
      rawEntry('PaxHeaders.0/f', 'x', Buffer.from(paxRec('size', '3'))),
      rawEntry('././@LongLink', 'L', Buffer.from(`${'n'.repeat(700)}\0`)),
      rawEntry('f', '0', Buffer.from('abc')),
      Buffer.alloc(1024),
    ]);
    assert.deepEqual(await entriesOf([mixed]), [{ path: 'n'.repeat(700), type: 'file', linkname: '', data: 'abc' }]);
  });

  it('malformed PAX records are refused, naming the header', async () => {
    for (const [body, why] of [
      ['12 path=abc', 'record length|overruns'],
      ['11 path=abc', 'not ending in a newline'],
      ['x1 path=a\n', 'not a decimal number'],
      ['012 path=ab\n', 'not a decimal number'],
      ['9 =value\n', 'without key=value'],
      ['11 pathabc\n', 'without key=value'],
      ['12 path=a\0c\n', 'path holds a NUL byte'],
      ['nolength', 'without its length'],
      ['3 \n', 'overruns|without key=value'],
    ] as const) {
      const buf = Buffer.concat([
        rawEntry('PaxHeaders.0/f', 'x', Buffer.from(body)),
        rawEntry('f', '0', Buffer.from('x')),
        Buffer.alloc(1024),
      ]);
      await assert.rejects(
        entriesOf([buf]),
        (e: unknown) =>
          e instanceof TarError &&
          e.message.startsWith('malformed PAX extended header "PaxHeaders.0/f" at byte 0: ') &&
          new RegExp(why).test(e.message),
        JSON.stringify(body),
      );
    }
  });

  it('a truncated stream fails, wherever it is cut', async () => {
    for (const cut of [100, 512, 600, 50_000, archive.length - 1024 - 100, archive.length - 1024]) {
      await assert.rejects(
        entriesOf([archive.subarray(0, cut)]),
        (e: unknown) => e instanceof TarError && /truncated stream/.test((e as Error).message),
        `cut at ${cut}`,
      );
    }
  });

  it('garbage, an empty stream and data after the end are refused with a clear message', async () => {
    await assert.rejects(
      entriesOf([Buffer.from('\x7fELF'.padEnd(4096, 'z'))]),
      /not a tar archive \(bad header checksum at byte 0\)/,
    );
    await assert.rejects(entriesOf([]), /the stream is empty: no image was sent/);
    await assert.rejects(entriesOf([archive, Buffer.from('more')]), /data after the end-of-archive block/);
    const corrupt = Buffer.from(archive);
    corrupt[512 + 512 * 138] = 0x41; // the header after the first layer's body
    await assert.rejects(entriesOf([corrupt]), /bad tar header checksum at byte \d+: corrupt stream|ends inside/);
  });
});

it('labels on a blob two images share: distribution sources are merged, other labels set', async () => {
  const { mergedLabels } = await import('../../src/containerd/import/content.ts');
  const src = 'containerd.io/distribution.source.registry.local';
  assert.deepEqual(
    mergedLabels({ [src]: 'b,a', other: 'x' }, { [src]: 'c', 'containerd.io/uncompressed': 'sha256:1' }),
    { [src]: 'a,b,c', 'containerd.io/uncompressed': 'sha256:1' },
  );
  assert.deepEqual(mergedLabels({}, { [src]: 'a' }), { [src]: 'a' });
  assert.deepEqual(mergedLabels({ [src]: 'a' }, { [src]: 'a' }), { [src]: 'a' });
});
