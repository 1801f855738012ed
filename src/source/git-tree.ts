// The manifest files of one commit, read incrementally: a tree's listing is kept by its oid and a file's text
// by its blob oid, so a commit that changes 6 of 2,000 files reads only the trees on their paths and those 6
// blobs. Symlinks are followed as the directory source follows them: inside the repository only.
import * as fs from 'node:fs';
import { posix } from 'node:path';
import git from 'isomorphic-git';
import { byPath as byFilePath, decodeSourceFile, isSkippedDir, isSourceFile, type SourceFile } from './files.ts';

interface TreeFile {
  /** Path from the tree's root. */
  path: string;
  oid: string;
  symlink: boolean;
}

interface Blob {
  file: Omit<SourceFile, 'path'>;
  bytes: number;
}

/** Listings and texts of one clone, kept from one sync to the next (what the last sync did not use is dropped). */
export class TreeMemo {
  trees = new Map<string, TreeFile[]>();
  blobs = new Map<string, Blob>();
  /** Blobs and trees read from the object store by the last read (not found in the memo). */
  blobsRead = 0;
  treesRead = 0;
}

export class TreeReadError extends Error {}

export interface TreeRead {
  files: SourceFile[];
  /** The sub-path exists in the commit. */
  found: boolean;
}

export async function readCommitFiles(
  gitdir: string,
  rootTree: string,
  prefix: string,
  maxBytes: number,
  memo: TreeMemo,
  cache: object,
): Promise<TreeRead> {
  const used = { trees: new Map<string, TreeFile[]>(), blobs: new Map<string, Blob>() };
  memo.blobsRead = 0;
  memo.treesRead = 0;
  const list = async (oid: string): Promise<TreeFile[]> => {
    const hit = used.trees.get(oid) ?? memo.trees.get(oid);
    if (hit !== undefined) {
      used.trees.set(oid, hit);
      return hit;
    }
    memo.treesRead++;
    const { tree } = await git.readTree({ fs, gitdir, oid, cache });
    const out: TreeFile[] = [];
    for (const e of tree) {
      if (e.type === 'tree') {
        if (!isSkippedDir(e.path)) for (const f of await list(e.oid)) out.push({ ...f, path: `${e.path}/${f.path}` });
      } else if (e.type === 'blob') out.push({ path: e.path, oid: e.oid, symlink: e.mode === '120000' });
    }
    used.trees.set(oid, out);
    return out;
  };
  const blob = async (oid: string): Promise<Blob> => {
    const hit = used.blobs.get(oid) ?? memo.blobs.get(oid);
    if (hit !== undefined) {
      used.blobs.set(oid, hit);
      return hit;
    }
    memo.blobsRead++;
    const { blob: bytes } = await git.readBlob({ fs, gitdir, oid, cache });
    const { path: _, ...file } = decodeSourceFile('', bytes, oid);
    const b = { file, bytes: bytes.byteLength };
    used.blobs.set(oid, b);
    return b;
  };

  const all = await list(rootTree);
  let byPath: Map<string, TreeFile> | undefined; // only symlinks need it
  const inside = (p: string) => prefix === '' || p === prefix || p.startsWith(`${prefix}/`);
  const relOf = (p: string) => (prefix === '' ? p : p === prefix ? p.split('/').pop()! : p.slice(prefix.length + 1));
  const found = prefix === '' || all.some((f) => inside(f.path));
  const files: SourceFile[] = [];
  let total = 0;
  const add = async (rel: string, oid: string) => {
    const b = await blob(oid);
    total += b.bytes;
    if (total > maxBytes)
      throw new TreeReadError(
        `manifests below "${prefix || '/'}" exceed ${maxBytes} bytes: point --path at the manifests`,
      );
    files.push({ path: rel, ...b.file });
  };
  for (const f of all) {
    if (!inside(f.path)) continue;
    const rel = relOf(f.path);
    if (!f.symlink) {
      if (isSourceFile(rel)) await add(rel, f.oid);
      continue;
    }
    // A symlink: its blob is the target path, relative to the link's directory.
    const link = (await blob(f.oid)).file.text;
    const target = posix.isAbsolute(link) ? link : posix.normalize(posix.join(posix.dirname(f.path), link));
    const below = all.filter((t) => t.path.startsWith(`${target}/`) && !t.symlink);
    if (!isSourceFile(rel) && below.length === 0) continue;
    if (target === '..' || target.startsWith('../') || posix.isAbsolute(target)) {
      if (!isSourceFile(rel)) continue;
      files.push({
        path: rel,
        text: '',
        unreadable: { severity: 'warning', message: 'symlink leads out of the source: not read' },
      });
    } else if ((byPath ??= new Map(all.map((t) => [t.path, t]))).get(target)?.symlink === false && isSourceFile(rel)) {
      await add(rel, byPath.get(target)!.oid);
    } else if (below.length > 0) {
      for (const t of below) {
        const linked = `${rel}/${t.path.slice(target.length + 1)}`;
        if (isSourceFile(linked)) await add(linked, t.oid);
      }
    } else if (isSourceFile(rel)) {
      files.push({
        path: rel,
        text: '',
        unreadable: {
          severity: 'warning',
          message: `symlink to "${target}", which is not a file of the source: not read`,
        },
      });
    }
  }
  memo.trees = used.trees;
  memo.blobs = used.blobs;
  return { files: files.sort(byFilePath), found };
}
