// The one retry delay of enbi's loops: exponential in the number of consecutive failures, capped, with
// optional jitter so that many retries of one outage do not arrive together.

export interface BackoffOptions {
  /** Delay after the first failure. */
  baseMs: number;
  /** No delay is longer than this (before jitter). */
  maxMs: number;
  /** Spread each delay uniformly over [0.5, 1.5) of itself. */
  jitter?: boolean;
}

/** Delay before the next try after `failures` consecutive failures (1 = the first): base·2^(failures−1), capped. */
export function backoff(failures: number, o: BackoffOptions, random: () => number = Math.random): number {
  const delay = Math.min(o.maxMs, o.baseMs * 2 ** Math.max(0, failures - 1));
  return o.jitter === true ? delay * (0.5 + random()) : delay;
}
