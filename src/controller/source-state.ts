// The controller's view of the manifests: synced on an interval or at once on a webhook, analysed only
// when the commit (or, for a directory, the content) changed. A failed sync keeps the last good analysis.
import { createHash } from 'node:crypto';
import { analyzeSource, type Analysis } from '../pipeline/analyze.ts';
import { FileScanCache } from '../pipeline/file-scans.ts';
import { readDirSource } from '../source/dir.ts';
import type { SourceFile } from '../source/files.ts';
import { type GitAuth, repoDirFor, syncGitSource } from '../source/git.ts';
import { renderOptionsOf } from '../render/config.ts';
import { renderSource, type RenderedSource } from '../render/index.ts';
import type { ControllerConfig } from './config.ts';

export interface SourceSnapshot {
  revision: string;
  analysis: Analysis;
  syncedAt: Date;
}

export interface SourceState {
  current(): SourceSnapshot | undefined;
  lastError(): string | undefined;
  /** Syncs when due (or when forced); returns true when the analysis changed. */
  refresh(force: boolean): Promise<boolean>;
}

export function sourceState(
  cfg: ControllerConfig,
  cacheDir: string,
  auth: GitAuth | undefined,
  log: (m: string) => void,
): SourceState {
  let snapshot: SourceSnapshot | undefined;
  let error: string | undefined;
  let lastAttempt = 0;
  // Each Git file's parse, by blob id: a new commit re-parses only the files it changed.
  const scans = new FileScanCache();
  return {
    current: () => snapshot,
    lastError: () => error,
    async refresh(force) {
      const source = cfg.source;
      // No source: only trustedNamespaces' pods can ask for builds; there is nothing to sync.
      if (source === undefined) return false;
      const due = Date.now() - lastAttempt >= source.intervalSeconds * 1000;
      if (!force && !due && snapshot !== undefined) return false;
      lastAttempt = Date.now();
      try {
        const { revision, files, rendered } = await read(source, snapshot?.revision);
        error = undefined;
        if (snapshot?.revision === revision) {
          snapshot.syncedAt = new Date();
          return false;
        }
        snapshot = {
          revision,
          analysis: analyzeSource(files, { cache: scans, ...(rendered !== undefined ? { rendered } : {}) }),
          syncedAt: new Date(),
        };
        log(
          `source at ${revision.slice(0, 12)}: ${snapshot.analysis.workloads.length} workloads with enbi annotations, ${snapshot.analysis.problems.length} problems`,
        );
        for (const p of snapshot.analysis.problems)
          log(
            `manifest problem: ${[p.file, p.line].filter((x) => x !== undefined).join(':')} ${p.object ?? ''} ${p.message}${p.origin !== undefined ? ` (rendered by ${p.origin})` : ''}`,
          );
        return true;
      } catch (err) {
        error = (err as Error).message;
        log(
          `source sync failed (keeping ${snapshot !== undefined ? snapshot.revision.slice(0, 12) : 'nothing'}): ${error}`,
        );
        return false;
      }
    },
  };

  async function read(
    source: NonNullable<ControllerConfig['source']>,
    known: string | undefined,
  ): Promise<{ revision: string; files: SourceFile[]; rendered?: RenderedSource }> {
    const render = renderOptionsOf(cfg);
    if (source.dir !== undefined) {
      const files = await readDirSource(source.dir, source.path);
      // Rendering is cached by its inputs, so a directory renders again cheaply; its output is part of the
      // revision because templates and kustomizations are not among the manifest files hashed here.
      const rendered = await renderSource({
        ...render,
        source: { kind: 'dir', root: source.dir },
        scope: source.path,
        scopeFiles: files,
      });
      const hash = createHash('sha256');
      for (const f of files) hash.update(f.path).update('\0').update(f.text).update('\0');
      hash.update(JSON.stringify([rendered.objects, rendered.problems, rendered.warnings, [...rendered.consumed]]));
      return { revision: hash.digest('hex'), files, rendered };
    }
    const snap = await syncGitSource({
      url: source.url!,
      cacheDir,
      path: source.path,
      idleTimeoutMs: source.timeoutSeconds * 1000,
      ...(source.ref !== undefined ? { ref: source.ref } : {}),
      ...(auth !== undefined ? { auth } : {}),
    });
    // The same commit renders the same: skip copying its tree out again.
    if (snap.commit === known) return { revision: snap.commit, files: snap.files };
    // Flux and Argo CD objects are rendered only when they name this repository and ref.
    const repository = { url: source.url!, ref: snap.ref, commit: snap.commit };
    const rendered = await renderSource({
      ...render,
      source: { kind: 'git', gitdir: repoDirFor(cacheDir, source.url!), commit: snap.commit },
      scope: source.path,
      scopeFiles: snap.files,
      repository,
    });
    return { revision: snap.commit, files: snap.files, rendered };
  }
}
