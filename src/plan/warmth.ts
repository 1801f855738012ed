// Which nodes' Nix stores are warm for a build: the nodes that built the same flake repository for the same
// system, most recent first, read from the NixBuilds that Succeeded there. The next revision of an app shares
// most of its dependency derivations with the last one; the node that built that one holds them. Pure.
import { attrKey } from '../flake/attr.ts';
import { formatFlakeRef, parseFlakeRef } from '../flake/ref.ts';

/** The last Succeeded build of a repository for a system on one node. */
export interface WarmBuild {
  node: string;
  /** The flake repository: its reference without revision, branch or attribute. */
  repository: string;
  system: string;
  attr: string;
  /** The revision it built ('' when the reference names none). */
  rev: string;
  /** completionTime in ms since the epoch (0 when the status has none). */
  completedAt: number;
}

/** Per (repository, system): node → its latest build there. */
export type WarmIndex = ReadonlyMap<string, ReadonlyMap<string, WarmBuild>>;

/** What the index reads of a NixBuild (the CRD's spec and status). */
export interface BuildRecord {
  spec: { flakeUrl: string; packageName: string; system: string };
  status?: { phase?: string; node?: string; completionTime?: string };
}

// Parameters that pin a revision's content rather than name the repository.
const REVISION_PARAMS = ['narHash', 'lastModified', 'lastModifiedDate', 'revCount'];

/**
 * The repository a flake reference comes from: without attribute, rev, ref (branch or tag) and the lock's
 * content pins; the subdirectory stays (another flake of the same repository has other derivations).
 * undefined for a reference that does not parse.
 */
export function repositoryOf(flakeUrl: string): string | undefined {
  try {
    const { attr: _a, rev: _r, ref: _f, ...rest } = parseFlakeRef(flakeUrl);
    const params = Object.fromEntries(Object.entries(rest.params).filter(([k]) => !REVISION_PARAMS.includes(k)));
    return formatFlakeRef({ ...rest, params });
  } catch {
    return undefined;
  }
}

function revOf(flakeUrl: string): string {
  try {
    return parseFlakeRef(flakeUrl).rev ?? '';
  } catch {
    return '';
  }
}

const keyOf = (repository: string, system: string) => `${repository}\0${system}`;

/** The index of where each repository was last built, per system and node, from the Succeeded NixBuilds. */
export function warmIndex(builds: readonly BuildRecord[]): WarmIndex {
  const index = new Map<string, Map<string, WarmBuild>>();
  for (const b of builds) {
    const node = b.status?.node;
    if (b.status?.phase !== 'Succeeded' || node === undefined || node === '') continue;
    const repository = repositoryOf(b.spec.flakeUrl);
    if (repository === undefined) continue;
    const completed = Date.parse(b.status.completionTime ?? '');
    const warm: WarmBuild = {
      node,
      repository,
      system: b.spec.system,
      attr: attrKey(b.spec.packageName),
      rev: revOf(b.spec.flakeUrl),
      completedAt: Number.isNaN(completed) ? 0 : completed,
    };
    const key = keyOf(repository, b.spec.system);
    let byNode = index.get(key);
    if (byNode === undefined) index.set(key, (byNode = new Map()));
    const before = byNode.get(node);
    // Completion times are whole seconds (a Job's): a tie is broken by revision, so that the reason does not
    // depend on the order the builds were listed in.
    if (
      before === undefined ||
      warm.completedAt > before.completedAt ||
      (warm.completedAt === before.completedAt && warm.rev > before.rev)
    )
      byNode.set(node, warm);
  }
  return index;
}

/** The nodes warm for a build of `flakeUrl` for `system`, by node; empty when none built its repository. */
export function warmFor(
  index: WarmIndex | undefined,
  flakeUrl: string,
  system: string,
): ReadonlyMap<string, WarmBuild> {
  const repository = index !== undefined ? repositoryOf(flakeUrl) : undefined;
  return (repository !== undefined ? index!.get(keyOf(repository, system)) : undefined) ?? new Map();
}

/** How a warm build reads in a placement reason; `latest`: no other node built the repository since. */
export function describeWarm(w: WarmBuild, latest: boolean): string {
  const rev = w.rev !== '' ? ` (rev ${w.rev.slice(0, 12)})` : '';
  return `built ${w.repository} for ${w.system} ${latest ? 'last' : 'before'}${rev}`;
}
