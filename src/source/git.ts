// The Git source: one persistent bare clone per repository URL in a cache directory, fetched shallow
// and single-branch with isomorphic-git, so a second sync transfers only what is new. Files are read
// straight from the commit's tree: no working copy is written.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import git, { type HttpClient } from 'isomorphic-git';
import { httpWithIdleTimeout } from './http.ts';
import type { SourceFile } from './files.ts';
import { isSourceFile } from './files.ts';

export interface GitAuth {
  username: string;
  password: string;
}

export interface GitSourceOptions {
  url: string;
  /** Branch or tag; the remote's default branch when absent. */
  ref?: string;
  /** Sub-path inside the repository holding the manifests. */
  path?: string;
  cacheDir: string;
  auth?: GitAuth;
  /** Largest total size of manifest files read from one commit, so a wrong path cannot exhaust memory. */
  maxBytes?: number;
  /** A request to the Git server with no answer (headers or data) for this long fails the sync. Default 30 s. */
  idleTimeoutMs?: number;
}

export const DEFAULT_GIT_IDLE_TIMEOUT_MS = 30_000;

export interface GitSnapshot {
  commit: string;
  ref: string;
  files: SourceFile[];
}

export class GitSourceError extends Error {
  override name = 'GitSourceError';
}

// The files of the last commit read per clone (one entry each, so memory stays bounded by the sources).
const lastRead = new Map<string, { key: string; files: SourceFile[] }>();

// One pack cache per process: isomorphic-git re-reads pack indexes without it.
const cache = {};

export function repoDirFor(cacheDir: string, url: string): string {
  return join(cacheDir, createHash('sha256').update(url).digest('hex').slice(0, 16));
}

/** Clones or fetches, then reads the manifest files below `path` at the fetched commit. */
export async function syncGitSource(options: GitSourceOptions): Promise<GitSnapshot> {
  const gitdir = repoDirFor(options.cacheDir, options.url);
  const http = httpWithIdleTimeout(options.idleTimeoutMs ?? DEFAULT_GIT_IDLE_TIMEOUT_MS);
  const common = {
    fs,
    http,
    gitdir,
    url: options.url,
    cache,
    onAuth: () => options.auth ?? { cancel: true },
    onAuthFailure: () => {
      throw new GitSourceError(`authentication to ${options.url} failed: check ENBI_GIT_USERNAME/ENBI_GIT_PASSWORD or --git-credentials`);
    },
  };
  const ref = options.ref ?? (await defaultBranch(options.url, options.auth, http));
  await mkdir(gitdir, { recursive: true });
  let commit: string;
  try {
    if (!fs.existsSync(join(gitdir, 'config'))) await git.init({ fs, gitdir, bare: true });
    // fetch stores the fetched branch under the remote's refspec: without an "origin" remote it fails.
    if ((await git.getConfig({ fs, gitdir, path: 'remote.origin.fetch' })) === undefined) {
      await git.addRemote({ fs, gitdir, remote: 'origin', url: options.url, force: true });
    }
    // `ref` names the local ref isomorphic-git offers as a "have": the remote-tracking ref the previous
    // fetch wrote (the bare branch name finds nothing). Only the first fetch is shallow: isomorphic-git
    // never asks for thin packs, and without one a server answering "deepen 1" resends the whole tree
    // even for a have; without a depth the walk stops at the have and only new objects come.
    const tracking = `refs/remotes/origin/${ref}`;
    const previous = await git.resolveRef({ fs, gitdir, ref: tracking }).catch(() => undefined);
    const depth = previous === undefined ? { depth: 1 } : {};
    const result = await git.fetch({ ...common, ref: tracking, remoteRef: ref, singleBranch: true, tags: false, ...depth });
    commit = result.fetchHead === null || result.fetchHead === undefined ? '' : await peelToCommit(gitdir, result.fetchHead);
  } catch (err) {
    throw toSourceError(err, options.url, ref);
  }
  if (commit === '') throw new GitSourceError(`${options.url}: ref "${ref}" not found`);
  // Reading the tree costs about 1 ms a file: skip it when the commit is the one read last time.
  const key = `${commit}\0${options.path ?? ''}`;
  const last = lastRead.get(gitdir);
  if (last?.key === key) return { commit, ref, files: last.files };
  const files = await readTreeFiles(gitdir, commit, options.path ?? '', options.maxBytes ?? 64 * 1024 * 1024);
  lastRead.set(gitdir, { key, files });
  return { commit, ref, files };
}

/** An annotated tag's fetch head is the tag object: follow it to the commit. */
async function peelToCommit(gitdir: string, oid: string): Promise<string> {
  for (let i = 0; i < 10; i++) {
    const { type, object } = await git.readObject({ fs, gitdir, oid, cache, format: 'parsed' });
    if (type !== 'tag') return oid;
    oid = (object as { object: string }).object;
  }
  throw new GitSourceError(`${oid}: tag chain too long`);
}

async function defaultBranch(url: string, auth: GitAuth | undefined, http: HttpClient): Promise<string> {
  try {
    const refs = await git.listServerRefs({ http, url, prefix: 'HEAD', symrefs: true, onAuth: () => auth ?? { cancel: true } });
    const target = refs.find((r) => r.ref === 'HEAD')?.target;
    if (target === undefined) throw new GitSourceError(`${url}: the server does not say which branch HEAD is; pass --ref`);
    return target.replace(/^refs\/heads\//, '');
  } catch (err) {
    throw toSourceError(err, url, 'HEAD');
  }
}

function toSourceError(err: unknown, url: string, ref: string): Error {
  if (err instanceof GitSourceError) return err;
  const e = err as { code?: string; message?: string; data?: { statusCode?: number } };
  if (e.code === 'ECONNREFUSED' || e.code === 'ENOTFOUND' || e.code === 'ECONNRESET' || e.code === 'ETIMEDOUT') {
    return new GitSourceError(`cannot reach ${url} (${e.code}): is the Git server up and the URL right?`);
  }
  // onAuth answered { cancel: true }: the server wants credentials and none were configured.
  if (e.code === 'UserCanceledError') {
    return new GitSourceError(`${url} requires credentials and none were given: set ENBI_GIT_USERNAME/ENBI_GIT_PASSWORD or --git-credentials`);
  }
  if (e.code === 'HttpError' && (e.data?.statusCode === 401 || e.data?.statusCode === 403)) {
    return new GitSourceError(`${url} refused access (HTTP ${e.data.statusCode}): check the Git credentials`);
  }
  if (e.code === 'HttpError') return new GitSourceError(`${url}: HTTP ${e.data?.statusCode ?? '?'} (${e.message ?? ''})`);
  if (e.code === 'NotFoundError' || e.code === 'MissingRefError') return new GitSourceError(`${url}: ref "${ref}" not found on the server`);
  return new GitSourceError(`${url}: ${e.message ?? String(err)}`);
}

async function readTreeFiles(gitdir: string, commit: string, subPath: string, maxBytes: number): Promise<SourceFile[]> {
  const prefix = subPath.replace(/^\/+|\/+$/g, '');
  const files: SourceFile[] = [];
  let total = 0;
  let sawPrefix = prefix === '';
  await git.walk({
    fs,
    gitdir,
    cache,
    trees: [git.TREE({ ref: commit })],
    map: async (path, [entry]) => {
      if (entry === null || entry === undefined) return null;
      if (path === '.') return true;
      const inside = prefix === '' || path === prefix || path.startsWith(`${prefix}/`);
      const above = prefix.startsWith(`${path}/`);
      if (!inside && !above) return null;
      if (inside) sawPrefix = true;
      const type = await entry.type();
      if (type === 'tree') return true;
      if (type !== 'blob' || !inside) return null;
      const rel = prefix === '' ? path : path === prefix ? path.split('/').pop()! : path.slice(prefix.length + 1);
      if (!isSourceFile(rel)) return null;
      const content = await entry.content();
      if (content === undefined) return null;
      total += content.byteLength;
      if (total > maxBytes) throw new GitSourceError(`manifests below "${prefix || '/'}" exceed ${maxBytes} bytes: point --path at the manifests`);
      files.push({ path: rel, text: Buffer.from(content).toString('utf8') });
      return null;
    },
  });
  if (!sawPrefix) throw new GitSourceError(`path "${prefix}" does not exist at commit ${commit.slice(0, 12)}`);
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/** Removes a cached clone (used when the cache is corrupt). */
export async function dropGitCache(cacheDir: string, url: string): Promise<void> {
  await rm(repoDirFor(cacheDir, url), { recursive: true, force: true });
}

/** What a branch (or the default branch) of a remote points to now, for `enbi diff`'s drift notes. */
export async function resolveRemoteRef(url: string, ref: string | undefined, auth?: GitAuth, http: HttpClient = httpWithIdleTimeout(DEFAULT_GIT_IDLE_TIMEOUT_MS)): Promise<string | undefined> {
  let refs: Awaited<ReturnType<typeof git.listServerRefs>>;
  try {
    refs = await git.listServerRefs({ http, url, symrefs: true, peelTags: true, onAuth: () => auth ?? { cancel: true } });
  } catch (err) {
    throw toSourceError(err, url, ref ?? 'HEAD');
  }
  const wanted = ref === undefined ? ['HEAD'] : [`refs/heads/${ref}`, `refs/tags/${ref}`, ref];
  for (const name of wanted) {
    const hit = refs.find((r) => r.ref === name);
    // An annotated tag's own oid is the tag object: the commit it names is what a pin is compared with.
    if (hit !== undefined) return hit.peeled ?? hit.oid;
  }
  return undefined;
}
