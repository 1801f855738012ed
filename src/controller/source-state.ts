// The controller's view of the manifests: synced on an interval or at once on a webhook, analysed only
// when the commit (or, for a directory, the content) changed. A failed sync keeps the last good analysis.
// A render root (kustomize, Helm) whose render gives no answer (fails, times out) is unknown, not empty: the
// objects of its last good render stand in for it, and the same commit is rendered again after a backoff
// (the source loop asks for it: renderRetryInMs) until the root answers.
import { createHash } from 'node:crypto';
import { analyzeSource, type Analysis } from '../pipeline/analyze.ts';
import { FileScanCache } from '../pipeline/file-scans.ts';
import { readDirSource } from '../source/dir.ts';
import type { SourceFile } from '../source/files.ts';
import { type GitAuth, repoDirFor, syncGitSource } from '../source/git.ts';
import { renderOptionsOf } from '../render/config.ts';
import { type RenderedObject, renderSource, type RenderedSource } from '../render/index.ts';
import type { ControllerConfig } from './config.ts';
import { sourceBackoffMs } from './source-loop.ts';

export interface SourceSnapshot {
  revision: string;
  analysis: Analysis;
  syncedAt: Date;
  /** Render roots whose last render gave no answer (failed, timed out): unknown, never unreferenced. */
  unknown: readonly UnknownRender[];
}

export interface UnknownRender {
  /** `kustomization → apps/prod`, `Kustomization flux-system/apps → apps/prod`. */
  origin: string;
  /** What its last attempt said. */
  message: string;
  /** Its first failed attempt of this run of failures. */
  since: Date;
  /** Failed attempts in a row. */
  attempts: number;
  /** The revision of its last good render, whose objects stand in for it; absent when it has none yet. */
  lastGoodRevision?: string;
}

export interface SourceState {
  current(): SourceSnapshot | undefined;
  lastError(): string | undefined;
  /** Syncs when due (or when forced); returns true when the analysis changed. */
  refresh(force: boolean): Promise<boolean>;
  /** While a root is unknown: when the same commit is rendered again (ms from now, 0 when due); else undefined. */
  renderRetryInMs(): number | undefined;
}

/** What stands in for a root whose render gave no answer, from the render where it last answered. */
interface GoodRender {
  revision: string;
  objects: RenderedObject[];
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
  // Each root's last answer (by origin), and the roots whose last render gave none.
  let lastGood = new Map<string, GoodRender>();
  let unknown = new Map<string, UnknownRender>();
  let lastRenderAt = 0;
  const intervalMs = (cfg.source?.intervalSeconds ?? 60) * 1000;
  const retryInMs = (): number | undefined => {
    if (unknown.size === 0) return undefined;
    const attempts = Math.max(...[...unknown.values()].map((u) => u.attempts));
    return Math.max(0, lastRenderAt + sourceBackoffMs(intervalMs, attempts) - Date.now());
  };
  return {
    current: () => snapshot,
    lastError: () => error,
    renderRetryInMs: retryInMs,
    async refresh(force) {
      const source = cfg.source;
      // No source: only trustedNamespaces' pods can ask for builds; there is nothing to sync.
      if (source === undefined) return false;
      const due = Date.now() - lastAttempt >= source.intervalSeconds * 1000;
      const rerender = retryInMs() === 0;
      if (!force && !due && !rerender && snapshot !== undefined) return false;
      lastAttempt = Date.now();
      try {
        // The same commit is rendered again only when a root gave no answer and its backoff has passed.
        const { revision, files, rendered } = await read(source, rerender ? undefined : snapshot?.revision);
        error = undefined;
        if (snapshot?.revision === revision && (rendered === undefined || !rerender)) {
          snapshot.syncedAt = new Date();
          return false;
        }
        const standIns = rendered !== undefined ? settle(revision, rendered) : [];
        const withStandIns =
          rendered !== undefined ? { ...rendered, objects: [...rendered.objects, ...standIns] } : undefined;
        snapshot = {
          revision,
          analysis: analyzeSource(files, {
            cache: scans,
            ...(withStandIns !== undefined ? { rendered: withStandIns } : {}),
          }),
          syncedAt: new Date(),
          unknown: [...unknown.values()],
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

  /**
   * Records each root's answer, or its lack of one, and returns the objects that stand in for the unknown
   * roots: those of their last good render. While any root is unknown, a root rendered before and absent now
   * is unknown too: it may have been found through the one that failed (a Flux Kustomization in its output).
   */
  function settle(revision: string, rendered: RenderedSource): RenderedObject[] {
    lastRenderAt = Date.now();
    const byOrigin = new Map<string, RenderedObject[]>();
    for (const o of rendered.objects) byOrigin.set(o.origin, [...(byOrigin.get(o.origin) ?? []), o]);
    const failures = new Map<string, string>();
    for (const r of rendered.roots) if (r.failure !== undefined) failures.set(r.origin, r.failure);
    const seen = new Set(rendered.roots.map((r) => r.origin));
    if (rendered.incomplete !== undefined || failures.size > 0) {
      const why = rendered.incomplete ?? `not rendered this time (${[...failures.keys()].join(', ')} gave no answer)`;
      for (const origin of lastGood.keys()) if (!seen.has(origin)) failures.set(origin, why);
      if (rendered.incomplete !== undefined && lastGood.size === 0) failures.set('every render root', why);
    }
    const good = new Map<string, GoodRender>();
    const next = new Map<string, UnknownRender>();
    const standIns: RenderedObject[] = [];
    for (const r of rendered.roots)
      if (!failures.has(r.origin)) good.set(r.origin, { revision, objects: byOrigin.get(r.origin) ?? [] });
    for (const [origin, message] of failures) {
      const before = unknown.get(origin);
      const kept = lastGood.get(origin);
      const u: UnknownRender = {
        origin,
        message,
        since: before?.since ?? new Date(),
        attempts: (before?.attempts ?? 0) + 1,
        ...(kept !== undefined ? { lastGoodRevision: kept.revision } : {}),
      };
      next.set(origin, u);
      if (kept !== undefined) {
        good.set(origin, kept);
        standIns.push(...kept.objects);
      }
      log(
        `render of ${origin} gave no answer (attempt ${u.attempts}, failing since ${u.since.toISOString()}): ${message.startsWith(`${origin}: `) ? message.slice(origin.length + 2) : message}; ${
          kept !== undefined
            ? `its workloads as rendered at ${kept.revision.slice(0, 12)} stand in for it (nothing it named is collected)`
            : 'no good render of it yet: no build is collected meanwhile'
        }; rendered again in ${Math.round(sourceBackoffMs(intervalMs, u.attempts) / 1000)} s`,
      );
    }
    for (const [origin, u] of unknown)
      if (!next.has(origin) && good.has(origin))
        log(`render of ${origin} answered again after ${u.attempts} failed attempts: its problem is cleared`);
    lastGood = good;
    unknown = next;
    return standIns;
  }

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
