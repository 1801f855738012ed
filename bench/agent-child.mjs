// The agent alone in a process, for bench/agent.ts (which forks it and asks over IPC for its memory and
// counters). Plain JavaScript, so that with AGENT_DIST=DIR (the compiled sources, what the image runs:
// `tsc -p tsconfig.build.json --outDir node_modules/.cache/enbi-bench-dist`) nothing is type-stripped and
// the figures are the image's. Without it, the TypeScript sources run (development).
//   node bench/agent-child.mjs --child NODE SOCKET KUBECONFIG   |   --baseline (modules loaded, no agent)
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const [mode, node, socket, kubeconfig] = process.argv.slice(2);
const dist = process.env.AGENT_DIST;
const mod = (path) => import(dist ? pathToFileURL(resolve(dist, `${path}.js`)).href : new URL(`../src/${path}.ts`, import.meta.url).href);
// What `enbi agent` loads: the agent and its small API client (no @kubernetes/client-node).
const { startAgent } = await mod('agent/agent');
const { LiteApi, kubeconfigTarget } = await mod('kube/lite');

if (mode === '--baseline') {
  globalThis.gc?.();
  process.send({ mem: process.memoryUsage() });
  process.disconnect();
} else {
  const api = new LiteApi(await kubeconfigTarget(kubeconfig));
  const t0 = performance.now();
  const agent = startAgent({ node, socket, api, resyncMs: 3_600_000 });
  await agent.ready;
  process.send({ ready: performance.now() - t0 });
  process.on('message', async (m) => {
    if (m.cmd === 'mem') {
      globalThis.gc?.();
      process.send({ mem: process.memoryUsage(), stats: agent.stats() });
    } else if (m.cmd === 'stop') {
      await agent.stop();
      process.exit(0);
    }
  });
}
