// Restarts one process of the running test cluster (kube-apiserver, etcd, a node's containerd) the way a
// crash and a supervisor would: stopped, then started again with the very command line it had, its record
// in cluster.json replaced so that `down` stops the new one. For fault tests.
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { hostBin } from './paths.ts';
import { sleep, startDaemon, stopProc } from './proc.ts';
import type { ProcRecord } from './state.ts';
import { readState, writeState } from './state.ts';

/** Stops `name` (SIGKILL when `crash`), waits `downMs`, starts it again; resolves once it is started. */
export async function restartProcess(name: string, o: { crash?: boolean; downMs?: number } = {}): Promise<ProcRecord> {
  const s = readState();
  if (s === undefined) throw new Error('no test cluster is up');
  const old = s.procs.find((p) => p.name === name);
  if (old === undefined)
    throw new Error(`no process ${name} in cluster.json (have: ${s.procs.map((p) => p.name).join(', ')})`);
  // A node's process runs in the node's network namespace (nsenter exec'd into it: the cmdline no longer
  // says so): start it again there, or its pods' new network would be built in the host's namespace.
  const netns = netnsOf(old.pid);
  // And with its own environment (a containerd 2.x node finds its shim through its PATH).
  const environ = readFileSync(`/proc/${old.pid}/environ`, 'utf8')
    .split('\0')
    .filter((a) => a !== '');
  const argv = [
    ...(netns !== undefined ? [hostBin('nsenter'), `--net=${netns}`, '--'] : []),
    hostBin('env'),
    '-i',
    ...environ,
    ...readFileSync(`/proc/${old.pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((a) => a !== ''),
  ];
  if (o.crash === true) {
    process.kill(old.pid, 'SIGKILL');
    while (
      (() => {
        try {
          process.kill(old.pid, 0);
          return true;
        } catch {
          return false;
        }
      })()
    )
      await sleep(50);
  } else await stopProc(old);
  await sleep(o.downMs ?? 0);
  const fresh = startDaemon(name, argv[0]!, argv.slice(1), old.log);
  const now = readState()!;
  now.procs = now.procs.map((p) => (p.name === name && p.pid === old.pid ? fresh : p));
  writeState(now);
  return fresh;
}

/** The /run/netns entry a process's network namespace is, or undefined when it is the host's. */
function netnsOf(pid: number): string | undefined {
  const mine = readlinkSync('/proc/self/ns/net');
  const theirs = readlinkSync(`/proc/${pid}/ns/net`);
  if (theirs === mine) return undefined;
  const inode = Number(/\[(\d+)\]/.exec(theirs)?.[1]);
  for (const name of readdirSync('/run/netns')) {
    const path = join('/run/netns', name);
    if (statSync(path).ino === inode) return path;
  }
  throw new Error(`process ${pid} runs in network namespace ${theirs}, which no /run/netns entry names`);
}
