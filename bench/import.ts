// Import time of a ~100 MB docker-archive into a private containerd: the old way (`ctr images import`, which
// unpacks, then `ctr images label … pinned`, as the Job's shell script did) against `enbi import` (content
// API with labels at commit, lease, unpack through Snapshots/Diff, tag and digest records, verification).
// Each run imports an archive of fresh random bytes, so no run finds its layers stored already.
//
//   node bench/import.ts [--mb 100] [--rounds 3] [--containerd debian-1.6|containerd-2:DIR]
// ENBI_DIST=DIR runs the compiled CLI there (DIR/cli/main.js, from `tsc -p tsconfig.build.json --outDir DIR`:
// what the controller image runs); without it, the TypeScript sources (type stripping adds about a second).
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { hostBin } from '../test/cluster/paths.ts';
import { tar, type TarEntry } from '../test/cluster/tar.ts';
import { startPrivateContainerd } from '../test/support/containerd.ts';

const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '3' },
    containerd: { type: 'string', default: 'debian-1.6' },
  },
});
const MB = Number(values.mb);
const ROUNDS = Number(values.rounds);
const REPO = new URL('..', import.meta.url).pathname;
const CLI = process.env.ENBI_DIST ? join(process.env.ENBI_DIST, 'cli/main.js') : join(REPO, 'src/cli/main.ts');
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A docker-archive: busybox layer, then layers of random bytes (16 MB files) adding up to `mb`. */
function archive(out: string, mb: number): void {
  const layers: Buffer[] = [
    tar([
      { type: 'dir', path: 'bin' },
      { type: 'file', path: 'bin/busybox', data: readFileSync(hostBin('busybox')), mode: 0o755 },
      { type: 'symlink', path: 'bin/sh', target: 'busybox' },
    ]),
  ];
  for (let left = mb, i = 0; left > 0; i++) {
    const files: TarEntry[] = [];
    for (let j = 0; j < 2 && left > 0; j++, left -= 16)
      files.push({ type: 'file', path: `data/${i}-${j}.bin`, data: randomBytes(Math.min(16, left) << 20) });
    layers.push(tar(files));
  }
  const diffIds = layers.map((l) => `sha256:${sha256(l)}`);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
    }),
  );
  const entries: TarEntry[] = layers.map((l, i) => ({
    type: 'file',
    path: `${diffIds[i]!.slice(7)}/layer.tar`,
    data: l,
  }));
  entries.push({ type: 'file', path: `${sha256(config)}.json`, data: config });
  entries.push({
    type: 'file',
    path: 'manifest.json',
    data: Buffer.from(
      JSON.stringify([
        {
          Config: `${sha256(config)}.json`,
          RepoTags: ['bench.local/img:1'],
          Layers: diffIds.map((d) => `${d.slice(7)}/layer.tar`),
        },
      ]),
    ),
  });
  writeFileSync(out, tar(entries));
}

function exec(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code) =>
      code === 0
        ? resolve(Number(process.hrtime.bigint() - t0) / 1e6)
        : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err}`)),
    );
  });
}

const dir = mkdtempSync('/tmp/bi-');
const cd = await startPrivateContainerd(values.containerd, dir);
const ctr = (...a: string[]) => ['--address', cd.socket, '-n', 'k8s.io', ...a];
const local = cd.flavor === 'containerd-2' ? ['--local'] : [];
const rows: { round: number; way: string; ms: number }[] = [];
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const way of round % 2 === 1 ? ['ctr', 'enbi'] : ['enbi', 'ctr']) {
      const file = join(dir, `${way}-${round}.tar`);
      archive(file, MB);
      const ref = `registry.local/bench-${way}:${round}`;
      let ms: number;
      if (way === 'ctr') {
        ms = await exec(cd.ctr, ctr('images', 'import', ...local, '--platform', 'linux/amd64', file));
        ms += await exec(cd.ctr, ctr('images', 'tag', '--force', 'bench.local/img:1', ref));
        ms += await exec(cd.ctr, ctr('images', 'label', ref, 'io.cri-containerd.pinned=pinned'));
        await exec(cd.ctr, ctr('images', 'rm', 'bench.local/img:1'));
      } else {
        ms = await exec(join(REPO, 'node_modules/.bin/node'), [
          CLI,
          'import',
          '--socket',
          cd.socket,
          '--file',
          file,
          '--image',
          ref,
          '--platform',
          'linux/amd64',
        ]);
      }
      rows.push({ round, way, ms });
      console.log(
        `round ${round}  ${way.padEnd(4)}  ${(statSync(file).size / 1e6).toFixed(1)} MB  ${(ms / 1000).toFixed(2)} s`,
      );
      rmSync(file);
    }
  }
} finally {
  await cd.stop();
  rmSync(dir, { recursive: true, force: true });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ctrMs = median(rows.filter((r) => r.way === 'ctr').map((r) => r.ms));
const enbiMs = median(rows.filter((r) => r.way === 'enbi').map((r) => r.ms));
console.log(
  `\n${cd.flavor}, ${MB} MB archive, median of ${ROUNDS}, enbi from ${process.env.ENBI_DIST ? `compiled JS (${CLI})` : 'TypeScript sources (type stripping)'}:`,
);
console.log(`  ctr images import + tag + label:  ${(ctrMs / 1000).toFixed(2)} s`);
console.log(
  `  enbi import (labels at commit, unpack, records, verify; Node start included):  ${(enbiMs / 1000).toFixed(2)} s  (${(enbiMs / ctrMs).toFixed(2)}×)`,
);
