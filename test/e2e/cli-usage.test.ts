// Every subcommand's command line as a user meets it, through the real bin/enbi.js: --help prints usage and
// exits 0; an unknown option or a bad value is one line on stderr naming it, exit 1 (the one usage-error
// code: docs/design.md, docs/diff.md), never a Node stack trace.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enbi, type Run } from '../support/enbi-cli.ts';

const PINNED = 'github:acme/hello/4f1c2d9e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d#image';

/** Each subcommand with a bad value that it or the shared parser refuses, and what the line must name. */
const SUBCOMMANDS: { name: string; badValue: string[]; named: RegExp }[] = [
  {
    name: 'build',
    badValue: [PINNED, '--image', 'registry.local/hello:1', '--system', 'z80-linux'],
    named: /z80-linux/,
  },
  { name: 'import', badValue: ['--file'], named: /--file/ },
  { name: 'controller', badValue: ['--config'], named: /--config/ },
  { name: 'agent', badValue: ['--node', 'n1', '--resync', 'soon'], named: /--resync soon/ },
  { name: 'diff', badValue: ['--dir', 'examples/manifests', '--mode', 'sometimes'], named: /--mode .*sometimes/ },
  { name: 'status', badValue: ['--namespace'], named: /--namespace/ },
];

const USAGE_ERROR = 1;

function assertUsageError(r: Run, name: string, named: RegExp): void {
  const context = JSON.stringify(r);
  assert.equal(r.code, USAGE_ERROR, context);
  assert.equal(r.stdout, '', context);
  assert.doesNotMatch(r.stderr, /node:internal|\n\s+at |ERR_PARSE_ARGS/, context);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, context);
  assert.match(lines[0]!, new RegExp(`^enbi ${name}: `), context);
  assert.match(lines[0]!, named, context);
}

for (const { name, badValue, named } of SUBCOMMANDS) {
  test(`enbi ${name} --help: its usage on stdout, exit 0`, async () => {
    const r = await enbi([name, '--help']);
    assert.equal(r.code, 0, JSON.stringify(r));
    assert.match(r.stdout, new RegExp(`^enbi ${name} `));
    assert.equal(r.stderr, '');
  });

  test(`enbi ${name} with an unknown option: one line naming it, exit ${USAGE_ERROR}`, async () => {
    assertUsageError(await enbi([name, '--bogus']), name, /unknown option '--bogus'/);
  });

  test(`enbi ${name} with a bad value: one line naming it, exit ${USAGE_ERROR}`, async () => {
    assertUsageError(await enbi([name, ...badValue]), name, named);
  });
}

test('short options go the same way: -h prints usage, an unknown -x is one line', async () => {
  const help = await enbi(['status', '-h']);
  assert.equal(help.code, 0, JSON.stringify(help));
  assert.match(help.stdout, /^enbi status /);
  assertUsageError(await enbi(['status', '-x']), 'status', /unknown option '-x'/);
});

test('a stray argument where none is taken, and text with control characters, stay on one escaped line', async () => {
  assertUsageError(await enbi(['status', 'extra']), 'status', /unexpected argument 'extra'/);
  const r = await enbi(['diff', '--dir', 'x', '--mode', 'a\nb\x1b[2J']);
  assertUsageError(r, 'diff', /not "a b\\x1b\[2J"/);
});
