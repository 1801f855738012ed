// node --test --test-global-setup=test/cluster/global-setup.ts: runs once per test run, in the runner.
// It starts nothing itself (a unit-only run costs nothing); harness.ts starts the cluster on first use.
// At the end it stops the cluster only if this run started it, unless ENBI_KEEP_CLUSTER=1.
import { randomBytes } from 'node:crypto';
import { down } from './cluster.ts';
import { readState } from './state.ts';

const runId = randomBytes(6).toString('hex');

export function globalSetup(): void {
  // Test files run as child processes, which inherit this environment.
  process.env.ENBI_TEST_RUN_ID = runId;
  process.env.ENBI_TEST_RUN_PID = String(process.pid);
  process.env.ENBI_CLUSTER_MODE ??= 'full';
}

export async function globalTeardown(): Promise<void> {
  const s = readState();
  if (!s || s.owner !== runId || process.env.ENBI_KEEP_CLUSTER === '1') return;
  await down();
}
