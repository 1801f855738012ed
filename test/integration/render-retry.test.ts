// The controller's source state with the real kustomize behind a wrapper that fails while the test holds it
// (no cluster): a root whose render gives no answer is unknown with no good render yet, then answers, then
// fails again on a new input and its last good workloads stand in for it; each failure is rendered again,
// never served from the render cache. The cluster-wide property is test/integration/render-unknown.test.ts.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { parseControllerConfig } from '../../src/controller/config.ts';
import { sourceState } from '../../src/controller/source-state.ts';
import { deployment, REV_A, yamlDocs } from '../support/fixtures.ts';
import { renderTool } from '../support/render-tools.ts';

test('a failed render is unknown (none good yet, then the last good stands in), retried, and cleared by an answer', async () => {
  const work = await mkdtemp(join(tmpdir(), 'enbi-render-retry-'));
  try {
    const hold = join(work, 'hold');
    const calls = join(work, 'calls');
    const wrapper = join(work, 'kustomize');
    await writeFile(
      wrapper,
      [
        '#!/bin/sh',
        `echo "$*" >> '${calls}'`,
        `if [ -e '${hold}' ]; then echo 'held by the test' >&2; exit 1; fi`,
        `exec '${renderTool('kustomize')}' "$@"`,
        '',
      ].join('\n'),
    );
    await chmod(wrapper, 0o755);
    const src = join(work, 'src');
    await mkdir(join(src, 'app'), { recursive: true });
    await writeFile(join(src, 'app/kustomization.yaml'), stringify({ resources: ['app.yaml', 'settings.yaml'] }));
    await writeFile(
      join(src, 'app/app.yaml'),
      yamlDocs(deployment('web', { flake: `github:acme/web/${REV_A}#image`, image: 'registry.local/web:v1' })),
    );
    const settings = (v: string) =>
      writeFile(
        join(src, 'app/settings.yaml'),
        stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 's' }, data: { v } }),
      );
    await settings('one');
    const logs: string[] = [];
    const state = sourceState(
      parseControllerConfig({
        allowedImages: ['registry.local/'],
        allowedFlakes: ['github:acme'],
        builderImage: 'enbi.local/builder:dev',
        importerImage: 'enbi.local/importer:dev',
        source: { dir: src, intervalSeconds: 5 },
        render: { kustomize: wrapper },
      }),
      work,
      undefined,
      (m) => logs.push(m),
    );
    const callCount = async () => (await readFile(calls, 'utf8').catch(() => '')).split('\n').length - 1;
    const names = () => state.current()!.analysis.workloads.map((w) => `${w.workload.name} ${w.workload.origin}`);

    // Failing from the first render: unknown, with nothing to stand in for it.
    await writeFile(hold, '');
    await state.refresh(true);
    assert.deepEqual(
      state.current()!.unknown.map((u) => [u.origin, u.attempts, u.lastGoodRevision]),
      [['kustomize build → app', 1, undefined]],
    );
    assert.deepEqual(names(), []);
    const retry = state.renderRetryInMs();
    assert.ok(retry !== undefined && retry > 4_000 && retry <= 5_000, `retried after the interval: ${retry}`);
    assert.ok(logs.some((l) => l.includes('no good render of it yet: no build is collected meanwhile')));

    // It answers: known, and the problem cleared.
    await rm(hold);
    await state.refresh(true);
    assert.deepEqual(state.current()!.unknown, []);
    assert.equal(state.renderRetryInMs(), undefined);
    assert.deepEqual(names(), ['web kustomize build → app']);
    const good = state.current()!.revision;

    // A new input, held again: its last good workloads stand in; every attempt runs kustomize.
    await settings('two');
    await writeFile(hold, '');
    const before = await callCount();
    await state.refresh(true);
    await settings('three');
    await state.refresh(true);
    assert.equal((await callCount()) - before, 2, 'both failures ran kustomize (neither cached)');
    assert.deepEqual(
      state.current()!.unknown.map((u) => [u.origin, u.attempts, u.lastGoodRevision]),
      [['kustomize build → app', 2, good]],
    );
    assert.deepEqual(names(), ['web kustomize build → app']);
    assert.ok(state.renderRetryInMs()! > 9_000, 'the second failure backs off twice as long');
    await rm(hold);
    await state.refresh(true);
    assert.deepEqual(state.current()!.unknown, []);
    assert.ok(logs.some((l) => /render of kustomize build → app answered again after 2 failed attempts/.test(l)));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
