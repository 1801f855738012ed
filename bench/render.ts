// Rendering a 50-overlay kustomize repository (one base, 50 overlays each with its own namespace and newTag)
// with the real kustomize: cold (empty cache), warm (nothing changed), and after a one-overlay change (only that
// overlay renders again). Also the full `analyzeSource` on the rendered objects. Prints figures, asserts
// nothing. Needs the cached kustomize: bash test/cluster/build-kustomize.sh.
// Shape: OVERLAYS=50 REPS=5 node bench/render.ts
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyzeSource } from '../src/pipeline/analyze.ts';
import { RenderCache } from '../src/render/cache.ts';
import { renderSource } from '../src/render/index.ts';
import { cachedToolPath, TOOL_VERSIONS } from '../src/render/tools.ts';
import { readDirSource } from '../src/source/dir.ts';

const OVERLAYS = Number(process.env.OVERLAYS ?? 50);
const REPS = Number(process.env.REPS ?? 5);
const tools = { kustomize: cachedToolPath('kustomize') };
const tag = (n: number) => n.toString(16).padStart(40, '0');

async function write(root: string, path: string, text: string): Promise<void> {
  await mkdir(join(root, path, '..'), { recursive: true });
  await writeFile(join(root, path), text);
}

const overlay = (i: number, rev: number) => `resources: [../../base]
namespace: team-${i}
images: [{name: registry.local/app, newTag: "${tag(rev)}"}]
`;

const root = await mkdtemp(join(tmpdir(), 'enbi-bench-render-'));
await write(root, 'base/kustomization.yaml', 'resources: [deployment.yaml, service.yaml]\n');
await write(
  root,
  'base/deployment.yaml',
  `apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata:
      labels: {app: app}
      annotations: {enbi.hrzn.ee/flake: "git+https://git.example.org/app.git?ref=main#image"}
    spec: {containers: [{name: app, image: "registry.local/app:${tag(0)}"}]}
`,
);
await write(
  root,
  'base/service.yaml',
  'apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {ports: [{port: 80}]}\n',
);
for (let i = 0; i < OVERLAYS; i++) await write(root, `overlays/o${i}/kustomization.yaml`, overlay(i, i + 1));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const cold: number[] = [];
const warm: number[] = [];
const oneChange: number[] = [];
const analysis: number[] = [];
let renderedAfterChange = 0;
for (let rep = 0; rep < REPS; rep++) {
  const cache = new RenderCache();
  let t = performance.now();
  const first = await renderSource({ source: { kind: 'dir', root }, tools, cache });
  cold.push(performance.now() - t);
  if (first.problems.length > 0 || first.stats.renders !== OVERLAYS)
    throw new Error(`cold pass: ${first.stats.renders} renders, ${JSON.stringify(first.problems[0])}`);
  t = performance.now();
  await renderSource({ source: { kind: 'dir', root }, tools, cache });
  warm.push(performance.now() - t);
  await write(root, 'overlays/o7/kustomization.yaml', overlay(7, 1000 + rep));
  t = performance.now();
  const changed = await renderSource({ source: { kind: 'dir', root }, tools, cache });
  oneChange.push(performance.now() - t);
  renderedAfterChange = changed.stats.renders;
  const files = await readDirSource(root);
  t = performance.now();
  const a = analyzeSource(files, { rendered: changed });
  analysis.push(performance.now() - t);
  if (a.workloads.length !== OVERLAYS) throw new Error(`${a.workloads.length} workloads`);
}
await rm(root, { recursive: true, force: true });
const ms = (x: number) => `${Math.round(x)} ms`;
console.log(
  `render bench: ${OVERLAYS} kustomize overlays of one base, kustomize ${TOOL_VERSIONS.kustomize}, node ${process.version}, ${REPS} reps (median)`,
);
console.log(
  `  cold (empty cache, ${OVERLAYS} kustomize builds):   ${ms(median(cold))} (${ms(median(cold) / OVERLAYS)} per overlay)`,
);
console.log(`  warm (nothing changed, 0 builds):          ${ms(median(warm))}`);
console.log(`  one overlay changed (${renderedAfterChange} build):            ${ms(median(oneChange))}`);
console.log(`  analyzeSource on the ${OVERLAYS} rendered workloads: ${ms(median(analysis))}`);
