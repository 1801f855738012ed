// The webhook replay attack of issue 19, against a real API server and two `enbi controller` processes (as
// deploy/ runs them: leader election on a Lease, a standby forwarding pushes), with a Git source on a real
// Git server. ONE validly signed push delivery is replayed 10,000 times at the standby. Before the fix each
// one became a PATCH of the election Lease, whose guarded renewal then conflicted until the leader gave up
// and exited (within ~10 s). Now: the leader holds its Lease throughout (same holder, no transition, its
// process alive, the election Lease written only by renewals), the standby accepts the delivery once and
// answers the 9,999 replays 200 doing nothing, and the leader fetches Git exactly once. Then the attacker's
// variants: the same body under 1,000 fresh delivery ids (all duplicates) and 1,000 unsigned requests with
// distinct ids (all 401), neither of which costs the standby memory or the leader a fetch.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CoordinationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { freePort } from '../cluster/ports.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { type GitServer, startGitServer } from '../support/git-server.ts';
import { applyCrdFile, applyNixBuildCrd, until } from '../support/kube.ts';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const run = Date.now().toString(36);
const NS = `enbi-replay-${run}`;
const SECRET = `replay-secret-${run}`;
const LEASE_SECONDS = 4;
const RENEW_SECONDS = 1;
const REPLAYS = 10_000;

/** Runs `fn` `count` times, `width` at a time (as a client with a connection pool of that size would). */
async function inParallel<T>(width: number, count: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

interface Replica {
  proc: ChildProcess;
  out: string;
  port: number;
  hookPort: number;
  exited: boolean;
}

describe(
  'one valid webhook replayed 10,000 times at a standby (real API server, two controller processes)',
  { skip: clusterSkipReason(), timeout: 600_000 },
  () => {
    let c: ClusterInfo;
    let git: GitServer;
    let dir: string;
    const replicas: Replica[] = [];
    let leader: Replica;
    let standby: Replica;
    let holder: string;
    let replayStart = 0;
    const timings: string[] = [];

    const leases = () => c.kc.makeApiClient(CoordinationV1Api);
    const metric = async (r: Replica, name: string) => {
      const text = await (await fetch(`http://127.0.0.1:${r.port}/metrics`)).text();
      const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
      return m === null ? undefined : Number(m[1]);
    };
    const messages = (r: Replica) =>
      r.out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => (JSON.parse(l) as { msg: string }).msg);
    const refListings = () => git.stats.log.filter((r) => r.path.includes('/manifests.git/info/refs')).length;
    const fetches = () =>
      git.stats.log.filter((r) => r.method === 'POST' && r.path.endsWith('/manifests.git/git-upload-pack')).length;

    const startReplica = async () => {
      const port = await freePort();
      const hookPort = await freePort();
      const file = join(dir, `config-${port}.yaml`);
      await writeFile(
        file,
        stringify({
          source: { url: git.url('manifests'), ref: 'main', path: 'apps', intervalSeconds: 3600 },
          namespace: NS,
          watchNamespaces: [NS],
          allowedImages: ['registry.local/'],
          allowedFlakes: ['http://git.invalid/'],
          builderImage: 'enbi.local/builder:dev',
          importerImage: 'enbi.local/importer:dev',
          containerdSocket: '/run/containerd/containerd.sock',
          listen: { host: '127.0.0.1', port },
          webhook: { secretFile: join(dir, 'secret'), listen: { host: '127.0.0.1', port: hookPort } },
          // Short, as the finding's: the leader renews every second and gives up after 3 s without a renewal.
          leaderElection: { leaseSeconds: LEASE_SECONDS, renewSeconds: RENEW_SECONDS },
        }),
      );
      const proc = spawn(
        process.execPath,
        [CLI, 'controller', '--config', file, '--kubeconfig', c.kubeconfig, '--cache-dir', join(dir, `git-${port}`)],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const r: Replica = { proc, out: '', port, hookPort, exited: false };
      proc.stdout!.on('data', (d: Buffer) => (r.out += d.toString()));
      proc.stderr!.on('data', (d: Buffer) => (r.out += d.toString()));
      proc.on('exit', () => (r.exited = true));
      replicas.push(r);
      return r;
    };

    before(async () => {
      c = await useCluster('control-plane');
      await c.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
      await applyNixBuildCrd(c.kc);
      await applyCrdFile(c.kc, new URL('../../deploy/crd/nodeimages.enbi.hrzn.ee.yaml', import.meta.url).pathname);
      git = await startGitServer();
      await git.createRepo('manifests', { 'apps/README.md': 'no workloads yet\n' });
      dir = await mkdtemp(join(tmpdir(), 'enbi-replay-'));
      await writeFile(join(dir, 'secret'), SECRET);
      await startReplica();
      await startReplica();
      [leader, holder] = await until(
        'a leading replica',
        async () => {
          const h = (
            await leases()
              .readNamespacedLease({ namespace: NS, name: 'enbi-controller' })
              .catch(() => undefined)
          )?.spec?.holderIdentity;
          const r = h ? replicas.find((x) => x.out.includes(` as ${h}`)) : undefined;
          return r !== undefined ? ([r, h!] as const) : undefined;
        },
        60_000,
        200,
      );
      standby = replicas.find((r) => r !== leader)!;
      await until(
        'the standby to serve its webhook port',
        async () =>
          (await fetch(`http://127.0.0.1:${standby.port}/readyz`).then(
            (r) => r.ok,
            () => false,
          ))
            ? true
            : undefined,
        30_000,
        200,
      );
      await until(
        "the leader's first sync",
        async () => (messages(leader).some((m) => m.startsWith('source at ')) ? true : undefined),
        60_000,
        200,
      );
    });

    after(async () => {
      for (const r of replicas) r.proc.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 500));
      for (const r of replicas) if (!r.exited) r.proc.kill('SIGKILL');
      await git?.close();
      await c?.kc
        .makeApiClient(CoreV1Api)
        .deleteNamespace({ name: NS })
        .catch(() => undefined);
      if (process.env.ENBI_TEST_VERBOSE === '1') for (const r of replicas) console.log(r.out);
      console.log(`# webhook replay:\n# ${timings.join('\n# ')}`);
    });

    it('the leader keeps its Lease and its process, the standby accepts once, the leader fetches once', async () => {
      // Something new to fetch, so that the one sync is a real fetch; nothing else asks for one (interval 1 h).
      await new Promise((r) => setTimeout(r, 2000));
      const rev = await git.commit('manifests', { 'apps/README.md': 'pushed\n' }, { branch: 'main' });
      git.resetStats();
      const before = await leases().readNamespacedLease({ namespace: NS, name: 'enbi-controller' });
      assert.equal(
        await leases()
          .readNamespacedLease({ namespace: NS, name: 'enbi-controller-sync' })
          .then(
            () => true,
            () => false,
          ),
        false,
        'no sync requested yet',
      );

      // The election Lease and the sync Lease, sampled every 100 ms throughout.
      const election = {
        holders: new Set<string>(),
        transitions: new Set<number>(),
        versions: new Set<string>(),
        samples: 0,
      };
      const sync = new Set<string>();
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const l = await leases().readNamespacedLease({ namespace: NS, name: 'enbi-controller' });
          election.holders.add(l.spec?.holderIdentity ?? '');
          election.transitions.add(l.spec?.leaseTransitions ?? 0);
          election.versions.add(l.metadata!.resourceVersion!);
          election.samples++;
          const s = await leases()
            .readNamespacedLease({ namespace: NS, name: 'enbi-controller-sync' })
            .catch(() => undefined);
          if (s !== undefined) sync.add(s.metadata!.resourceVersion!);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();

      // ONE delivery, as GitHub signs a push.
      const body = JSON.stringify({
        ref: 'refs/heads/main',
        before: '0'.repeat(40),
        after: rev,
        repository: { full_name: 'test/manifests', pushed_at: Math.floor(Date.now() / 1000) },
        pusher: { name: 'test' },
      });
      const headers = {
        'Content-Type': 'application/json',
        'X-GitHub-Event': 'push',
        'X-GitHub-Delivery': randomUUID(),
        'X-Hub-Signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`,
      };
      const statuses = new Map<number, number>();
      const t0 = Date.now();
      replayStart = t0;
      await inParallel(16, REPLAYS, async () => {
        const res = await fetch(`http://127.0.0.1:${standby.hookPort}/hooks/git`, { method: 'POST', body, headers });
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      });
      const replayMs = Date.now() - t0;
      // The leader reads sync requests every renewal (1 s): give it that and a few more renewals.
      await until(
        'the leader to fetch the pushed revision',
        async () => (messages(leader).some((m) => m.startsWith(`source at ${rev.slice(0, 12)}`)) ? true : undefined),
        15_000,
        100,
      );
      await new Promise((r) => setTimeout(r, 5 * RENEW_SECONDS * 1000));
      sampling = false;
      await sampler;
      const afterLease = await leases().readNamespacedLease({ namespace: NS, name: 'enbi-controller' });
      const totalMs = Date.now() - t0;

      timings.push(
        `${REPLAYS} replays of one delivery answered in ${(replayMs / 1000).toFixed(1)} s: ${[...statuses].map(([s, n]) => `${n}× ${s}`).join(', ')}`,
      );
      timings.push(
        `leader ${holder}: Lease held throughout (${election.samples} samples over ${(totalMs / 1000).toFixed(1)} s, holders ${[...election.holders].join(',')}, transitions ${[...election.transitions].join(',')}, ${election.versions.size} versions ≈ renewals); sync Lease versions seen: ${sync.size}`,
      );
      timings.push(`Git after the replay: ${refListings()} ref listing(s), ${fetches()} fetch(es)`);

      assert.deepEqual(
        Object.fromEntries(statuses),
        { 202: 1, 200: REPLAYS - 1 },
        'accepted once, every replay a 200 that does nothing',
      );
      assert.equal(await metric(standby, 'enbi_webhooks_accepted_total'), 1);
      assert.equal(await metric(standby, 'enbi_webhooks_duplicate_total'), REPLAYS - 1);
      assert.equal(await metric(standby, 'enbi_webhook_deliveries_remembered'), 2);
      // The leader: the same holder all along, no transition, its process alive and never giving up.
      assert.deepEqual([...election.holders], [holder]);
      assert.deepEqual([...election.transitions], [before.spec?.leaseTransitions ?? 0]);
      assert.equal(afterLease.spec?.holderIdentity, holder);
      assert.equal(afterLease.spec?.leaseTransitions, before.spec?.leaseTransitions);
      assert.equal(leader.exited, false, 'the leader process runs');
      assert.equal(standby.exited, false, 'the standby process runs');
      assert.ok(!messages(leader).some((m) => m.startsWith('lost the lease')), 'the leader never lost its lease');
      assert.equal((await fetch(`http://127.0.0.1:${leader.port}/healthz`)).status, 200);
      // The election Lease written by renewals only (one a second), never for a sync.
      assert.ok(
        election.versions.size <= Math.ceil(totalMs / (RENEW_SECONDS * 1000)) + 2,
        `${election.versions.size} versions in ${totalMs} ms`,
      );
      assert.deepEqual(Object.keys(afterLease.metadata?.annotations ?? {}), []);
      // One write of the sync Lease (its creation), one sync, one fetch.
      assert.equal(sync.size, 1, `sync Lease versions: ${[...sync].join(',')}`);
      assert.equal(refListings(), 1, 'one ref listing');
      assert.equal(fetches(), 1, 'one fetch');
      assert.equal(messages(leader).filter((m) => m.startsWith(`source at ${rev.slice(0, 12)}`)).length, 1);
    });

    it("the attacker's variants: the same body under 1,000 fresh delivery ids, 1,000 unsigned requests with distinct ids: no memory, no fetch, the Lease held", async () => {
      git.resetStats();
      const body = JSON.stringify({
        ref: 'refs/heads/main',
        before: '0'.repeat(40),
        after: 'f'.repeat(40),
        repository: { full_name: 'test/manifests' },
      });
      const signature = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
      const url = `http://127.0.0.1:${standby.hookPort}/hooks/git`;
      const send = async (headers: Record<string, string>) => {
        const res = await fetch(url, {
          method: 'POST',
          body,
          headers: { 'Content-Type': 'application/json', 'X-GitHub-Event': 'push', ...headers },
        });
        await res.arrayBuffer();
        return res.status;
      };
      // A new delivery, once: accepted; its replays under forged ids: duplicates.
      assert.equal(await send({ 'X-Hub-Signature-256': signature, 'X-GitHub-Delivery': randomUUID() }), 202);
      const forged = await inParallel(16, 1000, () =>
        send({ 'X-Hub-Signature-256': signature, 'X-GitHub-Delivery': randomUUID() }),
      );
      assert.deepEqual([...new Set(forged)], [200]);
      const unsigned = await inParallel(16, 1000, (i) =>
        send({ 'X-Hub-Signature-256': `sha256=${'0'.repeat(63)}${i % 10}`, 'X-GitHub-Delivery': randomUUID() }),
      );
      assert.deepEqual([...new Set(unsigned)], [401]);
      assert.equal(
        await metric(standby, 'enbi_webhook_deliveries_remembered'),
        4,
        'two deliveries accepted in all: their ids and bodies',
      );
      assert.equal(await metric(standby, 'enbi_webhooks_rejected_total'), 1000);
      await new Promise((r) => setTimeout(r, 4 * RENEW_SECONDS * 1000));
      // The one accepted delivery asks for one sync: one ref listing (nothing new to fetch).
      assert.equal(refListings(), 1);
      assert.ok(fetches() <= 1, `${fetches()} fetches`);
      const lease = await leases().readNamespacedLease({ namespace: NS, name: 'enbi-controller' });
      assert.equal(lease.spec?.holderIdentity, holder);
      assert.equal(leader.exited, false);
      // Log lines about refused requests stay few: at most one per kind (here two: duplicate, rejected) every 10 s.
      const refusals = messages(standby).filter((m) => /^webhook rejected|already accepted/.test(m)).length;
      const windows = Math.ceil((Date.now() - replayStart) / 10_000);
      assert.ok(
        refusals <= 2 * windows,
        `${refusals} log lines about ${REPLAYS - 1 + 2000} refused requests in ${windows} windows of 10 s`,
      );
      timings.push(
        `attacker variants: 1,000 forged ids → 200, 1,000 unsigned → 401; remembered 4 keys; Git: ${refListings()} ref listing(s), ${fetches()} fetch(es); ${refusals} log lines about refused requests`,
      );
    });
  },
);
