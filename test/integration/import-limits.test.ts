// `enbi import` on a real containerd (Debian's 1.6 and 2.x) given archives crafted to exhaust it: a PAX
// extended header and a GNU long name that declare 400 MiB, and a PAX `size` that is not a byte count.
// Each is refused at its header, before its bytes are read: quickly, with the importer's peak RSS measured
// (getrusage's ru_maxrss, written by the importer process itself at exit), the entry named, and nothing left
// in containerd (no image record, no blob, no ingest).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import { clusterSkipReason } from '../cluster/harness.ts';
import { run } from '../cluster/proc.ts';
import { tar } from '../cluster/tar.ts';
import { containerd2Dir, type PrivateContainerd, startPrivateContainerd } from '../support/containerd.ts';

const REPO = new URL('../..', import.meta.url).pathname;
const MiB = 1 << 20;

/** A header block with a type flag and a declared size (the body follows separately). */
function headerBlock(name: string, flag: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.fill(' ', 148, 156);
  h.write(flag, 156);
  h.write('ustar\u000000', 257);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/** One well-formed PAX record `<len> key=value\n` whose total length is exactly n (value padded with 'a'). */
function* paxRecordOf(n: number, key: string): Generator<Buffer> {
  const head = `${n} ${key}=`;
  yield Buffer.from(head);
  let left = n - head.length - 1;
  const chunk = Buffer.alloc(MiB, 'a');
  while (left > 0) {
    const k = Math.min(left, chunk.length);
    yield chunk.subarray(0, k);
    left -= k;
  }
  yield Buffer.from('\n');
}

/** A small valid image entry and the end of the archive, after the crafted header. */
const tail = (): Buffer => tar([{ type: 'file', path: 'manifest.json', data: Buffer.from('[]') }]);

/** An archive that starts with a meta header (PAX 'x' or GNU 'L') of `size` bytes, generated as it is sent. */
function* hugeMetaHeader(flag: 'x' | 'L', size: number): Generator<Buffer> {
  yield headerBlock(flag === 'x' ? 'PaxHeaders.0/manifest.json' : '././@LongLink', flag, size);
  if (flag === 'x') yield* paxRecordOf(size, 'comment');
  else {
    const chunk = Buffer.alloc(MiB, 'n');
    for (let left = size; left > 0; left -= chunk.length) yield chunk.subarray(0, Math.min(left, chunk.length));
  }
  if (size % 512 !== 0) yield Buffer.alloc(512 - (size % 512));
  yield tail();
}

function* badPaxSize(value: string): Generator<Buffer> {
  const rec = (k: string, v: string) => {
    const body = ` ${k}=${v}\n`;
    let n = body.length + 1;
    while (`${n}${body}`.length !== n) n = `${n}${body}`.length;
    return `${n}${body}`;
  };
  const data = Buffer.from(rec('size', value));
  yield headerBlock('PaxHeaders.0/layer.tar', 'x', data.length);
  yield Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
  yield headerBlock('layer.tar', '0', 4);
  yield Buffer.concat([Buffer.from('abcd'), Buffer.alloc(508)]);
  yield Buffer.alloc(1024);
}

interface Run {
  code: number;
  stderr: string;
  ms: number;
  maxRssMiB: number;
  sentMiB: number;
}

/** `enbi import` reading `stream` on stdin; its own ru_maxrss, written at exit, and how much it let us send. */
async function importStream(socket: string, dir: string, image: string, stream: Iterable<Buffer>): Promise<Run> {
  const rssFile = join(dir, `rss-${randomBytes(3).toString('hex')}`);
  const preload = `data:text/javascript,${encodeURIComponent(`import{writeFileSync}from'node:fs';process.on('exit',()=>writeFileSync(${JSON.stringify(rssFile)},String(process.resourceUsage().maxRSS)));`)}`;
  const t0 = Date.now();
  const p = spawn(
    join(REPO, 'node_modules/.bin/node'),
    ['--import', preload, join(REPO, 'src/cli/main.ts'), 'import', '--socket', socket, '--image', image],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  let stderr = '';
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let sent = 0;
  const counted = Readable.from(
    (function* () {
      for (const b of stream) {
        sent += b.length;
        yield b;
      }
    })(),
    { objectMode: false, highWaterMark: 64 << 10 },
  );
  p.stdin.on('error', () => undefined); // EPIPE once the importer stops reading
  counted.on('error', () => undefined);
  counted.pipe(p.stdin);
  const code = await new Promise<number>((r) => p.on('exit', (c) => r(c ?? 1)));
  counted.unpipe(p.stdin);
  counted.destroy();
  const ms = Date.now() - t0;
  return {
    code,
    stderr,
    ms,
    maxRssMiB: Math.round(Number(readFileSync(rssFile, 'utf8')) / 1024),
    sentMiB: Math.round((sent / MiB) * 10) / 10,
  };
}

/** Everything the image and content stores hold, as ctr lists them, to compare before and after. */
async function stores(cd: PrivateContainerd): Promise<{ images: string[]; blobs: string[]; ingests: string[] }> {
  const ctr = async (...args: string[]) =>
    (await run(cd.ctr, ['--address', cd.socket, '-n', 'k8s.io', ...args]))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')
      .sort();
  return {
    images: await ctr('images', 'ls', '-q'),
    blobs: await ctr('content', 'ls', '-q'),
    ingests: (await ctr('content', 'active')).filter((l) => !/^REF\b/.test(l)),
  };
}

const flavors: { name: string; spec: () => string | undefined }[] = [
  { name: 'containerd 1.6 (Debian)', spec: () => 'debian-1.6' },
  {
    name: 'containerd 2.x',
    spec: () => {
      const d = containerd2Dir();
      return d ? `containerd-2:${d}` : undefined;
    },
  },
];

for (const flavor of flavors) {
  const spec = clusterSkipReason() ? undefined : flavor.spec();
  describe(
    `enbi import on ${flavor.name}: header bombs`,
    {
      skip:
        clusterSkipReason() ||
        (spec === undefined ? 'containerd 2 binaries unavailable (test/cluster/build-containerd2.sh needs Go)' : false),
      timeout: 300_000,
    },
    () => {
      let dir: string;
      let cd: PrivateContainerd;
      let baseline: number;

      before(async () => {
        dir = mkdtempSync('/tmp/eil-');
        cd = await startPrivateContainerd(spec!, dir);
        // The importer's own peak on an ordinary small archive, for comparison.
        baseline = (await importStream(cd.socket, dir, 'registry.local/baseline:v1', badPaxSize('4'))).maxRssMiB;
      });
      after(async () => {
        await cd?.stop();
        if (dir) rmSync(dir, { recursive: true, force: true });
      });

      for (const [what, flag, re] of [
        [
          'a 400 MiB PAX extended header',
          'x',
          /the PAX extended header "PaxHeaders\.0\/manifest\.json" at byte 0 declares 419430400 bytes: more than 1 MiB/,
        ],
        [
          'a 400 MiB GNU long name',
          'L',
          /the GNU long name "\.\/\.\/@LongLink" at byte 0 declares 419430400 bytes: more than 1 MiB/,
        ],
      ] as const) {
        it(`${what} is refused at its header: quickly, in bounded memory, nothing in containerd`, async (t: TestContext) => {
          const image = `registry.local/bomb-${flag === 'x' ? 'pax' : 'gnu'}:v1`;
          const was = await stores(cd);
          const r = await importStream(cd.socket, dir, image, hugeMetaHeader(flag, 400 * MiB));
          t.diagnostic(
            `${what}: exit ${r.code} in ${r.ms} ms, importer peak RSS ${r.maxRssMiB} MiB (${baseline} MiB on a small archive), ${r.sentMiB} MiB of the 400 MiB sent before it stopped reading`,
          );
          assert.equal(r.code, 1, r.stderr);
          assert.match(r.stderr, re);
          assert.match(r.stderr, /no image record was created/);
          assert.ok(r.maxRssMiB < baseline + 32, `peak RSS ${r.maxRssMiB} MiB, ${baseline} MiB on a small archive`);
          assert.ok(r.sentMiB < 16, `the importer read ${r.sentMiB} MiB before refusing`);
          assert.ok(r.ms < 20_000, `${r.ms} ms`);
          assert.deepEqual(await stores(cd), was, 'no image record, blob or ingest left');
        });
      }

      it('a PAX size that is not a decimal byte count is refused, naming the entry', async () => {
        for (const bad of ['1e3', '-512', '0x10', '4.5', '', ' 4', '99999999999999999999']) {
          const was = await stores(cd);
          const r = await importStream(cd.socket, dir, 'registry.local/bad-size:v1', badPaxSize(bad));
          assert.equal(r.code, 1, `${JSON.stringify(bad)}: ${r.stderr}`);
          assert.match(r.stderr, /PAX size .* of "layer\.tar" at byte 1024 is not a byte count/, JSON.stringify(bad));
          assert.deepEqual(await stores(cd), was, JSON.stringify(bad));
        }
      });
    },
  );
}
