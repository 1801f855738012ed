// Runs the renders of one plan: decides for each whether it is refused, lacks its tool, is cached or must run,
// writes the files of those that run into the private copy, runs them a few at a time within the pass's
// limits, and returns each render's objects and problems in plan order (independent of timing). A render that
// did not run to an answer (failed, timed out, its tool missing, left for the next pass) says so: what its
// root declares is unknown, not empty, and such an outcome is never cached, so the next pass runs it again.
import { type CachedRender, type RenderCache, renderKey } from './cache.ts';
import type { RenderOptions, RenderedSource } from './index.ts';
import type { RenderPlan } from './plan.ts';
import { originOf, type RenderRequest, toolOf } from './request.ts';
import { inCopyTerms, type RenderContext, runRender, writeGenerated } from './run-render.ts';
import { installHint } from './tools.ts';
import { TreeTooLargeError } from './tree.ts';

/** Renders that failed in a pass (known by the pass's `ran` set), so that its discovery rounds do not rerun them. */
const failedInPass = new WeakMap<Set<string>, Map<string, CachedRender>>();

/** One render's outcome: its objects and problems, and why it has no answer when it has none. */
export interface RenderOutcome extends CachedRender {
  /** The root rendered (originOf its request): how a root is known from one commit to the next. */
  origin: string;
  /** Set when the render gave no answer (failed, timed out, did not run): its objects are unknown, not none. */
  failure?: string;
  /** What was rendered, and who asked. */
  request: RenderRequest;
}

/**
 * A render's result that is no answer about its root: no object and a problem. That is what a tool that
 * fails or times out leaves (run-render.ts), and what output with nothing readable in it leaves.
 */
export function isFailedRender(r: CachedRender): boolean {
  return r.objects.length === 0 && r.problems.length > 0;
}

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
): Promise<RenderOutcome[]> {
  const { tools, tree } = ctx;
  // Decide every render first (refused, missing tool, cached, to run), then run the rest in parallel;
  // results are collected in plan order so the output does not depend on timing.
  const outputs: (CachedRender | undefined)[] = [];
  // Renders with no answer (a tool missing, a failure, a limit of the pass): never cached, run again next pass.
  const unanswered = new Set<number>();
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
      unanswered.add(i);
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
    const failedBefore = failedInPass.get(ran)?.get(key);
    if (outputs[i] === undefined && failedBefore !== undefined) {
      // Failed earlier in this pass (a discovery round): not run again until the next pass.
      outputs[i] = failedBefore;
      unanswered.add(i);
    } else if (outputs[i] !== undefined) {
      if (!ran.has(key)) stats.fromCache++;
    } else if (ran.size + toRun.length >= (options.maxRendersPerPass ?? 1_000)) {
      // Bounds what one repository can cost a pass; those rendered are cached, so the next pass goes on.
      unanswered.add(i);
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
    unanswered.add(i);
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
      unanswered.add(i);
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
    stats.renders++;
    // A failed or timed-out render is not the root's answer: cached, it would stand until the inputs change.
    if (isFailedRender(outputs[i]!)) {
      unanswered.add(i);
      failedInPass.set(ran, (failedInPass.get(ran) ?? new Map()).set(key, outputs[i]!));
      return;
    }
    cache.set(key, outputs[i]!);
    ran.add(key);
  });
  return plan.renders.map(({ request: r }, i) => {
    const out = outputs[i]!;
    const where = {
      ...(r.file !== undefined ? { file: r.file } : {}),
      ...(r.line !== undefined ? { line: r.line } : {}),
    };
    const problems = out.problems.map((p) => ({ ...where, ...p }));
    const failure = unanswered.has(i) ? problems.map((p) => p.message).join('; ') : undefined;
    return {
      objects: out.objects,
      problems,
      origin: originOf(r),
      request: r,
      ...(failure !== undefined ? { failure } : {}),
    };
  });
}

async function inParallel<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}
