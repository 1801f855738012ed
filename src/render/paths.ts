// Path arithmetic on source-relative paths (forward slashes, no leading "/"), shared by the pure render modules.
import { posix } from 'node:path';

/** `rel` resolved against directory `dir`, or undefined when it leaves the source or is absolute. */
export function joinInside(dir: string, rel: string): string | undefined {
  if (rel.startsWith('/') || rel.includes('\0')) return undefined;
  const joined = posix.normalize(posix.join(dir === '' ? '.' : dir, rel));
  if (joined === '..' || joined.startsWith('../')) return undefined;
  return joined === '.' ? '' : joined.replace(/\/$/, '');
}

export function dirOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

export function isUnder(path: string, dir: string): boolean {
  return dir === '' || path === dir || path.startsWith(`${dir}/`);
}

/** A Flux/Argo path ("./apps/prod", "apps/prod/", ".") as a source-relative directory. */
export function normalizeDir(path: string): string | undefined {
  return joinInside('', path === '' ? '.' : path);
}

/** How a directory shows in messages: "." for the root. */
export function shown(dir: string): string {
  return dir === '' ? '.' : dir;
}
