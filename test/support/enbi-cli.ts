// Runs the real `enbi` CLI as a subprocess, and writes fixture directories for it.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export const ROOT = new URL('../../', import.meta.url).pathname;
const ENBI = join(ROOT, 'bin/enbi.js');

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function enbi(args: string[], cwd = ROOT): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [ENBI, ...args], {
      cwd,
      env: { ...process.env, KUBECONFIG: '/nonexistent' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A directory of files (text, bytes, or `{ symlink: target }`), in a fresh temporary directory. */
export async function fixtureDir(files: Record<string, string | Buffer | { symlink: string }>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-fixture-'));
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    if (typeof content === 'object' && !Buffer.isBuffer(content)) await symlink(content.symlink, join(dir, path));
    else await writeFile(join(dir, path), content);
  }
  return dir;
}
