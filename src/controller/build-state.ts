// The NixBuild state machine, pure: from the build, its Jobs and their pods to the next status and what
// to do. Conditions follow kstatus (Ready, Reconciling, Stalled), negative ones only while true.
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { Condition, NixBuild, NixBuildStatus } from '../api/nixbuild.ts';

/** Reasons, as they appear in conditions and Events. */
export const Reason = {
  Building: 'Building',
  Retrying: 'RetryingAfterFailure',
  Succeeded: 'Succeeded',
  BuildFailed: 'BuildFailed',
  NoBuilder: 'NoBuilderNode',
  InvalidSpec: 'InvalidSpec',
} as const;

export interface BuildObservation {
  nb: NixBuild;
  /** Jobs labelled with this build, any attempt. */
  jobs: V1Job[];
  /** Pods of the latest attempt's Job. */
  pods: V1Pod[];
  node: string | undefined;
  now: Date;
  maxAttempts: number;
  retryBaseSeconds: number;
  /** The end of the failed attempt's build log, when it has been read. */
  failedLog?: string;
  /** Set when the spec cannot be built as it is (a spec change is needed). */
  invalid?: string;
}

export type BuildAction = { kind: 'none' } | { kind: 'create-job'; attempt: number } | { kind: 'requeue'; afterMs: number } | { kind: 'read-log'; pod: string };

export function attemptOf(job: V1Job): number {
  const n = Number(job.metadata?.name?.split('-').pop());
  return Number.isInteger(n) ? n : 0;
}

function jobState(job: V1Job): 'running' | 'complete' | 'failed' {
  const conditions = job.status?.conditions ?? [];
  if (conditions.some((c) => c.type === 'Complete' && c.status === 'True')) return 'complete';
  if (conditions.some((c) => (c.type === 'Failed' || c.type === 'FailureTarget') && c.status === 'True')) return 'failed';
  return 'running';
}

function terminationMessage(pods: V1Pod[], container: string): Record<string, string> {
  for (const pod of pods) {
    const msg = pod.status?.containerStatuses?.find((c) => c.name === container)?.state?.terminated?.message;
    if (msg !== undefined) {
      try {
        return JSON.parse(msg) as Record<string, string>;
      } catch {
        // FallbackToLogsOnError put a log tail here instead of our JSON.
      }
    }
  }
  return {};
}

function failedPod(pods: V1Pod[]): V1Pod | undefined {
  return pods.find((p) => p.status?.phase === 'Failed') ?? pods[0];
}

export function nextState(o: BuildObservation): { status: NixBuildStatus; action: BuildAction } {
  const prev = o.nb.status ?? {};
  const generation = o.nb.metadata.generation ?? 1;
  const status: NixBuildStatus = { ...prev, observedGeneration: generation, system: o.nb.spec.system };
  if (o.node !== undefined) status.node = o.node;
  const first = o.nb.spec.images?.[0];
  if (first !== undefined) status.image = first;
  const set = (phase: NixBuildStatus['phase'], conditions: Condition[]) => {
    status.phase = phase;
    status.conditions = mergeConditions(prev.conditions ?? [], conditions, o.now, generation);
  };
  const cond = (type: string, s: Condition['status'], reason: string, message: string): Condition => ({ type, status: s, reason, message, lastTransitionTime: o.now.toISOString() });

  if (o.invalid !== undefined) {
    set('Failed', [cond('Ready', 'False', Reason.InvalidSpec, o.invalid), cond('Stalled', 'True', Reason.InvalidSpec, o.invalid)]);
    return { status, action: { kind: 'none' } };
  }
  if (o.node === undefined) {
    const msg = `no Ready node can build ${o.nb.spec.system}`;
    set('Pending', [cond('Ready', 'False', Reason.NoBuilder, msg), cond('Reconciling', 'True', Reason.NoBuilder, msg)]);
    return { status, action: { kind: 'requeue', afterMs: 30_000 } };
  }
  const latest = [...o.jobs].sort((a, b) => attemptOf(b) - attemptOf(a))[0];
  if (latest === undefined) {
    if (prev.phase === 'Succeeded') return { status, action: { kind: 'none' } };
    status.attempts = 1;
    status.buildJobName = `${o.nb.metadata.name}-1`;
    status.startTime = o.now.toISOString();
    set('Building', [cond('Ready', 'Unknown', Reason.Building, `attempt 1 of ${o.maxAttempts} on ${o.node}`), cond('Reconciling', 'True', Reason.Building, `building on ${o.node}`)]);
    return { status, action: { kind: 'create-job', attempt: 1 } };
  }
  const attempt = attemptOf(latest);
  status.attempts = attempt;
  status.buildJobName = latest.metadata?.name;
  status.startTime ??= latest.status?.startTime?.toISOString() ?? o.now.toISOString();
  const state = jobState(latest);
  if (state === 'running') {
    set('Building', [cond('Ready', 'Unknown', Reason.Building, `attempt ${attempt} of ${o.maxAttempts} on ${o.node}`), cond('Reconciling', 'True', Reason.Building, `building on ${o.node}`)]);
    return { status, action: { kind: 'none' } };
  }
  if (state === 'complete') {
    const built = terminationMessage(o.pods, 'build');
    const imported = terminationMessage(o.pods, 'import');
    if (built.storePath !== undefined) status.storePath = built.storePath;
    if (imported.digest !== undefined) status.imageDigest = imported.digest;
    if (imported.image !== undefined) status.image = imported.image;
    status.completionTime ??= latest.status?.completionTime?.toISOString() ?? o.now.toISOString();
    delete status.logExcerpt;
    set('Succeeded', [cond('Ready', 'True', Reason.Succeeded, `imported ${status.image ?? ''} ${status.imageDigest ?? ''} on ${o.node}`.trim())]);
    return { status, action: { kind: 'none' } };
  }
  // Failed: read the log once, then retry with backoff or stall.
  const pod = failedPod(o.pods);
  if (o.failedLog === undefined && pod?.metadata?.name !== undefined && prev.logExcerpt === undefined) {
    return { status, action: { kind: 'read-log', pod: pod.metadata.name } };
  }
  if (o.failedLog !== undefined) status.logExcerpt = o.failedLog;
  const reason = failureReason(latest, o.pods);
  if (attempt >= o.maxAttempts) {
    status.completionTime ??= o.now.toISOString();
    const msg = `${attempt} attempt${attempt === 1 ? '' : 's'} failed; last: ${reason}`;
    set('Failed', [cond('Ready', 'False', Reason.BuildFailed, msg), cond('Stalled', 'True', Reason.BuildFailed, msg)]);
    return { status, action: { kind: 'none' } };
  }
  const failedAt = latest.status?.conditions?.find((c) => c.type === 'Failed')?.lastTransitionTime ?? o.now;
  const waitMs = o.retryBaseSeconds * 1000 * 2 ** (attempt - 1) - (o.now.getTime() - new Date(failedAt).getTime());
  const msg = `attempt ${attempt} failed (${reason}); attempt ${attempt + 1} of ${o.maxAttempts}`;
  set('Building', [cond('Ready', 'False', Reason.Retrying, msg), cond('Reconciling', 'True', Reason.Retrying, msg)]);
  if (waitMs > 0) return { status, action: { kind: 'requeue', afterMs: waitMs } };
  status.logExcerpt = o.failedLog ?? prev.logExcerpt;
  status.buildJobName = `${o.nb.metadata.name}-${attempt + 1}`;
  status.attempts = attempt + 1;
  return { status, action: { kind: 'create-job', attempt: attempt + 1 } };
}

function failureReason(job: V1Job, pods: V1Pod[]): string {
  for (const pod of pods) {
    for (const c of pod.status?.containerStatuses ?? []) {
      const t = c.state?.terminated;
      if (t !== undefined && t.exitCode !== 0) return `${c.name} exited ${t.exitCode}${t.reason !== undefined ? ` (${t.reason})` : ''}`;
    }
  }
  const failed = job.status?.conditions?.find((c) => c.type === 'Failed');
  return failed?.message ?? failed?.reason ?? 'the Job failed';
}

/** New conditions replace old ones of the same type; a condition keeps its transition time while its status holds. */
function mergeConditions(old: Condition[], next: Condition[], now: Date, generation: number): Condition[] {
  return next.map((c) => {
    const before = old.find((o) => o.type === c.type);
    const lastTransitionTime = before !== undefined && before.status === c.status ? before.lastTransitionTime : now.toISOString();
    return { ...c, lastTransitionTime, observedGeneration: generation };
  });
}

/** True when writing `next` would change what the API server holds. */
export function statusChanged(prev: NixBuildStatus | undefined, next: NixBuildStatus): boolean {
  return JSON.stringify(normalize(prev ?? {})) !== JSON.stringify(normalize(next));
}

function normalize(s: NixBuildStatus): unknown {
  return Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : 1)));
}
