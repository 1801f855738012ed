// Writes the JSON Schemas in schemas/ from their zod source; `--check` fails when the committed files differ.
import { readFile, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { annotationsSchema } from './annotations.ts';

export function renderedSchemas(): Record<string, string> {
  const json = (schema: z.ZodType) => `${JSON.stringify(z.toJSONSchema(schema, { io: 'input' }), null, 2)}\n`;
  return { 'annotations.schema.json': json(annotationsSchema) };
}

async function main(): Promise<void> {
  const dir = new URL('../../schemas/', import.meta.url);
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const [name, text] of Object.entries(renderedSchemas())) {
    const file = new URL(name, dir);
    if (check) {
      const committed = await readFile(file, 'utf8').catch(() => '');
      if (committed !== text) {
        console.error(`schemas/${name} is stale: run npm run schemas`);
        stale++;
      }
    } else await writeFile(file, text);
  }
  process.exitCode = stale > 0 ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
