// Rendering a source as Flux and Argo CD would: index the source, find what is rendered (planRenders, pure),
// run kustomize/helm in a private copy for each root whose inputs changed since the last pass (the cache),
// follow Flux/Argo CD objects that renders produce, and hand the analysis the rendered objects plus the files
// they consumed. I/O at this edge only.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ManifestObject, scanManifests } from '../manifests/scan.ts';
import type { Problem } from '../problems.ts';
import { RenderCache } from './cache.ts';
import { DEFAULT_LIMITS, type ExecLimits } from './exec.ts';
import type { RenderedObject } from './output.ts';
import { groupOf } from './object-access.ts';
import { isUnder, normalizeDir } from './paths.ts';
import { patchOnlyFiles } from './closure.ts';
import { planRenders, type RenderPlan } from './plan.ts';
import { gitopsOfRendered, mergeGitops, sameGitops } from './discover.ts';
import type { RenderRequest } from './request.ts';
import { renderAll } from './run-all.ts';
import { type RenderContext, TREE_DIR } from './run-render.ts';
import type { ReadRepository } from './source-match.ts';
import { findTools, type Tools } from './tools.ts';
import { indexTree, type SourceTree, type TreeSource, TreeTooLargeError, treeWriter } from './tree.ts';
import { withoutExcluded } from './tree-index.ts';
import { decodeUtf8 } from '../source/files.ts';
import { IGNORE_FILE, ignoreMatcher, parseIgnoreFile } from '../source/ignore.ts';

export type { RenderedObject } from './output.ts';
export type { TreeSource } from './tree.ts';
export type { ReadRepository } from './source-match.ts';

export interface RenderOptions {
  source: TreeSource;
  /** The sub-path planned (--path): roots and Flux/Argo objects are looked for below it; their paths are from the root. */
  scope?: string;
  /** Explicit binaries (config render.kustomize / render.helm); else ENBI_KUSTOMIZE / ENBI_HELM, PATH, the build cache. */
  tools?: Tools;
  limits?: ExecLimits;
  cache?: RenderCache;
  /** Largest total size of the files copied for renders in one pass (default 64 MiB). */
  maxBytes?: number;
  /** kustomize/helm processes at a time (default 4: a render mostly waits on process start and disk). */
  concurrency?: number;
  /**
   * Globs (gitignore syntax, --exclude) of paths left out, on top of the scope's .enbiignore: relative to
   * the scope for paths below it, to the repository's root for paths outside it. Left-out files are neither
   * read for Flux/Argo CD objects nor rendered, nor are the directories they leave empty.
   */
  exclude?: readonly string[];
  /** The scope's manifest files as the source read them (relative to the scope), to find Flux/Argo CD objects without reading again. */
  scopeFiles?: readonly { path: string; text: string }[];
  /**
   * The repository and ref enbi reads: Flux objects whose sourceRef resolves to it and Argo CD Applications
   * whose repoURL names it are rendered; any other source is a warning, never rendered from this one.
   * No URL (a directory without --source-url): every source that names a URL is another source.
   */
  repository?: ReadRepository;
  /** A pass starts no render after this long (default 300 s), so a repository cannot hold the source loop for hours. */
  passTimeoutMs?: number;
  /** Renders run in one pass at most (default 1,000): the rest are problems this pass, rendered on the next. */
  maxRendersPerPass?: number;
}

export interface RenderedSource {
  objects: RenderedObject[];
  /** Scope-relative paths of files read by renders: not read again as plain manifests. */
  consumed: ReadonlySet<string>;
  problems: Problem[];
  warnings: Problem[];
  stats: { renders: number; fromCache: number; ms: number };
  /** Every root rendered, and for those that gave no answer (failed, timed out) why: their objects are unknown. */
  roots: RootOutcome[];
  /** Set when the pass as a whole gave no answer (the source too large to copy): every root is unknown. */
  incomplete?: string;
}

export interface RootOutcome {
  origin: string;
  failure?: string;
  /** Who asked ("Kustomization flux-system/apps", "kustomize build", "helm template"), and where that object is. */
  by?: string;
  /** The directory rendered, from the repository's root. */
  dir?: string;
  render?: RenderRequest['kind'];
  file?: string;
  line?: number;
}

const sharedCache = new RenderCache();
const GITOPS_HINT = /fluxcd\.io|argoproj\.io/;

export async function renderSource(options: RenderOptions): Promise<RenderedSource> {
  const t0 = performance.now();
  const scope = normalizeDir((options.scope ?? '').replace(/^\/+/, ''));
  const cache = options.cache ?? sharedCache;
  const maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
  const result: RenderedSource = {
    objects: [],
    consumed: new Set(),
    problems: [],
    warnings: [],
    stats: { renders: 0, fromCache: 0, ms: 0 },
    roots: [],
  };
  if (scope === undefined)
    return { ...result, problems: [{ message: `path "${options.scope}" leaves the source: nothing rendered` }] };
  let work: string | undefined;
  const deadline = Date.now() + (options.passTimeoutMs ?? 300_000);
  try {
    const indexed = await indexTree(options.source);
    const isExcluded = await exclusionOf(indexed, scope, options);
    const tree = isExcluded === undefined ? indexed : { ...indexed, index: withoutExcluded(indexed.index, isExcluded) };
    // Strategic-merge patches look like partial Flux objects; they are changes, found applied in renders' output.
    const patches = patchOnlyFiles(tree.index);
    const written = scanManifests(
      (await gitopsCandidates(tree, scope, options.scopeFiles, isExcluded)).filter((f) => !patches.has(f.path)),
    ).objects;
    // Flux sources (GitRepository, HelmChart, …) the scope's objects name may be outside --path.
    if (scope !== '' && written.some((m) => FLUX_CONSUMERS.has(groupOf(m.object))))
      written.push(...(await fluxSourcesOutside(tree, scope, patches)));
    const repository = options.repository ?? {};
    let plan = planRenders(tree.index, scope, written, repository);
    // Nothing to render (plain manifests only): no copy, no process.
    if (plan.renders.length > 0) {
      work = await mkdtemp(join(tmpdir(), 'enbi-render-'));
      const treeDir = join(work, TREE_DIR);
      const write = treeWriter(tree, treeDir, maxBytes);
      const ctx: RenderContext = {
        treeDir,
        tree: tree.index,
        tools: findTools(options.tools),
        limits: options.limits ?? DEFAULT_LIMITS,
        scratch: join(work, 'home'),
      };
      const ran = new Set<string>();
      // Render, then look at what the renders produced for more Flux/Argo CD objects (a Kustomization applying
      // HelmReleases) until nothing new appears; the cache makes the repeated renders free.
      let gitops = written;
      let outputs = await renderAll(plan, ctx, cache, options, result.stats, ran, write, deadline);
      for (let round = 1; round < MAX_DISCOVERY_ROUNDS; round++) {
        const next = mergeGitops(written, gitopsOfRendered(outputs.flatMap((o) => o.objects)));
        if (sameGitops(next, gitops)) break;
        gitops = next;
        plan = planRenders(tree.index, scope, gitops, repository);
        result.stats.fromCache = 0; // counted for the final plan only
        outputs = await renderAll(plan, ctx, cache, options, result.stats, ran, write, deadline);
      }
      for (const out of outputs) {
        result.objects.push(...out.objects);
        result.problems.push(...out.problems);
        const r = out.request;
        result.roots.push({
          origin: out.origin,
          by: r.by,
          dir: r.dir,
          render: r.kind,
          ...(r.file !== undefined ? { file: r.file } : {}),
          ...(r.line !== undefined ? { line: r.line } : {}),
          ...(out.failure !== undefined ? { failure: out.failure } : {}),
        });
      }
    }
    result.warnings.push(...plan.warnings);
    result.problems.push(...plan.problems);
    const prefix = scope === '' ? '' : `${scope}/`;
    result.consumed = new Set(
      [...plan.consumed].filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length)),
    );
    return result;
  } catch (err) {
    if (!(err instanceof TreeTooLargeError)) throw err;
    result.problems.push({ message: err.message });
    result.incomplete = err.message;
    return result;
  } finally {
    if (work !== undefined) await rm(work, { recursive: true, force: true });
    result.stats.ms = Math.round(performance.now() - t0);
  }
}

/**
 * What --exclude and the scope's .enbiignore leave out, as a predicate on repository paths (patterns are
 * relative to the scope below it, to the root outside it), or undefined when they leave out nothing.
 */
async function exclusionOf(
  tree: SourceTree,
  scope: string,
  options: RenderOptions,
): Promise<((path: string) => boolean) | undefined> {
  const text =
    options.scopeFiles !== undefined
      ? options.scopeFiles.find((f) => f.path === IGNORE_FILE)?.text
      : await tree.ignoreFile(scope);
  const patterns = [...(text !== undefined ? parseIgnoreFile(text) : []), ...(options.exclude ?? [])];
  if (patterns.length === 0) return undefined;
  const ignored = ignoreMatcher(patterns);
  const prefix = scope === '' ? '' : `${scope}/`;
  return (path) => ignored(path.startsWith(prefix) ? path.slice(prefix.length) : path);
}

/** Files of the scope that may hold Flux or Argo CD objects: a cheap text test spares parsing the rest. */
async function gitopsCandidates(
  tree: SourceTree,
  scope: string,
  scopeFiles: RenderOptions['scopeFiles'],
  isExcluded: ((path: string) => boolean) | undefined,
): Promise<{ path: string; text: string }[]> {
  const prefix = scope === '' ? '' : `${scope}/`;
  // The caller has read the scope's manifests already (paths relative to the scope): use them, but for those left out.
  if (scopeFiles !== undefined)
    return scopeFiles
      .filter((f) => GITOPS_HINT.test(f.text) && f.path !== IGNORE_FILE && isExcluded?.(prefix + f.path) !== true)
      .map((f) => ({ path: prefix + f.path, text: f.text }));
  const candidates = [];
  for (const path of tree.index.paths) {
    if (!isUnder(path, scope) || !/\.(ya?ml|json)$/.test(path)) continue;
    // Not UTF-8: not read (the source reports it), never read with U+FFFD in it.
    const text = decodeUtf8(await tree.read(path));
    if (text !== undefined && GITOPS_HINT.test(text)) candidates.push({ path, text });
  }
  return candidates;
}

const FLUX_CONSUMERS = new Set(['kustomize.toolkit.fluxcd.io', 'helm.toolkit.fluxcd.io', 'source.toolkit.fluxcd.io']);

/** Flux source objects (GitRepository, OCIRepository, Bucket, HelmChart, …) in the files outside the scope. */
async function fluxSourcesOutside(
  tree: SourceTree,
  scope: string,
  patches: ReadonlySet<string>,
): Promise<ManifestObject[]> {
  const files = [];
  for (const path of tree.index.paths) {
    if (isUnder(path, scope) || !/\.(ya?ml|json)$/.test(path) || patches.has(path)) continue;
    const text = decodeUtf8(await tree.read(path));
    if (text?.includes('source.toolkit.fluxcd.io') === true) files.push({ path, text });
  }
  return scanManifests(files).objects.filter((m) => groupOf(m.object) === 'source.toolkit.fluxcd.io');
}

/** Flux Kustomization → HelmRelease → chart is two rounds; a few more allow nesting, bounded against loops. */
const MAX_DISCOVERY_ROUNDS = 5;
