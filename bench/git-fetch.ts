// Incremental fetch cost of the Git source (isomorphic-git, src/source/git.ts) against native git, both
// talking to the same loopback smart-HTTP server (git http-backend) serving a repository of realistic
// manifests with some history. Prints figures; asserts nothing.
//
//   node bench/git-fetch.ts            (REPS=7 FILES=2000 HISTORY=30 to change the shape)
import * as fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import git from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import { analyzeSource } from '../src/pipeline/analyze.ts';
import { FileScanCache } from '../src/pipeline/file-scans.ts';
import { repoDirFor, syncGitSource } from '../src/source/git.ts';
import { type FileMap, gitEnv, runGit, startGitServer } from '../test/support/git-server.ts';

const REPS = Number(process.env.REPS ?? 7);
const COLD_REPS = Number(process.env.COLD_REPS ?? 3);
const FILES = Number(process.env.FILES ?? 2000);
const HISTORY = Number(process.env.HISTORY ?? 30);

// Deterministic pseudo-random numbers, so every run builds the same repository.
let seed = 42;
function rand(n: number): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
}
const hex = (len: number): string => Array.from({ length: len }, () => '0123456789abcdef'[rand(16)]).join('');

const TEAMS = ['payments', 'search', 'identity', 'catalog', 'shipping', 'ads', 'infra', 'data', 'mobile', 'web'];
const KINDS = ['deployment', 'service', 'configmap', 'cronjob'] as const;

function manifest(team: string, app: string, kind: (typeof KINDS)[number], rev: string): string {
  const labels = `app.kubernetes.io/name: ${app}\n    app.kubernetes.io/part-of: ${team}\n    app.kubernetes.io/managed-by: enbi`;
  switch (kind) {
    case 'deployment':
      return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${app}
  namespace: ${team}
  labels:
    ${labels}
spec:
  replicas: ${1 + rand(5)}
  selector:
    matchLabels: { app.kubernetes.io/name: ${app} }
  template:
    metadata:
      labels: { app.kubernetes.io/name: ${app} }
      annotations:
        enbi.hrzn.ee/flake: "git+https://git.example.org/${team}/${app}.git?rev=${rev}#image"
    spec:
      containers:
        - name: ${app}
          image: registry.local/${team}/${app}:${rev.slice(0, 12)}
          imagePullPolicy: IfNotPresent
          ports: [{ containerPort: ${8000 + rand(1000)} }]
          resources:
            requests: { cpu: ${50 + rand(400)}m, memory: ${64 + rand(512)}Mi }
            limits: { memory: ${256 + rand(1024)}Mi }
          env:
            - { name: LOG_LEVEL, value: info }
            - { name: TEAM, value: ${team} }
`;
    case 'service':
      return `apiVersion: v1
kind: Service
metadata:
  name: ${app}
  namespace: ${team}
  labels:
    ${labels}
spec:
  selector: { app.kubernetes.io/name: ${app} }
  ports: [{ port: 80, targetPort: ${8000 + rand(1000)} }]
`;
    case 'configmap':
      return `apiVersion: v1
kind: ConfigMap
metadata:
  name: ${app}-config
  namespace: ${team}
data:
  settings.json: |
    {"feature_${hex(6)}": ${rand(2) === 1}, "timeout_ms": ${rand(10000)}, "endpoint": "https://${app}.${team}.svc"}
`;
    case 'cronjob':
      return `apiVersion: batch/v1
kind: CronJob
metadata:
  name: ${app}-nightly
  namespace: ${team}
spec:
  schedule: "${rand(60)} ${rand(24)} * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            enbi.hrzn.ee/flake: "git+https://git.example.org/${team}/${app}.git?ref=main#image"
        spec:
          restartPolicy: OnFailure
          containers:
            - name: ${app}
              image: registry.local/${team}/${app}:${rev}
`;
  }
}

const paths: string[] = [];
const meta = new Map<string, { team: string; app: string; kind: (typeof KINDS)[number] }>();
for (let i = 0; paths.length < FILES; i++) {
  const team = TEAMS[i % TEAMS.length]!;
  const app = `${team}-svc-${Math.floor(i / TEAMS.length)}`;
  for (const kind of KINDS) {
    if (paths.length >= FILES) break;
    const path = `apps/${team}/${app}/${kind}.yaml`;
    paths.push(path);
    meta.set(path, { team, app, kind });
  }
}
const render = (path: string): string => {
  const m = meta.get(path)!;
  return manifest(m.team, m.app, m.kind, hex(40));
};
/** A typical change: a few image bumps. */
function bump(n: number): FileMap {
  const files: FileMap = {};
  for (let i = 0; i < n; i++) {
    const p = paths[rand(paths.length)]!;
    files[p] = render(p);
  }
  return files;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const ms = (x: number): string => `${x.toFixed(1)} ms`;
async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const work = await mkdtemp(join(tmpdir(), 'enbi-bench-git-'));
const env = gitEnv(work);
const server = await startGitServer();
try {
  const t0 = performance.now();
  const initial: FileMap = {};
  for (const p of paths) initial[p] = render(p);
  await server.createRepo('manifests', initial);
  for (let i = 0; i < HISTORY; i++) await server.commit('manifests', bump(20));
  const url = server.url('manifests');
  const packBytes = await server.git('manifests', ['count-objects', '-vH']);
  console.log(
    `repository: ${FILES} YAML files, ${HISTORY + 1} commits (${packBytes.split('\n').find((l) => l.startsWith('size-pack'))}), built in ${ms(performance.now() - t0)}`,
  );
  console.log(
    `machine: ${availableParallelism()} cores, node ${process.version}, ${(await runGit(['--version'], { env })).trim()}, isomorphic-git over loopback HTTP`,
  );

  // Cold clones: a fresh cache every time.
  const coldIso: number[] = [];
  const coldNative: number[] = [];
  let coldIsoBytes = 0;
  let coldNativeBytes = 0;
  for (let i = 0; i < COLD_REPS; i++) {
    const cacheDir = join(work, `cold-iso-${i}`);
    server.resetStats();
    coldIso.push(await time(() => syncGitSource({ url, cacheDir, ref: 'main' })));
    coldIsoBytes = server.stats.bytesOut;
    const dir = join(work, `cold-native-${i}.git`);
    server.resetStats();
    coldNative.push(
      await time(() =>
        runGit(['clone', '--quiet', '--bare', '--depth', '1', '--single-branch', '--branch', 'main', url, dir], {
          env,
        }),
      ),
    );
    coldNativeBytes = server.stats.bytesOut;
    await rm(cacheDir, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }

  // Incremental: both sides start from a synced copy, then fetch the same new commit each repetition.
  const cacheDir = join(work, 'iso');
  const nativeDir = join(work, 'native.git');
  // The controller's path: sync, then analyse with the parses kept by blob id.
  const scans = new FileScanCache();
  analyzeSource((await syncGitSource({ url, cacheDir, ref: 'main' })).files, { cache: scans });
  // A second cache, fetched with the bare isomorphic-git call syncGitSource makes, without reading files.
  const fetchOnlyDir = join(work, 'iso-fetch-only');
  await syncGitSource({ url, cacheDir: fetchOnlyDir, ref: 'main' });
  const fetchOnlyGitdir = repoDirFor(fetchOnlyDir, url);
  const fetchCache = {};
  await runGit(['clone', '--quiet', '--bare', '--depth', '1', '--single-branch', '--branch', 'main', url, nativeDir], {
    env,
  });
  const incIso: number[] = [];
  const incNative: number[] = [];
  const noop: number[] = [];
  const incFetchOnly: number[] = [];
  const blobsRead: number[] = [];
  const parsed: number[] = [];
  const fullParse: number[] = [];
  const isoBytes: number[] = [];
  const nativeBytes: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const head = await server.commit('manifests', {
      ...bump(5),
      [`apps/new/bench-${i}.yaml`]: manifest('new', `bench-${i}`, 'deployment', hex(40)),
    });
    const iso = async (): Promise<void> => {
      server.resetStats();
      let files = 0;
      incIso.push(
        await time(async () => {
          const snap = await syncGitSource({ url, cacheDir, ref: 'main' });
          if (snap.commit !== head) throw new Error(`isomorphic-git fetched ${snap.commit}, expected ${head}`);
          files = snap.files.length;
          blobsRead.push(snap.blobsRead);
          analyzeSource(snap.files, { cache: scans });
          parsed.push(scans.parsed);
        }),
      );
      isoBytes.push(server.stats.bytesOut);
      if (files !== FILES + i + 1) throw new Error(`expected ${FILES + i + 1} files, got ${files}`);
    };
    const native = async (): Promise<void> => {
      server.resetStats();
      incNative.push(
        await time(() =>
          runGit(['fetch', '--quiet', '--depth', '1', 'origin', '+refs/heads/main:refs/heads/main'], {
            cwd: nativeDir,
            env,
          }),
        ),
      );
      nativeBytes.push(server.stats.bytesOut);
      const got = await runGit(['rev-parse', 'refs/heads/main'], { cwd: nativeDir, env });
      if (got !== head) throw new Error(`native git fetched ${got}, expected ${head}`);
    };
    // Alternate who goes first, so neither always meets a warm server.
    if (i % 2 === 0) {
      await iso();
      await native();
    } else {
      await native();
      await iso();
    }
    const fetchOnly = await time(() =>
      git.fetch({
        fs,
        http,
        cache: fetchCache,
        gitdir: fetchOnlyGitdir,
        url,
        ref: 'refs/remotes/origin/main',
        remoteRef: 'main',
        singleBranch: true,
        tags: false,
      }),
    );
    incFetchOnly.push(fetchOnly);
    // What every sync cost before blob-keyed parses: all files parsed again (reading them is not counted).
    const all = (await syncGitSource({ url, cacheDir, ref: 'main' })).files;
    fullParse.push(await time(async () => void analyzeSource(all)));
    // The same sync again with nothing new: the fixed cost of negotiating and reading every manifest.
    noop.push(await time(() => syncGitSource({ url, cacheDir, ref: 'main' })));
  }

  const kb = (b: number): string => `${(b / 1024).toFixed(1)} KiB`;
  console.log('');
  console.log(`cold clone (depth 1), median of ${COLD_REPS}:`);
  console.log(
    `  isomorphic-git syncGitSource : ${ms(median(coldIso))}  (${kb(coldIsoBytes)} served; includes reading ${FILES} files)`,
  );
  console.log(`  native git clone --depth 1   : ${ms(median(coldNative))}  (${kb(coldNativeBytes)} served)`);
  console.log(`  ratio isomorphic/native      : ${(median(coldIso) / median(coldNative)).toFixed(2)}`);
  console.log(`incremental fetch after one new commit (6 files changed), median of ${REPS}:`);
  console.log(
    `  syncGitSource + analysis     : ${ms(median(incIso))}  (${kb(median(isoBytes))} served; read ${median(blobsRead)} blobs, parsed ${median(parsed)} files of ${FILES}+)`,
  );
  console.log(`  native git fetch --depth 1   : ${ms(median(incNative))}  (${kb(median(nativeBytes))} served)`);
  console.log(`  ratio isomorphic/native      : ${(median(incIso) / median(incNative)).toFixed(2)}`);
  console.log(
    `  isomorphic-git fetch only    : ${ms(median(incFetchOnly))}  (the git.fetch call syncGitSource makes, no file reading)`,
  );
  console.log(`  ratio fetch-only/native      : ${(median(incFetchOnly) / median(incNative)).toFixed(2)}`);
  console.log(
    `  syncGitSource, nothing new   : ${ms(median(noop))}  (negotiation only: the same commit is not read again)`,
  );
  console.log(`  for scale: parsing all ${FILES}+ files again, as each sync did before: ${ms(median(fullParse))}`);
  console.log(`  all isomorphic runs (ms)     : ${incIso.map((x) => x.toFixed(0)).join(' ')}`);
  console.log(`  all native runs (ms)         : ${incNative.map((x) => x.toFixed(0)).join(' ')}`);
} finally {
  await server.close();
  await rm(work, { recursive: true, force: true });
}
