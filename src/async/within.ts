// A wait with a deadline that never cancels what it waits for: the caller moves on, the work finishes alone.

/** `p`, or `fallback` once `ms` have passed (p goes on, its result unused). */
export function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}
