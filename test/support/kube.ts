// Helpers for tests against the real API server: waiting, the CRD, and API-object nodes that stay Ready
// (their Leases are renewed, so the node lifecycle controller does not mark them unreachable).
import { readFile } from 'node:fs/promises';
import { ApiextensionsV1Api, CoordinationV1Api, CoreV1Api, type KubeConfig, type V1Node } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { rawNode, type NodeOptions } from './fixtures.ts';

export async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000, everyMs = 200): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last !== undefined ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function applyNixBuildCrd(kc: KubeConfig): Promise<void> {
  const crd = parse(await readFile(new URL('../../deploy/crd/nixbuilds.enbi.hrzn.ee.yaml', import.meta.url), 'utf8'));
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  try {
    await ext.createCustomResourceDefinition({ body: crd });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
    const current = await ext.readCustomResourceDefinition({ name: crd.metadata.name });
    await ext.replaceCustomResourceDefinition({ name: crd.metadata.name, body: { ...crd, metadata: { ...crd.metadata, resourceVersion: current.metadata?.resourceVersion } } });
  }
  await until('the NixBuild CRD to be Established', async () => {
    const got = await ext.readCustomResourceDefinition({ name: crd.metadata.name });
    return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ? true : undefined;
  });
}

/** Creates API-object nodes and keeps them Ready until `stop()`. */
export async function fakeNodes(kc: KubeConfig, specs: Record<string, NodeOptions>): Promise<{ names: string[]; stop: () => Promise<void> }> {
  const core = kc.makeApiClient(CoreV1Api);
  const leases = kc.makeApiClient(CoordinationV1Api);
  const names = Object.keys(specs);
  const renew = async () => {
    for (const name of names) {
      const body = { metadata: { name, namespace: 'kube-node-lease' }, spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: new Date() } };
      await leases.replaceNamespacedLease({ name, namespace: 'kube-node-lease', body: body as never }).catch(() => leases.createNamespacedLease({ namespace: 'kube-node-lease', body: body as never }).catch(() => undefined));
    }
  };
  for (const [name, o] of Object.entries(specs)) {
    const raw = rawNode(name, o) as unknown as V1Node;
    await core.deleteNode({ name }).catch(() => undefined);
    await until(`old node ${name} to go`, async () => ((await core.readNode({ name }).then(() => false, () => true)) ? true : undefined));
    await core.createNode({ body: { ...raw, status: undefined } as V1Node });
    // The node lifecycle controller writes to new nodes too: retry on conflict.
    await until(`status of node ${name}`, async () => {
      const current = await core.readNode({ name });
      await core.replaceNodeStatus({ name, body: { ...raw, spec: current.spec, metadata: current.metadata } as V1Node });
      return true;
    }, 20_000, 100);
  }
  await renew();
  const timer = setInterval(() => void renew(), 5000);
  return {
    names,
    stop: async () => {
      clearInterval(timer);
      for (const name of names) await core.deleteNode({ name }).catch(() => undefined);
    },
  };
}
