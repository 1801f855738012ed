// Rendering a source as Flux and Argo CD would: copy the source into a private directory, find what is
// rendered (planRenders), run kustomize/helm for each root whose inputs changed since the last pass (the
// cache), and hand the analysis the rendered objects plus the files they consumed. I/O at this edge only.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scanManifests } from '../manifests/scan.ts';
import type { Problem } from '../problems.ts';
import { type CachedRender, RenderCache, renderKey } from './cache.ts';
import { DEFAULT_LIMITS, type ExecLimits } from './exec.ts';
import type { RenderedObject } from './output.ts';
import { isUnder } from './paths.ts';
import { planRenders, type RenderPlan } from './plan.ts';
import { gitopsOfRendered, mergeGitops, sameGitops } from './discover.ts';
import { originOf } from './request.ts';
import { type RenderContext, runRender, writeGenerated } from './run-render.ts';
import { findTools, installHint, type Tools } from './tools.ts';
import { indexTree, type SourceTree, type TreeSource, TreeTooLargeError, treeWriter } from './tree.ts';

export type { RenderedObject } from './output.ts';
export type { TreeSource } from './tree.ts';

export interface RenderOptions {
  source: TreeSource;
  /** The sub-path planned (--path): roots and Flux/Argo objects are looked for below it; their paths are from the root. */
  scope?: string;
  /** Explicit binaries (config render.kustomize / render.helm); else ENBI_KUSTOMIZE / ENBI_HELM, PATH, the build cache. */
  tools?: Tools;
  limits?: ExecLimits;
  cache?: RenderCache;
  maxBytes?: number;
  /** kustomize/helm processes at a time (default 4: a render mostly waits on process start and disk). */
  concurrency?: number;
  /** The scope's manifest files as the source read them (relative to the scope), to find Flux/Argo CD objects without reading again. */
  scopeFiles?: readonly { path: string; text: string }[];
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
}

const sharedCache = new RenderCache();
const GITOPS_HINT = /fluxcd\.io|argoproj\.io/;

export async function renderSource(options: RenderOptions): Promise<RenderedSource> {
  const t0 = performance.now();
  const scope = (options.scope ?? '').replace(/^\/+|\/+$/g, '').replace(/^\.$/, '');
  const cache = options.cache ?? sharedCache;
  const maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
  const result: RenderedSource = { objects: [], consumed: new Set(), problems: [], warnings: [], stats: { renders: 0, fromCache: 0, ms: 0 } };
  let work: string | undefined;
  const deadline = Date.now() + (options.passTimeoutMs ?? 300_000);
  try {
    const tree = await indexTree(options.source);
    const written = scanManifests(await gitopsCandidates(tree, scope, options.scopeFiles)).objects;
    let plan = planRenders(tree.index, scope, written);
    // Nothing to render (plain manifests only): no copy, no process.
    if (plan.renders.length > 0) {
      work = await mkdtemp(join(tmpdir(), 'enbi-render-'));
      const treeDir = join(work, 'tree');
      const write = treeWriter(tree, treeDir, maxBytes);
      const ctx: RenderContext = { treeDir, tree: tree.index, tools: findTools(options.tools), limits: options.limits ?? DEFAULT_LIMITS, scratch: join(work, 'home') };
      const ran = new Set<string>();
      // Render, then look at what the renders produced for more Flux/Argo CD objects (a Kustomization applying
      // HelmReleases) until nothing new appears; the cache makes the repeated renders free.
      let gitops = written;
      let outputs = await renderAll(plan, ctx, cache, options, result.stats, ran, write, deadline);
      for (let round = 1; round < MAX_DISCOVERY_ROUNDS; round++) {
        const next = mergeGitops(written, gitopsOfRendered(outputs.flatMap((o) => o.objects)));
        if (sameGitops(next, gitops)) break;
        gitops = next;
        plan = planRenders(tree.index, scope, gitops);
        result.stats.fromCache = 0; // counted for the final plan only
        outputs = await renderAll(plan, ctx, cache, options, result.stats, ran, write, deadline);
      }
      for (const out of outputs) {
        result.objects.push(...out.objects);
        result.problems.push(...out.problems);
      }
    }
    result.warnings.push(...plan.warnings);
    const prefix = scope === '' ? '' : `${scope}/`;
    result.consumed = new Set([...plan.consumed].filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length)));
    return result;
  } catch (err) {
    if (!(err instanceof TreeTooLargeError)) throw err;
    result.problems.push({ message: err.message });
    return result;
  } finally {
    if (work !== undefined) await rm(work, { recursive: true, force: true });
    result.stats.ms = Math.round(performance.now() - t0);
  }
}

/** Files of the scope that may hold Flux or Argo CD objects: a cheap text test spares parsing the rest. */
async function gitopsCandidates(tree: SourceTree, scope: string, scopeFiles: RenderOptions['scopeFiles']): Promise<{ path: string; text: string }[]> {
  const prefix = scope === '' ? '' : `${scope}/`;
  // The caller has read the scope's manifests already (paths relative to the scope): use them.
  if (scopeFiles !== undefined) return scopeFiles.filter((f) => GITOPS_HINT.test(f.text)).map((f) => ({ path: prefix + f.path, text: f.text }));
  const candidates = [];
  for (const path of tree.index.paths) {
    if (!isUnder(path, scope) || !/\.(ya?ml|json)$/.test(path)) continue;
    const text = Buffer.from(await tree.read(path)).toString('utf8');
    if (GITOPS_HINT.test(text)) candidates.push({ path, text });
  }
  return candidates;
}

/** Flux Kustomization → HelmRelease → chart is two rounds; a few more allow nesting, bounded against loops. */
const MAX_DISCOVERY_ROUNDS = 5;

/**
 * Runs a plan's renders (those not cached), four at a time, after writing their files into the copy.
 * `ran`: keys rendered earlier in this pass, not counted as cache hits.
 */
async function renderAll(
  plan: RenderPlan,
  ctx: RenderContext,
  cache: RenderCache,
  options: RenderOptions,
  stats: RenderedSource['stats'],
  ran: Set<string>,
  write: (paths: Iterable<string>) => Promise<void>,
  deadline: number,
): Promise<CachedRender[]> {
  const { tools, tree } = ctx;
  // Decide every render first (refused, missing tool, cached, to run), then run the rest in parallel;
  // results are collected in plan order so the output does not depend on timing.
  const outputs: (CachedRender | undefined)[] = [];
  const toRun: { i: number; key: string }[] = [];
  for (const [i, planned] of plan.renders.entries()) {
    const r = planned.request;
    const where = { ...(r.file !== undefined ? { file: r.file } : {}), ...(r.line !== undefined ? { line: r.line } : {}) };
    if (planned.refusals.length > 0) {
      outputs[i] = { objects: [], problems: planned.refusals.map((message) => ({ ...where, message: `${message}: not rendered` })) };
      continue;
    }
    const tool = r.kind === 'helm' ? 'helm' : 'kustomize';
    const binary = tools[tool];
    if (binary === undefined) {
      outputs[i] = { objects: [], problems: [{ ...where, message: `${originOf(r)} needs ${installHint(tool, options.tools?.[tool])}` }] };
      continue;
    }
    // Where the asking object sits is not part of what renders: found written or rendered, the same render.
    const { file: _file, line: _line, ...what } = r;
    const key = renderKey({ request: what, tool: `${binary}\0${tools.kustomize ?? ''}`, inputs: planned.inputs, hashes: tree.hashes });
    outputs[i] = cache.get(key);
    if (outputs[i] !== undefined) {
      if (!ran.has(key)) stats.fromCache++;
    } else if (ran.size + toRun.length >= (options.maxRendersPerPass ?? 1_000)) {
      // Bounds what one repository can cost a pass; those rendered are cached, so the next pass goes on.
      outputs[i] = { objects: [], problems: [{ ...where, message: `${originOf(r)}: not rendered in this pass (more than ${options.maxRendersPerPass ?? 1_000} renders to run); the next sync renders it` }] };
    } else toRun.push({ i, key });
  }
  // Only renders that run need their files in the copy (a pass where all are cached copies nothing).
  await write(toRun.flatMap(({ i }) => plan.renders[i]!.inputs));
  for (const { i } of toRun) {
    const r = plan.renders[i]!.request;
    if (r.kind === 'kustomize' && r.generate !== undefined) await writeGenerated(r, ctx);
  }
  await inParallel(toRun, options.concurrency ?? 4, async ({ i, key }) => {
    if (Date.now() > deadline) {
      const seconds = Math.round((options.passTimeoutMs ?? 300_000) / 1000);
      outputs[i] = { objects: [], problems: [{ message: `${originOf(plan.renders[i]!.request)}: not rendered in this pass (renders took longer than ${seconds} s in all); the next sync goes on from the cache` }] };
      return;
    }
    outputs[i] = await runRender(plan.renders[i]!, i, ctx);
    cache.set(key, outputs[i]!);
    ran.add(key);
    stats.renders++;
  });
  return plan.renders.map(({ request: r }, i) => {
    const out = outputs[i]!;
    const where = { ...(r.file !== undefined ? { file: r.file } : {}), ...(r.line !== undefined ? { line: r.line } : {}) };
    return { objects: out.objects, problems: out.problems.map((p) => ({ ...where, ...p })) };
  });
}

async function inParallel<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}
