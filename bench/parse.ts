// Reading manifests: 10,000 workloads analysed (target < 500 ms), one mapping of 5k…40k keys (linear?), and
// a 50 MB manifest, each against the way enbi parsed before (the yaml package's parseAllDocuments with
// uniqueKeys, then toJS) measured in the same run. Prints figures; asserts nothing.
//
//   node bench/parse.ts        (WORKLOADS=10000 OLD_MAX_KEYS=20000 to change the shape)
import { performance } from 'node:perf_hooks';
import { parseAllDocuments } from 'yaml';
import { scanManifests } from '../src/manifests/scan.ts';
import { analyzeSource } from '../src/pipeline/analyze.ts';
import { deployment, yamlDocs } from '../test/support/fixtures.ts';

const WORKLOADS = Number(process.env.WORKLOADS ?? 10_000);
// The old parse is quadratic: 40k keys took 38 s there, so by default it is measured up to 20k.
const OLD_MAX_KEYS = Number(process.env.OLD_MAX_KEYS ?? 20_000);
const rev = (i: number) => i.toString(16).padStart(40, '0');

function samples(fn: () => unknown, runs: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    fn();
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b);
}
const median = (fn: () => unknown, runs: number): number => samples(fn, runs)[Math.floor(runs / 2)]!;
const ms = (x: number) => `${x.toFixed(0).padStart(6)} ms`;

/** enbi's parse before issue 12 (src/manifests/scan.ts at main): the library's whole pipeline, uniqueKeys on. */
function oldParse(text: string): void {
  const docs = parseAllDocuments(text, { prettyErrors: false, uniqueKeys: true });
  if (Array.isArray(docs)) for (const d of docs) if (d.errors.length === 0) d.toJS({ maxAliasCount: 100 });
}

console.log(`parse bench: node ${process.version}`);
const files = Array.from({ length: WORKLOADS / 100 }, (_, f) => ({
  path: `apps/team${f}/workloads.yaml`,
  text: yamlDocs(
    ...Array.from({ length: 100 }, (_, k) =>
      deployment(`w${f * 100 + k}`, {
        namespace: `team${f}`,
        flake: `github:acme/app${k}/${rev(k)}#image`,
        image: `registry.local/app${k}:v${k % 3}`,
        nodeSelector: { zone: `z${k % 3}` },
      }),
    ),
  ),
}));
const bytes = files.reduce((s, f) => s + f.text.length, 0);
// On a shared machine the minimum says what the code costs when it gets a core; the median what it got.
const analysisRuns = samples(() => analyzeSource(files), 9);
const analysis = analysisRuns[4]!;
const scanOnly = median(() => scanManifests(files), 5);
const old = median(() => files.forEach((f) => oldParse(f.text)), 3);
console.log(`${WORKLOADS} workloads in ${files.length} files (${(bytes / 1e6).toFixed(1)} MB):`);
console.log(
  `  analyzeSource (parse + contract) : ${ms(analysis)}   target < 500 ms (median of 9; min ${analysisRuns[0]!.toFixed(0)} ms)`,
);
console.log(`  of which parsing (scanManifests) : ${ms(scanOnly)}`);
console.log(
  `  old parse alone (uniqueKeys)     : ${ms(old)}   ratio new analysis/old parse ${(analysis / old).toFixed(2)}`,
);

console.log('one mapping of N keys (the pod template annotations of a Deployment):');
console.log('      N   plain block YAML   beyond plain (anchors: the yaml package)   old parse');
const mapping = (n: number, anchors: boolean) =>
  `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: big}\nspec:\n  template:\n    metadata:\n      annotations:\n${Array.from({ length: n }, (_, i) => `        key${i}: ${anchors ? `&a${i} ` : ''}value${i}\n`).join('')}    spec:\n      containers: [{name: c, image: "r/x:1"}]\n`;
const perKey: string[] = [];
for (const n of [5_000, 10_000, 20_000, 40_000]) {
  const plain = mapping(n, false);
  const anchored = mapping(n, true);
  const fast = median(() => scanManifests([{ path: 'a.yaml', text: plain }]), 3);
  const slow = median(() => scanManifests([{ path: 'a.yaml', text: anchored }]), 3);
  const before = n <= OLD_MAX_KEYS ? median(() => oldParse(plain), 1) : NaN;
  perKey.push(`${((slow / n) * 1000).toFixed(1)}`);
  console.log(
    `  ${String(n).padStart(5)}   ${ms(fast)}          ${ms(slow)}                               ${Number.isNaN(before) ? '   (skipped)' : ms(before)}`,
  );
}
console.log(`  µs per key, beyond plain: ${perKey.join(', ')} (flat = linear)`);

console.log('a 50 MB manifest:');
const bigConfig = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n${Array.from({ length: 1_100_000 }, (_, i) => `  key${i}: value-${i}-abcdefghijklmnopqrstuv\n`).join('')}`;
const bigWorkload = `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: big}\nspec:\n  template:\n    metadata:\n      annotations:\n${Array.from({ length: 1_000_000 }, (_, i) => `        key${i}: value-${i}-abcdefghijklmnopqrstuv\n`).join('')}    spec:\n      containers: [{name: c, image: "r/x:1"}]\n`;
for (const [label, text] of [
  ['ConfigMap (a kind enbi ignores)', bigConfig],
  ['Deployment (read whole)', bigWorkload],
] as const) {
  const rss0 = process.memoryUsage().rss;
  const t = median(() => scanManifests([{ path: 'a.yaml', text }]), 1);
  console.log(
    `  ${label.padEnd(32)} ${(text.length / 1e6).toFixed(0)} MB: ${ms(t)}, RSS +${((process.memoryUsage().rss - rss0) / 2 ** 20).toFixed(0)} MiB`,
  );
}
console.log(`RSS at the end: ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
