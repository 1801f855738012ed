// The pod template of each workload kind enbi knows; every other kind is ignored.
import { PREFIX } from '../contract/keys.ts';
import type { Problem } from '../problems.ts';
import type { PodScheduling } from '../plan/scheduling.ts';
import type { ManifestObject } from './scan.ts';

export interface ContainerSpec {
  name: string;
  image?: string;
  imagePullPolicy?: string;
  init: boolean;
}

export interface Workload {
  kind: string;
  namespace: string;
  name: string;
  file?: string;
  line?: number;
  /** What rendered it, for a workload from kustomize or helm: "Kustomization flux-system/apps → apps/prod". */
  origin?: string;
  /** Annotations of the pod template (of the Pod itself for a Pod). */
  annotations: Record<string, unknown>;
  containers: ContainerSpec[];
  scheduling: PodScheduling;
}

export const WORKLOAD_KINDS = [
  'Deployment',
  'StatefulSet',
  'DaemonSet',
  'ReplicaSet',
  'Job',
  'CronJob',
  'Pod',
] as const;

type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined;

export function workloadId(w: Pick<Workload, 'kind' | 'namespace' | 'name'>): string {
  return `${w.kind} ${w.namespace}/${w.name}`;
}

/** Whether the pod template carries any enbi annotation (the workload is enbi's to plan). */
export function isEnbiAnnotated(w: Pick<Workload, 'annotations'>): boolean {
  return Object.keys(w.annotations).some((k) => k.startsWith(PREFIX));
}

/** The pod template of a workload object: `{metadata, spec}` or undefined when the kind has none. */
function podTemplateOf(kind: string, object: Obj): Obj | undefined {
  const spec = asObj(object.spec);
  switch (kind) {
    case 'Pod':
      return object;
    case 'CronJob':
      return asObj(asObj(asObj(spec?.jobTemplate)?.spec)?.template);
    default:
      return asObj(spec?.template);
  }
}

export function extractWorkloads(
  objects: readonly ManifestObject[],
  defaultNamespace = 'default',
): { workloads: Workload[]; problems: Problem[] } {
  const workloads: Workload[] = [];
  const problems: Problem[] = [];
  for (const { file, line, object } of objects) {
    const kind = object.kind;
    if (typeof kind !== 'string' || !(WORKLOAD_KINDS as readonly string[]).includes(kind)) continue;
    if (typeof object.apiVersion !== 'string') continue;
    const metadata = asObj(object.metadata);
    // A Job (or Pod) created with generateName gets its name from the API server: the prefix names it here.
    const name = typeof metadata?.name === 'string' && metadata.name !== '' ? metadata.name : metadata?.generateName;
    const namespace = typeof metadata?.namespace === 'string' ? metadata.namespace : defaultNamespace;
    const id = `${kind} ${namespace}/${typeof name === 'string' ? name : '?'}`;
    if (typeof name !== 'string' || name === '') {
      problems.push({ file, line, object: id, message: 'workload has no metadata.name (nor generateName)' });
      continue;
    }
    const template = podTemplateOf(kind, object);
    const podSpec = asObj(template?.spec);
    if (podSpec === undefined || !Array.isArray(podSpec.containers)) {
      problems.push({ file, line, object: id, message: 'workload has no pod template with spec.containers' });
      continue;
    }
    workloads.push({
      kind,
      namespace,
      name,
      file,
      line,
      annotations: asObj(asObj(template?.metadata)?.annotations) ?? {},
      containers: [...containersOf(podSpec.initContainers, true), ...containersOf(podSpec.containers, false)],
      scheduling: schedulingOf(podSpec, kind === 'DaemonSet'),
    });
  }
  return { workloads, problems };
}

function containersOf(list: unknown, init: boolean): ContainerSpec[] {
  if (!Array.isArray(list)) return [];
  return list.flatMap((c) => {
    const o = asObj(c);
    if (o === undefined || typeof o.name !== 'string') return [];
    const spec: ContainerSpec = { name: o.name, init };
    if (typeof o.image === 'string') spec.image = o.image;
    if (typeof o.imagePullPolicy === 'string') spec.imagePullPolicy = o.imagePullPolicy;
    return [spec];
  });
}

/** The scheduling-relevant part of a pod spec (also used for live Pods from the API). */
export function schedulingOf(podSpec: Obj, daemonSet: boolean): PodScheduling {
  const scheduling: PodScheduling = {};
  if (typeof podSpec.nodeName === 'string' && podSpec.nodeName !== '') scheduling.nodeName = podSpec.nodeName;
  const selector = asObj(podSpec.nodeSelector);
  if (selector !== undefined)
    scheduling.nodeSelector = Object.fromEntries(Object.entries(selector).map(([k, v]) => [k, String(v)]));
  const required = asObj(asObj(asObj(podSpec.affinity)?.nodeAffinity)?.requiredDuringSchedulingIgnoredDuringExecution);
  if (Array.isArray(required?.nodeSelectorTerms))
    scheduling.requiredTerms = required.nodeSelectorTerms as PodScheduling['requiredTerms'];
  if (Array.isArray(podSpec.tolerations)) scheduling.tolerations = podSpec.tolerations as PodScheduling['tolerations'];
  if (daemonSet) scheduling.daemonSet = true;
  return scheduling;
}
