// The real kustomize and helm the render tests run: built by test/cluster/build-{kustomize,helm}.sh into the
// cache (.ci/run does it). Missing binaries fail the tests with the command that builds them; never a skip.
import { accessSync, constants } from 'node:fs';
import { cachedToolPath, type ToolName } from '../../src/render/tools.ts';

export function renderTool(tool: ToolName): string {
  const path = cachedToolPath(tool);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} is missing: run bash test/cluster/build-${tool}.sh`);
  }
  return path;
}

export const renderTools = () => ({ kustomize: renderTool('kustomize'), helm: renderTool('helm') });
