// node --test --test-global-setup=test/cluster/global-setup.ts: runs once per test run, in the runner.
// It starts nothing itself (a unit-only run costs nothing); harness.ts starts the cluster on first use.
// At the end it stops the cluster only if this run started it, unless ENBI_KEEP_CLUSTER=1.
import { randomBytes } from 'node:crypto';
import { down } from './cluster.ts';
import { requireEmulation } from './emulation.ts';
import { readState } from './state.ts';

const runId = randomBytes(6).toString('hex');

export async function globalSetup(): Promise<void> {
  // Test files run as child processes, which inherit this environment.
  process.env.ENBI_TEST_RUN_ID = runId;
  process.env.ENBI_TEST_RUN_PID = String(process.pid);
  process.env.ENBI_CLUSTER_MODE ??= 'full';
  await prepareHost();
}

/**
 * Host state the real-component tests need (test/cluster/README.md, "Host state"), set up once before any
 * file runs, idempotently: QEMU's aarch64 emulator in binfmt_misc. Each file that needs it also calls
 * requireEmulation itself, which fails with the reason, so a problem here is only reported, not fatal.
 */
async function prepareHost(): Promise<void> {
  if (process.getuid?.() !== 0 || (process.env.ENBI_SKIP_CLUSTER === '1' && process.env.CI !== 'true')) return;
  const log = (m: string): void => void process.stderr.write(`global setup: ${m}\n`);
  await requireEmulation('aarch64-linux', log).catch((e: unknown) =>
    log(`cannot emulate aarch64-linux: ${(e as Error).message}`),
  );
}

export async function globalTeardown(): Promise<void> {
  const s = readState();
  if (!s || s.owner !== runId || process.env.ENBI_KEEP_CLUSTER === '1') return;
  await down();
}
