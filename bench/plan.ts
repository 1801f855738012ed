// Planning time for 10,000 workloads × 500 nodes (generated): parse + contract + plan, and plan alone.
// Run: node bench/plan.ts   — prints figures, asserts nothing.
import { performance } from 'node:perf_hooks';
import { nodeViewOf } from '../src/cluster/node-view.ts';
import { analyzeSource } from '../src/pipeline/analyze.ts';
import { plan } from '../src/plan/planner.ts';
import { deployment, rawNode, yamlDocs } from '../test/support/fixtures.ts';

const WORKLOADS = Number(process.env.WORKLOADS ?? 10_000);
const NODES = Number(process.env.NODES ?? 500);
const FLAKES = 400; // distinct app flakes; workloads share them as replicas of a fleet do
const rev = (i: number) => i.toString(16).padStart(40, '0');

const archs = ['amd64', 'arm64'];
const rawNodes = Array.from({ length: NODES }, (_, i) =>
  rawNode(`node-${i}`, {
    arch: archs[i % 2]!,
    ready: i % 50 !== 7,
    unschedulable: i % 97 === 3,
    taints: i % 25 === 0 ? [{ key: 'dedicated', value: 'gpu', effect: 'NoSchedule' }] : [],
    labels: { zone: `z${i % 3}` },
    images: Array.from({ length: 20 }, (_, k) => `registry.local/app${(i + k * 7) % FLAKES}:v${(i + k) % 3}`),
  }),
);
const files = Array.from({ length: WORKLOADS / 100 }, (_, f) => ({
  path: `apps/team${f}/workloads.yaml`,
  text: yamlDocs(
    ...Array.from({ length: 100 }, (_, k) => {
      const i = f * 100 + k;
      const app = i % FLAKES;
      return deployment(`w${i}`, {
        namespace: `team${f}`,
        flake: `github:acme/app${app}/${rev(app)}#image`,
        image: `registry.local/app${app}:v${i % 3}`,
        ...(i % 4 === 0 ? { nodeSelector: { 'kubernetes.io/arch': archs[i % 8 === 0 ? 0 : 1]! } } : {}),
        ...(i % 5 === 0 ? { nodeSelector: { zone: `z${i % 3}` } } : {}),
        ...(i % 11 === 0 ? { tolerations: [{ key: 'dedicated', operator: 'Exists' }] } : {}),
      });
    }),
  ),
}));

function time<T>(label: string, fn: () => T, runs = 5): T {
  let result!: T;
  const samples: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    result = fn();
    samples.push(performance.now() - t);
  }
  samples.sort((a, b) => a - b);
  console.log(
    `${label.padEnd(44)} median ${samples[Math.floor(runs / 2)]!.toFixed(1)} ms  (min ${samples[0]!.toFixed(1)}, max ${samples[runs - 1]!.toFixed(1)}, ${runs} runs)`,
  );
  return result;
}

console.log(
  `planner bench: ${WORKLOADS} workloads in ${files.length} files, ${NODES} nodes, ${FLAKES} flakes, node ${process.version}`,
);
const nodes = time('node views (status.images → sets)', () => rawNodes.map((n) => nodeViewOf(n)));
const analysis = time('analyze: YAML parse + contract (zod)', () => analyzeSource(files), 3);
for (const mode of ['spegel', 'per-node'] as const) {
  const p = time(`plan, ${mode} mode`, () => plan({ workloads: analysis.workloads, nodes, mode }));
  console.log(
    `  → ${p.builds.length} builds, ${p.statuses.length} image statuses, ${p.unbuildable.length} unbuildable`,
  );
}
const rss = process.memoryUsage().rss / 2 ** 20;
console.log(`RSS after the runs: ${rss.toFixed(0)} MiB`);
