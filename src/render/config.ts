// The render settings of the controller's configuration (render.kustomize, render.helm, render.timeoutSeconds)
// as renderSource options; without a configuration, the defaults (binaries from env, PATH or the build cache).
import type { ControllerConfig } from '../controller/config.ts';
import { DEFAULT_LIMITS } from './exec.ts';
import type { RenderOptions } from './index.ts';
import type { Tools } from './tools.ts';

export function renderOptionsOf(
  cfg: Pick<ControllerConfig, 'render'> | undefined,
): Pick<RenderOptions, 'tools' | 'limits'> {
  if (cfg === undefined) return {};
  const tools: Tools = {};
  if (cfg.render.kustomize !== undefined) tools.kustomize = cfg.render.kustomize;
  if (cfg.render.helm !== undefined) tools.helm = cfg.render.helm;
  return { tools, limits: { ...DEFAULT_LIMITS, timeoutMs: cfg.render.timeoutSeconds * 1000 } };
}
