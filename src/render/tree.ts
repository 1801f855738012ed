// The I/O edge between the source and rendering. First an index of the source (every regular file's path and a
// content key: the Git blob id, or size and mtime in a directory; the text of kustomizations), reading no other
// file; then, only when something is to be rendered, a private copy holding exactly the files those renders
// read, where enbi writes its generated kustomizations and overlays without touching the user's files, and
// kustomize/helm see nothing else.
// Regular files only: symlinks, hidden directories and node_modules are neither indexed nor copied.
import * as fs from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import git from 'isomorphic-git';
import { decodeUtf8, notUtf8Message } from '../source/files.ts';
import { IGNORE_FILE } from '../source/ignore.ts';
import { needsText, type TreeIndex } from './tree-index.ts';

export type TreeSource = { kind: 'dir'; root: string } | { kind: 'git'; gitdir: string; commit: string };

export class TreeTooLargeError extends Error {
  override name = 'TreeTooLargeError';
}

export interface SourceTree {
  index: TreeIndex;
  read(path: string): Promise<Uint8Array>;
  /** The .enbiignore file of directory `dir` (hidden: not in the index), if there is one. */
  ignoreFile(dir: string): Promise<string | undefined>;
}

const SKIPPED = new Set(['node_modules']);
const skipped = (name: string) => name.startsWith('.') || SKIPPED.has(name);

export async function indexTree(source: TreeSource): Promise<SourceTree> {
  const hashes = new Map<string, string>();
  const texts = new Map<string, string>();
  const notUtf8 = new Map<string, string>();
  let read: (path: string) => Promise<Uint8Array>;
  let ignoreFile: SourceTree['ignoreFile'];
  if (source.kind === 'dir') {
    // A directory has no content ids: size and modification time stand for the content (as make does), so
    // the index reads no file; a render reads its inputs when it runs.
    const paths: string[] = [];
    await walkDir(source.root, '', async (path) => void paths.push(path));
    const stats = await inBatches(paths, 64, (path) => stat(join(source.root, path), { bigint: true }));
    paths.forEach((path, i) => hashes.set(path, `${stats[i]!.size}:${stats[i]!.mtimeNs}:${stats[i]!.ino}`));
    read = (path) => readFile(join(source.root, path));
    ignoreFile = (dir) => readFile(join(source.root, dir, IGNORE_FILE), 'utf8').catch(() => undefined);
  } else {
    // A Git tree names each blob by its content id: nothing is read until a render needs it.
    const oids = new Map<string, string>();
    const ignoreOids = new Map<string, string>();
    await walkCommit(
      source.gitdir,
      source.commit,
      (path, oid) => {
        oids.set(path, oid);
        hashes.set(path, oid);
      },
      (path, oid) => ignoreOids.set(path, oid),
    );
    read = async (path) =>
      (await git.readBlob({ fs, gitdir: source.gitdir, oid: oids.get(path)!, cache: gitCache })).blob;
    ignoreFile = async (dir) => {
      const oid = ignoreOids.get(dir === '' ? IGNORE_FILE : `${dir}/${IGNORE_FILE}`);
      return oid === undefined
        ? undefined
        : decodeUtf8((await git.readBlob({ fs, gitdir: source.gitdir, oid, cache: gitCache })).blob);
    };
  }
  for (const path of hashes.keys()) {
    if (!needsText(path)) continue;
    const bytes = await read(path);
    const text = decodeUtf8(bytes);
    if (text !== undefined) texts.set(path, text);
    else notUtf8.set(path, notUtf8Message(bytes));
  }
  const index = { paths: [...hashes.keys()].sort(), hashes, texts, ...(notUtf8.size > 0 ? { notUtf8 } : {}) };
  return { index, read, ignoreFile };
}

/** Writes `paths` of the source below `dest` (those not written yet), within a total of `maxBytes`. */
export function treeWriter(
  tree: SourceTree,
  dest: string,
  maxBytes: number,
): (paths: Iterable<string>) => Promise<void> {
  const written = new Set<string>();
  let total = 0;
  return async (paths) => {
    for (const path of paths) {
      if (written.has(path) || !tree.index.hashes.has(path)) continue;
      const content = await tree.read(path);
      total += content.byteLength;
      if (total > maxBytes)
        throw new TreeTooLargeError(`the files to render exceed ${maxBytes} bytes: nothing was rendered`);
      await mkdir(dirname(join(dest, path)), { recursive: true });
      await writeFile(join(dest, path), content);
      // Only once it is there: a file that could not be read fails every root that needs it, not just the first.
      written.add(path);
    }
  };
}

async function inBatches<T, R>(items: readonly T[], size: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(work))));
  return out;
}

async function walkDir(root: string, rel: string, visit: (path: string) => Promise<void>): Promise<void> {
  const entries = await readdir(join(root, rel), { withFileTypes: true, encoding: 'buffer' });
  const named = entries.flatMap((entry) => {
    // A name that is not UTF-8 could not be opened again by its decoded name: left out (the source reports it).
    const name = decodeUtf8(entry.name);
    return name === undefined ? [] : [{ entry, name }];
  });
  for (const { entry, name } of named.sort((a, b) => a.name.localeCompare(b.name))) {
    if (skipped(name)) continue;
    const path = rel === '' ? name : `${rel}/${name}`;
    if (entry.isDirectory()) await walkDir(root, path, visit);
    else if (entry.isFile()) await visit(path);
  }
}

const gitCache = {};

async function walkCommit(
  gitdir: string,
  commit: string,
  visit: (path: string, oid: string) => void,
  visitIgnoreFile: (path: string, oid: string) => void,
): Promise<void> {
  await git.walk({
    fs,
    gitdir,
    cache: gitCache,
    trees: [git.TREE({ ref: commit })],
    map: async (path, [entry]) => {
      if (entry === null || entry === undefined) return null;
      if (path === '.') return true;
      const parts = path.split('/');
      if (parts.at(-1) === IGNORE_FILE && !parts.slice(0, -1).some(skipped)) {
        if ((await entry.type()) === 'blob') visitIgnoreFile(path, await entry.oid());
        return null;
      }
      if (parts.some(skipped)) return null;
      const type = await entry.type();
      if (type === 'tree') return true;
      // 0o100644 / 0o100755 only: symlinks (0o120000) and submodules are not followed.
      if (type === 'blob' && ((await entry.mode()) & 0o170000) === 0o100000) visit(path, await entry.oid());
      return null;
    },
  });
}
