// The test cluster's command line (npm run cluster:up / cluster:down). `--help` prints the usage; a bad
// flag or command prints what was wrong and the usage (exit 2); a failure prints its message, which says
// what to do (exit 1), never a stack trace.
import { parseArgs } from 'node:util';
import { clusterDir } from './paths.ts';
import { down, unhealthy, up, type NodeSpec } from './cluster.ts';
import { readState, type Mode } from './state.ts';

const USAGE = `usage: node test/cluster/cli.ts COMMAND [OPTIONS]     (npm run cluster:up -- [OPTIONS], npm run cluster:down)

Commands:
  up       start the local test cluster, or reuse the healthy one already recorded; prints KUBECONFIG=…
  down     stop it and remove its state
  status   print cluster.json; exit 1 when the cluster is unhealthy or absent

Options of up:
  --mode full|control-plane      full (default): control plane and real nodes (containerd, kubelet), needs root;
                                 control-plane: API server, etcd, controller-manager, scheduler only
  --nodes N                      number of nodes in full mode (default 1)
  --emulate [NODE=]SYSTEM[,SYSTEM]
                                 a node that also builds SYSTEM through QEMU (e.g. aarch64-linux; default node:
                                 the last); repeatable
  -h, --help                     this text

Environment:
  ENBI_CLUSTER_DIR   the cluster's state directory (default ~/.cache/enbi/cluster); one cluster per directory
  ENBI_CACHE_DIR     the cache of Kubernetes binaries, busybox, images (default ~/.cache/enbi)
  KUBE_BIN_DIR       Kubernetes v1.34.4 binaries you bring (default: built by test/cluster/build-kube.sh)
  ENBI_CONTAINERD    the nodes' containerd: debian-1.6 (default) or containerd-2:DIR

First time on a machine: sudo bash test/cluster/install-deps.sh && bash test/cluster/build-kube.sh
Then: export KUBECONFIG=~/.cache/enbi/cluster/kubeconfig   (ENBI_CLUSTER_DIR/kubeconfig)`;

/** A mistake in the command line: printed with the usage, exit 2. */
class UsageError extends Error {}

function parse(argv: string[]): {
  cmd: string | undefined;
  mode: string;
  nodes: string;
  emulate: string[];
  help: boolean;
} {
  try {
    const { positionals, values } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        mode: { type: 'string', default: 'full' },
        nodes: { type: 'string', default: '1' },
        emulate: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (positionals.length > 1) throw new UsageError(`one command, not ${positionals.join(' ')}`);
    return {
      cmd: positionals[0],
      mode: values.mode,
      nodes: values.nodes,
      emulate: values.emulate ?? [],
      help: values.help,
    };
  } catch (e) {
    if (e instanceof UsageError) throw e;
    // parseArgs' own message ("Unknown option '--x'. To specify a positional argument…"): its first sentence.
    throw new UsageError((e as Error).message.split('. ')[0]!);
  }
}

async function main(argv: string[]): Promise<number> {
  const a = parse(argv);
  if (a.help || a.cmd === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (a.cmd === 'up') {
    const mode = a.mode as Mode;
    if (mode !== 'full' && mode !== 'control-plane')
      throw new UsageError(`--mode must be full or control-plane, not ${a.mode}`);
    const count = Number(a.nodes);
    if (!Number.isInteger(count) || count < 1)
      throw new UsageError(`--nodes must be a positive integer, not ${a.nodes}`);
    const nodes: NodeSpec[] = Array.from({ length: count }, (_, i) => ({ name: `enbi-node-${i + 1}` }));
    // --emulate aarch64-linux: the last node; --emulate enbi-node-1=aarch64-linux,riscv64-linux: that node.
    for (const e of a.emulate) {
      const eq = e.indexOf('=');
      const name = eq >= 0 ? e.slice(0, eq) : nodes.at(-1)!.name;
      const node = nodes.find((n) => n.name === name);
      if (mode !== 'full' || !node)
        throw new UsageError(
          `--emulate ${e}: no node ${name} (needs --mode full; nodes: ${nodes.map((n) => n.name).join(', ')})`,
        );
      node.emulate = [
        ...new Set([
          ...(node.emulate ?? []),
          ...e
            .slice(eq + 1)
            .split(',')
            .filter(Boolean),
        ]),
      ];
    }
    const s = await up({ mode, nodes });
    console.log(`KUBECONFIG=${s.kubeconfig}`);
    console.log(`cluster.json: ${clusterDir()}/cluster.json`);
    return 0;
  }
  if (a.cmd === 'down') {
    if (!(await down())) console.error(`no cluster recorded in ${clusterDir()} (nothing to stop)`);
    return 0;
  }
  if (a.cmd === 'status') {
    const s = readState();
    if (!s) {
      console.error(`no cluster recorded in ${clusterDir()}: start one with \`npm run cluster:up\``);
      return 1;
    }
    console.log(JSON.stringify(s, null, 2));
    const why = await unhealthy(s);
    console.error(why ? `unhealthy: ${why} (restart it: npm run cluster:down && npm run cluster:up)` : 'healthy');
    return why ? 1 : 0;
  }
  throw new UsageError(a.cmd === undefined ? 'no command given' : `unknown command ${a.cmd}`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}\n\n${USAGE}`);
      process.exit(2);
    }
    console.error(`error: ${e.message}`);
    process.exit(1);
  },
);
