// Runs the renders of one plan: decides for each whether it is refused, lacks its tool, is cached or must run,
// writes the files of those that run into the private copy, runs them a few at a time within the pass's
// limits, and returns each render's objects and problems in plan order (independent of timing).
import { type CachedRender, type RenderCache, renderKey } from './cache.ts';
import type { RenderOptions, RenderedSource } from './index.ts';
import type { RenderPlan } from './plan.ts';
import { originOf, toolOf } from './request.ts';
import { inCopyTerms, type RenderContext, runRender, writeGenerated } from './run-render.ts';
import { installHint } from './tools.ts';
import { TreeTooLargeError } from './tree.ts';

/**
 * Runs a plan's renders (those not cached), four at a time, after writing their files into the copy.
 * `ran`: keys rendered earlier in this pass, not counted as cache hits.
 */
export async function renderAll(
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
    const where = {
      ...(r.file !== undefined ? { file: r.file } : {}),
      ...(r.line !== undefined ? { line: r.line } : {}),
    };
    if (planned.refusals.length > 0) {
      outputs[i] = {
        objects: [],
        problems: [{ ...where, message: `${originOf(r)}: ${[...new Set(planned.refusals)].join('; ')}: not rendered` }],
      };
      continue;
    }
    const tool = toolOf(r);
    const binary = tool === undefined ? '' : tools[tool];
    if (tool !== undefined && binary === undefined) {
      outputs[i] = {
        objects: [],
        problems: [{ ...where, message: `${originOf(r)}: ${installHint(tool, options.tools?.[tool])}` }],
      };
      continue;
    }
    // Where the asking object sits is not part of what renders: found written or rendered, the same render.
    const { file: _file, line: _line, ...what } = r;
    const key = renderKey({
      request: what,
      tool: `${binary}\0${tools.kustomize ?? ''}`,
      inputs: planned.inputs,
      hashes: tree.hashes,
    });
    outputs[i] = cache.get(key);
    if (outputs[i] !== undefined) {
      if (!ran.has(key)) stats.fromCache++;
    } else if (ran.size + toRun.length >= (options.maxRendersPerPass ?? 1_000)) {
      // Bounds what one repository can cost a pass; those rendered are cached, so the next pass goes on.
      outputs[i] = {
        objects: [],
        problems: [
          {
            ...where,
            message: `${originOf(r)}: not rendered in this pass (more than ${options.maxRendersPerPass ?? 1_000} renders to run); the next sync renders it`,
          },
        ],
      };
    } else toRun.push({ i, key });
  }
  // Whatever one root does to the copy or the tools (a file it cannot read, an unexpected file system error)
  // is a problem of that root: the other roots are still rendered. Only the pass's size limit ends it.
  const failed = (i: number, err: unknown): CachedRender => {
    if (err instanceof TreeTooLargeError) throw err;
    return {
      objects: [],
      problems: [
        {
          message: `${originOf(plan.renders[i]!.request)}: not rendered: ${inCopyTerms(err instanceof Error ? err.message : String(err), ctx)}`,
        },
      ],
    };
  };
  // Only renders that run need their files in the copy (a pass where all are cached copies nothing).
  const runnable: typeof toRun = [];
  for (const item of toRun) {
    const r = plan.renders[item.i]!.request;
    try {
      await write(plan.renders[item.i]!.inputs);
      if (r.kind === 'kustomize' && r.generate !== undefined) await writeGenerated(r, ctx);
      runnable.push(item);
    } catch (err) {
      outputs[item.i] = failed(item.i, err);
    }
  }
  await inParallel(runnable, options.concurrency ?? 4, async ({ i, key }) => {
    if (Date.now() > deadline) {
      const seconds = Math.round((options.passTimeoutMs ?? 300_000) / 1000);
      outputs[i] = {
        objects: [],
        problems: [
          {
            message: `${originOf(plan.renders[i]!.request)}: not rendered in this pass (renders took longer than ${seconds} s in all); the next sync goes on from the cache`,
          },
        ],
      };
      return;
    }
    try {
      outputs[i] = await runRender(plan.renders[i]!, i, ctx);
    } catch (err) {
      outputs[i] = failed(i, err);
      return;
    }
    cache.set(key, outputs[i]!);
    ran.add(key);
    stats.renders++;
  });
  return plan.renders.map(({ request: r }, i) => {
    const out = outputs[i]!;
    const where = {
      ...(r.file !== undefined ? { file: r.file } : {}),
      ...(r.line !== undefined ? { line: r.line } : {}),
    };
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
