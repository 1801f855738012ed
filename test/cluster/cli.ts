// The test cluster's command line:
//   node test/cluster/cli.ts up [--mode full|control-plane] [--nodes N] [--emulate [NODE=]SYSTEM[,SYSTEM]]...
//                                                                         start, or reuse a healthy one
//   node test/cluster/cli.ts down                                         stop it and remove its state
//   node test/cluster/cli.ts status                                       print cluster.json, exit 1 if unhealthy
import { parseArgs } from 'node:util';
import { clusterDir } from './paths.ts';
import { down, unhealthy, up, type NodeSpec } from './cluster.ts';
import { readState, type Mode } from './state.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { mode: { type: 'string', default: 'full' }, nodes: { type: 'string', default: '1' }, emulate: { type: 'string', multiple: true } },
});

async function main(): Promise<number> {
  const cmd = positionals[0];
  if (cmd === 'up') {
    const mode = values.mode as Mode;
    if (mode !== 'full' && mode !== 'control-plane') throw new Error(`--mode must be full or control-plane, not ${mode}`);
    const count = Number(values.nodes);
    if (!Number.isInteger(count) || count < 1) throw new Error(`--nodes must be a positive integer`);
    const nodes: NodeSpec[] = Array.from({ length: count }, (_, i) => ({ name: `enbi-node-${i + 1}` }));
    // --emulate aarch64-linux: the last node; --emulate enbi-node-1=aarch64-linux,riscv64-linux: that node.
    for (const e of values.emulate ?? []) {
      const eq = e.indexOf('=');
      const name = eq >= 0 ? e.slice(0, eq) : nodes.at(-1)!.name;
      const node = nodes.find((n) => n.name === name);
      if (mode !== 'full' || !node) throw new Error(`--emulate ${e}: no node ${name} (full mode, nodes ${nodes.map((n) => n.name).join(', ')})`);
      node.emulate = [...new Set([...(node.emulate ?? []), ...e.slice(eq + 1).split(',').filter(Boolean)])];
    }
    const s = await up({ mode, nodes });
    console.log(`KUBECONFIG=${s.kubeconfig}`);
    console.log(`cluster.json: ${clusterDir()}/cluster.json`);
    return 0;
  }
  if (cmd === 'down') {
    if (!(await down())) console.error(`no cluster recorded in ${clusterDir()}`);
    return 0;
  }
  if (cmd === 'status') {
    const s = readState();
    if (!s) {
      console.error(`no cluster recorded in ${clusterDir()}`);
      return 1;
    }
    console.log(JSON.stringify(s, null, 2));
    const why = await unhealthy(s);
    console.error(why ? `unhealthy: ${why}` : 'healthy');
    return why ? 1 : 0;
  }
  console.error('usage: node test/cluster/cli.ts up [--mode full|control-plane] [--nodes N] [--emulate [NODE=]SYSTEM[,SYSTEM]]... | down | status');
  return 2;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`error: ${e.message}`);
    process.exit(1);
  },
);
