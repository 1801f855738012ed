// The Git source: one persistent bare clone per repository URL in a cache directory, fetched shallow
// and single-branch with isomorphic-git, so a second sync transfers only what is new. Files are read
// straight from the commit's tree: no working copy is written.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import git, { type HttpClient } from 'isomorphic-git';
import { httpWithIdleTimeout } from './http.ts';
import { confinePath, PathOutsideSourceError, type SourceFile } from './files.ts';
import { readCommitFiles, TreeMemo, TreeReadError } from './git-tree.ts';

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
  /** Each with its blob id, so analyses can keep a file's parse between syncs. */
  files: SourceFile[];
  /** Blobs read from the object store by this sync: the files that changed since the last one (0 when the commit is the same). */
  blobsRead: number;
}

export class GitSourceError extends Error {
  override name = 'GitSourceError';
}

// The files of the last commit read per clone (one entry each, so memory stays bounded by the sources),
// and the tree listings and file texts that the next commit's read reuses.
const lastRead = new Map<string, { key: string; files: SourceFile[] }>();
const memos = new Map<string, TreeMemo>();

// One pack cache per process: isomorphic-git re-reads pack indexes without it.
const cache = {};

export function repoDirFor(cacheDir: string, url: string): string {
  return join(cacheDir, createHash('sha256').update(url).digest('hex').slice(0, 16));
}

/** Clones or fetches, then reads the manifest files below `path` at the fetched commit. */
export async function syncGitSource(options: GitSourceOptions): Promise<GitSnapshot> {
  let subPath: string;
  try {
    subPath = confinePath(options.path ?? '');
  } catch (err) {
    if (err instanceof PathOutsideSourceError) throw new GitSourceError(err.message);
    throw err;
  }
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
      throw new GitSourceError(
        `authentication to ${options.url} failed: check ENBI_GIT_USERNAME/ENBI_GIT_PASSWORD or --git-credentials`,
      );
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
    const result = await git.fetch({
      ...common,
      ref: tracking,
      remoteRef: ref,
      singleBranch: true,
      tags: false,
      ...depth,
    });
    commit =
      result.fetchHead === null || result.fetchHead === undefined ? '' : await peelToCommit(gitdir, result.fetchHead);
  } catch (err) {
    throw toSourceError(err, options.url, ref);
  }
  if (commit === '') throw new GitSourceError(`${options.url}: ref "${ref}" not found`);
  // Same commit as last time: nothing to read. Else only the trees and blobs that changed are read.
  const key = `${commit}\0${subPath}`;
  const last = lastRead.get(gitdir);
  if (last?.key === key) return { commit, ref, files: last.files, blobsRead: 0 };
  const memo = memos.get(gitdir) ?? new TreeMemo();
  memos.set(gitdir, memo);
  const { commit: parsed } = await git.readCommit({ fs, gitdir, oid: commit, cache });
  let read: Awaited<ReturnType<typeof readCommitFiles>>;
  try {
    read = await readCommitFiles(gitdir, parsed.tree, subPath, options.maxBytes ?? 64 * 1024 * 1024, memo, cache);
  } catch (err) {
    if (err instanceof TreeReadError) throw new GitSourceError(err.message);
    throw err;
  }
  if (!read.found) throw new GitSourceError(`path "${subPath}" does not exist at commit ${commit.slice(0, 12)}`);
  lastRead.set(gitdir, { key, files: read.files });
  return { commit, ref, files: read.files, blobsRead: memo.blobsRead };
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
    const refs = await git.listServerRefs({
      http,
      url,
      prefix: 'HEAD',
      symrefs: true,
      onAuth: () => auth ?? { cancel: true },
    });
    const target = refs.find((r) => r.ref === 'HEAD')?.target;
    if (target === undefined)
      throw new GitSourceError(`${url}: the server does not say which branch HEAD is; pass --ref`);
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
    return new GitSourceError(
      `${url} requires credentials and none were given: set ENBI_GIT_USERNAME/ENBI_GIT_PASSWORD or --git-credentials`,
    );
  }
  if (e.code === 'HttpError' && (e.data?.statusCode === 401 || e.data?.statusCode === 403)) {
    return new GitSourceError(`${url} refused access (HTTP ${e.data.statusCode}): check the Git credentials`);
  }
  if (e.code === 'HttpError')
    return new GitSourceError(`${url}: HTTP ${e.data?.statusCode ?? '?'} (${e.message ?? ''})`);
  if (e.code === 'NotFoundError' || e.code === 'MissingRefError')
    return new GitSourceError(`${url}: ref "${ref}" not found on the server`);
  return new GitSourceError(`${url}: ${e.message ?? String(err)}`);
}

/** Removes a cached clone (used when the cache is corrupt). */
export async function dropGitCache(cacheDir: string, url: string): Promise<void> {
  const gitdir = repoDirFor(cacheDir, url);
  lastRead.delete(gitdir);
  memos.delete(gitdir);
  await rm(repoDirFor(cacheDir, url), { recursive: true, force: true });
}

/** What a branch (or the default branch) of a remote points to now, for `enbi diff`'s drift notes. */
export async function resolveRemoteRef(
  url: string,
  ref: string | undefined,
  auth?: GitAuth,
  http: HttpClient = httpWithIdleTimeout(DEFAULT_GIT_IDLE_TIMEOUT_MS),
): Promise<string | undefined> {
  let refs: Awaited<ReturnType<typeof git.listServerRefs>>;
  try {
    refs = await git.listServerRefs({
      http,
      url,
      symrefs: true,
      peelTags: true,
      onAuth: () => auth ?? { cancel: true },
    });
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
