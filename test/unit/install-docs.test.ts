// docs/install.md shows the k3s patch of deploy/ that the in-cluster test applies: the two stay the same.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { parse } from 'yaml';
import { containerdDirPatch, K3S_SOCKET_DIR } from '../support/install.ts';

it("docs/install.md's k3s overlay patches the agent as test/integration/install.test.ts does", () => {
  const doc = readFileSync(new URL('../../docs/install.md', import.meta.url), 'utf8');
  const block = /```yaml\n(# kustomization\.yaml of your overlay\n[\s\S]*?)```/.exec(doc);
  assert.ok(block !== null, 'docs/install.md has the overlay block');
  const k = parse(block[1]!) as { patches: { target: { kind: string; name: string }; patch: string }[] };
  assert.deepEqual(k.patches[0]!.target, { kind: 'DaemonSet', name: 'enbi-agent' });
  assert.deepEqual(parse(k.patches[0]!.patch), containerdDirPatch(K3S_SOCKET_DIR));
});
