// The image definition's promises that need no build: the committed Dockerfiles are what the definition
// generates, deploy/ names the images the script builds, the lock pins every package on every platform it
// covers, and the tar/OCI/ELF pieces behave (same bytes twice, long paths, missing libraries named).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { dockerfiles, imageRef, LOCK_FILE, nodeVersion } from '../../images/build.ts';
import { DEBIAN, IMAGES, NIX_BUILD_USERS, packagesFor, PLATFORMS } from '../../images/definition.ts';
import { debianMirrors, formatLock, parseLock } from '../../images/debs.ts';
import { readElf } from '../../images/elf.ts';
import { normalize, platformImage, tar, type Entry } from '../../images/oci.ts';
import { missingLibraries } from '../../images/rootfs.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

test('the committed Dockerfiles are what images/definition.ts generates (npm run images -- --dockerfiles)', () => {
  for (const d of dockerfiles()) {
    assert.equal(readFileSync(d.path, 'utf8'), d.text, `${d.path} is stale: run npm run images -- --dockerfiles`);
  }
});

test("the Dockerfiles install the definition's packages, Node of package-lock.json, and the same config", () => {
  for (const d of dockerfiles()) {
    const def = IMAGES.find((i) => d.path.endsWith(`/${i.name}.Dockerfile`))!;
    assert.match(d.text, new RegExp(`\\n    ${def.packages.join(' ').replace(/[+.]/g, '\\$&')}\\n`));
    for (const line of [
      `WORKDIR ${def.config.WorkingDir}`,
      ...(def.config.Entrypoint ? [`ENTRYPOINT ${JSON.stringify(def.config.Entrypoint)}`] : []),
    ])
      assert.ok(d.text.includes(`\n${line}\n`), line);
    assert.equal(d.text.includes(`node:${nodeVersion()}-${DEBIAN.suite}-slim`), def.app);
    assert.ok(d.text.includes(`FROM --platform=$BUILDPLATFORM debian:${DEBIAN.suite}-slim AS rootfs`));
    assert.ok(d.text.includes(`rootfs.sh apt ${DEBIAN.snapshot} ${DEBIAN.suite} `), "the snapshot of the lock's suite");
  }
});

test("the builder's Nix build users: group nixbld with nixbld1..N as members, each a passwd entry of that group, no login", () => {
  const etc = join(ROOT, 'images/builder/rootfs/etc');
  const { group, gid, firstUid, count } = NIX_BUILD_USERS;
  const groups = readFileSync(join(etc, 'group'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(':'));
  const users = readFileSync(join(etc, 'passwd'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(':'));
  const names = Array.from({ length: count }, (_, i) => `${group}${i + 1}`);
  assert.deepEqual(
    groups.find((g) => g[0] === group),
    [group, 'x', String(gid), names.join(',')],
  );
  names.forEach((n, i) => {
    const u = users.find((x) => x[0] === n);
    assert.ok(u, n);
    assert.deepEqual([u[2], u[3], u[5], u[6]], [String(firstUid + i), String(gid), '/nonexistent', '/bin/false'], n);
  });
  // Unique ids; root stays root and in no build group (Nix refuses a daemon user that is a member).
  assert.equal(new Set(users.map((u) => u[2])).size, users.length);
  assert.equal(new Set(groups.map((g) => g[2])).size, groups.length);
  assert.deepEqual(users.find((u) => u[0] === 'root')?.slice(2, 4), ['0', '0']);
  assert.ok(count >= 1 && !names.includes('root'));
});

test('deploy/ runs exactly the images the script names (REGISTRY/REPOSITORY:package.json version)', () => {
  const used = new Set<string>();
  for (const f of readdirSync(join(ROOT, 'deploy')).filter((f) => f.endsWith('.yaml'))) {
    const text = readFileSync(join(ROOT, 'deploy', f), 'utf8');
    for (const doc of parseAllDocuments(text)) {
      const walk = (v: unknown, key = ''): void => {
        if (typeof v === 'string' && /^(image|builderImage|importerImage)$/.test(key)) used.add(v);
        else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, k);
      };
      const js = doc.toJS() as unknown;
      walk(js);
      // The controller's configuration is YAML inside a ConfigMap.
      const data =
        (js as { kind?: string; data?: Record<string, string> } | null)?.kind === 'ConfigMap'
          ? (js as { data: Record<string, string> }).data
          : {};
      for (const v of Object.values(data ?? {})) for (const d of parseAllDocuments(v)) walk(d.toJS());
    }
  }
  const ours = IMAGES.map((d) => imageRef(d));
  assert.deepEqual([...used].sort(), [...ours].sort(), 'deploy/ image references');
});

test('images/packages.lock pins every package of every image, for each platform it covers, and Node of package-lock.json', () => {
  const lock = parseLock(readFileSync(LOCK_FILE, 'utf8'));
  assert.equal(formatLock(lock), readFileSync(LOCK_FILE, 'utf8'), 'the lock is in its canonical order and form');
  const covered = Object.entries(PLATFORMS).filter(([, p]) => lock.some((l) => l.arch === p.deb));
  assert.ok(covered.some(([p]) => p === 'linux/amd64'));
  for (const [platform, info] of covered) {
    for (const def of IMAGES) {
      for (const pkg of packagesFor(def, info.deb))
        assert.ok(
          lock.some((l) => l.name === pkg && (l.arch === info.deb || l.arch === 'all')),
          `${pkg} for ${platform}`,
        );
    }
    assert.ok(
      lock.some((l) => l.name === `node-linux-${info.npm}` && l.arch === 'npm' && l.version === nodeVersion()),
      `Node ${nodeVersion()} for ${platform}`,
    );
  }
  assert.throws(() => parseLock('git amd64 1:2.39 nothex\n'), /packages\.lock:1: want NAME ARCH VERSION SHA256/);
});

test("the Debian mirror is read from the machine's apt sources: one-line and deb822, other repositories and disabled stanzas skipped", () => {
  const etc = mkdtempSync(join(tmpdir(), 'enbi-apt-etc-'));
  try {
    mkdirSync(join(etc, 'sources.list.d'));
    writeFileSync(join(etc, 'sources.list'), '# none here\ndeb-src http://src.example/debian bookworm main\n');
    writeFileSync(
      join(etc, 'sources.list.d', 'a-vendor.list'),
      'deb [arch=amd64] https://vendor.example/apt nodistro main\n',
    );
    writeFileSync(
      join(etc, 'sources.list.d', 'b-off.sources'),
      'Types: deb\nURIs: http://off.example/debian\nSuites: trixie\nComponents: main\nEnabled: no\n',
    );
    writeFileSync(
      join(etc, 'sources.list.d', 'c-debian.sources'),
      'Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n',
    );
    writeFileSync(join(etc, 'sources.list.d', 'd.list.disabled'), 'deb http://disabled.example/debian trixie main\n');
    assert.deepEqual(debianMirrors(etc), {
      archive: 'http://mirror.example/debian',
      security: 'http://mirror.example/debian-security',
    });
    // Without a security entry: the archive's sibling.
    writeFileSync(
      join(etc, 'sources.list.d', 'c-debian.sources'),
      'Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie\nComponents: main\n',
    );
    assert.deepEqual(debianMirrors(etc), {
      archive: 'http://mirror.example/debian',
      security: 'http://mirror.example/debian-security',
    });
    rmSync(join(etc, 'sources.list.d', 'c-debian.sources'));
    assert.throws(() => debianMirrors(etc), /no Debian archive .* set ENBI_DEBIAN_MIRROR/);
  } finally {
    rmSync(etc, { recursive: true, force: true });
  }
});

test('tar: the same entries give the same bytes; parents added and sorted; long paths and link targets readable by tar', () => {
  const long = `app/node_modules/${'x'.repeat(120)}/${'y'.repeat(110)}.js`;
  const entries: Entry[] = [
    { type: 'file', path: 'usr/bin/tool', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
    { type: 'symlink', path: 'bin/link', target: `/${'t'.repeat(130)}` },
    { type: 'file', path: long, data: Buffer.from('long'), mode: 0o644 },
  ];
  const a = tar(normalize(entries), 0);
  assert.ok(a.equals(tar(normalize([...entries].reverse()), 0)), 'order of the input does not matter');
  const listed = execFileSync('tar', ['-tvf', '-'], { input: a, encoding: 'utf8' }).trim().split('\n');
  const names = listed.map((l) => l.split(/\s+/).slice(5).join(' '));
  assert.deepEqual(names.slice(0, 2), ['app/', 'app/node_modules/']);
  assert.ok(names.includes(long), 'PAX path');
  assert.ok(names.includes(`bin/link -> /${'t'.repeat(130)}`), 'PAX linkpath');
  assert.ok(
    listed.every((l) => l.includes('root/root') && l.includes('1970-01-01')),
    listed.join('\n'),
  );
  const img = (t: number) =>
    platformImage(entries, { architecture: 'amd64', config: { Env: [] }, mtime: t, labels: {} });
  assert.equal(img(0).manifest.digest, img(0).manifest.digest);
  assert.notEqual(img(0).manifest.digest, img(1).manifest.digest, 'SOURCE_DATE_EPOCH is in the layer');
});

test('ELF: the loader and libraries a binary needs are read from its bytes; missing ones are named', () => {
  const node = readFileSync(process.execPath);
  const elf = readElf(node, process.execPath);
  assert.ok(elf.needed.includes('libc.so.6'), elf.needed.join(' '));
  assert.match(elf.interpreter ?? '', /^\/lib.*\/ld-linux-(x86-64|aarch64)\.so\.[12]$/);
  const map = new Map<string, Entry>([
    ['nodejs/bin/node', { type: 'file', path: 'nodejs/bin/node', data: node, mode: 0o755 }],
  ]);
  const missing = missingLibraries(map, ['nodejs/bin/node'], 'x86_64-linux-gnu');
  assert.ok(
    missing.some((m) => m === 'nodejs/bin/node: needs libc.so.6, which no package of the image holds'),
    missing.join('\n'),
  );
  assert.ok(missing.some((m) => /its loader .* is not in the image/.test(m)));
  assert.throws(() => readElf(Buffer.from('#!/bin/sh\n'.padEnd(100)), 'script'), /not an ELF file/);
});
