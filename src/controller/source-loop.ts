// The source loop: syncs the Git source (or directory) on its own timer, at once on a webhook, one sync at a
// time, and tells the controller when the analysis changed. Each Git request has an idle timeout
// (source.timeoutSeconds), so a hung server fails a sync instead of holding it; failures back off (the
// interval doubles, up to ten minutes) and the last good analysis stays in use meanwhile. A render root that
// gave no answer (source-state.ts) requeues the sync after its own backoff, on the same doubling, so that
// the same commit is rendered again.
import { backoff } from '../async/backoff.ts';
import { within } from '../async/within.ts';
import type { Logger } from './log.ts';
import type { SourceState } from './source-state.ts';

export interface SourceLoopDeps {
  source: SourceState;
  intervalMs: number;
  log: Logger;
  onChange: () => void;
  /** How long a plan pass waits for a sync it asked for (webhook) before planning with what it has. */
  forcedWaitMs?: number;
  /** Syncs start at least this far apart (default 1 s): a burst of webhooks costs one sync a second. */
  minSpacingMs?: number;
}

export interface SourceLoop {
  start(): void;
  /** Sync now (a webhook): the next plan pass waits for it, up to forcedWaitMs. */
  syncNow(): void;
  /** Resolves when the sync asked for by syncNow() is done (or forcedWaitMs passed). */
  awaitForced(): Promise<void>;
  stop(): void;
}

const MAX_BACKOFF_MS = 600_000;

/** The wait after `failures` failures in a row (1 = the first): the interval, doubled each time, up to ten minutes. */
export function sourceBackoffMs(intervalMs: number, failures: number): number {
  return backoff(failures, { baseMs: intervalMs, maxMs: MAX_BACKOFF_MS });
}

export function sourceLoop(d: SourceLoopDeps): SourceLoop {
  let chain: Promise<void> = Promise.resolve();
  // The sync waiting behind the running one: every request meanwhile joins it (a burst of a thousand
  // webhooks is one more sync, not a thousand), forced if any of them was.
  let pending: Promise<void> | undefined;
  let pendingForce = false;
  let forced: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let failures = 0;
  let stopped = false;
  let lastStart = 0;

  const sync = (force: boolean): Promise<void> => {
    if (pending !== undefined) {
      pendingForce ||= force;
      return pending;
    }
    pendingForce = force;
    pending = chain.then(async () => {
      const wait = lastStart + (d.minSpacingMs ?? 1_000) - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      lastStart = Date.now();
      const f = pendingForce;
      pending = undefined;
      if (stopped) return;
      const t0 = Date.now();
      const changed = await d.source.refresh(f);
      const error = d.source.lastError();
      failures = error === undefined ? 0 : failures + 1;
      if (error !== undefined)
        d.log.warn(`sync failed (${failures} in a row; next try in ${Math.round(delay() / 1000)} s): ${error}`);
      else if (changed)
        d.log.info(`source changed (synced in ${Date.now() - t0} ms)`, {
          revision: d.source.current()?.revision.slice(0, 12),
        });
      if (changed) d.onChange();
    });
    chain = pending;
    return pending;
  };
  const delay = () => sourceBackoffMs(d.intervalMs, failures + 1);
  // The next sync: at the interval (backed off after failures), or sooner when a render is to be retried.
  const nextIn = () => Math.max(d.minSpacingMs ?? 1_000, Math.min(delay(), d.source.renderRetryInMs() ?? Infinity));
  const tick = () => {
    if (stopped) return;
    void sync(false).finally(() => {
      if (!stopped) timer = setTimeout(tick, nextIn());
    });
  };

  return {
    start() {
      tick();
    },
    syncNow() {
      forced = sync(true);
    },
    async awaitForced() {
      const f = forced;
      if (f === undefined) return;
      await within(f, d.forcedWaitMs ?? 60_000, undefined);
      if (forced === f) forced = undefined;
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
