// What enbi may write and build at all, whoever asks: image reference prefixes (the names it may create in a
// node's containerd) and flake sources (the repositories it may fetch and run builders from). Set by the
// cluster admin in the controller's configuration; checked by the planner, by the NixBuild spec check and
// once more by `enbi import`. Pure.
import { type FlakeRef, gitUrlOf } from '../flake/ref.ts';
import type { WorkloadNeeds } from '../contract/container-needs.ts';
import { formatImageRef, parseImageRef } from '../image/reference.ts';
import { workloadId } from '../manifests/workloads.ts';
import type { Problem } from '../problems.ts';
import { errorMessage } from '../async/error-message.ts';

export interface BuildPolicy {
  /** Fully qualified image prefixes ending in "/", e.g. `registry.local/` or `registry.local/team-a/`. */
  images: readonly string[];
  /** Repository locations as URLs (`https://github.com/org/`), from `github:org` and the like. */
  flakes: readonly string[];
}

/** An allowedImages entry, normalised the way image names are (`nginx/` stays `docker.io/nginx/`). Throws on nonsense. */
export function normalizeImagePrefix(entry: string): string {
  if (!entry.endsWith('/'))
    throw new Error(`"${entry}" must end with "/" (a registry or repository prefix, e.g. registry.local/)`);
  const host = entry.slice(0, entry.indexOf('/'));
  if (!(host.includes('.') || host.includes(':') || host === 'localhost')) {
    throw new Error(`"${entry}" must start with a registry host (e.g. registry.local/ or docker.io/myteam/)`);
  }
  if (/[\s@]/.test(entry) || entry.includes('//')) throw new Error(`"${entry}" is not an image reference prefix`);
  return entry;
}

/** Why enbi may not write this image reference, or undefined when it may. */
export function imageRefusal(image: string, prefixes: readonly string[]): string | undefined {
  let name: string;
  try {
    name = formatImageRef(parseImageRef(image));
  } catch (err) {
    return errorMessage(err);
  }
  if (prefixes.some((p) => name.startsWith(p))) return undefined;
  return `image ${name} is outside the prefixes enbi may write (allowedImages: ${prefixes.join(', ') || 'none'})`;
}

const SHORTHAND_HOSTS: Readonly<Record<string, string>> = {
  github: 'github.com',
  gitlab: 'gitlab.com',
  sourcehut: 'git.sr.ht',
};

/** An allowedFlakes entry (`github:org`, `gitlab:group/repo`, `https://git.example.com/team`) as a URL prefix. Throws on nonsense. */
export function normalizeFlakeSource(entry: string): string {
  const short = /^(github|gitlab|sourcehut):([^/\s?#]+(?:\/[^/\s?#]+)*)\/?$/.exec(entry);
  if (short !== null) return `https://${SHORTHAND_HOSTS[short[1]!]}/${short[2]}/`;
  let url: URL;
  try {
    url = new URL(entry.replace(/^git\+/, ''));
  } catch {
    throw new Error(
      `"${entry}" is not a flake source: write github:<owner>[/<repo>], gitlab:<group>[/<repo>] or an https:// URL prefix`,
    );
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new Error(`"${entry}": only http(s) flake sources can be allowed`);
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '')
    throw new Error(`"${entry}": a flake source is a host and path, without query, fragment or credentials`);
  return `${url.protocol}//${url.host}${url.pathname.endsWith('/') ? url.pathname : `${url.pathname}/`}`;
}

/** Why enbi may not build from this flake, or undefined when it may. */
export function flakeRefusal(flake: FlakeRef, sources: readonly string[]): string | undefined {
  const git = gitUrlOf(flake);
  if (git === undefined)
    return `flake ${flake.type} references cannot be allowed: only github:, gitlab:, sourcehut: and git+http(s) sources`;
  let url: URL;
  try {
    url = new URL(git);
  } catch {
    return `flake source ${git} is not a URL`;
  }
  // Compared by whole path segments, and without a trailing .git: `…/org/app` and `…/org/app.git` are one repository.
  const location = `${url.protocol}//${url.host}${url.pathname.replace(/\.git$/, '').replace(/\/?$/, '/')}`;
  if (sources.some((s) => location.startsWith(s.replace(/\.git\/$/, '/')))) return undefined;
  return `flake source ${location.slice(0, -1)} is outside the sources enbi may build (allowedFlakes: ${sources.join(', ') || 'none'})`;
}

/** Why a container's build is outside the policy (its image or its pinned flake), or undefined. */
export function needRefusal(
  need: { image: string; source: { flake: FlakeRef } },
  policy: BuildPolicy,
): string | undefined {
  return imageRefusal(need.image, policy.images) ?? flakeRefusal(need.source.flake, policy.flakes);
}

/**
 * The workloads with only the needs the policy allows, and a problem (file, line, workload) for each need it
 * refuses: the controller's plan and `enbi diff` drop the same needs and say so the same way.
 */
export function withinPolicy(
  workloads: readonly WorkloadNeeds[],
  policy: BuildPolicy,
): { workloads: WorkloadNeeds[]; refused: Problem[] } {
  const refused: Problem[] = [];
  const kept = workloads.flatMap((w) => {
    const needs = w.needs.filter((n) => {
      const why = needRefusal(n, policy);
      if (why !== undefined)
        refused.push({
          ...(w.workload.file !== undefined ? { file: w.workload.file } : {}),
          ...(w.workload.line !== undefined ? { line: w.workload.line } : {}),
          object: workloadId(w.workload),
          message: `container ${n.container}: ${why}`,
        });
      return why === undefined;
    });
    return needs.length > 0 ? [{ workload: w.workload, needs }] : [];
  });
  return { workloads: kept, refused };
}
