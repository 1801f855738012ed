// The controller's view of the manifests: synced on an interval or at once on a webhook, analysed only
// when the commit (or, for a directory, the content) changed. A failed sync keeps the last good analysis.
import { createHash } from 'node:crypto';
import { analyzeSource, type Analysis } from '../pipeline/analyze.ts';
import { FileScanCache } from '../pipeline/file-scans.ts';
import { readDirSource } from '../source/dir.ts';
import type { SourceFile } from '../source/files.ts';
import { type GitAuth, syncGitSource } from '../source/git.ts';
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

export function sourceState(cfg: ControllerConfig, cacheDir: string, auth: GitAuth | undefined, log: (m: string) => void): SourceState {
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
        const { revision, files } = await read(source);
        error = undefined;
        if (snapshot?.revision === revision) {
          snapshot.syncedAt = new Date();
          return false;
        }
        snapshot = { revision, analysis: analyzeSource(files, { cache: scans }), syncedAt: new Date() };
        log(`source at ${revision.slice(0, 12)}: ${snapshot.analysis.workloads.length} workloads with enbi annotations, ${snapshot.analysis.problems.length} problems`);
        for (const p of snapshot.analysis.problems) log(`manifest problem: ${[p.file, p.line].filter((x) => x !== undefined).join(':')} ${p.object ?? ''} ${p.message}`);
        return true;
      } catch (err) {
        error = (err as Error).message;
        log(`source sync failed (keeping ${snapshot !== undefined ? snapshot.revision.slice(0, 12) : 'nothing'}): ${error}`);
        return false;
      }
    },
  };

  async function read(source: NonNullable<ControllerConfig['source']>): Promise<{ revision: string; files: SourceFile[] }> {
    if (source.dir !== undefined) {
      const files = await readDirSource(source.dir, source.path);
      const hash = createHash('sha256');
      for (const f of files) hash.update(f.path).update('\0').update(f.text).update('\0');
      return { revision: hash.digest('hex'), files };
    }
    const snap = await syncGitSource({ url: source.url!, cacheDir, path: source.path, idleTimeoutMs: source.timeoutSeconds * 1000, ...(source.ref !== undefined ? { ref: source.ref } : {}), ...(auth !== undefined ? { auth } : {}) });
    return { revision: snap.commit, files: snap.files };
  }
}
