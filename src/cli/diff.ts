// `enbi diff`: observe (source, nodes) → plan → print. It never writes to the cluster.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { DEFAULT_NODE_STATUS_MAX_IMAGES, type NodeView } from '../cluster/node-view.ts';
import { loadKubeConfig, readBoundPods, readNodesFile, readNodesFromCluster } from '../cluster/read-nodes.ts';
import { readNixBuilds } from '../cluster/read-builds.ts';
import type { NixBuild } from '../api/nixbuild.ts';
import { findDrift } from '../diff/drift.ts';
import { toSafeJson, toSafeYaml } from '../diff/output.ts';
import { printable } from '../text/printable.ts';
import { renderText } from '../diff/render.ts';
import { exitCodeOfList, listWorkloads } from '../diff/list.ts';
import { renderListText } from '../diff/list-text.ts';
import { buildReport, EXIT_FATAL, exitCodeOf, type SourceInfo } from '../diff/report.ts';
import { type ControllerConfig, loadControllerConfig, policyOf } from '../controller/config.ts';
import { analyzeSource } from '../pipeline/analyze.ts';
import type { DistributionMode } from '../plan/planner.ts';
import { readDirSource, watchDir } from '../source/dir.ts';
import { confinePath, PathOutsideSourceError, type SourceFile } from '../source/files.ts';
import { gitAuthFrom } from '../source/auth.ts';
import { repoDirFor, syncGitSource } from '../source/git.ts';
import { renderSource, type RenderedSource } from '../render/index.ts';
import { renderOptionsOf } from '../render/config.ts';
import { command, type Flags, UsageError } from './command.ts';

export const DIFF_HELP = `enbi diff (GIT_URL | --dir DIR) [options]

Shows, without changing anything, which images are missing on which nodes and what would be built where.

Source:
  GIT_URL                  HTTP(S) Git repository of manifests (cloned shallow into the cache, then fetched)
  --ref REF                branch or tag (default: the remote's default branch); with --dir, the ref the
                           directory holds, compared with Flux sourceRefs and Argo CD targetRevisions
  --source-url URL         the repository URL Flux GitRepositories and Argo CD repoURLs name for this source
                           (default: GIT_URL; with --dir none, so every source naming a URL is another
                           source and not rendered)
  --path PATH              sub-path inside the repository or directory (never outside it)
  --dir DIR                a local directory instead of Git
  --exclude GLOB           leave out paths matching GLOB (gitignore syntax; repeatable). An .enbiignore file
                           at the source's root is read the same way
  --watch                  with --dir: plan again after each burst of file changes
  --cache-dir DIR          where Git clones are kept (default: $XDG_CACHE_HOME/enbi/git)
  --git-credentials FILE   "username:password" or a token on one line (else ENBI_GIT_USERNAME/ENBI_GIT_PASSWORD)
Rendering (kustomize directories, Helm charts, Flux Kustomization/HelmRelease, Argo CD Application):
  kustomize and helm from $ENBI_KUSTOMIZE / $ENBI_HELM (or render.kustomize / render.helm with --config),
  else PATH, else ~/.cache/enbi/<tool>/<version>/; a missing one is a problem naming the roots that need it
Cluster:
  --nodes FILE             nodes saved with "kubectl get nodes -o yaml" instead of a live cluster
  --kubeconfig FILE        kubeconfig to read Nodes from (default: $KUBECONFIG or ~/.kube/config)
  --mode spegel|per-node   spegel: one node per system holding an image is enough (default); per-node: every node
  --max-node-images N      kubelet's nodeStatusMaxImages (default ${DEFAULT_NODE_STATUS_MAX_IMAGES}): longer lists may be truncated
  --trusted-namespace NS   pods in NS may declare their own flake (the controller's trustedNamespaces; repeatable).
                           Other waiting pods are built for only when they belong to a workload of the source.
  --config FILE            plan with the controller's configuration: its mode, allowedImages/allowedFlakes,
                           trustedNamespaces, watchNamespaces, builder pool and tolerations, maxNodeImages
                           (flags given explicitly win)
Output:
  -o, --output text|json|yaml
  --list                   plan nothing: list every workload and container image found, annotated or not, with
                           the file it was written in and the root it was rendered through (reads no cluster)
  --offline                do not ask remotes what unpinned branches point to now

Documents that are not Kubernetes objects (Helm values, CI configs, JSON arrays) and Helm chart templates are
skipped without a problem and counted in the "Read:" line.

Exit codes: 0 nothing to build; 2 builds would start; 4 problems in the manifests enbi reads (malformed
Kubernetes documents, bad annotations, unbuildable systems, workloads with enbi annotations that cannot be
planned: refused, or in a root enbi does not render); 6 both; 1 no plan could be made (bad flags,
unreachable source or cluster). With --list: 0, or 4 when the manifests hold problems.`;

const OPTIONS = {
  ref: { type: 'string' },
  'source-url': { type: 'string' },
  path: { type: 'string' },
  exclude: { type: 'string', multiple: true },
  dir: { type: 'string' },
  watch: { type: 'boolean' },
  'cache-dir': { type: 'string' },
  'git-credentials': { type: 'string' },
  nodes: { type: 'string' },
  kubeconfig: { type: 'string' },
  mode: { type: 'string' },
  'max-node-images': { type: 'string' },
  'trusted-namespace': { type: 'string', multiple: true },
  config: { type: 'string' },
  output: { type: 'string', short: 'o' },
  offline: { type: 'boolean' },
  list: { type: 'boolean' },
} as const;

export default command({
  usage: DIFF_HELP,
  options: OPTIONS,
  positionals: true,
  run: ({ values, positionals }) => runDiff(values, positionals),
});

async function runDiff(values: Flags<typeof OPTIONS>, positionals: string[]): Promise<number> {
  // Usage errors go to main.ts, which reports them for every command alike.
  const opts = validate(values, positionals);
  try {
    if (opts.configFile !== undefined) applyConfig(opts, await loadControllerConfig(opts.configFile), values);
    const once = () => diffOnce(opts);
    if (!opts.watch) return await once();
    await once();
    watchDir(resolve(opts.dirRoot!, opts.path), () => void once().catch(reportFatal));
    console.error(`watching ${opts.dirRoot} (Ctrl-C to stop)`);
    return await new Promise<number>(() => {});
  } catch (err) {
    return reportFatal(err);
  }
}

function reportFatal(err: unknown): number {
  const message = err instanceof Error ? err.message : String(err);
  console.error(`enbi diff: ${printable(message)}`);
  return EXIT_FATAL;
}

interface DiffOptions {
  gitUrl?: string;
  /** The directory itself (without --path): Flux and Argo CD paths are relative to it. */
  dirRoot?: string;
  /** The directory as the user wrote it, for output. */
  dirShown?: string;
  exclude: string[];
  ref?: string;
  /** The URL Flux and Argo CD objects name for this source (--source-url; default the Git URL). */
  sourceUrl?: string;
  path: string;
  watch: boolean;
  cacheDir: string;
  credentialsFile?: string;
  nodesFile?: string;
  kubeconfig?: string;
  mode: DistributionMode;
  maxImages: number;
  output: 'text' | 'json' | 'yaml';
  offline: boolean;
  /** List what was found instead of planning. */
  list: boolean;
  trustedNamespaces: string[];
  configFile?: string;
  /** The controller's configuration, when --config is given. */
  config?: ControllerConfig;
}

function validate(v: Record<string, string | boolean | string[] | undefined>, positionals: string[]): DiffOptions {
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  if (positionals.length > 1) throw new UsageError(`one Git URL expected, got ${positionals.length}`);
  const gitUrl = positionals[0];
  const dir = str('dir');
  if ((gitUrl === undefined) === (dir === undefined)) throw new UsageError('give either a Git URL or --dir DIR');
  if (gitUrl !== undefined && !/^https?:\/\//.test(gitUrl))
    throw new UsageError(`"${gitUrl}" is not an http(s) URL (isomorphic-git speaks HTTP(S) only)`);
  if (v.watch === true && dir === undefined) throw new UsageError('--watch works with --dir');
  const mode = str('mode') ?? 'spegel';
  if (mode !== 'spegel' && mode !== 'per-node')
    throw new UsageError(`--mode must be spegel or per-node, not "${mode}"`);
  const output = str('output') ?? 'text';
  if (output !== 'text' && output !== 'json' && output !== 'yaml')
    throw new UsageError(`-o must be text, json or yaml, not "${output}"`);
  const maxImages = Number(str('max-node-images') ?? DEFAULT_NODE_STATUS_MAX_IMAGES);
  if (!Number.isInteger(maxImages) || maxImages < 1)
    throw new UsageError('--max-node-images must be a positive integer');
  let path: string;
  try {
    path = confinePath(str('path') ?? '');
  } catch (err) {
    if (err instanceof PathOutsideSourceError) throw new UsageError(err.message);
    throw err;
  }
  const opts: DiffOptions = {
    path,
    exclude: Array.isArray(v.exclude) ? v.exclude : [],
    watch: v.watch === true,
    cacheDir: str('cache-dir') ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'enbi', 'git'),
    mode,
    maxImages,
    output,
    offline: v.offline === true,
    list: v.list === true,
    trustedNamespaces: Array.isArray(v['trusted-namespace']) ? v['trusted-namespace'] : [],
  };
  const assign = (k: keyof DiffOptions, value: string | undefined) => {
    if (value !== undefined) (opts as unknown as Record<string, string>)[k] = value;
  };
  assign('gitUrl', gitUrl);
  assign('dirRoot', dir !== undefined ? resolve(dir) : undefined);
  assign('dirShown', dir !== undefined ? [dir, path].filter((p) => p !== '').join('/') : undefined);
  assign('ref', str('ref'));
  const sourceUrl = str('source-url');
  if (sourceUrl !== undefined && sourceUrl.trim() === '') throw new UsageError('--source-url needs a URL');
  assign('sourceUrl', sourceUrl);
  assign('credentialsFile', str('git-credentials'));
  assign('nodesFile', str('nodes'));
  assign('kubeconfig', str('kubeconfig'));
  assign('configFile', str('config'));
  return opts;
}

/** The controller's settings, where the command line does not say otherwise: the same plan as the controller's. */
function applyConfig(opts: DiffOptions, cfg: ControllerConfig, given: Record<string, unknown>): void {
  opts.config = cfg;
  if (given.mode === undefined) opts.mode = cfg.mode;
  if (given['max-node-images'] === undefined) opts.maxImages = cfg.maxNodeImages;
  if (given['trusted-namespace'] === undefined) opts.trustedNamespaces = cfg.trustedNamespaces;
}

async function readSource(
  opts: DiffOptions,
): Promise<{ files: SourceFile[]; info: SourceInfo; rendered: RenderedSource }> {
  const render = renderOptionsOf(opts.config);
  if (opts.dirRoot !== undefined) {
    // Files below --path (paths relative to it); the renders see the whole source, as Flux's paths do.
    const files = await readDirSource(opts.dirRoot, opts.path);
    const repository = {
      ...(opts.sourceUrl !== undefined ? { url: opts.sourceUrl } : {}),
      ...(opts.ref !== undefined ? { ref: opts.ref } : {}),
    };
    const rendered = await renderSource({
      ...render,
      source: { kind: 'dir', root: opts.dirRoot },
      scope: opts.path,
      scopeFiles: files,
      repository,
      exclude: opts.exclude,
    });
    return { files, rendered, info: { kind: 'dir', location: opts.dirShown ?? opts.dirRoot } };
  }
  const auth = await gitAuthFrom(opts.credentialsFile);
  const snap = await syncGitSource({
    url: opts.gitUrl!,
    cacheDir: opts.cacheDir,
    path: opts.path,
    ...(opts.ref !== undefined ? { ref: opts.ref } : {}),
    ...(auth !== undefined ? { auth } : {}),
  });
  const repository = { url: opts.sourceUrl ?? opts.gitUrl!, ref: snap.ref, commit: snap.commit };
  const rendered = await renderSource({
    ...render,
    source: { kind: 'git', gitdir: repoDirFor(opts.cacheDir, opts.gitUrl!), commit: snap.commit },
    scope: opts.path,
    scopeFiles: snap.files,
    repository,
    exclude: opts.exclude,
  });
  return {
    files: snap.files,
    rendered,
    info: { kind: 'git', location: opts.gitUrl!, ref: snap.ref, commit: snap.commit, path: opts.path },
  };
}

async function readNodes(opts: DiffOptions): Promise<{
  nodes: NodeView[];
  from: string;
  pods?: V1Pod[];
  podsNote?: string;
  builds?: NixBuild[];
  buildsNote?: string;
}> {
  if (opts.nodesFile !== undefined)
    return { nodes: await readNodesFile(opts.nodesFile, opts.maxImages), from: opts.nodesFile };
  const kc = loadKubeConfig(opts.kubeconfig);
  // A live cluster also has pods already waiting for images: the on-demand view.
  const [nodes, { pods, note }, read] = await Promise.all([
    readNodesFromCluster(kc, opts.maxImages),
    readBoundPods(kc),
    // Where builds ran and run: warm placement and load, as the controller plans.
    readNixBuilds(kc, opts.config?.namespace),
  ]);
  return {
    nodes,
    from: kc.getCurrentCluster()?.server ?? 'the cluster',
    ...(pods !== undefined ? { pods } : {}),
    ...(note !== undefined ? { podsNote: note } : {}),
    ...(read.builds !== undefined ? { builds: read.builds } : {}),
    ...(read.note !== undefined ? { buildsNote: read.note } : {}),
  };
}

/** `--list`: what the source holds, as read and rendered; no cluster is read, nothing is planned. */
async function listOnce(opts: DiffOptions): Promise<number> {
  const { files, info, rendered } = await readSource(opts);
  const analysis = analyzeSource(files, { exclude: opts.exclude, rendered, listAll: true });
  const list = listWorkloads({ source: info, analysis, roots: rendered.roots });
  if (opts.output === 'json') process.stdout.write(toSafeJson(list));
  else if (opts.output === 'yaml') process.stdout.write(toSafeYaml(list));
  else process.stdout.write(renderListText(list));
  return exitCodeOfList(list);
}

async function diffOnce(opts: DiffOptions): Promise<number> {
  if (opts.list) return listOnce(opts);
  const [{ files, info, rendered }, { nodes, from, pods, podsNote, builds, buildsNote }] = await Promise.all([
    readSource(opts),
    readNodes(opts),
  ]);
  const analysis = analyzeSource(files, { exclude: opts.exclude, rendered });
  const { drift, notes } = opts.offline ? { drift: [], notes: [] } : await findDrift(analysis.workloads);
  const cfg = opts.config;
  // The controller's build pool and watched namespaces, as it applies them.
  const pool = Object.entries(cfg?.builderNodeSelector ?? {});
  const viewed =
    pool.length === 0
      ? nodes
      : nodes.map((n) => (pool.some(([k, v]) => n.labels[k] !== v) ? { ...n, builderAllowed: false } : n));
  const watched =
    pods !== undefined && cfg !== undefined && cfg.watchNamespaces.length > 0
      ? pods.filter((p) => cfg.watchNamespaces.includes(p.metadata?.namespace ?? ''))
      : pods;
  const report = buildReport({
    source: info,
    nodesFrom: from,
    analysis,
    nodes: viewed,
    mode: opts.mode,
    drift,
    trustedNamespaces: opts.trustedNamespaces,
    ...(cfg !== undefined ? { policy: policyOf(cfg), builderTolerations: cfg.builderTolerations } : {}),
    ...(watched !== undefined ? { pods: watched } : {}),
    ...(builds !== undefined ? { nixBuilds: builds } : {}),
    ...(cfg !== undefined ? { maxBuildsPerNode: cfg.maxConcurrentBuildsPerNode } : {}),
  });
  if (podsNote !== undefined) report.warnings.push({ message: podsNote });
  if (buildsNote !== undefined) report.warnings.push({ message: buildsNote });
  for (const note of notes) report.warnings.push({ message: note });
  if (opts.output === 'json') process.stdout.write(toSafeJson(report));
  else if (opts.output === 'yaml') process.stdout.write(toSafeYaml(report));
  else process.stdout.write(renderText(report));
  return exitCodeOf(report);
}
