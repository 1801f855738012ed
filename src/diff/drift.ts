// For flakes pinned by an image tag or a flake.lock rather than in the reference: what their branch
// points to now, so the user sees how far the manifests are behind. Failures only lose the note.
import type { WorkloadNeeds } from '../contract/container-needs.ts';
import { gitUrlOf, parseFlakeRef } from '../flake/ref.ts';
import { workloadId } from '../manifests/workloads.ts';
import { resolveRemoteRef } from '../source/git.ts';
import type { Drift } from './report.ts';
import { errorMessage } from '../async/error-message.ts';

export async function findDrift(
  workloads: readonly WorkloadNeeds[],
  timeoutMs = 5000,
): Promise<{ drift: Drift[]; notes: string[] }> {
  const groups = new Map<
    string,
    { url: string; branch: string | undefined; flake: string; pinned: string; workloads: Set<string> }
  >();
  for (const { workload, needs } of workloads) {
    for (const need of needs) {
      if (need.source.revisionFrom === 'flake-ref') continue;
      const declared =
        need.source.revisionFrom === 'flake-lock' ? need.source.flake : parseFlakeRef(need.source.declared);
      const url = gitUrlOf(declared);
      if (url === undefined) continue;
      const key = `${url} ${declared.ref ?? ''} ${need.source.rev}`;
      const group = groups.get(key) ?? {
        url,
        branch: declared.ref,
        flake: need.source.declared,
        pinned: need.source.rev,
        workloads: new Set<string>(),
      };
      group.workloads.add(workloadId(workload));
      groups.set(key, group);
    }
  }
  const drift: Drift[] = [];
  const notes: string[] = [];
  await Promise.all(
    [...groups.values()].map(async (g) => {
      try {
        const head = await withTimeout(resolveRemoteRef(g.url, g.branch), timeoutMs);
        if (head === undefined) notes.push(`${g.flake}: ${g.branch ?? 'HEAD'} not found on ${g.url}`);
        else
          drift.push({
            flake: g.flake,
            branch: g.branch ?? 'HEAD',
            head,
            pinned: g.pinned,
            workloads: [...g.workloads].sort(),
          });
      } catch (err) {
        notes.push(
          `${g.flake}: could not resolve ${g.branch ?? 'HEAD'} on ${g.url}: ${errorMessage(err).split('\n')[0]}`,
        );
      }
    }),
  );
  return { drift: drift.sort((a, b) => a.flake.localeCompare(b.flake)), notes };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e: unknown) => (clearTimeout(t), reject(e as Error)),
    );
  });
}
