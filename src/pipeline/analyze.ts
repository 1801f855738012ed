// Observe, first half: from source files to what each workload needs. Pure: no I/O.
import { containerNeedsOf, type LockIndex, type WorkloadNeeds } from '../contract/container-needs.ts';
import { FlakeLockError, parseFlakeLock } from '../flake/lock.ts';
import type { FlakeRef } from '../flake/ref.ts';
import { isEnbiAnnotated, type Workload } from '../manifests/workloads.ts';
import type { Problem } from '../problems.ts';
import { renderedWorkloads, type RenderedInput } from '../render/analysis.ts';
import { isLockPath, type SourceFile } from '../source/files.ts';
import { IGNORE_FILE, ignoreMatcher, parseIgnoreFile } from '../source/ignore.ts';
import { analyzeFiles, type FileScanCache, type NeedsResult } from './file-scans.ts';

/** What was read, for the summary line: how much was Kubernetes, how much was skipped. */
export interface ManifestCounts {
  files: number;
  documents: number;
  workloads: number;
  /** Workloads whose pod template carries an enbi annotation. */
  annotated: number;
  /** Documents that are not Kubernetes objects (values, CI configs, JSON arrays) or are templates. */
  skipped: number;
  /** Files inside a Helm chart's templates/ directory: templates, not manifests. */
  chartTemplates: number;
  /** Files left out by --exclude or .enbiignore. */
  excluded: number;
  /** Roots rendered (kustomize directories, charts, Flux and Argo CD objects), those that failed included. */
  roots: number;
  /** Of `workloads`, those the renders produced. */
  renderedWorkloads: number;
}

export interface Analysis {
  workloads: WorkloadNeeds[];
  /**
   * With `listAll`: every workload read, plain and rendered, annotated or not (`workloads` holds those enbi
   * plans for). Only on request: annotations as written may hold credentials, which nothing else keeps.
   */
  found?: Workload[];
  problems: Problem[];
  warnings: Problem[];
  filesScanned: number;
  counts: ManifestCounts;
  /** kustomize/helm renders: how many ran and how many came from the cache (absent when nothing was rendered). */
  rendered?: { roots: number; fromCache: number; objects: number; ms: number };
  /** flake.lock inputs by lock file path, for pinning indirect flakes found later (in pods). */
  locks: LockIndex;
}

export interface AnalyzeOptions {
  /** Globs (gitignore syntax) of paths to leave out, on top of the source's .enbiignore. */
  exclude?: readonly string[];
  /** Parses kept between runs by file id (a Git blob id): a sync re-parses only the files that changed. */
  cache?: FileScanCache;
  /** What src/render produced for this source; the files it consumed are not read as plain manifests. */
  rendered?: RenderedInput;
  /** Keep every workload read in `found` (enbi diff --list). */
  listAll?: boolean;
}

export function analyzeSource(files: readonly SourceFile[], options: AnalyzeOptions = {}): Analysis {
  const rendered = options.rendered;
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  const ignoreFile = files.find((f) => f.path === IGNORE_FILE);
  const ignored = ignoreMatcher([
    ...(ignoreFile !== undefined ? parseIgnoreFile(ignoreFile.text) : []),
    ...(options.exclude ?? []),
  ]);
  const chartTemplate = chartTemplateMatcher(files);
  const counts: ManifestCounts = {
    files: 0,
    documents: 0,
    workloads: 0,
    annotated: 0,
    skipped: 0,
    chartTemplates: 0,
    excluded: 0,
    roots: rendered?.roots.length ?? 0,
    renderedWorkloads: 0,
  };
  const readable: SourceFile[] = [];
  for (const f of files) {
    if (f.path === IGNORE_FILE) continue;
    if (ignored(f.path)) counts.excluded++;
    // Before templates: a chart file enbi cannot read (a name that is not UTF-8) is one helm would render.
    else if (f.unreadable !== undefined)
      (f.unreadable.severity === 'problem' ? problems : warnings).push({ file: f.path, message: f.unreadable.message });
    else if (chartTemplate(f.path)) counts.chartTemplates++;
    else readable.push(f);
  }
  const locks = new Map<string, ReadonlyMap<string, FlakeRef>>();
  for (const f of readable.filter((f) => isLockPath(f.path))) {
    try {
      locks.set(f.path, parseFlakeLock(f.text, f.path));
    } catch (err) {
      if (!(err instanceof FlakeLockError)) throw err;
      problems.push({ file: f.path, message: err.message });
    }
  }
  const manifests = readable.filter((f) => !isLockPath(f.path) && rendered?.consumed.has(f.path) !== true);
  const perFile = analyzeFiles(manifests, options.cache);
  for (const f of perFile) {
    for (const p of f.scan.problems) problems.push(p);
    counts.documents += f.scan.documents;
    counts.skipped += f.scan.skipped;
  }
  for (const f of perFile) for (const p of f.workloadProblems) problems.push(p);
  counts.files = manifests.length;
  if (rendered !== undefined) {
    problems.push(...rendered.problems);
    warnings.push(...rendered.warnings);
  }
  // The contract's verdicts depend on the file and on the flake.lock files (for inputs they pin).
  const locksKey = readable
    .filter((f) => isLockPath(f.path))
    .map((f) => `${f.path}\0${f.id ?? f.text}`)
    .join('\0');
  const workloads: WorkloadNeeds[] = [];
  const found: Workload[] = [];
  for (const f of perFile) {
    if (f.needs?.locksKey !== locksKey)
      f.needs = { locksKey, results: f.workloads.map((w): NeedsResult => containerNeedsOf(w, locks as LockIndex)) };
    f.workloads.forEach((workload, i) => {
      found.push(workload);
      counts.workloads++;
      if (isEnbiAnnotated(workload)) counts.annotated++;
      const result = f.needs!.results[i]!;
      for (const p of result.problems) problems.push(p);
      for (const w of result.warnings) warnings.push(w);
      if (result.needs.length > 0) workloads.push({ workload, needs: result.needs });
    });
  }
  // Rendered workloads (kustomize, helm): checked on every pass, named by their origin in problems.
  if (rendered !== undefined) {
    const fromRenders = renderedWorkloads(rendered);
    problems.push(...fromRenders.problems);
    for (const workload of fromRenders.workloads) {
      found.push(workload);
      counts.workloads++;
      counts.renderedWorkloads++;
      if (isEnbiAnnotated(workload)) counts.annotated++;
      const result = containerNeedsOf(workload, locks as LockIndex);
      const origin = workload.origin !== undefined ? { origin: workload.origin } : {};
      problems.push(...result.problems.map((p) => ({ ...p, ...origin })));
      warnings.push(...result.warnings.map((p) => ({ ...p, ...origin })));
      if (result.needs.length > 0) workloads.push({ workload, needs: result.needs });
    }
  }
  const analysis: Analysis = {
    workloads,
    ...(options.listAll === true ? { found } : {}),
    problems,
    warnings,
    filesScanned: manifests.length,
    counts,
    locks,
  };
  if (rendered !== undefined && rendered.stats.renders + rendered.stats.fromCache > 0) {
    analysis.rendered = {
      roots: rendered.stats.renders,
      fromCache: rendered.stats.fromCache,
      objects: rendered.objects.length,
      ms: rendered.stats.ms,
    };
  }
  return analysis;
}

/** Files below `templates/` of a directory holding a Chart.yaml are Helm templates: not manifests until rendered. */
function chartTemplateMatcher(files: readonly SourceFile[]): (path: string) => boolean {
  const charts = files
    .filter((f) => f.path === 'Chart.yaml' || f.path.endsWith('/Chart.yaml'))
    .map((f) => f.path.slice(0, -'Chart.yaml'.length));
  if (charts.length === 0) return () => false;
  return (path) => charts.some((dir) => path.startsWith(`${dir}templates/`));
}
