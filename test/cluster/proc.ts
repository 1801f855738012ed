// Starting, checking and stopping the cluster's long-running processes, by recorded pid only.
import { spawn, execFile } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { ProcRecord } from './state.ts';

const pexec = promisify(execFile);

/** Runs a short command; throws with its stderr when it fails. */
export async function run(cmd: string, args: string[], opts: { input?: string } = {}): Promise<string> {
  if (opts.input !== undefined) {
    return await new Promise((res, rej) => {
      const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.on('error', rej);
      p.on('close', (code) =>
        code === 0 ? res(out) : rej(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.trim()}`)),
      );
      p.stdin.end(opts.input);
    });
  }
  try {
    return (await pexec(cmd, args, { maxBuffer: 64 << 20 })).stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(err.stderr || err.message).trim()}`);
  }
}

/** Clock ticks since boot at which pid started, or undefined if there is no such process. */
export function startTimeOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; starttime is field 22 overall.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[19]);
  } catch {
    return undefined;
  }
}

export const isAlive = (p: ProcRecord): boolean => {
  if (startTimeOf(p.pid) !== p.startTime) return false;
  // A zombie (exited, not yet reaped) counts as dead.
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${p.pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

/** For waitFor's alive option: names the first of procs that is no longer running, and its log. */
export const firstDead = (procs: ProcRecord[]) => (): string | undefined => {
  const d = procs.find((p) => !isAlive(p));
  return d && `${d.name} exited: see ${d.log}`;
};

/** Starts a daemon detached from this process (it outlives the CLI), output appended to log. */
export function startDaemon(name: string, cmd: string, args: string[], log: string): ProcRecord {
  const fd = openSync(log, 'a');
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${name} (${cmd})`);
  const startTime = startTimeOf(pid);
  if (startTime === undefined) throw new Error(`${name} exited at once: see ${log}`);
  return { name, pid, startTime, log };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, then SIGKILL after graceMs; only if the pid is still the process we started. */
export async function stopProc(p: ProcRecord, graceMs = 10_000): Promise<void> {
  if (!isAlive(p)) return;
  process.kill(p.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(p)) return;
    await sleep(100);
  }
  if (isAlive(p)) process.kill(p.pid, 'SIGKILL');
  while (isAlive(p)) await sleep(50);
}

/** Polls check until it returns a value, or fails with what the last attempt said. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  opts: { timeoutMs: number; intervalMs?: number; alive?: () => string | undefined },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let last = '';
  for (;;) {
    const dead = opts.alive?.();
    if (dead) throw new Error(`${what}: ${dead}`);
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ''}`);
    await sleep(opts.intervalMs ?? 250);
  }
}
