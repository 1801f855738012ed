// The controller's HTTP endpoints as any pod that reaches them can use them: malformed request lines, URLs
// and oversized headers are answered (400/431), never fatal; probes and the webhook on separate ports; an
// empty webhook secret stops start-up. Real sockets against the real server (the controller process is
// checked the same way in controller-e2e).
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { newMetrics, renderMetrics } from '../../src/controller/metrics.ts';
import { startServers } from '../../src/controller/server.ts';
import { GUARD_DEFAULTS } from '../../src/controller/webhook-guard.ts';
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
  const s = await startServers({
    listen: { host: '127.0.0.1', port: 0 },
    webhook: { host: '127.0.0.1', port: 0, secretFile: join(dir, 'secret') },
    metrics,
    ready: () => true,
    onPush: () => pushes++,
    log: () => undefined,
  });
  try {
    for (const port of [s.port, s.webhookPort!]) {
      assert.match(await raw(port, 'GET //[ HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 400 /);
      assert.match(await raw(port, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400 /);
      assert.match(
        await raw(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10 * 1024 * 1024)}\r\n\r\n`),
        /^(HTTP\/1\.1 431 |)$|^HTTP\/1\.1 431 /,
      );
    }
    assert.ok(metrics.httpBadRequests >= 6, String(metrics.httpBadRequests));
    assert.equal((await fetch(`http://127.0.0.1:${s.port}/healthz`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${s.port}/hooks/git`, { method: 'POST', body: '{}' })).status, 405);
    assert.equal((await fetch(`http://127.0.0.1:${s.webhookPort}/metrics`)).status, 404);
    assert.equal(
      (
        await fetch(`http://127.0.0.1:${s.webhookPort}/hooks/git`, {
          method: 'POST',
          body: '{}',
          headers: { 'X-Gitlab-Token': 'no' },
        })
      ).status,
      401,
    );
    assert.equal(
      (
        await fetch(`http://127.0.0.1:${s.webhookPort}/hooks/git`, {
          method: 'POST',
          body: '{}',
          headers: { 'X-Gitlab-Token': 's3cret' },
        })
      ).status,
      202,
    );
    assert.equal(pushes, 1);
  } finally {
    await s.close();
  }
});

test('the webhook: a replayed delivery is answered 200 and does nothing; unsigned ones cost no memory; over the rate 429; log lines about them are few', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-srv-'));
  await writeFile(join(dir, 'secret'), 's3cret\n');
  const metrics = newMetrics();
  const logs: string[] = [];
  let pushes = 0;
  const s = await startServers({
    listen: { host: '127.0.0.1', port: 0 },
    webhook: { host: '127.0.0.1', port: 0, secretFile: join(dir, 'secret') },
    metrics,
    ready: () => true,
    onPush: () => pushes++,
    log: (m) => logs.push(m),
    guard: { ...GUARD_DEFAULTS, perRepository: { burst: 3, perSecond: 0.01, maxKeys: 16 } },
  });
  const url = `http://127.0.0.1:${s.webhookPort}/hooks/git`;
  const send = (body: string, headers: Record<string, string>) =>
    fetch(url, { method: 'POST', body, headers: { 'Content-Type': 'application/json', ...headers } });
  const signed = (body: string, id = randomUUID()) => ({
    'X-Hub-Signature-256': `sha256=${createHmac('sha256', 's3cret').update(body).digest('hex')}`,
    'X-GitHub-Delivery': id,
    'X-GitHub-Event': 'push',
  });
  try {
    const body = JSON.stringify({
      ref: 'refs/heads/main',
      after: 'a'.repeat(40),
      repository: { full_name: 'acme/app' },
    });
    const headers = signed(body);
    const first = await send(body, headers);
    assert.equal(first.status, 202);
    const again = await send(body, headers);
    assert.equal(again.status, 200);
    assert.match(await again.text(), /duplicate delivery: already accepted, nothing done/);
    // The replayer's variant: the same signed body, a new delivery id each time.
    for (let i = 0; i < 50; i++) assert.equal((await send(body, signed(body))).status, 200);
    assert.equal(pushes, 1);
    assert.equal(metrics.webhooksAccepted, 1);
    assert.equal(metrics.webhooksDuplicate, 51);
    assert.equal(metrics.webhookDeliveriesRemembered, 2);
    // Unsigned (or badly signed) requests with distinct ids: 401, nothing remembered.
    for (let i = 0; i < 200; i++)
      assert.equal(
        (await send(`{"n":${i}}`, { 'X-Hub-Signature-256': 'sha256=00', 'X-GitHub-Delivery': randomUUID() })).status,
        401,
      );
    assert.equal(metrics.webhooksRejected, 200);
    assert.equal(metrics.webhookDeliveriesRemembered, 2);
    // New signed deliveries of one repository past its burst (3): 429 with Retry-After, not remembered.
    const answers: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 5; i++) {
      const b = JSON.stringify({
        ref: 'refs/heads/main',
        after: String(i).repeat(40),
        repository: { full_name: 'acme/app' },
      });
      const r = await send(b, signed(b));
      answers.push(r.status);
      if (r.status === 429) retryAfter = r.headers.get('retry-after');
    }
    assert.deepEqual(answers, [202, 202, 429, 429, 429]);
    assert.ok(Number(retryAfter) >= 1, `Retry-After ${retryAfter}`);
    assert.equal(metrics.webhooksThrottled, 3);
    assert.equal(pushes, 3);
    assert.equal(metrics.webhookDeliveriesRemembered, 6);
    // One line per kind within 10 s, however many: 200 rejections, 51 duplicates, 3 throttled → 3 lines, plus the 3 accepted.
    assert.equal(logs.length, 6, logs.join('\n'));
    const text = renderMetrics(metrics);
    for (const name of [
      'enbi_webhooks_duplicate_total 51',
      'enbi_webhooks_throttled_total 3',
      'enbi_webhook_deliveries_remembered 6',
    ])
      assert.ok(text.includes(name), name);
  } finally {
    await s.close();
  }
});

test('the webhook holds at most 32 MiB of bodies at once: slow senders of large bodies get 503 past it, and the rest is served', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-srv-'));
  await writeFile(join(dir, 'secret'), 's3cret\n');
  const metrics = newMetrics();
  const s = await startServers({
    listen: { host: '127.0.0.1', port: 0 },
    webhook: { host: '127.0.0.1', port: 0, secretFile: join(dir, 'secret') },
    metrics,
    ready: () => true,
    onPush: () => undefined,
    log: () => undefined,
  });
  const sockets: ReturnType<typeof connect>[] = [];
  try {
    const chunk = Buffer.alloc(4.5 * 1024 * 1024, 0x20);
    const answers: Promise<string>[] = [];
    for (let i = 0; i < 8; i++) {
      const socket = connect(s.webhookPort!, '127.0.0.1');
      sockets.push(socket);
      answers.push(
        new Promise((resolve) => {
          let got = '';
          socket.on('data', (d: Buffer) => (got += d.toString()));
          socket.on('error', () => resolve(got));
          socket.on('close', () => resolve(got));
        }),
      );
      // Never finished: 4.5 of the 5 MiB announced.
      socket.write(`POST /hooks/git HTTP/1.1\r\nHost: x\r\nContent-Length: ${5 * 1024 * 1024}\r\n\r\n`);
      socket.write(chunk);
      await new Promise((r) => setTimeout(r, 150));
    }
    const first = await Promise.race([
      Promise.any(answers),
      new Promise<string>((r) => setTimeout(() => r('none'), 5000)),
    ]);
    assert.match(first, /^HTTP\/1\.1 503 /);
    assert.equal(metrics.webhooksRejected, 1);
    for (const socket of sockets) socket.destroy();
    await new Promise((r) => setTimeout(r, 200));
    // The budget was given back: a 1 MiB delivery (more than what was left) is answered as ever.
    const body = JSON.stringify({ pad: 'x'.repeat(1024 * 1024) });
    const res = await fetch(`http://127.0.0.1:${s.webhookPort}/hooks/git`, {
      method: 'POST',
      body,
      headers: { 'X-Hub-Signature-256': `sha256=${createHmac('sha256', 's3cret').update(body).digest('hex')}` },
    });
    assert.equal(res.status, 202);
  } finally {
    for (const socket of sockets) socket.destroy();
    await s.close();
  }
});

test('an empty webhook secret file is a start-up error that says what to do', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'enbi-srv-'));
  await writeFile(join(dir, 'secret'), ' \n');
  await assert.rejects(
    startServers({
      listen: { host: '127.0.0.1', port: 0 },
      webhook: { host: '127.0.0.1', port: 0, secretFile: join(dir, 'secret') },
      metrics: newMetrics(),
      ready: () => true,
      onPush: () => undefined,
      log: () => undefined,
    }),
    /webhook.secretFile .* is empty: put the secret your Git host signs pushes with in it/,
  );
});

test('text from builds and manifests is printed with control characters escaped', () => {
  assert.equal(printable('ok\n\tline'), 'ok\n\tline');
  assert.equal(printable('\u001b[2J\u001b[Hfake\rline\u0000'), '\\x1b[2J\\x1b[Hfake\\x0dline\\x00');
  assert.equal(printable('a\u202eb'), 'a\\u{202e}b');
});
