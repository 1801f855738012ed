// What is wrong with a NixBuild's spec before any Job is tried, in words the person who wrote it can act on.
// Pure: the controller passes the results to nextState (build-state.ts).
import type { NixBuild } from '../api/nixbuild.ts';
import type { NodeView } from '../cluster/node-view.ts';
import { KNOWN_SYSTEMS } from '../cluster/systems.ts';
import { expandAttr } from '../flake/attr.ts';
import { type FlakeRef, parseFlakeRef } from '../flake/ref.ts';
import { parseImageRef } from '../image/reference.ts';
import { type BuildPolicy, flakeRefusal, imageRefusal } from '../plan/allow.ts';
import { type BuildBlocker, buildBlocker } from '../plan/planner.ts';
import type { Toleration } from '../plan/scheduling.ts';
import { errorMessage } from '../async/error-message.ts';

/**
 * A spec that no cluster change can make buildable (the spec itself, or the controller's allow-lists, must
 * change), or undefined. Whoever wrote the NixBuild, its flake and every image name are checked against the
 * policy: a NixBuild is no way around allowedImages and allowedFlakes.
 */
export function specProblem(nb: NixBuild, policy: BuildPolicy): string | undefined {
  let flake: FlakeRef;
  try {
    flake = parseFlakeRef(nb.spec.flakeUrl);
  } catch (err) {
    return `spec.flakeUrl: ${errorMessage(err)}`;
  }
  if (!KNOWN_SYSTEMS.includes(nb.spec.system))
    return `spec.system ${nb.spec.system} is not a Linux system enbi knows (e.g. x86_64-linux, aarch64-linux)`;
  try {
    expandAttr(nb.spec.packageName, nb.spec.system);
  } catch (err) {
    return `spec.packageName: ${errorMessage(err)}`;
  }
  const flakeWhy = flakeRefusal(flake, policy.flakes);
  if (flakeWhy !== undefined) return `spec.flakeUrl: ${flakeWhy}`;
  const images = nb.spec.images ?? [];
  if (images.length === 0)
    return 'spec.images is empty: name the image references to import the build under (the build output never chooses them)';
  for (const image of images) {
    const why = imageProblem(image) ?? imageRefusal(image, policy.images);
    if (why !== undefined) return `spec.images: ${why}`;
  }
  return undefined;
}

/** A reference enbi can promise: parseable, tagged, not `latest`, not a digest. */
function imageProblem(image: string): string | undefined {
  try {
    const ref = parseImageRef(image);
    if (ref.digest !== undefined) return `${image} is pinned by digest; a build cannot promise a digest, name a tag`;
    if (ref.tag === undefined || ref.tag === 'latest')
      return `${image} has ${ref.tag === undefined ? 'no tag' : 'the moving tag latest'}; tag it with the revision it runs`;
  } catch (err) {
    return errorMessage(err);
  }
  return undefined;
}

/**
 * Why the node spec.node pins cannot build the spec's system now, or undefined (no pin, the node can, or it is
 * gone: a vanished node is the node-loss path's to report). The cluster can change (a label, an uncordon), so
 * the build waits rather than fails.
 */
export function pinnedNodeProblem(
  nb: NixBuild,
  nodes: ReadonlyMap<string, NodeView>,
  tolerations: readonly Toleration[],
): string | undefined {
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
