// deploy/ is what users apply: the API server accepts every object, and the controller does its work with
// exactly the permissions of deploy/rbac.yaml (a ServiceAccount token, not the admin's).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { parseControllerConfig } from '../../src/controller/config.ts';
import { startController } from '../../src/controller/controller.ts';
import { newMetrics } from '../../src/controller/metrics.ts';
import { sourceState } from '../../src/controller/source-state.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { deployment, REV_A, yamlDocs } from '../support/fixtures.ts';
import { applyNixBuildCrd, fakeNodes, until } from '../support/kube.ts';

const NS = 'enbi-system';
const run = Date.now().toString(36);

async function deployObjects(file: string): Promise<KubernetesObject[]> {
  const text = await readFile(new URL(`../../deploy/${file}`, import.meta.url), 'utf8');
  return parseAllDocuments(text).map((d) => d.toJS() as KubernetesObject);
}

describe('deploy/ manifests', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let nodes: Awaited<ReturnType<typeof fakeNodes>> | undefined;
  before(async () => {
    c = await useCluster('control-plane');
    await applyNixBuildCrd(c.kc);
  });
  after(async () => {
    await nodes?.stop();
    await c?.kc
      .makeApiClient(CoreV1Api)
      .deleteNamespace({ name: NS })
      .catch(() => undefined);
  });

  it('every object is accepted by the API server', async () => {
    const api = KubernetesObjectApi.makeApiClient(c.kc);
    for (const file of ['namespace.yaml', 'rbac.yaml', 'controller.yaml']) {
      for (const obj of await deployObjects(file)) {
        await api.create(obj).catch((err: unknown) => {
          if ((err as { code?: number }).code !== 409)
            throw new Error(`${file}: ${obj.kind} ${obj.metadata?.name}: ${(err as Error).message.split('\n')[0]}`);
        });
      }
    }
    const dep = await api.read({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'enbi-controller', namespace: NS },
    });
    assert.equal(dep.metadata?.name, 'enbi-controller');
  });

  it('the controller plans and starts builds with only the ServiceAccount of deploy/rbac.yaml', async () => {
    const core = c.kc.makeApiClient(CoreV1Api);
    const token = await core.createNamespacedServiceAccountToken({
      name: 'enbi-controller',
      namespace: NS,
      body: { spec: { audiences: [], expirationSeconds: 3600 } },
    });
    const cluster = c.kc.getCurrentCluster()!;
    const sa = new KubeConfig();
    sa.loadFromOptions({
      clusters: [cluster],
      users: [{ name: 'enbi-controller', token: token.status?.token ?? '' }],
      contexts: [{ name: 'sa', cluster: cluster.name, user: 'enbi-controller' }],
      currentContext: 'sa',
    });
    // The token really is not the admin: it cannot list Secrets.
    await assert.rejects(
      sa.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: NS }),
      (e: { code?: number }) => e.code === 403,
    );

    nodes = await fakeNodes(c.kc, {
      [`rbac-amd-${run}`]: { arch: 'amd64', labels: { 'enbi.test/pool': `rbac-${run}` } },
    });
    const dir = await mkdtemp(join(tmpdir(), 'enbi-rbac-'));
    await writeFile(
      join(dir, 'app.yaml'),
      yamlDocs(
        deployment('rbac', {
          flake: `git+http://git.invalid/rbac.git?rev=${REV_A}#image`,
          annotations: { 'enbi.hrzn.ee/build': 'eager' },
          nodeSelector: { 'enbi.test/pool': `rbac-${run}` },
        }),
      ),
    );
    const cfg = parseControllerConfig({
      source: { dir },
      namespace: NS,
      builderImage: 'b:1',
      importerImage: 'i:1',
      containerdSocket: '/run/containerd/containerd.sock',
      allowedImages: ['registry.local/'],
      allowedFlakes: ['http://git.invalid/'],
    });
    const logs: string[] = [];
    const ctl = await startController({
      cfg,
      kc: sa,
      source: sourceState(cfg, join(dir, '.cache'), undefined, (m) => logs.push(m)),
      metrics: newMetrics(),
      log: (m) => logs.push(m),
    });
    try {
      ctl.trigger(true);
      const nb = await until(
        'a NixBuild with status written by the ServiceAccount',
        async () => {
          const list = (await c.kc
            .makeApiClient(CustomObjectsApi)
            .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL })) as {
            items: NixBuild[];
          };
          return list.items.find((b) => b.status?.node === `rbac-amd-${run}` && b.status?.phase === 'Building');
        },
        30_000,
      );
      assert.equal(nb.status?.buildJobName, `${nb.metadata.name}-1`);
      // JSON log lines: the message, not the timestamp (".403Z"), says whether a request was refused.
      const message = (l: string) => (l.startsWith('{') ? (JSON.parse(l) as { msg: string }).msg : l);
      const refused = logs.map(message).filter((m) => /forbidden|\b403\b/i.test(m));
      assert.deepEqual(refused, [], 'no request was refused');
      // Leader election with the same token: the Lease it may create and renew, and the sync Lease a standby
      // stamps (created on first use, then patched) and the leader reads.
      const { startLeaderElection } = await import('../../src/controller/leader.ts');
      const { jsonLogger } = await import('../../src/controller/log.ts');
      const { SYNC_REQUESTED_BY } = await import('../../src/controller/sync-request.ts');
      let syncs = 0;
      const election = startLeaderElection({
        kc: sa,
        namespace: NS,
        name: 'enbi-controller',
        identity: `rbac-${run}`,
        leaseSeconds: 4,
        renewSeconds: 1,
        retrySeconds: 0.5,
        syncSpacingMs: 100,
        log: jsonLogger((l) => logs.push(l)),
        onStartedLeading: () => undefined,
        onStoppedLeading: () => undefined,
        onSyncRequested: () => syncs++,
      });
      try {
        await until('the ServiceAccount to lead', async () => (election.isLeader() ? true : undefined), 15_000, 100);
        await election.requestSync();
        await election.requestSync();
        await until('the leader to read the sync requests', async () => (syncs >= 1 ? true : undefined), 5_000, 100);
        await new Promise((r) => setTimeout(r, 2500));
        assert.equal(election.isLeader(), true, 'still leading after renewals');
        const { CoordinationV1Api } = await import('@kubernetes/client-node');
        const leases = c.kc.makeApiClient(CoordinationV1Api);
        assert.equal(
          (await leases.readNamespacedLease({ namespace: NS, name: 'enbi-controller-sync' })).metadata?.annotations?.[
            SYNC_REQUESTED_BY
          ],
          `rbac-${run}`,
        );
        assert.deepEqual(
          Object.keys(
            (await leases.readNamespacedLease({ namespace: NS, name: 'enbi-controller' })).metadata?.annotations ?? {},
          ),
          [],
          'the election Lease is not written for a sync',
        );
        // Exactly the Leases of the Role: another name is refused.
        await assert.rejects(
          sa.makeApiClient(CoordinationV1Api).readNamespacedLease({ namespace: NS, name: 'someone-elses' }),
          (e: { code?: number }) => e.code === 403,
        );
      } finally {
        await election.stop();
      }
      assert.deepEqual(
        logs.map(message).filter((m) => /forbidden|\b403\b/i.test(m)),
        [],
        'no lease request was refused',
      );
    } finally {
      await ctl.stop();
    }
  });
});
