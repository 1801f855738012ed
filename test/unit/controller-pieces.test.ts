import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { NixBuild } from '../../src/api/nixbuild.ts';
import { nixBuildName } from '../../src/build/naming.ts';
import { nextState, statusChanged } from '../../src/controller/build-state.ts';
import { ConfigError, parseControllerConfig, socketFor } from '../../src/controller/config.ts';
import { verifyWebhook } from '../../src/controller/webhook-auth.ts';
import { REV_A } from '../support/fixtures.ts';

const POLICY = { images: ['docker.io/r/'], flakes: ['https://github.com/a/'] };

test('webhooks: GitHub and Gitea HMACs and GitLab tokens are checked, anything else refused', () => {
  const body = Buffer.from('{"ref":"refs/heads/main"}');
  const hmac = createHmac('sha256', 's3cret').update(body).digest('hex');
  assert.deepEqual(verifyWebhook({ 'x-hub-signature-256': `sha256=${hmac}` }, body, 's3cret'), {
    ok: true,
    provider: 'github',
  });
  assert.deepEqual(
    verifyWebhook({ 'x-hub-signature-256': `sha256=${hmac}`, 'x-github-delivery': 'g-1' }, body, 's3cret'),
    { ok: true, provider: 'github', deliveryId: 'g-1' },
  );
  assert.deepEqual(verifyWebhook({ 'x-gitea-signature': hmac }, body, 's3cret'), { ok: true, provider: 'gitea' });
  assert.deepEqual(verifyWebhook({ 'x-forgejo-signature': hmac, 'x-forgejo-delivery': 'f-1' }, body, 's3cret'), {
    ok: true,
    provider: 'gitea',
    deliveryId: 'f-1',
  });
  assert.deepEqual(verifyWebhook({ 'x-gitlab-token': 's3cret' }, body, 's3cret'), { ok: true, provider: 'gitlab' });
  assert.deepEqual(
    verifyWebhook(
      { 'x-gitlab-token': 's3cret', 'x-gitlab-event-uuid': 'e-1', 'idempotency-key': 'k-1' },
      body,
      's3cret',
    ),
    { ok: true, provider: 'gitlab', deliveryId: 'k-1' },
  );
  assert.equal(verifyWebhook({ 'x-hub-signature-256': `sha256=${hmac}` }, Buffer.from('tampered'), 's3cret').ok, false);
  assert.equal(verifyWebhook({ 'x-gitlab-token': 'nope' }, body, 's3cret').ok, false);
  assert.equal(verifyWebhook({}, body, 's3cret').ok, false);
});

test('configuration: defaults, and every problem of a bad file listed', () => {
  const ok = parseControllerConfig({
    source: { url: 'https://git.example/m.git' },
    builderImage: 'b',
    importerImage: 'i',
    allowedImages: ['registry.local/'],
    allowedFlakes: ['github:acme'],
  });
  assert.equal(ok.namespace, 'enbi-system');
  assert.equal(ok.mode, 'spegel');
  assert.equal(ok.source?.intervalSeconds, 60);
  assert.throws(
    () =>
      parseControllerConfig({ source: { url: 'ssh://x', dir: '/x' }, mode: 'sometimes', builderImage: 'b', extra: 1 }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /source/.test(e.message) &&
      /mode/.test(e.message) &&
      /importerImage/.test(e.message) &&
      /extra/.test(e.message),
  );
});

test('the containerd socket by distribution, annotation or configuration', () => {
  assert.equal(socketFor({ kubeletVersion: 'v1.31.4+k3s1' }), '/run/k3s/containerd/containerd.sock');
  assert.equal(socketFor({ kubeletVersion: 'v1.31.4+rke2r1' }), '/run/k3s/containerd/containerd.sock');
  assert.equal(socketFor({ kubeletVersion: 'v1.31.4+k0s' }), '/run/k0s/containerd.sock');
  assert.equal(socketFor({ kubeletVersion: 'v1.31.4' }), '/run/containerd/containerd.sock');
  assert.equal(socketFor({ annotations: { 'enbi.hrzn.ee/containerd-socket': '/x.sock' } }), '/x.sock');
  assert.equal(socketFor({ annotations: { 'enbi.hrzn.ee/containerd-socket': '/x.sock' } }, '/conf.sock'), '/conf.sock');
});

test('build names are stable, DNS-safe, short, and differ by system and (per-node) node', () => {
  const id = {
    source: `github:acme/web/${REV_A}`,
    rev: REV_A,
    attr: 'myapp-docker.stream-layered',
    system: 'x86_64-linux',
  };
  const a = nixBuildName(id);
  assert.equal(a, nixBuildName({ ...id }));
  assert.match(a, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  assert.ok(a.length <= 52, a);
  assert.notEqual(a, nixBuildName({ ...id, system: 'aarch64-linux' }));
  assert.notEqual(a, nixBuildName({ ...id, node: 'n1' }));
});

const nb = (status?: NixBuild['status']): NixBuild => ({
  apiVersion: 'enbi.hrzn.ee/v1alpha1',
  kind: 'NixBuild',
  metadata: { name: 'b', generation: 2 },
  spec: { flakeUrl: `github:a/b/${REV_A}`, packageName: 'image', system: 'x86_64-linux', images: ['r/x:1'] },
  ...(status !== undefined ? { status } : {}),
});
const job = (attempt: number, state: 'running' | 'complete' | 'failed', at = new Date(0)): V1Job => ({
  metadata: { name: `b-${attempt}` },
  status:
    state === 'running'
      ? {}
      : {
          conditions: [{ type: state === 'complete' ? 'Complete' : 'Failed', status: 'True', lastTransitionTime: at }],
        },
});
const terminated = (build: string, imp: string): V1Pod => ({
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
        state: { terminated: { exitCode: 0, message: build } },
      },
      {
        name: 'import',
        image: '',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { terminated: { exitCode: 0, message: imp } },
      },
    ],
  },
});
const base = {
  nodes: new Map([['n1', { ready: true }]]),
  candidate: () => 'n1',
  now: new Date(100_000),
  maxAttempts: 3,
  retryBaseSeconds: 10,
  nodeLostSeconds: 300,
  maxRebuilds: 1,
};

test('build states: start, run, succeed with digest and store path, Ready=True', () => {
  const s0 = nextState({ ...base, nb: nb(), jobs: [], pods: [] });
  assert.deepEqual(s0.action, { kind: 'create-job', attempt: 1, node: 'n1' });
  assert.equal(s0.status.phase, 'Building');
  assert.equal(s0.status.observedGeneration, 2);
  const s1 = nextState({ ...base, nb: nb(s0.status), jobs: [job(1, 'running')], pods: [] });
  assert.deepEqual(s1.action, { kind: 'none' });
  assert.equal(statusChanged(s0.status, s1.status), false, 'a running build writes nothing new');
  const s2 = nextState({
    ...base,
    nb: nb(s1.status),
    jobs: [job(1, 'complete')],
    pods: [terminated('{"storePath":"/nix/store/x-img"}', '{"image":"r/x:1","digest":"sha256:ab"}')],
  });
  assert.equal(s2.status.phase, 'Succeeded');
  assert.equal(s2.status.imageDigest, 'sha256:ab');
  assert.equal(s2.status.storePath, '/nix/store/x-img');
  assert.equal(s2.status.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
  assert.equal(
    s2.status.conditions?.some((c) => c.type === 'Reconciling' || c.type === 'Stalled'),
    false,
    'negative conditions only while true',
  );
});

const failedBuildPod = {
  metadata: { name: 'p1' },
  status: { phase: 'Failed', containerStatuses: [{ name: 'build', state: { terminated: { exitCode: 1 } } }] },
} as V1Pod;

test('build states: a failure reads the log, backs off, retries, then stalls', () => {
  const failedAt = new Date(95_000);
  const failing = {
    ...base,
    nb: nb({ phase: 'Building', attempts: 1 }),
    jobs: [job(1, 'failed', failedAt)],
    pods: [failedBuildPod],
  };
  assert.deepEqual(nextState(failing).action, { kind: 'read-log', pod: 'p1' });
  const waiting = nextState({ ...failing, failedLog: 'error: builder failed' });
  assert.equal(waiting.action.kind, 'requeue');
  assert.equal((waiting.action as { afterMs: number }).afterMs, 5000, '10 s backoff, 5 s of it passed');
  assert.equal(waiting.status.logExcerpt, 'error: builder failed');
  assert.equal(waiting.status.conditions?.find((c) => c.type === 'Ready')?.reason, 'RetryingAfterFailure');
  const retry = nextState({ ...failing, now: new Date(106_000), failedLog: 'error: builder failed' });
  assert.deepEqual(retry.action, { kind: 'create-job', attempt: 2, node: 'n1' });
  const last = nextState({
    ...base,
    nb: nb({ phase: 'Building', attempts: 3, logExcerpt: 'x' }),
    jobs: [job(1, 'failed'), job(2, 'failed'), job(3, 'failed')],
    pods: [],
  });
  assert.equal(last.status.phase, 'Failed');
  assert.equal(last.status.conditions?.find((c) => c.type === 'Stalled')?.status, 'True');
  assert.deepEqual(last.action, { kind: 'none' });
});

test('a failed attempt whose pod never started reads no log (its kubelet may be gone) and backs off at once', () => {
  const failing = {
    ...base,
    nb: nb({ phase: 'Building', attempts: 1 }),
    jobs: [job(1, 'failed', new Date(95_000))],
    pods: [
      { metadata: { name: 'p1' }, status: { phase: 'Pending' } } as V1Pod,
      {
        metadata: { name: 'p2' },
        status: {
          phase: 'Failed',
          containerStatuses: [{ name: 'build', state: { waiting: { reason: 'ContainerCreating' } } }],
        },
      } as V1Pod,
    ],
  };
  const s = nextState(failing);
  assert.equal(s.action.kind, 'requeue');
  assert.equal((s.action as { afterMs: number }).afterMs, 5000);
  const ran = nextState({
    ...failing,
    pods: [
      ...failing.pods,
      {
        metadata: { name: 'p3' },
        status: { phase: 'Running', containerStatuses: [{ name: 'build', state: { running: {} } }] },
      } as V1Pod,
    ],
  });
  assert.deepEqual(ran.action, { kind: 'read-log', pod: 'p3' });
});

test('a failure Nix says no retry can fix (a missing attribute, a syntax error) stalls at once with its error line', () => {
  const failing = {
    ...base,
    nb: nb({ phase: 'Building', attempts: 1 }),
    jobs: [job(1, 'failed', new Date(95_000))],
    pods: [failedBuildPod],
  };
  const missing =
    "[build]\nenbi: building git+http://h/app.git?rev=x#packages.x86_64-linux.nope\nerror: flake 'git+http://h/app.git?rev=x' does not provide attribute 'packages.x86_64-linux.nope', 'legacyPackages.x86_64-linux.nope' or 'nope'\nenbi: nix build failed";
  const s = nextState({ ...failing, failedLog: missing });
  assert.equal(s.status.phase, 'Failed');
  const stalled = s.status.conditions?.find((c) => c.type === 'Stalled');
  assert.equal(stalled?.reason, 'NixError');
  assert.match(
    stalled?.message ?? '',
    /^Nix cannot build this as it is \(not retried\): error: flake 'git\+http:\/\/h\/app.git\?rev=x' does not provide attribute 'packages.x86_64-linux.nope'/,
  );
  assert.deepEqual(s.action, { kind: 'none' });
  assert.equal(s.status.attempts, 1);
  for (const transient of [
    "error: builder for '/nix/store/x.drv' failed with exit code 3",
    'error: unable to download https://x: Could not resolve host',
    'error: cannot connect to socket at /nix/var/nix/daemon-socket/socket',
  ]) {
    assert.equal(nextState({ ...failing, failedLog: transient }).status.phase, 'Building', transient);
  }
  assert.match(
    nextState({ ...failing, failedLog: 'error: syntax error, unexpected end of file' }).status.conditions?.find(
      (c) => c.type === 'Stalled',
    )?.message ?? '',
    /syntax error/,
  );
});

test('a hand-written NixBuild: an unparseable flake or unknown system fails as InvalidSpec; a pinned node that cannot build waits with the reason', async () => {
  const { pinnedNodeProblem, specProblem } = await import('../../src/controller/spec-check.ts');
  const { nodeViewOf } = await import('../../src/cluster/node-view.ts');
  const { rawNode } = await import('../support/fixtures.ts');
  const bad = { ...nb(), spec: { ...nb().spec, flakeUrl: 'notaflake:x y' } };
  const invalid = specProblem(bad, POLICY);
  assert.match(invalid ?? '', /^spec\.flakeUrl: /);
  const failed = nextState({ ...base, nb: bad, jobs: [], pods: [], invalid: invalid! });
  assert.equal(failed.status.phase, 'Failed');
  assert.equal(failed.status.conditions?.find((c) => c.type === 'Stalled')?.reason, 'InvalidSpec');
  assert.match(
    specProblem({ ...nb(), spec: { ...nb().spec, system: 'x86_64-darwin' } }, POLICY) ?? '',
    /x86_64-darwin is not a Linux system/,
  );
  assert.equal(specProblem(nb(), POLICY), undefined);

  const views = new Map([
    ['amd', nodeViewOf(rawNode('amd', { arch: 'amd64' }))],
    ['arm', nodeViewOf(rawNode('arm', { arch: 'arm64' }))],
    [
      'arm-qemu',
      nodeViewOf(rawNode('arm-qemu', { arch: 'arm64', labels: { 'enbi.hrzn.ee/builds.x86_64-linux': 'true' } })),
    ],
    ['cordoned', nodeViewOf(rawNode('cordoned', { arch: 'amd64', unschedulable: true }))],
  ]);
  const pinned = (node: string) => ({ ...nb(), spec: { ...nb().spec, node } });
  assert.equal(pinnedNodeProblem(pinned('amd'), views, []), undefined);
  assert.equal(pinnedNodeProblem(pinned('arm-qemu'), views, []), undefined);
  assert.equal(pinnedNodeProblem(pinned('gone'), views, []), undefined, 'a vanished node is the node-loss path');
  assert.match(pinnedNodeProblem(pinned('cordoned'), views, []) ?? '', /cordoned/);
  const why = pinnedNodeProblem(pinned('arm'), views, []);
  assert.match(
    why ?? '',
    /spec\.node arm cannot build x86_64-linux: it builds aarch64-linux; label it enbi\.hrzn\.ee\/builds\.x86_64-linux=true/,
  );
  const waiting = nextState({
    ...base,
    nodes: new Map([['arm', { ready: true }]]),
    nb: pinned('arm'),
    jobs: [],
    pods: [],
    pinUnable: why!,
  });
  assert.equal(waiting.status.phase, 'Pending');
  assert.equal(waiting.status.conditions?.find((c) => c.type === 'Ready')?.reason, 'NoBuilderNode');
  assert.equal(waiting.action.kind, 'requeue');
});

test("Event targets from a NixBuild's workloads annotation: kinds with their API versions, at most the limit", async () => {
  const { workloadTargets } = await import('../../src/controller/events.ts');
  assert.deepEqual(workloadTargets('Pod apps/p1, Deployment web/front, CronJob ops/nightly, Widget x/y, garbage'), [
    { kind: 'Pod', apiVersion: 'v1', namespace: 'apps', name: 'p1' },
    { kind: 'Deployment', apiVersion: 'apps/v1', namespace: 'web', name: 'front' },
    { kind: 'CronJob', apiVersion: 'batch/v1', namespace: 'ops', name: 'nightly' },
  ]);
  assert.equal(workloadTargets(Array.from({ length: 30 }, (_, i) => `Pod a/p${i}`).join(', ')).length, 10);
  assert.deepEqual(workloadTargets(undefined), []);
});

test("deploy/controller.yaml's configuration is one the controller starts with", async () => {
  const { readFile } = await import('node:fs/promises');
  const { parseAllDocuments } = await import('yaml');
  const docs = parseAllDocuments(await readFile(new URL('../../deploy/controller.yaml', import.meta.url), 'utf8')).map(
    (d) => d.toJS() as { kind: string; data?: Record<string, string> },
  );
  const text = docs.find((d) => d.kind === 'ConfigMap')?.data?.['config.yaml'];
  assert.ok(text !== undefined);
  const cfg = parseControllerConfig((await import('yaml')).parse(text));
  assert.ok((cfg.allowedImages ?? []).length > 0 && (cfg.allowedFlakes ?? []).length > 0);
  assert.notEqual(cfg.listen.port, cfg.webhook.listen.port, 'probes and webhook on separate ports');
});

test('a status read back with its keys in another order, at any depth, is not a change', () => {
  const a = {
    phase: 'Building' as const,
    conditions: [
      { type: 'Ready', status: 'False' as const, reason: 'Building', message: 'm', lastTransitionTime: 't' },
    ],
    node: 'n1',
  };
  const b = {
    node: 'n1',
    conditions: [
      { lastTransitionTime: 't', message: 'm', reason: 'Building', status: 'False' as const, type: 'Ready' },
    ],
    phase: 'Building' as const,
  };
  assert.equal(statusChanged(a, b), false);
  assert.equal(statusChanged(a, { ...b, conditions: [{ ...b.conditions[0]!, message: 'other' }] }), true);
  assert.equal(statusChanged(undefined, {}), false);
});

test('manual build names (enbi build) never take a name the controller gives its builds', async () => {
  const { isControllerName, manualBuildName } = await import('../../src/build/naming.ts');
  const id = { source: `github:a/b?rev=${REV_A}`, rev: REV_A, attr: 'image', system: 'x86_64-linux' };
  assert.ok(isControllerName(nixBuildName(id)));
  assert.ok(isControllerName(nixBuildName({ ...id, node: 'n1' })));
  const manual = manualBuildName(id);
  assert.ok(!isControllerName(manual), manual);
  assert.ok(manual.length <= 52);
  assert.ok(!isControllerName('hello-arm'));
});
