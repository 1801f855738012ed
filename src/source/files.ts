// The files a source hands to the pipeline: manifests, the flake.lock files that pin indirect flakes, and
// the source's .enbiignore. Both sources (directory and Git) apply the same rules through this module.
import { posix } from 'node:path';
import { isManifestPath } from '../manifests/scan.ts';
import { IGNORE_FILE } from './ignore.ts';

export interface SourceFile {
  /** Relative to the source root, forward slashes. */
  path: string;
  text: string;
  /** What identifies the content (a Git blob id): the file's parse is kept by it between syncs. */
  id?: string;
  /** Why the file was not read (invalid UTF-8, a symlink leading out of the source); `text` is then empty. */
  unreadable?: { message: string; severity: 'problem' | 'warning' };
}

/** Directories never read, in either source: dependencies, and hidden ones (.git, .github, …). */
export function isSkippedDir(name: string): boolean {
  return name === 'node_modules' || name.startsWith('.');
}

/** The order both sources hand files over in: by UTF-16 code units (deterministic, and cheap for 2,000 paths). */
export function byPath(a: { path: string }, b: { path: string }): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

export function isLockPath(path: string): boolean {
  return path === 'flake.lock' || path.endsWith('/flake.lock');
}

export function isSourceFile(path: string): boolean {
  if (path === IGNORE_FILE) return true;
  if (path.split('/').slice(0, -1).some(isSkippedDir)) return false;
  return isLockPath(path) || isManifestPath(path);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The text of UTF-8 bytes, or undefined when they are not UTF-8 (never a silent U+FFFD). */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** What to say of bytes that are not UTF-8: where the first bad byte is. */
export function notUtf8Message(bytes: Uint8Array): string {
  return `not valid UTF-8 (byte ${firstInvalidByte(bytes)})`;
}

/** The file's text, or a problem naming it when it is not UTF-8 (never a silent U+FFFD). */
export function decodeSourceFile(path: string, bytes: Uint8Array, id?: string): SourceFile {
  const withId = id !== undefined ? { id } : {};
  try {
    return { path, text: utf8.decode(bytes), ...withId };
  } catch {
    const at = firstInvalidByte(bytes);
    return {
      path,
      text: '',
      ...withId,
      unreadable: { severity: 'problem', message: `not valid UTF-8 (byte ${at}): save the file as UTF-8` },
    };
  }
}

/** Offset of the first byte that does not start (or continue) a valid UTF-8 sequence. */
export function firstInvalidByte(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i]!;
    const len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (len === 0) return i;
    const chunk = bytes.subarray(i, i + len);
    if (chunk.length < len) return i;
    try {
      utf8.decode(chunk);
    } catch {
      return i;
    }
    i += len;
  }
  return bytes.length;
}

export class PathOutsideSourceError extends Error {
  override name = 'PathOutsideSourceError';
}

/** `--path` as a relative path inside the source ("" for its root); refuses one that leaves it. */
export function confinePath(path: string): string {
  const rel = posix.normalize(path.replace(/\\/g, '/').replace(/^\/+/, '') || '.').replace(/\/+$/, '');
  if (rel === '..' || rel.startsWith('../'))
    throw new PathOutsideSourceError(`--path "${path}" leads out of the source: give a path inside it`);
  return rel === '.' ? '' : rel;
}
