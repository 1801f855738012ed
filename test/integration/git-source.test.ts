// The Git source against a real smart-HTTP server (git http-backend behind a loopback Node server):
// clone, incremental fetch, sub-paths, refs, default branch, auth, unreachable servers, remote heads.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GitSourceError, repoDirFor, resolveRemoteRef, syncGitSource } from '../../src/source/git.ts';
import { closedPortUrl, type GitServer, startGitServer } from '../support/git-server.ts';

const DEPLOY = (name: string): string =>
  `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${name}\nspec:\n  template:\n    spec:\n      containers:\n        - name: ${name}\n          image: registry.local/${name}:v1\n`;

const tempDirs: string[] = [];
async function freshCache(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-git-cache-'));
  tempDirs.push(dir);
  return dir;
}

function paths(snapshot: { files: { path: string }[] }): string[] {
  return snapshot.files.map((f) => f.path);
}

let server: GitServer;

before(async () => {
  server = await startGitServer();
});

after(async () => {
  await server.close();
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('clone and fetch', () => {
  test('first sync clones into the cache and returns only manifest files at the branch head', async () => {
    const head = await server.createRepo('clone', {
      'apps/web/deployment.yaml': DEPLOY('web'),
      'apps/web/flake.lock': '{"nodes":{},"root":"root","version":7}\n',
      'apps/api/service.yml': 'apiVersion: v1\nkind: Service\nmetadata: { name: api }\n',
      'config.json': '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}\n',
      'README.md': '# not a manifest\n',
      'src/main.go': 'package main\n',
      '.github/workflows/ci.yaml': 'on: push\n',
    });
    const cacheDir = await freshCache();
    const snap = await syncGitSource({ url: server.url('clone'), cacheDir });
    assert.equal(snap.commit, head);
    assert.equal(snap.ref, 'main');
    assert.deepEqual(paths(snap), [
      'apps/api/service.yml',
      'apps/web/deployment.yaml',
      'apps/web/flake.lock',
      'config.json',
    ]);
    assert.equal(snap.files.find((f) => f.path === 'apps/web/deployment.yaml')?.text, DEPLOY('web'));
    // A bare clone, no working copy.
    const gitdir = repoDirFor(cacheDir, server.url('clone'));
    assert.ok(existsSync(join(gitdir, 'objects')), 'bare clone in the cache');
    assert.ok(!existsSync(join(gitdir, 'apps')), 'no files checked out');
  });

  test('second sync after a new commit fetches only what is new', async () => {
    const big = randomBytes(1_500_000); // incompressible, unrelated to the manifests
    const old = randomBytes(1_000_000);
    await server.createRepo('incremental', { 'apps/a.yaml': DEPLOY('a'), 'history/old.bin': old });
    // The old blob leaves the tree: a shallow clone must not download it.
    const first = await server.commit('incremental', {
      'history/old.bin': null,
      'assets/big.bin': big,
      'apps/b.yaml': DEPLOY('b'),
    });
    const cacheDir = await freshCache();
    const url = server.url('incremental');

    server.resetStats();
    const s1 = await syncGitSource({ url, cacheDir });
    const firstBytes = server.stats.bytesOut;
    assert.equal(s1.commit, first);
    assert.deepEqual(paths(s1), ['apps/a.yaml', 'apps/b.yaml']);
    assert.ok(firstBytes > big.length, `the first sync carries the tip tree (${firstBytes} bytes)`);
    assert.ok(
      firstBytes < big.length + old.length / 2,
      `the first sync is shallow: no history blob (${firstBytes} bytes)`,
    );

    const second = await server.commit('incremental', { 'apps/c.yaml': DEPLOY('c'), 'apps/a.yaml': DEPLOY('a2') });
    server.resetStats();
    const s2 = await syncGitSource({ url, cacheDir });
    const secondBytes = server.stats.bytesOut;
    assert.equal(s2.commit, second);
    assert.deepEqual(paths(s2), ['apps/a.yaml', 'apps/b.yaml', 'apps/c.yaml']);
    assert.equal(s2.files.find((f) => f.path === 'apps/a.yaml')?.text, DEPLOY('a2'));
    assert.ok(
      secondBytes < 20_000,
      `the second sync transfers only the new commit (${secondBytes} bytes, first was ${firstBytes})`,
    );
    assert.ok(secondBytes * 50 < firstBytes, `second ${secondBytes} bytes vs first ${firstBytes}`);

    // Several commits between syncs, including a deletion.
    await server.commit('incremental', { 'apps/d.yaml': DEPLOY('d') });
    const fourth = await server.commit('incremental', { 'apps/b.yaml': null });
    server.resetStats();
    const s3 = await syncGitSource({ url, cacheDir });
    assert.equal(s3.commit, fourth);
    assert.deepEqual(paths(s3), ['apps/a.yaml', 'apps/c.yaml', 'apps/d.yaml']);
    assert.ok(server.stats.bytesOut < 20_000, `third sync: ${server.stats.bytesOut} bytes`);

    // Nothing new: the same commit again, and (almost) nothing transferred.
    server.resetStats();
    const s4 = await syncGitSource({ url, cacheDir });
    assert.equal(s4.commit, fourth);
    assert.ok(server.stats.bytesOut < 5_000, `no-op sync: ${server.stats.bytesOut} bytes`);
  });

  test('a branch rewritten on the server (force push) still syncs to its new head', async () => {
    const base = await server.createRepo('rewrite', { 'apps/a.yaml': DEPLOY('a') });
    await server.commit('rewrite', { 'apps/old.yaml': DEPLOY('old') });
    const cacheDir = await freshCache();
    const url = server.url('rewrite');
    assert.deepEqual(paths(await syncGitSource({ url, cacheDir })), ['apps/a.yaml', 'apps/old.yaml']);
    // Rewrite main: a new commit on top of the base instead of the synced head.
    await server.commit('rewrite', { 'apps/new.yaml': DEPLOY('new') }, { branch: 'tmp', from: base });
    await server.git('rewrite', ['update-ref', 'refs/heads/main', 'refs/heads/tmp']);
    const rewritten = await server.git('rewrite', ['rev-parse', 'main']);
    const snap = await syncGitSource({ url, cacheDir });
    assert.equal(snap.commit, rewritten);
    assert.deepEqual(paths(snap), ['apps/a.yaml', 'apps/new.yaml']);
  });
});

describe('sub-path', () => {
  let url: string;
  before(async () => {
    await server.createRepo('subpath', {
      'apps/web/deployment.yaml': DEPLOY('web'),
      'apps/api/deployment.yaml': DEPLOY('api'),
      'apps-legacy/old.yaml': DEPLOY('old'),
      'infra/cluster.yaml': DEPLOY('infra'),
      'root.yaml': DEPLOY('root'),
    });
    url = server.url('subpath');
  });

  test('path returns only files below it, relative to it', async () => {
    const snap = await syncGitSource({ url, cacheDir: await freshCache(), path: 'apps' });
    // Not "apps-legacy" (a prefix of the name, not of the path), not files outside.
    assert.deepEqual(paths(snap), ['api/deployment.yaml', 'web/deployment.yaml']);
    assert.equal(snap.files[0]?.text, DEPLOY('api'));
  });

  test('leading and trailing slashes and nested paths work', async () => {
    const cacheDir = await freshCache();
    assert.deepEqual(paths(await syncGitSource({ url, cacheDir, path: '/apps/' })), [
      'api/deployment.yaml',
      'web/deployment.yaml',
    ]);
    assert.deepEqual(paths(await syncGitSource({ url, cacheDir, path: 'apps/web' })), ['deployment.yaml']);
  });

  test('a path that does not exist is a clear error', async () => {
    await assert.rejects(syncGitSource({ url, cacheDir: await freshCache(), path: 'nope/apps' }), (err: unknown) => {
      assert.ok(err instanceof GitSourceError, String(err));
      assert.match(err.message, /path "nope\/apps" does not exist at commit [0-9a-f]{12}/);
      return true;
    });
  });
});

describe('refs', () => {
  let url: string;
  let mainHead: string;
  let featureHead: string;
  let v1Commit: string;
  before(async () => {
    v1Commit = await server.createRepo('refs', { 'apps/app.yaml': DEPLOY('v1') });
    await server.tag('refs', 'v1', 'main');
    mainHead = await server.commit('refs', { 'apps/app.yaml': DEPLOY('v2'), 'apps/extra.yaml': DEPLOY('extra') });
    await server.tag('refs', 'v2', 'main', 'release v2'); // annotated
    featureHead = await server.commit(
      'refs',
      { 'apps/feature.yaml': DEPLOY('feature') },
      { branch: 'feature', from: v1Commit },
    );
    url = server.url('refs');
  });

  test('a branch other than the default', async () => {
    const snap = await syncGitSource({ url, cacheDir: await freshCache(), ref: 'feature' });
    assert.equal(snap.commit, featureHead);
    assert.equal(snap.ref, 'feature');
    assert.deepEqual(paths(snap), ['apps/app.yaml', 'apps/feature.yaml']);
    assert.equal(snap.files[0]?.text, DEPLOY('v1'));
  });

  test('a lightweight tag', async () => {
    const snap = await syncGitSource({ url, cacheDir: await freshCache(), ref: 'v1' });
    assert.equal(snap.commit, v1Commit);
    assert.deepEqual(paths(snap), ['apps/app.yaml']);
    assert.equal(snap.files[0]?.text, DEPLOY('v1'));
  });

  test('an annotated tag resolves to its commit, not the tag object', async () => {
    const tagObject = await server.git('refs', ['rev-parse', 'refs/tags/v2']);
    assert.notEqual(tagObject, mainHead);
    const snap = await syncGitSource({ url, cacheDir: await freshCache(), ref: 'v2' });
    assert.equal(snap.commit, mainHead);
    assert.deepEqual(paths(snap), ['apps/app.yaml', 'apps/extra.yaml']);
  });

  test('branches and tags of one URL share a cache', async () => {
    const cacheDir = await freshCache();
    assert.equal((await syncGitSource({ url, cacheDir, ref: 'main' })).commit, mainHead);
    assert.equal((await syncGitSource({ url, cacheDir, ref: 'feature' })).commit, featureHead);
    assert.equal((await syncGitSource({ url, cacheDir, ref: 'v1' })).commit, v1Commit);
    assert.equal((await syncGitSource({ url, cacheDir, ref: 'main' })).commit, mainHead);
  });

  test('an unknown ref is a clear error', async () => {
    await assert.rejects(
      syncGitSource({ url, cacheDir: await freshCache(), ref: 'no-such-branch' }),
      (err: unknown) => {
        assert.ok(err instanceof GitSourceError, String(err));
        assert.match(err.message, /ref "no-such-branch" not found/);
        return true;
      },
    );
  });

  test('the default branch comes from the server HEAD', async () => {
    // HEAD names "trunk"; a "main" branch exists too, with other files.
    const trunkHead = await server.createRepo(
      'default-branch',
      { 'trunk.yaml': DEPLOY('trunk') },
      { defaultBranch: 'trunk' },
    );
    await server.commit('default-branch', { 'main.yaml': DEPLOY('main') }, { branch: 'main' });
    const snap = await syncGitSource({ url: server.url('default-branch'), cacheDir: await freshCache() });
    assert.equal(snap.ref, 'trunk');
    assert.equal(snap.commit, trunkHead);
    assert.deepEqual(paths(snap), ['trunk.yaml']);
  });
});

describe('auth', () => {
  const credentials = { username: 'enbi', password: 's3cret' };
  let authServer: GitServer;
  let url: string;
  let head: string;
  before(async () => {
    authServer = await startGitServer({ auth: credentials });
    head = await authServer.createRepo('private', { 'apps/app.yaml': DEPLOY('private') });
    url = authServer.url('private');
  });
  after(async () => {
    await authServer.close();
  });

  test('the right credentials work, for the default branch and a named one', async () => {
    const snap = await syncGitSource({ url, cacheDir: await freshCache(), auth: credentials });
    assert.equal(snap.commit, head);
    assert.deepEqual(paths(snap), ['apps/app.yaml']);
    const named = await syncGitSource({ url, cacheDir: await freshCache(), auth: credentials, ref: 'main' });
    assert.equal(named.commit, head);
    assert.equal(await resolveRemoteRef(url, 'main', credentials), head);
  });

  for (const [label, auth] of [
    ['wrong password', { username: 'enbi', password: 'nope' }],
    ['wrong user', { username: 'someone', password: 's3cret' }],
    ['no credentials', undefined],
  ] as const) {
    for (const ref of [undefined, 'main']) {
      test(`${label} (${ref === undefined ? 'default branch' : `ref ${ref}`}) is a GitSourceError about credentials`, async () => {
        authServer.resetStats();
        await assert.rejects(
          syncGitSource({
            url,
            cacheDir: await freshCache(),
            ...(auth !== undefined ? { auth } : {}),
            ...(ref !== undefined ? { ref } : {}),
          }),
          (err: unknown) => {
            assert.ok(err instanceof GitSourceError, `${(err as Error).name}: ${(err as Error).message}`);
            assert.match(err.message, /credentials/);
            assert.ok(err.message.includes(url), err.message);
            return true;
          },
        );
        assert.ok(authServer.stats.unauthorized > 0, 'the server refused the request');
      });
    }
  }

  test('resolveRemoteRef without credentials is a GitSourceError about credentials', async () => {
    await assert.rejects(resolveRemoteRef(url, 'main'), (err: unknown) => {
      assert.ok(err instanceof GitSourceError, String(err));
      assert.match(err.message, /credentials/);
      return true;
    });
  });
});

describe('unreachable server', () => {
  test('a closed port is a GitSourceError saying the server cannot be reached', async () => {
    const url = await closedPortUrl('/repo.git');
    for (const ref of [undefined, 'main']) {
      await assert.rejects(
        syncGitSource({ url, cacheDir: await freshCache(), ...(ref !== undefined ? { ref } : {}) }),
        (err: unknown) => {
          assert.ok(err instanceof GitSourceError, String(err));
          assert.match(err.message, /cannot reach/);
          assert.ok(err.message.includes(url), err.message);
          return true;
        },
      );
    }
  });

  test('a server that went down after a sync', async () => {
    const down = await startGitServer();
    await down.createRepo('gone', { 'a.yaml': DEPLOY('a') });
    const url = down.url('gone');
    const cacheDir = await freshCache();
    try {
      await syncGitSource({ url, cacheDir });
    } finally {
      await down.close();
    }
    await assert.rejects(
      syncGitSource({ url, cacheDir }),
      (err: unknown) => err instanceof GitSourceError && /cannot reach/.test(err.message),
    );
  });

  test('a server that hangs mid-fetch or never answers fails the sync after the idle timeout; the next sync works', async () => {
    const stuck = await startGitServer();
    try {
      await stuck.createRepo('stuck', { 'a.yaml': DEPLOY('a') });
      const url = stuck.url('stuck');
      const cacheDir = await freshCache();
      await syncGitSource({ url, cacheDir, ref: 'main' });
      await stuck.commit('stuck', { 'b.yaml': DEPLOY('b') }, { branch: 'main' });
      for (const mode of ['mid-pack', 'silent'] as const) {
        stuck.hang(mode);
        const t0 = Date.now();
        await assert.rejects(syncGitSource({ url, cacheDir, ref: 'main', idleTimeoutMs: 800 }), (err: unknown) => {
          assert.ok(err instanceof GitSourceError, String(err));
          assert.match(err.message, /POST .*git-upload-pack: no answer for 1 s \(source.timeoutSeconds\)/);
          return true;
        });
        const ms = Date.now() - t0;
        assert.ok(ms >= 700 && ms < 5000, `${mode}: failed after ${ms} ms`);
        stuck.hang('off');
      }
      // The cache is intact: the next sync fetches the new commit.
      assert.deepEqual(paths(await syncGitSource({ url, cacheDir, ref: 'main', idleTimeoutMs: 800 })).sort(), [
        'a.yaml',
        'b.yaml',
      ]);
    } finally {
      stuck.hang('off');
      await stuck.close();
    }
  });
});

describe('resolveRemoteRef', () => {
  test('returns what a branch, a tag and the default branch point to now', async () => {
    const first = await server.createRepo('heads', { 'a.yaml': DEPLOY('a') });
    const url = server.url('heads');
    assert.equal(await resolveRemoteRef(url, 'main'), first);
    await server.tag('heads', 'v1', 'main', 'annotated v1');
    const second = await server.commit('heads', { 'b.yaml': DEPLOY('b') });
    const other = await server.commit('heads', { 'c.yaml': DEPLOY('c') }, { branch: 'other', from: first });
    assert.equal(await resolveRemoteRef(url, 'main'), second);
    assert.equal(await resolveRemoteRef(url, undefined), second);
    assert.equal(await resolveRemoteRef(url, 'other'), other);
    assert.equal(await resolveRemoteRef(url, 'v1'), first, 'an annotated tag resolves to its commit');
    assert.equal(await resolveRemoteRef(url, 'missing'), undefined);
    // Agrees with what a sync fetches.
    assert.equal(
      (await syncGitSource({ url, cacheDir: await freshCache() })).commit,
      await resolveRemoteRef(url, undefined),
    );
  });

  test('an unreachable server is a GitSourceError', async () => {
    await assert.rejects(
      resolveRemoteRef(await closedPortUrl(), 'main'),
      (err: unknown) => err instanceof GitSourceError && /cannot reach/.test(err.message),
    );
  });
});
