// Kubernetes Events on NixBuilds and on the workloads that needed them. An Event that cannot be written
// is logged and never fails the reconcile.
import type { CoreV1Api } from '@kubernetes/client-node';

export interface EventTarget {
  namespace: string;
  kind: string;
  apiVersion: string;
  name: string;
  uid?: string;
}

export async function recordEvent(core: CoreV1Api, target: EventTarget, type: 'Normal' | 'Warning', reason: string, message: string, log: (m: string) => void): Promise<void> {
  const now = new Date();
  try {
    await core.createNamespacedEvent({
      namespace: target.namespace,
      body: {
        metadata: { generateName: `${target.name}.`, namespace: target.namespace },
        involvedObject: { kind: target.kind, apiVersion: target.apiVersion, name: target.name, namespace: target.namespace, ...(target.uid !== undefined ? { uid: target.uid } : {}) },
        type,
        reason,
        message: message.slice(0, 1024),
        source: { component: 'enbi-controller' },
        reportingComponent: 'enbi.hrzn.ee/controller',
        reportingInstance: process.env.HOSTNAME ?? 'enbi',
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
  } catch (err) {
    log(`could not record event ${reason} on ${target.kind} ${target.namespace}/${target.name}: ${(err as Error).message.split('\n')[0]}`);
  }
}
