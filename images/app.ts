// enbi itself in the controller image, under /app: the compiled CLI (tsc -p tsconfig.build.json, as
// `npm run build`), package.json, and the modules `npm ci --omit=dev` installs: every package-lock.json
// entry not marked dev, copied from this checkout's node_modules after checking its version.
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Entry } from './oci.ts';

export const REPO = new URL('..', import.meta.url).pathname.replace(/\/$/, '');

interface LockPackage {
  version?: string;
  dev?: boolean;
  link?: boolean;
}

/** package-lock.json's production packages: node_modules/… paths and versions. */
export function productionPackages(repo = REPO): { path: string; version: string }[] {
  const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockPackage>;
  };
  return Object.entries(lock.packages)
    .filter(([path, p]) => path.startsWith('node_modules/') && p.dev !== true && p.link !== true)
    .map(([path, p]) => ({ path, version: p.version ?? '' }))
    .sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** Files of a directory as entries under prefix (nested node_modules left to their own lock entries). */
function tree(dir: string, prefix: string, skip: (name: string) => boolean): Entry[] {
  const out: Entry[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      if (skip(name)) continue;
      const r = rel === '' ? name : `${rel}/${name}`;
      const full = join(dir, r);
      const st = lstatSync(full);
      const path = `${prefix}/${r}`;
      if (st.isSymbolicLink()) out.push({ type: 'symlink', path, target: readlinkSync(full) });
      else if (st.isDirectory()) {
        out.push({ type: 'dir', path, mode: 0o755 });
        walk(r);
      } else if (st.isFile())
        out.push({ type: 'file', path, data: readFileSync(full), mode: st.mode & 0o111 ? 0o755 : 0o644 });
    }
  };
  walk('');
  return out;
}

/** The compiled CLI: tsc into a scratch directory (never the checkout's dist/, which may be stale). */
export function compile(repo = REPO): Entry[] {
  const out = mkdtempSync(join(tmpdir(), 'enbi-dist-'));
  try {
    const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
    execFileSync(process.execPath, [tsc, '-p', join(repo, 'tsconfig.build.json'), '--outDir', out], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return tree(out, 'app/dist', () => false);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** /app: dist, package.json, production node_modules. */
export function appEntries(repo = REPO): Entry[] {
  const entries: Entry[] = [
    ...compile(repo),
    { type: 'file', path: 'app/package.json', data: readFileSync(join(repo, 'package.json')), mode: 0o644 },
  ];
  for (const p of productionPackages(repo)) {
    const dir = join(repo, p.path);
    let version: string | undefined;
    try {
      version = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: string }).version;
    } catch {
      version = undefined;
    }
    if (version !== p.version)
      throw new Error(`${p.path} is ${version ?? 'not installed'}, package-lock.json says ${p.version}: run npm ci`);
    entries.push(
      { type: 'dir', path: `app/${p.path}`, mode: 0o755 },
      ...tree(dir, `app/${p.path}`, (n) => n === 'node_modules'),
    );
  }
  return entries;
}
