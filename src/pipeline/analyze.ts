// Observe, first half: from source files to what each workload needs. Pure: no I/O.
import { containerNeedsOf, type LockIndex, type WorkloadNeeds } from '../contract/container-needs.ts';
import { FlakeLockError, parseFlakeLock } from '../flake/lock.ts';
import type { FlakeRef } from '../flake/ref.ts';
import { scanManifests } from '../manifests/scan.ts';
import { extractWorkloads } from '../manifests/workloads.ts';
import type { Problem } from '../problems.ts';
import { renderedWorkloads, type RenderedInput } from '../render/analysis.ts';
import { isLockPath, type SourceFile } from '../source/files.ts';

export interface Analysis {
  workloads: WorkloadNeeds[];
  problems: Problem[];
  warnings: Problem[];
  filesScanned: number;
  /** kustomize/helm renders: how many ran and how many came from the cache (absent when nothing was rendered). */
  rendered?: { roots: number; fromCache: number; objects: number; ms: number };
  /** flake.lock inputs by lock file path, for pinning indirect flakes found later (in pods). */
  locks: LockIndex;
}

/** `rendered`: what src/render produced for this source; the files it consumed are not read as plain manifests. */
export function analyzeSource(files: readonly SourceFile[], rendered?: RenderedInput): Analysis {
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  const locks = new Map<string, ReadonlyMap<string, FlakeRef>>();
  for (const f of files.filter((f) => isLockPath(f.path))) {
    try {
      locks.set(f.path, parseFlakeLock(f.text, f.path));
    } catch (err) {
      if (!(err instanceof FlakeLockError)) throw err;
      problems.push({ file: f.path, message: err.message });
    }
  }
  const manifests = files.filter((f) => !isLockPath(f.path) && rendered?.consumed.has(f.path) !== true);
  const scan = scanManifests(manifests);
  problems.push(...scan.problems);
  const extracted = extractWorkloads(scan.objects);
  problems.push(...extracted.problems);
  if (rendered !== undefined) {
    const fromRenders = renderedWorkloads(rendered);
    extracted.workloads.push(...fromRenders.workloads);
    problems.push(...rendered.problems, ...fromRenders.problems);
    warnings.push(...rendered.warnings);
  }
  const workloads: WorkloadNeeds[] = [];
  for (const workload of extracted.workloads) {
    const result = containerNeedsOf(workload, locks as LockIndex);
    const origin = workload.origin !== undefined ? { origin: workload.origin } : {};
    problems.push(...result.problems.map((p) => ({ ...p, ...origin })));
    warnings.push(...result.warnings.map((p) => ({ ...p, ...origin })));
    if (result.needs.length > 0) workloads.push({ workload, needs: result.needs });
  }
  const analysis: Analysis = { workloads, problems, warnings, filesScanned: manifests.length, locks };
  if (rendered !== undefined && rendered.stats.renders + rendered.stats.fromCache > 0) {
    analysis.rendered = { roots: rendered.stats.renders, fromCache: rendered.stats.fromCache, objects: rendered.objects.length, ms: rendered.stats.ms };
  }
  return analysis;
}
