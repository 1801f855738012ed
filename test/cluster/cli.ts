// The test cluster's command line:
//   node test/cluster/cli.ts up [--mode full|control-plane] [--nodes N]   start, or reuse a healthy one
//   node test/cluster/cli.ts down                                         stop it and remove its state
//   node test/cluster/cli.ts status                                       print cluster.json, exit 1 if unhealthy
import { parseArgs } from 'node:util';
import { clusterDir } from './paths.ts';
import { down, unhealthy, up, type NodeSpec } from './cluster.ts';
import { readState, type Mode } from './state.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { mode: { type: 'string', default: 'full' }, nodes: { type: 'string', default: '1' } },
});

async function main(): Promise<number> {
  const cmd = positionals[0];
  if (cmd === 'up') {
    const mode = values.mode as Mode;
    if (mode !== 'full' && mode !== 'control-plane') throw new Error(`--mode must be full or control-plane, not ${mode}`);
    const count = Number(values.nodes);
    if (!Number.isInteger(count) || count < 1) throw new Error(`--nodes must be a positive integer`);
    const nodes: NodeSpec[] = Array.from({ length: count }, (_, i) => ({ name: `enbi-node-${i + 1}` }));
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
  console.error('usage: node test/cluster/cli.ts up [--mode full|control-plane] [--nodes N] | down | status');
  return 2;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`error: ${e.message}`);
    process.exit(1);
  },
);
