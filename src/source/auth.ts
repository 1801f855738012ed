// Git credentials: a file ("username:password", or a token on one line) or the environment.
import { readFile } from 'node:fs/promises';
import type { GitAuth } from './git.ts';

export async function gitAuthFrom(file: string | undefined): Promise<GitAuth | undefined> {
  if (file !== undefined) {
    const line = (await readFile(file, 'utf8')).trim().split('\n')[0] ?? '';
    const colon = line.indexOf(':');
    return colon > 0
      ? { username: line.slice(0, colon), password: line.slice(colon + 1) }
      : { username: 'x-access-token', password: line };
  }
  const password = process.env.ENBI_GIT_PASSWORD ?? process.env.ENBI_GIT_TOKEN;
  return password !== undefined ? { username: process.env.ENBI_GIT_USERNAME ?? 'x-access-token', password } : undefined;
}
