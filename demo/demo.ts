// `npm start`: enbi's main job on this machine, with nothing to bring but root. It starts a local Kubernetes
// (one node: a real kubelet and containerd), serves an app flake and its manifests from a local Git server,
// installs enbi from deploy/ (the controller and the node agent as pods, through a kustomize overlay),
// applies the app as a GitOps tool would, and shows live what enbi does until the app's pod runs the image
// Nix built in the cluster. `--push` commits a new app revision and watches again; `--down` removes it all.
import { execFileSync, spawn } from 'node:child_process';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
} from '@kubernetes/client-node';
import { down, up } from '../test/cluster/cluster.ts';
import { cacheDir } from '../test/cluster/paths.ts';
import { isAlive, startTimeOf } from '../test/cluster/proc.ts';
import { readState } from '../test/cluster/state.ts';
import { importBuildImages } from '../test/support/build-images.ts';
import { createFixtureFlake } from '../test/support/fixture-flake.ts';
import { startGitServer } from '../test/support/git-server.ts';
import { applyAll, INSTALL_NS, kustomizeBuild, waitInstalled, writeOverlay } from '../test/support/install.ts';
import { prereqs, runScript } from './prereqs.ts';
import { watchUntilRunning } from './watch.ts';
import { idleAppDeployment } from '../test/support/fixtures.ts';

const USAGE = `usage: npm start [-- --push | --down | --help]

  (no option)  start the demo: a local one-node Kubernetes, enbi installed from deploy/, an app whose image
               enbi builds with Nix in the cluster; ends when the app's pod runs it (about a minute once
               the parts are built; the first run builds them and says how long that takes)
  --push       commit a new revision of the app to the demo's Git server, announce it by webhook, apply it,
               and watch enbi build and run it
  --down       stop everything the demo started and remove its files
  -h, --help   this text

Runs as root (a kubelet and containerd). Environment: ENBI_DEMO_DIR (its files, default ~/.cache/enbi/demo),
ENBI_DEMO_RUN_DIR (the node's containerd socket, default /run/enbi-demo), ENBI_CACHE_DIR (cached binaries
and images, default ~/.cache/enbi).`;

const APP_NS = 'demo';
const APP = 'hello';
const NODE = 'enbi-demo-1';
/** The node's containerd socket and the directory the agent mounts (as a k3s user patches /run/k3s/containerd). */
const SOCKET_DIR = process.env.ENBI_DEMO_RUN_DIR ?? '/run/enbi-demo';
const demoDir = (): string => process.env.ENBI_DEMO_DIR ?? join(cacheDir(), 'demo');
const clusterDirOf = (): string => join(demoDir(), 'cluster');
const stateFile = (): string => join(demoDir(), 'demo.json');

interface DemoState {
  kubeconfig: string;
  gitPid: number;
  /** The pid's start time: a reused pid is never taken for the Git server. */
  gitStart: number;
  gitBase: string;
  secret: string;
  revisions: string[];
}

/** A failure the user can act on: printed without a stack trace, exit 1. */
class DemoError extends Error {}

const out = (line: string): void => void process.stdout.write(`${line}\n`);

/** Runs one long step: its title, a ticking clock on a terminal, then how long it took. */
async function step<T>(title: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const tty = process.stdout.isTTY === true;
  out(`▸ ${title}`);
  const tick = tty
    ? setInterval(() => process.stdout.write(`\r  … ${((Date.now() - t0) / 1000).toFixed(0)} s`), 1000)
    : undefined;
  try {
    const result = await fn();
    if (tty) process.stdout.write('\r\x1b[K');
    out(`  ✓ ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return result;
  } finally {
    if (tick !== undefined) clearInterval(tick);
  }
}

// The image's own command prints one line and exits; the demo's pod idles in it instead.
const appDeployment = (image: string, flakeUrl: string): V1Deployment =>
  idleAppDeployment({ name: APP, namespace: APP_NS, flakeUrl, image });

/** Commits a new app flake revision and the manifests naming it; returns the Deployment Git now declares. */
async function commitRevision(
  gitRoot: string,
  gitBase: string,
  n: number,
): Promise<{ deployment: V1Deployment; rev: string }> {
  // The repositories are written here and served by the demo's Git server process from the same directory.
  const writer = await startGitServer({ root: gitRoot });
  try {
    const flake = await createFixtureFlake(writer, 'app', {
      message: n === 1 ? 'hello from the enbi demo' : `hello from the enbi demo, push ${n - 1}`,
    });
    const deployment = appDeployment(
      `registry.local/hello:${flake.shortRev}`,
      `git+${gitBase}/app.git?rev=${flake.rev}`,
    );
    const files = { 'apps/hello.yaml': JSON.stringify(deployment, null, 2) };
    if (n === 1) await writer.createRepo('manifests', files, { message: 'the demo app' });
    else await writer.commit('manifests', files, { message: `the demo app, push ${n - 1}` });
    return { deployment, rev: flake.rev };
  } finally {
    await writer.close();
  }
}

function startGitProcess(gitRoot: string, host: string): Promise<{ pid: number; base: string }> {
  const log = join(demoDir(), 'git-server.log');
  const fd = openSync(log, 'w');
  const child = spawn(process.execPath, [new URL('./git-serve.ts', import.meta.url).pathname, gitRoot, host], {
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  child.unref();
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const poll = setInterval(() => {
      const m = /listening on (\S+)/.exec(readFileSync(log, 'utf8'));
      if (m !== null) {
        clearInterval(poll);
        resolve({ pid: child.pid!, base: m[1]! });
      } else if (Date.now() - t0 > 15_000 || child.exitCode !== null) {
        clearInterval(poll);
        reject(new DemoError(`the demo's Git server did not start: ${readFileSync(log, 'utf8')}`));
      }
    }, 100);
  });
}

async function applyApp(kc: KubeConfig, d: V1Deployment): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: APP_NS } } }).catch((e: { code?: number }) => {
    if (e.code !== 409) throw e;
  });
  const apps = kc.makeApiClient(AppsV1Api);
  await apps
    .replaceNamespacedDeployment({ name: APP, namespace: APP_NS, body: d })
    .catch(async (e: { code?: number }) => {
      if (e.code !== 404) throw e;
      await apps.createNamespacedDeployment({ namespace: APP_NS, body: d });
    });
}

/** Applies the app's Deployment as a GitOps tool would, then prints what enbi does until its pod runs. */
async function applyAndWatch(kc: KubeConfig, d: V1Deployment, t0: number): Promise<void> {
  const image = d.spec!.template.spec!.containers[0]!.image!;
  out(`▸ applying the app as Argo CD or Flux would: Deployment ${APP_NS}/${APP}, image ${image}`);
  out('▸ what enbi does (every change, as it happens):');
  const begin = () => applyApp(kc, d);
  const pods = await watchUntilRunning({
    kc,
    namespace: INSTALL_NS,
    appNamespace: APP_NS,
    images: [image],
    timeoutMs: 600_000,
    print: (l) => out(`  ${l}`),
    begin,
  });
  out('');
  out(`pods Running after ${((Date.now() - t0) / 1000).toFixed(0)} s:`);
  for (const p of pods) {
    out(
      `  ${APP_NS}/${p.name}  ${p.image}  on ${p.node}${p.build !== undefined ? `  built by NixBuild ${INSTALL_NS}/${p.build.metadata.name} (${p.build.status?.imageDigest ?? ''})` : ''}`,
    );
  }
  const kubeconfig = readState(clusterDirOf())?.kubeconfig ?? '';
  out('');
  out('Next:');
  out(`  export KUBECONFIG=${kubeconfig}`);
  out(`  kubectl get nixbuilds,jobs -n ${INSTALL_NS}     # what enbi built, and the Jobs that built it`);
  out(`  kubectl logs -n ${INSTALL_NS} -l app.kubernetes.io/component=controller   # the controller's decisions`);
  out('  npm start -- --push                           # push a new app revision and watch enbi build it');
  out('  npm start -- --down                           # stop everything the demo started, remove its files');
}

async function start(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new DemoError('the demo runs a real kubelet and containerd on this machine: run it as root (sudo npm start)');
  const t0 = Date.now();
  out(
    'enbi demo: a local one-node Kubernetes, enbi installed from deploy/, and an app whose image enbi builds with Nix in the cluster.',
  );
  const needs = prereqs();
  out('First, the parts (cached in ~/.cache/enbi once built):');
  for (const p of needs)
    out(`  ${p.present ? '✓' : '·'} ${p.what}${p.present ? '' : `: to get (${p.script}; ${p.cost})`}`);
  for (const p of needs.filter((x) => !x.present))
    await step(`${p.what} (${p.script})`, () => runScript(p.script, out));

  mkdirSync(demoDir(), { recursive: true });
  const cluster = await step(
    `local cluster in ${clusterDirOf()} (node ${NODE}: kubelet and containerd, socket in ${SOCKET_DIR})`,
    () =>
      up({
        mode: 'full',
        dir: clusterDirOf(),
        nodes: [{ name: NODE, emulate: [], socket: join(SOCKET_DIR, 'containerd.sock') }],
        log: () => undefined,
      }),
  );
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  const node = cluster.nodes[0]!;
  // k3s's kubelet says "+k3s" and enbi infers the socket from it; this node says where it is, as other distributions do.
  await kc
    .makeApiClient(CoreV1Api)
    .patchNode(
      { name: NODE, body: { metadata: { annotations: { 'enbi.hrzn.ee/containerd-socket': node.containerdSocket } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  await step("enbi's images (images/build.ts: controller and builder) into the node's containerd", () =>
    importBuildImages(node),
  );

  let state: DemoState | undefined = existsSync(stateFile())
    ? (JSON.parse(readFileSync(stateFile(), 'utf8')) as DemoState)
    : undefined;
  if (state !== undefined && !gitAlive(state)) state = undefined;
  const gitRoot = join(demoDir(), 'git');
  let deployment: V1Deployment;
  if (state === undefined) {
    rmSync(gitRoot, { recursive: true, force: true });
    mkdirSync(gitRoot, { recursive: true });
    const git = await step(
      "a Git server for the app flake and its manifests (where the cluster's pods reach this host)",
      () => startGitProcess(gitRoot, new URL(cluster.server).hostname),
    );
    state = {
      kubeconfig: cluster.kubeconfig,
      gitPid: git.pid,
      gitStart: startTimeOf(git.pid) ?? 0,
      gitBase: git.base,
      secret: randomBytes(16).toString('hex'),
      revisions: [],
    };
    const first = await commitRevision(gitRoot, git.base, 1);
    state.revisions.push(first.rev);
    writeFileSync(stateFile(), JSON.stringify(state, null, 2));
    deployment = first.deployment;
  } else {
    deployment = currentDeployment();
  }
  const s = state;
  await step(
    "enbi from deploy/ (kustomize overlay: the demo's config, webhook Secret, containerd directory, Nix store)",
    async () => {
      const overlay = writeOverlay(join(demoDir(), 'overlay'), {
        config: {
          source: { url: `${s.gitBase}/manifests.git`, ref: 'main', path: 'apps', intervalSeconds: 60 },
          namespace: INSTALL_NS,
          allowedImages: ['registry.local/'],
          allowedFlakes: [`${s.gitBase}/`],
          mode: 'per-node',
          builderImage: 'ghcr.io/hrzn/enbi-builder:0.1.0',
          importerImage: 'ghcr.io/hrzn/enbi:0.1.0',
          cache: { hostPath: join(demoDir(), 'nix') },
          leaderElection: { enabled: true, leaseSeconds: 15, renewSeconds: 5 },
          listen: { port: 8080 },
          webhook: { secretFile: '/etc/enbi/webhook/secret', listen: { port: 8081 } },
        },
        webhookSecret: s.secret,
        containerdDir: SOCKET_DIR,
        nixStoreDir: join(demoDir(), 'nix'),
        // The build-Job policy admits the node's socket only where distributions put it: the demo's is its own.
        sockets: [node.containerdSocket],
        // The demo's app flake has no inputs: nothing to substitute, and this machine may be offline.
        nixConf: 'substituters =\n',
      });
      await applyAll(kc, await kustomizeBuild(overlay));
      await waitInstalled(
        kc,
        300_000,
        async () => `kubectl get pods -n ${INSTALL_NS} --kubeconfig ${cluster.kubeconfig}`,
      );
    },
  );
  await applyAndWatch(kc, deployment, t0);
}

/** The Deployment the demo's manifests repository declares now. */
function currentDeployment(): V1Deployment {
  const text = execFileSync(
    'git',
    ['--git-dir', join(demoDir(), 'git', 'manifests.git'), 'show', 'HEAD:apps/hello.yaml'],
    { encoding: 'utf8' },
  );
  return JSON.parse(text) as V1Deployment;
}

const gitAlive = (s: DemoState): boolean =>
  isAlive({ name: 'git-serve', pid: s.gitPid, startTime: s.gitStart, log: '' });

async function push(): Promise<void> {
  if (!existsSync(stateFile())) throw new DemoError('no demo is running: npm start first');
  const state = JSON.parse(readFileSync(stateFile(), 'utf8')) as DemoState;
  if (!gitAlive(state)) throw new DemoError("the demo's Git server is not running: npm start brings it back");
  const t0 = Date.now();
  const kc = new KubeConfig();
  kc.loadFromFile(state.kubeconfig);
  const next = await commitRevision(join(demoDir(), 'git'), state.gitBase, state.revisions.length + 1);
  state.revisions.push(next.rev);
  writeFileSync(stateFile(), JSON.stringify(state, null, 2));
  out(
    `▸ pushed app revision ${next.rev.slice(0, 7)} and manifests naming registry.local/hello:${next.rev.slice(0, 7)}`,
  );
  // The push webhook, signed as GitHub signs it, to a controller replica (a standby forwards it to the leader).
  const pods = (
    await kc
      .makeApiClient(CoreV1Api)
      .listNamespacedPod({ namespace: INSTALL_NS, labelSelector: 'app.kubernetes.io/component=controller' })
  ).items;
  const ip = pods.find((p) => p.status?.podIP !== undefined)?.status?.podIP;
  if (ip === undefined) throw new DemoError(`no controller pod has an address: kubectl get pods -n ${INSTALL_NS}`);
  // Each push its own delivery (the revision in the body, an id): the controller does nothing for one it already accepted.
  const body = JSON.stringify({ ref: 'refs/heads/main', after: next.rev, repository: { full_name: 'demo/manifests' } });
  const res = await fetch(`http://${ip}:8081/hooks/git`, {
    method: 'POST',
    body,
    headers: {
      'Content-Type': 'application/json',
      'X-GitHub-Event': 'push',
      'X-GitHub-Delivery': randomUUID(),
      'X-Hub-Signature-256': `sha256=${createHmac('sha256', state.secret).update(body).digest('hex')}`,
    },
  });
  out(
    `▸ webhook to the controller: ${res.status} ${res.status === 202 ? '(accepted: it syncs Git now)' : await res.text()}`,
  );
  await applyAndWatch(kc, next.deployment, t0);
}

async function downAll(): Promise<void> {
  let removed = false;
  if (existsSync(stateFile())) {
    const state = JSON.parse(readFileSync(stateFile(), 'utf8')) as DemoState;
    if (gitAlive(state)) {
      process.kill(state.gitPid, 'SIGTERM');
      out(`stopped the demo's Git server (pid ${state.gitPid})`);
    }
    removed = true;
  }
  // down() takes the directory's lock, which would make the directory: only where a cluster is recorded.
  if (existsSync(join(clusterDirOf(), 'cluster.json')) && (await down(clusterDirOf(), (m) => out(m)))) removed = true;
  // Only what the demo makes, then the directory if that leaves it empty: ENBI_DEMO_DIR and
  // ENBI_DEMO_RUN_DIR are the caller's, and may name a directory that holds other things.
  const own: [string, string[]][] = [
    [SOCKET_DIR, ['containerd.sock', 'containerd.sock.ttrpc']],
    [demoDir(), ['demo.json', 'git', 'git-server.log', 'overlay', 'nix', 'cluster']],
  ];
  for (const [dir, entries] of own) {
    if (!existsSync(dir)) continue;
    for (const e of entries) rmSync(join(dir, e), { recursive: true, force: true });
    const left = readdirSync(dir);
    if (left.length === 0) {
      rmSync(dir, { recursive: true, force: true });
      out(`removed ${dir}`);
      removed = true;
    } else out(`left ${dir}: it holds what the demo did not make (${left.slice(0, 5).join(', ')})`);
  }
  out(removed ? 'the demo is down: nothing of it runs or remains' : 'no demo to stop');
}

async function main(argv: string[]): Promise<number> {
  let values: { push?: boolean; down?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { push: { type: 'boolean' }, down: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help === true) {
    out(USAGE);
    return 0;
  }
  try {
    if (values.down === true) await downAll();
    else if (values.push === true) await push();
    else await start();
    return 0;
  } catch (err) {
    if (err instanceof DemoError) console.error(`enbi demo: ${err.message}`);
    else console.error(`enbi demo: ${(err as Error).stack ?? String(err)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
