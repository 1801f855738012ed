// enbi's own images as `npm run images` builds them (images/build.ts): twice from the same checkout into two
// directories, with identical digests and bytes; an OCI layout other tools read (names, platforms, no
// timestamps, owner 0); and they run: imported into a private containerd, the builder answers
// `nix --version` (Debian 13's 2.26) and `git --version` and has the Nix build users (nixbld), the
// controller image's own entrypoint prints `enbi --help`. On every platform the lock pins (arm64 runs
// through the host's QEMU binfmt, registered first when missing). skopeo reads them.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it, type TestContext } from 'node:test';
import { buildImages, imageRef, LOCK_FILE, type ImageResult } from '../../images/build.ts';
import { IMAGES } from '../../images/definition.ts';
import { fetchDebs, lockedFor, parseLock } from '../../images/debs.ts';
import { rootfsEnv } from '../../images/dockerfile.ts';
import { normalize, type Entry } from '../../images/oci.ts';
import { IMAGES_DIR, rootfs } from '../../images/rootfs.ts';
import { cacheDir, nodeVersion } from '../../images/build.ts';
import { cpSync, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { hostPlatform } from '../../images/rootfs.ts';
import { NIX_BUILD_USERS, PLATFORMS as DEF_PLATFORMS, packagesFor } from '../../images/definition.ts';
import { requireEmulation } from '../cluster/emulation.ts';
import { clusterSkipReason } from '../cluster/harness.ts';
import { run } from '../cluster/proc.ts';
import { type PrivateContainerd, startPrivateContainerd } from '../support/containerd.ts';

const lockedArm64 = parseLock(readFileSync(LOCK_FILE, 'utf8')).some((l) => l.arch === 'arm64');
const PLATFORMS = lockedArm64 ? ['linux/amd64', 'linux/arm64'] : [hostPlatform()];

/** The files of an OCI archive, by path. */
function untar(archive: string): Map<string, Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'enbi-oci-'));
  try {
    execFileSync('tar', ['-xf', archive, '-C', dir]);
    const files = execFileSync('find', ['.', '-type', 'f'], { cwd: dir, encoding: 'utf8' }).split('\n').filter(Boolean);
    return new Map(files.map((f) => [f.slice(2), readFileSync(join(dir, f))]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const json = (b: Buffer | undefined): Record<string, unknown> => JSON.parse(b!.toString()) as Record<string, unknown>;
type Desc = {
  mediaType: string;
  digest: string;
  platform?: { architecture: string };
  annotations?: Record<string, string>;
};

describe('enbi images from images/build.ts', { timeout: 1_800_000 }, () => {
  const dirs = [mkdtempSync(join(tmpdir(), 'enbi-img-a-')), mkdtempSync(join(tmpdir(), 'enbi-img-b-'))];
  const builds: ImageResult[][] = [];
  const seconds: number[] = [];

  before(async () => {
    for (const out of dirs) {
      const t0 = Date.now();
      builds.push(await buildImages({ platforms: PLATFORMS, out }));
      seconds.push((Date.now() - t0) / 1000);
    }
  });
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('built twice, both images have the same digests and the archives the same bytes', (t: TestContext) => {
    t.diagnostic(
      `platforms ${PLATFORMS.join(', ')}; builds took ${seconds.map((s) => `${s.toFixed(1)} s`).join(' and ')}`,
    );
    for (const [a, b] of IMAGES.map((d) => builds.map((r) => r.find((i) => i.name === d.name)!))) {
      t.diagnostic(
        `${a!.refs[0]} ${a!.digest} ${(a!.archiveBytes / 1e6).toFixed(1)} MB; ${a!.platforms.map((p) => `${p.platform} ${p.manifest} layer ${(p.layerBytes / 1e6).toFixed(1)} MB`).join('; ')}`,
      );
      assert.match(a!.digest, /^sha256:[0-9a-f]{64}$/);
      assert.equal(a!.digest, b!.digest, `${a!.name}: index digest`);
      assert.deepEqual(a!.platforms, b!.platforms, `${a!.name}: manifests`);
      assert.ok(readFileSync(a!.archive).equals(readFileSync(b!.archive)), `${a!.name}: archive bytes`);
    }
  });

  it('each archive is an OCI layout: named for deploy/, one manifest per platform, no timestamps, every file 0:0 at mtime 0', () => {
    for (const img of builds[0]!) {
      const def = IMAGES.find((d) => d.name === img.name)!;
      const files = untar(img.archive);
      assert.deepEqual(json(files.get('oci-layout')), { imageLayoutVersion: '1.0.0' });
      const top = json(files.get('index.json')) as { manifests: Desc[] };
      assert.equal(top.manifests.length, 1);
      assert.equal(top.manifests[0]!.annotations!['io.containerd.image.name'], imageRef(def));
      assert.equal(top.manifests[0]!.annotations!['org.opencontainers.image.ref.name'], imageRef(def));
      assert.equal(top.manifests[0]!.digest, img.digest);
      const blob = (d: string): Buffer => files.get(`blobs/sha256/${d.slice(7)}`)!;
      const index = json(blob(img.digest)) as { manifests: Desc[] };
      assert.deepEqual(
        index.manifests.map((m) => `linux/${m.platform!.architecture}`),
        PLATFORMS,
      );
      for (const m of index.manifests) {
        const manifest = json(blob(m.digest)) as { config: Desc; layers: Desc[] };
        const config = json(blob(manifest.config.digest));
        assert.equal(config.architecture, m.platform!.architecture);
        assert.equal('created' in config || 'history' in config, false, 'no timestamps in the config');
        assert.deepEqual((config.config as { Entrypoint?: string[] }).Entrypoint, def.config.Entrypoint);
        assert.equal(manifest.layers.length, 1);
        const layer = gunzipSync(blob(manifest.layers[0]!.digest));
        // Every tar header: uid, gid and mtime fields are zero (octal), whatever the host's files had.
        let headers = 0;
        for (let off = 0; off + 512 <= layer.length;) {
          const h = layer.subarray(off, off + 512);
          if (h.every((x) => x === 0)) break;
          headers++;
          const num = (o: number, n: number): number =>
            parseInt(
              h
                .toString('latin1', o, o + n)
                .replace(/\0.*$/s, '')
                .trim() || '0',
              8,
            );
          assert.deepEqual([num(108, 8), num(116, 8), num(136, 12)], [0, 0, 0], h.toString('latin1', 0, 100));
          off += 512 + Math.ceil(num(124, 12) / 512) * 512;
        }
        assert.ok(headers > 100, `${img.name}: ${headers} entries`);
      }
    }
  });

  it('skopeo reads each archive as the image index it is, and copies every platform out of it', async () => {
    for (const img of builds[0]!) {
      const raw = await run('skopeo', ['inspect', '--raw', `oci-archive:${img.archive}`]);
      assert.equal(`sha256:${createHash('sha256').update(raw).digest('hex')}`, img.digest);
      const dest = join(dirs[1]!, `${img.name}-copy`);
      await run('skopeo', ['copy', '--all', '--quiet', `oci-archive:${img.archive}`, `oci:${dest}:copy`]);
      const index = JSON.parse(readFileSync(join(dest, 'index.json'), 'utf8')) as { manifests: Desc[] };
      assert.equal(index.manifests[0]!.digest, img.digest, 'skopeo copied the index unchanged');
    }
  });

  describe('they run in containerd', { skip: clusterSkipReason() ?? false }, () => {
    let dir: string;
    let cd: PrivateContainerd;
    const ctr = (...args: string[]) => run(cd.ctr, ['--address', cd.socket, '-n', 'k8s.io', ...args]);
    let n = 0;
    /** `ctr run` of the image on a platform; args replace the entrypoint (none: the image's own). */
    const runIn = async (ref: string, platform: string, args: string[]): Promise<string> => {
      return await ctr('run', '--rm', '--platform', platform, ref, `enbi-img-${process.pid}-${n++}`, ...args);
    };

    before(async () => {
      dir = mkdtempSync('/tmp/eim-');
      cd = await startPrivateContainerd('debian-1.6', dir);
      for (const img of builds[0]!) await ctr('images', 'import', '--all-platforms', img.archive);
    });
    after(async () => {
      await cd?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    for (const platform of PLATFORMS) {
      const emulated = platform !== hostPlatform();
      it(`${platform}: the builder runs nix and git, the controller image prints enbi's usage and has kustomize and helm`, async (t: TestContext) => {
        if (emulated) await requireEmulation('aarch64-linux'); // never a skip: the host is made able to
        const builder = imageRef(IMAGES.find((d) => d.name === 'builder')!);
        const controller = imageRef(IMAGES.find((d) => d.name === 'controller')!);
        const listed = (await ctr('images', 'ls', '-q')).split('\n');
        assert.ok(listed.includes(builder) && listed.includes(controller), listed.join(' '));
        // Debian 13's Nix and git (images/packages.lock).
        const nix = await runIn(builder, platform, ['nix', '--version']);
        assert.match(nix, /^nix \(Nix\) 2\.26\.\d/m);
        const git = await runIn(builder, platform, ['git', '--version']);
        assert.match(git, /^git version 2\.47\.\d/m);
        // The job's shell is busybox, as /bin/sh; the CA bundle nix and git are pointed at is there; the
        // root is Debian 13's; bash-static, which Debian's Nix binds as /bin/sh into every sandbox, runs.
        const sh = await runIn(builder, platform, [
          '/bin/sh',
          '-c',
          'uname -m; wc -c < "$NIX_SSL_CERT_FILE"; . /etc/os-release; echo "$VERSION_ID"; /usr/bin/bash-static -c \'echo "$BASH_VERSION"\'',
        ]);
        const [arch, caBytes, debian, bash] = sh.trim().split('\n');
        assert.equal(arch, platform === 'linux/arm64' ? 'aarch64' : 'x86_64');
        assert.ok(Number(caBytes) > 100_000, `CA bundle ${caBytes} bytes`);
        assert.equal(debian, '13');
        assert.match(bash ?? '', /^5\.\d/);
        // The daemon's build users, as the running container's own tools read them (busybox's id and grep).
        const { group, gid, firstUid, count } = NIX_BUILD_USERS;
        const users = await runIn(builder, platform, [
          '/bin/sh',
          '-c',
          `grep '^${group}:' /etc/group; id ${group}1; id ${group}${count}; grep -c '^${group}[0-9]*:' /etc/passwd`,
        ]);
        const members = Array.from({ length: count }, (_, i) => `${group}${i + 1}`).join(',');
        assert.deepEqual(users.trim().split('\n'), [
          `${group}:x:${gid}:${members}`,
          `uid=${firstUid}(${group}1) gid=${gid}(${group}) groups=${gid}(${group})`,
          `uid=${firstUid + count - 1}(${group}${count}) gid=${gid}(${group}) groups=${gid}(${group})`,
          String(count),
        ]);
        // The render tools, for the image's architecture, stamped with their versions.
        assert.match(await runIn(controller, platform, ['/usr/local/bin/kustomize', 'version']), /v5\.8\.1/);
        assert.match(await runIn(controller, platform, ['/usr/local/bin/helm', 'version', '--short']), /^v3\.22\.0/);
        const help = await runIn(controller, platform, []);
        assert.match(help, /enbi diff/);
        assert.match(help, /enbi controller/);
        t.diagnostic(`${platform}${emulated ? ' (QEMU)' : ''}: ${nix.trim()}; ${git.trim()}`);
      });
    }
  });
});

describe('pinned inputs that cannot be had fail the build, naming what differs', () => {
  const lock = parseLock(readFileSync(LOCK_FILE, 'utf8'));
  const arch = hostPlatform() === 'linux/arm64' ? 'arm64' : 'amd64';
  const cache = mkdtempSync(join(tmpdir(), 'enbi-debs-'));
  after(() => rmSync(cache, { recursive: true, force: true }));

  it('a .deb whose sha256 is not the locked one', () => {
    const real = lockedFor(lock, 'busybox-static', arch);
    const wrong = { ...real, sha256: '0'.repeat(64) };
    assert.throws(
      () => fetchDebs([wrong], cache),
      (e: Error) => {
        assert.match(
          e.message,
          new RegExp(
            `busybox-static:${arch} .*: the downloaded \\.deb has sha256 ${real.sha256}, images/packages\\.lock says 0{64}`,
          ),
        );
        return true;
      },
    );
    assert.ok(
      !existsSync(join(cache, `busybox-static_${real.version.replace(/:/g, '%3a')}_${arch}.deb`)),
      'nothing cached',
    );
  });

  it('a version apt does not offer', () => {
    const real = lockedFor(lock, 'nix-bin', arch);
    assert.throws(
      () => fetchDebs([{ ...real, version: '9.9.9-1' }], cache),
      (e: Error) => {
        assert.match(e.message, new RegExp(`nix-bin:${arch}: locked 9\\.9\\.9-1, apt offers \\d\\S*\\n`));
        assert.match(e.message, /snapshot\.debian\.org|--update-lock/);
        return true;
      },
    );
  });
});

describe("the Dockerfiles' shell twin (images/rootfs.sh) unpacks the same root file system as images/build.ts", () => {
  const platform = hostPlatform();
  const info = DEF_PLATFORMS[platform]!;
  const lock = parseLock(readFileSync(LOCK_FILE, 'utf8'));
  const describeEntry = (e: Entry): string =>
    e.type === 'file'
      ? `file ${e.mode.toString(8)} ${createHash('sha256').update(e.data).digest('hex')}`
      : e.type === 'dir'
        ? `dir ${e.mode.toString(8)}`
        : `link ${e.target}`;

  for (const def of IMAGES) {
    it(`${def.name} on ${platform}: every path, type, mode, link target and file content equal (Node, /app, kustomize and helm come from other stages)`, (t: TestContext) => {
      const out = mkdtempSync(join(tmpdir(), `enbi-rootfs-${def.name}-`));
      try {
        // The Dockerfile's RUN: the same env and packages, the .debs the script cached (checked again by sha256).
        execFileSync(
          'sh',
          [join(IMAGES_DIR, 'rootfs.sh'), 'rootfs', info.deb, join(out, 'root'), LOCK_FILE, ...def.packages],
          {
            env: { ...process.env, ...rootfsEnv(def, IMAGES_DIR), DEBS: join(cacheDir(), 'debs') },
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        // The final stage's COPY images/NAME/rootfs/ /.
        cpSync(join(IMAGES_DIR, def.name, 'rootfs'), join(out, 'root'), { recursive: true });
        const shell = new Map<string, string>();
        const walk = (rel: string): void => {
          for (const n of readdirSync(join(out, 'root', rel))) {
            const r = rel === '' ? n : `${rel}/${n}`;
            const full = join(out, 'root', r);
            const st = lstatSync(full);
            if (st.isSymbolicLink()) shell.set(r, `link ${readlinkSync(full)}`);
            else if (st.isDirectory()) {
              shell.set(r, `dir ${(st.mode & 0o7777).toString(8)}`);
              walk(r);
            } else
              shell.set(
                r,
                `file ${(st.mode & 0o7777).toString(8)} ${createHash('sha256').update(readFileSync(full)).digest('hex')}`,
              );
          }
        };
        walk('');
        const script = new Map<string, string>();
        for (const e of normalize(
          rootfs(def, platform, info, {
            lock,
            cache: cacheDir(),
            app: () => [],
            nodeVersion: nodeVersion(),
            goTools: false,
          }),
        )) {
          if (!/^(app|nodejs)(\/|$)/.test(e.path)) script.set(e.path, describeEntry(e));
        }
        const differences = [...new Set([...script.keys(), ...shell.keys()])].filter(
          (p) => script.get(p) !== shell.get(p),
        );
        t.diagnostic(`${script.size} entries from ${packagesFor(def, info.deb).length} packages`);
        assert.deepEqual(
          differences.slice(0, 20).map((p) => `${p}: script ${script.get(p) ?? '-'}, rootfs.sh ${shell.get(p) ?? '-'}`),
          [],
        );
        assert.ok(script.size > 100);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    });
  }
});
