// Manifest files analysed one by one, each result kept by the file's content id (a Git blob id) so that the
// next sync re-parses only the files whose content changed. Results are values: reusing one is always safe.
import type { ContainerNeed } from '../contract/container-needs.ts';
import { type ScanResult, scanFile } from '../manifests/scan.ts';
import { extractWorkloads, type Workload } from '../manifests/workloads.ts';
import type { Problem } from '../problems.ts';
import type { SourceFile } from '../source/files.ts';

export interface NeedsResult {
  needs: ContainerNeed[];
  problems: Problem[];
  warnings: Problem[];
}

/** One file's scan and workloads; the contract's verdicts too, valid for the flake.lock files they were made with. */
export interface FileAnalysis {
  scan: ScanResult;
  workloads: Workload[];
  workloadProblems: Problem[];
  needs?: { locksKey: string; results: NeedsResult[] };
}

/** Results by `id\0path`; entries not used by the last run are dropped, so it holds one source's files. */
export class FileScanCache {
  private entries = new Map<string, FileAnalysis>();
  private used = new Map<string, FileAnalysis>();
  /** Files parsed (not found in the cache) by the last run: what a sync really cost. */
  parsed = 0;

  get(key: string): FileAnalysis | undefined {
    const hit = this.entries.get(key) ?? this.used.get(key);
    if (hit !== undefined) this.used.set(key, hit);
    return hit;
  }

  set(key: string, entry: FileAnalysis): void {
    this.used.set(key, entry);
    this.parsed++;
  }

  /** Ends a run: what it did not use is forgotten. */
  sweep(): void {
    this.entries = this.used;
    this.used = new Map();
  }

  get size(): number {
    return this.entries.size;
  }
}

export function analyzeFiles(files: readonly SourceFile[], cache?: FileScanCache): FileAnalysis[] {
  if (cache !== undefined) cache.parsed = 0;
  const out = files.map((file) => {
    const key = file.id !== undefined ? `${file.id}\0${file.path}` : undefined;
    let entry = key !== undefined ? cache?.get(key) : undefined;
    if (entry === undefined) {
      const scan = scanFile(file);
      const extracted = extractWorkloads(scan.objects);
      entry = { scan, workloads: extracted.workloads, workloadProblems: extracted.problems };
      if (key !== undefined) cache?.set(key, entry);
    }
    return entry;
  });
  cache?.sweep();
  return out;
}
