// A local directory of manifests, read once or watched with chokidar (one callback per burst of writes).
// Symlinks are followed while they stay inside the source directory and refused (a warning) when they leave
// it, as the Git source does; node_modules/ and hidden directories are skipped in both.
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import chokidar from 'chokidar';
import {
  byPath,
  confinePath,
  decodeSourceFile,
  decodeUtf8,
  firstInvalidByte,
  isSkippedDir,
  isSourceFile,
  PathOutsideSourceError,
  type SourceFile,
} from './files.ts';
import { IGNORE_FILE } from './ignore.ts';

/** The files below `subPath` of the source directory `dir`, paths relative to `dir/subPath`. */
export async function readDirSource(dir: string, subPath = ''): Promise<SourceFile[]> {
  const sourceRoot = await realpath(dir);
  const base = join(sourceRoot, confinePath(subPath));
  const files: SourceFile[] = [];
  const seenDirs = new Set<string>();
  const inside = (real: string) => real === sourceRoot || real.startsWith(sourceRoot + sep);
  const visit = async (at: string): Promise<void> => {
    const real = await realpath(at);
    if (seenDirs.has(real)) return; // a symlink loop, or a directory linked twice
    seenDirs.add(real);
    const entries = await readdir(at, { withFileTypes: true, encoding: 'buffer' });
    const named: { entry: (typeof entries)[number]; name: string }[] = [];
    for (const entry of entries) {
      const name = decodeUtf8(entry.name);
      if (name !== undefined) named.push({ entry, name });
      else {
        // Not opened by a decoded (U+FFFD) name, which names no file: a problem naming it, bytes escaped.
        const shown = relative(base, join(at, escapedName(entry.name)))
          .split(sep)
          .join('/');
        if (isSourceFile(shown) || entry.isDirectory())
          files.push({
            path: shown,
            text: '',
            unreadable: { severity: 'problem', message: 'its name is not valid UTF-8: not read (rename it)' },
          });
      }
    }
    for (const { entry, name } of named.sort((a, b) => a.name.localeCompare(b.name))) {
      const full = join(at, name);
      const path = relative(base, full).split(sep).join('/');
      if (entry.isDirectory()) {
        if (!isSkippedDir(name)) await visit(full);
      } else if (entry.isFile()) {
        if (isSourceFile(path)) files.push(decodeSourceFile(path, await readFile(full)));
      } else if (entry.isSymbolicLink()) {
        await followLink(full, path, name);
      }
    }
  };
  const followLink = async (full: string, path: string, name: string): Promise<void> => {
    const target = await realpath(full).catch(() => undefined);
    const isDir = target !== undefined && (await stat(target)).isDirectory();
    if (isDir ? isSkippedDir(name) : !isSourceFile(path)) return;
    if (target === undefined)
      files.push({ path, text: '', unreadable: { severity: 'warning', message: 'symlink to nothing: not read' } });
    else if (!inside(target))
      files.push({
        path,
        text: '',
        unreadable: { severity: 'warning', message: 'symlink leads out of the source: not read' },
      });
    else if (isDir) await visit(full);
    else files.push(decodeSourceFile(path, await readFile(target)));
  };
  const realBase = await realpath(base);
  if (!inside(realBase))
    throw new PathOutsideSourceError(`--path "${subPath}" leads out of the source through a symlink`);
  await visit(base);
  return files.sort(byPath);
}

/** A file name's bytes, those that are not UTF-8 as \xNN. */
function escapedName(bytes: Buffer): string {
  let out = '';
  for (let i = 0; i < bytes.length;) {
    const rest = bytes.subarray(i);
    const bad = firstInvalidByte(rest);
    out += decodeUtf8(rest.subarray(0, bad)) ?? '';
    if (bad >= rest.length) break;
    out += `\\x${rest[bad]!.toString(16).padStart(2, '0')}`;
    i += bad + 1;
  }
  return out;
}

/** Calls `onChange` once per burst of changes to manifest files below `root`, `debounceMs` after the last. */
export function watchDir(root: string, onChange: () => void, debounceMs = 200): { close: () => Promise<void> } {
  let timer: NodeJS.Timeout | undefined;
  const watcher = chokidar.watch(root, {
    ignoreInitial: true,
    ignored: (path: string) =>
      relative(root, path)
        .split(sep)
        .some((p) => p !== '' && p !== '..' && p !== IGNORE_FILE && isSkippedDir(p)),
  });
  watcher.on('all', (_event, path) => {
    if (!isSourceFile(relative(root, path).split(sep).join('/'))) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
  });
  return {
    close: async () => {
      if (timer !== undefined) clearTimeout(timer);
      await watcher.close();
    },
  };
}
