// The controller's HTTP endpoints as any pod that reaches them can use them: malformed request lines, URLs
// and oversized headers are answered (400/431), never fatal; probes and the webhook on separate ports; an
// empty webhook secret stops start-up. Real sockets against the real server (the controller process is
// checked the same way in controller-e2e).
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { newMetrics } from '../../src/controller/metrics.ts';
import { startServers } from '../../src/controller/server.ts';
import { printable } from '../../src/text/printable.ts';

function raw(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString()));
    socket.on('error', () => resolve(got));
    socket.on('close', () => resolve(got));
    socket.write(text, () => undefined);
    setTimeout(() => socket.destroy(), 5000);
  });
}

test('malformed requests are answered 400 or 431 on both ports, and the server keeps serving', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-srv-'));
  await writeFile(join(dir, 'secret'), 's3cret\n');
  const metrics = newMetrics();
  let pushes = 0;
  const s = await startServers({ listen: { host: '127.0.0.1', port: 0 }, webhook: { host: '127.0.0.1', port: 0, secretFile: join(dir, 'secret') }, metrics, ready: () => true, onPush: () => pushes++, log: () => undefined });
  try {
    for (const port of [s.port, s.webhookPort!]) {
      assert.match(await raw(port, 'GET //[ HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 400 /);
      assert.match(await raw(port, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400 /);
      assert.match(await raw(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10 * 1024 * 1024)}\r\n\r\n`), /^(HTTP\/1\.1 431 |)$|^HTTP\/1\.1 431 /);
    }
    assert.ok(metrics.httpBadRequests >= 6, String(metrics.httpBadRequests));
    assert.equal((await fetch(`http://127.0.0.1:${s.port}/healthz`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${s.port}/hooks/git`, { method: 'POST', body: '{}' })).status, 405);
    assert.equal((await fetch(`http://127.0.0.1:${s.webhookPort}/metrics`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${s.webhookPort}/hooks/git`, { method: 'POST', body: '{}', headers: { 'X-Gitlab-Token': 'no' } })).status, 401);
    assert.equal((await fetch(`http://127.0.0.1:${s.webhookPort}/hooks/git`, { method: 'POST', body: '{}', headers: { 'X-Gitlab-Token': 's3cret' } })).status, 202);
    assert.equal(pushes, 1);
  } finally {
    await s.close();
  }
});

test('an empty webhook secret file is a start-up error that says what to do', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-srv-'));
  await writeFile(join(dir, 'secret'), ' \n');
  await assert.rejects(
    startServers({ listen: { host: '127.0.0.1', port: 0 }, webhook: { host: '127.0.0.1', port: 0, secretFile: join(dir, 'secret') }, metrics: newMetrics(), ready: () => true, onPush: () => undefined, log: () => undefined }),
    /webhook.secretFile .* is empty: put the secret your Git host signs pushes with in it/,
  );
});

test('text from builds and manifests is printed with control characters escaped', () => {
  assert.equal(printable('ok\n\tline'), 'ok\n\tline');
  assert.equal(printable('\u001b[2J\u001b[Hfake\rline\u0000'), '\\x1b[2J\\x1b[Hfake\\x0dline\\x00');
  assert.equal(printable('a\u202eb'), 'a\\u{202e}b');
});
