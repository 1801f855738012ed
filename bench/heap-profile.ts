// Where a process allocates: V8's sampling heap profiler, run through the inspector in the process itself,
// summed by allocation site. With the "collected" flags on, every sampled allocation counts, also the
// garbage a pass leaves (what makes a heap grow between collections); with them off, only what is still
// alive when the profile is taken (what the caches hold). Used by controller-scale.ts (HEAP_PROFILE=1).
import { Session } from 'node:inspector/promises';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  callFrame: CallFrame;
  selfSize: number;
  children: ProfileNode[];
}
export interface SamplingProfile {
  head: ProfileNode;
}

export interface Site {
  site: string;
  bytes: number;
}

/** Start sampling; the returned function stops it and gives the profile. */
export async function startSampling(
  session: Session,
  o: { includeCollected: boolean },
): Promise<() => Promise<SamplingProfile>> {
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 16_384,
    includeObjectsCollectedByMajorGC: o.includeCollected,
    includeObjectsCollectedByMinorGC: o.includeCollected,
  });
  return async () => (await session.post('HeapProfiler.stopSampling')).profile as unknown as SamplingProfile;
}

const short = (url: string) => url.replace(/^file:\/\/.*?\/(src|bench|node_modules)\//, '$1/');
const frame = (f: CallFrame) => `${f.functionName || '(anonymous)'} ${short(f.url) || '(native)'}:${f.lineNumber + 1}`;

/**
 * Bytes by site, largest first: `self` sums by the allocating function itself (often a library's or V8's
 * own: JSON.parse, a spread); `enbi` by the nearest frame in enbi's own code above it (the call of enbi that
 * caused it), and `lib` by the nearest frame outside node:internal (the library function that did it).
 */
export function topSites(p: SamplingProfile, top = 12): { total: number; self: Site[]; enbi: Site[] } {
  const self = new Map<string, number>();
  const enbi = new Map<string, number>();
  let total = 0;
  const walk = (n: ProfileNode, enbiFrame: string | undefined) => {
    const here =
      /\/src\//.test(n.callFrame.url) && !n.callFrame.url.includes('node_modules') ? frame(n.callFrame) : enbiFrame;
    if (n.selfSize > 0) {
      total += n.selfSize;
      const s = frame(n.callFrame);
      self.set(s, (self.get(s) ?? 0) + n.selfSize);
      const e = here ?? '(no enbi frame)';
      enbi.set(e, (enbi.get(e) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, here);
  };
  walk(p.head, undefined);
  const sorted = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([site, bytes]) => ({ site, bytes }));
  return { total, self: sorted(self), enbi: sorted(enbi) };
}

export function printSites(title: string, s: { total: number; self: Site[]; enbi: Site[] }): void {
  const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;
  console.log(`${title}: ${mib(s.total)} sampled`);
  console.log('  by allocating function:');
  for (const x of s.self) console.log(`    ${mib(x.bytes).padStart(10)}  ${x.site}`);
  console.log("  by enbi's nearest frame:");
  for (const x of s.enbi) console.log(`    ${mib(x.bytes).padStart(10)}  ${x.site}`);
}

export { Session };

/**
 * A heap snapshot (v8.writeHeapSnapshot, --heapsnapshot-near-heap-limit) summed by what each object is: its
 * constructor for objects, its type otherwise (strings, arrays, code), largest first. Self sizes only.
 */
export function snapshotByKind(
  json: string,
  top = 20,
): { total: number; count: number; kinds: (Site & { count: number })[] } {
  const snap = JSON.parse(json) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const by = new Map<string, { bytes: number; count: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType!]!]!;
    const size = snap.nodes[i + iSize!]!;
    const kind = type === 'object' || type === 'closure' ? `${type} ${snap.strings[snap.nodes[i + iName!]!]}` : type;
    const e = by.get(kind) ?? { bytes: 0, count: 0 };
    e.bytes += size;
    e.count++;
    by.set(kind, e);
    total += size;
  }
  const kinds = [...by.entries()]
    .sort((a, b) => b[1].bytes - a[1].bytes)
    .slice(0, top)
    .map(([site, e]) => ({ site, bytes: e.bytes, count: e.count }));
  return { total, count: snap.nodes.length / width, kinds };
}

// `node bench/heap-profile.ts FILE.heapsnapshot`: the summary of one snapshot.
if (import.meta.main) {
  const { readFileSync } = await import('node:fs');
  const s = snapshotByKind(readFileSync(process.argv[2]!, 'utf8'), Number(process.argv[3] ?? 25));
  const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;
  console.log(`${process.argv[2]}: ${mib(s.total)} in ${s.count} objects`);
  for (const k of s.kinds) console.log(`  ${mib(k.bytes).padStart(10)}  ${String(k.count).padStart(8)}  ${k.site}`);
}
