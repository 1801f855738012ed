// The test cluster's control plane is a real one: CRDs, the status subresource and watches behave.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApiextensionsV1Api, CoreV1Api, CustomObjectsApi, VersionApi, Watch } from '@kubernetes/client-node';
import { clusterSkipReason, useCluster, type ClusterInfo } from '../cluster/harness.ts';
import { until } from '../support/kube.ts';

const group = 'clustertest.enbi.test';
const plural = 'widgets';
const crdName = `${plural}.${group}`;

interface Widget {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; generation?: number };
  spec: { size: number };
  status?: { observedSize?: number; phase?: string };
}

describe('test cluster: control plane', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let ns: string;

  before(async () => {
    c = await useCluster('control-plane');
    ns = `cp-test-${Date.now().toString(36)}`;
    await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
  });

  after(async () => {
    if (!c) return;
    await c.kc
      .makeApiClient(CoreV1Api)
      .deleteNamespace({ name: ns })
      .catch(() => undefined);
    await c.kc
      .makeApiClient(ApiextensionsV1Api)
      .deleteCustomResourceDefinition({ name: crdName })
      .catch(() => undefined);
  });

  it('serves the version it was built as', async () => {
    const info = await c.kc.makeApiClient(VersionApi).getCode();
    assert.equal(info.gitVersion, c.state.kubernetesVersion);
  });

  it('applies a CRD, keeps status apart from spec, and a watch sees the status change', async () => {
    const ext = c.kc.makeApiClient(ApiextensionsV1Api);
    await ext.createCustomResourceDefinition({
      body: {
        metadata: { name: crdName },
        spec: {
          group,
          scope: 'Namespaced',
          names: { plural, singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
          versions: [
            {
              name: 'v1',
              served: true,
              storage: true,
              subresources: { status: {} },
              schema: {
                openAPIV3Schema: {
                  type: 'object',
                  properties: {
                    spec: { type: 'object', properties: { size: { type: 'integer', minimum: 1 } }, required: ['size'] },
                    status: {
                      type: 'object',
                      properties: { observedSize: { type: 'integer' }, phase: { type: 'string' } },
                    },
                  },
                },
              },
            },
          ],
        },
      },
    });
    await until('the CRD to be Established', async () => {
      const crd = await ext.readCustomResourceDefinition({ name: crdName });
      return crd.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True') ? true : undefined;
    });

    const co = c.kc.makeApiClient(CustomObjectsApi);
    const ref = { group, version: 'v1', namespace: ns, plural };
    const created = (await until('the Widget to be created', () =>
      co.createNamespacedCustomObject({
        ...ref,
        body: {
          apiVersion: `${group}/v1`,
          kind: 'Widget',
          metadata: { name: 'w1' },
          spec: { size: 3 },
          status: { phase: 'ignored' },
        },
      }),
    )) as Widget;
    // With a status subresource, status in a create is dropped.
    assert.equal(created.status, undefined);
    // The API server validates against the schema: a size of 0 is refused.
    await assert.rejects(
      co.createNamespacedCustomObject({
        ...ref,
        body: { apiVersion: `${group}/v1`, kind: 'Widget', metadata: { name: 'bad' }, spec: { size: 0 } },
      }),
      (e: { code?: number }) => e.code === 422,
    );

    const seen: Widget[] = [];
    const watch = new Watch(c.kc);
    const gotStatus = new Promise<Widget>((resolve, reject) => {
      void watch
        .watch(
          `/apis/${group}/v1/namespaces/${ns}/${plural}`,
          { resourceVersion: created.metadata.resourceVersion },
          (type: string, obj: Widget) => {
            seen.push(obj);
            if (type === 'MODIFIED' && obj.status?.phase === 'Ready') resolve(obj);
          },
          (err: unknown) => err && reject(err as Error),
        )
        .then((ctl) => gotStatus.finally(() => ctl.abort()));
    });

    const withStatus = (await co.replaceNamespacedCustomObjectStatus({
      ...ref,
      name: 'w1',
      body: { ...created, status: { observedSize: 3, phase: 'Ready' } },
    })) as Widget;
    assert.equal(withStatus.status?.phase, 'Ready');
    // Status writes do not bump generation; spec writes do.
    assert.equal(withStatus.metadata.generation, created.metadata.generation);

    let timer: NodeJS.Timeout | undefined;
    const event = await Promise.race([
      gotStatus,
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new Error(`watch saw no status change; saw ${JSON.stringify(seen)}`)), 15_000);
      }),
    ]).finally(() => clearTimeout(timer));
    assert.equal(event.status?.observedSize, 3);

    const read = (await co.getNamespacedCustomObject({ ...ref, name: 'w1' })) as Widget;
    assert.deepEqual(read.status, { observedSize: 3, phase: 'Ready' });

    // A write to the main resource ignores status changes.
    const updated = (await co.replaceNamespacedCustomObject({
      ...ref,
      name: 'w1',
      body: { ...read, spec: { size: 5 }, status: { phase: 'Failed' } },
    })) as Widget;
    assert.equal(updated.spec.size, 5);
    assert.equal(updated.status?.phase, 'Ready');
    assert.equal(updated.metadata.generation, (created.metadata.generation ?? 0) + 1);
  });
});
