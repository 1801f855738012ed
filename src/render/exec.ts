// Runs kustomize or helm on input the repository controls: no shell, a time limit, a cap on output, an
// environment with no credentials, no Helm repositories, and proxies that go nowhere (nothing is fetched).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { decodeUtf8, notUtf8Message } from '../source/files.ts';

export interface ExecLimits {
  timeoutMs: number;
  maxOutputBytes: number;
}

export const DEFAULT_LIMITS: ExecLimits = { timeoutMs: 60_000, maxOutputBytes: 32 * 1024 * 1024 };

export type ExecResult = { ok: true; stdout: string } | { ok: false; message: string };

/** A minimal environment: HOME and Helm's directories inside `scratch`, network through a dead proxy. */
export function sandboxEnv(scratch: string): NodeJS.ProcessEnv {
  const dead = 'http://127.0.0.1:9';
  return {
    PATH: '/usr/bin:/bin',
    HOME: scratch,
    HELM_CACHE_HOME: join(scratch, 'helm-cache'),
    HELM_CONFIG_HOME: join(scratch, 'helm-config'),
    HELM_DATA_HOME: join(scratch, 'helm-data'),
    HELM_REPOSITORY_CONFIG: join(scratch, 'helm-config', 'repositories.yaml'),
    HELM_REGISTRY_CONFIG: join(scratch, 'helm-config', 'registry.json'),
    HTTP_PROXY: dead,
    HTTPS_PROXY: dead,
    http_proxy: dead,
    https_proxy: dead,
    NO_PROXY: '',
    GIT_ALLOW_PROTOCOL: 'none',
    GIT_TERMINAL_PROMPT: '0',
  };
}

export function run(
  cmd: string,
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  limits: ExecLimits = DEFAULT_LIMITS,
): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = '';
    let failure: string | undefined;
    const stop = (why: string) => {
      failure ??= why;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => stop(`took longer than ${limits.timeoutMs / 1000} s`), limits.timeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      outBytes += b.byteLength;
      if (outBytes > limits.maxOutputBytes) stop(`output exceeds ${limits.maxOutputBytes} bytes`);
      else out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (err.length < 64 * 1024) err += b.toString('utf8');
    });
    child.on('error', (e) => stop(e.message));
    child.on('close', (code) => {
      clearTimeout(timer);
      if (failure !== undefined) resolve({ ok: false, message: failure });
      else if (code !== 0) resolve({ ok: false, message: lastLines(err) || `exited with ${code}` });
      else {
        // Helm prints template file names as they are (`# Source: chart/templates/<bytes>`): no silent U+FFFD.
        const bytes = Buffer.concat(out);
        const stdout = decodeUtf8(bytes);
        resolve(
          stdout !== undefined
            ? { ok: true, stdout }
            : { ok: false, message: `its output is ${notUtf8Message(bytes)}: nothing of it was read` },
        );
      }
    });
  });
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join(' ').slice(0, 1000);
}
