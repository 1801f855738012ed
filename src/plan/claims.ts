// One owner per image name (issue 19). An image reference the Git source declares is built only from the
// flake (pinned source and attribute) Git declares it with: a pod of a trusted namespace that declares
// another flake for that name, and a NixBuild of another flake that names it, are refused, and the refusal
// names both claimants. Only Git's declarations are claims here: a name Git does not declare is not
// guarded by this (the allow-lists and the importer's record labels still are). Pure.
import { attrKey } from '../flake/attr.ts';
import { formatFlakeRef, parseFlakeRef, withoutAttr } from '../flake/ref.ts';
import { sourceKey, type WorkloadNeeds } from '../contract/container-needs.ts';
import { normalizeImageName } from '../image/reference.ts';
import { workloadId } from '../manifests/workloads.ts';

/** The key of what a build builds, the same for every system and node: its pinned source and attribute. */
export function buildKey(flakeUrl: string, attr: string): string | undefined {
  try {
    return `${sourceKey(parseFlakeRef(flakeUrl))}\0${attrKey(attr)}`;
  } catch {
    return undefined;
  }
}

/** A container need's build key, as the NixBuild enbi would create for it is keyed. */
export function needKey(need: WorkloadNeeds['needs'][number]): string | undefined {
  return buildKey(formatFlakeRef(withoutAttr(need.source.flake)), need.source.flake.attr ?? 'default');
}

/** One Git workload's declaration of an image name. */
export interface GitClaim {
  /** buildKey of the flake it declares. */
  key: string;
  /** That flake, pinned, with its attribute (for messages). */
  flake: string;
  /** `Deployment shop/web`. */
  workload: string;
}

/** Normalized image name → Git's declarations of it. */
export type ImageClaims = ReadonlyMap<string, readonly GitClaim[]>;

const EMPTY: ImageClaims = new Map();
const memo = new WeakMap<readonly WorkloadNeeds[], ImageClaims>();

/** Every image name the Git source's workloads declare, with who declares it from which flake. */
export function gitClaims(workloads: readonly WorkloadNeeds[] | undefined): ImageClaims {
  if (workloads === undefined || workloads.length === 0) return EMPTY;
  const known = memo.get(workloads);
  if (known !== undefined) return known;
  const out = new Map<string, GitClaim[]>();
  for (const w of workloads) {
    for (const n of w.needs) {
      const key = needKey(n);
      if (key === undefined) continue;
      const image = normalizeImageName(n.image);
      const list = out.get(image) ?? [];
      const workload = workloadId(w.workload);
      if (!list.some((c) => c.key === key && c.workload === workload))
        list.push({ key, flake: formatFlakeRef(n.source.flake), workload });
      out.set(image, list);
    }
  }
  memo.set(workloads, out);
  return out;
}

/**
 * Git's declarations an image claim collides with: those of the image when none of them is the claimant's
 * flake (key), else none. A name Git does not declare collides with nothing; a claimant whose key is
 * unreadable collides with every declaration.
 */
export function collidingClaims(claims: ImageClaims, image: string, key: string | undefined): readonly GitClaim[] {
  const declared = claims.get(normalizeImageName(image));
  if (declared === undefined || declared.length === 0) return [];
  return key !== undefined && declared.some((c) => c.key === key) ? [] : declared;
}

/** Git's side of a refusal: `Deployment shop/web in Git builds it from <flake>` (at most three named). */
export function describeClaims(claims: readonly GitClaim[]): string {
  const shown = claims.slice(0, 3).map((c) => `${c.workload} in Git builds it from ${c.flake}`);
  return `${shown.join('; ')}${claims.length > 3 ? `; and ${claims.length - 3} more` : ''}`;
}

/**
 * Why a NixBuild may not build under its image names, or undefined: one of them is declared in Git with
 * another flake. `name` is the NixBuild's namespace/name, named in the message beside the Git workload.
 */
export function nixBuildClaimProblem(
  name: string,
  spec: { flakeUrl: string; packageName: string; images?: readonly string[] },
  claims: ImageClaims,
): string | undefined {
  if (claims.size === 0) return undefined;
  const key = buildKey(spec.flakeUrl, spec.packageName);
  for (const image of spec.images ?? []) {
    const hit = collidingClaims(claims, image, key);
    if (hit.length === 0) continue;
    return `image ${normalizeImageName(image)} is claimed twice: ${describeClaims(hit)}, and NixBuild ${name} builds it from ${spec.flakeUrl}#${spec.packageName}. An image name Git declares is built only from the flake Git names for it: enbi does not build this NixBuild (delete it, or name another image)`;
  }
  return undefined;
}
