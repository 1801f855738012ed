// Writes the JSON Schemas in schemas/ and the CRD in deploy/crd/ from their zod source; `--check` fails when the committed files differ.
import { readFile, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { stringify } from 'yaml';
import { nixBuildCrd, nixBuildSpecSchema } from '../api/nixbuild.ts';
import { nodeImagesCrd, nodeImagesStatusSchema } from '../api/nodeimages.ts';
import { annotationsSchema } from './annotations.ts';

export function renderedSchemas(): Record<string, string> {
  const json = (schema: z.ZodType) => `${JSON.stringify(z.toJSONSchema(schema, { io: 'input' }), null, 2)}\n`;
  return {
    'schemas/annotations.schema.json': json(annotationsSchema),
    'schemas/nixbuild.schema.json': json(nixBuildSpecSchema),
    'deploy/crd/nixbuilds.enbi.hrzn.ee.yaml': `# Generated from src/api/nixbuild.ts by npm run schemas: do not edit.\n${stringify(nixBuildCrd())}`,
    'schemas/nodeimages.schema.json': json(nodeImagesStatusSchema),
    'deploy/crd/nodeimages.enbi.hrzn.ee.yaml': `# Generated from src/api/nodeimages.ts by npm run schemas: do not edit.\n${stringify(nodeImagesCrd())}`,
  };
}

async function main(): Promise<void> {
  const dir = new URL('../../', import.meta.url);
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const [name, text] of Object.entries(renderedSchemas())) {
    const file = new URL(name, dir);
    if (check) {
      const committed = await readFile(file, 'utf8').catch(() => '');
      if (committed !== text) {
        console.error(`${name} is stale: run npm run schemas`);
        stale++;
      }
    } else await writeFile(file, text);
  }
  process.exitCode = stale > 0 ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
