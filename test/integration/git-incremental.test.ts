// The Git source reads only what a commit changed, and treats paths as the directory source does
// (symlinks inside followed, outside refused; node_modules/ and hidden directories skipped; invalid UTF-8
// named; --path confined). Against a real smart-HTTP Git server; no cluster.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { analyzeSource } from '../../src/pipeline/analyze.ts';
import { FileScanCache } from '../../src/pipeline/file-scans.ts';
import { GitSourceError, syncGitSource } from '../../src/source/git.ts';
import { deployment, REV_A, yamlDocs } from '../support/fixtures.ts';
import { type FileMap, type GitServer, startGitServer } from '../support/git-server.ts';

let server: GitServer;
const dirs: string[] = [];
const freshCache = async () => {
  const d = await mkdtemp(join(tmpdir(), 'enbi-git-inc-'));
  dirs.push(d);
  return d;
};
before(async () => {
  server = await startGitServer();
});
after(async () => {
  await server.close();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const app = (i: number, tag = 'v1') =>
  yamlDocs(
    deployment(`app${i}`, {
      namespace: `team${i % 10}`,
      flake: `github:acme/app${i}/${REV_A}#image`,
      image: `registry.local/app${i}:${tag}`,
    }),
  );

test('a commit changing 6 of 300 files reads and parses only those 6', async () => {
  const files: FileMap = {};
  for (let i = 0; i < 300; i++) files[`apps/team${i % 10}/app${i}.yaml`] = app(i);
  await server.createRepo('inc', files);
  const url = server.url('inc');
  const cacheDir = await freshCache();
  const scans = new FileScanCache();
  const first = await syncGitSource({ url, cacheDir });
  assert.equal(first.blobsRead, 300);
  assert.equal(analyzeSource(first.files, { cache: scans }).workloads.length, 300);
  assert.equal(scans.parsed, 300);

  const change: FileMap = {};
  for (const i of [3, 17, 42, 99, 150]) change[`apps/team${i % 10}/app${i}.yaml`] = app(i, 'v2');
  change['apps/team0/new.yaml'] = app(1000);
  await server.commit('inc', change);
  const second = await syncGitSource({ url, cacheDir });
  assert.equal(second.blobsRead, 6, 'only the changed blobs are read');
  assert.ok(second.files.every((f) => f.id !== undefined && f.id.length === 40));
  const analysis = analyzeSource(second.files, { cache: scans });
  assert.equal(scans.parsed, 6, 'only the changed files are parsed');
  assert.equal(analysis.workloads.length, 301);
  const images = new Map(analysis.workloads.map((w) => [w.workload.name, w.workload.containers[0]!.image]));
  assert.equal(images.get('app42'), 'registry.local/app42:v2');
  assert.equal(images.get('app43'), 'registry.local/app43:v1');

  // Same commit again: nothing read at all.
  assert.equal((await syncGitSource({ url, cacheDir })).blobsRead, 0);
});

test('symlinks are followed inside the repository and refused outside it; node_modules and hidden directories are skipped', async () => {
  await server.createRepo('links', {
    'base/web.yaml': app(1),
    'apps/linked.yaml': { symlink: '../base/web.yaml' },
    'apps/shared': { symlink: '../base' },
    'apps/escape.yaml': { symlink: '../../etc/passwd.yaml' },
    'apps/absolute.yaml': { symlink: '/etc/hosts.yaml' },
    'node_modules/pkg/deploy.yaml': app(2),
    '.github/workflows/ci.yml': 'on: push\njobs: {}\n',
    'apps/.hidden/x.yaml': app(3),
  });
  const snap = await syncGitSource({ url: server.url('links'), cacheDir: await freshCache(), path: 'apps' });
  assert.deepEqual(
    snap.files.map((f) => f.path),
    ['absolute.yaml', 'escape.yaml', 'linked.yaml', 'shared/web.yaml'],
  );
  assert.equal(snap.files.find((f) => f.path === 'linked.yaml')?.text, app(1));
  const analysis = analyzeSource(snap.files);
  assert.deepEqual(
    analysis.warnings.map((w) => `${w.file}: ${w.message}`),
    [
      'absolute.yaml: symlink leads out of the source: not read',
      'escape.yaml: symlink leads out of the source: not read',
    ],
  );
  assert.deepEqual(analysis.problems, []);
  assert.equal(analysis.workloads.length, 2);
});

test('invalid UTF-8 is a problem naming the file; --path cannot leave the repository', async () => {
  await server.createRepo('bytes', {
    'ok.yaml': app(1),
    'latin1.yaml': Buffer.from('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xe9}\n', 'latin1'),
  });
  const snap = await syncGitSource({ url: server.url('bytes'), cacheDir: await freshCache() });
  const analysis = analyzeSource(snap.files);
  assert.deepEqual(
    analysis.problems.map((p) => `${p.file}: ${p.message}`),
    ['latin1.yaml: not valid UTF-8 (byte 51): save the file as UTF-8'],
  );
  assert.equal(analysis.workloads.length, 1);
  await assert.rejects(
    syncGitSource({ url: server.url('bytes'), cacheDir: await freshCache(), path: '../..' }),
    (err: unknown) => err instanceof GitSourceError && /leads out of the source/.test(err.message),
  );
});
