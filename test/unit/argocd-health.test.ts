// deploy/argocd/'s health check for NixBuild, run by a real Lua 5.1 interpreter (Argo CD runs it with
// gopher-lua, which speaks Lua 5.1) against statuses the controller's own state machine writes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { type NixBuild, UNOBSERVED_GENERATION } from '../../src/api/nixbuild.ts';
import { nextState } from '../../src/controller/build-state.ts';
import { REV_A } from '../support/fixtures.ts';

const KEY = 'resource.customizations.health.enbi.hrzn.ee_NixBuild';
const script = (
  parse(readFileSync(new URL('../../deploy/argocd/argocd-cm-nixbuild-health.yaml', import.meta.url), 'utf8')) as {
    data: Record<string, string>;
  }
).data[KEY]!;

/** A JSON value as a Lua table constructor (what Argo CD hands the script as `obj`). */
function lua(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v instanceof Date) return JSON.stringify(v.toISOString());
  if (Array.isArray(v)) return `{${v.map(lua).join(', ')}}`;
  return `{${Object.entries(v as Record<string, unknown>)
    .filter(([, x]) => x !== undefined)
    .map(([k, x]) => `[${JSON.stringify(k)}] = ${lua(x)}`)
    .join(', ')}}`;
}

function health(obj: unknown): { status: string; message: string } {
  const program = `obj = ${lua(obj)}\nlocal function check()\n${script}\nend\nlocal hs = check()\nio.write(hs.status, "\\t", hs.message or "")`;
  const out = execFileSync('lua5.1', ['-'], { input: program, encoding: 'utf8' });
  const [status, message] = out.split('\t');
  return { status: status!, message: message ?? '' };
}

const nb = (status?: NixBuild['status'], generation = 1): NixBuild => ({
  apiVersion: 'enbi.hrzn.ee/v1alpha1',
  kind: 'NixBuild',
  metadata: { name: 'b', generation },
  spec: { flakeUrl: `github:a/b/${REV_A}`, packageName: 'image', system: 'x86_64-linux', images: ['r/x:1'] },
  ...(status !== undefined ? { status } : {}),
});
const job = (attempt: number, state: 'running' | 'complete' | 'failed'): V1Job => ({
  metadata: { name: `b-${attempt}` },
  status:
    state === 'running'
      ? {}
      : {
          conditions: [
            { type: state === 'complete' ? 'Complete' : 'Failed', status: 'True', lastTransitionTime: new Date(0) },
          ],
        },
});
const done: V1Pod = {
  metadata: { name: 'p' },
  status: {
    phase: 'Succeeded',
    containerStatuses: [
      {
        name: 'build',
        image: '',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { terminated: { exitCode: 0, message: '{"storePath":"/nix/store/x-img"}' } },
      },
      {
        name: 'import',
        image: '',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { terminated: { exitCode: 0, message: '{"image":"r/x:1","digest":"sha256:ab"}' } },
      },
    ],
  },
};
const base = {
  nodes: new Map([['n1', { ready: true }]]),
  candidate: () => 'n1',
  now: new Date(100_000),
  maxAttempts: 1,
  retryBaseSeconds: 10,
  nodeLostSeconds: 300,
  maxRebuilds: 1,
};

const luaMissing = (() => {
  try {
    execFileSync('lua5.1', ['-v'], { stdio: 'ignore' });
    return undefined;
  } catch {
    // CI installs it (test/support/install-build-deps.sh); elsewhere, say what is missing.
    return process.env.CI === 'true' ? undefined : 'lua5.1 is not installed (bash test/support/install-build-deps.sh)';
  }
})();

test(
  'Argo CD health of a NixBuild follows its kstatus conditions: Progressing, Healthy, Degraded',
  { skip: luaMissing ?? false },
  () => {
    assert.equal(health(nb()).status, 'Progressing', 'no status yet');
    // What the API server serves before enbi wrote anything (the CRD's status defaults).
    assert.equal(
      health(nb({ observedGeneration: UNOBSERVED_GENERATION })).status,
      'Progressing',
      'the CRD default status',
    );
    const building = nextState({ ...base, nb: nb(), jobs: [job(1, 'running')], pods: [] }).status;
    // The state machine starts from the default status exactly as from none, and writes its own generation.
    assert.deepEqual(
      nextState({ ...base, nb: nb({ observedGeneration: UNOBSERVED_GENERATION }), jobs: [job(1, 'running')], pods: [] })
        .status,
      building,
    );
    assert.equal(building.observedGeneration, 1);
    assert.equal(health(nb(building)).status, 'Progressing');
    const succeeded = nextState({ ...base, nb: nb(building), jobs: [job(1, 'complete')], pods: [done] }).status;
    assert.deepEqual(health(nb(succeeded)), { status: 'Healthy', message: 'imported r/x:1 sha256:ab on n1' });
    // A spec changed since: not Healthy until enbi has looked at the new generation.
    assert.equal(health(nb(succeeded, 2)).status, 'Progressing');
    const failing = nb({ ...building, logExcerpt: 'error: builder failed' });
    const failed = nextState({
      ...base,
      nb: failing,
      jobs: [job(1, 'failed')],
      pods: [],
      failedLog: 'error: builder failed',
    }).status;
    const h = health(nb(failed));
    assert.equal(h.status, 'Degraded');
    assert.match(h.message, /attempt.* failed/);
    const waiting = nextState({
      ...base,
      nb: { ...nb(), spec: { ...nb().spec, node: 'n1' } },
      jobs: [],
      pods: [],
      pinUnable: 'spec.node n1 cannot build x86_64-linux: it is cordoned',
    }).status;
    assert.deepEqual(health(nb(waiting)), {
      status: 'Progressing',
      message: 'spec.node n1 cannot build x86_64-linux: it is cordoned',
    });
  },
);
