// Restarts one process of the running test cluster (kube-apiserver, etcd, a node's containerd) the way a
// crash and a supervisor would: stopped, then started again with the very command line it had, its record
// in cluster.json replaced so that `down` stops the new one. For fault tests.
import { readFileSync } from 'node:fs';
import { sleep, startDaemon, stopProc } from './proc.ts';
import type { ProcRecord } from './state.ts';
import { readState, writeState } from './state.ts';

/** Stops `name` (SIGKILL when `crash`), waits `downMs`, starts it again; resolves once it is started. */
export async function restartProcess(name: string, o: { crash?: boolean; downMs?: number } = {}): Promise<ProcRecord> {
  const s = readState();
  if (s === undefined) throw new Error('no test cluster is up');
  const old = s.procs.find((p) => p.name === name);
  if (old === undefined) throw new Error(`no process ${name} in cluster.json (have: ${s.procs.map((p) => p.name).join(', ')})`);
  const argv = readFileSync(`/proc/${old.pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
  if (o.crash === true) {
    process.kill(old.pid, 'SIGKILL');
    while ((() => { try { process.kill(old.pid, 0); return true; } catch { return false; } })()) await sleep(50);
  } else await stopProc(old);
  await sleep(o.downMs ?? 0);
  const fresh = startDaemon(name, argv[0]!, argv.slice(1), old.log);
  const now = readState()!;
  now.procs = now.procs.map((p) => (p.name === name && p.pid === old.pid ? fresh : p));
  writeState(now);
  return fresh;
}
