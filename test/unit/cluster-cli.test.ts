// The local cluster's command line as a user meets it (`npm run cluster:up -- --help`): usage on --help,
// a message and the usage (exit 2) on a bad flag or command, never a stack trace. Nothing here starts a cluster.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const CLI = new URL('../cluster/cli.ts', import.meta.url).pathname;
// An empty state directory: `status` and `down` must not see a developer's real cluster.
const env = { ...process.env, ENBI_CLUSTER_DIR: mkdtempSync(join(tmpdir(), 'enbi-cli-')) };
const cli = (...args: string[]) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, timeout: 30_000 });

test('up --help (what npm run cluster:up -- --help runs) prints the usage on stdout and exits 0', () => {
  for (const args of [['up', '--help'], ['--help'], ['-h'], ['help']]) {
    const r = cli(...args);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /^usage: node test\/cluster\/cli\.ts COMMAND/);
    assert.match(r.stdout, /--mode full\|control-plane/);
    assert.match(r.stdout, /ENBI_CLUSTER_DIR/);
    assert.equal(r.stderr, '');
  }
});

test('an unknown flag names the flag, prints the usage and exits 2, without a stack trace', () => {
  const r = cli('up', '--bogus');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^error: Unknown option '--bogus'\n/);
  assert.match(r.stderr, /usage: node test\/cluster\/cli\.ts/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.equal(r.stdout, '');
});

test('bad values and commands say what is wrong (exit 2); status without a cluster says how to start one (exit 1)', () => {
  const cases: [string[], RegExp][] = [
    [['up', '--mode', 'half'], /--mode must be full or control-plane, not half/],
    [['up', '--nodes', '0'], /--nodes must be a positive integer, not 0/],
    [['up', '--mode', 'control-plane', '--emulate', 'aarch64-linux'], /--emulate aarch64-linux: .*needs --mode full/],
    [['frob'], /unknown command frob/],
    [[], /no command given/],
  ];
  for (const [args, want] of cases) {
    const r = cli(...args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, want);
    assert.match(r.stderr, /usage:/);
  }
  const s = cli('status');
  assert.equal(s.status, 1);
  assert.match(s.stderr, /no cluster recorded in .*: start one with `npm run cluster:up`/);
});
