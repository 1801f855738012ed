// A heap near its limit is seen long before it is fatal: the pure decision (warn once on crossing, once back
// below), and a real Node process under a small --max-old-space-size that fills its heap: one warning line,
// the gauges on the controller's /metrics, and the process still alive; freed, one line saying it is back.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { heapAlarm, type HeapFigures } from '../../src/async/heap-watch.ts';

const MiB = 1024 * 1024;
const at = (usedAfterGc: number | undefined, limit = 100 * MiB): HeapFigures => ({
  used: (usedAfterGc ?? 0) + 5 * MiB,
  usedAfterGc,
  limit,
});

test('heapAlarm warns once when the heap after GC crosses 80% of the limit, and once when back below 70%', () => {
  let high = false;
  const said: string[] = [];
  for (const u of [10, 50, 79.9, 80, 95, 85, 75, 70.1, 69.9, 60, 81]) {
    const v = heapAlarm(high, at(u * MiB));
    high = v.high;
    if (v.say !== undefined) said.push(`${u} ${v.say.level} ${v.say.msg}`);
  }
  assert.equal(said.length, 3, said.join('\n'));
  assert.match(said[0]!, /^80 warn heap after GC is 80 MiB of its 100 MiB limit \(80%, warning at 80%\)/);
  assert.match(said[0]!, /raise the container's memory limit/);
  assert.match(said[1]!, /^69\.9 info heap after GC back to 70 MiB of its 100 MiB limit \(70%\)$/);
  assert.match(said[2]!, /^81 warn /);
});

test('heapAlarm judges nothing before the first full collection, and garbage alone never warns', () => {
  assert.deepEqual(heapAlarm(false, at(undefined)), { high: false });
  assert.deepEqual(heapAlarm(true, at(undefined)), { high: true });
  // 99 MiB in use but 10 MiB of it survived the last mark-compact: not a warning.
  assert.deepEqual(heapAlarm(false, { used: 99 * MiB, usedAfterGc: 10 * MiB, limit: 100 * MiB }), { high: false });
  assert.deepEqual(heapAlarm(false, { used: 1, usedAfterGc: 1, limit: 0 }), { high: false });
});

test('heapAlarm takes other thresholds; a clear ratio above the warn ratio is the warn ratio', () => {
  assert.equal(heapAlarm(false, at(50 * MiB), { warnRatio: 0.5 }).say?.level, 'warn');
  assert.equal(heapAlarm(true, at(49 * MiB), { warnRatio: 0.5, clearRatio: 0.9 }).say?.level, 'info');
  assert.equal(heapAlarm(true, at(50 * MiB), { warnRatio: 0.5, clearRatio: 0.9 }).say, undefined);
});

test('a process filling a 128 MiB heap logs one warning and shows it on /metrics, and is still alive', async () => {
  const child = spawn(
    process.execPath,
    [
      '--expose-gc',
      '--max-old-space-size=128',
      '--max-semi-space-size=1',
      new URL('./fixtures/heap-hog.ts', import.meta.url).pathname,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  try {
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const seen: string[] = [];
    const until = async (pred: (l: string) => boolean): Promise<string> => {
      for (;;) {
        const r = await lines.next();
        if (r.done === true) throw new Error(`child ended; it said:\n${seen.join('\n')}`);
        seen.push(r.value);
        if (pred(r.value)) return r.value;
      }
    };
    const [, port, limit] = /^port (\d+) limit (\d+)$/.exec(await until((l) => l.startsWith('port ')))!.map(Number);
    const metric = async (name: string) => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
      assert.ok(m, `${name} on /metrics:\n${text}`);
      return Number(m[1]);
    };
    assert.ok(
      limit! > 128 * MiB && limit! < 136 * MiB,
      `heap_size_limit ${limit} follows --max-old-space-size=128 (plus 3 semi-spaces)`,
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await metric('enbi_heap_limit_bytes'), limit);
    assert.ok((await metric('enbi_heap_used_after_gc_bytes')) < 0.5 * limit!, 'a fresh process is far from its limit');

    child.stdin!.write('fill 0.82\n');
    await until((l) => l === 'filled');
    const warning = JSON.parse(await until((l) => l.includes('"level":"warn"'))) as { msg: string };
    assert.match(warning.msg, /^heap after GC is \d+ MiB of its \d+ MiB limit \(8\d%, warning at 80%\)/);
    const after = await metric('enbi_heap_used_after_gc_bytes');
    assert.ok(after >= 0.8 * limit!, `gauge ${after} ≥ 80% of ${limit}`);
    assert.ok((await metric('enbi_heap_used_bytes')) >= 0.8 * limit!, 'the heap in use holds what was filled');
    // Still high a second later: no second warning.
    await new Promise((r) => setTimeout(r, 1000));
    child.stdin!.write('free\n');
    const back = JSON.parse(await until((l) => l.includes('back to'))) as { level: string; msg: string };
    assert.equal(back.level, 'info');
    assert.equal(seen.filter((l) => l.includes('"level":"warn"')).length, 1, seen.join('\n'));
    assert.ok((await metric('enbi_heap_used_after_gc_bytes')) < 0.7 * limit!);
    assert.equal(child.exitCode, null, 'the process is alive');
    child.stdin!.write('exit\n');
  } finally {
    if (child.exitCode === null) child.kill();
  }
});
