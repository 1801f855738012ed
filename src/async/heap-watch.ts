// A heap growing towards its limit, seen long before V8 gives up ("heap out of memory" ends the process with
// no warning of its own). The heap limit follows the container's memory limit (Node reads the cgroup), so
// the figure that matters is the live heap after a full collection against that limit: garbage between
// collections is not a warning sign, what survives a mark-compact is.
import { constants, type PerformanceEntry, PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';

export interface HeapFigures {
  /** Heap in use now (garbage included). */
  used: number;
  /** Heap in use right after the last full (mark-compact) collection; undefined before the first. */
  usedAfterGc: number | undefined;
  /** V8's heap_size_limit: past it the process dies. */
  limit: number;
}

export interface HeapAlarmOptions {
  /** Warn when the heap after GC reaches this share of the limit (default 0.8). */
  warnRatio?: number;
  /** Said again only after it has dropped below this share (default 0.7), so that a heap at the edge warns once. */
  clearRatio?: number;
}

export interface HeapVerdict {
  high: boolean;
  /** A line to log now, if the state changed. */
  say?: { level: 'warn' | 'info'; msg: string };
}

const mib = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`;

/** Pure: whether the heap is high now, and what to say when that changed since `wasHigh`. */
export function heapAlarm(wasHigh: boolean, f: HeapFigures, o: HeapAlarmOptions = {}): HeapVerdict {
  const warnRatio = o.warnRatio ?? 0.8;
  const clearRatio = Math.min(o.clearRatio ?? 0.7, warnRatio);
  if (f.usedAfterGc === undefined || !(f.limit > 0)) return { high: wasHigh };
  const ratio = f.usedAfterGc / f.limit;
  const pct = `${(ratio * 100).toFixed(0)}%`;
  if (!wasHigh && ratio >= warnRatio)
    return {
      high: true,
      say: {
        level: 'warn',
        msg: `heap after GC is ${mib(f.usedAfterGc)} of its ${mib(f.limit)} limit (${pct}, warning at ${(warnRatio * 100).toFixed(0)}%): the process exits with "heap out of memory" if it keeps growing; raise the container's memory limit (the heap follows it)`,
      },
    };
  if (wasHigh && ratio < clearRatio)
    return {
      high: false,
      say: { level: 'info', msg: `heap after GC back to ${mib(f.usedAfterGc)} of its ${mib(f.limit)} limit (${pct})` },
    };
  return { high: wasHigh };
}

export interface HeapWatchOptions extends HeapAlarmOptions {
  /** How often the figures are read and judged (default 5 s). */
  intervalMs?: number;
  /** Each reading (for gauges). */
  onSample?: (f: HeapFigures) => void;
  warn: (msg: string) => void;
  info: (msg: string) => void;
}

/**
 * Reads the heap every intervalMs and after every full collection, and says once when it crosses the
 * threshold (and once when it is back). The timer does not keep the process alive.
 */
export function watchHeap(o: HeapWatchOptions): { stop(): void; figures(): HeapFigures } {
  let usedAfterGc: number | undefined;
  let high = false;
  // A mark-compact's entry arrives shortly after it: the heap read then is what survived it (plus what was
  // allocated since, which is small next to a limit).
  const gcs = new PerformanceObserver((list) => {
    const major = (e: PerformanceEntry) =>
      (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR;
    if (list.getEntries().some(major)) usedAfterGc = getHeapStatistics().used_heap_size;
  });
  gcs.observe({ entryTypes: ['gc'] });
  const figures = (): HeapFigures => {
    const s = getHeapStatistics();
    return { used: s.used_heap_size, usedAfterGc, limit: s.heap_size_limit };
  };
  const tick = () => {
    const f = figures();
    o.onSample?.(f);
    const v = heapAlarm(high, f, o);
    high = v.high;
    if (v.say !== undefined) (v.say.level === 'warn' ? o.warn : o.info)(v.say.msg);
  };
  tick();
  const timer = setInterval(tick, o.intervalMs ?? 5_000);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      gcs.disconnect();
    },
    figures,
  };
}
