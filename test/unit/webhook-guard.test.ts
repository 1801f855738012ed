// The webhook's pure parts: deduplication by delivery id and signed content with bounded memory, token
// buckets per key with bounded keys, client address keys, Standard Webhooks' signed timestamp window, and the
// standby's coalesced sync requests and the leader's polling of them (fake API, fake clock where it matters).
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { jsonLogger } from '../../src/controller/log.ts';
import { coalesced, type SyncLeaseApi, watchSyncRequests } from '../../src/controller/sync-request.ts';
import { TIMESTAMP_TOLERANCE_MS, verifyWebhook } from '../../src/controller/webhook-auth.ts';
import {
  clientKey,
  DeliveryMemory,
  GUARD_DEFAULTS,
  repositoryOf,
  TokenBuckets,
  webhookGuard,
} from '../../src/controller/webhook-guard.ts';

const SECRET = 's3cret';
const push = (n: number, repo = 'acme/app') =>
  Buffer.from(
    JSON.stringify({ ref: 'refs/heads/main', after: String(n).padStart(40, '0'), repository: { full_name: repo } }),
  );
const github = (body: Buffer, id: string) => {
  const v = verifyWebhook(
    {
      'x-hub-signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`,
      'x-github-delivery': id,
    },
    body,
    SECRET,
  );
  assert.ok(v.ok);
  return v;
};

test('dedupe: a delivery is accepted once; its replay is a duplicate by id, by content under a new id, and stays one while it loops', () => {
  const g = webhookGuard();
  const body = push(1);
  const t = 1_000_000;
  assert.equal(g.check(github(body, 'd-1'), body, '10.0.0.1', t).outcome, 'accept');
  assert.equal(g.remembered(), 2, 'its id and its body');
  assert.deepEqual(g.check(github(body, 'd-1'), body, '10.0.0.1', t + 1), {
    outcome: 'duplicate',
    by: 'id',
    repository: 'github:acme/app',
  });
  // The attacker's replay: same signed body, any X-GitHub-Delivery.
  assert.deepEqual(g.check(github(body, randomUUID()), body, '10.0.0.2', t + 2), {
    outcome: 'duplicate',
    by: 'content',
    repository: 'github:acme/app',
  });
  // A sender's retry of the same delivery id with another body (GitLab's token signs nothing) is a duplicate too.
  assert.equal(g.check(github(push(2), 'd-1'), push(2), '10.0.0.1', t + 3).outcome, 'duplicate');
  for (let i = 0; i < 10_000; i++)
    assert.equal(g.check(github(body, `forged-${i}`), body, '10.0.0.3', t + 4 + i).outcome, 'duplicate');
  assert.equal(g.remembered(), 2, 'replays under 10,000 forged ids cost no memory');
  // Remembered for the TTL after it was last seen: a replay loop keeps it known; quiet for the TTL, it goes.
  const later = t + 4 + 10_000 + GUARD_DEFAULTS.ttlMs - 1;
  assert.equal(g.check(github(body, 'd-1'), body, '10.0.0.1', later).outcome, 'duplicate');
  assert.equal(g.check(github(body, 'd-1'), body, '10.0.0.1', later + GUARD_DEFAULTS.ttlMs + 1).outcome, 'accept');
});

test('dedupe memory is bounded: the least recently seen keys go first, expired ones as soon as anything is remembered', () => {
  const m = new DeliveryMemory(3, 1000);
  for (const k of ['a', 'b', 'c']) m.remember(k, 0);
  assert.equal(m.has('a', 10), true, 'a seen again: now the most recent');
  m.remember('d', 20);
  assert.equal(m.size, 3);
  assert.equal(m.has('b', 30), false, 'b, the least recently seen, went');
  assert.equal(m.has('a', 30), true);
  m.remember('e', 2000);
  assert.equal(m.size, 1, 'the expired ones went with it');
  assert.equal(m.has('e', 2500), true);
  assert.equal(m.has('e', 3600), false);
});

test('a flood of distinct valid deliveries (a leaked GitLab token) stays within the memory bound and the rate limits', () => {
  const g = webhookGuard({ ...GUARD_DEFAULTS, capacity: 100 });
  let accepted = 0;
  let throttled = 0;
  for (let i = 0; i < 5000; i++) {
    const body = push(i, `org/repo-${i}`);
    const v = verifyWebhook({ 'x-gitlab-token': SECRET, 'x-gitlab-event-uuid': randomUUID() }, body, SECRET);
    assert.ok(v.ok);
    const d = g.check(v, body, '192.0.2.7', 1_000_000 + i);
    if (d.outcome === 'accept') accepted++;
    if (d.outcome === 'throttled') throttled++;
    assert.ok(g.remembered() <= 100);
  }
  // One client: its burst of 60 and a token a second over 5 s of fake time.
  assert.ok(accepted >= 60 && accepted <= 66, `accepted ${accepted}`);
  assert.equal(accepted + throttled, 5000);
});

test('rate limits: per repository and per client, Retry-After from the emptier bucket, a throttled delivery neither remembered nor charged', () => {
  const g = webhookGuard({
    ...GUARD_DEFAULTS,
    perRepository: { burst: 2, perSecond: 0.5, maxKeys: 10 },
    perClient: { burst: 3, perSecond: 1, maxKeys: 10 },
  });
  const t = 5_000_000;
  const send = (n: number, repo: string, addr: string, at: number) => {
    const body = push(n, repo);
    return g.check(github(body, `id-${n}`), body, addr, at);
  };
  assert.equal(send(1, 'a/x', '10.0.0.1', t).outcome, 'accept');
  assert.equal(send(2, 'a/x', '10.0.0.2', t).outcome, 'accept');
  const third = send(3, 'a/x', '10.0.0.3', t);
  assert.deepEqual(third, { outcome: 'throttled', per: 'repository', retryAfterSeconds: 2, repository: 'github:a/x' });
  assert.equal(g.remembered(), 4, 'the throttled one is not remembered: the sender may retry it');
  assert.equal(send(3, 'a/x', '10.0.0.3', t + 2000).outcome, 'accept', 'its retry, once the bucket refilled');
  // Per client: another repository each time, one address.
  assert.equal(send(10, 'b/1', '10.0.0.9', t).outcome, 'accept');
  assert.equal(send(11, 'b/2', '10.0.0.9', t).outcome, 'accept');
  assert.equal(send(12, 'b/3', '10.0.0.9', t).outcome, 'accept');
  const over = send(13, 'b/4', '10.0.0.9', t);
  assert.equal(over.outcome, 'throttled');
  assert.equal(over.outcome === 'throttled' && over.per, 'client');
  // IPv6: one /64 is one client.
  assert.equal(clientKey('2001:db8:1:2:aaaa::1'), clientKey('2001:db8:1:2:bbbb::2'));
  assert.notEqual(clientKey('2001:db8:1:2::1'), clientKey('2001:db8:1:3::1'));
  assert.equal(clientKey('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(clientKey(undefined), 'unknown');
});

test('token buckets: bounded keys; full buckets are dropped first, then the least recently used (which starts full again)', () => {
  const b = new TokenBuckets({ burst: 2, perSecond: 1, maxKeys: 3 });
  b.take('a', 0);
  b.take('a', 0);
  assert.equal(b.wait('a', 0), 1);
  b.take('b', 0);
  b.take('c', 500);
  // b is full again at 1 s (1 + 1 token): dropped to make room, a and c kept.
  b.take('d', 1000);
  assert.equal(b.size, 3);
  assert.ok(b.wait('a', 1000) === 0);
  for (let i = 0; i < 10_000; i++) b.take(`k${i}`, 2000);
  assert.equal(b.size, 3);
});

test('the repository a delivery names: GitHub, Gitea, GitLab, form-encoded, or none', () => {
  assert.equal(repositoryOf('github', Buffer.from('{"repository":{"full_name":"o/r"}}')), 'github:o/r');
  assert.equal(repositoryOf('gitlab', Buffer.from('{"project":{"path_with_namespace":"g/s/p"}}')), 'gitlab:g/s/p');
  assert.equal(
    repositoryOf('gitea', Buffer.from(`payload=${encodeURIComponent('{"repository":{"full_name":"o/f"}}')}`)),
    'gitea:o/f',
  );
  assert.equal(repositoryOf('github', Buffer.from('not json')), 'github:?');
  assert.equal(repositoryOf('github', Buffer.from('null')), 'github:?');
  assert.equal(
    repositoryOf('github', Buffer.from(JSON.stringify({ repository: { full_name: 'x'.repeat(10_000) } }))).length,
    'github:'.length + 256,
  );
});

test('Standard Webhooks (GitLab signing token): id and time signed; outside ±5 min refused, inside it the signed id deduplicates', () => {
  const key = Buffer.from('0123456789abcdef0123456789abcdef');
  const secret = `whsec_${key.toString('base64')}`;
  const body = push(7);
  const sign = (id: string, ts: number) =>
    `v1,${createHmac('sha256', key).update(`${id}.${ts}.`).update(body).digest('base64')}`;
  const now = 1_750_000_000_000;
  const ts = Math.floor(now / 1000);
  const headers = (id: string, t: number, sig = sign(id, t)) => ({
    'webhook-id': id,
    'webhook-timestamp': String(t),
    'webhook-signature': `v1,bm90IGl0 ${sig}`,
  });
  const ok = verifyWebhook(headers('msg_1', ts), body, secret, now);
  assert.deepEqual(ok, { ok: true, provider: 'standard', deliveryId: 'msg_1', signedAt: ts * 1000 });
  // The id or the time changed under the same signature: refused.
  assert.equal(verifyWebhook(headers('msg_2', ts, sign('msg_1', ts)), body, secret, now).ok, false);
  assert.equal(verifyWebhook(headers('msg_1', ts + 1, sign('msg_1', ts)), body, secret, now).ok, false);
  // Validly signed, but replayed after the window (or from a clock far ahead): refused with the reason.
  const late = verifyWebhook(headers('msg_1', ts), body, secret, now + TIMESTAMP_TOLERANCE_MS + 1000);
  assert.equal(late.ok, false);
  assert.match(!late.ok ? late.reason : '', /more than 5 min from this clock/);
  assert.equal(verifyWebhook(headers('msg_1', ts + 600), body, secret, now).ok, false);
  assert.equal(
    verifyWebhook({ 'webhook-signature': sign('m', ts) }, body, secret, now).ok,
    false,
    'no id, no timestamp',
  );
  // Within the window, the replay is a duplicate.
  const g = webhookGuard();
  assert.ok(ok.ok);
  assert.equal(g.check(ok, body, '10.0.0.1', now).outcome, 'accept');
  const again = verifyWebhook(headers('msg_1', ts), body, secret, now + 60_000);
  assert.ok(again.ok);
  assert.equal(g.check(again, body, '10.0.0.1', now + 60_000).outcome, 'duplicate');
  // A plain secret (not whsec_) is the key as is.
  const plain = `v1,${createHmac('sha256', 'plain').update(`i.${ts}.`).update(body).digest('base64')}`;
  assert.equal(
    verifyWebhook(
      { 'webhook-id': 'i', 'webhook-timestamp': String(ts), 'webhook-signature': plain },
      body,
      'plain',
      now,
    ).ok,
    true,
  );
});

test("a standby's sync requests are coalesced: a burst is one write, calls while it runs one more after the spacing, each call answered by a write that began after it", async () => {
  let writes = 0;
  let failures = 0;
  const starts: number[] = [];
  const request = coalesced(
    async () => {
      writes++;
      starts.push(Date.now());
      await new Promise((r) => setTimeout(r, 20));
    },
    200,
    () => failures++,
  );
  const burst = Array.from({ length: 10_000 }, () => request());
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(writes, 1, '10,000 calls before the write began: one write');
  // Calls while it runs and within the spacing after it: one more write, 200 ms after the first began. The
  // calls stop well inside the spacing, however late a loaded machine runs the timers.
  const during: Promise<void>[] = [];
  while (Date.now() - starts[0]! < 150) {
    for (let j = 0; j < 500; j++) during.push(request());
    await new Promise((r) => setTimeout(r, 10));
  }
  await Promise.all([...burst, ...during]);
  assert.equal(writes, during.length > 0 ? 2 : 1);
  if (during.length > 0) assert.ok(starts[1]! - starts[0]! >= 190, `spaced: ${starts[1]! - starts[0]!} ms`);
  // Later, alone: one more, at once.
  await new Promise((r) => setTimeout(r, 250));
  await request();
  assert.equal(writes, during.length > 0 ? 3 : 2);
  // A failing write is reported once, not to each caller, and no caller sees it.
  const failing = coalesced(
    async () => {
      throw new Error('403 forbidden');
    },
    50,
    () => failures++,
  );
  await Promise.all(Array.from({ length: 100 }, () => failing()));
  assert.equal(failures, 1);
});

test('the leader polls the sync Lease: a changed version is one request, the first read is the baseline, failures are logged once and never thrown', async () => {
  let version = '7';
  let failing = false;
  const api: SyncLeaseApi = {
    version: async () => {
      if (failing) throw Object.assign(new Error('boom'), { code: 503 });
      return version;
    },
    stamp: async () => undefined,
  };
  const logs: string[] = [];
  let requested = 0;
  const w = watchSyncRequests({
    api,
    pollMs: 10,
    log: jsonLogger((l) => logs.push(l)),
    onRequested: () => requested++,
  });
  const tick = () => new Promise((r) => setTimeout(r, 40));
  await tick();
  assert.equal(requested, 0, 'what was there when it took the lead is no request');
  version = '8';
  await tick();
  assert.equal(requested, 1);
  await tick();
  assert.equal(requested, 1, 'the same version is the same request');
  failing = true;
  await tick();
  await tick();
  assert.equal(logs.filter((l) => l.includes('cannot read the sync requests')).length, 1);
  version = '9';
  failing = false;
  await tick();
  assert.equal(requested, 2);
  w.stop();
  version = '10';
  await tick();
  assert.equal(requested, 2, 'stopped: no more polls');
});
