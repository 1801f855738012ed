// A keyed work queue, as client-go's and controller-runtime's: a key is queued at most once however often it
// is added, is never processed by two workers at once (an add while it runs queues it once more, after), and
// a failure requeues that key alone with its own exponential backoff. One key's failure never delays another.

import { backoff } from '../async/backoff.ts';

export interface WorkQueueOptions {
  /** Keys processed at the same time. */
  workers: number;
  /** First retry delay after a failure; doubles per consecutive failure of that key, up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface WorkQueue {
  /** Queue `key` now, or after `afterMs` (the earliest of several delayed adds wins). */
  add(key: string, afterMs?: number): void;
  /** Resolves when nothing is queued, delayed for less than `horizonMs`, or running. */
  idle(horizonMs?: number): Promise<void>;
  /** Keys queued or running now. */
  depth(): number;
  /** Consecutive failures of a key (0 after a success). */
  failures(key: string): number;
  stop(): void;
}

/** What a key's processing reports: done, or do it again after a while (no error, no backoff). */
export type Outcome = void | { requeueAfterMs: number };

export function workQueue(
  process: (key: string) => Promise<Outcome>,
  onError: (key: string, err: unknown, retryInMs: number) => void,
  o: WorkQueueOptions,
): WorkQueue {
  const queued: string[] = [];
  const dirty = new Set<string>();
  const running = new Set<string>();
  const timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  const failures = new Map<string, number>();
  let idleWaiters: { horizon: number; resolve: () => void }[] = [];
  let stopped = false;

  const pump = () => {
    while (!stopped && running.size < o.workers) {
      const i = queued.findIndex((k) => !running.has(k));
      if (i < 0) break;
      const [key] = queued.splice(i, 1) as [string];
      dirty.delete(key);
      running.add(key);
      void runOne(key);
    }
    settleIdle();
  };

  async function runOne(key: string): Promise<void> {
    let outcome: Outcome;
    try {
      outcome = await process(key);
      failures.delete(key);
    } catch (err) {
      const n = (failures.get(key) ?? 0) + 1;
      failures.set(key, n);
      const delay = backoff(n, { baseMs: o.baseDelayMs, maxMs: o.maxDelayMs });
      onError(key, err, delay);
      outcome = { requeueAfterMs: delay };
    } finally {
      running.delete(key);
    }
    if (outcome !== undefined) add(key, outcome.requeueAfterMs);
    pump();
  }

  function add(key: string, afterMs = 0): void {
    if (stopped) return;
    if (afterMs > 0) {
      const at = Date.now() + afterMs;
      const existing = timers.get(key);
      if (existing !== undefined && existing.at <= at) return;
      if (existing !== undefined) clearTimeout(existing.timer);
      timers.set(key, {
        at,
        timer: setTimeout(() => {
          timers.delete(key);
          add(key);
        }, afterMs),
      });
      return;
    }
    if (dirty.has(key)) return;
    dirty.add(key);
    queued.push(key);
    pump();
  }

  function settleIdle(): void {
    if (idleWaiters.length === 0) return;
    const now = Date.now();
    const keep: typeof idleWaiters = [];
    for (const w of idleWaiters) {
      const soon = [...timers.values()].some((t) => t.at - now < w.horizon);
      if (queued.length === 0 && running.size === 0 && !soon) w.resolve();
      else keep.push(w);
    }
    idleWaiters = keep;
  }

  return {
    add,
    idle(horizonMs = 0) {
      return new Promise<void>((resolve) => {
        idleWaiters.push({ horizon: horizonMs, resolve });
        settleIdle();
      });
    },
    depth: () => queued.length + running.size,
    failures: (key) => failures.get(key) ?? 0,
    stop() {
      stopped = true;
      for (const t of timers.values()) clearTimeout(t.timer);
      timers.clear();
      queued.length = 0;
      for (const w of idleWaiters) w.resolve();
      idleWaiters = [];
    },
  };
}
