// docs/design.md: "/healthz fails when work is pending and nothing has moved for 5 minutes". Against a real
// API server, with the strongest stall there is: every Job creation the controller sends hangs, never
// answered (an API server that accepts the connection and says nothing), so a build's reconcile never
// returns. The controller must say it is unhealthy once nothing has moved for stallMs (kubelet then restarts
// it), and healthy again once the work moves.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type RequestContext } from '@kubernetes/client-node';
import { GROUP, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import type { RunningController } from '../../src/controller/controller.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { applyNixBuildCrd, fakeNodes, startApiNodeController, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';
const STALL_MS = 3_000;

/** `kc` whose Job creations wait until `release()`: sent to no one meanwhile. */
function jobCreationsHang(kc: KubeConfig): { kc: KubeConfig; hung: () => number; release: () => void } {
  let hung = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const k = Object.create(kc) as KubeConfig;
  k.applySecurityAuthentication = async (ctx: RequestContext) => {
    if (String(ctx.getHttpMethod()) === 'POST' && /\/jobs(\?|$)/.test(ctx.getUrl())) {
      hung++;
      await gate;
    }
    await kc.applySecurityAuthentication(ctx);
  };
  return { kc: k, hung: () => hung, release };
}

describe('liveness: work that does not move (real API server)', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let nodes: Awaited<ReturnType<typeof fakeNodes>> | undefined;
  let controller: RunningController | undefined;
  const ns = `enbi-live-${run}`;
  const logs: string[] = [];

  before(async () => {
    c = await useCluster('control-plane');
    await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    await applyNixBuildCrd(c.kc);
    nodes = await fakeNodes(c.kc, { [`live-${run}`]: { arch: 'amd64', labels: { [POOL]: run } } });
  });

  after(async () => {
    await controller?.stop();
    await nodes?.stop();
    await c?.kc
      .makeApiClient(CoreV1Api)
      .deleteNamespace({ name: ns })
      .catch(() => undefined);
  });

  it('a reconcile that never returns makes healthy() false after stallMs, and true once it moves', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'enbi-live-'));
    await writeFile(join(dir, 'empty.yaml'), '');
    const hang = jobCreationsHang(c.kc);
    controller = await startApiNodeController(hang.kc, {
      dir,
      namespace: ns,
      pool: { [POOL]: run },
      logs,
      stallMs: STALL_MS,
    });
    controller.trigger();
    await controller.reconciled();
    assert.equal(controller.healthy(), true, 'nothing pending: healthy');
    const name = `live-${run}`;
    await c.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'NixBuild',
        metadata: { name, namespace: ns },
        spec: {
          flakeUrl: `git+http://git.invalid/live.git?rev=${'a'.repeat(40)}`,
          packageName: 'image',
          system: 'x86_64-linux',
          images: [`registry.local/${name}:v1`],
        },
      },
    });
    controller.trigger();
    await until('its Job creation hangs', async () => (hang.hung() > 0 ? true : undefined), 30_000, 50);
    const t0 = Date.now();
    assert.equal(controller.healthy(), true, 'just stuck: not yet unhealthy');
    await until('unhealthy', async () => (controller!.healthy() ? undefined : true), STALL_MS * 5, 50);
    const ms = Date.now() - t0;
    assert.ok(ms >= STALL_MS - 1000, `not before stallMs (${ms} ms)`);
    hang.release();
    await until(
      'healthy again once the work moves',
      async () => (controller!.healthy() ? true : undefined),
      30_000,
      50,
    );
    console.log(`# a stuck reconcile: unhealthy after ${ms} ms (stallMs ${STALL_MS}), healthy again once it moved`);
  });
});
