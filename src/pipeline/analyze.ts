// Observe, first half: from source files to what each workload needs. Pure: no I/O.
import { containerNeedsOf, type LockIndex, type WorkloadNeeds } from '../contract/container-needs.ts';
import { FlakeLockError, parseFlakeLock } from '../flake/lock.ts';
import type { FlakeRef } from '../flake/ref.ts';
import { scanManifests } from '../manifests/scan.ts';
import { extractWorkloads } from '../manifests/workloads.ts';
import type { Problem } from '../problems.ts';
import { isLockPath, type SourceFile } from '../source/files.ts';

export interface Analysis {
  workloads: WorkloadNeeds[];
  problems: Problem[];
  warnings: Problem[];
  filesScanned: number;
  /** flake.lock inputs by lock file path, for pinning indirect flakes found later (in pods). */
  locks: LockIndex;
}

export function analyzeSource(files: readonly SourceFile[]): Analysis {
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
  const manifests = files.filter((f) => !isLockPath(f.path));
  const scan = scanManifests(manifests);
  problems.push(...scan.problems);
  const extracted = extractWorkloads(scan.objects);
  problems.push(...extracted.problems);
  const workloads: WorkloadNeeds[] = [];
  for (const workload of extracted.workloads) {
    const result = containerNeedsOf(workload, locks as LockIndex);
    problems.push(...result.problems);
    warnings.push(...result.warnings);
    if (result.needs.length > 0) workloads.push({ workload, needs: result.needs });
  }
  return { workloads, problems, warnings, filesScanned: manifests.length, locks };
}
