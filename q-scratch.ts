import { deployment, yamlDocs } from './test/support/fixtures.ts';
import { scanManifests } from './src/manifests/scan.ts';
const rev = (i: number) => i.toString(16).padStart(40, '0');
const files = Array.from({ length: 100 }, (_, f) => ({ path: `apps/team${f}/w.yaml`, text: yamlDocs(...Array.from({ length: 100 }, (_, k) => deployment(`w${f*100+k}`, { namespace: `team${f}`, flake: `github:acme/app${k}/${rev(k)}#image`, image: `registry.local/app${k}:v1` }))) }));
for (let r = 0; r < 6; r++) { const t = performance.now(); scanManifests(files); console.log('scan', (performance.now() - t).toFixed(0)); }
