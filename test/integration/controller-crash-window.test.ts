// docs/controller.md: "the new leader finds the builds and Jobs by their deterministic names: nothing runs
// twice". The narrowest window there is: a controller that started an attempt's Job and died before its
// status said so. Against a real API server, the first controller's status writes are made to fail (as a
// crash right after the Job's creation would leave things), it is stopped, and a second one takes over with
// nothing but what the cluster holds: it adopts the Job it finds, starts no second one, and its status names
// that Job and attempt.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BatchV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig, type RequestContext } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import type { RunningController } from '../../src/controller/controller.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { applyNixBuildCrd, completeJob, fakeNodes, startApiNodeController, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';

/** `kc` whose writes to NixBuild status never arrive: the process "died" right after everything else. */
function statusWritesLost(kc: KubeConfig, lost: string[]): KubeConfig {
  const k = Object.create(kc) as KubeConfig;
  k.applySecurityAuthentication = async (ctx: RequestContext) => {
    const url = ctx.getUrl();
    if (String(ctx.getHttpMethod()) !== 'GET' && /\/nixbuilds\/[^/?]+\/status/.test(url)) {
      lost.push(url);
      throw new Error('the process died before this status write');
    }
    await kc.applySecurityAuthentication(ctx);
  };
  return k;
}

describe('a controller dying between a Job and its status (real API server)', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let nodes: Awaited<ReturnType<typeof fakeNodes>> | undefined;
  const ns = `enbi-window-${run}`;
  const logs: string[] = [];
  const running: RunningController[] = [];
  let dir: string;

  before(async () => {
    c = await useCluster('control-plane');
    await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    await applyNixBuildCrd(c.kc);
    nodes = await fakeNodes(c.kc, { [`window-${run}`]: { arch: 'amd64', labels: { [POOL]: run } } });
    dir = await mkdtemp(join(tmpdir(), 'enbi-window-'));
    await writeFile(join(dir, 'empty.yaml'), '');
  });

  after(async () => {
    for (const ctl of running) await ctl.stop();
    await nodes?.stop();
    await c?.kc
      .makeApiClient(CoreV1Api)
      .deleteNamespace({ name: ns })
      .catch(() => undefined);
    if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
  });

  it('the successor adopts the Job it finds: no second Job, and its status names that attempt', async () => {
    const custom = c.kc.makeApiClient(CustomObjectsApi);
    const jobs = async () =>
      (
        await c.kc
          .makeApiClient(BatchV1Api)
          .listNamespacedJob({ namespace: ns, labelSelector: `enbi.hrzn.ee/nixbuild=${name}` })
      ).items.map((j) => j.metadata?.name);
    const build = async () =>
      (await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        name,
      })) as NixBuild;
    const name = `window-${run}`;
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'NixBuild',
        metadata: { name, namespace: ns },
        spec: {
          flakeUrl: `git+http://git.invalid/window.git?rev=${'f'.repeat(40)}`,
          packageName: 'image',
          system: 'x86_64-linux',
          images: [`registry.local/${name}:v1`],
        },
      },
    });
    const opts = { dir, namespace: ns, pool: { [POOL]: run }, logs };
    const lost: string[] = [];
    const first = await startApiNodeController(statusWritesLost(c.kc, lost), { ...opts, metrics: newMetrics() });
    running.push(first);
    first.trigger();
    await until(
      'the first controller starts the Job',
      async () => ((await jobs()).length > 0 ? true : undefined),
      30_000,
      100,
    );
    await until('its status write is lost', async () => (lost.length > 0 ? true : undefined), 30_000, 100);
    await first.stop();
    running.splice(running.indexOf(first), 1);
    assert.deepEqual(await jobs(), [`${name}-1`]);
    assert.equal((await build()).status?.attempts, undefined, 'the status never said the attempt started');

    const second = await startApiNodeController(c.kc, { ...opts, metrics: newMetrics() });
    running.push(second);
    second.trigger();
    const adopted = await until(
      'the successor reports the attempt it found',
      async () => {
        const b = await build();
        return b.status?.buildJobName === `${name}-1` ? b : undefined;
      },
      30_000,
      100,
    );
    assert.equal(adopted.status?.attempts, 1);
    assert.equal(adopted.status?.phase, 'Building');
    assert.equal(adopted.status?.node, `window-${run}`, 'the node of the Job it found');
    // It finishes that attempt: still one Job.
    await completeJob(c.kc, ns, `${name}-1`);
    await until(
      'Succeeded',
      async () => ((await build()).status?.phase === 'Succeeded' ? true : undefined),
      30_000,
      100,
    );
    // Time for a second Job to appear, if the successor were to start one: passes and reconciles take ms here.
    await new Promise((r) => setTimeout(r, 3000));
    assert.deepEqual(await jobs(), [`${name}-1`], 'one Job for the one attempt');
  });
});
