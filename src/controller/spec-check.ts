// What is wrong with a NixBuild's spec before any Job is tried, in words the person who wrote it can act on.
// Pure: the controller passes the results to nextState (build-state.ts).
import type { NixBuild } from '../api/nixbuild.ts';
import type { NodeView } from '../cluster/node-view.ts';
import { KNOWN_SYSTEMS } from '../cluster/systems.ts';
import { parseFlakeRef } from '../flake/ref.ts';
import { type BuildBlocker, buildBlocker } from '../plan/planner.ts';
import type { Toleration } from '../plan/scheduling.ts';

/** A spec that no cluster change can make buildable (the spec itself must change), or undefined. */
export function specProblem(nb: NixBuild): string | undefined {
  try {
    parseFlakeRef(nb.spec.flakeUrl);
  } catch (err) {
    return `spec.flakeUrl: ${(err as Error).message}`;
  }
  if (!KNOWN_SYSTEMS.includes(nb.spec.system)) return `spec.system ${nb.spec.system} is not a Linux system enbi knows (e.g. x86_64-linux, aarch64-linux)`;
  return undefined;
}

/**
 * Why the node spec.node pins cannot build the spec's system now, or undefined (no pin, the node can, or it is
 * gone: a vanished node is the node-loss path's to report). The cluster can change (a label, an uncordon), so
 * the build waits rather than fails.
 */
export function pinnedNodeProblem(nb: NixBuild, nodes: ReadonlyMap<string, NodeView>, tolerations: readonly Toleration[]): string | undefined {
  const pin = nb.spec.node;
  const view = pin !== undefined ? nodes.get(pin) : undefined;
  const blocker = view !== undefined ? buildBlocker(view, nb.spec.system, tolerations) : undefined;
  if (blocker === undefined) return undefined;
  const why: Record<BuildBlocker, string> = {
    system: `it builds ${view!.buildSystems.join(', ') || 'no known system'}; label it enbi.hrzn.ee/builds.${nb.spec.system}=true if it can emulate ${nb.spec.system} (binfmt + QEMU), or change spec.node`,
    'not-ready': 'it is not Ready',
    cordoned: 'it is cordoned',
    'not-allowed': 'it is kept out of builds (enbi.hrzn.ee/builder=false or outside builderNodeSelector)',
    taints: "its taints are not among the controller's builderTolerations",
  };
  return `spec.node ${pin} cannot build ${nb.spec.system}: ${why[blocker]}`;
}
