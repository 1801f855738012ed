// The agent's container runs the controller image's own entrypoint with V8 flags put in between (Node takes
// --lite-mode only on its command line): deploy/ and the chart must follow the image's layout.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { IMAGES } from '../../images/definition.ts';

it("deploy/agent.yaml runs the controller image's entrypoint, with only V8 flags added", () => {
  const docs = parseAllDocuments(readFileSync(new URL('../../deploy/agent.yaml', import.meta.url), 'utf8')).map(
    (d) =>
      d.toJS() as {
        kind?: string;
        spec?: { template?: { spec?: { containers?: { name: string; command?: string[] }[] } } };
      },
  );
  const command =
    docs.find((d) => d.kind === 'DaemonSet')?.spec?.template?.spec?.containers?.find((c) => c.name === 'agent')
      ?.command ?? [];
  const entrypoint = IMAGES.find((d) => d.name === 'controller')?.config.Entrypoint ?? [];
  assert.equal(entrypoint.length, 2);
  assert.deepEqual([command[0], command.at(-1)], entrypoint);
  const flags = command.slice(1, -1);
  assert.ok(flags.length > 0 && flags.every((f) => /^--[a-z-]+(=\d+)?$/.test(f)), `V8 flags only: ${flags.join(' ')}`);
});
