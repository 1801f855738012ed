// Garbage collection of the NixBuilds enbi created: which to stamp unreferenced, unstamp, or delete, from what
// the source references now. A root whose render failed or timed out is unknown, never unreferenced: the
// builds it referenced at its last good render are kept, and with no good render of it yet nothing is stamped
// or deleted, since any build could be that root's. Pure: plan-pass.ts does the writes.

/** A render root whose last render gave no answer. */
export interface UnknownRoot {
  /** `kustomization → apps/prod`. */
  origin: string;
  /** The build keys its last good render referenced; absent when it has had no good render yet. */
  lastGood?: ReadonlySet<string>;
}

/** A NixBuild enbi created (hand-written and `enbi build` ones are never collected: leave them out). */
export interface GcBuild {
  name: string;
  /** claims.ts buildKey of its flake and attribute; undefined when unreadable (then nothing names it). */
  key: string | undefined;
  /** Its enbi.hrzn.ee/unreferenced-since stamp, if any. */
  unreferencedSince?: string;
}

export interface GcInput {
  /** The NixBuilds enbi created. */
  builds: readonly GcBuild[];
  /** Build keys (claims.ts buildKey) the source's known workloads and the waiting trusted pods name. */
  referenced: ReadonlySet<string>;
  unknownRoots: readonly UnknownRoot[];
  now: Date;
  graceSeconds: number;
}

export type GcAction =
  { kind: 'stamp'; name: string } | { kind: 'unstamp'; name: string } | { kind: 'delete'; name: string; since: string };

export interface GcDecision {
  actions: GcAction[];
  /** When the next stamped build's grace period ends (ms from now): decide again then. */
  dueMs?: number;
  /** Builds an unknown root referenced at its last good render, kept for it: name → that root. */
  keptForUnknown: Map<string, string>;
  /** Why nothing unreferenced is stamped or deleted now (roots with no good render yet), if so. */
  held?: string;
}

export function gcDecision(input: GcInput): GcDecision {
  const actions: GcAction[] = [];
  const keptForUnknown = new Map<string, string>();
  const blind = input.unknownRoots.filter((r) => r.lastGood === undefined).map((r) => r.origin);
  const held =
    blind.length > 0
      ? `${blind.slice(0, 3).join(', ')}${blind.length > 3 ? ` and ${blind.length - 3} more` : ''} never rendered: any build could be theirs`
      : undefined;
  let dueMs: number | undefined;
  const due = (ms: number) => (dueMs = Math.min(dueMs ?? Infinity, Math.max(0, ms)));
  for (const b of input.builds) {
    const { name, key, unreferencedSince: since } = b;
    const unknownOwner =
      key === undefined ? undefined : input.unknownRoots.find((r) => r.lastGood?.has(key) === true)?.origin;
    if (key !== undefined && (input.referenced.has(key) || unknownOwner !== undefined)) {
      if (unknownOwner !== undefined) keptForUnknown.set(name, unknownOwner);
      if (since !== undefined) actions.push({ kind: 'unstamp', name });
      continue;
    }
    if (held !== undefined) continue;
    if (since === undefined) {
      actions.push({ kind: 'stamp', name });
      due(input.graceSeconds * 1000);
      continue;
    }
    const left = Date.parse(since) + input.graceSeconds * 1000 - input.now.getTime();
    if (left > 0) due(left);
    else actions.push({ kind: 'delete', name, since });
  }
  return {
    actions,
    keptForUnknown,
    ...(dueMs !== undefined ? { dueMs } : {}),
    ...(held !== undefined ? { held } : {}),
  };
}
