// The I/O edge that gives rendering a real directory: a private copy of the source (a local directory, or a
// Git commit's tree written out from the bare clone), so enbi can write generated kustomizations and overlays
// without touching the user's files, and kustomize/helm see nothing outside it. Regular files only: symlinks,
// hidden directories and node_modules are not copied. Returns the copy's index for the pure steps.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import git from 'isomorphic-git';
import { needsText, type TreeIndex } from './tree-index.ts';

export type TreeSource = { kind: 'dir'; root: string } | { kind: 'git'; gitdir: string; commit: string };

export class TreeTooLargeError extends Error {
  override name = 'TreeTooLargeError';
}

const SKIPPED = new Set(['node_modules']);
const skipped = (name: string) => name.startsWith('.') || SKIPPED.has(name);

export async function materializeTree(source: TreeSource, dest: string, maxBytes: number): Promise<TreeIndex> {
  const hashes = new Map<string, string>();
  const texts = new Map<string, string>();
  let total = 0;
  const put = async (path: string, content: Uint8Array, hash: string) => {
    total += content.byteLength;
    if (total > maxBytes) throw new TreeTooLargeError(`the source exceeds ${maxBytes} bytes: nothing was rendered`);
    const full = join(dest, path);
    await mkdir(dirname(full), { recursive: true });
    await writeFile(full, content);
    hashes.set(path, hash);
    if (needsText(path)) texts.set(path, Buffer.from(content).toString('utf8'));
  };
  if (source.kind === 'dir') await copyDir(source.root, '', put);
  else await copyCommit(source.gitdir, source.commit, put);
  return { paths: [...hashes.keys()].sort(), hashes, texts };
}

type Put = (path: string, content: Uint8Array, hash: string) => Promise<void>;

async function copyDir(root: string, rel: string, put: Put): Promise<void> {
  const entries = await readdir(join(root, rel), { withFileTypes: true });
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (skipped(entry.name)) continue;
    const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (entry.isDirectory()) await copyDir(root, path, put);
    else if (entry.isFile()) {
      const content = await readFile(join(root, path));
      await put(path, content, createHash('sha256').update(content).digest('hex'));
    }
  }
}

const gitCache = {};

async function copyCommit(gitdir: string, commit: string, put: Put): Promise<void> {
  await git.walk({
    fs,
    gitdir,
    cache: gitCache,
    trees: [git.TREE({ ref: commit })],
    map: async (path, [entry]) => {
      if (entry === null || entry === undefined) return null;
      if (path === '.') return true;
      if (path.split('/').some(skipped)) return null;
      const type = await entry.type();
      if (type === 'tree') return true;
      // 0o100644 / 0o100755 only: symlinks (0o120000) and submodules are not followed.
      if (type !== 'blob' || ((await entry.mode()) & 0o170000) !== 0o100000) return null;
      const content = await entry.content();
      if (content !== undefined) await put(path, content, await entry.oid());
      return null;
    },
  });
}
