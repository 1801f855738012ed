// The NixBuild state machine, pure: from the build, its Jobs and their pods to the next status and what
// to do. Conditions follow kstatus (Ready, Reconciling, Stalled), negative ones only while true.
import { entryProblem, type PlatformManifest } from '../image/platform-index.ts';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { Condition, NixBuild, NixBuildStatus } from '../api/nixbuild.ts';
import { jobNodeOf } from '../build/job.ts';
import type { NodeView } from '../cluster/node-view.ts';
import { permanentNixError } from '../build/nix-errors.ts';
import { printable } from '../text/printable.ts';

/** Reasons, as they appear in conditions and Events. */
export const Reason = {
  Building: 'Building',
  Retrying: 'RetryingAfterFailure',
  Succeeded: 'Succeeded',
  BuildFailed: 'BuildFailed',
  NoBuilder: 'NoBuilderNode',
  InvalidSpec: 'InvalidSpec',
  /** Its name is one enbi gives a planned build, but its spec is not that build's: enbi neither builds nor adopts it. */
  NotAdopted: 'NotAdopted',
  /** Nix cannot evaluate the flake as it is (missing attribute, syntax error, ...): retrying cannot help. */
  NixError: 'NixError',
  /** A name reserved for the controller's builds, not planned now: it waits until a workload needs it. */
  NotPlanned: 'NotPlanned',
  NodeLost: 'NodeLost',
  ImageMissing: 'ImageMissing',
  /** One of its image names is declared in Git with another flake: enbi never builds it (src/plan/claims.ts). */
  ImageClaimed: 'ImageClaimed',
  /** A Git source is configured and not read yet: a build that has not started waits for Git's claims. */
  SourcePending: 'WaitingForSource',
} as const;

/** What the state machine needs to know of a node. */
export type NodeHealth = Pick<NodeView, 'ready' | 'readySince'>;

export interface BuildObservation {
  nb: NixBuild;
  /** Jobs labelled with this build, any attempt. */
  jobs: V1Job[];
  /** Pods of the latest attempt's Job. */
  pods: V1Pod[];
  /** Nodes as the informer shows them: a build's node that is absent was deleted. */
  nodes: ReadonlyMap<string, NodeHealth>;
  /** Where a build without a node, or one that must move, would go (the planner's builder choice); asked only then. */
  candidate: () => string | undefined;
  now: Date;
  maxAttempts: number;
  retryBaseSeconds: number;
  /** How long the build's node may stay NotReady before an unfinished build moves to another node. */
  nodeLostSeconds: number;
  /** Set when a Succeeded build's image is missing again where a pod waits for it: why. */
  rebuild?: string;
  /** Rebuilds allowed for a missing image, ever, per NixBuild (so a build whose image never shows cannot loop). */
  maxRebuilds: number;
  /** The end of the failed attempt's build log, when it has been read. */
  failedLog?: string;
  /** Set when the spec cannot be built as it is (a spec change is needed). */
  invalid?: string;
  /** Set when the name is a planned build's but the spec is not: never built, never taken for the planned build. */
  notAdopted?: string;
  /** Set when the name is one the controller gives its builds and the plan does not want it now: not started. */
  notPlanned?: string;
  /** Set when spec.node exists but cannot build the system now (see spec-check.ts): the build waits. */
  pinUnable?: string;
  /** Set when an image name of the spec is declared in Git with another flake: never built (claims.ts). */
  claimed?: string;
  /** Set while a configured Git source has not been read: a build not started yet waits (its names may be Git's). */
  sourcePending?: string;
}

export type BuildAction =
  | { kind: 'none' }
  /** Start attempt `attempt` as a new Job on `node`; delete the Job `abandon` (left on a lost node) first. */
  | { kind: 'create-job'; attempt: number; node: string; abandon?: string }
  | { kind: 'requeue'; afterMs: number }
  | { kind: 'read-log'; pod: string };

/** An Event to record on the NixBuild beside the phase change ones: moves and rebuilds. */
export interface BuildEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export function attemptOf(job: V1Job): number {
  const n = Number(job.metadata?.name?.split('-').pop());
  return Number.isInteger(n) ? n : 0;
}

function jobState(job: V1Job): 'running' | 'complete' | 'failed' {
  const conditions = job.status?.conditions ?? [];
  if (conditions.some((c) => c.type === 'Complete' && c.status === 'True')) return 'complete';
  if (conditions.some((c) => (c.type === 'Failed' || c.type === 'FailureTarget') && c.status === 'True'))
    return 'failed';
  return 'running';
}

/** Times arrive as Date from a list and as strings from a watch. */
function iso(t: Date | string | undefined): string | undefined {
  if (t === undefined || t === null) return undefined;
  const d = t instanceof Date ? t : new Date(t);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/** The platform manifest an import reported, when it says all of it (an older importer does not). */
function manifestOf(m: Record<string, unknown>): PlatformManifest | undefined {
  const e = {
    digest: String(m.digest),
    size: Number(m.size),
    mediaType: String(m.mediaType),
    platform: String(m.platform),
  };
  return entryProblem(e) === undefined ? e : undefined;
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

/**
 * The failed attempt's pod that has a log to read: one whose containers ran. A pod that never started (still
 * Pending on a node whose kubelet is gone) has none, and asking its kubelet would only wait out the timeout.
 */
function failedPod(pods: V1Pod[]): V1Pod | undefined {
  const ran = pods.filter((p) =>
    [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])].some(
      (c) =>
        c.state?.terminated !== undefined || c.state?.running !== undefined || c.lastState?.terminated !== undefined,
    ),
  );
  return ran.find((p) => p.status?.phase === 'Failed') ?? ran[0];
}

/**
 * Whether a build's node is lost: deleted, or not Ready for at least `graceSeconds` (by its Ready
 * condition's lastTransitionTime; a NotReady node that does not say since when counts as lost).
 * `recheckMs`: not Ready, not yet lost; look again then.
 */
export function nodeLoss(
  name: string,
  nodes: ReadonlyMap<string, NodeHealth>,
  now: Date,
  graceSeconds: number,
): { lost: string } | { recheckMs: number } | undefined {
  const n = nodes.get(name);
  if (n === undefined) return { lost: `node ${name} was deleted` };
  if (n.ready) return undefined;
  const since = Date.parse(n.readySince ?? '');
  if (Number.isNaN(since)) return { lost: `node ${name} is not Ready` };
  const left = since + graceSeconds * 1000 - now.getTime();
  if (left > 0) return { recheckMs: left };
  return { lost: `node ${name} has not been Ready for ${Math.round((now.getTime() - since) / 1000)} s` };
}

export function nextState(o: BuildObservation): { status: NixBuildStatus; action: BuildAction; event?: BuildEvent } {
  const prev = o.nb.status ?? {};
  const generation = o.nb.metadata.generation ?? 1;
  const status: NixBuildStatus = { ...prev, observedGeneration: generation, system: o.nb.spec.system };
  const first = o.nb.spec.images?.[0];
  if (first !== undefined) status.image = first;
  const set = (phase: NixBuildStatus['phase'], conditions: Condition[]) => {
    status.phase = phase;
    status.conditions = mergeConditions(prev.conditions ?? [], conditions, o.now, generation);
  };
  const cond = (type: string, s: Condition['status'], reason: string, message: string): Condition => ({
    type,
    status: s,
    reason,
    message: printable(message),
    lastTransitionTime: o.now.toISOString(),
  });
  const noBuilder = (msg: string) => {
    set('Pending', [cond('Ready', 'False', Reason.NoBuilder, msg), cond('Reconciling', 'True', Reason.NoBuilder, msg)]);
    return { status, action: { kind: 'requeue', afterMs: 30_000 } as BuildAction };
  };

  if (o.notAdopted !== undefined) {
    set('Failed', [
      cond('Ready', 'False', Reason.NotAdopted, o.notAdopted),
      cond('Stalled', 'True', Reason.NotAdopted, o.notAdopted),
    ]);
    return { status, action: { kind: 'none' } };
  }
  if (o.claimed !== undefined) {
    set('Failed', [
      cond('Ready', 'False', Reason.ImageClaimed, o.claimed),
      cond('Stalled', 'True', Reason.ImageClaimed, o.claimed),
    ]);
    return { status, action: { kind: 'none' } };
  }
  const waitingFor = (reason: string) =>
    prev.conditions?.some((c) => c.type === 'Ready' && c.reason === reason) === true;
  const unstarted =
    o.jobs.length === 0 &&
    (prev.phase === undefined || waitingFor(Reason.NotPlanned) || waitingFor(Reason.SourcePending));
  if (o.notPlanned !== undefined && o.invalid === undefined && unstarted) {
    set('Pending', [cond('Ready', 'False', Reason.NotPlanned, o.notPlanned)]);
    return { status, action: { kind: 'none' } };
  }
  if (o.invalid !== undefined) {
    set('Failed', [
      cond('Ready', 'False', Reason.InvalidSpec, o.invalid),
      cond('Stalled', 'True', Reason.InvalidSpec, o.invalid),
    ]);
    return { status, action: { kind: 'none' } };
  }
  if (o.sourcePending !== undefined && unstarted) {
    set('Pending', [cond('Ready', 'False', Reason.SourcePending, o.sourcePending)]);
    return { status, action: { kind: 'none' } };
  }
  const latest = [...o.jobs].sort((a, b) => attemptOf(b) - attemptOf(a))[0];
  const seen = latest !== undefined ? attemptOf(latest) : 0;
  // Status may name an attempt whose Job the informer does not show yet (or any more): then that
  // attempt is current, its Job unseen, and creating it again is a harmless conflict, never a new attempt.
  const current = (prev.attempts ?? 0) > seen ? undefined : latest;
  const state = current !== undefined ? jobState(current) : undefined;
  const lastAttempt = Math.max(seen, prev.attempts ?? 0);
  const excused = prev.excusedAttempts ?? 0;
  // spec.node pins the build (a user's choice, or the import target in per-node mode); otherwise the
  // node is the controller's choice: where the current Job runs, else what status says.
  const pin = o.nb.spec.node;
  const placed = pin ?? (current !== undefined ? jobNodeOf(current) : undefined) ?? prev.node;

  // Succeeded: done, unless its image went missing again where a pod waits for it.
  if (state === 'complete' || (current === undefined && prev.phase === 'Succeeded')) {
    if (placed !== undefined) status.node = placed;
    if (state === 'complete') {
      const built = terminationMessage(o.pods, 'build');
      const imported = terminationMessage(o.pods, 'import');
      if (built.storePath !== undefined) status.storePath = built.storePath;
      if (imported.digest !== undefined) status.imageDigest = imported.digest;
      const manifest = manifestOf(imported);
      if (manifest !== undefined) status.manifest = manifest;
      if (imported.image !== undefined) status.image = imported.image;
      status.attempts = attemptOf(current!);
      status.buildJobName = current!.metadata?.name;
      status.completionTime ??= iso(current!.status?.completionTime) ?? o.now.toISOString();
      delete status.logExcerpt;
    } else if (prev.image !== undefined) status.image = prev.image;
    if (o.rebuild !== undefined) {
      const done = prev.rebuilds ?? 0;
      if (done >= o.maxRebuilds) {
        const msg = `${o.rebuild}; rebuilt ${done} time${done === 1 ? '' : 's'} already (at most ${o.maxRebuilds}): delete this NixBuild to build it again`;
        set('Succeeded', [
          cond('Ready', 'False', Reason.ImageMissing, msg),
          cond('Stalled', 'True', Reason.ImageMissing, msg),
        ]);
        return { status, action: { kind: 'none' } };
      }
      const node =
        pin ?? (placed !== undefined && nodeLoss(placed, o.nodes, o.now, 0) === undefined ? placed : o.candidate());
      if (node === undefined) return noBuilder(`${o.rebuild}; no Ready node can build ${o.nb.spec.system}`);
      const attempt = lastAttempt + 1;
      Object.assign(status, {
        node,
        attempts: attempt,
        excusedAttempts: attempt - 1,
        rebuilds: done + 1,
        buildJobName: `${o.nb.metadata.name}-${attempt}`,
        startTime: o.now.toISOString(),
      });
      delete status.completionTime;
      delete status.logExcerpt;
      const msg = `rebuilding on ${node} (rebuild ${done + 1} of at most ${o.maxRebuilds}): ${o.rebuild}`;
      set('Building', [
        cond('Ready', 'Unknown', Reason.ImageMissing, msg),
        cond('Reconciling', 'True', Reason.ImageMissing, msg),
      ]);
      return {
        status,
        action: { kind: 'create-job', attempt, node },
        event: { type: 'Warning', reason: Reason.ImageMissing, message: msg },
      };
    }
    set('Succeeded', [
      cond(
        'Ready',
        'True',
        Reason.Succeeded,
        `imported ${status.image ?? ''} ${status.imageDigest ?? ''} on ${status.node ?? ''}`.trim(),
      ),
    ]);
    return { status, action: { kind: 'none' } };
  }
  // Failed for good (retries exhausted): stays so, whatever happens to its node or its Jobs.
  if (prev.phase === 'Failed' && (state === 'failed' || current === undefined))
    return { status, action: { kind: 'none' } };

  // The node went away under an unfinished build: move it, unless spec.node pins it there.
  let recheckMs: number | undefined;
  if (placed !== undefined) {
    const loss = nodeLoss(placed, o.nodes, o.now, o.nodeLostSeconds);
    if (loss !== undefined && 'recheckMs' in loss) recheckMs = loss.recheckMs;
    else if (loss !== undefined) {
      status.node = placed;
      if (pin !== undefined)
        return noBuilder(
          `${loss.lost}; spec.node pins this build there: change or remove spec.node to build elsewhere`,
        );
      const next = o.candidate();
      if (next === undefined) return noBuilder(`${loss.lost}; no other Ready node can build ${o.nb.spec.system}`);
      const attempt = lastAttempt + 1;
      // The attempt lost with its node is no failure of the build: it does not count against maxAttempts.
      const nowExcused = excused + (lastAttempt > 0 ? 1 : 0);
      Object.assign(status, {
        node: next,
        attempts: attempt,
        excusedAttempts: nowExcused,
        moves: (prev.moves ?? 0) + 1,
        buildJobName: `${o.nb.metadata.name}-${attempt}`,
      });
      status.startTime ??= o.now.toISOString();
      const msg = `${loss.lost}: attempt ${attempt - nowExcused} of ${o.maxAttempts} moves to ${next}`;
      set('Building', [
        cond('Ready', 'Unknown', Reason.NodeLost, msg),
        cond('Reconciling', 'True', Reason.NodeLost, msg),
      ]);
      const abandon = lastAttempt > 0 ? { abandon: `${o.nb.metadata.name}-${lastAttempt}` } : {};
      return {
        status,
        action: { kind: 'create-job', attempt, node: next, ...abandon },
        event: { type: 'Warning', reason: Reason.NodeLost, message: msg },
      };
    }
  }
  if (pin !== undefined && o.pinUnable !== undefined && current === undefined) return noBuilder(o.pinUnable);
  const node = placed ?? o.candidate();
  if (node === undefined) return noBuilder(`no Ready node can build ${o.nb.spec.system}`);
  status.node = node;
  const quiet = (): BuildAction =>
    recheckMs !== undefined ? { kind: 'requeue', afterMs: recheckMs } : { kind: 'none' };

  if (current === undefined) {
    const attempt = Math.max(lastAttempt, 1);
    status.attempts = attempt;
    status.buildJobName = `${o.nb.metadata.name}-${attempt}`;
    status.startTime ??= o.now.toISOString();
    set('Building', [
      cond('Ready', 'Unknown', Reason.Building, `attempt ${attempt - excused} of ${o.maxAttempts} on ${node}`),
      cond('Reconciling', 'True', Reason.Building, `building on ${node}`),
    ]);
    return { status, action: { kind: 'create-job', attempt, node } };
  }
  const attempt = attemptOf(current);
  const counted = attempt - excused;
  status.attempts = attempt;
  status.buildJobName = current.metadata?.name;
  status.startTime ??= iso(current.status?.startTime) ?? o.now.toISOString();
  if (state === 'running') {
    set('Building', [
      cond('Ready', 'Unknown', Reason.Building, `attempt ${counted} of ${o.maxAttempts} on ${node}`),
      cond('Reconciling', 'True', Reason.Building, `building on ${node}`),
    ]);
    return { status, action: quiet() };
  }
  // Failed: read the log once, then retry with backoff or stall.
  const pod = failedPod(o.pods);
  if (o.failedLog === undefined && pod?.metadata?.name !== undefined && prev.logExcerpt === undefined) {
    return { status, action: { kind: 'read-log', pod: pod.metadata.name } };
  }
  if (o.failedLog !== undefined) status.logExcerpt = printable(o.failedLog);
  const reason = failureReason(current, o.pods);
  const permanent = permanentNixError(o.failedLog ?? '');
  if (permanent !== undefined) {
    status.completionTime ??= o.now.toISOString();
    const msg = `Nix cannot build this as it is (not retried): ${permanent}`;
    set('Failed', [cond('Ready', 'False', Reason.NixError, msg), cond('Stalled', 'True', Reason.NixError, msg)]);
    return { status, action: { kind: 'none' } };
  }
  if (counted >= o.maxAttempts) {
    status.completionTime ??= o.now.toISOString();
    const msg = `${counted} attempt${counted === 1 ? '' : 's'} failed; last: ${reason}`;
    set('Failed', [cond('Ready', 'False', Reason.BuildFailed, msg), cond('Stalled', 'True', Reason.BuildFailed, msg)]);
    return { status, action: { kind: 'none' } };
  }
  const failedAt = current.status?.conditions?.find((c) => c.type === 'Failed')?.lastTransitionTime ?? o.now;
  const waitMs = o.retryBaseSeconds * 1000 * 2 ** (counted - 1) - (o.now.getTime() - new Date(failedAt).getTime());
  const msg = `attempt ${counted} failed (${reason}); attempt ${counted + 1} of ${o.maxAttempts}`;
  set('Building', [cond('Ready', 'False', Reason.Retrying, msg), cond('Reconciling', 'True', Reason.Retrying, msg)]);
  if (waitMs > 0)
    return {
      status,
      action: { kind: 'requeue', afterMs: recheckMs !== undefined ? Math.min(waitMs, recheckMs) : waitMs },
    };
  status.logExcerpt = o.failedLog !== undefined ? printable(o.failedLog) : prev.logExcerpt;
  status.buildJobName = `${o.nb.metadata.name}-${attempt + 1}`;
  status.attempts = attempt + 1;
  return { status, action: { kind: 'create-job', attempt: attempt + 1, node } };
}

function failureReason(job: V1Job, pods: V1Pod[]): string {
  for (const pod of pods) {
    for (const c of pod.status?.containerStatuses ?? []) {
      const t = c.state?.terminated;
      if (t !== undefined && t.exitCode !== 0)
        return `${c.name} exited ${t.exitCode}${t.reason !== undefined ? ` (${t.reason})` : ''}`;
    }
  }
  const failed = job.status?.conditions?.find((c) => c.type === 'Failed');
  return failed?.message ?? failed?.reason ?? 'the Job failed';
}

/** New conditions replace old ones of the same type; a condition keeps its transition time while its status holds. */
function mergeConditions(old: Condition[], next: Condition[], now: Date, generation: number): Condition[] {
  return next.map((c) => {
    const before = old.find((o) => o.type === c.type);
    const lastTransitionTime =
      before !== undefined && before.status === c.status ? before.lastTransitionTime : now.toISOString();
    return { ...c, lastTransitionTime, observedGeneration: generation };
  });
}

/** True when writing `next` would change what the API server holds. */
export function statusChanged(prev: NixBuildStatus | undefined, next: NixBuildStatus): boolean {
  return canonical(prev ?? {}) !== canonical(next);
}

/** JSON with object keys sorted at every depth and undefined dropped: a status read back in another key order is the same. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}
