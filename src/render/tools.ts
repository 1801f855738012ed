// Where the kustomize and helm binaries are: an explicit path (ENBI_KUSTOMIZE / ENBI_HELM, or the
// controller's render.kustomize / render.helm), else PATH, else the cache the build scripts fill
// (${ENBI_CACHE_DIR:-~/.cache/enbi}/<tool>/<version>/). Missing: a sentence saying what to install.
import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

export type ToolName = 'kustomize' | 'helm';

/** The versions enbi is tested with and the controller image ships (test/cluster/build-*.sh, Dockerfile). */
export const TOOL_VERSIONS: Readonly<Record<ToolName, string>> = { kustomize: 'v5.8.1', helm: 'v3.22.0' };

const ENV: Readonly<Record<ToolName, string>> = { kustomize: 'ENBI_KUSTOMIZE', helm: 'ENBI_HELM' };
const MODULES: Readonly<Record<ToolName, string>> = {
  kustomize: 'sigs.k8s.io/kustomize/kustomize/v5',
  helm: 'helm.sh/helm/v3/cmd/helm',
};

export type Tools = Partial<Record<ToolName, string>>;

export function cachedToolPath(tool: ToolName, env: NodeJS.ProcessEnv = process.env): string {
  return join(env.ENBI_CACHE_DIR ?? join(homedir(), '.cache', 'enbi'), tool, TOOL_VERSIONS[tool], tool);
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The binary to run for `tool`, or undefined. An explicit path that is not executable is not replaced by PATH. */
export function findTool(
  tool: ToolName,
  configured?: string,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const explicit = configured ?? env[ENV[tool]];
  if (explicit !== undefined && explicit !== '') return executable(explicit) ? explicit : undefined;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && executable(join(dir, tool))) return join(dir, tool);
  }
  const cached = cachedToolPath(tool, env);
  return executable(cached) ? cached : undefined;
}

export function findTools(configured: Tools = {}, env: NodeJS.ProcessEnv = process.env): Tools {
  const tools: Tools = {};
  for (const tool of ['kustomize', 'helm'] as const) {
    const path = findTool(tool, configured[tool], env);
    if (path !== undefined) tools[tool] = path;
  }
  return tools;
}

export function installHint(tool: ToolName, configured?: string, env: NodeJS.ProcessEnv = process.env): string {
  const explicit = configured ?? env[ENV[tool]];
  if (explicit !== undefined && explicit !== '')
    return `${tool} is needed, and ${explicit} (${configured !== undefined ? `render.${tool}` : ENV[tool]}) is not an executable file`;
  return `${tool} is needed and was not found: install it on PATH (go install ${MODULES[tool]}@${TOOL_VERSIONS[tool]}, or bash test/cluster/build-${tool}.sh in enbi's repository) or set ${ENV[tool]} to its path`;
}
