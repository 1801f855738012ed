// Strings that recur across thousands of cached objects, held once: a cluster's nodes list mostly the same
// image names (the same DaemonSets and base images everywhere), and each Node parsed from JSON brings its own
// copy of each. Bounded: past `max` distinct entries the table starts again (what is cached keeps its strings;
// only sharing with what comes next starts over), so names that come and go cannot grow it without end.

/** `s`, or the equal string seen before. */
export function interner(max = 50_000): (s: string) => string {
  return memo((s) => s, max);
}

/** `f` with its results kept by argument (and so shared): for a pure function of a string, called often. */
export function memo<T>(f: (s: string) => T, max = 50_000): (s: string) => T {
  let table = new Map<string, T>();
  return (s) => {
    const known = table.get(s);
    if (known !== undefined) return known;
    if (table.size >= max) table = new Map();
    const v = f(s);
    table.set(s, v);
    return v;
  };
}
