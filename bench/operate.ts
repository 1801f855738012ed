// Issue 14's figures side by side, from one run: the node agent's memory with 1,000 images against the
// containerd beside it, `enbi import` against `ctr images import` (containerd 1.6 and 2.x), the controller's
// memory and quiet reconcile at scale, and failover between two replicas on a real Lease. Each bench runs as
// its own process (its memory is its own); this script collects the lines that matter and prints a table.
//
//   node bench/operate.ts        (shape of the scale bench from its env: NODES=5000 PODS=50000 …)
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { CoreV1Api } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { jsonLogger } from '../src/controller/log.ts';
import { type LeaderElection, startLeaderElection } from '../src/controller/leader.ts';
import { containerd2Dir } from '../test/support/containerd.ts';

const NODE = process.execPath;
const here = (f: string) => new URL(f, import.meta.url).pathname;

/** Runs a bench, echoing its output; returns the output. */
function bench(args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    console.log(`\n$ node ${args.join(' ')}`);
    const p = spawn(NODE, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      process.stdout.write(d);
    });
    // A bench that fails leaves its row "(not measured)"; the others still run.
    p.on('close', (code) => {
      if (code !== 0) console.log(`(${args.join(' ')} exited ${code})`);
      resolve(out);
    });
    p.on('error', reject);
  });
}
const grab = (out: string, re: RegExp): string => re.exec(out)?.[1]?.trim() ?? '(not measured)';

/** Two electors on a Lease (deploy/'s timing: 15 s lease, 5 s renew): the leader crashes, the standby leads. */
async function failover(): Promise<{ crashMs: number; releaseMs: number }> {
  process.env.ENBI_CLUSTER_DIR ??= '/tmp/enbi-bench-failover';
  const { useCluster } = await import('../test/cluster/harness.ts');
  const { down } = await import('../test/cluster/cluster.ts');
  const c = await useCluster('control-plane');
  const ns = `enbi-failover-${randomBytes(3).toString('hex')}`;
  await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
  const electors: LeaderElection[] = [];
  const start = (id: string) => {
    const e = startLeaderElection({
      kc: c.kc,
      namespace: ns,
      name: 'enbi-controller',
      identity: id,
      leaseSeconds: 15,
      renewSeconds: 5,
      retrySeconds: 2,
      log: jsonLogger(() => undefined),
      onStartedLeading: () => undefined,
      onStoppedLeading: () => undefined,
      onSyncRequested: () => undefined,
    });
    electors.push(e);
    return e;
  };
  const leaderOf = async (): Promise<LeaderElection> => {
    for (;;) {
      const l = electors.filter((e) => e.isLeader());
      if (l.length === 1) return l[0]!;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    start('a');
    start('b');
    const first = await leaderOf();
    let t = performance.now();
    await first.stop(false); // a crash: the lease is not released
    const second = await leaderOf();
    const crashMs = performance.now() - t;
    start('c');
    t = performance.now();
    await second.stop(true); // a rolling update: released
    await leaderOf();
    return { crashMs, releaseMs: performance.now() - t };
  } finally {
    for (const e of electors) await e.stop(false).catch(() => undefined);
    await down(process.env.ENBI_CLUSTER_DIR);
  }
}

const c2 = containerd2Dir();
// As the images run them: enbi compiled (what the controller image holds), the agent with deploy/agent.yaml's
// NODE_OPTIONS.
// dist/ inside the repository (npm run build), so that the compiled code finds node_modules.
const dist = here('../dist');
execFileSync(here('../node_modules/.bin/tsc'), ['-p', here('../tsconfig.build.json')], { stdio: 'inherit' });
// The agent's V8 flags: those on deploy/agent.yaml's command line, between node and the CLI.
const agentCommand =
  (
    parseAllDocuments(readFileSync(here('../deploy/agent.yaml'), 'utf8')).map((d) => d.toJS()) as {
      kind?: string;
      spec?: { template?: { spec?: { containers?: { command?: string[] }[] } } };
    }[]
  ).find((d) => d.kind === 'DaemonSet')?.spec?.template?.spec?.containers?.[0]?.command ?? [];
const compiled = {
  AGENT_DIST: dist,
  AGENT_NODE_OPTIONS: agentCommand.filter((a) => a.startsWith('--')).join(' '),
  ENBI_DIST: dist,
};
const agent = await bench([here('agent.ts')], compiled);
const import16 = await bench([here('import.ts'), '--rounds', '3'], compiled);
const import2 =
  c2 !== undefined
    ? await bench([here('import.ts'), '--rounds', '3', '--containerd', `containerd-2:${c2}`], compiled)
    : '';
const scale = await bench(['--expose-gc', here('controller-scale.ts')]);
console.log('\n$ failover (in this process)');
const f = await failover();

const rows: [string, string, string][] = [
  [
    'agent RSS, 1,000 images (after changes + idle)',
    grab(agent, /changes \+ idle\s+RSS ([\d.]+ MiB)/),
    `containerd beside it ${grab(agent, /containerd beside it \([^)]*\)\s+RSS ([\d.]+ MiB)/)}; ratio ${grab(agent, /agent\/containerd ([\d.]+×)/)}`,
  ],
  [
    'enbi import vs ctr images import, containerd 1.6',
    grab(import16, /enbi import [^:]*:\s+([\d.]+ s\s+\([\d.]+×\))/),
    `ctr ${grab(import16, /ctr images import \+ tag \+ label:\s+([\d.]+ s)/)}`,
  ],
  [
    'enbi import vs ctr images import, containerd 2.x',
    grab(import2, /enbi import [^:]*:\s+([\d.]+ s\s+\([\d.]+×\))/),
    `ctr ${grab(import2, /ctr images import \+ tag \+ label:\s+([\d.]+ s)/)}`,
  ],
  [
    "controller RSS, caches full, Node's defaults",
    grab(scale, /memory, caches full\s+RSS ([\d.]+ MiB)/),
    grab(scale, /^(controller scale bench: [^,]+, [^(]+)/m),
  ],
  [
    "controller peak RSS, deploy/'s NODE_OPTIONS",
    grab(scale, /--- controller with --[\s\S]*?peak RSS[^\n]*?([\d.]+ MiB)/),
    `caches full ${grab(scale, /--- controller with --[\s\S]*?caches full\s+RSS ([\d.]+ MiB)/)}`,
  ],
  [
    'controller quiet reconcile',
    grab(scale, /quiet reconcile, \d+ runs\s+(median [\d.]+ ms, p99 [\d.]+ ms)/),
    `API writes ${grab(scale, /API writes during the quiet reconciles\s+(\d+)/)}`,
  ],
  [
    'failover, leader crashed (15 s lease)',
    `${(f.crashMs / 1000).toFixed(1)} s`,
    `lease released (rolling update): ${(f.releaseMs / 1000).toFixed(1)} s`,
  ],
];
console.log('\n== issue 14, side by side (this machine, this run)');
for (const [what, value, beside] of rows) console.log(`${what.padEnd(52)} ${value.padEnd(22)} ${beside}`);
