// Manifest files scanned one by one, each scan kept by the file's content id (a Git blob id) so that the next
// sync re-parses only the files whose content changed. Scans are values: reusing one is always safe.
import { type ManifestObject, type ScanResult, scanFile } from '../manifests/scan.ts';
import type { Problem } from '../problems.ts';
import type { SourceFile } from '../source/files.ts';

/** Scans by `id\0path`; entries not used by the last run are dropped, so it holds one source's files. */
export class FileScanCache {
  private scans = new Map<string, ScanResult>();
  private used = new Map<string, ScanResult>();
  /** Files parsed (not found in the cache) by the last run: what a sync really cost. */
  parsed = 0;

  get(key: string): ScanResult | undefined {
    const hit = this.scans.get(key) ?? this.used.get(key);
    if (hit !== undefined) this.used.set(key, hit);
    return hit;
  }

  set(key: string, scan: ScanResult): void {
    this.used.set(key, scan);
    this.parsed++;
  }

  /** Ends a run: what it did not use is forgotten. */
  sweep(): void {
    this.scans = this.used;
    this.used = new Map();
  }

  get size(): number {
    return this.scans.size;
  }
}

export function scanFiles(files: readonly SourceFile[], cache?: FileScanCache): ScanResult {
  const total: ScanResult = { objects: [] as ManifestObject[], problems: [] as Problem[], documents: 0, skipped: 0 };
  if (cache !== undefined) cache.parsed = 0;
  for (const file of files) {
    const key = file.id !== undefined ? `${file.id}\0${file.path}` : undefined;
    let scan = key !== undefined ? cache?.get(key) : undefined;
    if (scan === undefined) {
      scan = scanFile(file);
      if (key !== undefined) cache?.set(key, scan);
    }
    for (const o of scan.objects) total.objects.push(o);
    for (const p of scan.problems) total.problems.push(p);
    total.documents += scan.documents;
    total.skipped += scan.skipped;
  }
  cache?.sweep();
  return total;
}
