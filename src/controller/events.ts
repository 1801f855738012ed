// Kubernetes Events on NixBuilds and on the workloads that needed them. An Event that cannot be written
// is logged and never fails the reconcile. Every message goes through the printable filter logs use: it
// carries text from others (a pod's image string, a build's error line).
import type { CoreV1Api } from '@kubernetes/client-node';
import { apiMessage } from '../kube/errors.ts';
import { CONTROLLER_FIELD_MANAGER } from '../kube/field-manager.ts';
import { printable } from '../text/printable.ts';

const EVENT_MESSAGE_MAX = 1024;

/** An Event's message: control characters escaped as in logs, at most 1024 characters, no escape cut in half. */
export function eventMessage(message: string): string {
  const text = printable(message);
  if (text.length <= EVENT_MESSAGE_MAX) return text;
  return text.slice(0, EVENT_MESSAGE_MAX).replace(/(\\(x[0-9a-f]?|u(\{[0-9a-f]*)?)?|[\ud800-\udbff])$/, '');
}

export interface EventTarget {
  namespace: string;
  kind: string;
  apiVersion: string;
  name: string;
  uid?: string;
}

export async function recordEvent(
  core: CoreV1Api,
  target: EventTarget,
  type: 'Normal' | 'Warning',
  reason: string,
  message: string,
  log: (m: string) => void,
): Promise<void> {
  const now = new Date();
  try {
    await core.createNamespacedEvent({
      namespace: target.namespace,
      body: {
        metadata: { generateName: `${target.name}.`, namespace: target.namespace },
        involvedObject: {
          kind: target.kind,
          apiVersion: target.apiVersion,
          name: target.name,
          namespace: target.namespace,
          ...(target.uid !== undefined ? { uid: target.uid } : {}),
        },
        type,
        reason,
        message: eventMessage(message),
        source: { component: 'enbi-controller' },
        reportingComponent: 'enbi.hrzn.ee/controller',
        reportingInstance: process.env.HOSTNAME ?? 'enbi',
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
      fieldManager: CONTROLLER_FIELD_MANAGER,
    });
  } catch (err) {
    const why = apiMessage(err);
    // A namespace being deleted takes no new objects, and its pods are going: nothing to tell.
    if (/because it is being terminated/.test(why)) return;
    log(`could not record event ${reason} on ${target.kind} ${target.namespace}/${target.name}: ${why}`);
  }
}

const API_VERSION_OF_KIND: Readonly<Record<string, string>> = {
  Pod: 'v1',
  Deployment: 'apps/v1',
  StatefulSet: 'apps/v1',
  DaemonSet: 'apps/v1',
  ReplicaSet: 'apps/v1',
  Job: 'batch/v1',
  CronJob: 'batch/v1',
};

/**
 * The workloads a NixBuild was made for (its enbi.hrzn.ee/workloads annotation: "Kind ns/name, …"), as
 * Event targets: at most `limit`, so that a build for hundreds of pods does not write hundreds of Events.
 */
export function workloadTargets(annotation: string | undefined, limit = 10): EventTarget[] {
  const out: EventTarget[] = [];
  for (const id of (annotation ?? '').split(', ')) {
    const m = /^(\w+) ([^/\s]+)\/(\S+)$/.exec(id.trim());
    const apiVersion = m !== null ? API_VERSION_OF_KIND[m[1]!] : undefined;
    if (m === null || apiVersion === undefined) continue;
    out.push({ kind: m[1]!, apiVersion, namespace: m[2]!, name: m[3]! });
    if (out.length >= limit) break;
  }
  return out;
}
