// Leader election on a real API server's Lease: one leader among replicas, never two at once; a crashed
// leader (no release) is replaced once its lease runs out, a stopped one at once; a leader whose route to
// the API server is cut (its requests hang, unanswered) gives up and stops writing before the other can
// lead; a standby forwards a webhook to the leader through the sync Lease, never the election Lease. The
// failover times are printed.
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { CoordinationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { jsonLogger } from '../../src/controller/log.ts';
import { type LeaderElection, startLeaderElection } from '../../src/controller/leader.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { until } from '../support/kube.ts';

const run = Date.now().toString(36);
const LEASE_SECONDS = 3;

describe('leader election on a Lease (real API server)', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  const ns = `enbi-leader-${run}`;
  const electors: { id: string; e: LeaderElection; started: number; stopped: number; syncs: number }[] = [];
  let sampler: NodeJS.Timeout | undefined;
  let bothLed = 0;
  let samples = 0;
  const logs: string[] = [];

  const start = (id: string) => {
    const rec = { id, e: undefined as unknown as LeaderElection, started: 0, stopped: 0, syncs: 0 };
    rec.e = startLeaderElection({
      kc: c.kc,
      namespace: ns,
      name: 'enbi-controller',
      identity: id,
      leaseSeconds: LEASE_SECONDS,
      renewSeconds: 1,
      retrySeconds: 0.25,
      log: jsonLogger((l) => logs.push(l), { fields: { id } }),
      onStartedLeading: () => rec.started++,
      onStoppedLeading: () => rec.stopped++,
      onSyncRequested: () => rec.syncs++,
    });
    electors.push(rec);
    return rec;
  };
  const leaders = () => electors.filter((r) => r.e.isLeader());

  before(async () => {
    c = await useCluster('control-plane');
    await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    // Never two leaders, sampled all along.
    sampler = setInterval(() => {
      samples++;
      if (leaders().length > 1) bothLed++;
    }, 50);
  });

  after(async () => {
    clearInterval(sampler);
    for (const r of electors) await r.e.stop(false);
    await c?.kc
      .makeApiClient(CoreV1Api)
      .deleteNamespace({ name: ns })
      .catch(() => undefined);
    if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
  });

  it("one of three replicas leads; a standby's webhook reaches the leader through the sync Lease, the election Lease untouched", async () => {
    for (const id of ['a', 'b', 'c']) start(id);
    const [leader] = await until('a leader', async () => (leaders().length === 1 ? leaders() : undefined), 10_000, 50);
    await new Promise((r) => setTimeout(r, 2 * LEASE_SECONDS * 1000));
    assert.deepEqual(
      leaders().map((r) => r.id),
      [leader!.id],
      'the same leader, renewing',
    );
    assert.equal(leader!.started, 1);
    const standby = electors.find((r) => r !== leader)!;
    const leases = c.kc.makeApiClient(CoordinationV1Api);
    await standby.e.requestSync();
    await until('the leader to see the sync request', async () => (leader!.syncs === 1 ? true : undefined), 5_000, 50);
    assert.equal(standby.syncs, 0);
    // A burst of 500 requests from each standby: one write each (coalesced); the leader syncs at most once
    // per write, and its Lease holds no annotation of theirs.
    const others = electors.filter((r) => r !== leader);
    await Promise.all(others.flatMap((r) => Array.from({ length: 500 }, () => r.e.requestSync())));
    await until('the leader to see the burst', async () => (leader!.syncs >= 2 ? true : undefined), 5_000, 50);
    await new Promise((r) => setTimeout(r, 2500));
    assert.ok(leader!.syncs <= 1 + others.length, `syncs: ${leader!.syncs}`);
    assert.deepEqual(
      leaders().map((r) => r.id),
      [leader!.id],
    );
    assert.deepEqual(
      Object.keys(
        (await leases.readNamespacedLease({ namespace: ns, name: 'enbi-controller' })).metadata?.annotations ?? {},
      ),
      [],
    );
    assert.ok(
      (await leases.readNamespacedLease({ namespace: ns, name: 'enbi-controller-sync' })).metadata?.annotations?.[
        'enbi.hrzn.ee/sync-requested'
      ],
    );
  });

  it('a crashed leader (no release) is replaced once its lease runs out; a stopped one at once', async (t: TestContext) => {
    const crashed = leaders()[0]!;
    let t0 = Date.now();
    await crashed.e.stop(false);
    const [next] = await until(
      'a new leader',
      async () => (leaders().length === 1 ? leaders() : undefined),
      4 * LEASE_SECONDS * 1000,
      25,
    );
    const crashMs = Date.now() - t0;
    assert.notEqual(next!.id, crashed.id);
    assert.ok(crashMs >= (LEASE_SECONDS - 1) * 1000, `not before the lease ran out (${crashMs} ms)`);
    assert.ok(crashMs < (LEASE_SECONDS + 2) * 1000, `within the lease time and a retry (${crashMs} ms)`);
    t0 = Date.now();
    await next!.e.stop(true);
    const [third] = await until(
      'the last replica to lead',
      async () => (leaders().length === 1 ? leaders() : undefined),
      4 * LEASE_SECONDS * 1000,
      25,
    );
    const releaseMs = Date.now() - t0;
    assert.ok(releaseMs < 1500, `a released lease is taken at once (${releaseMs} ms)`);
    assert.ok(![crashed.id, next!.id].includes(third!.id));
    t.diagnostic(
      `failover: crashed leader replaced in ${crashMs} ms (lease ${LEASE_SECONDS} s), released lease taken in ${releaseMs} ms`,
    );
    console.log(
      `# leader failover: crash ${crashMs} ms (lease ${LEASE_SECONDS} s, renew 1 s), release ${releaseMs} ms`,
    );
    assert.equal(bothLed, 0, `two leaders at once in ${bothLed} of ${samples} samples`);
    assert.ok(samples > 50);
  });

  it('a leader cut off from the API server (requests hang) gives up, and refuses writes, before another can lead', async () => {
    const upstream = new URL(c.server);
    const pairs: [Socket, Socket][] = [];
    let cut = false;
    // A TCP relay to the API server that can be cut: afterwards nothing passes, and nothing is closed either.
    const relay: Server = createServer((client) => {
      client.on('error', () => undefined);
      if (cut) return;
      const up = connect(Number(upstream.port), upstream.hostname);
      up.on('error', () => undefined);
      client.pipe(up);
      up.pipe(client);
      pairs.push([client, up]);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const port = (relay.address() as { port: number }).port;
    const viaRelay = new KubeConfig();
    viaRelay.loadFromOptions({
      clusters: c.kc.clusters.map((cl) => ({ ...cl, server: `https://127.0.0.1:${port}` })),
      users: c.kc.users,
      contexts: c.kc.contexts,
      currentContext: c.kc.currentContext,
    });
    const events: string[] = [];
    const mk = (id: string, kc: KubeConfig) =>
      startLeaderElection({
        kc,
        namespace: ns,
        name: 'enbi-cut',
        identity: id,
        leaseSeconds: LEASE_SECONDS,
        renewSeconds: 1,
        retrySeconds: 0.25,
        log: jsonLogger((l) => logs.push(l), { fields: { id } }),
        onStartedLeading: () => events.push(`${id} leads`),
        onStoppedLeading: () => events.push(`${id} stops`),
      });
    const isolated = mk('isolated', viaRelay);
    let other: LeaderElection | undefined;
    try {
      await until('the relayed replica leads', async () => (isolated.isLeader() ? true : undefined), 10_000, 25);
      other = mk('other', c.kc);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(isolated.writeRefusal(), undefined, 'a leader that renews may write');
      assert.equal(other.isLeader(), false);
      const t0 = Date.now();
      cut = true;
      for (const [a, b] of pairs) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
      // Writes stop first: within leaseSeconds − renewSeconds of the last renewal's start.
      await until(
        'its writes refused',
        async () => (isolated.writeRefusal() !== undefined ? true : undefined),
        10_000,
        25,
      );
      const refusedMs = Date.now() - t0;
      await until('the other leads', async () => (other!.isLeader() ? true : undefined), 4 * LEASE_SECONDS * 1000, 25);
      const otherMs = Date.now() - t0;
      assert.deepEqual(events, ['isolated leads', 'isolated stops', 'other leads'], 'it gave up before the other led');
      assert.ok(refusedMs <= (LEASE_SECONDS - 1) * 1000 + 250, `writes refused ${refusedMs} ms after the cut`);
      assert.match(isolated.writeRefusal() ?? '', /not the leader/);
      console.log(`# route cut: writes refused after ${refusedMs} ms, gave up, the other led after ${otherMs} ms`);
    } finally {
      await isolated.stop(false);
      await other?.stop(false);
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      relay.close();
    }
  });
});
