// A local directory of manifests, read once or watched with chokidar (one callback per burst of writes).
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import chokidar from 'chokidar';
import type { SourceFile } from './files.ts';
import { isSourceFile } from './files.ts';

const SKIPPED_DIRS = new Set(['node_modules', '.git']);

export async function readDirSource(root: string): Promise<SourceFile[]> {
  const files: SourceFile[] = [];
  const visit = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name.startsWith('.') || SKIPPED_DIRS.has(entry.name)) continue;
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await visit(full);
      else if (entry.isFile()) {
        const path = relative(root, full).split(sep).join('/');
        if (isSourceFile(path)) files.push({ path, text: await readFile(full, 'utf8') });
      }
    }
  };
  await visit(root);
  return files;
}

/** Calls `onChange` once per burst of changes to manifest files below `root`, `debounceMs` after the last. */
export function watchDir(root: string, onChange: () => void, debounceMs = 200): { close: () => Promise<void> } {
  let timer: NodeJS.Timeout | undefined;
  const watcher = chokidar.watch(root, {
    ignoreInitial: true,
    ignored: (path: string) => path.split(sep).some((p) => p.startsWith('.') && p !== '.' && p !== '..') || path.includes(`${sep}node_modules`),
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
