import { deployment, yamlDocs } from './test/support/fixtures.ts';
import { analyzeSource } from './src/pipeline/analyze.ts';
import { scanManifests } from './src/manifests/scan.ts';
const rev = (i: number) => i.toString(16).padStart(40, '0');
const files = Array.from({ length: 100 }, (_, f) => ({ path: `apps/team${f}/w.yaml`, text: yamlDocs(...Array.from({ length: 100 }, (_, k) => deployment(`w${f*100+k}`, { namespace: `team${f}`, flake: `github:acme/app${k}/${rev(k)}#image`, image: `registry.local/app${k}:v1`, nodeSelector: { zone: `z${k % 3}` } }))) }));
const a: number[] = [], s: number[] = [];
for (let r = 0; r < 10; r++) { let t = performance.now(); analyzeSource(files); a.push(performance.now() - t); t = performance.now(); scanManifests(files); s.push(performance.now() - t); }
console.log('analyze min', Math.min(...a).toFixed(0), 'scan min', Math.min(...s).toFixed(0));
